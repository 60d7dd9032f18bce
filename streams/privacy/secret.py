"""The bus's two secrets, each read only by the components that need it.

- The **subject secret** keys subject references (``sr1_``): the edge holds it, the publisher
  and the population and consent commands, which turn typed NIRs into references.
- The **pseudonym secret** keys subscribers' pseudonyms (``ps2_``): the routing workers hold
  it, and the commands that show or send a subscriber's pseudonyms.

Apart, a provider's process cannot compute what any subscriber receives, and a worker never
holds what turns a NIR into a reference. Each is read by its own accessor, at the start of the
component that needs it, from ``CIRCULATION_<NAME>_SECRET`` or from the file that
``CIRCULATION_<NAME>_SECRET_FILE`` names (the container convention: a mounted secret stays out of
the environment, and only the process that needs it ever opens it).

A secret is refused, in one line naming its setting and never its value, when it is shorter than
32 bytes, when zxcvbn (Dropbox's estimator: dictionaries, keyboard walks, repeats, sequences)
puts it under 128 bits, or when its file can be read or written by anyone but its owner. That
estimate rates random text at about 3.3 bits a character whatever its alphabet, so 32 random
bytes written as hex or base64 (64 or 43 to 44 characters) clear 128 bits with room to spare,
while repeated characters, short alphabets and word-based passphrases fall well short.

A development machine runs without configuring either: each is generated once under the cache
folder, owner-only, so that references and pseudonyms stay stable across runs without a secret
ever being written into the repository. Only on a PLAINTEXT bus: any other security protocol
means a real cluster, which must be given its secrets.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from streams.privacy.pseudonyms import MIN_SECRET_BYTES
from streams.settings import Settings

__all__ = ["MIN_SECRET_BITS", "SecretRefused", "generate_secret_file", "pseudonym_secret",
           "read_owner_only", "subject_secret"]

MIN_SECRET_BITS: Final = 128
_ESTIMATED_LENGTH: Final = 72  # zxcvbn's own limit; a longer secret is judged on its start
_MAKE_ONE: Final = ("use 32 random bytes, e.g. "
                    "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


class SecretRefused(ValueError):
    """A secret the bus will not start with; ``setting`` names where it came from."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def subject_secret(settings: Settings) -> SecretStr:
    """The secret keying subject references: for the edge only."""
    return _load(settings, "subject", settings.subject_secret, settings.subject_secret_file)


def pseudonym_secret(settings: Settings) -> SecretStr:
    """The secret keying subscribers' pseudonyms: for the routing workers and the commands that
    show or send pseudonyms."""
    return _load(settings, "pseudonym", settings.pseudonym_secret,
                 settings.pseudonym_secret_file)


def _load(settings: Settings, name: str, value: SecretStr | None,
          path: Path | None) -> SecretStr:
    setting = f"CIRCULATION_{name.upper()}_SECRET"
    if value is not None and path is not None:
        raise SecretRefused(setting, f"set it or {setting}_FILE, not both")
    if path is not None:
        return _strong(f"{setting}_FILE", read_owner_only(f"{setting}_FILE", path, "file"))
    if value is not None:
        return _strong(setting, value)
    if settings.security_protocol != "PLAINTEXT":
        raise SecretRefused(setting, f"unset (nor {setting}_FILE), and "
                            f"CIRCULATION_SECURITY_PROTOCOL is {settings.security_protocol}: a "
                            "local secret is generated on a PLAINTEXT bus only")
    kept = settings.cache_dir / "secrets" / f"{name}-secret"
    generate_secret_file(kept)
    return _strong(setting, read_owner_only(setting, kept, "development secret"))


def _strong(setting: str, secret: SecretStr) -> SecretStr:
    """``secret`` itself, unless it is too short or too guessable to key HMACs over NIRs: the
    NIR space can be enumerated, so the secret is all that stands between a reference or a
    pseudonym and the person."""
    value = secret.get_secret_value()
    if len(value.encode("utf-8")) < MIN_SECRET_BYTES:
        raise SecretRefused(setting, f"shorter than {MIN_SECRET_BYTES} bytes; {_MAKE_ONE}")
    if _estimated_bits(value) < MIN_SECRET_BITS:
        raise SecretRefused(setting, f"too guessable (under {MIN_SECRET_BITS} bits by zxcvbn's "
                            f"estimate); {_MAKE_ONE}")
    return secret


def _estimated_bits(value: str) -> float:
    """zxcvbn's estimate of the guesses ``value`` takes, in bits."""
    from zxcvbn import zxcvbn  # its dictionaries take a while to load: only when a secret is read

    estimate = zxcvbn(value[:_ESTIMATED_LENGTH])
    return float(estimate["guesses_log10"]) * math.log2(10)


def read_owner_only(setting: str, path: Path, what: str) -> SecretStr:
    """The secret kept in ``path``, refused when anyone but its owner may read or change it
    (the mode is read from the opened file, so that it is the one read)."""
    try:
        with path.open("rb") as kept:
            if os.fstat(kept.fileno()).st_mode & 0o077:
                raise SecretRefused(setting, f"the {what} {path} can be read or written by "
                                    "others than its owner: chmod 600 it")
            raw = kept.read()
    except OSError as exc:
        raise SecretRefused(setting, f"the {what} {path} cannot be read ({exc.strerror})"
                            ) from None
    try:
        return SecretStr(raw.decode("utf-8").strip())
    except UnicodeDecodeError:
        raise SecretRefused(setting, f"the {what} {path} is not UTF-8 text") from None


def generate_secret_file(path: Path, make: Callable[[], str] = lambda: secrets.token_hex(32),
                         ) -> None:
    """Create ``path`` (owner-only) with a random secret (by default 256 bits, hexadecimal;
    ``make`` gives another kind, a key's PEM) unless it exists; two processes starting
    together agree on the one that was linked first."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as secret_file:
        secret_file.write(make())
    with contextlib.suppress(FileExistsError):  # another process won the race: use its
        os.link(draft, path)
    draft.unlink()
