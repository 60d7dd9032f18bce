"""``--from-file`` against the real broker: a spreadsheet's export of a few hundred synthetic
persons enrolled in one command, each once, behind one fence round; consents granted from
standard input; a file with one bad line writes nothing at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from aiokafka import TopicPartition

from schemas.nir_detection import contains_nir
from streams.dev.synthetic import Person
from streams.kafka.admin import existing_topics
from streams.kafka.topics import CONSENTS, POPULATION, PROVIDER_PREFIX
from streams.state.fences import is_fence, read_fence
from tests.integration.routing_harness import (
    CLI,
    Bus,
    Offsets,
    Record,
    end_offsets,
    fresh_people,
    read_all,
)

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"
PERSONS = 300


def spreadsheet_export(persons: Sequence[Person]) -> bytes:
    """What Excel's “CSV UTF-8” writes, French settings: a byte-order mark, semicolons, CRLF."""
    rows = ["Nom;Prénom;NIR;Commune"]
    rows += [f"{p.nom_naissance};{p.prenoms};{p.nir};Lyon" for p in persons]
    rows += [f"{persons[0].nom_naissance};;{persons[0].nir};Lyon", ";;;"]  # a repeat, a blank row
    return ("\ufeff" + "\r\n".join(rows) + "\r\n").encode()


def positions_after(records: Sequence[Record]) -> Offsets:
    """Per partition, the position after the last of ``records``: what their fence names."""
    ends: Offsets = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    return ends


def _after(positions: Offsets | None, start: Offsets) -> bool:
    """Whether a fence names population records written since ``start`` (and nothing else)."""
    return bool(positions) and all(tp in start and end > start[tp]
                                   for tp, end in (positions or {}).items())


async def records_of(bus: Bus, start: Offsets, contract_id: str) -> list[Record]:
    prefix = f"{contract_id}/".encode()
    return await read_all(bus.settings, start, lambda r: bytes(r.key or b"").startswith(prefix))


async def test_a_spreadsheet_export_enrols_every_person_once_behind_one_fence_round(
        bus: Bus, tmp_path: Path) -> None:
    contract = bus.contract("from-file", {BOURSIER: ["echelon"]}, population="enrolled")
    await bus.apply(contract)
    persons = fresh_people(PERSONS)
    path = tmp_path / "familles.csv"
    path.write_bytes(spreadsheet_export(persons))
    providers = await end_offsets(bus.settings,
                                  await existing_topics(bus.settings, PROVIDER_PREFIX))
    start = await end_offsets(bus.settings, [POPULATION])

    code, out, err = await bus.run_cli("population", "add", contract.id, "--from-file",
                                       str(path))

    assert code == 0, err
    assert err.strip() == "1 repeated subject(s) skipped: each is written once"
    printed = [json.loads(line) for line in out.splitlines()]
    assert printed == [{"subject": p.nir, "pseudonym": bus.pseudonym(contract, p)}
                       for p in persons]
    records = await records_of(bus, start, contract.id)
    values = [bus.serde.decode(record.value)[1] for record in records]
    assert sorted(v["subject_ref"] for v in values) == sorted(bus.reference(p) for p in persons)
    assert all(v["enrolled"] and v["contract_id"] == contract.id for v in values)
    fences = await read_all(bus.settings, providers,
                            lambda r: is_fence(r.headers) and _after(read_fence(r.value), start))
    assert sorted((r.topic, r.partition) for r in fences) == sorted(
        (tp.topic, tp.partition) for tp in providers), "one fence round, for the whole file"
    mine = positions_after(records)
    assert all(read_fence(r.value) == mine for r in fences), "behind the last record"


async def test_consents_granted_from_standard_input(bus: Bus) -> None:
    contract = bus.contract("consent-file", {BOURSIER: ["echelon"]}, consent="opt_in")
    await bus.apply(contract)
    persons = fresh_people(50)
    start = await end_offsets(bus.settings, [CONSENTS])
    process = await asyncio.create_subprocess_exec(
        *CLI, "consent", "grant", contract.id, "--from-file", "-", "--channel", "paper_form",
        env=bus.cli_env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    listed = "\n\n".join(p.nir for p in persons).encode()
    out, err = await asyncio.wait_for(process.communicate(listed), 120)
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == f"consent granted for {len(persons)} subject(s) under " \
                                   f"{contract.id}"
    values = [bus.serde.decode(r.value)[1] for r in await records_of(bus, start, contract.id)]
    assert sorted(v["subject_ref"] for v in values) == sorted(bus.reference(p) for p in persons)
    assert {(v["status"], v["channel"]) for v in values} == {("granted", "paper_form")}


async def test_a_file_with_one_bad_line_writes_nothing(bus: Bus, tmp_path: Path) -> None:
    contract = bus.contract("bad-file", {BOURSIER: ["echelon"]}, population="enrolled")
    await bus.apply(contract)
    persons = fresh_people(100)
    typo = persons[41].nir[:13] + f"{int(persons[41].nir[13:]) % 97 + 1:02d}"
    lines = [p.nir for p in persons]
    lines[41] = typo
    path = tmp_path / "nirs.txt"
    path.write_text("\n".join(lines) + "\n")
    start = await end_offsets(bus.settings, [POPULATION])

    code, out, err = await bus.run_cli("population", "add", contract.id, "--from-file",
                                       str(path))

    assert code == 1
    assert out == ""
    assert err.splitlines() == ["line 42: invalid NIR (its control key does not match)",
                                "error: --from-file: 1 line(s) refused; nothing was written"]
    assert not contains_nir(err)
    assert await records_of(bus, start, contract.id) == []
