"""structlog, configured once per process.

JSON lines when the output is read by machines (production, CI, files), a readable console
rendering when a person is watching a terminal. Call :func:`configure_logging` from entry points
only; library code just calls ``structlog.get_logger()``.
"""

from __future__ import annotations

import logging
import sys

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
_standard_handler = logging.StreamHandler(_CurrentStderr())
