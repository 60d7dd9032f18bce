"""Sampling consumer lag on a schedule and judging it over a sliding window.

Kafka keeps only a group's latest committed offset, so lag is *sampled*: ``samples``
observations spread over ``window`` seconds. A one-shot run takes one window's samples and
stops; a continuous run (``--watch``, ``--serve``) keeps sampling, the window sliding over the
last ``samples`` observations, and survives a failed sample (a broker restarting): the
exporter's evaluation timestamp then stops moving, which is what the silence alert watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from streams.ops.lag.model import GroupLag, LagWindows
from streams.ops.lag.plot import Snapshot
from streams.ops.lag.probe import LagProbe, LagProbeError
from streams.settings import Settings

log = structlog.get_logger(__name__)

PLOT_SAMPLES = 2000
"""Snapshots kept for a plot (the latest ones): bounded memory for a long run."""


@dataclass(frozen=True)
class Sampling:
    """How to sample: whose groups, over which window, for how long."""

    subscriber: str | None
    window: float
    samples: int
    continuous: bool
    duration: float | None = None
    """Seconds after which a continuous run stops; None: until asked to stop."""
    keep_snapshots: bool = False

    @property
    def interval(self) -> float:
        return self.window / (self.samples - 1)


@dataclass
class LagRun:
    """What a sampling run has found so far."""

    report: list[GroupLag] = field(default_factory=list)
    at: float = 0.0
    filled: int = 0
    snapshots: deque[Snapshot] = field(default_factory=lambda: deque(maxlen=PLOT_SAMPLES))


OnSample = Callable[[LagRun, int], None]
"""Called after every evaluated sample with the run and how many samples were taken."""


async def monitor_lag(settings: Settings, sampling: Sampling, stop: asyncio.Event,
                      on_sample: OnSample) -> LagRun:
    """Sample until the window is full (one-shot), or until stopped or timed out (continuous).

    A failed sample ends a one-shot run with :class:`LagProbeError`; a continuous run logs it
    and tries again at the next interval.
    """
    run = LagRun()
    async with LagProbe(settings, sampling.subscriber) as probe:
        windows = LagWindows(sampling.samples)
        began = time.monotonic()
        first_done = began  # samples are spaced from the end of the first one, the slowest
        taken = 0           # (it opens the connections)

        def over() -> bool:
            return stop.is_set() or (sampling.duration is not None
                                     and time.monotonic() - began >= sampling.duration)

        while True:
            try:
                windows.observe(await probe.sample())
            except LagProbeError as exc:
                if not sampling.continuous:
                    raise
                log.error("lag sample failed, retrying", error=str(exc))
                await _pause(stop, sampling.interval)
                if over():
                    break
                continue
            taken += 1
            if taken == 1:
                first_done = time.monotonic()
            _evaluate(run, windows, sampling)
            on_sample(run, taken)
            if (not sampling.continuous and taken >= sampling.samples) or over():
                break
            await _pause(stop, first_done + taken * sampling.interval - time.monotonic())
            if stop.is_set():
                break
    return run


def _evaluate(run: LagRun, windows: LagWindows, sampling: Sampling) -> None:
    run.report = windows.evaluate()
    run.at = time.time()
    run.filled = windows.filled
    if sampling.keep_snapshots:
        run.snapshots.append(Snapshot(run.at, tuple(run.report)))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))
