"""The bus secret: the one key behind every subject reference and pseudonym.

In production it is configured (``CIRCULATION_SUBJECT_SECRET``). On a development machine, when
none is configured, a random one is generated once under the cache folder with owner-only
permissions, so that a developer's references stay stable across runs without a secret ever
being written into the repository or a settings file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from streams.settings import Settings


def bus_secret(settings: Settings) -> SecretStr:
    """The configured secret, or this machine's generated development secret."""
    if settings.subject_secret is not None:
        return settings.subject_secret
    return SecretStr(_development_secret(settings.cache_dir / "secrets" / "subject-secret"))


def _development_secret(path: Path) -> str:
    """The secret kept at ``path``, created (owner-only) by the first process that asks; two
    processes starting together agree on the one that was linked first."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as secret_file:
            secret_file.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):  # another process won the race: use its
            os.link(draft, path)
        draft.unlink()
    return path.read_text(encoding="ascii").strip()
