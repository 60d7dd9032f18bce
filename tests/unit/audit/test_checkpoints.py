"""Signed checkpoints: a truncated or rewritten tail is found however valid its hashes, a forged
checkpoint is refused, retention is not tampering, and the key is refused unless owner-only."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streams.audit.checkpoints import (
    Checkpoint,
    Head,
    PartitionRecords,
    check_against,
    key_id,
    public_key_pem,
    read_public_key,
    sign,
    signature_holds,
    signing_key,
)
from streams.privacy.secret import SecretRefused
from streams.settings import Settings

AT = datetime(2026, 12, 3, 12, 0, 0, 123000, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def _hash(partition: int, offset: int, variant: str = "") -> str:
    return hashlib.sha256(f"{partition}/{offset}{variant}".encode()).hexdigest()


def _trail(ends: dict[int, int], start: int = 0) -> dict[int, PartitionRecords]:
    return {p: PartitionRecords(start, end, {o: _hash(p, o) for o in range(start, end)})
            for p, end in ends.items()}


def _checkpoint(*heads: tuple[int, int]) -> Checkpoint:
    return sign(KEY, [Head(p, o, _hash(p, o)) for p, o in heads], AT)


def test_a_checkpoint_round_trips_through_its_record_and_its_json_export() -> None:
    made = _checkpoint((1, 9), (0, 4))
    assert [h.partition for h in made.heads] == [0, 1]
    assert Checkpoint.from_record(made.as_record()) == made
    exported = json.loads(json.dumps(made.as_json()))
    assert Checkpoint.from_record(exported) == made
    assert signature_holds(KEY.public_key(), Checkpoint.from_record(exported))


def test_a_changed_head_or_time_or_another_key_breaks_the_signature() -> None:
    made = _checkpoint((0, 4))
    other = Ed25519PrivateKey.generate()
    moved = Checkpoint(made.key_id, made.signed_at, (Head(0, 3, _hash(0, 3)),), made.signature)
    later = Checkpoint(made.key_id, AT.replace(second=1), made.heads, made.signature)
    assert signature_holds(KEY.public_key(), made)
    assert not signature_holds(KEY.public_key(), moved)
    assert not signature_holds(KEY.public_key(), later)
    assert not signature_holds(other.public_key(), made)
    forged = sign(other, made.heads, AT)
    assert forged.key_id != made.key_id
    assert not signature_holds(KEY.public_key(), forged)


def test_an_intact_trail_satisfies_every_checkpoint_and_says_what_is_not_covered_yet() -> None:
    report = check_against([_checkpoint((0, 4), (1, 2)), _checkpoint((0, 7))],
                           KEY.public_key(), _trail({0: 10, 1: 3, 2: 5}))
    assert report.problems == []
    assert report.checkpoints == 2
    assert report.uncovered == {0: 2, 1: 0, 2: 5}


def test_a_truncated_tail_is_found() -> None:
    trail = _trail({0: 6})  # the signed head at offset 7 and the records before it are gone
    report = check_against([_checkpoint((0, 4)), _checkpoint((0, 7))], KEY.public_key(), trail)
    (problem,) = report.problems
    assert (problem.partition, problem.offset) == (0, 7)
    assert "truncated" in problem.problem
    assert "ends at offset 5" in str(problem)


def test_a_tail_rewritten_with_valid_hashes_is_found() -> None:
    trail = _trail({0: 10})
    rewritten = {o: (_hash(0, o, "forged") if o >= 6 else h)
                 for o, h in trail[0].hashes.items()}
    trail[0] = PartitionRecords(0, 10, rewritten)
    report = check_against([_checkpoint((0, 4)), _checkpoint((0, 8))], KEY.public_key(), trail)
    (problem,) = report.problems
    assert (problem.partition, problem.offset) == (0, 8)
    assert "rewritten" in problem.problem


def test_a_forged_checkpoint_is_reported_and_proves_nothing() -> None:
    forged = sign(Ed25519PrivateKey.generate(), [Head(0, 9, _hash(0, 9))], AT)
    report = check_against([forged], KEY.public_key(), _trail({0: 10}))
    (problem,) = report.problems
    assert "signature does not hold" in problem.problem
    assert report.uncovered == {0: 10}, "a forged checkpoint covers nothing"


def test_retention_is_not_tampering() -> None:
    trail = _trail({0: 20}, start=12)
    report = check_against([_checkpoint((0, 4)), _checkpoint((0, 15))], KEY.public_key(), trail,
                           retention=timedelta(days=1), now=AT + timedelta(days=2))
    assert report.problems == []
    assert report.beyond_retention == 1
    assert report.uncovered == {0: 4}


def test_records_gone_before_the_retention_could_remove_them_were_deleted() -> None:
    """A trail kept forever, or a head signed more recently than the retention: its records
    cannot have expired, so their absence is a deletion, however empty and valid the rest."""
    trail = _trail({0: 20}, start=20)  # everything deleted up to the end
    for retention, now in ((None, AT + timedelta(days=400)),
                           (timedelta(days=30), AT + timedelta(days=2))):
        report = check_against([_checkpoint((0, 15))], KEY.public_key(), trail,
                               retention=retention, now=now)
        (problem,) = report.problems
        assert "records were deleted" in problem.problem
        assert report.beyond_retention == 0


def test_the_public_key_reads_back_from_its_pem() -> None:
    pem = public_key_pem(KEY.public_key())
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(read_public_key(pem.encode())) == key_id(KEY.public_key())
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="Ed25519"):
        read_public_key(other)


def test_a_development_key_is_made_once_owner_only_on_a_plaintext_bus(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    first = signing_key(settings)
    kept = tmp_path / "secrets" / "audit-signing-key.pem"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert key_id(signing_key(settings).public_key()) == key_id(first.public_key())


def test_no_development_key_on_a_secured_bus(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, security_protocol="SASL_SSL")
    with pytest.raises(SecretRefused, match="CIRCULATION_AUDIT_SIGNING_KEY_FILE: unset"):
        signing_key(settings)


def test_a_key_file_others_may_read_or_not_a_key_is_refused(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    signing_key(settings)
    made = tmp_path / "secrets" / "audit-signing-key.pem"
    shared = tmp_path / "shared.pem"
    shared.write_bytes(made.read_bytes())
    os.chmod(shared, 0o644)
    with pytest.raises(SecretRefused, match="chmod 600"):
        signing_key(Settings(audit_signing_key_file=shared))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n", encoding="ascii")
    os.chmod(junk, 0o600)
    with pytest.raises(SecretRefused, match="not an unencrypted PEM private key"):
        signing_key(Settings(audit_signing_key_file=junk))
