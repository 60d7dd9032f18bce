"""``circulation local`` keeps its promises: idempotent up, exact down, truthful status, clear
failures.

These tests run a second stack on other ports and in a run folder of their own, sharing only the
jar cache with the session's stack, so they never disturb it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings

CLI = [sys.executable, "-m", "streams.cli"]


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    base = 20000 + os.getpid() % 2000 * 10
    env = {
        **os.environ,
        "CIRCULATION_CACHE_DIR": str(Settings().cache_dir),
        "CIRCULATION_LOCAL_DATA_DIR": str(tmp_path / "run"),
        "CIRCULATION_LOCAL_KAFKA_PORT": str(base),
        "CIRCULATION_LOCAL_CONTROLLER_PORT": str(base + 1),
        "CIRCULATION_LOCAL_REGISTRY_PORT": str(base + 2),
        "COLUMNS": "200",
    }
    yield env
    subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, check=False)


def _run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _our_processes(run_dir: str) -> list[str]:
    """Command lines of live processes carrying this run folder's marker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "-Dcirculation.local=" in cmdline and run_dir in cmdline:
            found.append(cmdline)
    return found


def test_up_twice_then_down(stack_env: dict[str, str]) -> None:
    run_dir = stack_env["CIRCULATION_LOCAL_DATA_DIR"]
    first = _run(stack_env, "local", "up")
    assert first.returncode == 0, first.stderr
    second = _run(stack_env, "local", "up")
    assert second.returncode == 0, second.stderr
    processes = _our_processes(run_dir)
    assert len(processes) == 2, processes
    assert sum("kafka.Kafka" in p for p in processes) == 1
    assert sum("apicurio-registry" in p for p in processes) == 1

    status = _run(stack_env, "local", "status")
    assert status.returncode == 0
    assert status.stdout.count("running") == 2

    down = _run(stack_env, "local", "down")
    assert down.returncode == 0
    assert _our_processes(run_dir) == []
    status = _run(stack_env, "local", "status")
    assert status.returncode == 1
    assert status.stdout.count("stopped") == 2


def test_port_taken_fails_with_reason_instead_of_waiting(stack_env: dict[str, str]) -> None:
    # With a start timeout of ten minutes, only failing on the taken port itself ends the command
    # before the subprocess limit; waiting for a broker that cannot start would raise
    # TimeoutExpired.
    env = {**stack_env, "CIRCULATION_LOCAL_START_TIMEOUT": "600"}
    port = int(env["CIRCULATION_LOCAL_KAFKA_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = _run(env, "local", "up", timeout=90)
    assert result.returncode != 0
    assert f"port {port}" in result.stderr
    assert "already taken" in result.stderr
    assert _our_processes(stack_env["CIRCULATION_LOCAL_DATA_DIR"]) == []


def test_impossible_download_fails_with_reason(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "CIRCULATION_LOCAL_KAFKA_VERSION": "0.0.0-does-not-exist"}
    result = _run(env, "local", "up", timeout=300)
    assert result.returncode != 0
    assert "could not fetch Apache Kafka 0.0.0-does-not-exist" in result.stderr
    assert not (Path(env["CIRCULATION_CACHE_DIR"]) / "kafka-0.0.0-does-not-exist").exists()
    assert _our_processes(stack_env["CIRCULATION_LOCAL_DATA_DIR"]) == []
