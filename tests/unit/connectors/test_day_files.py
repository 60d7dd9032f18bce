"""The file sink's day files: named by contract and UTC day, replaced whole, each delivery
once, owner-only, and expired only when every delivery in them has."""

from __future__ import annotations

import json
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from connectors.files import day_files
from connectors.files.day_files import (
    DayFiles,
    DeliveryRefused,
    Line,
    UnreadableDayFile,
    contract_folder,
    day_file,
    day_of,
)

RETENTION = timedelta(days=30)
NOV_1 = date(2026, 11, 1)


def _event(number: int, time: str = "2026-11-01T00:00:00.000Z",
           expires: str | None = "2026-12-01T00:00:00Z", **extra: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": f"delivery-{number}", "source": "cnaf",
             "type": "quotient_familial", "subject": f"ps2_{number:064x}", "time": time,
             "data": {"quotient_familial": 500 + number, "annee": 2026},
             "contract": "lyon-cantine-2026"} | extra
    if expires is not None:
        event["expiresat"] = expires
    return event


def _lines(*numbers: int, **options: Any) -> list[Line]:
    return [Line.of(_event(number, **options), RETENTION) for number in numbers]


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> DayFiles:
    opened = DayFiles(contract_folder(tmp_path, "lyon-cantine-2026"), RETENTION)
    opened.open()
    return opened


def test_a_file_per_contract_and_utc_day(tmp_path: Path) -> None:
    folder = contract_folder(tmp_path, "lyon-cantine-2026")
    assert day_file(folder, NOV_1) == tmp_path / "lyon-cantine-2026" / "2026-11-01.jsonl"
    assert day_of(day_file(folder, NOV_1)) == NOV_1
    for other in ("2026-11-01.jsonl.tmp", ".2026-11-01.jsonl.x.tmp", "2026-13-01.jsonl",
                  "notes.txt", ".lock"):
        assert day_of(folder / other) is None


def test_the_day_is_the_utc_day_of_the_delivery_s_own_time() -> None:
    (late,) = _lines(1, time="2026-11-01T23:30:00+00:00")
    (early_paris,) = _lines(2, time="2026-11-02T00:30:00+01:00")
    assert late.day == early_paris.day == NOV_1


def test_lines_are_added_in_order_each_delivery_once(files: DayFiles) -> None:
    assert files.add({NOV_1: _lines(0, 1, 2)}) == 3
    assert files.add({NOV_1: _lines(2, 3, 1, 4, 4)}) == 2  # a replay after a crash, a repeat
    path = day_file(files.folder, NOV_1)
    assert _ids(path) == [f"delivery-{n}" for n in (0, 1, 2, 3, 4)]
    again = DayFiles(files.folder, RETENTION)
    again.open()  # a restarted sink finds what the file holds
    assert again.add({NOV_1: _lines(0, 4, 5)}) == 1
    assert _ids(path)[-1] == "delivery-5"
    assert again.summaries[NOV_1].deliveries == 6


def test_ids_forgotten_for_memory_are_read_again_from_the_file(files: DayFiles) -> None:
    for offset in range(day_files.IDS_KEPT_DAYS + 2):
        files.add({NOV_1 + timedelta(days=offset): _lines(offset)})
    assert files.add({NOV_1: _lines(0)}) == 0, "the first day's ids were read back"


def test_a_reader_sees_the_whole_file_before_or_after_never_half(files: DayFiles) -> None:
    files.add({NOV_1: _lines(0, 1)})
    path = day_file(files.folder, NOV_1)
    before = path.read_bytes()
    with path.open("rb") as reading:  # a batch job that opened the file before the flush
        files.add({NOV_1: _lines(2)})
        assert reading.read() == before
    assert path.read_bytes().startswith(before)
    assert path.read_bytes().endswith(b"\n")


def test_a_write_that_fails_half_way_leaves_the_file_as_it_was(
        files: DayFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    files.add({NOV_1: _lines(0)})
    path = day_file(files.folder, NOV_1)
    before = path.read_bytes()
    replace = day_files.replace_durably_by

    def failing(where: Path, write: Any) -> None:
        def half(out: IO[bytes]) -> None:
            write(out)
            raise OSError("No space left on device")
        replace(where, half)

    monkeypatch.setattr(day_files, "replace_durably_by", failing)
    with pytest.raises(OSError, match="No space"):
        files.add({NOV_1: _lines(1)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in files.folder.iterdir()) == ["2026-11-01.jsonl"]


def test_what_a_crash_left_aside_is_removed_at_start(files: DayFiles) -> None:
    files.add({NOV_1: _lines(0)})
    aside = files.folder / ".2026-11-01.jsonl.k3j2.tmp"
    aside.write_text('{"id": "half', encoding="utf-8")
    DayFiles(files.folder, RETENTION).open()
    assert not aside.exists()
    assert day_file(files.folder, NOV_1).exists()


def test_folders_and_files_are_their_owner_s_only(tmp_path: Path) -> None:
    folder = contract_folder(tmp_path, "lyon-cantine-2026")
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    files = DayFiles(folder, RETENTION)
    files.open()
    files.add({NOV_1: _lines(0)})
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(day_file(folder, NOV_1).stat().st_mode) == 0o600


def test_a_file_expires_when_its_last_delivery_does(files: DayFiles) -> None:
    files.add({NOV_1: [*_lines(0, expires="2026-12-01T00:00:00Z"),
                       *_lines(1, expires="2026-12-02T00:00:00Z")]})
    summary = files.summaries[NOV_1]
    assert summary.deliveries == 2
    assert not summary.expired(datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert summary.expired(datetime(2026, 12, 2, tzinfo=UTC))
    reopened = DayFiles(files.folder, RETENTION)
    reopened.open()
    assert reopened.summaries[NOV_1] == summary


def test_a_record_without_expiry_expires_as_a_delivery_of_its_time_would() -> None:
    (notice,) = _lines(0, time="2026-11-01T10:00:00.000Z", expires=None,
                       type="erasure_notice")
    assert notice.expires == datetime(2026, 12, 1, tzinfo=UTC)  # the router's rule
    assert "expiresat" not in json.loads(notice.text), "nothing is added to what is delivered"


def test_a_deleted_file_is_gone_and_forgotten(files: DayFiles) -> None:
    files.add({NOV_1: _lines(0)})
    files.delete(NOV_1)
    assert not day_file(files.folder, NOV_1).exists()
    assert NOV_1 not in files.summaries
    assert files.add({NOV_1: _lines(0)}) == 1, "a late delivery starts the day's file again"


@pytest.mark.parametrize(("content", "reason"), [
    (b'{"id": "a", "time": "2026-11-01T00:00:00Z", "expires', "not a JSON line"),
    (b"\xff\xfe1 85 05 78 006 084 36\n", "not a JSON line"),
    (b"[1, 2]\n", "not a JSON object"),
    (b'{"time": "2026-11-01T00:00:00Z"}\n', "id: missing or not a text"),
    (b'{"id": "a", "time": "2026-11-01"}\n', "time: an instant without its offset"),
    (b'{"id": "a", "time": "1 85 05 78 006 084 36"}\n', "time: not an RFC 3339 instant"),
    (b'{"id": "a", "time": "2026-11-01T00:00:00Z", "expiresat": 3}\n',
     "expiresat: missing or not a text"),
])
def test_a_file_the_sink_cannot_read_back_is_refused_by_line_never_quoted(
        files: DayFiles, content: bytes, reason: str) -> None:
    path = day_file(files.folder, NOV_1)
    path.write_bytes(_event_line(0) + content)
    with pytest.raises(UnreadableDayFile) as refused:
        DayFiles(files.folder, RETENTION).open()
    assert str(refused.value).startswith(f"{path} line 2: {reason};")
    assert "85 05" not in str(refused.value)


def _event_line(number: int) -> bytes:
    return (json.dumps(_event(number)) + "\n").encode()


@pytest.mark.parametrize(("attribute", "value", "reason"), [
    ("id", None, "missing or not a text"),
    ("time", "1 85 05 78 006 084 36", "not an RFC 3339 instant"),
    ("expiresat", "2026-12-01T00:00:00", "an instant without its offset"),
])
def test_a_delivery_that_cannot_be_filed_names_its_attribute_never_its_value(
        attribute: str, value: Any, reason: str) -> None:
    """What its dead letter says (field and reason)."""
    with pytest.raises(DeliveryRefused) as refused:
        Line.of(_event(0) | {attribute: value}, RETENTION)
    assert (refused.value.field, refused.value.reason) == (attribute, reason)
    assert "85 05" not in str(refused.value)
