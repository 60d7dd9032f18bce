"""Files of the secure stack that hold a secret: readable and writable by their owner only.

The mode is set when the file is created, never changed after it was written: a file made with
the default mode and narrowed later lets another user open it in between and keep reading.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, content: str | bytes) -> None:
    """Replace ``path`` with ``content`` (text as UTF-8), owner-only from the first byte on;
    its folder is made owner-only when it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content.encode("utf-8") if isinstance(content, str) else content)
