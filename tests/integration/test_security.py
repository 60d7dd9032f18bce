"""The secure stack: every party authenticated, authorised by its contracts, denied the rest.

One private stack started with ``circulation local up --secure`` serves the module: SASL_SSL only,
SCRAM-SHA-512, ACLs enforced and nothing allowed that no ACL allows. The operator (``bus-admin``,
from ``circulation local env``) applies the example contracts, creates the parties' credentials
and runs ``acl sync``; each test then acts as one party with its own credential, through the real
broker, and checks what the broker lets it do.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from connectors import ingest_progress
from schemas.catalog import Catalog
from schemas.registry import RegistryRefused
from streams.dev.synthetic import generate, people
from streams.kafka import clients
from streams.kafka.clients import librdkafka_options
from streams.settings import Settings
from tests.integration.gateway_process import running_gateway
from tests.integration.private_stack import CLI, PRIVATE_PORTS, PRIVATE_SLOTS, REPO, run_cli

pytestmark = pytest.mark.integration

CONTRACTS = REPO / "deploy" / "contracts"
A, B = "ville-de-lyon", "departement-du-rhone"
A_TOPIC, B_TOPIC = "deliver.ville-de-lyon.lyon-cantine-2026", \
    "deliver.departement-du-rhone.cd69-aide-etudiants"
BUS_TOPICS = ("bus.audit", "bus.dlq", "bus.consents", "bus.population", "bus.contracts")
DENIED_TOPIC = KafkaError.TOPIC_AUTHORIZATION_FAILED
DENIED_GROUP = KafkaError.GROUP_AUTHORIZATION_FAILED
DENIED = (DENIED_GROUP, DENIED_TOPIC)
"""Either refusal: the broker authorises a consumer's group before its topics."""


class SecureStack:
    """The operator's environment of the module's secure stack, and each party's."""

    def __init__(self, operator: dict[str, str], run_dir: Path) -> None:
        self.operator = operator
        self.run_dir = run_dir
        self.passwords: dict[str, str] = {}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``circulation ARGS`` as the operator; no output but a credential's own printing may
        show any password the module used."""
        done = run_cli(self.operator, *args)
        if args[:1] != ("credentials",) or args[1:2] == ("list",):
            for password in self.secrets():
                assert password not in done.stdout + done.stderr, args
        return done

    def secrets(self) -> list[str]:
        """Every password of the module: the parties', bus-worker's and bus-admin's."""
        kept = self.run_dir / "secure" / "passwords"
        return [*self.passwords.values(), self.operator["CIRCULATION_SASL_PASSWORD"],
                *(path.read_text().strip() for path in kept.iterdir())]

    def credential(self, principal: str) -> str:
        """Create ``principal``'s credential (once) and return its password."""
        if principal not in self.passwords:
            made = self.cli("credentials", "create", principal)
            assert made.returncode == 0, made.stderr[-2000:]
            printed = json.loads(made.stdout)
            assert printed["principal"] == printed["username"] == principal
            self.passwords[principal] = printed["password"]
        return self.passwords[principal]

    def env_of(self, principal: str, password: str | None = None) -> dict[str, str]:
        """The operator's environment with ``principal``'s credential instead of bus-admin's."""
        password = password if password is not None else self.credential(principal)
        return {**self.operator, "CIRCULATION_SASL_USERNAME": principal,
                "CIRCULATION_SASL_PASSWORD": password,
                "CIRCULATION_SCHEMA_REGISTRY_USERNAME": principal,
                "CIRCULATION_SCHEMA_REGISTRY_PASSWORD": password}

    def settings_of(self, principal: str, password: str | None = None) -> Settings:
        env = self.env_of(principal, password)
        return Settings(**{name.removeprefix("CIRCULATION_").lower(): value
                           for name, value in env.items()
                           if name.startswith("CIRCULATION_") and value
                           and name.removeprefix("CIRCULATION_").lower() in Settings.model_fields})

    def sync(self, *flags: str) -> dict[str, Any]:
        done = self.cli("acl", "sync", "--json", *flags)
        assert done.returncode == 0, done.stderr[-2000:]
        plan: dict[str, Any] = json.loads(done.stdout)
        return plan


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    """A private secure stack with the example contracts applied and the ACLs synchronised."""
    run_dir = tmp_path_factory.mktemp("secure")
    base = PRIVATE_PORTS + os.getpid() % PRIVATE_SLOTS * 10 + 5  # beside stack_env's ports
    env = {**os.environ, "CIRCULATION_LOCAL_DATA_DIR": str(run_dir / "run"),
           "CIRCULATION_LOCAL_KAFKA_PORT": str(base),
           "CIRCULATION_LOCAL_CONTROLLER_PORT": str(base + 1),
           "CIRCULATION_LOCAL_REGISTRY_PORT": str(base + 2),
           "CIRCULATION_LOCAL_IDENTITY_PORT": str(base + 3),
           "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    for name in [n for n in env if n.startswith("CIRCULATION_") and "LOCAL" not in n
                 and n != "CIRCULATION_CACHE_DIR"]:
        del env[name]  # the session's stack settings must not leak into the secure one
    try:
        up = run_cli(env, "local", "up", "--secure", timeout=600)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        printed = run_cli(env, "local", "env")
        assert printed.returncode == 0, printed.stderr
        operator = {**env, **_exports(printed.stdout)}
        stack = SecureStack(operator, run_dir / "run")
        applied = stack.cli("contracts", "apply", str(CONTRACTS))
        assert applied.returncode == 0, applied.stderr[-2000:]
        stack.sync()
        yield stack
    finally:
        subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, check=False)


def _exports(printed: str) -> dict[str, str]:
    """``export NAME=value`` lines as a mapping (values are shell-quoted)."""
    import shlex

    exported = {}
    for line in printed.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            exported[name] = shlex.split(value)[0] if value else ""
    return exported


def _read_error(settings: Settings, topic: str, group: str | None = None) -> int | None:
    """The error the broker gives ``settings``' principal subscribing to ``topic`` in
    ``group`` and reading it (None: allowed, the end of a partition was reached)."""
    consumer = Consumer({**librdkafka_options(settings), "enable.partition.eof": True,
                         "group.id": group or f"{settings.sasl_username}.probe",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "log_level": 0})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is None:
                continue  # nothing yet, or a record: readable so far
            if message.error().code() == KafkaError._PARTITION_EOF:
                return None
            return int(message.error().code())
        raise AssertionError(f"no answer reading {topic} within 30 s")
    finally:
        consumer.close()


def _eventually(check: Callable[[], Any], expected: Any, within: float = 15.0) -> None:
    """ACL changes reach the authoriser through the metadata log: allow them a moment."""
    deadline = time.monotonic() + within
    while (got := check()) != expected:
        assert time.monotonic() < deadline, f"got {got!r}, expected {expected!r}"
        time.sleep(0.5)


def _write_error(settings: Settings, topic: str) -> int | None:
    """The error the broker gives ``settings``' principal writing one record to ``topic``."""
    outcome: list[Any] = []
    producer = Producer({**librdkafka_options(settings), "log_level": 0,
                         "message.timeout.ms": 15000})
    producer.produce(topic, b"probe", partition=0,
                     on_delivery=lambda error, _: outcome.append(error))
    producer.flush(20)
    assert outcome, f"no delivery report writing to {topic}"
    return None if outcome[0] is None else int(outcome[0].code())


def _authentication_refused(settings: Settings) -> bool:
    """Whether the broker refuses to authenticate ``settings``' credential."""
    seen: list[KafkaError] = []
    admin = AdminClient({**librdkafka_options(settings), "log_level": 0,
                         "error_cb": seen.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)  # error callbacks are served by poll
    return any(error.code() == KafkaError._AUTHENTICATION for error in seen)


def test_a_subscriber_reads_its_own_deliveries_and_nothing_else(secure: SecureStack) -> None:
    a = secure.settings_of(f"subscriber.{A}")
    assert _read_error(a, A_TOPIC, group=f"subscriber.{A}.client") is None
    assert _read_error(a, B_TOPIC, group=f"subscriber.{A}.client") == DENIED_TOPIC
    for topic in (*BUS_TOPICS, "provider.cnaf.quotient_familial"):
        assert _read_error(a, topic, group=f"subscriber.{A}.client") == DENIED_TOPIC, topic


def test_a_subscriber_cannot_join_or_commit_another_s_group(secure: SecureStack) -> None:
    a = secure.settings_of(f"subscriber.{A}")
    secure.credential(f"subscriber.{B}")
    options = {**librdkafka_options(a), "group.id": f"subscriber.{B}.client", "log_level": 0,
               "enable.auto.commit": False}
    joiner = Consumer(options)
    try:
        joiner.subscribe([A_TOPIC])
        errors = [m.error().code() for m in (joiner.poll(1.0) for _ in range(15))
                  if m is not None and m.error() is not None]
        assert DENIED_GROUP in errors
    finally:
        joiner.close()
    with pytest.raises(GroupAuthorizationFailedError):
        asyncio.run(_commit(a, f"subscriber.{B}.client", A_TOPIC))
    asyncio.run(_commit(a, f"subscriber.{A}.client", A_TOPIC))  # its own group: allowed


async def _commit(settings: Settings, group: str, topic: str) -> None:
    """Commit offset 0 of ``topic``'s partition 0 for ``group``, as the bus's clients do."""
    consumer = clients.consumer(settings, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])  # aiokafka commits offsets of assigned partitions only
        await consumer.commit({partition: 0})
    finally:
        await consumer.stop()


def test_a_provider_writes_its_own_topics_only(secure: SecureStack) -> None:
    cnaf = secure.settings_of("provider.cnaf")
    assert _write_error(cnaf, "provider.cnaf.quotient_familial") is None
    for topic in ("provider.msa.quotient_familial", A_TOPIC, *BUS_TOPICS):
        assert _write_error(cnaf, topic) == DENIED_TOPIC, topic
    # not even its own topic: any group it might use is denied before the topic is
    assert _read_error(cnaf, "provider.cnaf.quotient_familial") in DENIED
    admin = clients.cluster_admin(cnaf)  # kept: a destroyed client fails its futures
    created = admin.create_topics([NewTopic("provider.cnaf.more", 1, 1)])
    with pytest.raises(KafkaException) as refused:
        created["provider.cnaf.more"].result(timeout=30)
    assert refused.value.args[0].code() in (DENIED_TOPIC, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def test_wrong_unknown_and_rotated_credentials_are_refused(secure: SecureStack) -> None:
    principal = "provider.msa"
    first = secure.credential(principal)
    assert not _authentication_refused_quietly(secure.settings_of(principal, first))
    assert _authentication_refused(secure.settings_of(principal, first + "x"))
    assert _authentication_refused(secure.settings_of("subscriber.nobody-here", first))
    rotated = secure.cli("credentials", "rotate", principal)
    assert rotated.returncode == 0, rotated.stderr
    second = json.loads(rotated.stdout)["password"]
    assert second != first
    assert _authentication_refused(secure.settings_of(principal, first))
    assert not _authentication_refused_quietly(secure.settings_of(principal, second))
    secure.passwords[principal] = second
    listed = secure.cli("credentials", "list", "--json")
    assert listed.returncode == 0
    assert principal in {h["principal"] for h in json.loads(listed.stdout)}
    for password in (first, second):
        assert password not in listed.stdout + listed.stderr


def _authentication_refused_quietly(settings: Settings) -> bool:
    """False when the credential authenticates (the broker answers a metadata request)."""
    admin = AdminClient({**librdkafka_options(settings), "log_level": 0})
    try:
        admin.list_topics(timeout=10)
    except KafkaException:
        return True
    return False


def test_an_ended_contract_loses_its_access_at_the_first_sync_after_its_retention(
        secure: SecureStack, tmp_path: Path) -> None:
    """Active, then moved into the past beyond its retention: the dry run shows exactly the
    subscriber's two grants going, the sync removes them, and the broker then refuses it."""
    original = yaml.safe_load((CONTRACTS / "ugap-marches-publics.yaml").read_text())
    topic = f"deliver.{original['subscriber']}.{original['id']}"
    who = f"subscriber.{original['subscriber']}"
    ugap = secure.settings_of(who)
    _eventually(lambda: _read_error(ugap, topic, group=f"{who}.client"), None)
    ended = {**original, "valid_from": "2024-01-01", "valid_until": "2024-06-30",
             "retention": "P30D"}
    path = tmp_path / "ugap.yaml"
    path.write_text(yaml.safe_dump(ended, allow_unicode=True), encoding="utf-8")
    assert secure.cli("contracts", "apply", str(path)).returncode == 0
    plan = secure.sync("--dry-run")
    assert plan["dry_run"] is True
    assert plan["add"] == []
    assert sorted((g["resource_type"], g["resource"], g["operation"]) for g in plan["remove"]) \
        == [("group", f"{who}.", "Read"), ("topic", topic, "Read")]
    assert {g["principal"] for g in plan["remove"]} == {f"User:{who}"}
    assert _read_error(ugap, topic, group=f"{who}.client") is None, "the dry run changed ACLs"
    assert secure.sync()["remove"] == plan["remove"]
    _eventually(lambda: _read_error(ugap, topic, group=f"{who}.client") in DENIED, True)
    assert secure.sync("--dry-run")["remove"] == []


def _deliveries(secure: SecureStack, env: dict[str, str], contract: str,
                wanted: int, within: float = 60.0) -> list[dict[str, Any]]:
    """The contract's deliveries (erasure notices aside) read from the beginning with
    ``circulation consume`` under ``env``'s credential, once ``wanted`` are there."""
    deadline = time.monotonic() + within
    while True:
        read = run_cli(env, "consume", contract, "--from-beginning", "--timeout", "5")
        assert read.returncode == 0, read.stderr[-2000:]
        found = [json.loads(line) for line in read.stdout.splitlines() if line.strip()]
        found = [event for event in found if event["type"] != "erasure_notice"]
        if len(found) >= wanted or time.monotonic() > deadline:
            return found


def test_publish_route_consume_each_on_its_own_credential(
        secure: SecureStack, tmp_path: Path) -> None:
    """The gateway enrols a person, a provider publishes about them, the worker routes as
    bus-worker, the subscriber reads with ``circulation consume``; after the contract is
    revoked, the subscriber still reads (its retention runs) but nothing new arrives. No
    password any of them used shows in any output, log or audit record."""
    contract, dataset, provider = ("idfm-tarif-solidarite", "statut_demandeur_emploi",
                                   "france_travail")
    worker_password = (secure.run_dir / "secure" / "passwords" / "bus-worker").read_text().strip()
    worker_env = {**secure.env_of("bus-worker", worker_password),
                  "CIRCULATION_SUBJECT_SECRET_FILE": ""}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([*CLI, "worker"], env=worker_env, stdout=log,
                              stderr=subprocess.STDOUT)
    outputs: list[str] = []
    try:
        person = people(4242, 1)[0]
        gateway = {**secure.env_of("bus-gateway")}
        enrolled = run_cli(gateway, "population", "add", contract, person.nir)
        assert enrolled.returncode == 0, enrolled.stderr[-2000:]
        provider_env = {**secure.env_of(f"provider.{provider.replace('_', '-')}"),
                        "CIRCULATION_PSEUDONYM_SECRET_FILE": ""}
        subscriber_env = secure.env_of("subscriber.idfm")
        published = _publish(provider_env, tmp_path / "first.jsonl", dataset, provider, person, 1)
        first = _deliveries(secure, subscriber_env, contract, 1)
        assert [event["type"] for event in first] == [dataset]
        assert first[0]["subject"].startswith("ps2_")
        assert set(first[0]["data"]) == {"inscrit", "categorie"}
        revoked = secure.cli("contracts", "revoke", contract, "--yes")
        assert revoked.returncode == 0, revoked.stderr[-2000:]
        plan = secure.sync()
        assert plan["remove"] == [], "a revoked contract's subscriber lost access within retention"
        again = _publish(provider_env, tmp_path / "second.jsonl", dataset, provider, person, 2)
        time.sleep(5)  # the worker had its chance to route it
        after = _deliveries(secure, subscriber_env, contract, 2, within=10)
        assert [event["id"] for event in after] == [first[0]["id"]], "delivered after revocation"
        lag = run_cli(worker_env, "lag", "--json", "--samples", "2", "--window", "1")
        assert lag.returncode in (0, 1), lag.stderr[-2000:]  # 2: the cluster could not be asked
        assert f"subscriber.idfm.{contract}" in lag.stdout  # the exporter sees the groups
        outputs.append(lag.stdout + lag.stderr)
        outputs += [enrolled.stdout + enrolled.stderr, published, again]
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()
    outputs.append((tmp_path / "worker.log").read_text(errors="replace"))
    admin_password = secure.operator["CIRCULATION_SASL_PASSWORD"]
    outputs.append(_audit_bytes(secure.settings_of("bus-admin", admin_password)).decode("latin-1"))
    for text in outputs:
        for password in secure.secrets():
            assert password not in text


def _publish(env: dict[str, str], path: Path, dataset: str, provider: str, person: Any,
             seed: int) -> str:
    """``circulation publish`` of one synthetic event about ``person``; its output."""
    events = list(generate(dataset, 1, seed, provider=provider, subjects=[person]))
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    done = run_cli(env, "publish", str(path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def _audit_bytes(settings: Settings) -> bytes:
    """Every audit record's bytes, headers included, as the broker keeps them."""
    consumer = Consumer({**librdkafka_options(settings), "group.id": "bus-admin.audit-scan",
                         "enable.partition.eof": True, "auto.offset.reset": "earliest",
                         "log_level": 0})
    seen = b""
    try:
        consumer.subscribe(["bus.audit"])
        ends = 0
        deadline = time.monotonic() + 30
        while ends < 3 and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                ends += message.error().code() == KafkaError._PARTITION_EOF
                continue
            seen += (message.value() or b"") + b"".join(
                v or b"" for _, v in message.headers() or [])
    finally:
        consumer.close()
    assert seen, "no audit record read"
    return seen


def test_one_credential_opens_the_broker_and_the_registry_to_read_only(
        secure: SecureStack) -> None:
    """``credentials create`` sets the registry's side too: a provider reads schemas with its
    password and may not register one; ``rotate`` refuses the old password there at once."""
    principal = "provider.cnous"
    first = secure.credential(principal)
    reader = clients.schema_registry(secure.settings_of(principal, first))
    subject = "provider.cnous.statut_etudiant_boursier-value"
    schema_id = reader.versions(subject) and reader.lookup(
        subject, Catalog.load().dataset("statut_etudiant_boursier").latest.text)
    assert schema_id
    assert reader.schema(schema_id)
    with pytest.raises(RegistryRefused, match="HTTP 403"):
        reader.register("provider.cnous.probe-value", {"type": "string"})
    rotated = secure.cli("credentials", "rotate", principal)
    assert rotated.returncode == 0, rotated.stderr
    second = json.loads(rotated.stdout)["password"]
    secure.passwords[principal] = second
    with pytest.raises(RegistryRefused, match="HTTP 401"):
        clients.schema_registry(secure.settings_of(principal, first)).subjects()
    assert subject in clients.schema_registry(secure.settings_of(principal, second)).subjects()
    kept = [path for path in secure.run_dir.rglob("*") if path.is_file()
            and "identity" not in path.relative_to(secure.run_dir).parts]
    for path in kept:
        content = path.read_bytes()
        assert first.encode() not in content, path
        assert second.encode() not in content, path


def test_the_broker_takes_no_plaintext_client_and_its_controller_no_stranger(
        secure: SecureStack) -> None:
    """Only SASL_SSL on the client port; the controller's port asks for a certificate of the
    stack's own CA, which only the broker holds."""
    plain = secure.settings_of("bus-admin", secure.operator["CIRCULATION_SASL_PASSWORD"]
                               ).model_copy(update={"security_protocol": "SASL_PLAINTEXT"})
    assert _authentication_refused_quietly(plain)
    port = int(secure.operator["CIRCULATION_LOCAL_CONTROLLER_PORT"])
    stranger = ssl.create_default_context(cafile=secure.operator["CIRCULATION_SSL_CAFILE"])
    assert not _tls_session(port, stranger)
    tls = secure.run_dir / "secure" / "tls"
    broker = ssl.create_default_context(cafile=secure.operator["CIRCULATION_SSL_CAFILE"])
    broker.load_cert_chain(tls / "server.pem", tls / "server-key.pem")
    assert _tls_session(port, broker), "the probe cannot tell a refusal from a failure"
    folder = secure.run_dir / "secure"
    for path in (folder / "tls" / "ca-key.pem", folder / "tls" / "server-key.pem",
                 folder / "kafka" / "server.properties", folder / "passwords" / "bus-admin"):
        assert path.stat().st_mode & 0o077 == 0, path


def _tls_session(port: int, context: ssl.SSLContext) -> bool:
    """Whether the TLS server on ``port`` keeps a session with ``context``'s client open (with
    TLS 1.3 a refused client certificate is only told after the handshake, on first read)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as session:
            session.settimeout(2)
            try:
                return session.recv(1) != b""
            except TimeoutError:
                return True  # nothing to say to a silent client, and no refusal either
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False


def test_the_file_sink_deletes_and_audits_on_its_own_credential(
        secure: SecureStack, tmp_path: Path) -> None:
    """``sink files`` as bus-sink: it finds its audit chain's head, deletes a file whose
    deliveries expired, and writes the deletion to the audit trail, which the operator's
    ``audit verify`` finds intact."""
    folder = tmp_path / "lyon-cantine-2026"
    folder.mkdir(mode=0o700)
    expired = folder / "2026-10-01.jsonl"
    expired.write_text(json.dumps({"id": "old-0", "time": "2026-10-01T00:00:00.000Z",
                                   "expiresat": "2026-10-02T00:00:00Z"}) + "\n")
    sink = subprocess.Popen([*CLI, "sink", "files", "lyon-cantine-2026", "--dir", str(tmp_path)],
                            env=secure.env_of("bus-sink"), stderr=subprocess.PIPE, text=True)
    try:
        _eventually(expired.exists, False, within=60)
    finally:
        sink.terminate()
        _, stderr = sink.communicate(timeout=60)
    assert sink.returncode == 0, stderr[-2000:]
    verified = secure.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert b"lyon-cantine-2026/2026-10-01.jsonl" in _audit_bytes(
        secure.settings_of("bus-admin", secure.operator["CIRCULATION_SASL_PASSWORD"]))


def test_acl_sync_removes_what_no_contract_entitles(secure: SecureStack) -> None:
    """An ACL written by hand (here: every topic to a subscriber) is an entitlement nobody
    can account for: the dry run names it, the sync removes it."""
    foreign = AclBinding(ResourceType.TOPIC, "bus.", ResourcePatternType.PREFIXED,
                         f"User:subscriber.{A}", "*", AclOperation.READ, AclPermissionType.ALLOW)
    admin = clients.cluster_admin(secure.settings_of(
        "bus-admin", secure.operator["CIRCULATION_SASL_PASSWORD"]))
    for future in admin.create_acls([foreign]).values():
        future.result()
    plan = secure.sync("--dry-run")
    assert plan["add"] == []
    assert [(g["principal"], g["resource"], g["operation"]) for g in plan["remove"]] == \
        [(f"User:subscriber.{A}", "bus.", "Read")]
    assert secure.sync()["remove"] == plan["remove"]
    assert secure.sync("--dry-run")["remove"] == []


def test_a_plain_stack_is_refused_while_the_secure_one_runs(secure: SecureStack) -> None:
    """Both kinds keep their data apart; starting the other kind in the same run folder is
    refused, so that nobody restarts the secure stack's broker open by mistake."""
    env = {name: value for name, value in secure.operator.items()
           if "LOCAL" in name or not name.startswith("CIRCULATION_")}
    plain = run_cli(env, "local", "up")
    assert plain.returncode == 1
    assert "a secure stack runs" in plain.stderr
    assert run_cli(env, "local", "status").returncode == 0  # still the secure one, running


def test_a_provider_s_ingest_rerun_that_must_read_its_topics_back_is_refused_with_what_to_do(
        secure: SecureStack, tmp_path: Path) -> None:
    """A provider's principal may only write to its topics. Its first ``ingest-file`` run needs
    no more; a rerun after a crash reads them back, and is refused, not taken for an empty
    read (which would send every unsettled line again). The operator's rerun finds them."""
    events = list(generate("quotient_familial", 5, 7, provider="cnaf"))
    path = tmp_path / "envoi.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    provider = {**secure.env_of("provider.cnaf"), "CIRCULATION_PSEUDONYM_SECRET_FILE": ""}
    first = run_cli(provider, "ingest-file", str(path))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    recorded = ingest_progress.load(path)
    assert recorded is not None
    ingest_progress.save(path, recorded.model_copy(update={
        "settled_through": 0, "published": 0, "finished": False}))  # a crash before the save

    again = run_cli(provider, "ingest-file", str(path))

    assert again.returncode == 1
    assert "rerun as a principal that may read them, e.g. the operator's" in " ".join(
        again.stderr.split())
    kept = ingest_progress.load(path)
    assert kept is not None
    assert kept.settled_through == 0
    operator = secure.cli("ingest-file", str(path))
    assert operator.returncode == 0, operator.stderr[-2000:]
    assert re.search(r"already written\W+5\b", operator.stdout), operator.stdout


def test_the_gateway_runs_as_bus_gateway_and_publishes_for_a_token_holder(
        secure: SecureStack) -> None:
    """On the secured cluster the gateway reads the token hashes and writes a provider's topic
    on its own credential: its grants are enough, and a provider's token is all the provider
    needs."""
    made = secure.cli("credentials", "create", "provider.cnaf", "--token")
    assert made.returncode == 0, made.stderr[-2000:]
    token = json.loads(made.stdout)["token"]
    event = next(iter(generate("quotient_familial", 1, 99, provider="cnaf")))
    with running_gateway(secure.env_of("bus-gateway")) as url, httpx.Client() as client:
        assert client.get(url + "/readyz").status_code == 200
        answer = client.post(url + "/v1/events", content=json.dumps(event), headers={
            "Content-Type": "application/cloudevents+json", "Authorization": f"Bearer {token}"})
        refused = client.post(url + "/v1/events", content=json.dumps(event), headers={
            "Content-Type": "application/cloudevents+json", "Authorization": "Bearer circ_x"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == [event["id"]]
    assert refused.status_code == 401
    assert token not in json.dumps(secure.cli("credentials", "list", "--json").stdout)
