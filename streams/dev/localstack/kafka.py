"""Apache Kafka as one KRaft node (combined broker and controller) on the loopback interface."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.dev.localstack.errors import StackError
from streams.dev.localstack.fetch import kafka_classpath
from streams.dev.localstack.process import ManagedProcess, java_binary
from streams.dev.settings import LocalStackSettings

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


class KafkaBroker:
    """A single-node KRaft cluster whose data survives restarts unless asked otherwise."""

    name = "kafka"

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.home = settings.local_run_dir / "kafka"
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
            "log.retention.check.interval.ms": "30000",
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        return path

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
        command = self._java(classpath, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                             "-t", str(uuid.uuid4().hex[:22]), "-c", str(properties))
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise StackError(f"kafka: formatting {self.data_dir} failed:\n"
                             f"{(done.stdout + done.stderr).strip()[-2000:]}")

    def healthy(self) -> bool:
        """A produce then consume round trip through the broker succeeds."""
        client_log = logging.getLogger("aiokafka")
        level = client_log.level
        client_log.setLevel(logging.CRITICAL)  # "topic not found yet" is expected while starting
        try:
            return asyncio.run(asyncio.wait_for(_round_trip(self.address), timeout=20))
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            client_log.setLevel(level)


async def _round_trip(bootstrap: str) -> bool:
    """Write one record to the health topic and read that very record back."""
    token = uuid.uuid4().hex.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:  # stop() also when start() fails, or the client is left unclosed
        await producer.start()
        sent = await producer.send_and_wait(HEALTH_TOPIC, token)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        partition = TopicPartition(HEALTH_TOPIC, sent.partition)
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        batch = await consumer.getmany(partition, timeout_ms=5000)
        return any(record.value == token for record in batch.get(partition, []))
    finally:
        await consumer.stop()
