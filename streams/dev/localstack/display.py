"""Showing a local stack's start-up as it happens: every step, with the time it has taken.

The first start downloads Kafka and the registry from Maven Central and can take a minute in
which the processes print nothing; a person at a terminal sees each step live with its elapsed
time, and output read by a machine (a CI log, a pipe) gets one line per step instead of nothing.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from streams.dev.localstack.stack import ComponentStatus, LocalStack


def start_showing(stack: LocalStack, console: Console,
                  fresh: bool = False) -> list[ComponentStatus]:
    """``stack.up()``, each step shown on ``console`` as it happens."""
    if not console.is_terminal:
        return stack.up(fresh=fresh, progress=console.print, notice=console.print)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting the local stack…", total=None)
        return stack.up(fresh=fresh, notice=console.print,
                        progress=lambda step: progress.update(task, description=step))
