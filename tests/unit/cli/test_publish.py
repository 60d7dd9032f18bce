"""``circulation publish``: a hostile line is a refused line, and the other lines still go out.

The real publisher checks and encodes every line (registry in memory); only the producer is
replaced, by one that accepts everything at once.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.event_files import MAX_LINE_CHARS, event_lines
from connectors.publisher import OutgoingEvent, Publisher
from schemas.catalog import Catalog
from schemas.nir_detection import contains_nir
from schemas.registry import RegistryUnavailable
from schemas.serde import AvroSerde
from streams.cli.publish import publish_stream
from streams.dev.synthetic import generate
from streams.settings import Settings
from tests import hostile_inputs
from tests.unit.memory_registry import MemoryRegistry

CATALOG = Catalog.load()


class _Accepting(Publisher):
    """A publisher whose sends succeed at once: what is sent is kept, nothing is produced."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, Catalog.load(), MemoryRegistry())  # type: ignore[arg-type]
        self.sent: list[OutgoingEvent] = []

    async def send(self, outgoing: OutgoingEvent) -> asyncio.Future[Any]:
        self.sent.append(outgoing)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
def publisher(tmp_path: Any) -> _Accepting:
    return _Accepting(Settings(subject_secret=SecretStr(secrets.token_hex(32)),
                               cache_dir=tmp_path))


def _valid(count: int) -> list[dict[str, Any]]:
    return list(generate("statut_etudiant_boursier", count, seed=10))


def _with(event: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**event, **changes})


def _hostile_lines(event: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Each hostile line and the field its refusal must name."""
    data = event["data"]
    return {
        "integer of 5,000 digits": (_with(event, data={**data, "montant_annuel_centimes": 0})
                                    .replace('"montant_annuel_centimes": 0',
                                             '"montant_annuel_centimes": ' + "9" * 5000),
                                    "line"),
        "nesting beyond the parser": ('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}", "line"),
        "nesting the parser reads": (_with(event, data={**data, "ville_etudes":
                                                         json.loads("[" * 500 + "]" * 500)}),
                                     "data.ville_etudes"),
        "epoch time": (_with(event, time=1772612130), "time"),
        "epoch time as text": (_with(event, time="1772612130"), "time"),
        "time whose UTC form overflows": (_with(event, time="9999-12-31T23:00-12:00"), "time"),
        "time without seconds": (_with(event, time="2026-09-01T10:00Z"), "time"),
        "overlong line": (_with(event, data={**data, "ville_etudes": "x" * MAX_LINE_CHARS}),
                          "line"),
        "huge line without end": ("{" + " " * (3 * MAX_LINE_CHARS), "line"),
    }


async def test_every_hostile_line_is_refused_and_the_others_published(
        publisher: _Accepting) -> None:
    valid = _valid(4)
    hostile = _hostile_lines(valid[0])
    lines = [json.dumps(valid[0])]
    expected: dict[int, str] = {}
    for index, (line, field) in enumerate(hostile.values()):
        lines.append(line)
        expected[len(lines)] = field
        lines.append(json.dumps(valid[1 + index % 3] | {"id": f"ok-{index}"}))
    report = await publish_stream(io.StringIO("\n".join(lines) + "\n"), publisher)
    assert report.published == len(lines) - len(hostile)
    assert report.failed == []
    assert [number for number, _ in report.refused] == sorted(expected)
    for number, reason in report.refused:
        assert reason.startswith(f"{expected[number]}: "), (number, reason)
        assert len(reason) < 300
    assert len(publisher.sent) == report.published


async def test_a_line_just_under_the_bound_is_read_whole(publisher: _Accepting) -> None:
    event = _valid(1)[0]
    line = _with(event, data={**event["data"], "ville_etudes": "x"})
    padded = line[:-1] + " " * (MAX_LINE_CHARS - len(line)) + "}"
    assert len(padded) == MAX_LINE_CHARS
    report = await publish_stream(io.StringIO(padded + "\n" + line), publisher)
    assert (report.published, report.refused) == (2, [])


async def test_a_line_that_is_not_utf8_is_refused_and_the_others_published(
        publisher: _Accepting) -> None:
    """A file is bytes: one line of another encoding used to end the command in a traceback,
    the lines before it sent and the lines after it never read."""
    valid = [json.dumps(event).encode() for event in _valid(3)]
    event = _valid(1)[0]
    latin1 = json.dumps(event | {"data": {**event["data"], "ville_etudes": "Orl\u00e9ans"}},
                        ensure_ascii=False).encode("latin-1")
    stream = event_lines(io.BytesIO(b"\n".join([valid[0], latin1, b"\xff\xfe{}", valid[1],
                                                valid[2]]) + b"\n"))
    report = await publish_stream(stream, publisher)
    assert report.published == 3
    assert [number for number, _ in report.refused] == [2, 3]
    assert all(reason.startswith("line: not UTF-8 text") for _, reason in report.refused)


NIR = "184127645108946"


@st.composite
def _hostile_line(draw: st.DrawFn, event: dict[str, Any]) -> bytes:
    """One line no event can be read from, or whose event is wrong (never blank)."""
    line = json.dumps(event).encode()
    kind = draw(st.sampled_from(["bytes", "not UTF-8", "cut", "not an object", "wrong event",
                                 "huge number", "deep"]))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=60).map(
            lambda b: b"#" + b.replace(b"\n", b" ").replace(b"\r", b" ") + NIR.encode()))
    if kind == "not UTF-8":
        at = draw(st.integers(0, len(line)))
        return line[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9", b"\xed\xa0\x80"])) \
            + line[at:]
    if kind == "cut":
        return line[:draw(st.integers(1, len(line) - 1))]
    if kind == "not an object":
        return draw(st.sampled_from([b"[]", b"null", b"42", b'"' + NIR.encode() + b'"',
                                     json.dumps([event]).encode()]))
    if kind == "wrong event":
        name = draw(st.sampled_from(sorted(event)))
        return json.dumps({k: v for k, v in event.items() if k != name} | {
            "extension": NIR} if name in ("id", "time", "specversion") else
            {k: v for k, v in event.items() if k != name}).encode()
    if kind == "huge number":
        return line[:-1] + b', "n": ' + b"9" * 5000 + b"}"
    return b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_any_file_publishes_its_valid_lines_and_refuses_the_others_by_number(
        publisher: _Accepting) -> None:
    """Generated files mixing valid events with lines of raw bytes, bytes that are not UTF-8,
    cut events, JSON that is no object, events missing an attribute, numbers of thousands of
    digits, nesting beyond the parser: every valid line is sent, every other line refused by
    number, without repeating it."""
    events = _valid(8)

    @settings(max_examples=hostile_inputs.QUOTAS["lines of a publish file"] // 3,
              deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        kinds = data.draw(st.lists(st.booleans(), min_size=3, max_size=10).filter(
            lambda hostile: sum(hostile) >= 3))
        lines = [data.draw(_hostile_line(events[n % 8])) if hostile else
                 json.dumps(events[n % 8] | {"id": f"ok-{n}"}).encode()
                 for n, hostile in enumerate(kinds)]
        hostile_inputs.tried("lines of a publish file", sum(kinds))
        sent = len(publisher.sent)
        report = asyncio.run(publish_stream(event_lines(io.BytesIO(b"\n".join(lines))),
                                            publisher))
        assert [n for n, _ in report.refused] == [n + 1 for n, h in enumerate(kinds) if h]
        assert report.published == len(kinds) - sum(kinds) == len(publisher.sent) - sent
        for _, reason in report.refused:
            assert not contains_nir(reason)
            assert len(reason) < 1000

    with hostile_inputs.at_least("lines of a publish file"):
        one()


class _Stopping(MemoryRegistry):
    """A registry that stops answering when told to."""

    answering = True

    def lookup(self, subject: str, schema: Any) -> int | None:
        if not self.answering:
            raise RegistryUnavailable("schema registry at memory unreachable: stopped")
        return super().lookup(subject, schema)


def _two_datasets(registry: _Stopping, tmp_path: Any) -> tuple[_Accepting, io.StringIO]:
    """A publisher on ``registry`` (every schema registered) and a file of 3 events of one
    dataset then 2 of another."""
    publisher = _Accepting(Settings(subject_secret=SecretStr(secrets.token_hex(32)),
                                    cache_dir=tmp_path))
    publisher.registry = registry  # type: ignore[assignment]
    publisher._serde = AvroSerde(registry)  # type: ignore[arg-type]
    for topic in CATALOG.provider_topics():
        dataset = CATALOG.dataset(topic.split(".")[2])
        registry.register(f"{topic}-value", dataset.latest.text)
    lines = [*_valid(3), *generate("quotient_familial", 2, seed=11)]
    return publisher, io.StringIO("".join(json.dumps(e) + "\n" for e in lines))


async def test_a_registry_stopping_after_the_schemas_were_looked_up_stops_nothing(
        tmp_path: Any) -> None:
    registry = _Stopping()
    publisher, file = _two_datasets(registry, tmp_path)
    publisher.look_up_schemas()
    registry.answering = False
    report = await publish_stream(file, publisher)
    assert (report.published, report.refused, report.failed, report.stopped) == (5, [], [], None)


async def test_a_line_that_still_needs_an_absent_registry_stops_the_file_there(
        tmp_path: Any) -> None:
    registry = _Stopping()
    publisher, file = _two_datasets(registry, tmp_path)
    await publish_stream(io.StringIO(file.getvalue().split("\n", 1)[0] + "\n"), publisher)
    registry.answering = False  # the first dataset's schema was asked for, the second's not
    report = await publish_stream(file, publisher)
    assert report.published == 3
    assert report.stopped is not None
    assert report.stopped[0] == 4
    assert "unreachable" in report.stopped[1]
