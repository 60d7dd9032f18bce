"""``circulation reconcile`` on a routed run, then on each kind of gap injected.

It runs on a private stack: the gaps are written by hand to ``bus.audit`` and delivery topics,
which would break the session's audit chains and its other tests' deliveries. A real worker
routes a published file under three contracts (delivered, withheld, enrolled), with an erasure
notice on a delivery topic too, and reconcile must find it clean; then, the worker stopped,
each gap is written in turn and reconcile must report exactly the gaps written so far, each at
its place, and exit 1. Injected records are stamped two minutes in the past, as records whose
companions had all the time to be written.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.publisher import Publisher
from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.audit.chain import AuditChains
from streams.kafka import clients
from streams.kafka.topics import AUDIT
from streams.settings import Settings
from streams.state.contract import Contract
from tests.integration.private_stack import private_settings, run_cli

pytest_plugins = ("tests.integration.private_stack",)

CATALOG = Catalog.load()
DATASET = "quotient_familial"
FIELDS = ["quotient_familial", "annee", "mois"]
EVENTS = 30
PAST = timedelta(minutes=2)
ROUTED_WAIT = 180.0
Gaps = list[tuple[str, int, int, str | None, str]]


def _contract(name: str, consent: str, population: str) -> dict[str, Any]:
    return {"id": f"rc-{name}", "subscriber": f"rc-{name}", "subscriber_siret": "21690123100011",
            "purpose": "Tarification sociale de la restauration scolaire",
            "legal_basis": "RGPD art. 6.1.e ; essai de rapprochement",
            "datasets": {DATASET: FIELDS}, "consent": consent, "population": population,
            "retention": "P30D", "valid_from": "2026-01-01"}


CONTRACTS = {"delivers": _contract("delivers", "not_required", "all"),
             "withholds": _contract("withholds", "opt_in", "all"),
             "follows": _contract("follows", "not_required", "enrolled")}


def _reconcile(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = run_cli(env, "reconcile", "--json", timeout=120)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def _gaps(found: dict[str, Any]) -> Gaps:
    return [(g["topic"], g["partition"], g["offset"], g["contract"], g["missing"])
            for g in found["gaps"]]


@pytest.fixture
def worker(stack_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Brings the stack up with the contracts applied, then starts one routing worker."""
    assert run_cli(stack_env, "local", "up").returncode == 0
    assert run_cli(stack_env, "schemas", "register").returncode == 0
    folder = tmp_path / "contracts"
    folder.mkdir()
    for name, document in CONTRACTS.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    applied = run_cli(stack_env, "contracts", "apply", str(folder))
    assert applied.returncode == 0, applied.stderr
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"], cwd=tmp_path, stdout=log,
        stderr=subprocess.STDOUT,
        env={**stack_env, "CIRCULATION_STATE_DIR": str(tmp_path / "state"),
             "CIRCULATION_LOG_FORMAT": "json"})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)
        log.close()


def _events(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "generate", DATASET, "--count",
                           str(EVENTS), "--seed", "2112"], capture_output=True, text=True,
                          check=True)
    path = tmp_path / "events.jsonl"
    path.write_text(done.stdout, encoding="utf-8")
    return path, [json.loads(line) for line in done.stdout.splitlines()]


def _routed(env: dict[str, str], worker: subprocess.Popen[bytes]) -> tuple[int, dict[str, Any]]:
    """Reconcile until every published event is accounted (acknowledged by the worker)."""
    deadline = time.monotonic() + ROUTED_WAIT
    while True:
        assert worker.poll() is None, "the worker exited"
        code, found = _reconcile(env)
        if found["events"] >= EVENTS or time.monotonic() > deadline:
            return code, found
        time.sleep(3)


def test_a_routed_run_reconciles_clean_and_each_kind_of_gap_is_reported(
        stack_env: dict[str, str], worker: subprocess.Popen[bytes], tmp_path: Path) -> None:
    path, events = _events(tmp_path)
    enrolled = run_cli(stack_env, "population", "add", "rc-follows", events[0]["subject"])
    assert enrolled.returncode == 0, enrolled.stderr
    published = run_cli(stack_env, "publish", str(path))
    assert published.returncode == 0, published.stderr
    withdrawn = run_cli(stack_env, "consent", "withdraw", "rc-delivers", events[2]["subject"])
    assert withdrawn.returncode == 0, withdrawn.stderr  # an erasure notice: no delivery

    code, found = _routed(stack_env, worker)
    assert (code, found["gaps"]) == (0, []), found
    assert found["events"] == EVENTS
    assert found["outcomes"] == {"delivered": EVENTS + 1, "no_consent": EVENTS}
    assert found["deliveries"] == EVENTS + 1
    assert found["clean"] is True
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)

    settings = private_settings(stack_env)
    expected: Gaps = []
    for step in STEPS:
        expected = sorted([*expected, *asyncio.run(_inject(settings, step, events[1]))])
        code, found = _reconcile(stack_env)
        assert (code, _gaps(found)) == (1, expected), f"after {step}: {found}"
    assert found["duplicates"] == {"outcomes": 1, "deliveries": 0}

    table = run_cli(stack_env, "reconcile", "--since", "30m")
    assert table.returncode == 1
    assert "gaps found" in table.stdout
    refused = run_cli(stack_env, "reconcile", "--since", "soon")
    assert refused.returncode == 2
    assert "--since: a duration is a whole number and a unit" in refused.stderr


STEPS = ("delivery_without_audit", "decision_without_delivery", "unrouted_event",
         "delivery_without_event")
"""Each kind of gap, written in this order (names of :class:`_Writer`'s methods)."""


async def _inject(settings: Settings, step: str, event: dict[str, Any]) -> Gaps:
    """Write the gap ``step`` names, about ``event`` where it needs one; return the gaps it
    must add to the report."""
    registry = SchemaRegistry(settings.schema_registry_url)
    producer = clients.producer(settings)
    await producer.start()
    try:
        writer = _Writer(producer, AvroSerde(registry), settings)
        written: Gaps = await getattr(writer, step)(event)
        return written
    finally:
        await producer.stop()
        registry.close()


class _Writer:
    """Writes records as a faulty bus would, stamped :data:`PAST` ago."""

    def __init__(self, producer: Any, serde: AvroSerde, settings: Settings) -> None:
        self.producer = producer
        self.serde = serde
        self.settings = settings
        self.at = datetime.now(UTC) - PAST
        self.delivers = Contract.checked(CONTRACTS["delivers"], CATALOG)

    async def _send(self, topic: str, value: bytes, headers: list[tuple[str, bytes]],
                    key: bytes | None = None) -> tuple[int, int]:
        sent = await self.producer.send_and_wait(
            topic, value, key=key, headers=headers,
            timestamp_ms=int(self.at.timestamp() * 1000))
        return sent.partition, sent.offset

    async def _delivery(self, delivery_id: str) -> tuple[int, int]:
        headers = [("ce_specversion", b"1.0"), ("ce_id", delivery_id.encode()),
                   ("ce_source", b"cnaf"), ("ce_type", DATASET.encode()),
                   ("ce_contract", self.delivers.id.encode())]
        return await self._send(self.delivers.delivery_topic, b"\x00", headers, b"ps2_x")

    async def _decision(self, event: dict[str, Any], event_id: str, subject_ref: str,
                        delivery_id: str) -> tuple[int, int]:
        record = AuditChains().record(
            0, event_id=event_id, contract_id=self.delivers.id,
            subscriber=self.delivers.subscriber, provider=str(event["source"]), dataset=DATASET,
            subject_ref=subject_ref, reason=None, fields_delivered=tuple(FIELDS),
            decided_at=self.at, delivery_id=delivery_id)
        value = self.serde.encode_datum(value_subject(AUDIT), CATALOG.bus_record("audit").latest,
                                        {**record, "fields_delivered": list(FIELDS)})
        return await self._send(AUDIT, value, [], subject_ref.encode())

    async def _reference(self, event: dict[str, Any]) -> tuple[str, str]:
        async with Publisher(self.settings) as publisher:
            prepared = publisher.prepare(event)
        return prepared.topic, prepared.key.decode()

    async def delivery_without_audit(self, _: dict[str, Any]) -> Gaps:
        partition, offset = await self._delivery(str(uuid.uuid4()))
        return [(self.delivers.delivery_topic, partition, offset, self.delivers.id,
                 "audit record")]

    async def decision_without_delivery(self, event: dict[str, Any]) -> Gaps:
        _, reference = await self._reference(event)
        partition, offset = await self._decision(event, str(event["id"]), reference,
                                                 str(uuid.uuid4()))
        return [(AUDIT, partition, offset, self.delivers.id, "delivery")]

    async def unrouted_event(self, _: dict[str, Any]) -> Gaps:
        event = {**_one_more_event(), "id": str(uuid.uuid4())}
        async with Publisher(self.settings) as publisher:
            prepared = publisher.prepare(event)
        partition, offset = await self._send(prepared.topic, prepared.value,
                                             list(prepared.headers), prepared.key)
        return [(prepared.topic, partition, offset, f"rc-{name}", "outcome")
                for name in ("delivers", "withholds")]

    async def delivery_without_event(self, event: dict[str, Any]) -> Gaps:
        _, reference = await self._reference(event)
        delivery_id = str(uuid.uuid4())
        await self._decision(event, f"ghost-{uuid.uuid4().hex[:8]}", reference, delivery_id)
        partition, offset = await self._delivery(delivery_id)
        return [(self.delivers.delivery_topic, partition, offset, self.delivers.id, "event")]


def _one_more_event() -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "generate", DATASET, "--count",
                           "1", "--seed", "2113"], capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))
