"""``consume`` against a cluster it cannot reach: one clear error line, no traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streams.cli import app


def test_an_unreachable_cluster_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCULATION_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("CIRCULATION_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1")
    result = CliRunner().invoke(app, ["consume", "lyon-cantine", "--timeout", "1"])
    assert result.exit_code == 1
    assert "nothing more could be read" in result.output
    assert "Unable to bootstrap" in result.output
    assert "Traceback" not in result.output
