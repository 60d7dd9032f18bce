"""A soak: the bus under a steady load for minutes, with consent churn and contract changes,
then accounted for by ``circulation reconcile``; each process's memory over time.

On a fresh private local stack (Kafka on 29592, its controller on 29593, the registry on 28581:
ports of its own, beside the session's stack and the other benchmarks'), in a temporary run
folder, the jar cache shared; ``--partitions`` (default 6) on every topic the bus creates, so
that two workers split them evenly. Its handling is :mod:`routing_throughput`'s, the worker
processes those of the routing harness (:class:`~tests.integration.routing_harness.WorkerPool`).

- **Three contracts** on ``quotient_familial``: ``soak-all`` (``population: all``, consent not
  required), ``soak-opt-in`` (``population: all``, ``consent: opt_in``, half the persons
  consenting at the start) and ``soak-enrolled`` (``population: enrolled``, half the persons
  enrolled), applied with ``circulation contracts apply``.
- **The publisher**, a subprocess of its own (this script in its publishing role), publishes
  ``--rate`` events a second for ``--minutes``, about a fixed population of ``--persons``
  synthetic persons spread over every partition.
- **Two ``circulation worker`` processes** route them, as production runs them; one
  ``circulation consume CONTRACT --from-beginning`` per contract reads its deliveries for the
  whole run (what each receives is counted by ``id``).
- **Consent churn**: every ``--churn-seconds``, ``--churn`` consenting persons withdraw and as
  many others grant, through the functions ``consent withdraw|grant`` call (a withdrawal
  sends erasure notices).
- **A contract change every minute**: ``contracts apply`` of a new version of ``soak-all``, its
  purpose text changed and, every other time, the field ``mois`` removed from or added back to
  its projection (a new delivery schema).
- **Memory**: ``VmRSS`` of each process every ``--sample-seconds`` (the publisher, each
  worker, each consumer, the broker's and registry's JVMs, and this script, which holds the ids
  it counts), reported as start (the first sample 30 s into the load: an interpreter's first
  seconds are its imports), peak (``VmHWM``), final (once everything is routed and received)
  and the last sample of each minute.

At the end, once the router group has committed the provider topics' end offsets and every
consumer has received every delivery of its topic, ``circulation reconcile --since <the run's
length and a margin> --json`` runs. Reported: events published, deliveries per contract (read on
the delivery topics), outcomes withheld by reason, dead letters, duplicates (the same delivery
id twice on a delivery topic, and in what each consumer received), the churn and contract
changes done, and whether reconcile is clean (its gaps if not). The script exits 1 when
reconcile is not clean, an event is unaccounted for, a consumer missed a delivery, or a
contract change failed.

Run: ``.venv/bin/python tests/benchmarks/soak.py --minutes 10 --rate R`` from the repository
root, R being half the fan-out-3 rate ``routing_throughput.py`` measures on the same machine.
The publisher draws a pool of events once and publishes them in turn under fresh ids: subjects,
data and times repeat, the ids never do. Prints a markdown table and the row for the README's
performance table. Needs Java and Maven like ``circulation local up`` (the jars come from the
cache).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import directory_scale as ds  # this folder's: progress notes, the commit measured
import routing_throughput as rt  # this folder's: the private stack, its environment
import yaml

from connectors.publisher import Publisher
from streams.dev.localstack import LocalStack
from streams.dev.synthetic import Person, generate, people
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.subjects import Subject, find_contract, resolve, set_consent, set_population

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the tests package, for the routing harness's worker pool
    sys.path.insert(0, str(REPO))

from tests.conftest import Services  # noqa: E402
from tests.integration.routing_harness import (  # noqa: E402
    Record,
    WorkerPool,
    beginning,
    header,
    read_all,
)

PORTS = {"local_kafka_port": 29592, "local_controller_port": 29593,
         "local_registry_port": 28581, "local_identity_port": 28680}
DATASET = "quotient_familial"
PROVIDER = "cnaf"
FIELDS = ["quotient_familial", "annee", "mois"]
CHANGED_FIELD = "mois"
"""The field every other contract change removes from ``soak-all``'s projection or adds back."""
CHANGE_SECONDS = 60.0
SETTLED_SECONDS = 30.0
"""A process's start RSS is its first sample this long after the load began."""
SCRIPT = "soak script (churn, contract changes, counting)"
"""This process's label: its RSS holds the ids it counts, so the README's row leaves it out."""
NOTICE = "erasure_notice"
"""``ce_type`` of an erasure notice, the other kind of record on a delivery topic."""
CATCH_UP_SECONDS = 900.0
RECEIVED_SECONDS = 300.0
WINDOW_MARGIN_SECONDS = 300
"""Added to the time since the contracts were applied for ``reconcile --since``: the stack is
fresh, so the window may begin before anything was written in it."""


# --- contracts ------------------------------------------------------------------------------


@dataclass
class Terms:
    """One soak contract as a file: written again for each new version."""

    name: str
    consent: str
    population: str
    folder: Path
    fields: list[str] = field(default_factory=lambda: list(FIELDS))
    version: int = 1

    @property
    def id(self) -> str:
        return f"soak-{self.name}"

    @property
    def path(self) -> Path:
        return self.folder / f"{self.id}.yaml"

    def write(self) -> Path:
        document = {
            "id": self.id, "subscriber": f"soak-{self.name}-subscriber",
            "subscriber_siret": "21690123100011",
            "purpose": f"Essai d'endurance « {self.name} », version {self.version}",
            "legal_basis": "RGPD art. 6.1.e ; CRPA art. L114-8",
            "datasets": {DATASET: self.fields}, "consent": self.consent,
            "population": self.population, "retention": "P30D",
            "valid_from": (datetime.now(UTC).date() - timedelta(days=30)).isoformat(),
        }
        self.path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        return self.path

    def next_version(self) -> None:
        """The purpose text changes each time; every other time, the projection too."""
        self.version += 1
        if self.version % 2 == 0:
            self.fields = [f for f in self.fields if f != CHANGED_FIELD]
        else:
            self.fields = list(FIELDS)


async def run_cli(settings: Settings, *args: str, timeout: float = 300) -> tuple[int, str]:
    """``circulation ARGS`` as a subprocess: (exit status, standard output and error)."""
    process = await asyncio.create_subprocess_exec(
        *rt.CLI, *args, env=rt.env_of(settings), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def apply(settings: Settings, *terms: Terms) -> None:
    code, out = await run_cli(settings, "contracts", "apply", *(str(t.write()) for t in terms))
    if code != 0:
        raise RuntimeError(f"contracts apply exited {code}: {out[-2000:]}")


# --- the publisher (a subprocess: this script with --publish-seconds) ------------------------

POOL = 20_000
"""Events drawn before publishing starts, published in turn under fresh ids."""


def population(seed: int, count: int) -> list[Person]:
    """The soak's persons, the same in every process that draws them from ``seed``."""
    return list(people(seed, count))


async def publish_steadily(rate: float, seconds: float, seed: int, persons: int,
                           ) -> tuple[int, float]:
    """Publish ``rate`` events a second for ``seconds`` about the soak's persons, each tenth of
    a second the events due by then; how many were published (all acknowledged), and in how
    many seconds: a machine too busy to keep the pace takes longer, and the rate achieved is
    what the soak reports."""
    published, total = 0, int(rate * seconds)
    # Drawn once and reused under fresh ids: drawing costs about half of what publishing one
    # does, CPU the soak's processes would otherwise lose to the load's making.
    pool = list(generate(DATASET, min(total, POOL), seed * 1_000_003, provider=PROVIDER,
                         subjects=population(seed, persons)))
    drawn = itertools.cycle(pool)
    async with Publisher(Settings()) as publisher:
        began = time.monotonic()
        while published < total:
            due = min(total, int(rate * (time.monotonic() - began))) - published
            if due > 0:
                events = [{**next(drawn), "id": str(uuid.uuid4())} for _ in range(due)]
                await asyncio.gather(*[await publisher.send(publisher.prepare(e))
                                       for e in events])
                published += due
            await asyncio.sleep(0.1)
        return published, time.monotonic() - began


def start_publisher(settings: Settings, arguments: argparse.Namespace,
                    out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as stdout:
        return subprocess.Popen(
            [sys.executable, __file__, "--publish-seconds", str(arguments.minutes * 60),
             "--rate", str(arguments.rate), "--seed", str(arguments.seed),
             "--persons", str(arguments.persons)],
            env=rt.env_of(settings), stdout=stdout, stderr=subprocess.STDOUT)


# --- memory -----------------------------------------------------------------------------------


def memory(pid: int) -> tuple[float, float] | None:
    """``VmRSS`` and ``VmHWM`` of a process in MiB; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    found = {name: int(value.split()[0]) / 1024 for name, _, value in
             (line.partition(":") for line in status.splitlines())
             if name in ("VmRSS", "VmHWM")}
    return (found["VmRSS"], found["VmHWM"]) if len(found) == 2 else None


@dataclass
class Series:
    """One process's resident set over the soak: (seconds since the start, MiB)."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    high_water: float = 0.0
    started: float = 0.0
    """When the load began: the first sample :data:`SETTLED_SECONDS` later is the start."""

    def add(self, at: float, rss: float, hwm: float) -> None:
        self.samples.append((at, rss))
        self.high_water = max(self.high_water, hwm)

    @property
    def start(self) -> float:
        """The RSS once the process has started and met the load (an interpreter's first
        samples are its start-up)."""
        settled = [rss for at, rss in self.samples if at >= self.started + SETTLED_SECONDS]
        return settled[0] if settled else self.samples[-1][1]

    def per_minute(self) -> list[float]:
        """The last sample of each minute (the final one for the last, partial minute)."""
        minutes: dict[int, float] = {}
        for at, rss in self.samples:
            minutes[int(at // 60)] = rss
        return [minutes[m] for m in sorted(minutes)]


class Sampler:
    """Samples the RSS of named processes every few seconds, from the soak's start."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.pids: dict[str, int] = {}
        self.series: dict[str, Series] = {}
        self.began = time.monotonic()

    def load_began(self) -> None:
        """Mark the load's start in every series (see :attr:`Series.start`)."""
        for series in self.series.values():
            series.started = time.monotonic() - self.began

    def watch(self, label: str, pid: int | None) -> None:
        if pid is not None:
            self.pids[label] = pid
            self.series.setdefault(label, Series())

    def sample(self) -> None:
        at = time.monotonic() - self.began
        for label, pid in self.pids.items():
            found = memory(pid)
            if found is not None:
                self.series[label].add(at, *found)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
        self.sample()  # the final values


# --- consent churn and contract changes ----------------------------------------------------


@dataclass
class Churn:
    """Who consents to ``soak-opt-in`` now; each round, some withdraw and as many others grant."""

    contract: Contract
    subjects: list[Subject]
    consenting: set[int]
    rng: random.Random
    rounds: int = 0
    withdrawn: int = 0
    granted: int = 0

    async def round(self, settings: Settings, size: int) -> None:
        others = sorted(set(range(len(self.subjects))) - self.consenting)
        leaving = self.rng.sample(sorted(self.consenting), min(size, len(self.consenting)))
        joining = self.rng.sample(others, min(size, len(others)))
        await set_consent(settings, self.contract, [self.subjects[i] for i in leaving],
                          "withdrawn", "online_portal")
        await set_consent(settings, self.contract, [self.subjects[i] for i in joining],
                          "granted", "online_portal")
        self.consenting = (self.consenting - set(leaving)) | set(joining)
        self.rounds += 1
        self.withdrawn += len(leaving)
        self.granted += len(joining)


async def churn_until(stop: asyncio.Event, churn: Churn, settings: Settings, size: int,
                      every: float) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if not stop.is_set():
            await churn.round(settings, size)


async def change_until(stop: asyncio.Event, terms: Terms, settings: Settings,
                       failures: list[str]) -> int:
    """Apply a new version of ``terms`` every minute until ``stop``; how many were applied
    (a refused one is noted in ``failures``)."""
    applied = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHANGE_SECONDS)
        if stop.is_set():
            break
        terms.next_version()
        code, out = await run_cli(settings, "contracts", "apply", str(terms.write()))
        if code == 0:
            applied += 1
            ds.note(f"{terms.id} version {terms.version} applied ({', '.join(terms.fields)})")
        else:
            failures.append(f"version {terms.version}: exit {code}: {out[-500:]}")
    return applied


# --- consumers and delivery topics ------------------------------------------------------------


def start_consumer(settings: Settings, contract: str, seconds: float,
                   out: Path) -> subprocess.Popen[bytes]:
    """``circulation consume CONTRACT`` for the whole soak, each line written as it comes."""
    with out.open("wb") as stdout:
        return subprocess.Popen(
            [*rt.CLI, "consume", contract, "--from-beginning", "--timeout", str(seconds)],
            env={**rt.env_of(settings), "PYTHONUNBUFFERED": "1"}, stdout=stdout,
            stderr=(out.parent / f"{out.stem}.err").open("wb"))


@dataclass
class Received:
    """The ids a consumer printed, with how many times each, read as its output grows."""

    out: Path
    ids: Counter[str] = field(default_factory=Counter)
    position: int = 0

    def update(self) -> Counter[str]:
        """Read the lines printed since the last call (complete ones only)."""
        with self.out.open("rb") as lines:
            lines.seek(self.position)
            for line in lines:
                if not line.endswith(b"\n"):
                    break
                self.position += len(line)
                with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                    self.ids[str(json.loads(line)["id"])] += 1
        return self.ids


@dataclass
class Topic:
    """What a delivery topic holds: deliveries and erasure notices, by id and count."""

    deliveries: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)

    def count(self, record: Record) -> bool:
        """Count one record of the topic and keep none: a long soak's topics hold millions."""
        kind = self.notices if header(record, "ce_type") == NOTICE else self.deliveries
        kind[str(header(record, "ce_id"))] += 1
        return False

    @property
    def ids(self) -> set[str]:
        return set(self.deliveries) | set(self.notices)

    @property
    def duplicates(self) -> int:
        return duplicates(self.deliveries) + duplicates(self.notices)


def duplicates(ids: Counter[str]) -> int:
    return sum(count - 1 for count in ids.values() if count > 1)


async def until_received(consumed: Mapping[str, Received],
                         topics: Mapping[str, Topic]) -> None:
    """Until every consumer printed every id its topic holds, or :data:`RECEIVED_SECONDS`."""
    wanted = {contract: topic.ids for contract, topic in topics.items()}
    deadline = time.monotonic() + RECEIVED_SECONDS
    while time.monotonic() < deadline:
        if all(r.update().keys() >= wanted[c] for c, r in consumed.items()):
            return
        await asyncio.sleep(2)


# --- the soak -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the soak measured."""

    published: int = 0
    publishing_seconds: float = 0.0
    topics: dict[str, Topic] = field(default_factory=dict)
    consumed: dict[str, Counter[str]] = field(default_factory=dict)
    reconcile: dict[str, Any] = field(default_factory=dict)
    reconcile_status: int = -1
    changes: int = 0
    change_failures: list[str] = field(default_factory=list)
    churn: Churn | None = None
    memory: dict[str, Series] = field(default_factory=dict)

    def missed(self, contract: str) -> int:
        """Ids on the contract's topic its consumer never printed."""
        return len(self.topics[contract].ids - set(self.consumed[contract]))

    @property
    def unaccounted(self) -> int:
        """Published events that reconcile did not account for (nor hold in flight)."""
        seen = int(self.reconcile.get("events", 0)) + int(self.reconcile.get("in_flight", 0))
        return max(self.published - seen, 0)

    @property
    def clean(self) -> bool:
        return self.reconcile_status == 0 and bool(self.reconcile.get("clean"))

    @property
    def passed(self) -> bool:
        return (self.clean and not self.unaccounted and not self.change_failures
                and not any(self.missed(c) for c in self.topics))


async def prepare_state(settings: Settings, terms: Sequence[Terms], persons: int,
                        seed: int) -> Churn:
    """Contracts applied; half the persons enrolled in ``soak-enrolled``, half (others)
    consenting to ``soak-opt-in``: the churn that starts from there."""
    await apply(settings, *terms)
    subjects = resolve(settings, [p.nir for p in population(seed, persons)])
    rng = random.Random(seed)
    enrolled = rng.sample(range(persons), persons // 2)
    await set_population(settings, await find_contract(settings, "soak-enrolled"),
                         [subjects[i] for i in enrolled], True)
    consenting = set(rng.sample(range(persons), persons // 2))
    opt_in = await find_contract(settings, "soak-opt-in")
    await set_consent(settings, opt_in, [subjects[i] for i in sorted(consenting)], "granted",
                      "online_portal")
    return Churn(opt_in, subjects, consenting, rng)


async def soak(settings: Settings, stack: LocalStack, run_dir: Path,
               arguments: argparse.Namespace) -> Outcome:
    """Everything from the contracts to reconcile, on a started stack."""
    began = time.monotonic()
    outcome = Outcome()
    (run_dir / "contracts").mkdir()
    terms = [Terms("all", "not_required", "all", run_dir / "contracts"),
             Terms("opt-in", "opt_in", "all", run_dir / "contracts"),
             Terms("enrolled", "not_required", "enrolled", run_dir / "contracts")]
    churn = outcome.churn = await prepare_state(settings, terms, arguments.persons,
                                                arguments.seed)
    ds.note("contracts applied, persons enrolled and consenting")
    sampler = Sampler(arguments.sample_seconds)
    outcome.memory = sampler.series
    sampler.watch(SCRIPT, os.getpid())
    for component in ("kafka", "registry"):
        sampler.watch(f"{component} (JVM)", stack.component_process(component).pid())
    workers = WorkerPool(Services(settings.kafka_bootstrap, settings.schema_registry_url),
                         run_dir / "workers", count=2, environment=rt.worker_env(settings))
    consumers: dict[str, subprocess.Popen[bytes]] = {}
    outs = {t.id: run_dir / f"consume-{t.id}.jsonl" for t in terms}
    sampled = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(sampled))
    try:
        workers.start()
        await workers.wait_ready(settings)
        for number, worker in enumerate(workers.workers, start=1):
            sampler.watch(f"worker {number}", worker.process.pid)
        lasting = arguments.minutes * 60 + CATCH_UP_SECONDS + RECEIVED_SECONDS + 300
        for t in terms:
            consumers[t.id] = start_consumer(settings, t.id, lasting, outs[t.id])
            sampler.watch(f"consume {t.id}", consumers[t.id].pid)
        ds.note(f"two workers ready; publishing {arguments.rate:g} events/s for "
             f"{arguments.minutes:g} min")
        await run_load(settings, arguments, run_dir, sampler, churn, terms[0], outcome)
        ds.note(f"{outcome.published:,} events published; waiting for routing to catch up")
        await workers.wait_caught_up(settings, CATCH_UP_SECONDS)
        await read_deliveries(settings, terms, outs, outcome)
        sampled.set()
        await sampling  # its last sample: the final values, while everything still runs
        ds.note("routed and received; reconciling")
        outcome.reconcile_status, outcome.reconcile = await reconcile(
            settings, int(time.monotonic() - began) + WINDOW_MARGIN_SECONDS)
    finally:
        sampled.set()
        await sampling
        for consumer in consumers.values():
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGTERM)
                consumer.wait(30)
        workers.stop()
    return outcome


async def run_load(settings: Settings, arguments: argparse.Namespace, run_dir: Path,
                   sampler: Sampler, churn: Churn, changed: Terms, outcome: Outcome) -> None:
    """The publisher's minutes, with the consent churn and the contract changes beside it."""
    stop = asyncio.Event()
    publisher = start_publisher(settings, arguments, run_dir / "publisher.out")
    sampler.watch("publisher", publisher.pid)
    sampler.load_began()
    churning = asyncio.create_task(churn_until(stop, churn, settings, arguments.churn,
                                               arguments.churn_seconds))
    changing = asyncio.create_task(change_until(stop, changed, settings,
                                                outcome.change_failures))
    try:
        status = await asyncio.to_thread(publisher.wait)
    finally:
        stop.set()
        outcome.changes = await changing
        await churning
    out = (run_dir / "publisher.out").read_text(encoding="utf-8", errors="replace")
    if status != 0:
        raise RuntimeError(f"the publisher exited {status}: {out[-2000:]}")
    told = json.loads(out.strip().splitlines()[-1])
    outcome.published, outcome.publishing_seconds = int(told["published"]), told["seconds"]


async def read_deliveries(settings: Settings, terms: Sequence[Terms], outs: Mapping[str, Path],
                          outcome: Outcome) -> None:
    """Every delivery topic read whole; then what each consumer received, once it has every
    id of its topic (or after :data:`RECEIVED_SECONDS`)."""
    for t in terms:
        topic = outcome.topics[t.id] = Topic()
        delivery_topic = (await find_contract(settings, t.id)).delivery_topic
        await read_all(settings, await beginning(settings, [delivery_topic]), topic.count)
    consumed = {contract: Received(out) for contract, out in outs.items()}
    await until_received(consumed, outcome.topics)
    outcome.consumed = {contract: r.ids for contract, r in consumed.items()}


async def reconcile(settings: Settings, seconds: int) -> tuple[int, dict[str, Any]]:
    """``circulation reconcile --since <seconds>s --json``: its exit status and document."""
    process = await asyncio.create_subprocess_exec(
        *rt.CLI, "reconcile", "--since", f"{seconds}s", "--json", env=rt.env_of(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 900)
    assert process.returncode is not None
    try:
        return process.returncode, json.loads(out)
    except json.JSONDecodeError:
        return process.returncode, {"error": err.decode(errors="replace")[-2000:]}


# --- report -----------------------------------------------------------------------------------


def report(outcome: Outcome, arguments: argparse.Namespace) -> None:
    found = outcome.reconcile
    churn = outcome.churn
    print(f"commit {ds.commit()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {arguments.rate:g} "
          f"events/s asked for {arguments.minutes:g} min ({achieved(outcome)}), "
          f"{arguments.persons} persons, {arguments.partitions} partitions, two workers\n")
    print("| soak | figure |\n|---|---|")
    rows = [
        ("events published / accounted by reconcile (in flight, not judged)",
         f"{outcome.published:,} / {found.get('events', 0):,} ({found.get('in_flight', 0):,})"),
        *((f"deliveries to {c} on its topic / received by its consumer (erasure notices)",
           f"{len(t.deliveries):,} / {len(set(outcome.consumed[c]) & set(t.deliveries)):,} "
           f"({len(t.notices):,})") for c, t in outcome.topics.items()),
        ("outcomes", outcomes(found)),
        ("dead letters", f"{found.get('dead_lettered', 0):,}"),
        ("duplicates on the delivery topics (same id twice)",
         ", ".join(f"{c} {t.duplicates}" for c, t in outcome.topics.items())),
        ("duplicates received by the consumers",
         ", ".join(f"{c} {duplicates(ids)}" for c, ids in outcome.consumed.items())),
        ("duplicate outcomes / deliveries found by reconcile",
         f"{found.get('duplicates', {}).get('outcomes', 0)} / "
         f"{found.get('duplicates', {}).get('deliveries', 0)}"),
        ("missed by a consumer", ", ".join(f"{c} {outcome.missed(c)}" for c in outcome.topics)),
        ("consent churn", f"{churn.rounds} rounds, {churn.withdrawn:,} withdrawals, "
                          f"{churn.granted:,} grants" if churn else "none"),
        ("contract changes applied / refused",
         f"{outcome.changes} / {len(outcome.change_failures)}"),
        ("reconcile", "clean" if outcome.clean else
         f"NOT clean (exit {outcome.reconcile_status}), {len(found.get('gaps', []))} gaps"),
    ]
    for name, figure in rows:
        print(f"| {name} | {figure} |")
    print("\n| process | RSS start (MiB) | peak (VmHWM) | final | per minute |")
    print("|---|---:|---:|---:|---|")
    for label, series in outcome.memory.items():
        if series.samples:
            print(f"| {label} | {series.start:,.0f} | {series.high_water:,.0f} | "
                  f"{series.samples[-1][1]:,.0f} | "
                  f"{' '.join(f'{v:,.0f}' for v in series.per_minute())} |")
    for gap in found.get("gaps", [])[:20]:
        print(f"gap: {json.dumps(gap)}")
    for failure in outcome.change_failures:
        print(f"contract change refused: {failure}")
    print("\nREADME row:\n")
    print(readme_row(outcome, arguments))


def outcomes(found: Mapping[str, Any]) -> str:
    counted = found.get("outcomes", {})
    return ", ".join(f"{'delivered' if v == 'delivered' else 'withheld ' + v} {n:,}"
                     for v, n in sorted(counted.items())) or "none"


def achieved(outcome: Outcome) -> str:
    """The rate the publisher kept, and over how long."""
    seconds = outcome.publishing_seconds
    rate = outcome.published / seconds if seconds else 0.0
    return f"{rate:,.0f} events/s achieved over {seconds / 60:.1f} min"


def readme_row(outcome: Outcome, arguments: argparse.Namespace) -> str:
    memory = "; ".join(f"{label} {s.start:,.0f} / {s.high_water:,.0f} / {s.samples[-1][1]:,.0f}"
                       for label, s in outcome.memory.items() if s.samples and label != SCRIPT)
    topics = outcome.topics.values()
    return (f"| soak, {arguments.minutes:g} min at {arguments.rate:g} events/s asked "
            f"({achieved(outcome)}), two workers, "
            f"3 contracts, consent churn, a contract change a minute | "
            f"{outcome.published:,} events; {outcomes(outcome.reconcile)}; "
            f"{outcome.reconcile.get('dead_lettered', 0)} dead letters; duplicates "
            f"{sum(t.duplicates for t in topics)} on delivery topics, "
            f"{sum(duplicates(c) for c in outcome.consumed.values())} received; RSS MiB "
            f"(start / peak / final): {memory}; reconcile "
            f"{'clean' if outcome.clean else 'NOT clean'} | "
            f"`soak.py --minutes {arguments.minutes:g} --rate {arguments.rate:g}` |")


# --- main -------------------------------------------------------------------------------------


def main(arguments: argparse.Namespace) -> int:
    rt.PRIVATE_STACK = rt.PRIVATE_STACK.model_copy(update=PORTS)
    os.environ["CIRCULATION_TOPIC_PARTITIONS"] = str(arguments.partitions)
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        run_dir = Path(folder)
        settings = rt.private_settings(run_dir / "stack")
        ds.note("starting a fresh private stack")
        stack = rt.fresh_stack(settings, run_dir / "stack")
        try:
            outcome = asyncio.run(soak(settings, stack, run_dir, arguments))
        finally:
            stack.down()
    report(outcome, arguments)
    return 0 if outcome.passed else 1


def publisher_main(arguments: argparse.Namespace) -> int:
    """The publisher's role: publish, then print how many events as one JSON line."""
    published, seconds = asyncio.run(publish_steadily(
        arguments.rate, arguments.publish_seconds, arguments.seed, arguments.persons))
    print(json.dumps({"published": published, "seconds": seconds}), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="events a second")
    parser.add_argument("--persons", type=int, default=600)
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions of every topic the bus creates")
    parser.add_argument("--churn", type=int, default=10,
                        help="persons withdrawing (and as many granting) each churn round")
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--publish-seconds", type=float, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    sys.exit(publisher_main(arguments) if arguments.publish_seconds is not None
             else main(arguments))
