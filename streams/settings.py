"""The bus's settings: what an operator sets to run it against a cluster.

Read from ``CIRCULATION_*`` environment variables or a ``.env`` file, so that the same code runs
against the local stack, CI and a production cluster without edits. The local development stack
has settings of its own (:class:`streams.dev.settings.LocalStackSettings`), read from the same
environment; nothing here depends on them, and reading settings never writes anything.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.identifiers import InvalidIdentifier, validate_siret

AUDIT_RETENTION_BOUNDS = (timedelta(days=180), timedelta(days=3 * 365))
"""The audit trail's retention the bus accepts: six months to three years, the span the CNIL
recommends for access and processing logs (six months to a year, up to three years where a
legal duty or a specific risk justifies it). Outside it, settings are refused rather than
warned about: a trail kept a week proves nothing to an auditor, and one kept for ever is
personal data kept without a term; a warning in a log nobody reads changes neither."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
LogFormat = Literal["auto", "json", "console"]


def default_cache_dir() -> Path:
    """``~/.cache/circulation``: a developer's machine-wide cache of the bus."""
    return Path.home() / ".cache" / "circulation"


class Settings(BaseSettings):
    """Connection, security, secrets, logging and tuning (environment prefix ``CIRCULATION_``)."""

    model_config = SettingsConfigDict(
        env_prefix="CIRCULATION_", env_file=".env", extra="ignore", validate_default=True,
        hide_input_in_errors=True,  # a refused setting may be a secret: never repeat it
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
    schema_registry_username: str | None = Field(
        None, description="User name for the schema registry (HTTP basic auth, a client of the "
        "identity server); sasl_username when unset: one credential per principal.")
    schema_registry_password: SecretStr | None = Field(
        None, description="Password for the schema registry; sasl_password when unset.")
    schema_registry_cafile: Path | None = Field(
        None, description="CA certificates the registry's TLS certificate must chain to; "
        "ssl_cafile when unset.")
    identity_url: str | None = Field(
        None, description="The identity server's realm URL (OpenID Connect issuer) that holds "
        "the registry's clients, for `circulation credentials`; unset where the registry has "
        "no authentication.")

    topic_partitions: int = Field(
        3, ge=1, description="Partitions of topics the bus creates (provider and delivery topics)."
    )
    topic_replication: int = Field(1, ge=1, description="Replication factor of those topics.")

    provider_retention: timedelta = Field(
        timedelta(days=7), gt=timedelta(0), description="How long provider topics keep "
        "events (ISO 8601 duration, e.g. P7D). Workers route an event within seconds; what "
        "needs it later is a dead letter's replay, which reads the original record again, and "
        "reconcile over a past window: a week covers a long weekend's outage.")
    audit_retention: timedelta = Field(
        timedelta(days=365), description="How long bus.audit keeps decisions (ISO 8601 "
        "duration, P6M to P3Y, see AUDIT_RETENTION_BOUNDS), and how long a withdrawn consent "
        "or a removal is kept on the state topics before it is tombstoned.")
    audit_checkpoints_retention: timedelta | None = Field(
        None, description="How long bus.audit.checkpoints keeps signed checkpoints; "
        "audit_retention when unset, never shorter: verifying a retained record starts from a "
        "checkpoint covering it, and a checkpoint is newer than the records it covers.")
    dlq_retention: timedelta = Field(
        timedelta(days=90), gt=timedelta(0), description="How long bus.dlq keeps dead letters "
        "(ISO 8601 duration): the record of what failed and why. A replay needs the original "
        "record too, which its provider topic keeps for provider_retention only.")

    subject_secret: SecretStr | None = Field(
        None,
        description="Secret keying subject references (sr1_), held by the edge: publishers and "
        "the population and consent commands. When it and its file are unset, a random local "
        "one is generated once under cache_dir, on a PLAINTEXT bus only (streams.privacy.secret).",
    )
    subject_secret_file: Path | None = Field(
        None, description="File holding the subject secret, readable by its owner only.")
    pseudonym_secret: SecretStr | None = Field(
        None,
        description="Secret keying subscribers' pseudonyms (ps2_), held by the routing workers "
        "and the commands that show or send pseudonyms. Unset: as for subject_secret.",
    )
    pseudonym_secret_file: Path | None = Field(
        None, description="File holding the pseudonym secret, readable by its owner only.")

    audit_signing_key_file: Path | None = Field(
        None, description="Ed25519 private key (PEM, PKCS#8) with which routing workers sign "
        "the audit chains' checkpoints, readable by its owner only. Unset: a local key is "
        "generated once under cache_dir, on a PLAINTEXT bus only.")
    audit_checkpoint_records: int = Field(
        1000, ge=1, description="Audit records a worker writes to its chains before it signs "
        "a checkpoint of their heads.")
    audit_checkpoint_seconds: float = Field(
        60.0, gt=0, description="Longest time a worker lets pass, while it writes audit "
        "records, before it signs a checkpoint of their heads.")

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

    webhook_timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long the webhook sink waits for an endpoint's "
        "answer to one call before counting it a failed attempt.")
    webhook_attempts: int = Field(
        8, ge=1, le=100, description="Calls the webhook sink makes for one delivery (the retry "
        "budget) before it writes the delivery's dead letter and moves on.")
    webhook_backoff_s: float = Field(
        0.5, gt=0, le=3600, description="First wait between two calls for one delivery; each "
        "later wait doubles, up to webhook_backoff_max_s, and is drawn at random below that "
        "(full jitter), so that sinks do not retry in step.")
    webhook_backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between two calls for one delivery, "
        "including one an endpoint asks for with Retry-After.")
    webhook_allow_private: bool = Field(
        False, description="Development only: let the webhook sink call endpoints on private, "
        "loopback or link-local addresses, and over plain http.")

    gateway_max_body_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="Largest request body the HTTP "
        "gateway reads, in bytes; a larger one is refused (413) before or while it is read, "
        "never buffered whole.")
    gateway_max_batch_events: int = Field(
        500, ge=1, le=10_000, description="Most events in one batch POST to the gateway's "
        "/v1/events; more is refused (413) as a whole.")
    gateway_idempotency_window_s: float = Field(
        900.0, ge=0, le=7 * 86_400, description="How long a gateway replica remembers an "
        "event id it accepted: within it, the same event posted again is answered 202 without "
        "a second record (per replica, see ARCHITECTURE.md).")
    gateway_max_subjects: int = Field(
        1000, ge=1, le=100_000, description="Most subjects one gateway request may name "
        "(population or consents): the request is written and fenced whole before it is "
        "answered, so a portal sends a large population in several requests.")

    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Where a development machine keeps the bus's generated local secret (and "
        "the local stack its jars, data and logs).",
    )
    state_dir: Path | None = Field(
        None, description="Where a routing worker keeps the state of the partitions it routes "
        "(population and consents, on disk), so that a restart reads on rather than again; "
        "cache_dir/worker-state when unset. Workers sharing it take a slot each.")


    journal_dir: Path | None = Field(
        None, description="Where the citizen journal's view is kept (RocksDB): the gateway "
        "keeps it up to date from the audit and state topics when this is set; "
        "`circulation journal` reads it, under cache_dir/journal when unset.")
    journal_collector_siret: str | None = Field(
        None, pattern=r"^[0-9]{14}$", description="SIRET of the administration that runs "
        "the journal page, recorded as who collected a withdrawal or an objection made there "
        "(not the subscriber's, which collected nothing). Unset: the page records no choice.")
    journal_dev_sign_in: bool = Field(
        False, description="Development only: the journal page's sign-in by NIR, standing in "
        "for FranceConnect. The gateway refuses to start with it unless the bus is PLAINTEXT "
        "and the gateway listens on loopback.")

    def journal_view_dir(self) -> Path:
        """Where the citizen journal's view lives."""
        return self.journal_dir or self.cache_dir / "journal"

    def worker_state_dir(self) -> Path:
        """Where routing workers keep their partitions' state."""
        return self.state_dir or self.cache_dir / "worker-state"

    def checkpoints_retention(self) -> timedelta:
        """How long signed checkpoints are kept: their own setting, or the trail's."""
        return self.audit_checkpoints_retention or self.audit_retention

    def registry_credentials(self) -> tuple[str, str] | None:
        """The registry's basic-auth user name and password: its own, or the principal's
        Kafka credential, which ``circulation credentials`` sets for both."""
        username = self.schema_registry_username or self.sasl_username
        password = self.schema_registry_password or self.sasl_password
        if username is None or password is None:
            return None
        return username, password.get_secret_value()

    def registry_cafile(self) -> Path | None:
        """The CA file the registry's certificate is checked against."""
        return self.schema_registry_cafile or self.ssl_cafile

    @field_validator("journal_collector_siret")
    @classmethod
    def _a_siret(cls, value: str | None) -> str | None:
        """A real SIRET (its check digits too): the consent records refuse any other, and a
        gateway should not start to fail at the first person's choice."""
        if value is None:
            return None
        try:
            return validate_siret(value, "journal_collector_siret")
        except InvalidIdentifier as exc:
            raise ValueError(exc.reason) from None

    @model_validator(mode="after")
    def _retentions_hold(self) -> Settings:
        """The audit trail within the CNIL's span, and its checkpoints kept at least as long:
        a record whose covering checkpoints were all gone could be dropped unnoticed."""
        low, high = AUDIT_RETENTION_BOUNDS
        if not low <= self.audit_retention <= high:
            raise ValueError(f"CIRCULATION_AUDIT_RETENTION must be between {low.days} and "
                             f"{high.days} days (P6M to P3Y)")
        if self.checkpoints_retention() < self.audit_retention:
            raise ValueError("CIRCULATION_AUDIT_CHECKPOINTS_RETENTION must not be shorter than "
                             "CIRCULATION_AUDIT_RETENTION")
        return self

    @model_validator(mode="after")
    def _secrets_apart(self) -> Settings:
        """One value for both secrets would give whoever holds the subject secret every
        pseudonym again. Only values given inline are compared: files are read by the
        component that needs them, never here."""
        if (self.subject_secret is not None and self.pseudonym_secret is not None
                and self.subject_secret == self.pseudonym_secret):
            raise ValueError("CIRCULATION_PSEUDONYM_SECRET must differ from "
                             "CIRCULATION_SUBJECT_SECRET")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
