"""Where a worker keeps its partitions' stores: a slot of the state directory, its own while
it runs.

A store may be opened by one process only (RocksDB locks it), and several workers may run on one
host with the same settings. Each worker therefore claims the first free slot of the state
directory, ``slot-0``, ``slot-1``…, by an exclusive lock held for its life and released by the
system if it dies: a worker restarted alone finds its own slot, and the stores it left there,
again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

MAX_SLOTS = 64
"""More workers than this on one host sharing one state directory is a configuration error."""


class SlotsTaken(RuntimeError):
    """Every slot of the state directory is held by another worker."""


class StateSlot:
    """A slot of the state directory, locked by this process until :meth:`release`."""

    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self._lock = lock

    @classmethod
    def claim(cls, state_dir: Path) -> StateSlot:
        """The first slot of ``state_dir`` no other process holds, created owner-only."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for number in range(MAX_SLOTS):
            path = state_dir / f"slot-{number}"
            path.mkdir(exist_ok=True, mode=0o700)
            lock = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                continue
            return cls(path, lock)
        raise SlotsTaken(f"all {MAX_SLOTS} slots of the state directory {state_dir} are held by "
                         "running workers: give this one its own CIRCULATION_STATE_DIR")

    def partition(self, number: int) -> Path:
        """Where the store of state partition ``number`` lives."""
        return self.path / f"partition-{number}"

    def release(self) -> None:
        os.close(self._lock)
