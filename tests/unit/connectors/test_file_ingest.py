"""Ingesting a file without a broker: the progress file moves only past what Kafka
acknowledged, refused lines land beside the input, and a rerun resumes without sending again
what was acknowledged, whether the progress said so or only the provider topic did.

The real publisher checks and encodes every line (registry in memory); its producer is replaced
by one whose acknowledgements the test decides, and the provider topics by a record of ids.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from connectors import file_ingest, ingest_progress
from connectors.file_ingest import FileIngest, IngestRefused, ProviderTopics, derived_id
from connectors.ingest_progress import AnotherRun, IngestProgress, ProgressUnreadable
from connectors.publisher import OutgoingEvent, Publisher
from schemas.catalog import Catalog
from streams.dev.synthetic import generate
from streams.settings import Settings
from tests.event_csv import events_csv
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()
DATASET = "statut_etudiant_boursier"
TOPIC = "provider.cnous.statut_etudiant_boursier"


class _Broker(Publisher):
    """A publisher whose sends are acknowledged at once (or ``later``, as a broker does), but
    for the event ids in ``refuse``."""

    def __init__(self, tmp_path: Path, refuse: set[str] | None = None,
                 later: bool = False) -> None:
        settings = Settings(subject_secret=SecretStr(secrets.token_hex(32)), cache_dir=tmp_path)
        super().__init__(settings, CATALOG, MemoryRegistry())  # type: ignore[arg-type]
        self.refuse = refuse or set()
        self.later = later
        self.sent: list[str] = []
        self.records: list[tuple[str, bytes]] = []

    async def send(self, outgoing: OutgoingEvent) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if outgoing.event_id in self.refuse:
            answer = partial(done.set_exception, ConnectionError("broker gone"))
        else:
            self.sent.append(outgoing.event_id)
            self.records.append((outgoing.event_id, outgoing.key))
            answer = partial(done.set_result, None)
        if self.later:
            asyncio.get_running_loop().call_later(0.01, answer)
        else:
            answer()
        return done


class _Topics(ProviderTopics):
    """The provider topic as a list of the (id, key) of the records written to it."""

    def __init__(self, written: list[tuple[str, bytes]] | None = None) -> None:
        self.written = written if written is not None else []
        self.asked: list[dict[str, dict[int, int]]] = []
        self.candidates: list[set[str]] = []

    async def end_offsets(self, topic: str) -> dict[int, int]:
        return {0: len(self.written)}

    async def written_ids(self, offsets: dict[str, dict[int, int]], candidates: set[str]
                          ) -> set[tuple[str, bytes]]:
        self.asked.append(offsets)
        self.candidates.append(candidates)
        return {record for record in self.written[offsets[TOPIC][0]:]
                if record[0] in candidates}


def _events(count: int, seed: int = 1) -> list[dict[str, Any]]:
    return list(generate(DATASET, count, seed=seed))


def _records(broker: Publisher, events: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """The (id, key) of the records ``broker`` writes for ``events``."""
    return [(o.event_id, o.key) for o in (broker.prepare(dict(e)) for e in events)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _ingest(path: Path, broker: _Broker, topics: _Topics, file_format: Any = "jsonl") -> Any:
    return asyncio.run(FileIngest(path, file_format, broker, topics=topics).run())


def _rejected(path: Path) -> list[dict[str, Any]]:
    text = ingest_progress.rejected_path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_refused_lines_go_beside_the_input_with_number_and_field_and_the_rest_is_sent(
        tmp_path: Path) -> None:
    events = _events(3)
    bad = {**events[1], "data": {**events[1]["data"], "statut": "peut-etre"}}
    path = _write(tmp_path / "in.jsonl", [json.dumps(events[0]), json.dumps(bad), "{not json",
                                          json.dumps(events[2])])
    broker, topics = _Broker(tmp_path), _Topics()

    report = _ingest(path, broker, topics)

    assert broker.sent == [events[0]["id"], events[2]["id"]]
    assert report.published == 2
    assert [(r["line"], r["field"]) for r in _rejected(path)] == [(2, "data.statut"),
                                                                 (3, "line")]
    assert _rejected(path)[0]["original"] == json.dumps(bad)  # for the provider to correct
    assert ingest_progress.rejected_path(path).stat().st_mode & 0o077 == 0  # it holds NIRs
    recorded = ingest_progress.load(path)
    assert recorded is not None
    assert (recorded.settled_through, recorded.published, recorded.refused, recorded.finished) \
        == (4, 2, 2, True)
    assert recorded.offsets == {TOPIC: {0: 0}}


def test_a_finished_file_is_not_read_again(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in _events(3)])
    broker = _Broker(tmp_path)
    _ingest(path, broker, _Topics())
    again = _ingest(path, broker, _Topics())
    assert again.finished_before
    assert len(broker.sent) == 3


def test_a_line_not_acknowledged_stops_the_progress_and_a_rerun_sends_only_what_is_missing(
        tmp_path: Path) -> None:
    events = _events(5)
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in events])
    broker, topics = _Broker(tmp_path, refuse={events[2]["id"]}), _Topics()

    first = _ingest(path, broker, topics)
    topics.written.extend(broker.records)  # what the broker holds: all but line 3

    recorded = ingest_progress.load(path)
    assert recorded is not None
    assert (recorded.settled_through, recorded.finished) == (2, False)
    assert [n for n, _ in first.failed] == [3]
    broker.refuse.clear()
    broker.sent.clear()
    second = _ingest(path, broker, topics)
    assert broker.sent == [events[2]["id"]]  # lines 4 and 5 were found on the topic
    assert (second.settled_before, second.already_written, second.finished) == (2, 2, True)
    recorded = ingest_progress.load(path)
    assert recorded is not None
    assert (recorded.settled_through, recorded.published, recorded.finished) == (5, 5, True)


def test_a_last_line_refused_by_the_broker_after_the_file_was_read_leaves_it_unfinished(
        tmp_path: Path) -> None:
    events = _events(4)
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in events])
    broker = _Broker(tmp_path, refuse={events[-1]["id"]}, later=True)

    report = _ingest(path, broker, _Topics())

    assert [n for n, _ in report.failed] == [4]
    assert not report.finished
    recorded = ingest_progress.load(path)
    assert recorded is not None
    assert (recorded.settled_through, recorded.published, recorded.finished) == (3, 3, False)


def test_a_crash_between_acknowledgement_and_progress_sends_nothing_twice(
        tmp_path: Path) -> None:
    """The progress on disk lags what the broker holds: the rerun learns the rest from the
    topic, read from the offsets recorded before the first write."""
    events = _events(6)
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in events])
    topics = _Topics(written=[("someone-else", b"k")])
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", settled_through=2,
        published=2, offsets={TOPIC: {0: 1}}))
    broker = _Broker(tmp_path)
    topics.written.extend(_records(broker, events[:4]))  # lines 3 and 4 acknowledged, then kill

    report = _ingest(path, broker, topics)

    assert broker.sent == [events[4]["id"], events[5]["id"]]
    assert topics.asked == [{TOPIC: {0: 1}}]
    assert topics.candidates == [{e["id"] for e in events[2:]}]  # the unsettled lines' only
    assert report.already_written == 2
    recorded = ingest_progress.load(path)
    assert recorded is not None
    assert recorded.offsets == {TOPIC: {0: 1}}  # the first run's offsets are kept
    assert (recorded.settled_through, recorded.published) == (6, 6)


def test_a_rerun_drops_the_rejections_of_lines_it_reads_again(tmp_path: Path) -> None:
    events = _events(2)
    path = _write(tmp_path / "in.jsonl", ["{", json.dumps(events[0]), "[]", json.dumps(events[1])])
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", settled_through=2, refused=1,
        published=1, offsets={TOPIC: {0: 0}}))
    ingest_progress.rejected_path(path).write_text(
        '{"line": 1, "field": "line"}\n{"line": 3, "field": "line"}\n{"line": 4, "fi',
        encoding="utf-8")

    broker = _Broker(tmp_path)
    _ingest(path, broker, _Topics(written=_records(broker, events[:1])))

    assert [r["line"] for r in _rejected(path)] == [1, 3]


def test_an_id_another_file_used_for_another_person_does_not_settle_this_line(
        tmp_path: Path) -> None:
    events = _events(2)
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in events])
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", offsets={TOPIC: {0: 0}}))
    someone_else = {**events[1], "id": events[0]["id"]}
    broker = _Broker(tmp_path)
    topics = _Topics(written=_records(broker, [someone_else]))

    report = _ingest(path, broker, topics)

    assert broker.sent == [events[0]["id"], events[1]["id"]]
    assert report.already_written == 0


def test_a_null_id_is_a_missing_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [json.dumps({**_events(1)[0], "id": None})])
    broker = _Broker(tmp_path)
    report = _ingest(path, broker, _Topics())
    assert (report.published, broker.sent) == (
        1, [derived_id(ingest_progress.file_sha256(path), 1)])


class _Consumer:
    """A consumer of a principal that may not read the topic: aiokafka's metadata marks it
    unauthorized and asking where it ends times out (``hang``: never answers)."""

    def __init__(self, hang: bool = False) -> None:
        self.options: dict[str, Any] = {}
        self.hang = hang

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.hang:
            await asyncio.sleep(3600)
        raise KafkaTimeoutError()


def _read_back(monkeypatch: pytest.MonkeyPatch, partitions: list[TopicPartition],
               consumer: _Consumer | None = None) -> Any:
    async def described(*_: Any, **__: Any) -> list[TopicPartition]:
        return partitions

    monkeypatch.setattr(file_ingest, "topic_partitions", described)
    given = consumer or _Consumer()

    def made(_settings: Settings, **options: Any) -> _Consumer:
        given.options = options
        return given

    monkeypatch.setattr(file_ingest.clients, "consumer", made)
    topics = ProviderTopics(Settings(subject_secret=SecretStr(secrets.token_hex(32))))
    return asyncio.run(topics.written_ids({TOPIC: {0: 4}}, {"an-id"}))


@pytest.mark.parametrize("partitions", [[], [TopicPartition(TOPIC, 0)]],
                         ids=["the topic seen as missing", "its end offsets time out"])
def test_a_provider_topic_this_principal_may_not_read_refuses_the_rerun_with_what_to_do(
        monkeypatch: pytest.MonkeyPatch, partitions: list[TopicPartition]) -> None:
    """Not an empty read-back, which would send every unsettled line again."""
    with pytest.raises(IngestRefused, match=re.escape(
            "rerun as a principal that may read them, e.g. the operator's")):
        _read_back(monkeypatch, partitions)


def test_reading_back_has_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_ingest, "READ_BACK_SECONDS", 0.05)
    with pytest.raises(IngestRefused, match=r"not read back within 0\.05 s"):
        _read_back(monkeypatch, [TopicPartition(TOPIC, 0)], _Consumer(hang=True))


def test_reading_back_starts_at_the_earliest_offset_kept_when_the_recorded_one_is_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer()
    with pytest.raises(IngestRefused):
        _read_back(monkeypatch, [TopicPartition(TOPIC, 0)], consumer)
    assert consumer.options["auto_offset_reset"] == "earliest"


def test_lines_without_an_id_get_the_same_id_on_every_run(tmp_path: Path) -> None:
    without = [{k: v for k, v in e.items() if k != "id"} for e in _events(3)]
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in without])
    runs = []
    for _ in range(2):
        ingest_progress.progress_path(path).unlink(missing_ok=True)
        broker = _Broker(tmp_path)
        _ingest(path, broker, _Topics())
        runs.append(broker.sent)
    sha256 = ingest_progress.file_sha256(path)
    assert runs[0] == runs[1] == [derived_id(sha256, n) for n in (1, 2, 3)]
    assert len(set(runs[0])) == 3


def test_a_csv_file_is_ingested_row_by_row(tmp_path: Path) -> None:
    fields = [f["name"] for f in CATALOG.dataset(DATASET).latest.parsed["fields"]]
    events = _events(3)
    text = events_csv(events, fields) + "cnous,statut_etudiant_boursier,1\n"
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    broker = _Broker(tmp_path)

    report = _ingest(path, broker, _Topics(), "csv")

    sha256 = ingest_progress.file_sha256(path)
    assert broker.sent == [derived_id(sha256, n) for n in (2, 3, 4)]
    assert report.published == 3
    assert [(r["line"], r["field"]) for r in _rejected(path)] == [(5, "line")]
    assert _rejected(path)[0]["original"] == "cnous,statut_etudiant_boursier,1"


def test_excel_s_csv_utf8_with_a_byte_order_mark_and_semicolons_is_ingested(
        tmp_path: Path) -> None:
    fields = [f["name"] for f in CATALOG.dataset(DATASET).latest.parsed["fields"]]
    events = _events(2)
    text = events_csv(events, fields).replace(",", ";")
    path = tmp_path / "in.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    broker = _Broker(tmp_path)

    report = _ingest(path, broker, _Topics(), "csv")

    assert (report.published, report.refused) == (2, [])


def test_a_byte_order_mark_does_not_refuse_the_first_json_line(tmp_path: Path) -> None:
    events = _events(2)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(f"{json.dumps(e)}\n" for e in events)
                     .encode("utf-8"))
    broker = _Broker(tmp_path)

    report = _ingest(path, broker, _Topics())

    assert (broker.sent, report.refused) == ([e["id"] for e in events], [])


def test_a_stray_quote_in_a_csv_row_refuses_that_line_only(tmp_path: Path) -> None:
    fields = [f["name"] for f in CATALOG.dataset(DATASET).latest.parsed["fields"]]
    events = _events(30)
    header, first, *rest = events_csv(events, fields).splitlines()
    stray = first.replace(",", ',"', 1)
    path = tmp_path / "in.csv"
    path.write_text("\n".join([header, stray, *rest]) + "\n", encoding="utf-8")
    broker = _Broker(tmp_path)

    report = _ingest(path, broker, _Topics(), "csv")

    assert report.published == 29
    assert [(r["line"], r["original"]) for r in _rejected(path)] == [(2, stray)]


def test_a_csv_file_without_its_required_columns_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("type,subject\nstatut_etudiant_boursier,x\n", encoding="utf-8")
    broker = _Broker(tmp_path)
    with pytest.raises(IngestRefused, match="no column source"):
        _ingest(path, broker, _Topics(), "csv")
    assert broker.sent == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # corrected, it starts anew


def test_a_changed_input_is_not_resumed(tmp_path: Path) -> None:
    events = _events(2)
    path = _write(tmp_path / "in.jsonl", [json.dumps(events[0])])
    _ingest(path, _Broker(tmp_path, refuse={events[0]["id"]}), _Topics())
    _write(path, [json.dumps(e) for e in events])
    with pytest.raises(IngestRefused, match="changed since"):
        _ingest(path, _Broker(tmp_path), _Topics())


def test_a_second_run_on_the_same_file_at_once_is_refused_and_sends_nothing(
        tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [json.dumps(e) for e in _events(2)])
    broker = _Broker(tmp_path)
    with ingest_progress.exclusive_run(path), pytest.raises(AnotherRun, match=re.escape(
            f"another run of ingest-file holds {path}.lock")):
        _ingest(path, broker, _Topics())
    assert broker.sent == []
    assert _ingest(path, broker, _Topics()).published == 2  # once the first run ended


def test_the_rejected_file_becomes_owner_only_even_when_it_existed_before(
        tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", ["{"])
    where = ingest_progress.rejected_path(path)
    where.write_text("", encoding="utf-8")
    where.chmod(0o644)
    _ingest(path, _Broker(tmp_path), _Topics())
    assert where.stat().st_mode & 0o777 == 0o600
    assert [r["line"] for r in _rejected(path)] == [1]


def test_a_symlink_in_place_of_the_rejected_file_is_replaced_not_followed(
        tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", ["{"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("kept\n", encoding="utf-8")
    ingest_progress.rejected_path(path).symlink_to(elsewhere)
    _ingest(path, _Broker(tmp_path), _Topics())
    assert elsewhere.read_text(encoding="utf-8") == "kept\n"
    assert not ingest_progress.rejected_path(path).is_symlink()
    assert [r["line"] for r in _rejected(path)] == [1]


def test_the_rejected_file_is_rewritten_aside_and_renamed_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while the kept rejections are rewritten leaves them all in place: the new
    content is complete and synced aside before it takes the old one's name."""
    events = _events(1)
    path = _write(tmp_path / "in.jsonl", ["{", json.dumps(events[0])])
    ingest_progress.save(path, IngestProgress(
        sha256=ingest_progress.file_sha256(path), format="jsonl", settled_through=1, refused=1,
        offsets={TOPIC: {0: 0}}))
    where = ingest_progress.rejected_path(path)
    where.write_text('{"line": 1, "field": "line"}\n', encoding="utf-8")

    replace = os.replace

    def crash_before_renaming_over_the_rejections(source: Any, target: Any) -> None:
        if Path(target) == where:
            raise OSError("power cut")
        replace(source, target)

    monkeypatch.setattr(os, "replace", crash_before_renaming_over_the_rejections)
    with pytest.raises(OSError, match="power cut"):
        _ingest(path, _Broker(tmp_path), _Topics())
    assert where.read_text(encoding="utf-8") == '{"line": 1, "field": "line"}\n'


def test_the_progress_file_is_written_aside_under_a_name_of_its_own(tmp_path: Path) -> None:
    """Two writers never share the temporary file: a fixed name there is in use."""
    path = tmp_path / "in.jsonl"
    (tmp_path / "in.jsonl.progress.tmp").mkdir()
    progress = IngestProgress(sha256="ab", format="jsonl", settled_through=1)
    ingest_progress.save(path, progress)
    assert ingest_progress.load(path) == progress


def test_the_progress_file_is_replaced_whole_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    assert ingest_progress.load(path) is None
    progress = IngestProgress(sha256="ab", format="csv", settled_through=7, published=5,
                              refused=2, offsets={TOPIC: {0: 3, 1: 9}})
    ingest_progress.save(path, progress)
    assert ingest_progress.load(path) == progress
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl.progress"]


def test_a_progress_file_not_written_by_ingest_is_refused_with_what_to_do(
        tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    ingest_progress.progress_path(path).write_text('{"line": 3}', encoding="utf-8")
    with pytest.raises(ProgressUnreadable, match="remove it"):
        ingest_progress.load(path)
