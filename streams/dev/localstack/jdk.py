"""Finding a JDK recent enough for a component that needs a newer Java than the rest of the stack.

Kafka and Apicurio run on Java 17, the JDK most machines have on PATH; Keycloak 26 needs 21 or
later. Rather than ask every developer to switch their default JDK, the stack looks for one: the
setting first, then the stack's own JDK and the one on PATH, then the JDKs installed side by side
under ``/usr/lib/jvm`` (Debian's and Adoptium's packages put them there), newest first.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from streams.dev.localstack.errors import StackError

JVM_FOLDER = Path("/usr/lib/jvm")
_VERSION = re.compile(r'^JAVA_VERSION="(?:1\.)?(\d+)', re.MULTILINE)


def major_version(release: str) -> int | None:
    """The major version a JDK's ``release`` file names (``JAVA_VERSION="21.0.5"`` → 21)."""
    found = _VERSION.search(release)
    return int(found.group(1)) if found else None


def jdk_version(home: Path) -> int | None:
    """The major version of the JDK installed at ``home``, or None when it is not one."""
    try:
        release = (home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not (home / "bin" / "java").is_file():
        return None
    return major_version(release)


def path_jdk() -> Path | None:
    """The home of the java on PATH (``…/bin/java`` resolved through its links)."""
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else None


def installed_jdks(folder: Path = JVM_FOLDER) -> list[Path]:
    """The JDKs under ``folder``, links to the same one counted once."""
    if not folder.is_dir():
        return []
    return sorted({entry.resolve() for entry in folder.iterdir() if entry.is_dir()})


def newest_at_least(minimum: int, candidates: Iterable[Path | None]) -> Path | None:
    """The first of ``candidates`` that is a JDK ``minimum`` or later, in the order given."""
    for home in candidates:
        if home is not None and (jdk_version(home) or 0) >= minimum:
            return home
    return None


def java_at_least(minimum: int, setting: Path | None, setting_name: str,
                  preferred: Iterable[Path | None]) -> str:
    """The ``java`` of a JDK ``minimum`` or later: the one ``setting`` names (refused when too
    old), else the first of ``preferred`` that is recent enough, else the newest under
    ``/usr/lib/jvm``. The error names the setting to set."""
    if setting is not None:
        version = jdk_version(setting)
        if version is None or version < minimum:
            raise StackError(f"{setting_name} is {setting}, which is not a JDK {minimum} or later "
                             f"(found: {version or 'no JDK'})")
        return str(setting / "bin" / "java")
    installed = sorted(installed_jdks(), key=lambda home: jdk_version(home) or 0, reverse=True)
    home = newest_at_least(minimum, [*preferred, *installed])
    if home is None:
        raise StackError(f"no JDK {minimum} or later found (looked at the java on PATH and "
                         f"under {JVM_FOLDER}); install one or set {setting_name} to its folder")
    return str(home / "bin" / "java")
