"""The bus's own workloads: routing workers scaled by KEDA on their lag, and the lag exporter,
both scraped by the Prometheus operator.

Both connect as ``bus-worker`` (:mod:`streams.security.access` grants it what the exporter
reads too): SCRAM-SHA-512 over TLS, the password and the cluster CA taken from the Secrets the
Strimzi operators write. The pseudonym secret comes from a Secret the operator creates; the
worker refuses a secret file that others may read, and Kubernetes mounts Secrets readable by
the pod's group, so an init container copies it owner-only into memory first.

Pods run as a fixed non-root user on a read-only root filesystem; ``/tmp`` is an in-memory
volume and the working directory, where Faust keeps its data folder and libraries their
caches (``HOME``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from streams.kubernetes.options import (
    GATEWAY,
    GATEWAY_PORT,
    HISTORY_EXPIRY,
    LAG,
    LAG_PORT,
    METRICS_PORT,
    SINK_PREFIX,
    WORKER,
    RenderOptions,
)
from streams.security import principals
from streams.security.access import ROUTER_GROUP
from streams.state.contract import Contract

Resource = dict[str, Any]

_UID = 10001
_TMP = "/tmp"  # noqa: S108 - an emptyDir of the pod's own, not the host's /tmp
_CA_DIR = "/etc/circulation/kafka-ca"
_SECRETS_IN = "/etc/circulation/secrets-in"
_SECRETS_DIR = "/run/circulation"
STATE_DIR = "/var/lib/circulation/state"
STATE_SIZE = "8Gi"
"""The worker's state stores (:mod:`streams.state.directory_store`) live on the node's disk, in
an emptyDir: it outlives a container's restart, which then reads on from where its stores left
off; a pod scheduled elsewhere starts empty and restores its partitions from the topics."""
JOURNAL_DIR = "/var/lib/circulation/journal"
JOURNAL_SIZE = "8Gi"
"""The gateway's journal view (:mod:`streams.journal`) on the node's disk, as the workers'
stores: a restarted container reads on where the view left off; a new pod rebuilds it from the
topics before its first page answers."""
PSEUDONYM_FILE = f"{_SECRETS_DIR}/pseudonym-secret"
SUBJECT_FILE = f"{_SECRETS_DIR}/subject-secret"
WORKER_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"},
                    "limits": {"memory": "1Gi"}}
"""A starting point: a worker routes on one core; memory holds the followed state and the
batches in flight. No CPU limit: throttling a worker only grows its lag."""
GATEWAY_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"},
                     "limits": {"memory": "512Mi"}}
SINK_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"},
                  "limits": {"memory": "256Mi"}}
HISTORY_EXPIRY_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"},
                            "limits": {"memory": "1Gi"}}
"""The run holds the latest record of every live key of the two state topics while it reads
them (some hundreds of bytes each): a starting point for a few hundred thousand choices."""
HISTORY_EXPIRY_DEADLINE_S = 3 * 3600
"""A run stuck longer is stopped: one run at a time, so a hung one would block every later day."""
LAG_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"},
                 "limits": {"memory": "512Mi"}}
LAG_COMMAND = ["circulation", "lag", "--serve", str(LAG_PORT), "--window", "60",
               "--samples", "13"]
"""As in ``deploy/observability/prometheus.yml``: a sample every 5 s, judged over a minute."""


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _connection_env(options: RenderOptions, user: str | None = None) -> list[dict[str, Any]]:
    """The settings of a client of the bus connecting as ``user`` (``bus-worker`` unless
    said)."""
    user = user or options.worker_user
    return [
        {"name": "CIRCULATION_KAFKA_BOOTSTRAP", "value": options.bootstrap},
        {"name": "CIRCULATION_SECURITY_PROTOCOL", "value": "SASL_SSL"},
        {"name": "CIRCULATION_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
        {"name": "CIRCULATION_SASL_USERNAME", "value": user},
        {"name": "CIRCULATION_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": options.user_secret(user), "key": "password"}}},
        {"name": "CIRCULATION_SSL_CAFILE", "value": f"{_CA_DIR}/ca.crt"},
        {"name": "CIRCULATION_SCHEMA_REGISTRY_URL", "value": options.registry_url},
        {"name": "CIRCULATION_LOG_FORMAT", "value": "json"},
        {"name": "HOME", "value": _TMP},
    ]


def _base_volumes(options: RenderOptions) -> list[dict[str, Any]]:
    return [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "kafka-ca", "secret": {"secretName": options.cluster_ca_secret,
                                            "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]


_BASE_MOUNTS = [{"name": "tmp", "mountPath": _TMP},
                {"name": "kafka-ca", "mountPath": _CA_DIR, "readOnly": True}]
_CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}}
_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": _UID, "runAsGroup": _UID, "fsGroup": _UID,
                 "seccompProfile": {"type": "RuntimeDefault"}}


def _metrics_probe() -> dict[str, Any]:
    return {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 15}


def _deployment(name: str, options: RenderOptions, pod: dict[str, Any],
                replicas: int | None = None) -> Resource:
    """A Deployment of one pod template, with the labels and securities every pod shares."""
    spec: dict[str, Any] = {"selector": {"matchLabels": _selector(name)}, "template": {
        "metadata": {"labels": {"app.kubernetes.io/part-of": "circulation", **_selector(name)}},
        "spec": {"securityContext": _POD_SECURITY, "automountServiceAccountToken": False,
                 **pod}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": options.metadata(name, **_selector(name)), "spec": spec}


def worker_deployment(options: RenderOptions) -> Resource:
    """``circulation worker`` processes. No replica count: KEDA owns it, and applying the
    manifests again must not reset it. No liveness probe: a worker that cannot route exits
    (status 70) for its restart, while its metrics thread would answer a probe regardless.
    Time to stop: the batches in flight are settled before the process ends."""
    container: dict[str, Any] = {
        "name": "worker", "image": options.image, "command": ["circulation", "worker"],
        "workingDir": _TMP,
        "env": [*_connection_env(options),
                {"name": "CIRCULATION_METRICS_PORT", "value": str(METRICS_PORT)},
                {"name": "CIRCULATION_PSEUDONYM_SECRET_FILE", "value": PSEUDONYM_FILE},
                {"name": "CIRCULATION_TOPIC_PARTITIONS", "value": str(options.partitions)},
                {"name": "CIRCULATION_TOPIC_REPLICATION", "value": str(options.replicas)},
                {"name": "CIRCULATION_STATE_DIR", "value": STATE_DIR}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "readinessProbe": _metrics_probe(),
        "resources": WORKER_RESOURCES, "securityContext": _CONTAINER_SECURITY,
    }
    copy, volumes, mounts = _owner_only_secrets(options, {
        PSEUDONYM_FILE: options.pseudonym_secret_name})
    container["volumeMounts"] = [*_BASE_MOUNTS, *mounts, {"name": "state",
                                                          "mountPath": STATE_DIR}]
    volumes = [*_base_volumes(options), *volumes,
               {"name": "state", "emptyDir": {"sizeLimit": STATE_SIZE}}]
    return _deployment(WORKER, options, {"initContainers": [copy], "containers": [container],
                                         "volumes": volumes,
                                         "terminationGracePeriodSeconds": 60})


def _owner_only_secrets(options: RenderOptions, files: dict[str, str]
                        ) -> tuple[Resource, list[Resource], list[Resource]]:
    """An init container copying each Secret (key ``secret``) to its file owner-only in
    memory, with the volumes and the main container's mount: the bus refuses a secret file
    others may read, and Kubernetes mounts Secrets readable by the pod's group."""
    sources = [(f"secret-in-{index}", secret, path) for index, (path, secret)
               in enumerate(sorted(files.items()))]
    copy = {
        "name": "secrets", "image": options.image,
        "command": ["install", "-m", "0400", "-t", _SECRETS_DIR,
                    *(f"{_SECRETS_IN}/{name}/{PurePosixPath(path).name}"
                      for name, _, path in sources)],
        "securityContext": _CONTAINER_SECURITY,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                      "limits": {"memory": "64Mi"}},
        "volumeMounts": [*({"name": name, "mountPath": f"{_SECRETS_IN}/{name}",
                            "readOnly": True} for name, _, _ in sources),
                         {"name": "secrets", "mountPath": _SECRETS_DIR}],
    }
    volumes = [*({"name": name, "secret": {
                    "secretName": secret, "defaultMode": 0o440,
                    "items": [{"key": "secret", "path": PurePosixPath(path).name}]}}
                 for name, secret, path in sources),
               {"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    return copy, volumes, [{"name": "secrets", "mountPath": _SECRETS_DIR, "readOnly": True}]


def worker_budget(options: RenderOptions) -> Resource:
    """At most one worker evicted at a time: each eviction is a rebalance of the group."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": options.metadata(WORKER, **_selector(WORKER)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(WORKER)}}}


def _metrics_service(name: str, port: int, options: RenderOptions) -> Resource:
    """A headless Service naming the pods' metrics port, for the ServiceMonitor to find; its
    name becomes the ``job`` label of their series."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": options.metadata(name, **_selector(name)),
            "spec": {"clusterIP": "None", "selector": _selector(name),
                     "ports": [{"name": "metrics", "port": port, "targetPort": "metrics"}]}}


def worker_service(options: RenderOptions) -> Resource:
    """The workers' metrics, as the ``circulation-worker`` job the alert rules watch."""
    return _metrics_service(WORKER, METRICS_PORT, options)


def lag_service(options: RenderOptions) -> Resource:
    """The lag exporter's metrics."""
    return _metrics_service(LAG, LAG_PORT, options)


def trigger_authentication(options: RenderOptions) -> Resource:
    """How KEDA reads the routers' lag: as ``bus-worker``, the user name from the worker's own
    environment, the password and CA from the Secrets Strimzi writes."""
    user = options.worker_user
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
            "metadata": options.metadata(WORKER),
            "spec": {"secretTargetRef": [
                {"parameter": "password", "name": options.user_secret(user), "key": "password"},
                {"parameter": "ca", "name": options.cluster_ca_secret, "key": "ca.crt"}],
                "env": [{"parameter": "username", "name": "CIRCULATION_SASL_USERNAME",
                         "containerName": "worker"}]}}


def scaled_object(options: RenderOptions, provider_topics: Sequence[str],
                  partitions: int) -> Resource:
    """KEDA scales the workers on the routers' lag, one ``kafka`` trigger per provider topic
    (the scaler watches one topic; the HPA follows the trigger that asks most).

    Faust assigns partition *p* of every provider topic to the same worker, so ``partitions``
    (of each provider topic) workers is where more would sit idle: ``maxReplicaCount``.
    ``limitToPartitionsWithLag`` goes further: one lagging partition needs one worker.
    ``offsetResetPolicy: earliest`` as the workers, so a partition they never committed counts
    all its records as lag.
    """
    triggers = [{"type": "kafka", "authenticationRef": {"name": WORKER}, "metadata": {
        "bootstrapServers": options.bootstrap, "consumerGroup": ROUTER_GROUP, "topic": topic,
        "lagThreshold": str(options.lag_threshold), "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false", "limitToPartitionsWithLag": "true",
        "sasl": "scram_sha512", "tls": "enable"}} for topic in provider_topics]
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": options.metadata(WORKER),
            "spec": {"scaleTargetRef": {"name": WORKER}, "minReplicaCount": 1,
                     "maxReplicaCount": partitions, "triggers": triggers}}


def lag_deployment(options: RenderOptions) -> Resource:
    """One lag exporter for the cluster (two would only sample the same groups twice)."""
    container = {
        "name": "lag", "image": options.image, "command": LAG_COMMAND, "workingDir": _TMP,
        "env": _connection_env(options),
        "ports": [{"name": "metrics", "containerPort": LAG_PORT}],
        "readinessProbe": _metrics_probe(), "livenessProbe": _metrics_probe(),
        "resources": LAG_RESOURCES, "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": _BASE_MOUNTS,
    }
    return _deployment(LAG, options, {"containers": [container],
                                      "volumes": _base_volumes(options)}, replicas=1)


def gateway_deployment(options: RenderOptions) -> Resource:
    """``circulation api`` as ``bus-gateway``, behind a Service the ingress (which terminates
    TLS) forwards to. It holds the subject secret, as every edge that takes NIRs does, and the
    pseudonym secret, which enrolments answer with and withdrawals' erasure notices carry.
    Liveness asks only that the process answers: a Kafka outage must not restart every
    replica at once; readiness asks Kafka and the registry."""
    container: dict[str, Any] = {
        "name": "gateway", "image": options.image, "workingDir": _TMP,
        "command": ["circulation", "api", "--host", "0.0.0.0",  # noqa: S104 - in its pod
                    "--port", str(GATEWAY_PORT)],
        "env": [*_connection_env(options, principals.GATEWAY),
                {"name": "CIRCULATION_SUBJECT_SECRET_FILE", "value": SUBJECT_FILE},
                {"name": "CIRCULATION_PSEUDONYM_SECRET_FILE", "value": PSEUDONYM_FILE},
                {"name": "CIRCULATION_JOURNAL_DIR", "value": JOURNAL_DIR}],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                           "periodSeconds": 10, "timeoutSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                          "periodSeconds": 15},
        "resources": GATEWAY_RESOURCES, "securityContext": _CONTAINER_SECURITY,
    }
    copy, volumes, mounts = _owner_only_secrets(options, {
        SUBJECT_FILE: options.subject_secret_name, PSEUDONYM_FILE: options.pseudonym_secret_name})
    container["volumeMounts"] = [*_BASE_MOUNTS, *mounts,
                                 {"name": "journal", "mountPath": JOURNAL_DIR}]
    volumes = [*_base_volumes(options), *volumes,
               {"name": "journal", "emptyDir": {"sizeLimit": JOURNAL_SIZE}}]
    return _deployment(GATEWAY, options, {"initContainers": [copy], "containers": [container],
                                          "volumes": volumes},
                       replicas=options.gateway_replicas)


def gateway_service(options: RenderOptions) -> Resource:
    """Where the ingress sends the gateway's traffic."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": options.metadata(GATEWAY, **_selector(GATEWAY)),
            "spec": {"selector": _selector(GATEWAY),
                     "ports": [{"name": "http", "port": GATEWAY_PORT, "targetPort": "http"}]}}


def webhook_sinks(options: RenderOptions, contracts: Sequence[Contract]) -> list[Resource]:
    """One ``circulation sink webhook`` per contract that names a webhook, as ``bus-sink``.
    One replica: its partitions' tasks already deliver concurrently, each person's in order.
    The signing secret comes from the Secret the operator agrees with the subscriber
    (:meth:`RenderOptions.webhook_secret`), into the variable the contract names. Metrics
    are served on the usual port; readiness follows them."""
    return [_webhook_sink(options, c.id, c.delivery.webhook.secret_env) for c in contracts
            if c.delivery is not None and c.delivery.webhook is not None]


def _webhook_sink(options: RenderOptions, contract_id: str, variable: str) -> Resource:
    container = {
        "name": "sink", "image": options.image, "workingDir": _TMP,
        "command": ["circulation", "sink", "webhook", contract_id],
        "env": [*_connection_env(options, principals.SINK),
                {"name": "CIRCULATION_METRICS_PORT", "value": str(METRICS_PORT)},
                {"name": variable, "valueFrom": {"secretKeyRef": {
                    "name": options.webhook_secret(contract_id), "key": "secret"}}}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "readinessProbe": _metrics_probe(),
        "resources": SINK_RESOURCES, "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": _BASE_MOUNTS,
    }
    return _deployment(SINK_PREFIX + contract_id, options,
                       {"containers": [container], "volumes": _base_volumes(options)},
                       replicas=1)


def history_expiry(options: RenderOptions) -> Resource:
    """``circulation retention expire-history`` once a day, as ``bus-admin``: the operator's
    command that tombstones ended choices past the audit retention runs without anyone
    remembering it. Only the admin may write the state topics' tombstones; the workers, which
    only read them, never get that right. One run at a time: a run started while another is
    still writing would only redo its work, and a missed day is caught up by the next."""
    container = {
        "name": "expire-history", "image": options.image, "workingDir": _TMP,
        "command": ["circulation", "retention", "expire-history"],
        "env": _connection_env(options, principals.ADMIN),
        "resources": HISTORY_EXPIRY_RESOURCES, "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": _BASE_MOUNTS,
    }
    pod = {"securityContext": _POD_SECURITY, "automountServiceAccountToken": False,
           "restartPolicy": "OnFailure", "containers": [container],
           "volumes": _base_volumes(options)}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": options.metadata(HISTORY_EXPIRY, **_selector(HISTORY_EXPIRY)),
            "spec": {"schedule": "17 3 * * *", "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": 3600, "successfulJobsHistoryLimit": 3,
                     "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": {
                         "backoffLimit": 3, "activeDeadlineSeconds": HISTORY_EXPIRY_DEADLINE_S,
                         "template": {
                         "metadata": {"labels": {"app.kubernetes.io/part-of": "circulation",
                                                 **_selector(HISTORY_EXPIRY)}},
                         "spec": pod}}}}}


def service_monitor(options: RenderOptions) -> Resource:
    """Prometheus scrapes the workers and the lag exporter every 15 s, as
    ``deploy/observability/prometheus.yml`` does (the exporter samples every 5 s)."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": options.metadata("circulation"),
            "spec": {"selector": {"matchExpressions": [{
                "key": "app.kubernetes.io/name", "operator": "In", "values": [WORKER, LAG]}]},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}}
