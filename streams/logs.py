"""structlog, configured once per process.

JSON lines when the output is read by machines (production, CI, files), a readable console
rendering when a person is watching a terminal. Call :func:`configure_logging` from entry points
only; library code just calls ``structlog.get_logger()``.

Third-party clients log at warning and above, except the retries they make and that resolve
themselves: aiokafka warns and errs on every retriable error (a partition whose leader is being
elected, a topic created a moment ago that its metadata does not list yet, a group coordinator
still loading), and a fresh stack shows dozens of them before the first event. Those go to
debug level; an error that does not resolve reaches the bus's own code, which says what failed.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from streams.settings import Settings

_configured = False


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test runners and in-process CLI calls swap it;
    a stream captured once may be closed by then)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _wants_json(settings: Settings) -> bool:
    if settings.log_format == "auto":
        return not sys.stderr.isatty()
    return settings.log_format == "json"


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library's logging to stderr in the chosen format."""
    global _configured
    if _configured:
        return
    level = getattr(logging, settings.log_level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if _wants_json(settings)
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _standard_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer
        ], foreign_pre_chain=_SHARED)
    )
    reclaim_standard_logging(logging.WARNING)  # third-party clients: warnings and worse
    _configured = True


def reclaim_standard_logging(level: int) -> None:
    """Send the standard library's logging through this module's handler again, at ``level``.

    For frameworks that reconfigure the root logger when they start (Faust's worker does: it
    installs its own plain-text handler and sets the root to DEBUG for its terminal spinner,
    which makes every client library build a record for each debug call it makes).
    """
    root = logging.getLogger()
    root.handlers[:] = [_standard_handler]
    root.setLevel(level)


_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
_RESOLVING_MESSAGES = frozenset({
    "Topic %s not found in cluster metadata",
    "Topic %s is not available during auto-create initialization",
    "Marking the coordinator dead (node %s)for group %s.",
})
"""aiokafka's messages about a state its own retries wait out (their arguments name no error)."""


def _is_retriable_error(argument: Any) -> bool:
    from aiokafka.errors import KafkaError

    kind = argument if isinstance(argument, type) else type(argument)
    return issubclass(kind, KafkaError) and bool(getattr(argument, "retriable", False))


class _ResolvingRetries(logging.Filter):
    """Lowers aiokafka's records about retries that resolve themselves to debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not record.name.startswith("aiokafka"):
            return True
        arguments = record.args if isinstance(record.args, tuple) else ()
        if record.msg in _RESOLVING_MESSAGES or any(map(_is_retriable_error, arguments)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        return True


_standard_handler = logging.StreamHandler(_CurrentStderr())
_standard_handler.addFilter(_ResolvingRetries())
