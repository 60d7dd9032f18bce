"""``circulation demo``: the whole bus at work on the local stack (:mod:`streams.dev.demo`)."""

from __future__ import annotations

from streams.cli.console import console, fail, settings
from streams.dev.demo import DemoError, StackError, run_demo
from streams.dev.settings import LocalStackSettings


def demo() -> None:
    """Show the bus end to end on the local stack; stops whatever it started."""
    try:
        settings()  # logging
        run_demo(LocalStackSettings(), console)
    except (DemoError, StackError) as exc:
        fail(str(exc))
