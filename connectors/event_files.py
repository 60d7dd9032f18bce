"""Files of events as providers hand them over: numbered lines, each parsed on its own.

``circulation publish`` and ``circulation ingest-file`` read files the same way, so that a line
refused by one is refused by the other, for the same reason: a line that is too long, not UTF-8,
not JSON or not an object refuses itself and no other.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from connectors.publisher import PublishRefused

MAX_LINE_CHARS = 1_000_000
"""Longest line read, newline excluded: a published event is a few kilobytes, and a longer line
is refused unread rather than held in memory."""


@dataclass
class PublishReport:
    """What happened to each line: how many were published, which were refused and why."""

    published: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    stopped: tuple[int, str] | None = None
    """The line at which publishing stopped, and why: neither it nor any later line was sent."""


def physical_lines(stream: IO[str]) -> Iterator[tuple[int, str | None]]:
    """Every line with its number, blank ones included; ``None`` for a line longer than
    :data:`MAX_LINE_CHARS`, whose rest is skipped in bounded pieces, never held whole."""
    number = 0
    while line := stream.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while (rest := stream.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield number, None
        else:
            yield number, line


def numbered_lines(stream: IO[str]) -> Iterator[tuple[int, str | None]]:
    """Numbered non-blank lines; ``None`` for a line too long to read
    (:func:`physical_lines`)."""
    for number, line in physical_lines(stream):
        if line is None or line.strip():
            yield number, line


def event_lines(binary: IO[bytes], newline: str | None = None) -> IO[str]:
    """The text of a file of events, read so that bytes that are not UTF-8 refuse their own
    line (:func:`parse_line`) rather than end the command: each such byte becomes a lone
    surrogate, which no UTF-8 text and no JSON escape can leave in a line as read.

    A leading UTF-8 byte-order mark, which Excel writes in its "CSV UTF-8", is dropped: it
    would otherwise stick to the first column's name or refuse the first JSON line.

    ``newline`` as :func:`open` takes it: CSV is read with ``""``, as the csv module asks."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape",
                            newline=newline)


def refuse_non_utf8(text: str) -> None:
    """Refuse a line holding bytes that were not UTF-8 (see :func:`event_lines`)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PublishRefused("line", f"not UTF-8 text (character {exc.start + 1})") from None


def load_json(text: str, field: str) -> Any:
    """``text`` read as JSON, or a refusal naming ``field`` that says why without quoting it:
    a file's line and the gateway's request body are read alike."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else \
            f"column {exc.colno}"
        raise PublishRefused(field, f"not JSON ({exc.msg} at {where})") from None
    except ValueError:  # Python refuses to read integers beyond its digit limit
        raise PublishRefused(field, "a number has too many digits") from None
    except RecursionError:
        raise PublishRefused(field, "nested too deeply") from None


def parse_line(line: str | None) -> dict[str, Any]:
    """A JSON object, or a refusal of the whole line saying why (never quoting it)."""
    if line is None:
        raise PublishRefused("line", f"longer than {MAX_LINE_CHARS:,} characters "
                                     f"(a published event is a few kilobytes)")
    refuse_non_utf8(line)
    event = load_json(line, "line")
    if not isinstance(event, dict):
        raise PublishRefused("line", "a published event is a JSON object")
    return event
