"""The Avro body of audit records, written by parts that are mostly already encoded.

A routed event gives one audit record per contract, so the audit record is the routing worker's
most frequent write; encoding it whole with fastavro was a visible share of the worker's main
thread, while most of a record repeats from one record to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

import fastavro

from schemas.codec import encode
from schemas.projection import field_names, project_schema

AUDIT_PARTS = (("event_id",), ("delivery_id",), ("contract_id", "subscriber"),
               ("provider", "dataset"), ("subject_ref",), ("file_day", "deliveries_deleted"),
               ("decision", "reason", "decided_at", "fields_delivered", "hash_version"),
               ("replay",), ("change", "erasure_reason", "channel", "principal", "evidence_ref",
                             "state_topic", "state_partition", "state_offset"),
               ("previous_hash",), ("record_hash",))
"""The audit record's fields in schema order, in the parts :class:`AuditEncoder` writes: one
string field alone (``delivery_id`` may be null), or a group whose values repeat (per contract,
per topic, per verdict; a deletion's day and count, and a state change's fields, null in every
routing decision: one memo hit there, and state changes are rare enough for their memo to
churn). A schema version without ``delivery_id`` (version 2, whose
encoding is hashed form 2), without the deletion's fields or without ``replay`` (versions 2 and
3), or without the state change's fields (versions 2 to 4) is written by the other parts. The
last part, ``record_hash``, is the hash of the encoding of all the others
(:meth:`AuditEncoder.hashed`)."""
PART_MEMO_SIZE = 4096
"""Encoded groups remembered per part before its memo starts afresh (bounds its memory)."""

_STRINGS = ("string", ["null", "string"])
"""The types of a field written alone: a string, or a string or null."""

_Part = tuple[Callable[[Mapping[str, Any]], Any], tuple[str, ...], Any, bool, dict[Any, bytes]]


class AuditEncoder:
    """The Avro body of audit records, written by parts that are mostly already encoded.

    Avro writes a record as the concatenation of its fields' encodings, so the record is written
    part by part (:data:`AUDIT_PARTS`), each by fastavro under a schema made of exactly those
    fields of the audit schema:

    - a group (the contract and its subscriber, the provider and dataset, the verdict with its
      instant and fields) is encoded once and remembered;
    - a string alone (event id, delivery id, subject reference, the two hashes, which change
      with every record or event) is written as fastavro's prefix for its length in bytes,
      remembered per length, then its UTF-8 bytes: Avro's prefix of a string is its length
      (after its union branch, for a string that may be null) and nothing else; a null is
      encoded once and remembered like a group.

    The result is byte for byte fastavro's encoding of the whole record; a property test holds
    it to that. Since ``record_hash`` comes last, the encoding of everything before it is the
    record's hashed form (:meth:`hashed`), written by the same parts.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        names = field_names(schema)
        parts = [part for part in AUDIT_PARTS if part[0] in names]
        if tuple(name for part in parts for name in part) != names:
            raise ValueError("the audit schema's fields are not the ones AuditEncoder writes "
                             f"in this order: {list(names)}")
        types = {f["name"]: f["type"] for f in schema["fields"]}
        self._parts: list[_Part] = [
            (itemgetter(*part), part, _part_schema(schema, part),
             len(part) == 1 and types[part[0]] in _STRINGS, {})
            for part in parts]

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The Avro body of ``record`` (the mapping :meth:`~streams.audit.chain.AuditChains.record`
        returns; its values must be hashable, so ``fields_delivered`` is a tuple)."""
        return b"".join(self._written(record, self._parts))

    def hashed(self, record: Mapping[str, Any]) -> bytes:
        """The Avro encoding of every field of ``record`` but ``record_hash``: the bytes its
        hash covers in the form this schema's version names (2 to 5)."""
        return b"".join(self._written(record, self._parts[:-1]))

    @staticmethod
    def _written(record: Mapping[str, Any], parts: list[_Part]) -> list[bytes]:
        body: list[bytes] = []
        for key_of, names, schema, is_string, memo in parts:
            text = key_of(record) if is_string else None
            if text is not None:
                value = text.encode()
                prefix = memo.get(len(value))
                if prefix is None:
                    prefix = memo[len(value)] = _length_prefix(schema, names[0], len(value))
                body += (prefix, value)
                continue
            key = key_of(record)
            encoded = memo.get(key)
            if encoded is None:
                if len(memo) >= PART_MEMO_SIZE:
                    memo.clear()
                encoded = memo[key] = encode(schema, {name: record[name] for name in names})
            body.append(encoded)
        return body


def _length_prefix(schema: Any, name: str, length: int) -> bytes:
    """What fastavro writes before a string of ``length`` bytes in the one-field ``schema``
    (its union branch first, when the field may also be null)."""
    value = "0" * length
    written = encode(schema, {name: value})
    if not written.endswith(value.encode()):
        raise ValueError(f"{name} is not written as a length-prefixed string")
    return written[:len(written) - length]


def _part_schema(schema: Mapping[str, Any], part: tuple[str, ...]) -> Any:
    """The audit schema projected on ``part``, parsed (names do not change Avro's bytes)."""
    return fastavro.parse_schema(project_schema(
        schema, part, namespace=str(schema["namespace"]),
        doc="One part of the audit record, encoded apart by AuditEncoder."))
