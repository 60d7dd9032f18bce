"""The Kafka cluster as Strimzi custom resources (``kafka.strimzi.io/v1``): the cluster, its
node pool, its topics and its users.

Strimzi 1.0 removed ``v1beta2`` and, since 0.48, runs KRaft with node pools whatever the
``strimzi.io/kraft`` and ``strimzi.io/node-pools`` annotations say, so none is written.
Topics are managed by the Topic Operator and users by the User Operator, which generates each
user's SCRAM-SHA-512 password into a Secret of the user's name: no password is ever rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.catalog import Catalog
from streams.kafka.topics import TopicSpec, catalog_topics
from streams.kubernetes.acls import strimzi_acls
from streams.kubernetes.options import TLS_PORT, BadOptions, RenderOptions
from streams.security import principals
from streams.security.access import Grant, by_principal
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.contract_store import delivery_topic_spec

API = "kafka.strimzi.io/v1"
Resource = dict[str, Any]
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def kafka(options: RenderOptions) -> Resource:
    """The cluster: one TLS listener with SCRAM-SHA-512, simple authorisation with
    ``bus-admin`` as the only super user, and no topic or permission Kafka would make up.

    ``allow.everyone.if.no.acl.found`` is false in Kafka already; it is written out because
    :mod:`streams.security.access` relies on it, and Strimzi does not forbid setting it.
    """
    return {"apiVersion": API, "kind": "Kafka", "metadata": options.metadata(options.cluster),
            "spec": {
                "kafka": {
                    "listeners": [{"name": "tls", "port": TLS_PORT, "type": "internal",
                                   "tls": True, "authentication": {"type": "scram-sha-512"}}],
                    "authorization": {"type": "simple", "superUsers": [principals.ADMIN]},
                    "config": _broker_config(options),
                },
                "entityOperator": {"topicOperator": {}, "userOperator": {}},
            }}


def _broker_config(options: RenderOptions) -> dict[str, Any]:
    """Broker defaults: Kafka's internal topics replicated like the bus's own."""
    replicas, isr = options.replicas, options.min_insync_replicas
    return {"auto.create.topics.enable": False, "allow.everyone.if.no.acl.found": False,
            "default.replication.factor": replicas, "min.insync.replicas": isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": isr}


def node_pool(options: RenderOptions) -> Resource:
    """One pool of nodes that are both controllers and brokers, on persistent volumes that
    outlive the pool (``deleteClaim: false``): as many as the replication factor needs."""
    return {"apiVersion": API, "kind": "KafkaNodePool",
            "metadata": options.strimzi_metadata(f"{options.cluster}-dual-role"),
            "spec": {"replicas": options.replicas, "roles": ["controller", "broker"],
                     "storage": {"type": "persistent-claim", "size": options.storage,
                                 "deleteClaim": False}}}


def topic_specs(catalog: Catalog, contracts: Iterable[Contract],
                options: RenderOptions) -> list[TopicSpec]:
    """The bus's topics, every provider topic and every recorded contract's delivery topic,
    configured by the same functions the commands create them with.

    Those functions take their partitions and replication from :class:`Settings`; here they
    come from the options instead, through settings built without reading the environment.
    """
    sizes = Settings.model_construct(topic_partitions=options.partitions,
                                     topic_replication=options.replicas)
    return [*catalog_topics(sizes, catalog),
            *(delivery_topic_spec(sizes, contract)
              for contract in sorted(contracts, key=lambda c: c.delivery_topic))]


def kafka_topics(specs: Iterable[TopicSpec], options: RenderOptions) -> list[Resource]:
    """One ``KafkaTopic`` per topic, named for Kubernetes (``_`` becomes ``-``), the Kafka
    name in ``topicName``; every topic keeps ``min.insync.replicas`` whatever the broker's."""
    resources: dict[str, Resource] = {}
    for topic in specs:
        name = _resource_name(topic.name)
        if name in resources:
            raise BadOptions(f"topics {resources[name]['spec']['topicName']} and {topic.name} "
                             f"would be one KafkaTopic {name}")
        config = {**topic.config, "min.insync.replicas": str(options.min_insync_replicas)}
        resources[name] = {"apiVersion": API, "kind": "KafkaTopic",
                           "metadata": options.strimzi_metadata(name),
                           "spec": {"topicName": topic.name, "partitions": topic.partitions,
                                    "replicas": topic.replication,
                                    "config": dict(sorted(config.items()))}}
    return list(resources.values())


def _resource_name(topic: str) -> str:
    """A Kubernetes name for a topic; catalog ids have underscores, never hyphens."""
    name = topic.replace("_", "-")
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise BadOptions(f"topic {topic} has no Kubernetes name")
    return name


def kafka_users(grants: Iterable[Grant], contracts: Iterable[Contract],
                options: RenderOptions) -> list[Resource]:
    """One ``KafkaUser`` per principal, with exactly its grants.

    A subscriber of a recorded contract keeps its user with no rule once no contract entitles
    it any more: applying the manifests then withdraws its ACLs even without ``--prune``, and
    deleting a party's credential stays a decision of its own. ``bus-admin`` has no rule: it
    is the super user.
    """
    granted: Mapping[str, list[Grant]] = by_principal(grants)
    names = {*granted, *principals.COMPONENTS,
             *(principals.subscriber(c.subscriber).name for c in contracts)}
    return [_kafka_user(name, granted.get(name, []), options) for name in sorted(names)]


def _kafka_user(name: str, grants: list[Grant], options: RenderOptions) -> Resource:
    spec_: dict[str, Any] = {"authentication": {"type": "scram-sha-512"}}
    if name != principals.ADMIN:
        spec_["authorization"] = {"type": "simple", "acls": strimzi_acls(grants)}
    return {"apiVersion": API, "kind": "KafkaUser", "metadata": options.strimzi_metadata(name),
            "spec": spec_}
