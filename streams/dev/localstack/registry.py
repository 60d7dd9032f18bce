"""Apicurio Registry, whose Confluent-compatible API the project uses.

Its storage is an H2 database in a file beside the broker's data, not Apicurio's default
in-memory database: records on the topics carry schema ids, so a registry that forgets its
schemas when it restarts, while the broker keeps its records, leaves every record undecodable.
Both keep their state between ``up``s and ``--fresh`` wipes both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from streams.dev.localstack.fetch import registry_app
from streams.dev.localstack.process import ManagedProcess, java_binary
from streams.dev.settings import LocalStackSettings

CCOMPAT_PATH = "/apis/ccompat/v7"


class SchemaRegistry:
    """Apicurio Registry's Quarkus app, its SQL storage on H2 in a file under the run folder."""

    name = "registry"

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.home = settings.local_run_dir / "registry"
        self.process = ManagedProcess(self.name, self.home)
        self.port = settings.local_registry_port
        self.storage_dir = self.home / "storage"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def has_storage(self) -> bool:
        """Whether a database from an earlier start exists (H2 names it ``<base>.mv.db``)."""
        return any(self.storage_dir.glob("*.mv.db"))

    def _database_url(self) -> str:
        return f"jdbc:h2:file:{Path(self.storage_dir, 'registry')}"

    def prepare(self, fresh: bool) -> list[str]:
        """Fetch the registry and return its command line (``fresh`` wipes its storage)."""
        runner = registry_app(self.settings.cache_dir, self.settings.local_registry_version,
                              self.settings.local_fetch_timeout)
        if fresh:
            shutil.rmtree(self.storage_dir, ignore_errors=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        return [
            java_binary(self.settings), "-Xms128m", "-Xmx512m", self.process.marker,
            f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
            "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
            f"-Dapicurio.datasource.url={self._database_url()}",
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
