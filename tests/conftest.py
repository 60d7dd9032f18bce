"""The test harness: a real Kafka broker and schema registry for the whole session.

Where they come from, in order: ``CIRCULATION_KAFKA_BOOTSTRAP`` and
``CIRCULATION_SCHEMA_REGISTRY_URL`` when both are set; testcontainers when a Docker engine
answers; otherwise the local stack, started (and afterwards stopped) by the fixture when it was
not already running.

A session that used the broker ends with checks of its own, once every test that used it has
finished: every record of every topic is scanned for a raw NIR (:mod:`tests.raw_nir_scan`), and
every audit chain is verified over the records written during the session (one writer per
chain: two writers would fork it). The session fails, naming places and reasons, never values,
when either finds anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from schemas.catalog import Catalog
from streams.audit.trail import audit_ends, verify_since
from streams.dev.localstack import LocalStack
from streams.dev.settings import LocalStackSettings
from streams.kafka.provisioning import provision_catalog
from streams.settings import Settings
from tests import hostile_inputs
from tests.raw_nir_scan import scan_every_topic


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


_CHECKS = pytest.StashKey[list[str]]()


@dataclass(frozen=True)
class SessionStart:
    """What the closing checks need to know of the broker as the session found it."""

    audit_ends: dict[int, int]


async def session_start(settings: Settings) -> SessionStart:
    """Provision the catalog first, as an operator does before any worker runs: a worker on a
    plain registry registers only the newest version of a schema it writes with (the audit
    record's), which would make that version the subject's first and the older ones later."""
    await provision_catalog(settings, Catalog.load())
    return SessionStart(await audit_ends(settings))


async def closing_checks(settings: Settings, start: SessionStart) -> tuple[list[str], list[str]]:
    """The session's own checks, once every test that used the broker has finished: what each
    read, and what each found wrong (places and reasons, never values)."""
    scan = await scan_every_topic(settings)
    trail = await verify_since(settings, start.audit_ends)
    report = [f"raw-NIR scan: {scan.records} records on {scan.partitions} partitions of every "
              f"topic: {len(scan.findings)} raw NIR(s)",
              f"audit chains: {trail.records} records written in {trail.chains} chains during "
              f"the session: {len(trail.breaks)} break(s)"]
    problems = [f"raw NIR at {finding}" for finding in scan.findings]
    problems += [f"audit chain broken at {problem}" for problem in trail.breaks]
    return report, problems


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    """A running broker and registry, whatever provides them. Once every test that used them
    has finished, and before they stop, the session checks them: no raw NIR on any topic, and
    every audit chain still linked over the records the session's workers wrote."""
    with contextlib.contextmanager(_provided)() as provided:
        start = asyncio.run(session_start(provided.settings()))
        yield provided
        report, problems = asyncio.run(closing_checks(provided.settings(), start))
        request.config.stash[_CHECKS] = report
        if problems:
            pytest.fail(f"the session's closing checks failed in {len(problems)} place(s) (not "
                        "this test's fault):\n" + "\n".join(problems[:50]), pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    """Say what the closing checks read, so that a session shows they ran, and on what; and
    how many hostile inputs the session tried."""
    for line in [*config.stash.get(_CHECKS, []), *hostile_inputs.summary()]:
        terminalreporter.write_line(line)


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
