"""Bring the local Kafka broker and schema registry up, down, and report on them truthfully."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from aiokafka.errors import KafkaError
from pydantic import SecretStr

from schemas.catalog import Catalog
from schemas.registry import RegistryError
from streams.dev.localstack.errors import StackError
from streams.dev.localstack.identity import IdentityServer, secure_components
from streams.dev.localstack.kafka import KafkaBroker
from streams.dev.localstack.process import ManagedProcess, port_answers
from streams.dev.localstack.registry import SchemaRegistry
from streams.dev.localstack.security import LocalSecurity
from streams.dev.settings import LocalStackSettings
from streams.kafka.admin import TopicError
from streams.kafka.provisioning import provision_catalog
from streams.security.acls import AclError, AclPlan, synchronise
from streams.security.principals import ADMIN
from streams.settings import Settings
from streams.state.contract_store import ContractStoreError

Progress = Callable[[str], None]
SECURE_VARIABLES = (
    "CIRCULATION_SASL_MECHANISM", "CIRCULATION_SASL_USERNAME", "CIRCULATION_SASL_PASSWORD",
    "CIRCULATION_SSL_CAFILE", "CIRCULATION_SCHEMA_REGISTRY_USERNAME",
    "CIRCULATION_SCHEMA_REGISTRY_PASSWORD", "CIRCULATION_IDENTITY_URL",
    "CIRCULATION_SUBJECT_SECRET_FILE", "CIRCULATION_PSEUDONYM_SECRET_FILE",
    "CIRCULATION_AUDIT_SIGNING_KEY_FILE")
"""What ``local env`` sets for a secure stack and unsets for a plain one."""
State = Literal["running", "unhealthy", "stopped", "foreign"]


class Component(Protocol):
    """What the stack needs to know of a component to run it."""

    name: str
    process: ManagedProcess

    @property
    def ports(self) -> tuple[int, ...]: ...

    @property
    def address(self) -> str: ...

    def prepare(self, fresh: bool) -> list[str]: ...

    def healthy(self) -> bool: ...


@dataclass(frozen=True)
class ComponentStatus:
    """One component as ``status`` sees it: whose process, which port, does it answer."""

    name: str
    state: State
    address: str
    pid: int | None
    log_file: str

    @property
    def running(self) -> bool:
        return self.state == "running"


def _quiet(_: str) -> None:
    return None


class LocalStack:
    """The broker and the registry, started from the cache folder and known by pid files.

    Secure, it keeps its data, pid files and logs apart from the plain stack's (under
    ``<run folder>/secure``), so switching between the two never opens a secure stack's topics
    to unauthenticated clients. ``secure=None`` takes whichever of the two is running (the
    plain one when neither is), which is what ``down``, ``status`` and ``env`` want.
    """

    def __init__(self, settings: LocalStackSettings, secure: bool | None = None) -> None:
        self.settings = settings
        self.security = LocalSecurity(settings.local_run_dir)
        if secure is None:
            secure = KafkaBroker(settings, self.security).process.pid() is not None
        self.secure = secure
        self.kafka = KafkaBroker(settings, self.security if secure else None)
        if secure:
            self.identity: IdentityServer | None
            self.identity, self.registry = secure_components(settings)
            self.components: tuple[Component, ...] = (self.kafka, self.identity, self.registry)
        else:
            self.identity, self.registry = None, SchemaRegistry(settings)
            self.components = (self.kafka, self.registry)

    def environment(self) -> dict[str, str]:
        """The ``CIRCULATION_*`` variables giving a shell this stack's operator: addresses and,
        when secure, ``bus-admin``'s credential, the CA and the bus's two secrets (files,
        generated in the run folder, owner-only). Empty values mean "unset it"."""
        admin = self.admin_settings()
        variables = {"CIRCULATION_KAFKA_BOOTSTRAP": admin.kafka_bootstrap,
                     "CIRCULATION_SCHEMA_REGISTRY_URL": admin.schema_registry_url,
                     "CIRCULATION_SECURITY_PROTOCOL": admin.security_protocol}
        secure = dict.fromkeys(SECURE_VARIABLES, "")
        if self.secure:
            password = self.security.password(ADMIN)
            secure |= {
                "CIRCULATION_SASL_MECHANISM": str(admin.sasl_mechanism),
                "CIRCULATION_SASL_USERNAME": ADMIN,
                "CIRCULATION_SASL_PASSWORD": password,
                "CIRCULATION_SSL_CAFILE": str(self.security.certificates.ca_file),
                "CIRCULATION_SCHEMA_REGISTRY_USERNAME": ADMIN,
                "CIRCULATION_SCHEMA_REGISTRY_PASSWORD": password,
                "CIRCULATION_IDENTITY_URL": self.settings.identity_url,
                "CIRCULATION_SUBJECT_SECRET_FILE": str(self.security.secret_file("subject")),
                "CIRCULATION_PSEUDONYM_SECRET_FILE": str(self.security.secret_file("pseudonym")),
                "CIRCULATION_AUDIT_SIGNING_KEY_FILE": str(self.security.signing_key_file()),
            }
        return variables | secure

    async def provision(self) -> AclPlan:
        """The operator's first steps on a secure stack, before any provider publishes or
        worker routes there: every catalog topic and schema (providers and workers only look
        schemas up), and the ACLs the applied contracts entitle."""
        admin = self.admin_settings()
        try:
            await provision_catalog(admin, Catalog.load())
            return await synchronise(admin)
        except (AclError, ContractStoreError, RegistryError, TopicError, KafkaError) as exc:
            raise StackError(f"provisioning the secure stack failed: {exc}") from exc

    def other_mode_running(self) -> bool:
        """Whether the stack of the other mode (secure or plain) runs in this run folder."""
        other = KafkaBroker(self.settings, None if self.secure else self.security)
        return other.process.pid() is not None

    def admin_settings(self) -> Settings:
        """The bus's settings for this stack as its operator (``bus-admin`` when secure)."""
        update: dict[str, object] = {"schema_registry_url": self.registry.address}
        if self.secure:
            update |= {"schema_registry_username": ADMIN,
                       "schema_registry_password": SecretStr(self.security.password(ADMIN)),
                       "identity_url": self.settings.identity_url}
        return self.kafka.client_settings().model_copy(update=update)

    def status(self) -> list[ComponentStatus]:
        """Each component's state, by pid file, command-line marker and a live request."""
        return [self._status_of(component) for component in self.components]

    def _status_of(self, component: Component) -> ComponentStatus:
        pid = component.process.pid()
        state: State
        if pid is not None:
            state = "running" if component.healthy() else "unhealthy"
        elif any(port_answers(port) for port in component.ports):
            state = "foreign"
        else:
            state = "stopped"
        return ComponentStatus(component.name, state, component.address, pid,
                               str(component.process.log_file))

    def up(self, fresh: bool = False, progress: Progress = _quiet,
           notice: Progress = _quiet) -> list[ComponentStatus]:
        """Start whatever is not running and wait until every component answers.

        Idempotent: a component already running under our pid file is left alone. On failure,
        the components this call started are stopped again and the error names the cause.
        ``progress`` gets passing news (a spinner's text), ``notice`` what must stay on screen.
        """
        if self.other_mode_running():
            running, asked = ("plain", "secure") if self.secure else ("secure", "plain")
            raise StackError(f"a {running} stack runs in {self.settings.local_run_dir}: stop it "
                             f"with `circulation local down` before starting a {asked} one")
        if fresh:
            self.down(progress)
        else:
            self._set_orphaned_records_aside(notice)
        started: list[Component] = []
        try:
            for component in self.components:
                if component.process.pid() is None:
                    self._start(component, fresh, progress)
                    started.append(component)
                else:
                    progress(f"{component.name}: already running")
            for component in self.components:
                self._wait_until_healthy(component, progress)
        except BaseException:
            for component in started:
                component.process.stop(grace=10)
            raise
        return self.status()

    def _set_orphaned_records_aside(self, notice: Progress) -> None:
        """Never start a broker whose records name schema ids the registry has lost.

        Stacks made before the registry kept its storage in a file lost their schemas at every
        restart: their topics' records are undecodable, and the bus would dead-letter them or
        stop on its own audit chain. With both components stopped, the broker's data folder is
        moved aside (nothing is deleted: the operator decides) and the broker starts empty; with
        the broker still running, nothing can be moved, so ``up`` refuses and says what to do.
        """
        if not self.kafka.holds_topics or self.registry.has_storage:
            return
        if self.registry.process.pid() is not None:
            return  # a registry of the old kind still runs: its schemas are not lost yet
        if self.kafka.process.pid() is not None:
            raise StackError(
                f"kafka keeps topics in {self.kafka.data_dir} but the registry has no storage in "
                f"{self.registry.storage_dir} (it was kept in memory and is lost): those "
                "records name schema ids the registry no longer knows. Start both empty with "
                "`circulation local up --fresh`, or set CIRCULATION_LOCAL_DATA_DIR to another "
                "folder to keep this one")
        aside = self.kafka.data_dir.with_name(
            f"{self.kafka.data_dir.name}.orphaned-{time.strftime('%Y%m%dT%H%M%S')}")
        self.kafka.data_dir.rename(aside)
        notice(f"kafka: its topics named schemas the registry had lost (it kept them in memory); "
               f"moved them to {aside}, the broker starts empty")

    def _start(self, component: Component, fresh: bool, progress: Progress) -> None:
        for port in component.ports:
            if port_answers(port):
                raise StackError(
                    f"{component.name}: port {port} on 127.0.0.1 is already taken by a process "
                    "this stack did not start; stop it or choose other ports "
                    "(CIRCULATION_LOCAL_KAFKA_PORT, CIRCULATION_LOCAL_CONTROLLER_PORT, "
                    "CIRCULATION_LOCAL_REGISTRY_PORT, CIRCULATION_LOCAL_IDENTITY_PORT)"
                )
        progress(f"{component.name}: fetching and preparing (first time downloads from Maven)")
        command = component.prepare(fresh)
        progress(f"{component.name}: starting")
        component.process.start(command)

    def _wait_until_healthy(self, component: Component, progress: Progress) -> None:
        progress(f"{component.name}: waiting until it answers on {component.address}")
        deadline = time.monotonic() + self.settings.local_start_timeout
        while time.monotonic() < deadline:
            if component.process.exited():
                raise component.process.fail("the process exited during start")
            if component.healthy():
                progress(f"{component.name}: ready on {component.address}")
                return
            time.sleep(0.5)
        raise component.process.fail(
            f"did not answer within {self.settings.local_start_timeout:.0f}s"
        )

    def down(self, progress: Progress = _quiet) -> list[str]:
        """Stop the processes this stack started (and only those); return their names."""
        stopped = []
        for component in reversed(self.components):
            if component.process.stop():
                progress(f"{component.name}: stopped")
                stopped.append(component.name)
        return stopped

    def component_process(self, name: str) -> ManagedProcess:
        """The managed process of the component called ``name``."""
        for component in self.components:
            if component.name == name:
                return component.process
        raise StackError(f"no component named {name!r}; choose one of "
                         f"{', '.join(c.name for c in self.components)}")
