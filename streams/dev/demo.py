"""The demo: the whole bus at work, from a provider's change to each administration.

It starts what is missing (the secure local stack, one routing worker), gives each actor its own
principal and credential (the operator, the gateway, each provider and subscriber, the worker),
applies the example contracts
of ``deploy/contracts`` (a commune's school canteen pricing, a transport authority's social
pricing, a département's student aid, a public buyer's supplier checks), enrols the persons each
administration follows, records consents and one withdrawal, publishes changes from every
provider, and tells per contract what was delivered and what was withheld, and why. It stops
what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from rich.console import Console
from rich.table import Table

from connectors.deliveries import delivery_json
from connectors.publisher import Publisher
from schemas.catalog import Catalog
from schemas.codec import to_json
from schemas.serde import AvroSerde
from streams.dev.actors import Actors, actors_of
from streams.dev.localstack import LocalStack, StackError, start_showing
from streams.dev.settings import LocalStackSettings
from streams.dev.synthetic import companies, generate, people
from streams.kafka import clients
from streams.kafka.admin import end_offsets
from streams.kafka.provisioning import provision_catalog
from streams.kafka.topics import AUDIT
from streams.security.acls import synchronise
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_files import validate_paths
from streams.state.contract_store import ContractStore
from streams.state.subjects import resolve, set_consent, set_population

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "contracts"


class DemoError(RuntimeError):
    """The demo could not tell its story; the message says what is missing."""


def _contracts(catalog: Catalog) -> list[Contract]:
    contracts, problems = validate_paths([CONTRACTS_DIR], catalog)
    if problems:
        raise DemoError("the example contracts are invalid:\n" + "\n".join(map(str, problems)))
    return contracts


async def _enrol_and_consent(config: Settings, by_id: dict[str, Contract],
                             persons: list[str], firms: list[str],
                             followed_by: dict[str, int]) -> list[str]:
    """Populations and consents as administrations and citizens would record them; how many
    subjects each enrolled contract follows goes into ``followed_by``."""
    story = []
    lyon, idfm, cd69 = (by_id["lyon-cantine-2026"], by_id["idfm-tarif-solidarite"],
                        by_id["cd69-aide-etudiants"])
    for contract, followed in ((lyon, persons[:8]), (idfm, persons[4:12]), (cd69, persons[:10])):
        await set_population(config, contract, resolve(config, followed), True)
        followed_by[contract.id] = len(followed)
        story.append(f"{contract.subscriber} follows {len(followed)} persons under {contract.id}")
    await set_consent(config, lyon, resolve(config, persons[:6]), "granted",
                      "online_portal")
    await set_consent(config, lyon, resolve(config, persons[5:6]), "withdrawn",
                      "online_portal")
    story.append("6 families consented to the canteen pricing online; 1 then withdrew")
    await set_consent(config, cd69, resolve(config, persons[9:10]), "withdrawn", "counter")
    story.append("1 student objected at the département's counter")
    story.append(f"the public buyer follows all companies ({len(firms)} in this demo)")
    return story


async def _publish(actors: Actors, catalog: Catalog, persons: list[str],
                   firms: list[str], seed: int) -> set[str]:
    """One change per dataset about each of the demo's persons and companies (so every
    consent, population and withheld case of the story shows up), each sent by its provider
    on its own connection; their event ids."""
    ids: set[str] = set()
    publishers: dict[str, Publisher] = {}
    async with contextlib.AsyncExitStack() as opened:
        for dataset in catalog.datasets():
            subjects = persons if dataset.subject_kind == "person" else firms
            for index, subject in enumerate(subjects):
                for event in generate(dataset.id, 1, seed + index, subjects=[subject]):
                    if event["source"] not in publishers:
                        publishers[event["source"]] = await opened.enter_async_context(
                            Publisher(actors.provider(event["source"]), catalog))
                    ids.add(await publishers[event["source"]].publish(event))
    return ids


async def _audit_of(config: Settings, serde: AvroSerde, catalog: Catalog, ids: set[str],
                    contract_ids: set[str], expected: int,
                    starts: dict[TopicPartition, int]) -> list[dict[str, Any]]:
    """The demo contracts' audit records of this run's events, once all ``expected`` are in."""
    reader = catalog.bus_record("audit").latest.parsed
    consumer = clients.consumer(config, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        consumer.assign(list(starts))
        for partition, offset in starts.items():
            consumer.seek(partition, offset)
        deadline = time.monotonic() + 120
        while len(found) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    audit = to_json(reader, serde.decode(record.value, reader)[1])
                    if audit["event_id"] in ids and audit["contract_id"] in contract_ids:
                        found.append(audit)
    finally:
        await consumer.stop()
    return found


async def _sample_delivery(config: Settings, serde: AvroSerde,
                           starts: dict[TopicPartition, int]) -> dict[str, Any] | None:
    """A delivery of this run (read from ``starts``, the delivery topic's ends before it
    published): a stack used before holds older ones, perhaps of an older format."""
    consumer = clients.consumer(config, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(starts))
        for partition, offset in starts.items():
            consumer.seek(partition, offset)
        for records in (await consumer.getmany(timeout_ms=3000, max_records=50)).values():
            for record in records:
                event = delivery_json(serde, list(record.headers), record.key, record.value)
                if event["type"] != "erasure_notice":
                    return event
    finally:
        await consumer.stop()
    return None


def _summary(contracts: list[Contract], audits: list[dict[str, Any]]) -> Table:
    table = Table(title="what each administration received")
    for column in ("contract", "subscriber", "consent / population", "delivered", "withheld"):
        table.add_column(column, overflow="fold")
    for contract in contracts:
        mine = [a for a in audits if a["contract_id"] == contract.id]
        delivered = sum(a["decision"] == "delivered" for a in mine)
        reasons = Counter(a["reason"] for a in mine if a["decision"] == "withheld")
        table.add_row(contract.id, contract.subscriber,
                      f"{contract.consent} / {contract.population}", f"[green]{delivered}[/]",
                      ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "0")
    return table


async def _prepare(stack: LocalStack, actors: Actors, contracts: list[Contract],
                   console: Console) -> None:
    """The operator's part: topics and schemas, the contracts, and on the secure stack the
    ACLs the contracts entitle."""
    operator = actors.operator
    await provision_catalog(operator, Catalog.load())
    with clients.schema_registry(operator) as registry:
        await ContractStore(operator, registry, Catalog.load()).apply(contracts)
    console.print(f"applied {len(contracts)} contracts from {CONTRACTS_DIR}")
    if stack.secure:
        plan = await synchronise(operator)
        console.print(f"each actor connects as itself ({', '.join(actors.principals)}), "
                      "with a fresh credential (any handed out before for these principals no "
                      f"longer works); ACLs from the contracts: {plan.summary()}")


async def _run(actors: Actors, catalog: Catalog, contracts: list[Contract],
               console: Console) -> None:
    operator = actors.operator
    persons = [p.nir for p in people(2026, 14)]
    firms = companies(2026, 6)
    followed_by: dict[str, int] = {}
    for line in await _enrol_and_consent(actors.gateway, {c.id: c for c in contracts},
                                         persons, firms, followed_by):
        console.print(f"  · {line}")
    starts = await end_offsets(operator, [AUDIT])
    sampled = await end_offsets(operator, [contracts[0].delivery_topic])
    ids = await _publish(actors, catalog, persons, firms, random.SystemRandom().randrange(2**31))
    console.print(f"published {len(ids)} change events from {len(catalog.providers())} "
                  "providers; routing…")
    # A contract decides about the subjects it follows: everyone, or those it enrolled.
    expected = sum(len(persons if catalog.dataset(d).subject_kind == "person" else firms)
                   if c.population == "all" else followed_by.get(c.id, 0)
                   for c in contracts for d in c.datasets)
    with clients.schema_registry(operator) as registry:
        audits = await _audit_of(operator, AvroSerde(registry), catalog, ids,
                                 {c.id for c in contracts}, expected, starts)
    console.print(_summary(contracts, audits))
    if len(audits) < expected:
        raise DemoError(f"only {len(audits)} of {expected} routing decisions arrived in time")
    reader = actors.subscriber(contracts[0].subscriber)
    with clients.schema_registry(reader) as registry:
        sample = await _sample_delivery(reader, AvroSerde(registry), sampled)
    if sample is not None:
        console.print(f"one delivery to {contracts[0].subscriber}, as its Kafka client reads it "
                      "(pseudonymous subject, only the contract's fields):")
        console.print_json(json.dumps(sample, ensure_ascii=False))


def run_demo(local: LocalStackSettings, console: Console) -> None:
    """Show the bus end to end on the local stack, telling the story on ``console``; stops
    whatever it started. A stack already running is used as it is; otherwise the secure
    stack is started, each actor on its own principal. :class:`DemoError` (or the stack's
    :class:`StackError`) when the story cannot be told."""
    stack = LocalStack(local)
    started_stack = not all(s.running for s in stack.status())
    if started_stack:
        stack = LocalStack(local, secure=True)
    start_showing(stack, console)
    catalog = Catalog.load()
    contracts = _contracts(catalog)
    worker: subprocess.Popen[bytes] | None = None
    try:
        actors = actors_of(stack, catalog, [c.subscriber for c in contracts], dict(os.environ))
        asyncio.run(_prepare(stack, actors, contracts, console))
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                  env=actors.worker, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        asyncio.run(_run(actors, catalog, contracts, console))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        if started_stack:
            stack.down(progress=console.print)


__all__ = ["DemoError", "StackError", "run_demo"]
