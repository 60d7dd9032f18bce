"""The gateway's refusals are problem documents that never repeat what the caller sent."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from connectors.gateway import problems
from connectors.gateway.problems import PROBLEM_JSON, Problem

NIR = "269054958815780"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: int


def _app() -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.post("/things")
    async def things(body: _Body) -> dict[str, int]:
        return {"amount": body.amount}

    @app.get("/refused")
    async def refused() -> None:
        raise Problem(403, "not yours")

    @app.get("/crash/{anything}")
    async def crash(anything: str) -> None:
        raise RuntimeError(anything)

    return app


def test_a_body_failing_its_schema_is_a_422_problem_naming_the_field_not_the_value() -> None:
    answer = TestClient(_app()).post("/things", json={"amount": NIR + "x"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    document = answer.json()
    assert document["status"] == 422
    assert document["title"].startswith("Unprocessable")
    assert [e["field"] for e in document["errors"]] == ["body.amount"]
    assert NIR not in answer.text


def test_an_unknown_key_is_refused_without_its_name() -> None:
    answer = TestClient(_app()).post("/things", json={"amount": 1, NIR: 1})
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "body", "reason": "an unknown attribute"}]
    assert NIR not in answer.text


def test_a_body_that_is_not_json_is_a_problem_too() -> None:
    answer = TestClient(_app()).post("/things", content=b"{" + NIR.encode(),
                                     headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert NIR not in answer.text


def test_a_raised_problem_keeps_its_status_and_detail() -> None:
    answer = TestClient(_app()).get("/refused")
    assert answer.status_code == 403
    assert answer.json() == {"type": "about:blank", "title": "Forbidden", "status": 403,
                             "detail": "not yours", "errors": []}


def test_an_unknown_route_is_a_problem() -> None:
    answer = TestClient(_app()).get("/nowhere")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM_JSON


def test_a_crash_is_a_500_problem_that_says_nothing_of_its_cause() -> None:
    answer = TestClient(_app(), raise_server_exceptions=False).get(f"/crash/{NIR}")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert NIR not in answer.text
    assert json.loads(answer.text)["detail"] == "the gateway failed to handle this request"
