"""The journal follower: where it resumes when retention deleted its position, the audit
records it leaves out (older than the retention, or about a malformed subject, the latter
logged by place), and how it says it stopped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from aiokafka import TopicPartition
from structlog.testing import capture_logs

from schemas.catalog import Catalog
from streams.journal.follower import JournalFollower, follower_consumer
from streams.journal.view import JournalView
from streams.kafka.topics import AUDIT
from streams.settings import Settings

ALICE = "sr1_" + "a" * 64


async def test_a_position_deleted_by_retention_resumes_at_the_earliest_record() -> None:
    consumer = follower_consumer(Settings())
    # aiokafka's default, "latest", would skip every record between there and the end.
    assert consumer._auto_offset_reset == "earliest"
    assert consumer._isolation_level == "read_committed"


class _Serde:
    """Decodes a record's value to the datum the test put under it."""

    def __init__(self, data: dict[bytes, dict[str, Any]]) -> None:
        self.data = data

    def decode(self, value: bytes, _reader: object) -> tuple[None, dict[str, Any]]:
        return None, self.data[value]


def _audit(subject: str, decided_at: datetime) -> dict[str, Any]:
    return {"event_id": "e", "delivery_id": "d", "contract_id": "c-in",
            "subscriber": "ville-de-lyon", "provider": "cnous",
            "dataset": "statut_etudiant_boursier", "subject_ref": subject,
            "decision": "delivered", "reason": None, "decided_at": decided_at,
            "fields_delivered": ["echelon"]}


def test_old_and_malformed_audit_records_are_left_out(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    settings = Settings()
    forged = ALICE + "\x00" + "b" * 8
    data = {b"old": _audit(ALICE, now - settings.audit_retention - timedelta(days=1)),
            b"new": _audit(ALICE, now), b"forged": _audit(forged, now)}
    view = JournalView(tmp_path)
    follower = JournalFollower(settings, cast(Any, _Serde(data)), Catalog.load(), view)
    records = [SimpleNamespace(key=None, value=value, offset=offset, timestamp=0)
               for offset, value in enumerate(data)]
    batch = view.batch()
    with capture_logs() as logs:
        follower._fold(batch, TopicPartition(AUDIT, 0), cast(Any, records))
    batch.commit({})
    assert [e.at for e in view.entries(ALICE)] == [now]  # the old one is past the retention
    assert [(log["topic"], log["offset"], log["error"]) for log in logs] == [
        (AUDIT, 2, "MalformedSubject")]
    assert ALICE not in repr(logs)
    view.close()


async def test_a_follower_that_stops_says_so_by_kind() -> None:
    async def fails() -> None:
        raise KeyError(ALICE)

    follower = JournalFollower.__new__(JournalFollower)
    follower._progress = asyncio.Condition()
    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    with capture_logs() as logs:
        follower._on_stopped(task)
    assert [(log["event"], log["error"]) for log in logs] == [
        ("journal: the follower stopped, the journal page answers 503", "KeyError")]
    assert ALICE not in repr(logs)
