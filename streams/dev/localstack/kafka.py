"""Apache Kafka as one KRaft node (combined broker and controller) on the loopback interface."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from streams.dev.localstack.errors import StackError
from streams.dev.localstack.fetch import kafka_classpath
from streams.dev.localstack.private_files import write_private
from streams.dev.localstack.process import ManagedProcess, java_binary
from streams.dev.localstack.security import LocalSecurity
from streams.dev.localstack.tls import SERVER_NAME
from streams.dev.settings import LocalStackSettings
from streams.kafka import clients
from streams.kafka.admin import TopicError, ensure_topics
from streams.kafka.topics import TopicSpec
from streams.security.principals import ADMIN, WORKER
from streams.settings import Settings

_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""

HEALTH_TOPIC = "__circulation_health"
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


class KafkaBroker:
    """A single-node KRaft cluster whose data survives restarts unless asked otherwise.

    Secure (``security`` given), it keeps its data apart from the plain stack's, listens with
    SASL_SSL only (SCRAM-SHA-512) and authorises every request against ACLs, denying what no
    ACL allows. Its controller listener takes TLS clients holding a certificate of the stack's
    own CA, which only the broker itself has; ``bus-admin`` and ``bus-worker`` are written into
    the metadata when the storage is formatted, so the first credential exists before any
    client can connect.
    """

    name = "kafka"

    def __init__(self, settings: LocalStackSettings, security: LocalSecurity | None = None) -> None:
        self.settings = settings
        self.security = security
        self.home = (security.folder if security else settings.local_run_dir) / "kafka"
        self.process = ManagedProcess(self.name, self.home)
        self.data_dir = self.home / "data"
        self.port = settings.local_kafka_port

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.settings.local_controller_port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _server_properties(self) -> Path:
        controller = self.settings.local_controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # how late expired data goes at the most past its retention: short, so that a
            # test of a contract's retention waits seconds, not the broker's default minutes
            "log.retention.check.interval.ms": "5000",
        }
        if self.security is not None:
            props |= self._secure_properties(controller)
        path = self.home / "server.properties"  # it may hold the admin's password
        write_private(path, "".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _secure_properties(self, controller: int) -> dict[str, str]:
        assert self.security is not None
        certificates = self.security.certificates
        certificates.ensure()
        admin = self.security.password(ADMIN)
        jaas = (f'{SCRAM_LOGIN} required username="{ADMIN}" password="{admin}";')
        return {
            "listeners": f"BROKER://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"BROKER://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "BROKER",
            "listener.security.protocol.map": "BROKER:SASL_SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.broker.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certificates.server_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certificates.ca_file),
            "listener.name.controller.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]*),.*$/$1/,DEFAULT",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:{SERVER_NAME}",
            "auto.create.topics.enable": "false",
        }

    def _log_config(self) -> Path:
        path = self.home / "log4j2.properties"
        path.write_text(_LOG4J2, encoding="utf-8")
        return path

    def _java(self, classpath: str, *args: str) -> list[str]:
        java = java_binary(self.settings)
        return [java, "-cp", classpath, f"-Dlog4j2.configurationFile={self._log_config()}",
                *args]

    @property
    def holds_topics(self) -> bool:
        """Whether the data folder holds partitions of topics other than Kafka's own (``__*``)."""
        if not self.data_dir.is_dir():
            return False
        return any(entry.is_dir() and not entry.name.startswith("__") and "-" in entry.name
                   for entry in self.data_dir.iterdir())

    def prepare(self, fresh: bool) -> list[str]:
        """Fetch Kafka, format storage on first start, and return the broker's command line."""
        classpath = kafka_classpath(self.settings.cache_dir, self.settings.local_kafka_version,
                          self.settings.local_fetch_timeout)
        if fresh:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        properties = self._server_properties()
        if not (self.data_dir / "meta.properties").exists():
            self._format(classpath, properties)
        return [*self._java(classpath, "-Xms256m", "-Xmx768m", self.process.marker),
                "kafka.Kafka", str(properties)]

    def _format(self, classpath: str, properties: Path) -> None:
        """Format the storage. The tool's arguments (with ``--add-scram``, the admin's and the
        worker's passwords) go through a java argument file, owner-only and removed after: a
        command line is readable by every user of the machine (``ps``)."""
        arguments = ["kafka.tools.StorageTool", "format", "--ignore-formatted",
                     "-t", str(uuid.uuid4().hex[:22]), "-c", str(properties),
                     *self._first_credentials()]
        argfile = self.home / "format.args"
        write_private(argfile, "".join(f"{_argfile_quoted(a)}\n" for a in arguments))
        try:
            done = subprocess.run(self._java(classpath, f"@{argfile}"), capture_output=True,
                                  text=True, check=False, timeout=120)
        finally:
            argfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise StackError(f"kafka: formatting {self.data_dir} failed:\n"
                             f"{(done.stdout + done.stderr).strip()[-2000:]}")

    def _first_credentials(self) -> list[str]:
        """``--add-scram`` arguments giving the bus's admin and worker their credentials."""
        if self.security is None:
            return []
        return [argument for principal in (ADMIN, WORKER) for argument in (
            "--add-scram",
            f"{MECHANISM}=[name={principal},password={self.security.password(principal)}]")]

    def client_settings(self) -> Settings:
        """The bus's settings for this broker, as its admin when it is secure."""
        settings = Settings(kafka_bootstrap=self.address, cache_dir=self.settings.cache_dir)
        if self.security is None:
            return settings
        return settings.model_copy(update={
            "security_protocol": "SASL_SSL", "sasl_mechanism": MECHANISM,
            "sasl_username": ADMIN, "sasl_password": SecretStr(self.security.password(ADMIN)),
            "ssl_cafile": self.security.certificates.ca_file})

    def healthy(self) -> bool:
        """A produce then consume round trip through the broker succeeds."""
        client_log = logging.getLogger("aiokafka")
        level = client_log.level
        client_log.setLevel(logging.CRITICAL)  # "topic not found yet" is expected while starting
        try:
            return asyncio.run(asyncio.wait_for(_round_trip(self.client_settings()), timeout=20))
        except (KafkaError, TopicError, OSError, TimeoutError):
            return False
        finally:
            client_log.setLevel(level)


def _argfile_quoted(argument: str) -> str:
    """``argument`` as one argument of a java ``@argfile``: double-quoted, backslashes and
    quotes escaped (the launcher reads them so); a line break cannot be said there."""
    if "\n" in argument or "\r" in argument:
        raise StackError("kafka: a path or argument of the storage tool holds a line break")
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _round_trip(settings: Settings) -> bool:
    """Write one record to the health topic and read that very record back."""
    token = uuid.uuid4().hex.encode()
    await ensure_topics(settings, [TopicSpec(HEALTH_TOPIC, 1, 1)], align=False)
    producer = clients.producer(settings, request_timeout_ms=5000)
    try:  # stop() also when start() fails, or the client is left unclosed
        await producer.start()
        sent = await producer.send_and_wait(HEALTH_TOPIC, token)
    finally:
        await producer.stop()
    consumer = clients.consumer(settings, enable_auto_commit=False)
    try:
        await consumer.start()
        partition = TopicPartition(HEALTH_TOPIC, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        batch = await consumer.getmany(partition, timeout_ms=5000)
        return any(record.value == token for record in batch.get(partition, []))
    finally:
        await consumer.stop()
