"""How many hostile inputs the suites try in a session, and the share each suite must try.

Each hostile-input suite generates inputs (hypothesis, or a seeded generator on the real broker)
and counts every one it hands to the bus with :func:`tried`; :func:`at_least` fails a suite that
tried fewer than its quota, so that a strategy narrowed by mistake, or hypothesis stopping early,
cannot lower the volume unseen. ``tests/conftest.py`` prints the session's total at the end.

The quotas add up to at least :data:`MINIMUM` (the figure the README gives), with the unit
suites alone above it, so that ``make unit`` keeps the claim too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

MINIMUM = 10_000
"""Generated hostile inputs a whole run tries at least (the README's figure)."""

QUOTAS = {
    "published events": 3_000,
    "lines of a publish file": 1_500,
    "contract files": 2_500,
    "provider records": 3_000,
    "fence values": 500,
    "provider records on the broker": 2_000,
}
"""Inputs each suite tries per run: the hypothesis examples of its test (``max_examples``), or
the records written on the broker."""
ON_THE_BROKER = frozenset({"provider records on the broker"})

_tried: Counter[str] = Counter()


def tried(suite: str, count: int = 1) -> None:
    """Count ``count`` more inputs handed to the bus by ``suite`` (one of :data:`QUOTAS`)."""
    if suite not in QUOTAS:
        raise KeyError(f"no such hostile-input suite: {suite}")
    _tried[suite] += count


@contextmanager
def at_least(suite: str) -> Iterator[None]:
    """Fail unless the block makes ``suite`` try its quota of inputs."""
    before = _tried[suite]
    yield
    done = _tried[suite] - before
    assert done >= QUOTAS[suite], f"{suite}: {done} inputs tried, fewer than {QUOTAS[suite]}"


def summary() -> list[str]:
    """The session's count, one line (nothing when no hostile-input suite ran)."""
    if not _tried:
        return []
    parts = "; ".join(f"{suite} {count:,}" for suite, count in sorted(_tried.items()))
    return [f"hostile inputs tried: {sum(_tried.values()):,} ({parts})"]
