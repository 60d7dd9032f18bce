"""After a restore the worker gives back what glibc's allocator kept of it."""

from __future__ import annotations

import resource
from pathlib import Path

from streams.state import heap


def _resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def test_freed_memory_pinned_under_the_heap_top_goes_back_to_the_system() -> None:
    # Values above pymalloc's 512-byte limit come from malloc's heap; keeping the last one
    # alive pins the heap's top, so freeing the others returns nothing by itself.
    values = [bytes(2048) + b"%d" % n for n in range(100_000)]
    pinned = values[-1]
    del values[:-1]
    before = _resident_mib()
    assert heap.give_back()
    after = _resident_mib()
    assert before - after > 100, (before, after)
    assert pinned.endswith(b"99999")
