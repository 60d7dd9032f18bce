"""The committed OpenAPI document is the code's: regenerate it with
``circulation api --openapi > docs/openapi.json`` when this fails."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from connectors.gateway.app import openapi_json
from streams.cli import app as cli

COMMITTED = Path(__file__).parents[3] / "docs" / "openapi.json"


def test_the_committed_document_is_the_codes() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_json(), (
        "docs/openapi.json differs from the code: run `circulation api --openapi > "
        "docs/openapi.json`")


def test_circulation_api_openapi_prints_it_and_exits() -> None:
    result = CliRunner().invoke(cli, ["api", "--openapi"])
    assert result.exit_code == 0
    assert result.output == COMMITTED.read_text(encoding="utf-8")


def test_the_events_route_declares_its_bodies_and_answers() -> None:
    post = json.loads(openapi_json())["paths"]["/v1/events"]["post"]
    content = post["requestBody"]["content"]
    assert content["application/cloudevents+json"]["schema"]["required"] == [
        "source", "type", "subject", "data"]
    assert content["application/cloudevents-batch+json"]["schema"]["type"] == "array"
    assert post["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Accepted"}
    for status in ("400", "401", "403", "409", "413", "415", "422", "503"):
        problem = post["responses"][status]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/ProblemDocument"}, status
    assert post["security"] == [{"token": []}]
