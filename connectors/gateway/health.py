"""``/healthz`` and ``/readyz``: for the orchestrator's liveness and readiness probes.

Liveness says only that the process answers, so that a Kafka outage does not get every
replica restarted at once; readiness asks Kafka and the registry, each bounded in time, so
that a replica that cannot publish is taken out of the load balancer until it can. The
journal's view is not asked: a view that stops following takes the journal page out of service
(it answers ``503``), not the events and portals of every replica at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from pydantic import BaseModel

from connectors.gateway.problems import PROBLEM_RESPONSES, FieldProblem, Problem

READY_TIMEOUT_S = 3.0
"""How long one dependency may take to answer a readiness probe (Kubernetes' own default
probe timeout is one second; the probe's timeoutSeconds should exceed this)."""

router = APIRouter(tags=["health"])


class Status(BaseModel):
    status: str


@router.get("/healthz", summary="The process is up")
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", summary="Kafka and the schema registry answer",
            responses={503: PROBLEM_RESPONSES[503]})
async def readyz(request: Request) -> Status:
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "kafka": request.app.state.tokens.reach_kafka,
        "schema_registry": lambda: asyncio.to_thread(request.app.state.registry.subjects),
    }
    down = [FieldProblem(field=name, reason=reason)
            for name, check in checks.items()
            if (reason := await _failure(check)) is not None]
    if down:
        raise Problem(503, "not ready: " + ", ".join(p.field for p in down), down)
    return Status(status="ready")


async def _failure(check: Callable[[], Awaitable[object]]) -> str | None:
    """Why ``check`` failed (the error's type, or a timeout), None when it answered."""
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure to answer is "not ready", whatever its kind
        return f"unreachable ({type(exc).__name__})"
    return None
