"""Signed checkpoints of the audit chains: what makes removing or rewriting their newest records
detectable.

A hash chain proves that no record inside it was changed, removed, inserted or reordered, not
that its newest records are all there: drop the last ten, or rewrite them with freshly computed
hashes, and what remains is a valid chain. X-Road's message log answers with signed,
time-stamped checkpoints, and so does the bus: at a regular interval each routing worker signs,
with its Ed25519 key, the head of every chain it extends (the partition, offset and hash of the
chain's newest record) and writes the checkpoint to ``bus.audit.checkpoints``. A verifier holding
the public key then knows, for each checkpoint, a record that must be at that offset with that
hash: none there means the chain was truncated, another one that it was rewritten.

The signed form is canonical JSON (keys sorted, no spaces, UTF-8) of the key's id, the signing
time in milliseconds and the heads sorted by partition, so that any verifier recomputes it with
any JSON library and the key's public half.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.privacy.secret import SecretRefused, generate_secret_file, read_owner_only
from streams.settings import Settings

SETTING = "CIRCULATION_AUDIT_SIGNING_KEY_FILE"


@dataclass(frozen=True, order=True)
class Head:
    """The newest record of one chain when the checkpoint was signed."""

    partition: int
    offset: int
    record_hash: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: at ``signed_at``, these were the heads of these chains."""

    key_id: str
    signed_at: datetime
    heads: tuple[Head, ...]
    signature: bytes

    def signed_form(self) -> bytes:
        """The bytes the signature covers (see the module's documentation)."""
        return signed_form(self.key_id, self.signed_at, self.heads)

    def as_record(self) -> dict[str, Any]:
        """The checkpoint as its Avro record on ``bus.audit.checkpoints``."""
        return {"key_id": self.key_id, "signed_at": self.signed_at,
                "heads": [{"partition": h.partition, "offset": h.offset,
                           "record_hash": h.record_hash} for h in self.heads],
                "signature": self.signature}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Checkpoint:
        """Read back :meth:`as_record` (or its JSON export, the signature in base64)."""
        signature = record["signature"]
        signed_at = record["signed_at"]
        return cls(
            key_id=str(record["key_id"]),
            signed_at=(signed_at if isinstance(signed_at, datetime)
                       else datetime.fromtimestamp(int(signed_at) / 1000, UTC)),
            heads=tuple(sorted(Head(int(h["partition"]), int(h["offset"]),
                                    str(h["record_hash"])) for h in record["heads"])),
            signature=(signature if isinstance(signature, bytes)
                       else base64.b64decode(signature, validate=True)))

    def as_json(self) -> dict[str, Any]:
        """The checkpoint as exported for keeping outside Kafka: one JSON object per line."""
        return {**self.as_record(), "signed_at": _millis(self.signed_at),
                "signature": base64.b64encode(self.signature).decode("ascii")}


def signed_form(key_id: str, signed_at: datetime, heads: Iterable[Head]) -> bytes:
    """Canonical JSON of what a checkpoint states."""
    return json.dumps({"key_id": key_id, "signed_at": _millis(signed_at),
                       "heads": [[h.partition, h.offset, h.record_hash] for h in sorted(heads)]},
                      sort_keys=True, separators=(",", ":")).encode()


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def key_id(public: Ed25519PublicKey) -> str:
    """The hex SHA-256 of the raw public key: which key signed, without carrying the key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(key: Ed25519PrivateKey, heads: Iterable[Head], at: datetime) -> Checkpoint:
    """A checkpoint of ``heads`` signed with ``key`` at ``at`` (millisecond precision, as
    the record keeps it)."""
    at = datetime.fromtimestamp(_millis(at) / 1000, UTC)
    ordered = tuple(sorted(heads))
    identity = key_id(key.public_key())
    return Checkpoint(identity, at, ordered, key.sign(signed_form(identity, at, ordered)))


def signature_holds(public: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    """Whether ``checkpoint`` was signed by the private half of ``public``, as it reads."""
    if checkpoint.key_id != key_id(public):
        return False
    try:
        public.verify(checkpoint.signature, checkpoint.signed_form())
    except InvalidSignature:
        return False
    return True


def public_key_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), what ``audit public-key`` prints."""
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def read_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; :class:`ValueError` for anything else."""
    loaded = serialization.load_pem_public_key(pem)
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return loaded


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The workers' checkpoint signing key, from its owner-only file; on a PLAINTEXT bus
    without one, a development key generated once under ``cache_dir``.
    :class:`~streams.privacy.secret.SecretRefused` names the setting and the problem."""
    path = settings.audit_signing_key_file
    if path is None:
        if settings.security_protocol != "PLAINTEXT":
            raise SecretRefused(SETTING, "unset, and CIRCULATION_SECURITY_PROTOCOL is "
                                f"{settings.security_protocol}: a local key is generated on "
                                "a PLAINTEXT bus only")
        path = settings.cache_dir / "secrets" / "audit-signing-key.pem"
        generate_secret_file(path, new_key_pem)
    text = read_owner_only(SETTING, path, "key file").get_secret_value()
    try:
        loaded = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SecretRefused(SETTING, f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SecretRefused(SETTING, f"{path} holds a key of another kind than Ed25519")
    return loaded


def new_key_pem() -> str:
    """A fresh Ed25519 private key as unencrypted PKCS#8 PEM, for a key file."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode("ascii")


@dataclass(frozen=True)
class PartitionRecords:
    """What a verifier read of one partition of ``bus.audit``: where it starts (records before
    were removed by retention), where it ends, and each record's hash by offset."""

    start: int
    end: int
    hashes: Mapping[int, str]


@dataclass(frozen=True)
class CheckpointProblem:
    """A checkpoint that the trail as read contradicts, and how."""

    signed_at: datetime
    partition: int | None
    offset: int | None
    problem: str

    def __str__(self) -> str:
        where = ("" if self.partition is None
                 else f" audit partition {self.partition}, offset {self.offset}:")
        return f"checkpoint signed at {self.signed_at.isoformat()}:{where} {self.problem}"


@dataclass
class CheckpointReport:
    """What checking the trail against the checkpoints found."""

    checkpoints: int = 0
    beyond_retention: int = 0
    problems: list[CheckpointProblem] = field(default_factory=list)
    uncovered: dict[int, int] = field(default_factory=dict)
    """Per partition, the records newer than its newest signed head: not proven yet."""


def check_against(checkpoints: Iterable[Checkpoint], public: Ed25519PublicKey,
                  partitions: Mapping[int, PartitionRecords],
                  retention: timedelta | None = None,
                  now: datetime | None = None) -> CheckpointReport:
    """Every head every checkpoint signed must be in the trail as read: truncation and a
    rewritten tail show here, however valid the chain's own hashes. A head older than its
    partition's start may have been removed by retention, and then proves nothing either way,
    only when it was signed longer ago than ``retention`` (the trail's ``retention.ms``; None
    for a trail kept forever, which retention never shortens): otherwise someone deleted it."""
    now = now or datetime.now(UTC)
    report = CheckpointReport()
    newest: dict[int, int] = {}
    for checkpoint in checkpoints:
        report.checkpoints += 1
        if not signature_holds(public, checkpoint):
            report.problems.append(CheckpointProblem(
                checkpoint.signed_at, None, None, "its signature does not hold under the "
                "public key given: forged or altered"))
            continue
        for head in checkpoint.heads:
            found = _head_problem(head, partitions.get(head.partition))
            if found == "retention" and (retention is None
                                         or now - checkpoint.signed_at < retention):
                found = ("the record signed here is gone, yet the trail's retention could not "
                         "have removed it yet: records were deleted")
            if found == "retention":
                report.beyond_retention += 1
            elif found is not None:
                report.problems.append(CheckpointProblem(
                    checkpoint.signed_at, head.partition, head.offset, found))
            else:
                newest[head.partition] = max(newest.get(head.partition, -1), head.offset)
    for partition, records in sorted(partitions.items()):
        covered_to = max(newest.get(partition, records.start - 1), records.start - 1)
        report.uncovered[partition] = max(records.end - 1 - covered_to, 0)
    return report


def _head_problem(head: Head, records: PartitionRecords | None) -> str | None:
    if records is None:
        return "no such partition of the audit trail"
    if head.offset < records.start:
        return "retention"
    if head.offset >= records.end:
        return (f"the chain ends at offset {records.end - 1}: the records up to this signed "
                "head were removed (truncated)")
    found = records.hashes.get(head.offset)
    if found is None:
        return "no audit record at the signed head's offset: removed"
    if found != head.record_hash:
        return "the record there is not the one signed: the chain was rewritten"
    return None
