"""The volume of hostile inputs a run tries, as the README states it: the quotas add up to the
figure, each suite asserts its own, and the README gives that figure."""

from __future__ import annotations

import re
from pathlib import Path

from tests import hostile_inputs

TESTS = Path(__file__).resolve().parents[1]
README = TESTS.parent / "README.md"


def test_the_unit_suites_alone_try_the_readme_s_figure() -> None:
    unit = sum(count for suite, count in hostile_inputs.QUOTAS.items()
               if suite not in hostile_inputs.ON_THE_BROKER)
    assert unit >= hostile_inputs.MINIMUM >= 10_000


def test_every_quota_is_asserted_by_its_suite() -> None:
    """A quota whose suite is gone would count inputs no one tries."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in TESTS.rglob("test_*.py"))
    for suite in hostile_inputs.QUOTAS:
        assert f'hostile_inputs.at_least("{suite}")' in sources, suite


def test_the_readme_states_the_figure() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    stated = re.search(r"at least ([0-9,]+) generated hostile inputs", text)
    assert stated, "the README no longer states how many hostile inputs a run tries"
    assert int(stated.group(1).replace(",", "")) == hostile_inputs.MINIMUM
    on_the_broker = sum(hostile_inputs.QUOTAS[s] for s in hostile_inputs.ON_THE_BROKER)
    assert f"and {on_the_broker:,} more on it" in text
