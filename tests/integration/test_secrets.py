"""Each command reads the secret it needs and no other, against the real broker.

On a PLAINTEXT bus a secret that is not configured is generated at its first read, so a
command given a fresh cache folder shows by what it leaves there which secrets it read:
``population remove`` and ``consent grant`` turn NIRs into subject references only, and never
make a pseudonym secret; ``population add`` prints the subscriber's ``ps2_`` pseudonyms, so it
reads one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pydantic import SecretStr

from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.secret import subject_secret
from tests.integration.routing_harness import CLI, Bus, fresh_people

pytest_plugins = ("tests.integration.routing_harness",)

BOURSIER = "statut_etudiant_boursier"


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_each_subject_command_reads_only_the_secret_it_needs(bus: Bus,
                                                                  tmp_path: Path) -> None:
    contract = bus.contract("secrets", {BOURSIER: ["echelon"]}, consent="opt_in",
                            population="enrolled")
    await bus.apply(contract)
    (person,) = fresh_people(1)
    kept = tmp_path / "secrets"
    env = {name: value for name, value in bus.cli_env.items()
           if not name.startswith("CIRCULATION_PSEUDONYM_SECRET")}
    env |= {"CIRCULATION_CACHE_DIR": str(tmp_path),
            "CIRCULATION_SUBJECT_SECRET": subject_secret(bus.settings).get_secret_value()}

    for command in (["population", "remove"], ["consent", "grant"]):
        code, _, err = await _run(env, *command, contract.id, person.nir)
        assert code == 0, err
        assert not kept.exists(), f"{' '.join(command)} read a secret it does not need"

    code, out, err = await _run(env, "population", "add", contract.id, person.nir)
    assert code == 0, err
    assert [p.name for p in kept.iterdir()] == ["pseudonym-secret"]
    made = SecretStr((kept / "pseudonym-secret").read_text(encoding="ascii"))
    expected = Pseudonymiser(made).pseudonym(contract.subscriber, bus.reference(person))
    assert json.loads(out) == {"subject": person.nir, "pseudonym": expected}
    assert expected.startswith("ps2_")
