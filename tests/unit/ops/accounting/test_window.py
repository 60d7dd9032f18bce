"""The window an operator types: a whole number and a unit, refused clearly otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams.ops.accounting.window import DEFAULT_WINDOW, parse_window


@pytest.mark.parametrize(("text", "length"), [
    ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)),
    ("2d", timedelta(days=2)), ("365d", timedelta(days=365))])
def test_a_window_is_a_number_and_a_unit(text: str, length: timedelta) -> None:
    assert parse_window(text) == length


def test_the_default_window_is_the_last_hour() -> None:
    assert parse_window(DEFAULT_WINDOW) == timedelta(hours=1)


@pytest.mark.parametrize("text", ["", "1", "h", "0h", "-1h", "1.5h", "1w", "1h30m", "01h",
                                  "366d", "99999999d"])
def test_anything_else_is_refused_without_being_repeated(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|window") as refused:
        parse_window(text)
    assert str(refused.value) in (  # a fixed sentence: nothing of the input
        "a duration is a whole number and a unit: s, m, h or d (90s, 30m, 1h, 2d)",
        "a window is at most 365 days")
