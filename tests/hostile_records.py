"""Hostile records for provider topics, generated from valid ones: what a careless or malicious
writer of a provider topic can put there without the edge.

Every record :meth:`HostileRecords.make` returns is wrong by construction, in one or two ways
drawn from :data:`DEFECTS`: headers missing, null, repeated, not UTF-8 or forged (another
provider, dataset or CloudEvents version, an id or time that is none, a raw NIR as subject); a
key that is missing or not the subject; a value that is no Avro at all, too short for the wire
format, truncated, framed with a schema id no registry holds, written with another dataset's or
a bus record's schema, or a tombstone; a fence header on something that is no fence. Many also
carry a raw NIR in a header the bus ignores. So the bus must dead-letter every one, route none,
and copy nothing of any.

The generator draws from a :class:`random.Random`: hypothesis hands it one in the unit suite
(``st.randoms()``), and the broker suite a seeded one, so that both try the same kinds of input.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from schemas.codec import DecodeError, Schema, decode
from schemas.identifiers import complete_nir
from streams.state.fences import FENCE_HEADER, FENCE_KEY

Headers = list[tuple[str, bytes | None]]
READ = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time")
"""The headers the router reads (``streams.routing.delivery``)."""
REQUIRED = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject")
UNKNOWN_ID = 2**31 - 2
"""A schema id in a registry's range that none holds (they count up from 1)."""


@dataclass(frozen=True)
class ProviderRecord:
    """A record as a provider writes it to its topic; ``defects`` say what is wrong with it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    defects: tuple[str, ...] = ()


    @classmethod
    def of(cls, record: Any) -> ProviderRecord:
        """The provider record of anything shaped like one (a router's ``SourceRecord``)."""
        return cls(record.topic, record.key, record.value, list(record.headers))


@dataclass(frozen=True)
class Valid:
    """A valid record to start from, with what is needed to tell a broken value from it."""

    record: ProviderRecord
    writer: Schema
    reader: Schema
    is_company: bool


def raw_nir(rng: random.Random) -> str:
    """A valid NIR (with its key), as a careless writer would leave it in a record."""
    number = (rng.choice("12") + f"{rng.randrange(100):02d}{rng.randrange(1, 13):02d}"
              f"{rng.randrange(1, 96):02d}{rng.randrange(1, 1000):03d}"
              f"{rng.randrange(1, 1000):03d}")
    return complete_nir(number)


def _text(rng: random.Random, size: int = 12) -> str:
    alphabet = "abcXYZ019 -_.:/+é\u00a0\u202e\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(size)))


def _set(headers: Headers, name: str, value: bytes | None) -> Headers:
    return [(n, value if n == name else v) for n, v in headers]


class HostileRecords:
    """Makes hostile records from valid ones (see the module's docstring)."""

    def __init__(self, providers: Sequence[str], datasets: Sequence[str],
                 foreign_values: Sequence[bytes]) -> None:
        """``providers`` and ``datasets``: ids of the catalog, to forge ``ce_source`` and
        ``ce_type`` with; ``foreign_values``: framed values of other datasets and bus records,
        each with the id the registry gave its schema."""
        self.providers = list(providers)
        self.datasets = list(datasets)
        self.foreign_values = list(foreign_values)

    def make(self, rng: random.Random, valid: Valid) -> ProviderRecord:
        """One hostile record made from ``valid``: one or two defects, and often a raw NIR in
        a header no one reads."""
        record = valid.record
        for name in rng.sample(sorted(DEFECTS), rng.choice((1, 1, 2))):
            record = DEFECTS[name](self, rng, valid, record)
            record = replace(record, defects=(*record.defects, name))
        if rng.random() < 0.5:
            noise = rng.choice(("x-note", "ce_partitionkey", "ce_contract", "traceparent"))
            record = replace(record, headers=[*record.headers, (noise, raw_nir(rng).encode())])
        return record

    # --- headers ---

    def _no_header(self, rng: random.Random, _: Valid, record: ProviderRecord) -> ProviderRecord:
        name = rng.choice(REQUIRED)
        return replace(record, headers=[(n, v) for n, v in record.headers if n != name])

    def _null_header(self, rng: random.Random, _: Valid,
                     record: ProviderRecord) -> ProviderRecord:
        return replace(record, headers=_set(record.headers, rng.choice(READ), None))

    def _header_twice(self, rng: random.Random, _: Valid,
                      record: ProviderRecord) -> ProviderRecord:
        name = rng.choice(READ)
        twice = dict(record.headers).get(name) if rng.random() < 0.5 else raw_nir(rng).encode()
        return replace(record, headers=[*record.headers, (name, twice)])

    def _header_not_utf8(self, rng: random.Random, _: Valid,
                         record: ProviderRecord) -> ProviderRecord:
        return replace(record, headers=_set(record.headers, rng.choice(READ),
                                            b"\xff" + rng.randbytes(rng.randrange(8))))

    def _forged_source(self, rng: random.Random, valid: Valid,
                       record: ProviderRecord) -> ProviderRecord:
        source = dict(valid.record.headers).get("ce_source")  # not a header already broken
        forged = rng.choice([p for p in self.providers if p.encode() != source] + ["", "CNAF"])
        return replace(record, headers=_set(record.headers, "ce_source", forged.encode()))

    def _forged_type(self, rng: random.Random, valid: Valid,
                     record: ProviderRecord) -> ProviderRecord:
        kind = dict(valid.record.headers).get("ce_type")
        forged = rng.choice([d for d in self.datasets if d.encode() != kind] + [_text(rng)])
        return replace(record, headers=_set(record.headers, "ce_type", forged.encode()))

    def _forged_version(self, rng: random.Random, _: Valid,
                        record: ProviderRecord) -> ProviderRecord:
        version = rng.choice(("0.3", "1.1", "2.0", "1.0 ", "")).encode()
        return replace(record, headers=_set(record.headers, "ce_specversion", version))

    def _bad_id(self, rng: random.Random, _: Valid, record: ProviderRecord) -> ProviderRecord:
        forged = rng.choice((f"d-{raw_nir(rng)}", "x" * 65, f"{_text(rng)} /"))
        return replace(record, headers=_set(record.headers, "ce_id", forged.encode()))

    def _bad_time(self, rng: random.Random, _: Valid, record: ProviderRecord) -> ProviderRecord:
        forged = rng.choice(("yesterday", "2026-09-01T08:00:00", "0001-01-01T00:00:00+01:00",
                             "2026-13-01T00:00:00Z", "9" * 50, f"x{_text(rng)}"))
        return replace(record, headers=_set(record.headers, "ce_time", forged.encode()))

    def _bad_subject(self, rng: random.Random, valid: Valid,
                     record: ProviderRecord) -> ProviderRecord:
        other_kind = "sr1_" + "ab" * 32 if valid.is_company else "356000000"
        subject = rng.choice((raw_nir(rng), other_kind, f"z{_text(rng)}")).encode()
        return replace(record, key=subject if rng.random() < 0.5 else record.key,
                       headers=_set(record.headers, "ce_subject", subject))

    # --- key ---

    def _bad_key(self, rng: random.Random, _: Valid, record: ProviderRecord) -> ProviderRecord:
        another = "sr1_" + rng.randbytes(32).hex()
        key = rng.choice((None, b"", another.encode(), raw_nir(rng).encode(),
                          (record.key or b"") + b"\n"))
        return replace(record, key=key)

    # --- value ---

    def _not_avro(self, rng: random.Random, _: Valid, record: ProviderRecord) -> ProviderRecord:
        value = bytes([rng.randrange(1, 256)]) + rng.randbytes(rng.randrange(40))
        return replace(record, value=rng.choice((value, b'{"echelon": "4"}', b"")))

    def _too_short(self, rng: random.Random, _: Valid, record: ProviderRecord) -> ProviderRecord:
        return replace(record, value=(record.value or b"")[:rng.randrange(5)])

    def _truncated(self, rng: random.Random, valid: Valid,
                   record: ProviderRecord) -> ProviderRecord:
        value = valid.record.value or b""
        cut = value[:5] + value[5:][:rng.randrange(max(1, len(value) - 5))]
        return replace(record, value=cut if self._broken(valid, cut) else value[:5])

    def _garbled(self, rng: random.Random, valid: Valid, record: ProviderRecord) -> ProviderRecord:
        value = (valid.record.value or b"")[:5] + rng.randbytes(rng.randrange(1, 60))
        return replace(record, value=value if self._broken(valid, value) else value[:5])

    def _unknown_schema(self, rng: random.Random, valid: Valid,
                        record: ProviderRecord) -> ProviderRecord:
        schema_id = rng.choice((UNKNOWN_ID, 2**31, 2**32 - 1, 0))
        return replace(record, value=struct.pack(">BI", 0, schema_id)
                       + (valid.record.value or b"")[5:])

    def _foreign_schema(self, rng: random.Random, valid: Valid,
                        record: ProviderRecord) -> ProviderRecord:
        own = valid.record.value
        return replace(record, value=rng.choice([v for v in self.foreign_values if v != own]))

    def _tombstone(self, _: random.Random, __: Valid, record: ProviderRecord) -> ProviderRecord:
        return replace(record, value=None)

    def _false_fence(self, rng: random.Random, _: Valid,
                     record: ProviderRecord) -> ProviderRecord:
        """The fence header on a value no fence has: the gate hands it on, to be refused."""
        value = rng.choice((b'{"bus.consents": {"0": 1e400}}', b"\xff" + rng.randbytes(8)))
        return replace(record, key=rng.choice((FENCE_KEY, record.key)), value=value,
                       headers=[*record.headers, (FENCE_HEADER, b"1")])

    @staticmethod
    def _broken(valid: Valid, value: bytes) -> bool:
        """Whether ``value`` can no longer be read as the valid record's dataset."""
        try:
            decode(valid.writer, valid.reader, value[5:])
        except DecodeError:
            return True
        return False


Defect = Callable[[HostileRecords, random.Random, Valid, ProviderRecord], ProviderRecord]
DEFECTS: dict[str, Defect] = {
    "no header": HostileRecords._no_header,
    "null header": HostileRecords._null_header,
    "header twice": HostileRecords._header_twice,
    "header not UTF-8": HostileRecords._header_not_utf8,
    "forged source": HostileRecords._forged_source,
    "forged type": HostileRecords._forged_type,
    "forged CloudEvents version": HostileRecords._forged_version,
    "not an event id": HostileRecords._bad_id,
    "not a time": HostileRecords._bad_time,
    "not a subject of the dataset's kind": HostileRecords._bad_subject,
    "key not the subject": HostileRecords._bad_key,
    "not Avro": HostileRecords._not_avro,
    "too short for the wire format": HostileRecords._too_short,
    "truncated Avro": HostileRecords._truncated,
    "garbled Avro": HostileRecords._garbled,
    "schema id no registry holds": HostileRecords._unknown_schema,
    "another dataset's or a bus record's schema": HostileRecords._foreign_schema,
    "tombstone": HostileRecords._tombstone,
    "fence header on no fence": HostileRecords._false_fence,
}
