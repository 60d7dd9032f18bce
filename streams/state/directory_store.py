"""One partition of the reference directory, on disk: RocksDB, with the positions it folded.

A worker keeps the files of the subjects whose events it routes, and only those: partition ``p``
of ``bus.population`` and ``bus.consents`` holds the subjects of partition ``p`` of every provider
topic (:func:`streams.kafka.partitioning.subject_partition`). As Kafka Streams keeps a task's
state, each partition's files live in a RocksDB store of their own, with a bounded memory budget,
so a worker's memory follows the partitions it holds and not the population.

The positions folded so far are written in the same atomic batch as the files they produced, so
a store is always a consistent prefix of its topics: after a crash or a restart the worker reads
the topics on from there, not from the beginning. Every change a record makes is a plain
overwrite (this contract now enrols this subject, this is now the latest consent), so reading a
record twice changes nothing. The write-ahead log is off for the same reason: a store that loses
its last writes in a crash also loses the positions that went with them.

A store is thrown away and rebuilt from its topics when it cannot be trusted: written for other
topics (a cluster or topic recreated: the topics' ids differ), or left alone long enough that
compaction may have removed a tombstone it never read (:data:`STALE_AFTER`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rocksdict

from streams.state.directory import NO_FILE, SubjectFile, decode_file, encode_file

STALE_AFTER = 12 * 3600
"""Seconds after which a store is rebuilt rather than read on: half of Kafka's default
``delete.retention.ms`` (a day), how long compaction keeps a tombstone for readers to see."""
WRITE_BUFFER = 4 << 20
BLOCK_CACHE = 8 << 20
"""A store's memory budget: its write buffers (two at most) and its block cache, index and
filter blocks included, so that what a store holds in memory is bounded whatever it keeps on
disk."""
FLUSH_EVERY = 60.0
"""Seconds between two flushes of a store that keeps changing: without a write-ahead log, what a
crash loses is read again from the topics, and a quiet partition's changes would otherwise stay
in memory until its write buffer fills."""
_META = b"m"
_FILE = b"s"
"""Key prefixes: the store's own record, and subjects' files (a subject reference written by
anyone can never be taken for the former)."""
_MEMORY_PROPERTIES = ("rocksdb.cur-size-all-mem-tables", "rocksdb.block-cache-usage",
                      "rocksdb.estimate-table-readers-mem")

Positions = dict[str, int]
"""Per state topic, the offset of the next record this partition's store has to fold."""


class DirectoryStore:
    """The files of one partition's subjects, and the positions they were folded up to."""

    def __init__(self, path: Path, identity: Mapping[str, str], now: float | None = None) -> None:
        """Open (or create) the store at ``path`` for the topics ``identity`` names (topic →
        topic id); a store written for other topics, or too long ago, starts again empty."""
        self.path = path
        self.identity = dict(identity)
        self._db = _open(path)
        meta = self._meta()
        if meta is not None and not _trusted(meta, self.identity, now or time.time()):
            self._db.close()
            shutil.rmtree(path)
            self._db = _open(path)
            meta = None
        self.positions: Positions = dict(meta["positions"]) if meta else {}
        self.rebuilt = meta is None
        """Whether the store started empty (its topics are read from the beginning)."""
        self._flushed = time.monotonic()
        self._writes = rocksdict.WriteOptions()
        self._writes.disable_wal = True  # type: ignore[method-assign,assignment]  # a property

    def _meta(self) -> dict[str, Any] | None:
        value = self._db.get(_META)
        meta = json.loads(value) if value is not None else None
        return meta if isinstance(meta, dict) else None

    def file_of(self, subject: str) -> SubjectFile:
        value = self._db.get(_FILE + subject.encode())
        return decode_file(value) if value is not None else NO_FILE

    def write(self, files: Mapping[str, SubjectFile], positions: Positions) -> None:
        """Store changed files and the positions they were folded up to, in one atomic batch."""
        self.positions.update(positions)
        batch = rocksdict.WriteBatch(raw_mode=True)
        for subject, file in files.items():
            if file:
                batch.put(_FILE + subject.encode(), encode_file(file))
            else:
                batch.delete(_FILE + subject.encode())
        batch.put(_META, json.dumps({"identity": self.identity, "positions": self.positions,
                                     "saved_at": time.time()}).encode())
        self._db.write(batch, self._writes)
        if time.monotonic() - self._flushed >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered to disk, which frees the write buffers: a restore fills them
        all, and they would otherwise stay full as long as the partition is quiet."""
        self._db.flush()
        self._flushed = time.monotonic()

    def memory(self) -> int:
        """Bytes this store holds in memory: write buffers, cached blocks, table readers."""
        return sum(self._db.property_int_value(name) or 0 for name in _MEMORY_PROPERTIES)

    def close(self) -> None:
        """Flush what is buffered (so a restart reads on from here) and release the store."""
        self.flush()
        self._db.close()


def _trusted(meta: Mapping[str, Any], identity: Mapping[str, str], now: float) -> bool:
    saved_at = meta.get("saved_at")
    return (meta.get("identity") == identity and isinstance(saved_at, int | float)
            and now - saved_at < STALE_AFTER and isinstance(meta.get("positions"), dict))


def _open(path: Path) -> rocksdict.Rdict:
    path.mkdir(parents=True, exist_ok=True)
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(WRITE_BUFFER)
    options.set_max_write_buffer_number(2)
    options.set_max_open_files(256)
    options.set_keep_log_file_num(2)
    table = rocksdict.BlockBasedOptions()
    table.set_block_cache(rocksdict.Cache(BLOCK_CACHE))
    table.set_cache_index_and_filter_blocks(True)
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    return rocksdict.Rdict(str(path), options)
