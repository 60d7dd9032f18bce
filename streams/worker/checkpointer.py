"""When a worker signs its chains' heads: every so many audit records, or so many seconds.

A checkpoint names only heads the broker has acknowledged: the router's head hashes are taken
when a batch is routed, their offsets when the batch is written, and the checkpoint is signed
once the batch is settled, so it never vouches for a record that is not on ``bus.audit``.
Heads are forgotten at a rebalance, as the chains' heads themselves are: a chain given away
is extended by another worker, which signs it from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde, WriterSchema
from streams.audit.checkpoints import Checkpoint, Head, sign
from streams.kafka.topics import AUDIT, AUDIT_CHECKPOINTS
from streams.routing.records import Outgoing
from streams.settings import Settings

CHECKPOINT_SUBJECT = value_subject(AUDIT_CHECKPOINTS)


class Checkpointer:
    """The heads a worker has written since its last checkpoint, and when to sign them."""

    def __init__(self, settings: Settings, key: Ed25519PrivateKey, catalog: Catalog,
                 serde: AvroSerde, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = key
        self._serde = serde
        self._schema = catalog.bus_record("audit_checkpoint").latest
        self._every_records = settings.audit_checkpoint_records
        self._every_seconds = settings.audit_checkpoint_seconds
        self._clock = clock
        self._heads: dict[int, Head] = {}
        self._records = 0
        self._last = clock()

    @property
    def encoding(self) -> tuple[str, WriterSchema]:
        """The subject and schema a checkpoint is framed with (its id fetched before use)."""
        return CHECKPOINT_SUBJECT, self._schema

    def reset(self) -> None:
        """After a rebalance: the chains this worker extends may have changed."""
        self._heads.clear()
        self._records = 0

    def written(self, heads: Mapping[int, str], offsets: Mapping[tuple[str, int], int],
                records: int) -> Outgoing | None:
        """Note a settled batch (its chains' head hashes, where its records landed, how many
        audit records it wrote); the checkpoint record to write, when one is due."""
        for partition, record_hash in heads.items():
            offset = offsets.get((AUDIT, partition))
            if offset is not None:
                self._heads[partition] = Head(partition, offset, record_hash)
        self._records += records
        if not self._records or not self._heads or not self._due():
            return None
        checkpoint = sign(self._key, self._heads.values(), datetime.now(UTC))
        self._records = 0
        self._last = self._clock()
        return self._outgoing(checkpoint)

    def _due(self) -> bool:
        return (self._records >= self._every_records
                or self._clock() - self._last >= self._every_seconds)

    def _outgoing(self, checkpoint: Checkpoint) -> Outgoing:
        value = self._serde.encode_datum(CHECKPOINT_SUBJECT, self._schema,
                                         checkpoint.as_record())
        return Outgoing(AUDIT_CHECKPOINTS, checkpoint.key_id.encode(), value, [])
