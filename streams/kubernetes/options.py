"""What an operator chooses about the cluster, and the names every manifest derives from it.

One place for the names that tie the resources together (the Kafka cluster, the Secrets the
Strimzi operators write, the bootstrap address, the labels), so that a Deployment never refers
to a Secret under a name another function spells differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.security import principals

PART_OF = "circulation"
WORKER = "circulation-worker"
"""The routing workers' Deployment and Service; the Service name is Prometheus's ``job``, which
the alert rules in ``deploy/observability/alerts.yml`` select."""
LAG = "circulation-lag"
"""The lag exporter's Deployment and Service."""
GATEWAY = "circulation-gateway"
"""The HTTP gateway's Deployment and Service (``circulation api``)."""
GATEWAY_PORT = 8000
SINK_PREFIX = "circulation-sink-"
HISTORY_EXPIRY = "circulation-expire-history"
"""Each webhook sink's Deployment: this prefix and the contract's id."""
METRICS_PORT = 9464
"""The worker's metrics port (``CIRCULATION_METRICS_PORT``), as in ``deploy/observability``."""
LAG_PORT = 9465
"""The lag exporter's port (``circulation lag --serve``), as in ``deploy/observability``."""
TLS_PORT = 9093
"""The Kafka listener the bus uses: TLS, SCRAM-SHA-512."""


class BadOptions(ValueError):
    """Options that cannot make a working cluster; the message says which and why."""


@dataclass(frozen=True)
class RenderOptions:
    """The operator's choices; defaults are a small production cluster."""

    image: str
    namespace: str = "circulation"
    cluster: str = "circulation"
    partitions: int = 3
    replicas: int = 3
    """Replication factor of every topic, and the brokers in the node pool."""
    min_insync_replicas: int = 2
    storage: str = "100Gi"
    registry_url: str = "http://schema-registry:8080/apis/ccompat/v7"
    pseudonym_secret_name: str = "circulation-pseudonym"  # noqa: S105 - a name, no value
    """The Secret (key ``secret``) holding the pseudonym secret; created by the operator."""
    subject_secret_name: str = "circulation-subject"  # noqa: S105 - a name, no value
    """The Secret (key ``secret``) holding the subject secret, for the gateway; the operator's."""
    gateway_replicas: int = 2
    lag_threshold: int = 1000
    """Records of router lag per worker before KEDA adds one."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_insync_replicas <= self.replicas:
            raise BadOptions("min.insync.replicas must be between 1 and the replication factor")
        if self.partitions < 1 or self.lag_threshold < 1:
            raise BadOptions("partitions and the lag threshold must be at least 1")

    @property
    def bootstrap(self) -> str:
        """The TLS listener's bootstrap Service, as Strimzi names it."""
        return f"{self.cluster}-kafka-bootstrap.{self.namespace}.svc:{TLS_PORT}"

    @property
    def cluster_ca_secret(self) -> str:
        """The Secret holding the cluster CA certificate (``ca.crt``), written by Strimzi."""
        return f"{self.cluster}-cluster-ca-cert"

    @staticmethod
    def user_secret(user: str) -> str:
        """The Secret holding a KafkaUser's generated password (``password``): its own name."""
        return user

    @property
    def worker_user(self) -> str:
        """The principal the workers and the lag exporter connect as."""
        return principals.WORKER

    @staticmethod
    def webhook_secret(contract_id: str) -> str:
        """The Secret (key ``secret``) holding a contract's webhook signing secret(s), created
        by the operator with the subscriber: ``webhook-<contract>``."""
        return f"webhook-{contract_id}"

    def metadata(self, name: str, **labels: str) -> dict[str, Any]:
        """A resource's metadata in this namespace, with the labels every resource carries."""
        return {"name": name, "namespace": self.namespace,
                "labels": {"app.kubernetes.io/part-of": PART_OF, **labels}}

    def strimzi_metadata(self, name: str) -> dict[str, Any]:
        """Metadata of a resource the Strimzi operators reconcile into this cluster."""
        return self.metadata(name, **{"strimzi.io/cluster": self.cluster})
