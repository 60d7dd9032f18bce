"""Every manifest of the bus, one YAML file per resource kind, and writing them to a folder.

The files are numbered in the order ``kubectl apply -f DIR`` should create them: the cluster
before its topics and users, the authentication before the scaler that names it. The order of
resources inside a file and of keys inside a resource is fixed, so rendering the same catalog
and contracts at the same instant gives the same bytes, and a diff shows what changed.

A folder may hold other files (a kustomization, the operator's own Secrets): rendering writes
only the files it owns, those that start with :data:`HEADER`, and refuses, before writing
anything, to replace a file of that name that does not. An owned file of a kind no longer
rendered is removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from schemas.catalog import Catalog
from streams.kubernetes import strimzi, workloads
from streams.kubernetes.options import RenderOptions
from streams.security.access import entitlements
from streams.state.contract import Contract

HEADER = "# Rendered by `circulation render k8s`: change the catalog or contracts, render again.\n"
Resource = dict[str, Any]


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper writing every shared value out in full: an anchor and alias
    pair is valid YAML, but a reader of manifests expects each resource to stand alone."""

    def ignore_aliases(self, data: Any) -> bool:  # noqa: ARG002
        return True


class NotOurs(FileExistsError):
    """The output folder holds files of the rendered names that rendering did not write."""


@dataclass(frozen=True)
class ManifestFile:
    """One file: every resource of one kind."""

    name: str
    kind: str
    resources: tuple[Resource, ...]

    def text(self) -> str:
        """The file's content: the header, then one YAML document per resource."""
        return HEADER + yaml.dump_all(self.resources, Dumper=_Dumper, sort_keys=False,
                                      default_flow_style=False, allow_unicode=True)


def resources(catalog: Catalog, contracts: Iterable[Contract], options: RenderOptions,
              at: datetime) -> list[Resource]:
    """Every resource, in the order they are applied; users hold the grants due at ``at``."""
    contracts = list(contracts)
    specs = strimzi.topic_specs(catalog, contracts, options)
    provider_topics = catalog.provider_topics()
    partitions = max(s.partitions for s in specs if s.name in provider_topics)
    return [
        strimzi.kafka(options), strimzi.node_pool(options),
        *strimzi.kafka_topics(specs, options),
        *strimzi.kafka_users(entitlements(catalog, contracts, at), contracts, options),
        workloads.worker_deployment(options), workloads.lag_deployment(options),
        workloads.gateway_deployment(options), *workloads.webhook_sinks(options, contracts),
        workloads.worker_service(options), workloads.lag_service(options),
        workloads.gateway_service(options), workloads.history_expiry(options),
        workloads.worker_budget(options), workloads.trigger_authentication(options),
        workloads.scaled_object(options, provider_topics, partitions),
        workloads.service_monitor(options),
    ]


def render(catalog: Catalog, contracts: Iterable[Contract], options: RenderOptions,
           at: datetime) -> list[ManifestFile]:
    """The files, one per kind, numbered in the order the kinds first appear."""
    by_kind: dict[str, list[Resource]] = {}
    for resource in resources(catalog, contracts, options, at):
        by_kind.setdefault(resource["kind"], []).append(resource)
    return [ManifestFile(f"{number:02d}-{kind.lower()}.yaml", kind, tuple(found))
            for number, (kind, found) in enumerate(by_kind.items(), start=1)]


def write(files: list[ManifestFile], out: Path) -> list[Path]:
    """Write ``files`` into ``out`` (created if need be), remove owned files no longer
    rendered; :class:`NotOurs` before any write if a file to replace is not ours."""
    out.mkdir(parents=True, exist_ok=True)
    targets = {out / f.name: f for f in files}
    foreign = sorted(p.name for p in targets if p.exists() and not _owned(p))
    if foreign:
        raise NotOurs(f"{out} holds {', '.join(foreign)}, not written by `circulation render "
                      "k8s`: move them away or render into another folder")
    for stale in sorted(p for p in out.glob("*.yaml") if p not in targets and _owned(p)):
        stale.unlink()
    for path, manifest in targets.items():
        path.write_text(manifest.text(), encoding="utf-8")
    return list(targets)


def _owned(path: Path) -> bool:
    """Whether ``path`` is a file rendering wrote (it starts with :data:`HEADER`)."""
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as file:
        return file.readline() == HEADER
