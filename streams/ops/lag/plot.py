"""Lag over time as a picture: what ``circulation lag --plot FILE`` draws from a sampling run.

Three panels sharing the time axis: lag in records per group, age of the oldest unconsumed
record per group, and each group's status as it was judged at every sample (the sliding window
moves with the run, so a group turns STALL or STOP a window after it stopped committing).
Rendered with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from streams.ops.lag.model import GroupLag, Status, worst_first

STATUS_COLOURS = {Status.OK: "#2e7d32", Status.WARN: "#f9a825", Status.STALL: "#8e24aa",
                  Status.STOP: "#c62828", Status.ERR: "#37474f"}
LINE_COLOURS = ("#1f77b4", "#17becf", "#8c564b", "#7f7f7f", "#e377c2", "#bcbd22", "#393b79",
                "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
"""Line colours kept apart from the status colours, so a red line never reads as STOP."""
MAX_GROUPS = len(LINE_COLOURS)
"""Groups drawn at most (the worst at the end of the run); the others are counted in the title."""


@dataclass(frozen=True)
class Snapshot:
    """Every group's verdict at one sample of a run."""

    at: float
    groups: tuple[GroupLag, ...]


def render(snapshots: Sequence[Snapshot], path: Path, title: str = "Consumer lag") -> Path:
    """Draw ``snapshots`` (oldest first) to ``path`` (PNG, or any format matplotlib knows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not snapshots:
        raise ValueError("nothing to plot: no sample was taken")
    origin = snapshots[0].at
    chosen = [g.group for g in worst_first(snapshots[-1].groups)][:MAX_GROUPS]
    others = len({g.group for s in snapshots for g in s.groups} - set(chosen))
    times = [s.at - origin for s in snapshots]
    step = min((b - a for a, b in pairwise(times)), default=1.0) or 1.0

    figure, (records_axis, age_axis, status_axis) = plt.subplots(
        3, 1, sharex=True, figsize=(11, 7.5),
        gridspec_kw={"height_ratios": [3, 3, max(1.2, 0.35 * len(chosen))]})
    for name, colour in zip(chosen, LINE_COLOURS, strict=False):
        series = [next((g for g in s.groups if g.group == name), None) for s in snapshots]
        xs = [t for t, g in zip(times, series, strict=True) if g is not None]
        lags = [g.lag for g in series if g is not None]
        final = next(g for g in reversed(series) if g is not None)
        label = f"{name} ({final.status.name})"
        records_axis.plot(xs, lags, marker="o", markersize=3, label=label, color=colour)
        ages = [(t, g.lag_seconds) for t, g in zip(times, series, strict=True)
                if g is not None and g.lag_seconds is not None]
        age_axis.plot([t for t, _ in ages], [a for _, a in ages], marker="o", markersize=3,
                      color=colour)
    records_axis.set_ylabel("lag (records)")
    records_axis.legend(fontsize=8, loc="upper left")
    records_axis.grid(alpha=0.3)
    age_axis.set_ylabel("lag (age of oldest\nunconsumed record, s)")
    age_axis.grid(alpha=0.3)

    edges = [times[0] - step / 2, *((a + b) / 2 for a, b in pairwise(times)),
             times[-1] + step / 2]
    for row, name in enumerate(reversed(chosen)):
        for left, right, snapshot in zip(edges, edges[1:], snapshots, strict=False):
            found = next((g for g in snapshot.groups if g.group == name), None)
            if found is not None:
                status_axis.broken_barh([(left, right - left)], (row - 0.4, 0.8),
                                        color=STATUS_COLOURS[found.status], linewidth=0)
    status_axis.set_yticks(range(len(chosen)), [_short(n) for n in reversed(chosen)],
                           fontsize=8)
    status_axis.set_ylim(-0.6, len(chosen) - 0.4)
    status_axis.set_xlabel("seconds since " + datetime.fromtimestamp(origin, UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC"))
    status_axis.legend(handles=[Patch(color=c, label=s.name) for s, c in STATUS_COLOURS.items()],
                       ncol=len(STATUS_COLOURS), fontsize=8, loc="lower right",
                       bbox_to_anchor=(1.0, 1.0), frameon=False)
    status_axis.set_title("status over the sliding window, at each sample", fontsize=9,
                          loc="left")
    more = f" (+{others} more groups)" if others else ""
    figure.suptitle(f"{title}{more}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _short(group: str, width: int = 48) -> str:
    return group if len(group) <= width else "…" + group[-(width - 1):]
