"""Consumer lag: the Burrow-style evaluator on crafted windows, and the ``lag`` command on a
scripted probe (no broker)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from connectors.files.sink import files_group
from connectors.sinks import sink_group
from streams.cli import lag as lag_cli
from streams.ops.lag import model as lag_module
from streams.ops.lag import monitor as lag_monitor
from streams.ops.lag.model import (
    ROUTER_GROUP,
    GroupSample,
    LagWindows,
    PartitionOffsets,
    Status,
    concerns,
    evaluate_group,
    evaluate_partition,
    is_watched,
    subscriber_of,
    worst_first,
)

TOPIC = "deliver.ville-de-lyon.lyon-cantine-2026"
GROUP = "subscriber.ville-de-lyon.lyon-cantine-2026"


def window(*points: tuple[int, int], start: int | None = 0, step: float = 5.0,
           stamp_age: float | None = 30.0) -> tuple[list[PartitionOffsets], list[float]]:
    """Observations of one partition: (committed, end) pairs, ``step`` seconds apart."""
    history, times = [], []
    for index, (committed, end) in enumerate(points):
        at = 1_000.0 + index * step
        stamp = None if stamp_age is None else int((at - stamp_age) * 1000)
        history.append(PartitionOffsets(TOPIC, 0, committed, end, start, stamp))
        times.append(at)
    return history, times


def judge(*points: tuple[int, int], alive: bool | None = True, **kwargs: object) -> Status:
    history, times = window(*points, **kwargs)  # type: ignore[arg-type]
    return evaluate_partition(history, times, alive).status


# --- each status from a crafted window ----------------------------------------------------------

def test_caught_up_is_ok() -> None:
    assert judge((10, 20), (20, 25), (30, 30)) == Status.OK


def test_zero_lag_anywhere_in_the_window_is_ok() -> None:
    """Burrow's first rule: a window that saw the consumer caught up is OK."""
    assert judge((10, 10), (10, 20), (10, 30), alive=False) == Status.OK


def test_one_observation_gives_no_trend() -> None:
    verdict = evaluate_partition(*window((10, 50)), alive=False)
    assert verdict.status == Status.OK
    assert "no trend" in verdict.reason


def test_consuming_with_falling_or_steady_lag_is_ok() -> None:
    assert judge((10, 50), (40, 60), (70, 75)) == Status.OK  # lag 40, 20, 5
    assert judge((10, 50), (20, 60), (30, 70)) == Status.OK  # steady lag: keeping pace


def test_lag_growing_while_consuming_is_warn() -> None:
    verdict = evaluate_partition(*window((10, 50), (20, 80), (30, 95), (40, 120)), alive=True)
    assert verdict.status == Status.WARN
    assert "grew from 40 to 80" in verdict.reason


def test_lag_that_dips_once_is_not_warn() -> None:
    assert judge((10, 50), (20, 80), (60, 90), (70, 130)) == Status.OK  # 40, 60, 30, 60


def test_committed_offset_moving_back_is_warn() -> None:
    verdict = evaluate_partition(*window((50, 100), (20, 100), (30, 110)), alive=True)
    assert verdict.status == Status.WARN
    assert "moved back" in verdict.reason


def test_stuck_commits_with_a_live_consumer_is_stall() -> None:
    assert judge((10, 20), (10, 30), (10, 40), alive=True) == Status.STALL
    assert judge((10, 20), (10, 20), alive=None) == Status.STALL


def test_stuck_commits_with_nobody_reading_is_stop() -> None:
    verdict = evaluate_partition(*window((10, 20), (10, 30), (10, 40)), alive=False)
    assert verdict.status == Status.STOP
    assert "no active member" in verdict.reason


def test_unreadable_or_impossible_offsets_are_err() -> None:
    broken = PartitionOffsets(TOPIC, 0, None, None, error="log offsets unreadable: timeout")
    assert evaluate_partition([broken], [1.0], True).status == Status.ERR
    assert judge((10, 20), (30, 20)) == Status.ERR  # committed beyond the log end
    expired = evaluate_partition(*window((10, 500), start=100), alive=True)
    assert expired.status == Status.ERR
    assert "90 records expired unread" in expired.reason


def test_lag_in_time_is_the_age_of_the_oldest_unconsumed_record() -> None:
    behind = evaluate_partition(*window((10, 20), (10, 30), stamp_age=42.5), alive=True)
    assert behind.lag == 20
    assert behind.lag_seconds == pytest.approx(42.5)
    caught_up = evaluate_partition(*window((10, 20), (30, 30)), alive=True)
    assert caught_up.lag_seconds == 0.0
    unknown = evaluate_partition(*window((10, 20), (10, 30), stamp_age=None), alive=True)
    assert unknown.lag_seconds is None
    future = evaluate_partition(*window((10, 20), stamp_age=-3.0), alive=True)
    assert future.lag_seconds == 0.0  # a producer clock ahead of ours is no negative age


# --- groups: the worst partition decides --------------------------------------------------------

def sample(at: float, *partitions: tuple[int, int, int], members: int | None = 1,
           group: str = GROUP, topic: str = TOPIC, owned: bool | None = None) -> GroupSample:
    """A group sample; partitions as (partition, committed, end)."""
    return GroupSample(group, at, tuple(
        PartitionOffsets(topic, number, committed, end, 0, int((at - 10) * 1000), owned=owned)
        for number, committed, end in partitions), members, "Stable" if members else "Empty")


def test_group_status_is_its_worst_partition() -> None:
    verdict = evaluate_group([
        sample(0, (0, 10, 10), (1, 5, 20), (2, 0, 30)),
        sample(5, (0, 20, 20), (1, 10, 40), (2, 0, 40)),
        sample(10, (0, 30, 30), (1, 15, 60), (2, 0, 50)),
    ])
    by_partition = {p.partition: p.status for p in verdict.partitions}
    assert by_partition == {0: Status.OK, 1: Status.WARN, 2: Status.STALL}
    assert verdict.status == Status.STALL
    assert verdict.reason.startswith(f"{TOPIC}[2]: committed offset stuck at 0")
    assert verdict.lag == 0 + 45 + 50
    assert verdict.subscriber == "ville-de-lyon"


def test_an_unassigned_partition_of_a_live_group_is_stop() -> None:
    """Members alive, but none of them reads this partition: nobody will commit there."""
    windows = [sample(t, (0, 10, 11 + t), owned=False) for t in (0.0, 5.0, 10.0)]
    assert evaluate_group(windows).status == Status.STOP
    windows = [sample(t, (0, 10, 11 + t), owned=True) for t in (0.0, 5.0, 10.0)]
    assert evaluate_group(windows).status == Status.STALL


def test_a_group_whose_offsets_cannot_be_read_is_err() -> None:
    failed = GroupSample(GROUP, 5.0, (), error="committed offsets unreadable: timeout")
    verdict = evaluate_group([sample(0, (0, 1, 2)), failed])
    assert verdict.status == Status.ERR
    assert verdict.reason == "committed offsets unreadable: timeout"


def test_partitions_judged_are_those_of_the_latest_sample() -> None:
    verdict = evaluate_group([sample(0, (0, 1, 5), (1, 1, 5)), sample(5, (0, 5, 5))])
    assert [p.partition for p in verdict.partitions] == [0]


def test_windows_slide_and_forget_vanished_groups() -> None:
    windows = LagWindows(3)
    for t in range(5):
        windows.observe([sample(float(t), (0, 10, 10 + t)),
                         *([sample(float(t), (0, 1, 1), group="subscriber.a.b")] if t < 4
                           else [])])
    assert windows.filled == 3
    report = windows.evaluate()
    assert [g.group for g in report] == [GROUP]
    assert report[0].samples == 3
    assert report[0].status == Status.STALL  # lag 12, 13, 14 over the last three samples


def test_worst_first() -> None:
    def verdict(group: str, *points: tuple[int, int], members: int = 1) -> lag_module.GroupLag:
        return evaluate_group([sample(float(5 * i), (0, c, e), members=members, group=group)
                               for i, (c, e) in enumerate(points)])

    ok = verdict("subscriber.a.ok", (10, 10), (20, 20))
    warn = verdict("subscriber.b.warn", (10, 20), (15, 40))
    stall = verdict("subscriber.c.stall", (10, 20), (10, 30))
    stop = verdict("subscriber.d.stop", (10, 20), (10, 30), members=0)
    assert [g.status for g in worst_first([ok, stall, warn, stop])] == [
        Status.STOP, Status.STALL, Status.WARN, Status.OK]


def test_which_groups_and_topics_are_watched() -> None:
    assert is_watched("anything", TOPIC)
    assert is_watched(ROUTER_GROUP, "provider.cnaf.quotient_familial")
    assert not is_watched("someone-else", "provider.cnaf.quotient_familial")
    assert not is_watched(ROUTER_GROUP, "bus.audit")
    assert subscriber_of("my-own-client", [TOPIC]) == "ville-de-lyon"
    assert subscriber_of(GROUP, []) == "ville-de-lyon"
    assert subscriber_of(ROUTER_GROUP, ["provider.cnaf.quotient_familial"]) is None
    assert concerns("ville-de-lyon", "my-own-client", TOPIC)
    assert concerns("ville-de-lyon", GROUP, "deliver.other.contract")
    assert not concerns("idfm", GROUP, TOPIC)


def test_the_sinks_groups_are_watched_and_named_after_the_subscriber() -> None:
    for group in (sink_group("lyon-cantine-2026"), files_group("lyon-cantine-2026")):
        assert is_watched(group, TOPIC)
        assert subscriber_of(group, [TOPIC]) == "ville-de-lyon"
        assert concerns("ville-de-lyon", group, TOPIC)
    assert files_group("lyon-cantine-2026") == "sink.lyon-cantine-2026.files"


def test_router_group_is_the_worker_app_id() -> None:
    from streams.worker.app import APP_ID

    assert ROUTER_GROUP == APP_ID


# --- properties ---------------------------------------------------------------------------------

growing_lags = st.lists(st.integers(min_value=1, max_value=10_000), min_size=2,
                        max_size=12).map(lambda steps: [sum(steps[:i + 1])
                                                        for i in range(len(steps))])


@given(lags=growing_lags, committed=st.integers(min_value=0, max_value=10**9),
       alive=st.sampled_from([True, False, None]))
def test_stuck_commits_under_growing_lag_are_never_ok(lags: list[int], committed: int,
                                                      alive: bool | None) -> None:
    history, times = window(*((committed, committed + lag) for lag in lags))
    status = evaluate_partition(history, times, alive).status
    assert status == (Status.STOP if alive is False else Status.STALL)


@given(lags=growing_lags, moves=st.lists(st.integers(min_value=1, max_value=1000),
                                         min_size=12, max_size=12))
def test_lag_growing_at_every_observation_while_consuming_is_warn(lags: list[int],
                                                                  moves: list[int]) -> None:
    committed = [sum(moves[:i + 1]) for i in range(len(lags))]
    history, times = window(*((c, c + lag) for c, lag in zip(committed, lags, strict=False)))
    assert evaluate_partition(history, times, True).status == Status.WARN


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1,
                max_size=10), st.integers(0, 9))
def test_a_zero_lag_in_the_window_makes_a_readable_partition_ok(
        points: list[tuple[int, int]], where: int) -> None:
    points = [(min(c, e), max(c, e)) for c, e in points]
    at = where % len(points)
    points[at] = (points[at][1], points[at][1])
    history, times = window(*points, start=None)
    assert evaluate_partition(history, times, False).status == Status.OK


@given(st.lists(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=3,
                         max_size=3), min_size=1, max_size=6),
       st.integers(min_value=0, max_value=2))
def test_group_status_is_the_max_of_its_partitions(series: list[list[tuple[int, int]]],
                                                   members: int) -> None:
    samples = [sample(float(5 * i), *((n, c, c + e) for n, (c, e) in enumerate(points)),
                      members=members)
               for i, points in enumerate(zip(*series, strict=True))]
    verdict = evaluate_group(samples)
    assert verdict.status == max(p.status for p in verdict.partitions)


# --- the command, on a scripted probe -----------------------------------------------------------

class ScriptedProbe:
    """Stands in for :class:`streams.ops.lag.probe.LagProbe`: returns one scripted round per
    call."""

    rounds: Sequence[Sequence[GroupSample]] = ()

    def __init__(self, _settings: object, subscriber: str | None = None) -> None:
        self.subscriber = subscriber
        self.calls = 0

    async def __aenter__(self) -> ScriptedProbe:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def sample(self) -> list[GroupSample]:
        chosen = self.rounds[min(self.calls, len(self.rounds) - 1)]
        self.calls += 1
        return [s for s in chosen
                if self.subscriber is None or s.group.split(".")[1] == self.subscriber]


def scenario() -> list[list[GroupSample]]:
    """Four groups over three samples: OK, WARN, STALL, STOP."""
    rounds = []
    for i in range(3):
        t = 1_000.0 + i
        rounds.append([
            sample(t, (0, 10 * i, 10 * i), group="subscriber.alpha.ok", topic="deliver.alpha.c"),
            sample(t, (0, 5 * i, 20 * i + 1), group="subscriber.beta.slow", topic="deliver.beta.c"),
            sample(t, (0, 3, 4 + i), group="subscriber.beta.stalled", topic="deliver.beta.c"),
            sample(t, (0, 3, 4 + i), members=0, group="subscriber.beta.stopped",
                   topic="deliver.beta.c"),
        ])
    return rounds


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    ScriptedProbe.rounds = scenario()
    monkeypatch.setenv("COLUMNS", "200")  # rich reads it: no folded group names
    monkeypatch.setattr(lag_monitor, "LagProbe", ScriptedProbe)
    app = typer.Typer()
    app.command()(lag_cli.lag)
    return app


def test_lag_json_lists_groups_worst_first_and_exits_1(command: typer.Typer) -> None:
    result = CliRunner().invoke(command, ["--json", "--window", "0.2", "--samples", "3"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "STOP"
    assert document["samples"] == 3
    assert [(g["group"], g["status"]) for g in document["groups"]] == [
        ("subscriber.beta.stopped", "STOP"), ("subscriber.beta.stalled", "STALL"),
        ("subscriber.beta.slow", "WARN"), ("subscriber.alpha.ok", "OK")]
    slow = document["groups"][2]
    assert slow["subscriber"] == "beta"
    assert slow["partitions"][0]["lag_records"] == 31
    assert set(slow["partitions"][0]) >= {"topic", "partition", "committed_offset",
                                          "log_end_offset", "lag_records", "lag_seconds",
                                          "status"}


def test_lag_exits_0_when_nobody_is_stalled_or_stopped(command: typer.Typer) -> None:
    result = CliRunner().invoke(command, ["--subscriber", "alpha", "--window", "0.2"])
    assert result.exit_code == 0, result.output
    assert "subscriber.alpha.ok" in result.stdout
    assert "beta" not in result.stdout


def test_lag_table_and_plot(command: typer.Typer, tmp_path: Path) -> None:
    picture = tmp_path / "lag.png"
    result = CliRunner().invoke(command, ["--window", "0.2", "--plot", str(picture)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "lag (records)" in line)
    for column in ("group", "subscriber", "topic", "partitions", "lag (age)", "status"):
        assert column in header
    rows = [line for line in lines if "subscriber.beta." in line or "subscriber.alpha" in line]
    order = [next(word for word in ("stopped", "stalled", "slow", "ok") if word in row)
             for row in rows if "│" in row]
    assert order[:4] == ["stopped", "stalled", "slow", "ok"]
    assert "STOP subscriber.beta.stopped: deliver." in result.stdout
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lag_watch_json_prints_one_document_per_sample(command: typer.Typer) -> None:
    result = CliRunner().invoke(command, ["--watch", "--json", "--window", "0.2",
                                          "--samples", "3", "--duration", "0.5"])
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(documents) >= 3
    assert [d["samples"] for d in documents[:3]] == [1, 2, 3]
    assert documents[-1]["status"] == "STOP"
    assert result.exit_code == 1


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "?"), (0.4, "0s"), (42.9, "42s"), (187, "3m07s"), (7500, "2h05m"), (273_600, "3d04h")])
def test_age_text(seconds: float | None, text: str) -> None:
    assert lag_cli.age_text(seconds) == text


class FlakyProbe(ScriptedProbe):
    """Fails its first sample, as a probe does while the broker restarts."""

    async def sample(self) -> list[GroupSample]:
        if self.calls == 0:
            self.calls += 1
            raise lag_cli.LagProbeError("cannot list consumer groups: broker restarting")
        return await super().sample()


def test_a_failed_sample_ends_a_one_shot_check_with_2(command: typer.Typer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag_monitor, "LagProbe", FlakyProbe)
    result = CliRunner().invoke(command, ["--window", "0.2"])
    assert result.exit_code == 2
    assert "broker restarting" in result.stderr


def test_watching_survives_a_failed_sample(command: typer.Typer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag_monitor, "LagProbe", FlakyProbe)
    logged = structlog.testing.CapturingLogger()
    monkeypatch.setattr(lag_monitor, "log", structlog.wrap_logger(logged))
    result = CliRunner().invoke(command, ["--watch", "--json", "--window", "0.2",
                                          "--duration", "0.6"])
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert documents, (result.exit_code, result.output, result.exception)
    assert documents[-1]["status"] == "STOP"
    assert [call.method_name for call in logged.calls] == ["error"]
    assert "broker restarting" in str(logged.calls[0])
