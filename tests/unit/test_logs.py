"""Logging: third-party retries that resolve themselves stay at debug level, real problems do not.

A fresh stack made aiokafka print dozens of warnings and errors (a partition electing its
leader, a topic its metadata did not list yet, a coordinator still loading) before the demo's
story, each one retried and resolved by the client itself.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest
from aiokafka.errors import NotLeaderForPartitionError, TopicAuthorizationFailedError

from streams import logs
from streams.settings import Settings


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bus's logging configured afresh (JSON); the root logger put back afterwards."""
    monkeypatch.setattr(logs, "_configured", False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure_logging(Settings(log_format="json"))
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    sys.stderr.flush()
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


RESOLVING = [
    ("aiokafka.producer.sender", logging.WARNING,
     "Got error produce response on topic-partition %s, retrying. Error: %s",
     ("bus.population-0", NotLeaderForPartitionError)),
    ("aiokafka.cluster", logging.ERROR, "Topic %s not found in cluster metadata",
     ("bus.population",)),
    ("aiokafka.consumer.group_coordinator", logging.WARNING,
     "Marking the coordinator dead (node %s)for group %s.", (1, "circulation-router")),
    ("aiokafka.consumer.group_coordinator", logging.ERROR,
     "Group Coordinator Request failed: %s", (NotLeaderForPartitionError(),)),
]


@pytest.mark.usefixtures("json_logs")
@pytest.mark.parametrize(("logger", "level", "message", "arguments"), RESOLVING)
def test_a_retry_that_resolves_itself_is_not_shown_at_the_default_level(
        capsys: pytest.CaptureFixture[str], logger: str, level: int, message: str,
        arguments: tuple[object, ...]) -> None:
    logging.getLogger(logger).log(level, message, *arguments)
    assert _lines(capsys) == []


@pytest.mark.usefixtures("json_logs")
def test_it_is_shown_at_debug_level_as_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logs.reclaim_standard_logging(logging.DEBUG)
    logger, level, message, arguments = RESOLVING[0]
    logging.getLogger(logger).log(level, message, *arguments)
    [line] = _lines(capsys)
    assert line["level"] == "debug"
    assert "retrying" in str(line["event"])


@pytest.mark.usefixtures("json_logs")
@pytest.mark.parametrize(("logger", "message", "arguments"), [
    ("aiokafka.producer.sender", "Got error produce response on topic-partition %s: %s",
     ("bus.audit-0", TopicAuthorizationFailedError)),
    ("aiokafka.cluster", "Topic %s is not authorized for this client", ("bus.audit",)),
    ("faust.transport", "Topic %s not found in cluster metadata", ("elsewhere",)),
])
def test_other_client_warnings_are_still_shown(
        capsys: pytest.CaptureFixture[str], logger: str, message: str,
        arguments: tuple[object, ...]) -> None:
    logging.getLogger(logger).warning(message, *arguments)
    [line] = _lines(capsys)
    assert line["level"] == "warning"
