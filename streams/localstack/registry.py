"""Apicurio Registry, in-memory, whose Confluent-compatible API the project uses."""

from __future__ import annotations

import httpx

from streams.localstack.fetch import registry_app
from streams.localstack.process import ManagedProcess, java_binary
from streams.settings import Settings

CCOMPAT_PATH = "/apis/ccompat/v7"


class SchemaRegistry:
    """Apicurio Registry's Quarkus app, storage in memory (schemas are re-registered at start)."""

    name = "registry"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.local_run_dir / "registry"
        self.process = ManagedProcess(self.name, self.home)
        self.port = settings.local_registry_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def prepare(self, fresh: bool) -> list[str]:  # noqa: ARG002 - storage is in memory anyway
        """Fetch the registry and return its command line."""
        runner = registry_app(self.settings.cache_dir, self.settings.local_registry_version,
                              self.settings.local_fetch_timeout)
        self.home.mkdir(parents=True, exist_ok=True)
        return [
            java_binary(self.settings), "-Xms128m", "-Xmx512m", self.process.marker,
            f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
            "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
            "-Dquarkus.log.console.format=%d{HH:mm:ss} %-5p [%c{2.}] %s%e%n",
            "-jar", str(runner),
        ]

    def healthy(self) -> bool:
        """The Confluent-compatible API answers a subjects listing."""
        try:
            response = httpx.get(f"{self.address}/subjects", timeout=3.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
