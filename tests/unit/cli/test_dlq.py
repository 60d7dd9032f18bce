"""``circulation dlq``: what it refuses before it reads anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streams.cli import app


@pytest.mark.parametrize("since", ["yesterday", "1841276451089", "3 weeks"])
def test_a_bad_since_exits_2_naming_the_option_not_the_value(since: str) -> None:
    result = CliRunner().invoke(app, ["dlq", "replay", "--since", since])
    assert result.exit_code == 2
    assert "--since: a duration" in result.output
    assert since not in result.output


def test_the_reason_is_defined_in_the_help() -> None:
    result = CliRunner().invoke(app, ["dlq", "--help"])
    assert result.exit_code == 0
    assert "Type:field" in result.output
