"""Formatting the secure broker's storage: the first passwords never on a command line."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streams.dev.localstack import kafka
from streams.dev.localstack.kafka import KafkaBroker
from streams.dev.localstack.security import LocalSecurity
from streams.dev.settings import LocalStackSettings
from streams.security.principals import ADMIN, WORKER


def test_the_storage_tool_gets_the_passwords_from_an_owner_only_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LocalStackSettings(local_data_dir=tmp_path / 'run "quoted" dir',
                                  java_home=tmp_path / "jdk")
    security = LocalSecurity(settings.local_run_dir)
    broker = KafkaBroker(settings, security)
    broker.home.mkdir(parents=True)
    seen: dict[str, Any] = {}

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        seen["command"] = command
        argfile = Path(command[-1].removeprefix("@"))
        seen["mode"] = stat.S_IMODE(argfile.stat().st_mode)
        seen["argfile"] = argfile.read_text(encoding="utf-8")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(kafka.subprocess, "run", run)
    broker._format("a.jar:b.jar", broker.home / "server.properties")
    passwords = [security.password(ADMIN), security.password(WORKER)]
    assert not any(p in argument for p in passwords for argument in seen["command"])
    assert all(p in seen["argfile"] for p in passwords)
    assert seen["mode"] == 0o600
    assert not list(broker.home.glob("*.args"))
    assert f'"{broker.home / "server.properties"}"'.replace('"quoted"', '\\"quoted\\"') \
        in seen["argfile"]
