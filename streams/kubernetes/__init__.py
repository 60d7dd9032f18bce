"""Kubernetes manifests of the bus, rendered from the catalog and the contracts.

``circulation render k8s`` writes what a cluster needs to run the bus under the Strimzi, KEDA
and Prometheus operators: the Kafka cluster, its topics and users with the same grants as
:func:`streams.security.access.entitlements`, the routing workers scaled on their lag, and the
lag exporter. Plain dictionaries, no Kubernetes client: rendering never touches a cluster.
"""
