"""Settings of the local development stack: ports, versions, folders and the JDK it runs on.

Read from the same ``CIRCULATION_*`` environment as the bus's own :class:`~streams.settings.
Settings`, but apart from them: a production deployment never sets or reads these. The bus's
defaults (``127.0.0.1:9092`` and ``http://127.0.0.1:8081/apis/ccompat/v7``) are the local
stack's default addresses; a stack moved to other ports gives its addresses with
:meth:`LocalStackSettings.bus_settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.settings import Settings, default_cache_dir

IDENTITY_REALM = "circulation"
"""The identity server's realm holding the registry's roles and one client per principal."""


class LocalStackSettings(BaseSettings):
    """Where and how ``circulation local`` runs Kafka and the registry (prefix ``CIRCULATION_``)."""

    model_config = SettingsConfigDict(
        env_prefix="CIRCULATION_", env_file=".env", extra="ignore", validate_default=True
    )

    cache_dir: Path = Field(
        default_factory=default_cache_dir,
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
    local_keycloak_version: str = Field(
        "26.5.6", description="Keycloak (org.keycloak:keycloak-quarkus-dist), the secure stack's "
        "identity server.")
    local_identity_port: int = Field(
        8180, ge=1, le=65535, description="HTTPS port of the secure stack's identity server.")
    local_start_timeout: float = Field(
        120.0, gt=0, description="Seconds to wait for a local component to answer."
    )
    local_fetch_timeout: float = Field(
        900.0, gt=0, description="Seconds allowed to Maven for fetching a component."
    )
    java_home: Path | None = Field(
        None, description="JDK used for the local stack; the java on PATH when unset."
    )
    local_identity_java_home: Path | None = Field(
        None, description="JDK 21 or later for the identity server (Keycloak 26 needs it); when "
        "unset, java_home, the java on PATH or the newest JDK under /usr/lib/jvm that is 21+.")

    @property
    def local_run_dir(self) -> Path:
        """Where the local stack keeps broker data, pid files and logs."""
        return self.local_data_dir or self.cache_dir / "local"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.local_kafka_port}"

    @property
    def schema_registry_url(self) -> str:
        return f"http://127.0.0.1:{self.local_registry_port}/apis/ccompat/v7"

    @property
    def identity_url(self) -> str:
        """The secure stack's realm on its identity server: the registry's OpenID Connect issuer."""
        return f"https://127.0.0.1:{self.local_identity_port}/realms/{IDENTITY_REALM}"

    def bus_settings(self) -> Settings:
        """The bus's settings pointed at this stack, except where the environment names other
        addresses explicitly (it wins, as everywhere); everything else as it gives it."""
        configured = Settings()
        return configured.model_copy(update={
            name: value for name, value in self._addresses().items()
            if name not in configured.model_fields_set})

    def bus_environment(self) -> dict[str, str]:
        """The variables that point a ``circulation`` process as :meth:`bus_settings` does."""
        chosen = self.bus_settings()
        return {"CIRCULATION_KAFKA_BOOTSTRAP": chosen.kafka_bootstrap,
                "CIRCULATION_SCHEMA_REGISTRY_URL": chosen.schema_registry_url,
                "CIRCULATION_CACHE_DIR": str(chosen.cache_dir)}

    def _addresses(self) -> dict[str, object]:
        return {"kafka_bootstrap": self.kafka_bootstrap,
                "schema_registry_url": self.schema_registry_url, "cache_dir": self.cache_dir}
