"""``circulation api``: where it listens unless told otherwise."""

from __future__ import annotations

from typer.testing import CliRunner

from streams.cli import app as cli


def test_it_listens_on_loopback_port_8000_by_default() -> None:
    result = CliRunner().invoke(cli, ["api", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    host = next(line for line in lines if "--host" in line)
    port = next(line for line in lines if "--port" in line)
    assert "default: 127.0.0.1" in host
    assert "default: 8000" in port
