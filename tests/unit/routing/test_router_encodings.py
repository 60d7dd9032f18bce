"""Everything the router will frame with is named before it routes, so that nothing it does on
the worker's event loop asks the registry.

The worker fetches, off its loop, the writer schemas a batch names and the registry id of every
subject and schema :meth:`Router.encodings` lists (audit records, dead letters, each contract's
deliveries); routing then finds all of it cached. A record naming an id the registry does not
hold is a dead letter, without asking again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from schemas.codec import frame
from schemas.registry import UnknownSchemaId
from schemas.serde import AvroSerde
from streams.kafka.topics import AUDIT, DLQ
from streams.privacy.pseudonyms import Pseudonymiser
from streams.routing.router import Router
from streams.state.bus_state import BusState
from streams.state.directory import MemoryDirectory
from tests.unit.memory_registry import MemoryRegistry
from tests.unit.routing.test_reference_directory import FOLLOWED, STRANGER, _contract
from tests.unit.routing.test_rules import CATALOG, NOW, SECRET, _record

UNKNOWN_ID = 4242


class ClosableRegistry(MemoryRegistry):
    """A registry that fails the test once closed, as a call on the event loop would freeze it;
    it says an id it does not hold is unknown, as the real one does."""

    closed = False

    def _ask(self) -> None:
        assert not self.closed, "the registry was asked while routing"

    def register(self, subject: str, schema: Any) -> int:
        self._ask()
        return super().register(subject, schema)

    def lookup(self, subject: str, schema: Any) -> int | None:
        self._ask()
        return super().lookup(subject, schema)

    def schema(self, schema_id: int) -> Any:
        self._ask()
        if schema_id not in self._schemas:
            raise UnknownSchemaId(f"no schema with id {schema_id} in the registry")
        return super().schema(schema_id)


async def test_once_its_encodings_and_writers_are_fetched_routing_asks_the_registry_nothing(
        ) -> None:
    registry = ClosableRegistry()
    provider = AvroSerde(registry)  # type: ignore[arg-type]
    records = [_record(provider, "quotient_familial", subject, seed, offset)[0]
               for offset, (seed, subject) in enumerate([(5, FOLLOWED), (6, STRANGER)])]
    records.append(replace(records[0], offset=2, value=frame(UNKNOWN_ID, b"\x00")))
    contracts = [_contract(1, "all"), _contract(2, "all")]
    state = BusState(contracts={c.id: c for c in contracts}, directory=MemoryDirectory())
    serde = AvroSerde(registry)  # type: ignore[arg-type]
    router = Router(CATALOG, serde, Pseudonymiser(SECRET))

    await serde.fetch_writers(r.value for r in records)
    await serde.fetch_ids(router.encodings(state, NOW))
    registry.closed = True
    out = router.route(records, state, now=NOW)

    topics = [o.topic for o in out]
    assert topics.count(AUDIT) == 4, "two contracts decide each of the two valid events"
    assert sorted(set(topics) - {AUDIT, DLQ}) == sorted(c.delivery_topic for c in contracts)
    assert topics.count(DLQ) == 1, "the record naming an unknown id is a dead letter"
