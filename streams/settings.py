"""One settings model for the whole bus.

Every knob an operator may turn lives here, read from ``CIRCULATION_*`` environment variables or a
``.env`` file, so that the same code runs against the local stack, CI and a production cluster
without edits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
LogFormat = Literal["auto", "json", "console"]


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "circulation"


class Settings(BaseSettings):
    """Connection, security and local-stack settings (environment prefix ``CIRCULATION_``)."""

    model_config = SettingsConfigDict(
        env_prefix="CIRCULATION_", env_file=".env", extra="ignore", validate_default=True
    )

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka bootstrap servers."
    )
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        description="Base URL of a Confluent-compatible schema registry API.",
    )
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    topic_partitions: int = Field(
        3, ge=1, description="Partitions of topics the bus creates (provider and delivery topics)."
    )
    topic_replication: int = Field(1, ge=1, description="Replication factor of those topics.")

    subject_secret: SecretStr | None = Field(
        None,
        description="Bus secret keying subject references and pseudonyms. When unset, a random "
        "local secret is generated once under cache_dir (development only).",
    )

    log_format: LogFormat = Field(
        "auto", description="json for machines, console for people, auto picks by terminal."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of the routing worker's Prometheus endpoint "
        "(/metrics); off when unset. Each worker process on a host needs its own.")
    metrics_bind: str = Field(
        "0.0.0.0", description="Address the worker's metrics endpoint listens on.")  # noqa: S104
    fetch_max_wait_ms: int = Field(
        50, ge=1, le=1500, description="How long the broker may hold a routing worker's fetch "
        "(Faust's own 1500 ms stalls busy partitions behind idle ones; see streams.worker.intake).")

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where the local stack keeps downloaded jars, its data and its logs.",
    )
    local_data_dir: Path | None = Field(
        None, description="Run state of the local stack (data, pids, logs); <cache_dir>/local "
        "when unset.",
    )
    local_kafka_version: str = "4.1.1"
    local_kafka_port: int = Field(9092, ge=1, le=65535)
    local_controller_port: int = Field(9093, ge=1, le=65535)
    local_registry_version: str = "3.0.9"
    local_registry_port: int = Field(8081, ge=1, le=65535)
    local_start_timeout: float = Field(
        120.0, gt=0, description="Seconds to wait for a local component to answer."
    )
    local_fetch_timeout: float = Field(
        900.0, gt=0, description="Seconds allowed to Maven for fetching a component."
    )
    java_home: Path | None = Field(
        None, description="JDK used for the local stack; the java on PATH when unset."
    )

    @model_validator(mode="after")
    def _follow_local_ports(self) -> Settings:
        """Unless set explicitly, the broker and registry addresses are the local stack's."""
        if "kafka_bootstrap" not in self.model_fields_set:
            self.kafka_bootstrap = f"127.0.0.1:{self.local_kafka_port}"
        if "schema_registry_url" not in self.model_fields_set:
            self.schema_registry_url = (f"http://127.0.0.1:{self.local_registry_port}"
                                        "/apis/ccompat/v7")
        return self

    def bus_secret(self) -> SecretStr:
        """The secret keying subject references: the configured one, or a local one.

        A local secret is created once with owner-only permissions, so that a developer's
        references stay stable across runs without ever putting a secret in the repository.
        """
        if self.subject_secret is not None:
            return self.subject_secret
        path = self.cache_dir / "secrets" / "subject-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            draft = path.with_name(f".{path.name}.{os.getpid()}")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="ascii") as secret_file:
                secret_file.write(secrets.token_hex(32))
            with contextlib.suppress(FileExistsError):  # another process won the race: use its
                os.link(draft, path)
            draft.unlink()
        return SecretStr(path.read_text(encoding="ascii").strip())

    @property
    def local_run_dir(self) -> Path:
        """Where the local stack keeps broker data, pid files and logs."""
        return self.local_data_dir or self.cache_dir / "local"

    def kafka_client_options(self) -> dict[str, object]:
        """Keyword arguments shared by every aiokafka client, security included."""
        options: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        return options


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
