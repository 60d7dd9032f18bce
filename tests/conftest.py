"""The test harness: a real Kafka broker and schema registry for the whole session.

Where they come from, in order: ``CIRCULATION_KAFKA_BOOTSTRAP`` and
``CIRCULATION_SCHEMA_REGISTRY_URL`` when both are set; testcontainers when a Docker engine
answers; otherwise the local stack, started (and afterwards stopped) by the fixture when it was
not already running.

A session that used the broker ends with a check of its own: once every test that used it has
finished, every record of every topic is scanned for a raw NIR (:mod:`tests.raw_nir_scan`),
and the session fails, naming topic, partition, offset and place, when one is found.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from streams.dev.localstack import LocalStack
from streams.dev.settings import LocalStackSettings
from streams.settings import Settings
from tests.raw_nir_scan import Scan, scan_every_topic


@dataclass(frozen=True)
class Services:
    """Where the session's broker and registry listen."""

    bootstrap: str
    registry_url: str

    def settings(self) -> Settings:
        """The bus's settings pointed at these services."""
        return Settings(kafka_bootstrap=self.bootstrap, schema_registry_url=self.registry_url)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def _from_containers() -> Iterator[Services]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, DockerContainer(
        "apicurio/apicurio-registry:3.0.9"
    ).with_exposed_ports(8080) as registry:
        wait_for_logs(registry, "Installed features", timeout=120)
        port = registry.get_exposed_port(8080)
        host = registry.get_container_host_ip()
        yield Services(kafka.get_bootstrap_server(), f"http://{host}:{port}/apis/ccompat/v7")


def _from_local_stack() -> Iterator[Services]:
    stack = LocalStack(LocalStackSettings())
    already_running = all(status.running for status in stack.status())
    stack.up()
    try:
        yield Services(stack.kafka.address, stack.registry.address)
    finally:
        if not already_running:
            stack.down()


def _provided() -> Iterator[Services]:
    bootstrap = os.environ.get("CIRCULATION_KAFKA_BOOTSTRAP")
    registry = os.environ.get("CIRCULATION_SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        yield Services(bootstrap, registry)
    elif _docker_answers():
        yield from _from_containers()
    else:
        yield from _from_local_stack()


_SCAN = pytest.StashKey[Scan]()


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    """A running broker and registry, whatever provides them; scanned for raw NIRs at the end
    of the session, before they stop."""
    for provided in _provided():
        yield provided
        scan = asyncio.run(scan_every_topic(provided.settings()))
        request.config.stash[_SCAN] = scan
        if scan.findings:
            pytest.fail(f"raw NIRs on the broker in {len(scan.findings)} places:\n"
                        + "\n".join(scan.findings[:50]), pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    """Say what the raw-NIR scan read, so that a session shows it ran and on what."""
    scan = config.stash.get(_SCAN, None)
    if scan is not None:
        verdict = "no raw NIR" if not scan.findings else f"{len(scan.findings)} raw NIR(s)"
        terminalreporter.write_line(f"raw-NIR scan: {scan.records} records on "
                                    f"{scan.partitions} partitions of every topic: {verdict}")


@pytest.fixture
def settings(services: Services) -> Settings:
    """The bus's settings pointed at the session's broker and registry."""
    return services.settings()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test and this run, so runs never see each other's data."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80]
    return f"test.{slug}.{uuid.uuid4().hex[:10]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to the real broker and registry."""
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
