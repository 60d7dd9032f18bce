"""The length of a reconciled window, as an operator types it: ``90s``, ``30m``, ``1h``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta

DEFAULT_WINDOW = "1h"
"""What ``reconcile`` checks unless told: the last hour, a few seconds to read on a busy bus."""
MAX_WINDOW = timedelta(days=365)
_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_window(text: str) -> timedelta:
    """The duration ``text`` names: a whole number and one unit (s, m, h or d), at most a
    year; :class:`ValueError` saying what is expected otherwise (never repeating ``text``)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError("a duration is a whole number and a unit: s, m, h or d (90s, 30m, "
                         "1h, 2d)")
    window = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if window > MAX_WINDOW:
        raise ValueError("a window is at most 365 days")
    return window
