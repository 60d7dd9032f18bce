"""``circulation demo`` (what ``make demo`` runs) tells the story of this run, on a stack that
may have been used before.

The first test runs on a private plain stack, twice: each run applies the demo's contracts,
publishes fresh events and shows one delivery as a subscriber's client reads it. That delivery
must be one of the run's own (a reused stack holds earlier ones, perhaps of an older format): a
pseudonymous subject, the subscriber's own event id, days rather than instants. The second runs
the demo where nothing runs, as ``make demo`` on a fresh machine: on the secure stack.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from schemas.nir_detection import contains_nir
from tests.integration.private_stack import run_cli

pytest_plugins = ("tests.integration.private_stack",)

DAY = re.compile(r"\d{4}-\d{2}-\d{2}T00:00:00(\.000)?Z")


def _sample(stdout: str) -> dict[str, Any]:
    """The delivery the demo printed after its summary."""
    shown = stdout[stdout.index("one delivery to"):]
    body = shown[shown.index("{"):shown.rindex("}") + 1]
    sample: dict[str, Any] = json.loads(body)
    return sample


def test_the_demo_shows_a_delivery_of_its_own_run(stack_env: dict[str, str]) -> None:
    assert run_cli(stack_env, "local", "up").returncode == 0
    samples = []
    for _ in range(2):
        shown = run_cli(stack_env, "demo", timeout=600)
        assert shown.returncode == 0, shown.stderr[-3000:]
        assert "what each administration received" in shown.stdout
        assert not contains_nir(shown.stdout + shown.stderr), "the demo printed a NIR"
        samples.append(_sample(shown.stdout))
    first, second = samples
    assert first["id"] != second["id"], "the second run showed the first run's delivery"
    for sample in samples:
        assert sample["subject"].startswith("ps2_")
        assert DAY.fullmatch(sample["time"])
        assert DAY.fullmatch(sample["expiresat"])


def test_the_demo_starts_the_secure_stack_with_a_principal_per_actor(
        stack_env: dict[str, str]) -> None:
    """``make demo`` on a machine where nothing runs: the secure stack, every actor on its own
    credential, the story told, and nothing left running or printed that is a secret."""
    env = stack_env
    shown = run_cli(env, "demo", timeout=900)
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-3000:]
    actors = shown.stdout[shown.stdout.index("each actor connects as itself"):]
    listed = actors[actors.index("(") + 1:actors.index(")")]
    principals = {name.strip() for name in listed.replace("\n", " ").split(",")}
    assert {"bus-admin", "bus-worker", "bus-gateway", "provider.cnaf", "provider.france-travail",
            "subscriber.ville-de-lyon", "subscriber.ugap"} <= principals
    assert "what each administration received" in shown.stdout
    assert _sample(shown.stdout)["subject"].startswith("ps2_")
    kept = Path(env["CIRCULATION_LOCAL_DATA_DIR"]) / "secure" / "passwords"
    for password in (path.read_text().strip() for path in kept.iterdir()):
        assert password not in shown.stdout + shown.stderr
    status = run_cli(env, "local", "status")
    assert status.returncode == 1, "the demo left the stack it started running"
