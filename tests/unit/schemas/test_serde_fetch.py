"""An asynchronous process fetches schemas off its event loop and waits out a silent registry.

The routing worker decodes and encodes synchronously; what the serde lacks is fetched first, in a
thread (:meth:`AvroSerde.fetch_writers`, :meth:`AvroSerde.fetch_ids`). A registry that does not
answer is asked again until it does, while the loop keeps running; an id the registry says it
does not hold is refused at decoding, without asking again; a refusal is raised, not waited out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from schemas import serde as serde_module
from schemas.catalog import Catalog
from schemas.codec import DecodeError, encode, frame, from_json
from schemas.registry import RegistryRefused, RegistryUnavailable, UnknownSchemaId
from schemas.serde import AvroSerde
from streams.dev.synthetic import generate
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
DATASET = CATALOG.dataset("statut_etudiant_boursier")
SUBJECT = f"provider.cnous.{DATASET.id}-value"
STALL_S = 0.15
"""How long each unanswered request of the stalling registry blocks its caller."""


class StallingRegistry(MemoryRegistry):
    """Blocks each request for a while and fails the first ``silent`` of them, as a registry
    that is down (or stopped) does to a synchronous client; counts every request."""

    def __init__(self, silent: int = 0, failure: Exception | None = None) -> None:
        super().__init__()
        self.silent = silent
        self.failure = failure or RegistryUnavailable("schema registry unreachable: ReadTimeout")
        self.requests = 0

    def _ask(self) -> None:
        self.requests += 1
        time.sleep(STALL_S)  # a blocking client call: on the loop, it would freeze it
        if self.silent > 0:
            self.silent -= 1
            raise self.failure

    def schema(self, schema_id: int) -> Any:
        self._ask()
        if schema_id not in self._schemas:
            raise UnknownSchemaId(f"no schema with id {schema_id} in the registry")
        return super().schema(schema_id)

    def lookup(self, subject: str, schema: Any) -> int | None:
        self._ask()
        return super().lookup(subject, schema)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serde_module, "FIRST_RETRY_S", 0.01)
    monkeypatch.setattr(serde_module, "MAX_RETRY_S", 0.02)


def _framed_value(registry: MemoryRegistry) -> bytes:
    schema = DATASET.latest
    datum = from_json(schema.parsed, next(iter(generate(DATASET.id, 1, 11)))["data"])
    return frame(registry.register(SUBJECT, schema.text), encode(schema.parsed, datum))


async def _largest_pause(work: Any) -> float:
    """Run ``work`` while a ticker runs on the same loop; the longest the ticker was held."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        await work
    finally:
        ticker.cancel()
    return max(gaps)


async def test_writer_schemas_are_fetched_off_the_loop_waiting_out_a_silent_registry() -> None:
    registry = StallingRegistry(silent=3)
    value = _framed_value(registry)
    serde = AvroSerde(registry)  # type: ignore[arg-type]

    pause = await _largest_pause(serde.fetch_writers([value, b"not framed", None]))

    assert registry.requests == 4, "asked until it answered, once per attempt"
    assert pause < STALL_S / 2, f"the event loop was held {pause:.3f} s by a registry request"
    asked = registry.requests
    assert serde.decode(value, DATASET.latest.parsed)[1]["est_boursier"] is not None
    assert registry.requests == asked, "decoding asked the registry again"


async def test_an_id_the_registry_does_not_hold_is_refused_without_asking_again() -> None:
    registry = StallingRegistry()
    value = frame(4242, b"\x02")
    serde = AvroSerde(registry)  # type: ignore[arg-type]

    await serde.fetch_writers([value])
    assert not serde.unknown_writers([value]), "an id known to be missing is not asked again"
    with pytest.raises(DecodeError, match="no schema with id 4242"):
        serde.decode(value)
    assert registry.requests == 1


async def test_ids_to_encode_with_are_fetched_off_the_loop() -> None:
    registry = StallingRegistry(silent=2)
    registry.register(SUBJECT, DATASET.latest.text)
    serde = AvroSerde(registry)  # type: ignore[arg-type]

    pause = await _largest_pause(serde.fetch_ids([(SUBJECT, DATASET.latest)]))

    assert pause < STALL_S / 2, f"the event loop was held {pause:.3f} s by a registry request"
    assert not serde.unknown_ids([(SUBJECT, DATASET.latest)])
    asked = registry.requests
    serde.framed(SUBJECT, DATASET.latest, b"")
    assert registry.requests == asked, "encoding asked the registry again"


async def test_a_refusal_is_raised_not_waited_out() -> None:
    registry = StallingRegistry(silent=1, failure=RegistryRefused("HTTP 401"))
    value = _framed_value(registry)
    serde = AvroSerde(registry)  # type: ignore[arg-type]

    with pytest.raises(RegistryRefused):
        await serde.fetch_writers([value])
    assert registry.requests == 1


async def test_ids_known_to_be_missing_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer naming ever new ids does not grow the serde's memory past the bound: past it,
    they are forgotten at the next fetch, and one named again is asked again."""
    monkeypatch.setattr(serde_module, "MAX_ABSENT_IDS", 2)
    registry = StallingRegistry()
    serde = AvroSerde(registry)  # type: ignore[arg-type]

    await serde.fetch_writers([frame(i, b"") for i in (1, 2, 3)])
    assert not serde.unknown_writers([frame(1, b"")])
    await serde.fetch_writers([frame(4, b"")])
    assert serde.unknown_writers([frame(i, b"") for i in (1, 2, 3, 4)]) == {1, 2, 3}
    with pytest.raises(DecodeError, match="no schema with id 4"):
        serde.decode(frame(4, b""))
    assert registry.requests == 4
