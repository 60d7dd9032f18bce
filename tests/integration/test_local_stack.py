"""``circulation local`` keeps its promises: idempotent up, exact down, truthful status, clear
failures.

These tests run a second stack on other ports and in a run folder of their own, sharing only the
jar cache with the session's stack, so they never disturb it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx

from streams.kafka.admin import ensure_topics, topic_partitions
from streams.kafka.topics import TopicSpec
from tests.integration.private_stack import private_settings, run_cli

pytest_plugins = ("tests.integration.private_stack",)


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
    first = run_cli(stack_env, "local", "up")
    assert first.returncode == 0, first.stderr
    second = run_cli(stack_env, "local", "up")
    assert second.returncode == 0, second.stderr
    processes = _our_processes(run_dir)
    assert len(processes) == 2, processes
    assert sum("kafka.Kafka" in p for p in processes) == 1
    assert sum("apicurio-registry" in p for p in processes) == 1

    status = run_cli(stack_env, "local", "status")
    assert status.returncode == 0
    assert status.stdout.count("running") == 2

    down = run_cli(stack_env, "local", "down")
    assert down.returncode == 0
    assert _our_processes(run_dir) == []
    status = run_cli(stack_env, "local", "status")
    assert status.returncode == 1
    assert status.stdout.count("stopped") == 2


def test_port_taken_fails_with_reason_instead_of_waiting(stack_env: dict[str, str]) -> None:
    # With a start timeout of ten minutes, only failing on the taken port itself ends the command
    # before the subprocess limit; waiting for a broker that cannot start would raise
    # TimeoutExpired.
    env = {**stack_env, "CIRCULATION_LOCAL_START_TIMEOUT": "600"}
    port = int(env["CIRCULATION_LOCAL_KAFKA_PORT"])
    with socket.socket() as squatter:
        # as servers do: connections a stack on this port closed a moment ago (TIME_WAIT) must
        # not keep the squatter from listening
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_cli(env, "local", "up", timeout=90)
    assert result.returncode != 0
    assert f"port {port}" in result.stderr
    assert "already taken" in result.stderr
    assert _our_processes(stack_env["CIRCULATION_LOCAL_DATA_DIR"]) == []


def test_impossible_download_fails_with_reason(stack_env: dict[str, str]) -> None:
    env = {**stack_env, "CIRCULATION_LOCAL_KAFKA_VERSION": "0.0.0-does-not-exist"}
    result = run_cli(env, "local", "up", timeout=300)
    assert result.returncode != 0
    assert "could not fetch Apache Kafka 0.0.0-does-not-exist" in result.stderr
    assert not (Path(env["CIRCULATION_CACHE_DIR"]) / "kafka-0.0.0-does-not-exist").exists()
    assert _our_processes(stack_env["CIRCULATION_LOCAL_DATA_DIR"]) == []


def _register(registry: str, subject: str) -> int:
    schema = {"type": "record", "name": "Probe", "namespace": "test",
              "fields": [{"name": "n", "type": "int"}]}
    response = httpx.post(f"{registry}/subjects/{subject}/versions",
                          json={"schema": json.dumps(schema)}, timeout=10)
    response.raise_for_status()
    return int(response.json()["id"])


def _create_topic(env: dict[str, str], name: str) -> None:
    asyncio.run(ensure_topics(private_settings(env), [TopicSpec(name, 1, 1)]))


def test_schemas_survive_a_restart_and_fresh_wipes_them(stack_env: dict[str, str]) -> None:
    """Records carry schema ids: the registry must keep its ids as long as the broker keeps them."""
    registry = private_settings(stack_env).schema_registry_url
    assert run_cli(stack_env, "local", "up").returncode == 0
    schema_id = _register(registry, "probe-value")
    _create_topic(stack_env, "probe")
    assert run_cli(stack_env, "local", "down").returncode == 0

    assert run_cli(stack_env, "local", "up").returncode == 0
    kept = httpx.get(f"{registry}/schemas/ids/{schema_id}", timeout=10)
    assert kept.status_code == 200
    assert '"Probe"' in kept.json()["schema"]

    assert run_cli(stack_env, "local", "up", "--fresh").returncode == 0
    assert httpx.get(f"{registry}/schemas/ids/{schema_id}", timeout=10).status_code == 404
    assert httpx.get(f"{registry}/subjects", timeout=10).json() == []


def test_broker_topics_without_registry_storage_are_never_served(
        stack_env: dict[str, str]) -> None:
    """A run folder whose registry lost its schemas (an older stack kept them in memory): its
    topics are set aside when both components are stopped, and ``up`` refuses while the broker
    still runs."""
    run_dir = Path(stack_env["CIRCULATION_LOCAL_DATA_DIR"])
    assert run_cli(stack_env, "local", "up").returncode == 0
    _create_topic(stack_env, "probe")

    registry_pid = int((run_dir / "registry" / "registry.pid").read_text().split()[0])
    os.kill(registry_pid, signal.SIGTERM)
    _wait_gone(registry_pid)
    shutil.rmtree(run_dir / "registry" / "storage")
    refused = run_cli(stack_env, "local", "up")
    assert refused.returncode != 0
    assert "registry has no storage" in refused.stderr
    assert "--fresh" in refused.stderr

    assert run_cli(stack_env, "local", "down").returncode == 0
    assert not list(run_dir.glob("registry/storage/*.mv.db"))  # the refusal started nothing
    started = run_cli(stack_env, "local", "up")
    assert started.returncode == 0, started.stderr
    assert "moved them to" in started.stdout
    aside = list((run_dir / "kafka").glob("data.orphaned-*"))
    assert len(aside) == 1
    assert any(entry.name.startswith("probe-") for entry in aside[0].iterdir())
    assert asyncio.run(topic_partitions(private_settings(stack_env), ["probe"],
                                        missing_ok=True)) == []


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes():
                return  # a zombie: exited, not yet reaped by its new parent
        except OSError:
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} still running after {timeout:.0f}s")
