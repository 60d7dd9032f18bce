"""``circulation render k8s``: the manifests validate, grant what ``entitlements`` grants, and
scale the workers no further than partitions allow."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from schemas.catalog import Catalog
from streams.cli import app
from streams.kubernetes.acls import NotAGrant, grants_of, strimzi_acls
from streams.kubernetes.manifests import HEADER, NotOurs, render, resources, write
from streams.kubernetes.options import WORKER, RenderOptions
from streams.security import principals
from streams.security.access import ROUTER_GROUP, Grant, entitlements
from streams.state.contract import Contract
from streams.state.contract_files import validate_paths
from streams.worker.app import APP_ID
from tests.unit.command_settings import fresh_settings, strong_secret  # noqa: F401
from tests.unit.kubernetes.schemas import validate

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "contracts"
AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
OPTIONS = RenderOptions(image="circulation:test")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="module")
def contracts(catalog: Catalog) -> list[Contract]:
    found, problems = validate_paths([DEPLOY], catalog)
    assert not problems
    return found


def _read(out: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(out.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))]


def _rendered(catalog: Catalog, contracts: Iterable[Contract], out: Path,
              at: datetime = AT) -> list[dict[str, Any]]:
    """The resources as written to ``out`` and read back: what kubectl would apply."""
    write(render(catalog, contracts, OPTIONS, at), out)
    return _read(out)


def _of_kind(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in found if r["kind"] == kind]


def _user_grants(found: list[dict[str, Any]]) -> set[Grant]:
    return {grant for user in _of_kind(found, "KafkaUser")
            for grant in grants_of(user["metadata"]["name"],
                                   user["spec"].get("authorization", {}).get("acls", []))}


def test_every_rendered_resource_validates(catalog: Catalog, contracts: list[Contract],
                                           tmp_path: Path) -> None:
    found = _rendered(catalog, contracts, tmp_path)
    kinds = {r["kind"] for r in found}
    assert kinds == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Deployment",
                     "Service", "PodDisruptionBudget", "TriggerAuthentication",
                     "ScaledObject", "ServiceMonitor", "CronJob"}
    for resource in found:
        validate(resource)


@pytest.mark.parametrize(("kind", "change", "error"), [
    ("KafkaTopic", lambda r: r["spec"].update(partitions="three"),
     jsonschema.ValidationError),
    ("KafkaUser", lambda r: r["spec"]["authorization"]["acls"][0].update(operations=["Eat"]),
     jsonschema.ValidationError),
    ("Kafka", lambda r: r["spec"]["kafka"].update(listners=[]), jsonschema.ValidationError),
    ("ScaledObject", lambda r: r["spec"].update(maxReplicaCount="3"),
     jsonschema.ValidationError),
    ("ServiceMonitor", lambda r: r["spec"]["endpoints"][0].update(port=9464),
     jsonschema.ValidationError),
    ("Deployment", lambda r: r["spec"]["template"]["spec"].update(containers="worker"),
     kubernetes_validate.ValidationError),
    ("PodDisruptionBudget", lambda r: r["spec"].update(maxUnavailble=1),
     kubernetes_validate.ValidationError),
    ("CronJob", lambda r: r["spec"].update(schedul="17 3 * * *"),
     kubernetes_validate.ValidationError),
])
def test_a_broken_resource_is_refused(catalog: Catalog, contracts: list[Contract],
                                      kind: str, change: Any, error: type[Exception]) -> None:
    """The validators are wired: a wrong type, an unknown enum value, a misspelt field fail.
    (The last resource of a kind: for users, a subscriber, which has rules.)"""
    resource = [r for r in resources(catalog, contracts, OPTIONS, AT) if r["kind"] == kind][-1]
    validate(copy.deepcopy(resource))
    change(resource)
    with pytest.raises(error):
        validate(resource)


def test_rendered_acls_are_those_of_acl_sync(catalog: Catalog, contracts: list[Contract],
                                             tmp_path: Path) -> None:
    found = _rendered(catalog, contracts, tmp_path)
    assert _user_grants(found) == entitlements(catalog, contracts, AT)
    admin = next(u for u in _of_kind(found, "KafkaUser")
                 if u["metadata"]["name"] == principals.ADMIN)
    assert "authorization" not in admin["spec"]


@pytest.mark.parametrize(("revoked_days_ago", "entitled"), [(10, True), (400, False)])
def test_a_revoked_contract_entitles_within_its_retention_only(
        catalog: Catalog, contracts: list[Contract], tmp_path: Path,
        revoked_days_ago: int, entitled: bool) -> None:
    """Inside its retention the subscriber still reads (erasure notices); past it, its user
    stays with no rule, so applying the manifests withdraws its ACLs."""
    lyon = next(c for c in contracts if c.id == "lyon-cantine-2026")
    revoked = lyon.revoke(AT - timedelta(days=revoked_days_ago))
    others = [c for c in contracts if c.id != lyon.id]
    found = _rendered(catalog, [*others, revoked], tmp_path)
    expected = entitlements(catalog, [*others, revoked], AT)
    assert _user_grants(found) == expected
    user = f"subscriber.{lyon.subscriber}"
    reads = {g.resource for g in expected if g.principal == f"User:{user}"}
    assert (lyon.delivery_topic in reads) is entitled
    (kafka_user,) = [u for u in _of_kind(found, "KafkaUser") if u["metadata"]["name"] == user]
    assert bool(kafka_user["spec"]["authorization"]["acls"]) is entitled
    topics = {t["spec"]["topicName"] for t in _of_kind(found, "KafkaTopic")}
    assert lyon.delivery_topic in topics


def test_acl_rules_read_back_as_the_grants_they_came_from(catalog: Catalog,
                                                          contracts: list[Contract]) -> None:
    for user, grants in _by_user(entitlements(catalog, contracts, AT)).items():
        assert grants_of(user, strimzi_acls(grants)) == grants
    with pytest.raises(NotAGrant):
        grants_of("bus-sink", [{"type": "deny", "resource": {"type": "topic", "name": "x"},
                                "operations": ["Read"]}])


def _by_user(grants: set[Grant]) -> dict[str, set[Grant]]:
    users: dict[str, set[Grant]] = {}
    for grant in grants:
        users.setdefault(grant.principal.removeprefix("User:"), set()).add(grant)
    return users


def test_workers_never_outnumber_provider_partitions(catalog: Catalog,
                                                     contracts: list[Contract],
                                                     tmp_path: Path) -> None:
    """Faust gives partition p of every provider topic to one worker: partitions per topic is
    the most workers that all have work."""
    options = RenderOptions(image="circulation:test", partitions=6)
    write(render(catalog, contracts, options, AT), tmp_path)
    found = _read(tmp_path)
    provider = {t["spec"]["topicName"]: t["spec"]["partitions"]
                for t in _of_kind(found, "KafkaTopic")
                if t["spec"]["topicName"] in catalog.provider_topics()}
    assert set(provider) == set(catalog.provider_topics())
    (scaled,) = _of_kind(found, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == max(provider.values()) == 6
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(provider)
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {ROUTER_GROUP} == {APP_ID}


def test_topics_are_configured_as_the_bus_configures_them(catalog: Catalog,
                                                          contracts: list[Contract],
                                                          tmp_path: Path) -> None:
    found = _rendered(catalog, contracts, tmp_path)
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of_kind(found, "KafkaTopic")}
    for contract in contracts:
        spec = topics[contract.delivery_topic]
        assert spec["config"] == {**contract.topic_config(), "min.insync.replicas": "2"}
        assert (spec["partitions"], spec["replicas"]) == (3, 3)
    assert topics["bus.contracts"]["config"]["cleanup.policy"] == "compact"
    assert topics["bus.audit"]["config"]["retention.ms"] == str(365 * 86_400_000)


def test_rendering_is_deterministic(catalog: Catalog, contracts: list[Contract],
                                    tmp_path: Path) -> None:
    first = [f.text() for f in render(catalog, contracts, OPTIONS, AT)]
    assert first == [f.text() for f in render(catalog, reversed(contracts), OPTIONS, AT)]


def test_only_its_own_files_are_replaced(catalog: Catalog, contracts: list[Contract],
                                         tmp_path: Path) -> None:
    files = render(catalog, contracts, OPTIONS, AT)
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    (tmp_path / "99-gone.yaml").write_text(HEADER + "{}\n")
    write(files, tmp_path)
    assert (tmp_path / "kustomization.yaml").exists()
    assert not (tmp_path / "99-gone.yaml").exists()
    (tmp_path / files[0].name).write_text("# mine\n")
    with pytest.raises(NotOurs, match=files[0].name):
        write(files, tmp_path)
    assert (tmp_path / files[0].name).read_text() == "# mine\n"


@pytest.mark.usefixtures("fresh_settings")
def test_the_command_renders_offline_and_writes_no_secret(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    """Whatever secrets the operator's environment holds, no manifest carries one: passwords
    come from the Secrets the operators write, the pseudonym secret from one of its own."""
    secrets = {name: strong_secret().get_secret_value() for name in (
        "CIRCULATION_SASL_PASSWORD", "CIRCULATION_SCHEMA_REGISTRY_PASSWORD",
        "CIRCULATION_PSEUDONYM_SECRET", "CIRCULATION_SUBJECT_SECRET")}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "manifests"
    result = CliRunner().invoke(app, ["render", "k8s", "--out", str(out),
                                      "--contracts-from", str(DEPLOY), "--namespace", "bus"])
    assert result.exit_code == 0, result.output
    assert "04-kafkauser.yaml" in result.output
    text = "".join(p.read_text(encoding="utf-8") for p in sorted(out.glob("*.yaml")))
    assert {r["metadata"]["namespace"] for r in _read(out)} == {"bus"}
    leaked = [name for name, value in {**secrets, **_circulation_env()}.items()
              if ("SECRET" in name or "PASSWORD" in name) and value in text]
    assert leaked == []


def _circulation_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items()
            if name.startswith("CIRCULATION_") and value}


def test_the_command_names_what_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "01-kafka.yaml").write_text("kind: Kafka\n")
    result = CliRunner().invoke(app, ["render", "k8s", "--out", str(tmp_path),
                                      "--contracts-from", str(DEPLOY)])
    assert result.exit_code == 1
    assert "01-kafka.yaml" in result.output


def test_workers_keep_their_state_on_disk_co_partitioned_with_the_events(
        catalog: Catalog, contracts: list[Contract], tmp_path: Path) -> None:
    """A worker's state stores go to the node's disk, at the place its settings name, and the
    state topics have as many partitions as every provider topic (a worker refuses to start
    otherwise)."""
    options = RenderOptions(image="circulation:test", partitions=6)
    write(render(catalog, contracts, options, AT), tmp_path)
    found = _read(tmp_path)
    counts = {t["spec"]["topicName"]: t["spec"]["partitions"]
              for t in _of_kind(found, "KafkaTopic")}
    assert {counts[t] for t in [*catalog.provider_topics(), "bus.population",
                                "bus.consents"]} == {6}
    (worker,) = [d for d in _of_kind(found, "Deployment") if d["metadata"]["name"] == WORKER]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[env["CIRCULATION_STATE_DIR"]])
    assert "medium" not in volume["emptyDir"], "on the node's disk, not in memory"
    assert volume["emptyDir"]["sizeLimit"]


def _webhook_contract(catalog: Catalog, base: Contract) -> Contract:
    raw = {**base.model_dump(mode="json", exclude_none=True), "id": "lyon-webhook-2026",
           "delivery": {"webhook": {"url": "https://hooks.lyon.example/circulation",
                                    "secret_env": "LYON_WEBHOOK_SECRET"}}}
    raw.pop("revoked", None)
    return Contract.checked(raw, catalog)


def _deployment_named(found: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (deployment,) = [d for d in _of_kind(found, "Deployment") if d["metadata"]["name"] == name]
    return deployment


def _secret_files(pod: dict[str, Any]) -> dict[str, str]:
    """File copied owner-only by the init container → the Secret it comes from."""
    (copy_step,) = pod["initContainers"]
    assert copy_step["command"][:5] == ["install", "-m", "0400", "-t", "/run/circulation"]
    by_mount = {m["mountPath"]: m["name"] for m in copy_step["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    return {f"/run/circulation/{Path(source).name}": secrets[by_mount[str(Path(source).parent)]]
            for source in copy_step["command"][5:]}


def test_the_gateway_runs_as_bus_gateway_with_both_secrets_owner_only_behind_a_service(
        catalog: Catalog, contracts: list[Contract], tmp_path: Path) -> None:
    found = _rendered(catalog, contracts, tmp_path)
    pod = _deployment_named(found, "circulation-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["command"][:2] == ["circulation", "api"]
    assert env["CIRCULATION_SASL_USERNAME"] == principals.GATEWAY
    assert _secret_files(pod) == {
        env["CIRCULATION_SUBJECT_SECRET_FILE"]: OPTIONS.subject_secret_name,
        env["CIRCULATION_PSEUDONYM_SECRET_FILE"]: OPTIONS.pseudonym_secret_name}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    journal = mounts[env["CIRCULATION_JOURNAL_DIR"]]
    (volume,) = [v for v in pod["volumes"] if v["name"] == journal]
    assert "medium" not in volume["emptyDir"], "the journal view lives on disk, not in memory"
    (service,) = [s for s in _of_kind(found, "Service")
                  if s["metadata"]["name"] == "circulation-gateway"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    deployment = _deployment_named(found, "circulation-gateway")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_worker_still_copies_its_pseudonym_secret_alone(
        catalog: Catalog, contracts: list[Contract], tmp_path: Path) -> None:
    pod = _deployment_named(_rendered(catalog, contracts, tmp_path),
                            WORKER)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert _secret_files(pod) == {
        env["CIRCULATION_PSEUDONYM_SECRET_FILE"]: OPTIONS.pseudonym_secret_name}
    assert "CIRCULATION_SUBJECT_SECRET_FILE" not in env, "workers never hold the subject secret"


def test_a_contract_naming_a_webhook_gets_its_sink_as_bus_sink(
        catalog: Catalog, contracts: list[Contract], tmp_path: Path) -> None:
    hooked = _webhook_contract(catalog, contracts[0])
    found = _rendered(catalog, [*contracts, hooked], tmp_path)
    sinks = [d["metadata"]["name"] for d in _of_kind(found, "Deployment")
             if d["metadata"]["name"].startswith("circulation-sink-")]
    assert sinks == ["circulation-sink-lyon-webhook-2026"]
    pod = _deployment_named(found, sinks[0])["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["circulation", "sink", "webhook", hooked.id]
    env = {e["name"]: e for e in container["env"]}
    assert env["CIRCULATION_SASL_USERNAME"]["value"] == principals.SINK
    assert env["LYON_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "webhook-lyon-webhook-2026", "key": "secret"}
    for resource in found:
        validate(resource)


def test_ended_choices_expire_daily_as_bus_admin_one_run_at_a_time(
        catalog: Catalog, contracts: list[Contract], tmp_path: Path) -> None:
    found = _rendered(catalog, contracts, tmp_path)
    (job,) = _of_kind(found, "CronJob")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every = job["spec"]["schedule"].split()
    assert every == ["*", "*", "*"], "every day"
    assert (minute.isdigit(), hour.isdigit()) == (True, True), "once a day"
    assert job["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0, (
        "a hung run must not block every later day")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["circulation", "retention", "expire-history"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CIRCULATION_SASL_USERNAME"]["value"] == principals.ADMIN
    assert env["CIRCULATION_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        OPTIONS.user_secret(principals.ADMIN))
    assert "initContainers" not in pod, "tombstoning needs neither the subject nor pseudonym secret"
    validate(job)
