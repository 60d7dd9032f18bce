"""Giving the memory a restore used back to the system.

Restoring a state partition reads its whole history in batches: records fetched, decoded and
folded, write buffers filled and flushed. Once done, almost all of it is free, but glibc's
allocator keeps freed pages in its arenas (one per thread that allocated, RocksDB's included) for
reuse, so the worker's resident memory stays at the restore's high-water mark for good, as large
with three partitions as with six. ``malloc_trim`` returns the free pages of every arena. Where
the C library is not glibc, there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _glibc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    library = ctypes.CDLL(name)
    return library if hasattr(library, "malloc_trim") else None


def give_back() -> bool:
    """Return the allocator's free pages to the system; False where that cannot be done."""
    library = _glibc()
    if library is None:
        return False
    library.malloc_trim(0)
    return True
