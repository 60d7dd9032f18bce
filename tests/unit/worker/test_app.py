"""The worker process: it leaves the bus's logging as configured, and freezes what it started
with out of the garbage collector's sight.

Faust's worker, left to itself, replaces the root handler with a plain-text one, redirects
stdout and stderr into logging (every JSON line then came out behind a text prefix), and sets
the root logger to DEBUG for its terminal spinner, which made aiokafka build a record for every
debug call on both of the worker's threads. These tests fail if any of that comes back.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator

import pytest

from streams import logs
from streams.settings import Settings
from streams.worker.app import WorkerProcess, create_app


@pytest.fixture
def root_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bus's logging configured afresh (JSON), and the root logger and standard streams
    put back afterwards."""
    monkeypatch.setattr(logs, "_configured", False)
    logs.configure_logging(Settings(log_format="json"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    streams = sys.stdout, sys.stderr
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.stdout, sys.stderr = streams


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(("loglevel", "expected"), [("warning", logging.WARNING),
                                                    ("info", logging.INFO)])
def test_the_worker_process_keeps_the_bus_handler_at_its_own_level(
        loglevel: str, expected: int) -> None:
    stdout, stderr = sys.stdout, sys.stderr
    worker = WorkerProcess(create_app(Settings()), loglevel)
    worker._setup_logging()  # what Faust runs when the worker starts
    root = logging.getLogger()
    assert root.handlers == [logs._standard_handler]
    assert root.level == expected
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
    assert (sys.stdout, sys.stderr) == (stdout, stderr)  # not redirected into logging
    assert worker.spinner is None


@pytest.mark.usefixtures("root_logging")
def test_a_client_warning_is_rendered_by_the_bus_formatter(
        capsys: pytest.CaptureFixture[str]) -> None:
    WorkerProcess(create_app(Settings()), "warning")._setup_logging()
    logging.getLogger("aiokafka").debug("not built")
    logging.getLogger("aiokafka").warning("coordinator %s unreachable", "b1")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("{")  # the bus's JSON line, not behind Faust's text prefix
    assert '"event": "coordinator b1 unreachable"' in lines[0]


async def test_a_started_worker_takes_its_long_lived_objects_out_of_the_collector() -> None:
    worker = WorkerProcess(create_app(Settings()), "warning")
    assert gc.get_freeze_count() == 0
    try:
        await worker.on_startup_finished()  # what Faust runs once the worker has started
        # Modules, Faust's services and the catalog: full collections no longer walk them.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
