"""``circulation api`` as a process of its own, as it runs in production, for the gateway's
integration tests: started on a free port (or the one :data:`PORT_VARIABLE` names) with the
environment given, ready once ``/readyz`` says so, stopped afterwards; its output goes to a
file a failure message quotes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "streams.cli"]
READY_WAIT = 120.0
"""Seconds a gateway may take to read every token and reach Kafka and the registry."""


PORT_VARIABLE = "CIRCULATION_TEST_GATEWAY_PORT"
"""Where the tests' gateway listens, on a machine whose ports are allotted; unset, a free one."""


def gateway_port() -> int:
    """The port of :data:`PORT_VARIABLE`, or one nothing listens on now, chosen by the
    system."""
    allotted = os.environ.get(PORT_VARIABLE)
    if allotted:
        return int(allotted)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_gateway(env: Mapping[str, str], log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway started with ``env``, once it is ready."""
    port = gateway_port()
    with log.open("wb") as output:
        process = subprocess.Popen([*CLI, "api", "--port", str(port)], env=dict(env),
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     timeout=60) as client:
            await _ready(client, process, log)
            yield client
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes],
                 log: Path) -> None:
    """Wait until the gateway says it is ready (or fail with its log's tail)."""
    deadline = asyncio.get_running_loop().time() + READY_WAIT
    while asyncio.get_running_loop().time() < deadline:
        assert process.poll() is None, f"the gateway exited: {log.read_text()[-3000:]}"
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway never got ready: {log.read_text()[-3000:]}")
