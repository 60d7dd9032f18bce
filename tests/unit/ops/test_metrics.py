"""Observability: the Prometheus metrics of streams/ops/ (the workers' and the lag exporter's),
and deploy/observability/ (scrape config, alert rules and their promtool unit tests, Grafana
dashboard) checked against them.

The rule and config files are always checked structurally here, and by ``promtool``, which also
runs the rules' unit tests: the one named by ``PROMTOOL`` (``make test`` and ``make unit`` name
the one they fetch), else the one on PATH. Without it those tests fail, saying so in one line;
``-m "not promtool"`` leaves them out on purpose.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.ops import metrics
from streams.ops.lag import exporter as lag_exporter
from streams.ops.lag.model import GroupSample, PartitionOffsets, Status, evaluate_group
from streams.state.directory import Change

OBSERVABILITY = Path(__file__).resolve().parents[3] / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "circulation.json"
SCRAPE = OBSERVABILITY / "prometheus.yml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
NAME = re.compile(r"circulation[_:][a-zA-Z0-9_:]*")
FORBIDDEN_LABELS = {"subject", "subject_ref", "pseudonym", "person", "nir", "event", "event_id",
                    "id", "key"}


# --- the metrics themselves ---------------------------------------------------------------------

def lag_verdict() -> Any:
    samples = [GroupSample("subscriber.ville-de-lyon.lyon-cantine-2026", float(t), (
        PartitionOffsets("deliver.ville-de-lyon.lyon-cantine-2026", 0, 10, 20 + t, 0,
                         (t - 30) * 1000, owned=True),), 1, "Stable") for t in (0, 5, 10)]
    return evaluate_group(samples)


def exposed_families() -> Iterator[Any]:
    registry, collector = lag_exporter.lag_registry()
    collector.update([lag_verdict()], 1_000.0)
    yield from registry.collect()
    yield from metrics.REGISTRY.collect()


def series_names() -> set[str]:
    """Every series name a scrape of a worker or of the lag exporter can show."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "summary": ("", "_sum", "_count")}
    return {family.name + suffix for family in exposed_families()
            for suffix in suffixes[family.type]}


def test_metric_names_follow_prometheus_conventions() -> None:
    ours = [f for f in exposed_families() if f.name.startswith("circulation")]
    assert {f.name for f in ours} >= {
        "circulation_consumer_lag_records", "circulation_consumer_lag_seconds",
        "circulation_consumer_group_status", "circulation_events_routed",
        "circulation_deliveries", "circulation_withheld", "circulation_dead_letters",
        "circulation_routing_latency_seconds", "circulation_consent_changes",
        "circulation_population_changes"}
    for family in ours:
        assert re.fullmatch(r"circulation_[a-z0-9_]+", family.name), family.name
        assert family.documentation, f"{family.name} has no help text"
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds it to the series
        assert not re.search(r"_(ms|milliseconds|minutes|hours)$", family.name)


def test_labels_are_bounded_never_a_person_or_an_event() -> None:
    tally = metrics.RoutingTally()
    tally.decision("ville-de-lyon", "lyon-cantine-2026", None)
    tally.decision("ville-de-lyon", "lyon-cantine-2026", "no_consent")
    tally.dead_letter("provider.cnaf.quotient_familial")
    metrics.record_batch(tally, [])
    subject = "sr1_" + "ab" * 32
    metrics.record_state_changes([Change("lyon-cantine-2026", subject, consent="granted"),
                                  Change("lyon-cantine-2026", subject, enrolled=True)])
    for family in exposed_families():
        for sample in family.samples:
            assert not set(sample.labels) & FORBIDDEN_LABELS, (family.name, sample.labels)
            assert subject not in sample.labels.values(), (family.name, sample.labels)


class Routed:
    def __init__(self, topic: str, timestamp_ms: int | None) -> None:
        self.topic = topic
        self.timestamp_ms = timestamp_ms


def value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return found or 0.0


def test_record_batch_counts_a_batch_once() -> None:
    topic = "provider.msa.quotient_familial"
    before = {
        "routed": value("circulation_events_routed_total", topic=topic),
        "delivered": value("circulation_deliveries_total", subscriber="idfm",
                           contract="idfm-tarif-solidarite"),
        "withheld": value("circulation_withheld_total", subscriber="idfm",
                          contract="idfm-tarif-solidarite", reason="not_enrolled"),
        "dead": value("circulation_dead_letters_total", topic=topic),
        "latencies": value("circulation_routing_latency_seconds_count"),
        "fast": value("circulation_routing_latency_seconds_bucket", le="0.5"),
    }
    tally = metrics.RoutingTally()
    for reason in (None, None, "not_enrolled"):
        tally.decision("idfm", "idfm-tarif-solidarite", reason)
    tally.dead_letter(topic)
    tally.invalid_contracts = 2  # a level, not a count: taking the tally keeps it
    taken = tally.take()
    assert tally.invalid_contracts == taken.invalid_contracts == 2
    assert not tally.delivered
    assert not tally.withheld
    assert not tally.dead_letters
    assert taken.summary() == {"delivered": {"idfm-tarif-solidarite": 2},
                               "withheld": {"idfm-tarif-solidarite:not_enrolled": 1},
                               "dead_letters": {topic: 1}}
    metrics.record_batch(taken, [Routed(topic, 99_800), Routed(topic, 90_000),
                                 Routed(topic, None)], done_at=100.0)
    assert value("circulation_contracts_invalid") == 2
    assert value("circulation_events_routed_total", topic=topic) == before["routed"] + 3
    assert value("circulation_deliveries_total", subscriber="idfm",
                 contract="idfm-tarif-solidarite") == before["delivered"] + 2
    assert value("circulation_withheld_total", subscriber="idfm",
                 contract="idfm-tarif-solidarite",
                 reason="not_enrolled") == before["withheld"] + 1
    assert value("circulation_dead_letters_total", topic=topic) == before["dead"] + 1
    assert value("circulation_routing_latency_seconds_count") == before["latencies"] + 2
    assert value("circulation_routing_latency_seconds_bucket", le="0.5") == before["fast"] + 1


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=200))
def test_batch_histogram_matches_the_client_histogram(values: list[float]) -> None:
    reference_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h_seconds", "h", buckets=metrics.LATENCY_BUCKETS,
                          registry=reference_registry)
    ours = metrics.BatchHistogram("h_seconds", "h", metrics.LATENCY_BUCKETS, ours_registry)
    for v in values:
        reference.observe(v)
    half = random.Random(len(values)).randint(0, len(values))
    ours.observe_many(values[:half])
    ours.observe_many(values[half:])

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        text = generate_latest(registry).decode()
        return {(s.name, s.labels.get("le", "")): s.value
                for f in text_string_to_metric_families(text) for s in f.samples
                if not s.name.endswith("_created")}

    expected = samples(reference_registry)
    got = samples(ours_registry)
    assert got.keys() == expected.keys()
    for key, number in expected.items():
        assert got[key] == pytest.approx(number)


def test_lag_collector_exposes_the_latest_evaluation_only() -> None:
    registry, collector = lag_exporter.lag_registry()
    verdict = lag_verdict()
    assert verdict.status == Status.STALL
    collector.update([verdict], 1_000.0)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (status,) = families["circulation_consumer_group_status"].samples
    assert status.labels == {"group": "subscriber.ville-de-lyon.lyon-cantine-2026",
                             "subscriber": "ville-de-lyon"}
    assert status.value == Status.STALL.value
    (lag,) = families["circulation_consumer_lag_records"].samples
    assert lag.labels["partition"] == "0"
    assert lag.value == 20
    (age,) = families["circulation_consumer_lag_seconds"].samples
    assert age.value == pytest.approx(30.0)
    assert families["circulation_lag_evaluated_timestamp_seconds"].samples[0].value == 1_000.0
    collector.update([])
    text = generate_latest(registry).decode()
    assert "subscriber.ville-de-lyon" not in text  # a vanished group leaves no stale series


# --- deploy/observability -----------------------------------------------------------------------

def load_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_rule_file_structure() -> None:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"], group["name"]
    alerts = set()
    for rule in load_rules():
        assert isinstance(rule["expr"], str)
        assert rule["expr"].strip()
        if "record" in rule:
            assert set(rule) <= {"record", "expr", "labels"}
            assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"])
            continue
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels",
                             "annotations"}
        assert re.fullmatch(r"Circulation[A-Za-z]+", rule["alert"])
        assert rule["alert"] not in alerts
        alerts.add(rule["alert"])
        assert DURATION.match(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert rule["expr"].count("{") == rule["expr"].count("}")


def test_the_issue_s_alerts_exist() -> None:
    rules = {rule.get("alert") or rule["record"]: rule for rule in load_rules()}
    stall, stop = rules["CirculationSubscriberStalled"], rules["CirculationSubscriberStopped"]
    assert "circulation_consumer_group_status" in stall["expr"]
    assert stall["expr"].endswith(f"== {Status.STALL.value}")
    assert stall["for"] == "5m"
    assert stop["expr"].endswith(f"== {Status.STOP.value}")
    assert stop["for"] == "5m"
    assert rules["CirculationRouterBehind"]["for"] == "5m"
    assert "circulation_dead_letters_total" in rules["CirculationDeadLettersGrowing"]["expr"]
    latency = rules["CirculationRoutingLatencyHigh"]["expr"]
    p99 = rules[latency.split()[0]]["expr"]
    assert p99.startswith("histogram_quantile(0.99,")
    assert "circulation_routing_latency_seconds_bucket" in p99


def expression_names(expr: str) -> set[str]:
    return set(NAME.findall(re.sub(r'"[^"]*"', '""', expr)))


def test_rules_use_only_metrics_that_exist() -> None:
    known = series_names() | {r["record"] for r in load_rules() if "record" in r}
    for rule in load_rules():
        missing = expression_names(rule["expr"]) - known
        assert not missing, f"{rule.get('alert') or rule['record']} uses unknown {missing}"


def test_dashboard_queries_use_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    known = series_names()
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queries = []
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        queries += [t["expr"] for t in panel["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    for expr in queries:
        assert not expression_names(expr) - known, expr
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("lag per administration", "throughput", "withheld by reason", "dead letters"):
        assert topic in titles


def test_scrape_config_names_the_jobs_and_rules() -> None:
    config = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"circulation-worker", "circulation-lag"}
    for rule_file in config["rule_files"]:
        assert (SCRAPE.parent / rule_file).is_file()
    for job in config["scrape_configs"]:
        for target in (t for c in job["static_configs"] for t in c["targets"]):
            assert re.fullmatch(r"[\w.-]+:\d+", target)
    for rule in load_rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs


# --- promtool ------------------------------------------------------------------------------------

def promtool() -> str:
    """The promtool to check the rules with; a test without one fails in one line naming what
    to do, since a skipped rule check would pass broken alerts unnoticed."""
    named = os.environ.get("PROMTOOL")
    if named:
        if not os.access(named, os.X_OK):
            pytest.fail(f"PROMTOOL={named} is no executable file: `make promtool` fetches it "
                        "(Debian's prometheus package), or deselect with -m 'not promtool'",
                        pytrace=False)
        return named
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found (PROMTOOL unset, none on PATH): `make promtool` fetches "
                    "it (Debian's prometheus package), or deselect with -m 'not promtool'",
                    pytrace=False)
    return found


@pytest.mark.promtool
@pytest.mark.parametrize("arguments", [
    ["check", "config", "prometheus.yml"],
    ["check", "rules", "alerts.yml"],
    ["test", "rules", "alerts.test.yml"],
], ids=["check-config", "check-rules", "test-rules"])
def test_promtool(arguments: list[str]) -> None:
    result = subprocess.run([promtool(), *arguments], cwd=OBSERVABILITY, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("promtool_env", [{"PROMTOOL": "/nonexistent/promtool"},
                                          {"PROMTOOL": "", "PATH": "/nonexistent"}],
                         ids=["named-but-missing", "nowhere"])
def test_without_promtool_the_rule_checks_fail_in_one_clear_line(
        promtool_env: dict[str, str], tmp_path: Path) -> None:
    """Not skipped, not a FileNotFoundError: a CI without promtool must go red, and say why."""
    env = {**os.environ, **promtool_env}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-k", "test_promtool", "-p", "no:cacheprovider",
         "-q", "--no-header", "-o", f"cache_dir={tmp_path}"],
        cwd=Path(__file__).resolve().parents[3], env=env, capture_output=True, text=True,
        timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 failed" in output, output
    assert "skipped" not in output, output
    assert "FileNotFoundError" not in output, output
    assert "Traceback" not in output, output
    assert output.count("`make promtool` fetches it") >= 3, output
