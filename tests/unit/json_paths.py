"""Where the strings of a JSON document are: the places tests hide a NIR in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path (keys and list indices) of every string in ``value``, in document order."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_paths(item, (*path, index))
