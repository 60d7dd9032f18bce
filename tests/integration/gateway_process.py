"""A real gateway for the tests: ``circulation api`` in its own process, on a free port.

It is started on the session's broker and registry, after the tokens it must know are issued
(it reads them all before answering), and stopped with SIGTERM. :class:`TcpRelay` stands
between a gateway and the registry, so that a test can make the registry unreachable for that
gateway alone, as a network fault would, without stopping the registry every test shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.conftest import Services

CLI = [sys.executable, "-m", "streams.cli"]
START_TIMEOUT_S = 60
_T = TypeVar("_T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_environment(services: Services, **overrides: str) -> dict[str, str]:
    """A gateway process's environment: the session's bus, and any setting overridden."""
    return {**os.environ, "CIRCULATION_KAFKA_BOOTSTRAP": services.bootstrap,
            "CIRCULATION_SCHEMA_REGISTRY_URL": services.registry_url,
            "CIRCULATION_LOG_FORMAT": "json", **overrides}


@contextlib.contextmanager
def running_gateway(environment: Mapping[str, str], port: int = 0,
                    log: Path | None = None) -> Iterator[str]:
    """``circulation api`` with ``environment`` on ``port`` (a free one by default), its
    output in ``log`` (a temporary file by default), yielding its base URL once it answers."""
    port = port or free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = log or Path(folder) / "gateway.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*CLI, "api", "--port", str(port)], env=dict(environment),
                stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _until_up(url, process, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def gateway_client(environment: Mapping[str, str],
                         log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway started with ``environment``, its output in ``log``."""
    with running_gateway(environment, log=log) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            yield client


def _until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client() as client:
        while True:
            if process.poll() is not None:
                raise AssertionError("the gateway exited: " + log.read_text(errors="replace"))
            with contextlib.suppress(httpx.TransportError):
                if client.get(url + "/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError("the gateway did not answer: "
                                     + log.read_text(errors="replace"))
            time.sleep(0.2)


class TcpRelay:
    """Forwards a local port to ``target`` on a thread of its own until :meth:`cut`, which
    closes the listener and every connection through it: the target is then unreachable
    through the relay."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        if self._server is not None:
            self._call(self._close(self._server))
            self._server = None

    def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(30)

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, target_writer}
        await asyncio.gather(self._pipe(reader, target_writer),
                             self._pipe(target_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)
