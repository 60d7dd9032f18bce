"""``circulation lag``: which administration is falling behind, which has stopped, and whether the
bus itself keeps up.

Kafka keeps only a group's latest committed offset, so the command *samples*: ``--samples``
observations spread over ``--window`` seconds (3 over 10 s by default, one every 5 s). A one-shot
run takes one window's samples, judges every group as Burrow would (:mod:`streams.ops.lag.model`),
prints the result and exits 1 when any group is STALL, STOP or ERR, so that it serves as a check.
``--watch`` and ``--serve PORT`` keep sampling, the window sliding over the last ``--samples``
observations; ``--serve`` publishes the verdicts on ``/metrics`` for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.console import Group as RenderGroup
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streams.cli.console import console, errors, fail, settings
from streams.ops.lag.exporter import LagExporter
from streams.ops.lag.model import GroupLag, Status, instant
from streams.ops.lag.monitor import PLOT_SAMPLES, LagRun, Sampling, monitor_lag
from streams.ops.lag.plot import render
from streams.ops.lag.probe import LagProbeError
from streams.settings import Settings

log = structlog.get_logger(__name__)

STATUS_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.STALL: "magenta",
                Status.STOP: "bold red", Status.ERR: "bold white on red"}


@dataclass
class _Options:
    subscriber: str | None
    watch: bool
    as_json: bool
    window: float
    samples: int
    serve_port: int | None
    bind: str
    plot: Path | None
    duration: float | None

    @property
    def interval(self) -> float:
        return self.window / (self.samples - 1)

    @property
    def continuous(self) -> bool:
        return self.watch or self.serve_port is not None


def lag(
    subscriber: Annotated[str | None, typer.Option(
        help="Only this subscriber: its subscriber.<S>.* groups and deliver.<S>.* topics.")
    ] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Keep sampling; refresh the table in place (JSON lines with --json).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON document.")] = False,
    window: Annotated[float, typer.Option(
        min=0.1, help="Seconds the sliding window covers.")] = 10.0,
    samples: Annotated[int, typer.Option(
        min=2, help="Observations per window (one every window/(samples-1) seconds).")] = 3,
    serve_port: Annotated[int | None, typer.Option(
        "--serve", metavar="PORT", min=1, max=65535,
        help="Serve the lag metrics on http://BIND:PORT/metrics, refreshed at every sample; "
        "keeps sampling until stopped.")] = None,
    bind: Annotated[str, typer.Option(help="Address --serve listens on.")] = "0.0.0.0",  # noqa: S104
    plot: Annotated[Path | None, typer.Option(
        help=f"At the end, draw lag over time of the run (its last {PLOT_SAMPLES} samples) to "
        "this PNG file.")] = None,
    duration: Annotated[float | None, typer.Option(
        min=0.1, help="With --watch or --serve: stop after this many seconds.")] = None,
) -> None:
    """Consumer lag per group, judged over a sliding window (OK, WARN, STALL, STOP, ERR).

    Exit status: 0 when every group is OK or WARN, 1 when any is STALL, STOP or ERR, 2 when
    the cluster cannot be asked.
    """
    options = _Options(subscriber, watch, as_json, window, samples, serve_port, bind, plot,
                       duration)
    config = settings()
    try:
        run = asyncio.run(_sample(config, options))
    except LagProbeError as exc:
        fail(str(exc), code=2)
    if not options.continuous:
        _print_final(run, options)
    if options.plot is not None:
        what = f"Consumer lag — {options.subscriber or 'all subscribers'}, window " \
               f"{options.window:g}s / {options.samples} samples"
        render(run.snapshots, options.plot, what)
        errors.print(f"lag plot written to {options.plot}", highlight=False)
    if any(group.status.alarming for group in run.report):
        raise typer.Exit(1)


async def _sample(config: Settings, options: _Options) -> LagRun:
    """Sample with the display, the exporter and the signals the options ask for."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    live = (Live(console=console, auto_refresh=False, transient=False)
            if options.watch and not options.as_json else None)
    spinner = (errors.status("sampling consumer lag…")
               if not options.continuous and not options.as_json and errors.is_terminal
               else None)
    sampling = Sampling(options.subscriber, options.window, options.samples,
                        options.continuous, options.duration,
                        keep_snapshots=options.plot is not None)
    exporter: LagExporter | None = None

    def on_sample(run: LagRun, taken: int) -> None:
        if exporter is not None:
            exporter.publish(run)
        _show_progress(run, options, taken, live, spinner)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if options.serve_port is not None:
            exporter = LagExporter.serve(options.serve_port, options.bind)
        with live or contextlib.nullcontext(), spinner or contextlib.nullcontext():
            return await monitor_lag(config, sampling, stop, on_sample)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _show_progress(run: LagRun, options: _Options, taken: int, live: Live | None,
                   spinner: Any) -> None:
    if live is not None:
        live.update(lag_view(run.report, options, run.at, run.filled), refresh=True)
    elif options.watch and options.as_json:
        sys.stdout.write(json.dumps(lag_document(run.report, options.window, run.filled,
                                                 run.at)) + "\n")
        sys.stdout.flush()
    elif spinner is not None:
        spinner.update(f"sampling consumer lag… {taken}/{options.samples}")
    elif options.serve_port is not None:
        worst = max((g.status for g in run.report), default=Status.OK)
        log.info("lag sampled", groups=len(run.report), worst=worst.name,
                 alarming=sum(g.status.alarming for g in run.report))


def _print_final(run: LagRun, options: _Options) -> None:
    if options.as_json:
        sys.stdout.write(json.dumps(lag_document(run.report, options.window, run.filled,
                                                 run.at), indent=2) + "\n")
    else:
        console.print(lag_view(run.report, options, run.at, run.filled))


def lag_document(groups: Sequence[GroupLag], window: float, samples: int,
                 at: float) -> dict[str, Any]:
    """The ``--json`` document: the worst status, then every group, worst first."""
    worst = max((g.status for g in groups), default=Status.OK)
    return {"observed_at": instant(at), "window_seconds": window, "samples": samples,
            "status": worst.name, "groups": [g.as_json() for g in groups]}


def lag_view(groups: Sequence[GroupLag], options: _Options, at: float,
             filled: int) -> RenderGroup:
    """The table, one row per group, worst first, and why each group that is not OK is not."""
    who = f" — {options.subscriber}" if options.subscriber else ""
    table = Table(title=f"Consumer lag{who}", caption=(
        f"window {options.window:g}s, {filled}/{options.samples} samples, observed "
        f"{instant(at)}"))
    table.add_column("group", overflow="fold")
    table.add_column("subscriber", overflow="fold")
    table.add_column("topic", overflow="fold")
    table.add_column("partitions", justify="right", no_wrap=True)
    table.add_column("lag (records)", justify="right", no_wrap=True)
    table.add_column("lag (age)", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for group in groups:
        table.add_row(group.group, group.subscriber or "(bus)", topics_text(group.topics),
                      str(len(group.partitions)), f"{group.lag:,}".replace(",", " "),
                      age_text(group.lag_seconds), _status_text(group.status))
    notes = [Text.assemble(_status_text(g.status), f" {g.group}: {g.reason}")
             for g in groups if g.status != Status.OK]
    if not groups:
        notes.append(Text("no consumer group has committed offsets on a watched topic"
                          + (f" of {options.subscriber}" if options.subscriber else "")))
    return RenderGroup(table, *notes)


def topics_text(topics: Sequence[str]) -> str:
    """One topic by name; several as their common prefix: ``provider.* (11 topics)``."""
    if len(topics) <= 1:
        return topics[0] if topics else "-"
    first, *_ = topics
    prefix = first.split(".")[0] + "."
    shared = prefix if all(t.startswith(prefix) for t in topics) else ""
    return f"{shared}* ({len(topics)} topics)"


def _status_text(status: Status) -> Text:
    return Text(status.name, style=STATUS_STYLE[status])


def age_text(seconds: float | None) -> str:
    """A lag age for people: 0s, 42s, 3m07s, 2h05m, 3d04h; ? when unknown."""
    if seconds is None:
        return "?"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
