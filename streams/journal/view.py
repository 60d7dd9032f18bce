"""The journal's materialised view: every person's entries, on disk, one prefix scan away.

A RocksDB store (through ``rocksdict``) that the follower (:mod:`streams.journal.follower`)
keeps up to date from the audit and state topics, so that answering a person never scans the
audit trail: their entries are keyed ``subject reference · instant · source`` and read by one
prefix scan, in time order. Beside the entries, the view keeps each person's file (where they
stand with each contract, folded as routing folds it), the contracts as recorded, and how far
each partition was read: those positions are written in the same atomic batch as what was read
up to them, so a restarted reader resumes where it stopped, and a fresh one rebuilds from the
beginning. An entry is keyed by where its record was read (topic, partition, offset): a record
read twice is written twice to the same key.

The view forgets as the bus does: an audit entry once the audit retention deleted its record
(:meth:`JournalView.prune`), a consent or enrolment entry once its state key is tombstoned
(``retention expire-history``): entries made from a state record are listed under the record's
key, so that its tombstone finds them (:meth:`Batch.forget`).

One process holds a view at a time (RocksDB locks its directory): the gateway that follows it,
or a command that reads it while no gateway does.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rocksdict

from streams.journal.entries import Entry, Made, Source
from streams.state.contract import Contract
from streams.state.directory import NO_FILE, SubjectFile, decode_file, encode_file

_ENTRY = b"e\x00"
_FILE = b"f\x00"
_CONTRACT = b"c\x00"
_POSITION = b"p\x00"
_BY_RECORD = b"k\x00"
_LENGTH = struct.Struct(">I")
PRUNE_CHUNK = 10_000
_INSTANT = struct.Struct(">q")
_PLACE = struct.Struct(">iq")
WRITE_BUFFER = 32 * 1024 * 1024
BLOCK_CACHE = 64 * 1024 * 1024

Positions = dict[tuple[str, int], int]
"""(topic, partition) → the next offset to read."""


class ViewLocked(RuntimeError):
    """Another process holds the view (a running gateway, most often)."""


def _entry_key(subject: str, entry: Entry, source: Source) -> bytes:
    millis = int(entry.at.timestamp() * 1000)
    return (_ENTRY + subject.encode() + b"\x00" + _INSTANT.pack(millis)
            + source.topic.encode() + b"\x00" + _PLACE.pack(source.partition, source.offset))


def _record_prefix(topic: str, record_key: bytes) -> bytes:
    """Where the entries made from the records under one key of a state topic are listed
    (the key's length first: no key is a prefix of another's listing)."""
    return (_BY_RECORD + topic.encode() + b"\x00" + _LENGTH.pack(len(record_key))
            + record_key)


def _read_entry_key(key: bytes) -> tuple[datetime, str]:
    """An entry key's instant and topic (a subject reference holds no NUL)."""
    rest = key[len(_ENTRY):]
    after = rest.index(b"\x00") + 1
    (millis,) = _INSTANT.unpack_from(rest, after)
    topic_at = after + _INSTANT.size
    topic = rest[topic_at:rest.index(b"\x00", topic_at)].decode()
    return datetime.fromtimestamp(millis / 1000, UTC), topic


def _position_key(topic: str, partition: int) -> bytes:
    return _POSITION + topic.encode() + b"\x00" + str(partition).encode()


class Batch:
    """What one read of the topics changes, written at once with the positions it reached."""

    def __init__(self, view: JournalView) -> None:
        self._view = view
        self._batch = rocksdict.WriteBatch(raw_mode=True)
        self._files: dict[str, SubjectFile] = {}
        self._listed: dict[bytes, list[bytes]] = {}
        self.contracts: dict[str, Contract | None] = {}

    def add(self, made: Made, source: Source, record_key: bytes | None = None) -> None:
        """Keep an entry, and fold its change into the person's file. An entry made from a
        state record is listed under the record's key, so that a tombstone of that key
        (:meth:`forget`) finds it."""
        entry_key = _entry_key(made.subject, made.entry, source)
        self._batch.put(entry_key, made.entry.encode())
        if record_key is not None:
            listing = _record_prefix(source.topic, record_key)
            self._batch.put(listing + entry_key, b"")
            self._listed.setdefault(listing, []).append(entry_key)
        if made.change is not None:
            self._files[made.subject] = made.change.applied_to(self.file_of(made.subject))

    def file_of(self, subject: str) -> SubjectFile:
        """``subject``'s file with what this batch changed so far."""
        file = self._files.get(subject)
        return self._view.file_of(subject) if file is None else file

    def forget(self, topic: str, record_key: bytes) -> None:
        """Delete the entries made from the records under ``record_key`` of ``topic`` (its
        tombstone: the person's choice erased from the bus leaves their journal too)."""
        listing = _record_prefix(topic, record_key)
        for entry_key in [*self._view.listed(listing), *self._listed.pop(listing, [])]:
            self._batch.delete(entry_key)
            self._batch.delete(listing + entry_key)

    def contract(self, contract_id: str, contract: Contract | None) -> None:
        """Keep a contract as recorded now (None: it was erased)."""
        self.contracts[contract_id] = contract

    def commit(self, positions: Mapping[tuple[str, int], int]) -> None:
        for subject, file in self._files.items():
            if file:
                self._batch.put(_FILE + subject.encode(), encode_file(file))
            else:
                self._batch.delete(_FILE + subject.encode())
        for contract_id, contract in self.contracts.items():
            key = _CONTRACT + contract_id.encode()
            if contract is None:
                self._batch.delete(key)
            else:
                self._batch.put(key, contract.model_dump_json().encode())
        for (topic, partition), offset in positions.items():
            self._batch.put(_position_key(topic, partition), str(offset).encode())
        self._view.write(self._batch)


def _owner_only(path: Path) -> Path:
    """The store's folder inside ``path``, owner-only as the workers' state: the view names
    persons and what was done about them, and RocksDB creates its files readable by all under
    the usual umask. ``path`` itself is made owner-only when this process owns it; a mounted
    volume (root's, ``0777``) cannot be, hence the store in a folder of its own."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o700)
    store = path / "view"
    store.mkdir(exist_ok=True, mode=0o700)
    store.chmod(0o700)  # made before, or under a umask that left it open
    return store


class JournalView:
    """The view's store, opened for reading and writing by one process."""

    def __init__(self, path: Path) -> None:
        store = _owner_only(path)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER)
        options.set_keep_log_file_num(2)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(BLOCK_CACHE))
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        try:
            self._db = rocksdict.Rdict(str(store), options)
        except Exception as exc:  # rocksdict raises a bare Exception naming the lock file
            if "lock" in str(exc).lower():
                raise ViewLocked("the journal view is held by another process (a running "
                                 "gateway?): ask that gateway instead") from None
            raise
        self.path = path

    def batch(self) -> Batch:
        return Batch(self)

    def write(self, batch: rocksdict.WriteBatch) -> None:
        self._db.write(batch)

    def prune(self, before: datetime, topic: str) -> int:
        """Delete the entries made from ``topic``'s records dated before ``before``; how many.
        A full scan of the entries, in chunks: run it off the event loop."""
        batch, pruned = rocksdict.WriteBatch(raw_mode=True), 0
        for key, _ in self._scan(_ENTRY):
            at, source = _read_entry_key(key)
            if source == topic and at < before:
                batch.delete(key)
                pruned += 1
                if pruned % PRUNE_CHUNK == 0:
                    self.write(batch)
                    batch = rocksdict.WriteBatch(raw_mode=True)
        self.write(batch)
        return pruned

    def listed(self, listing: bytes) -> list[bytes]:
        """The entry keys listed under one record key (:func:`_record_prefix`)."""
        return [key[len(listing):] for key, _ in self._scan(listing)]

    def positions(self) -> Positions:
        """How far each partition was read."""
        found: Positions = {}
        for key, value in self._scan(_POSITION):
            topic, partition = key[len(_POSITION):].decode().split("\x00")
            found[(topic, int(partition))] = int(value)
        return found

    def entries(self, subject: str) -> list[Entry]:
        """``subject``'s entries, oldest first."""
        return [Entry.decode(value) for _, value in self._scan(_ENTRY + subject.encode()
                                                               + b"\x00")]

    def file_of(self, subject: str) -> SubjectFile:
        """Where ``subject`` stands with each contract, as routing reads it."""
        value = self._db.get(_FILE + subject.encode())
        return NO_FILE if value is None else decode_file(value)

    def contracts(self) -> dict[str, Contract]:
        """Every contract as recorded now."""
        return {key[len(_CONTRACT):].decode(): Contract.model_validate_json(value)
                for key, value in self._scan(_CONTRACT)}

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, value

    def close(self) -> None:
        self._db.close()
