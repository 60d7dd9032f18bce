"""What tests of the commands' secrets share: a strong secret, and settings read afresh.

The commands read their settings once per process (``get_settings`` is cached); a test that sets
the environment must clear that cache before and after, and run where no ``.env`` file is.

(PYTEST_DONT_REWRITE: test modules import it before registering it as a plugin.)
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.settings import get_settings


def strong_secret() -> SecretStr:
    """A secret every strength rule accepts: 32 random bytes, URL-safe base64."""
    return SecretStr(secrets.token_urlsafe(32))


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The command's settings read afresh from this test's environment."""
    monkeypatch.chdir(tmp_path)  # no .env file
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
