"""schemathesis against the committed OpenAPI document, on a real gateway and the real stack.

The cases are generated from ``docs/openapi.json`` (the file, not what the code would serve:
the document providers read is what is held to account) and sent with a real provider's token
to ``circulation api`` on the session's broker and registry. Every answer must be no ``5xx``,
a status the document declares for the operation, of a declared content type, and with a body
that fits the declared schema. The number of examples is bounded so the suite stays quick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streams.security.principals import Principal
from streams.security.tokens import issue_token
from tests.conftest import Services
from tests.integration.gateway_process import gateway_environment, running_gateway

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi.json"
PROVIDER = "provider.dgfip"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def token(services: Services) -> str:
    return asyncio.run(issue_token(services.settings(), Principal.parse(PROVIDER)))


@pytest.fixture(scope="module")
def gateway(services: Services, token: str) -> Iterator[str]:
    with running_gateway(gateway_environment(services)) as url:
        yield url


document = schemathesis.openapi.from_path(COMMITTED)


@document.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_gateway_answers_as_its_document_says(
        case: schemathesis.Case, gateway: str, token: str) -> None:
    case.call_and_validate(base_url=gateway, headers={"Authorization": f"Bearer {token}"},
                           checks=CHECKS)
