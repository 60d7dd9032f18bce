"""Files the connectors keep on their own disk: replaced whole and durably, owner-only, and
written by one process at a time.

A crash (``kill -9``, a power cut) must leave a file's old content or its new one, never half
of one, and a reader must never see a half-written file: so a file is written aside, under a
name no other writer uses, synced, renamed over the old one, and its folder synced so that the
rename itself survives. These files hold personal data (refused input lines, deliveries), so
they are their owner's only, and a symlink where one is written is replaced, never followed.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ASIDE_SUFFIX = ".tmp"
"""Ends the name of a file being written aside (which also starts with a dot)."""


class Locked(ValueError):
    """Another process holds the lock; the message says which, and what to do."""


def replace_durably(where: Path, text: str) -> None:
    """Replace ``where`` by ``text`` atomically and durably (see the module's doc)."""
    replace_durably_by(where, lambda out: out.write(text.encode()))


def replace_durably_by(where: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Replace ``where`` by what ``write`` writes to the file handed to it, atomically and
    durably: written aside (``.<name>.<random>.tmp``, owner-only from its creation), synced,
    renamed over ``where``, the folder synced. If ``write`` fails, ``where`` is untouched and
    nothing is left aside."""
    descriptor, aside = tempfile.mkstemp(dir=where.parent, prefix=f".{where.name}.",
                                         suffix=ASIDE_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(aside, where)
    except BaseException:
        Path(aside).unlink(missing_ok=True)
        raise
    sync_directory(where.parent)


def sync_directory(folder: Path) -> None:
    """Make the names in ``folder`` durable (a rename or an unlink survives a crash)."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def owner_only_appending(where: Path) -> IO[str]:
    """``where`` opened to append, readable by its owner only even when it existed before with
    a wider mode, and never through a symlink (a refused line may hold a NIR)."""
    descriptor = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
    except OSError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "a", encoding="utf-8")


@contextmanager
def exclusive_lock(where: Path, refusal: str) -> Iterator[None]:
    """Hold the lock file ``where`` for as long as the block runs; :class:`Locked` with
    ``refusal`` when another process holds it. The lock file stays: removing it would let a
    third process lock another file of the same name."""
    descriptor = os.open(where, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(refusal) from None
        yield
    finally:
        os.close(descriptor)
