"""A second local stack for tests that must break or restart things the session's stack serves.

It runs on other ports and in a run folder of its own, sharing only the jar cache with the
session's stack, so stopping it, wiping it or writing bad records to its bus topics never
disturbs the other tests. Used as a pytest plugin
(``pytest_plugins = ("tests.integration.private_stack",)``).

(PYTEST_DONT_REWRITE: test modules import it before registering it as a plugin.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.dev.localstack.process import ManagedProcess
from streams.dev.settings import LocalStackSettings
from streams.settings import Settings

CLI = [sys.executable, "-m", "streams.cli"]
PRIVATE_PORTS = 20000
PRIVATE_SLOTS = 1200
"""Private stacks take three ports (four when secure) from 20000 + 10 × (pid mod 1200): all
below 32768."""
REPO = Path(__file__).resolve().parents[2]


def stack_environment(folder: Path) -> dict[str, str]:
    """Environment of a private stack whose run folder is under ``folder`` (not started)."""
    # Below Linux's ephemeral range (32768 and up): there the port may be the local end of any
    # client connection this session holds open (to the session's broker), which a listener
    # then cannot bind, and the stack fails with "port in use" for as long as it stays open.
    base = PRIVATE_PORTS + os.getpid() % PRIVATE_SLOTS * 10
    env = {
        **os.environ,
        "CIRCULATION_CACHE_DIR": str(LocalStackSettings().cache_dir),
        "CIRCULATION_LOCAL_DATA_DIR": str(folder / "run"),
        "CIRCULATION_LOCAL_KAFKA_PORT": str(base),
        "CIRCULATION_LOCAL_CONTROLLER_PORT": str(base + 1),
        "CIRCULATION_LOCAL_REGISTRY_PORT": str(base + 2),
        "CIRCULATION_LOCAL_IDENTITY_PORT": str(base + 3),  # a secure stack's only
        "COLUMNS": "200",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env["CIRCULATION_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{base}"
    env["CIRCULATION_SCHEMA_REGISTRY_URL"] = f"http://127.0.0.1:{base + 2}/apis/ccompat/v7"
    return env


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment of a private stack (not started: the test decides when); stopped after."""
    env = stack_environment(tmp_path)
    yield env
    subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, check=False)


@contextlib.contextmanager
def running_stack(folder: Path) -> Iterator[dict[str, str]]:
    """A private stack under ``folder``, up with the bus's schemas registered, for the block;
    its environment. Stopped after."""
    env = stack_environment(folder)
    try:
        for step in (("local", "up"), ("schemas", "register")):
            done = run_cli(env, *step)
            assert done.returncode == 0, f"{' '.join(step)}: {done.stdout}{done.stderr}"
        yield env
    finally:
        subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, check=False)


def component(env: dict[str, str], name: str) -> ManagedProcess:
    """The process of the private stack's component ``name`` (``kafka``, ``registry``), to
    stop or signal it alone."""
    return ManagedProcess(name, Path(env["CIRCULATION_LOCAL_DATA_DIR"]) / name)


def run_cli(env: dict[str, str], *args: str,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``circulation ARGS…`` against the stack ``env`` names, its output captured."""
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def private_settings(env: dict[str, str]) -> Settings:
    """The settings a process started with ``env`` would read."""
    return Settings(cache_dir=Path(env["CIRCULATION_CACHE_DIR"]),
                    kafka_bootstrap=env["CIRCULATION_KAFKA_BOOTSTRAP"],
                    schema_registry_url=env["CIRCULATION_SCHEMA_REGISTRY_URL"])
