"""``sink webhook`` before it touches Kafka: the contract must name a webhook, the secret's
variable must hold one or two secrets (named in the refusal, never shown), and an endpoint on a
private address is refused at once."""

from __future__ import annotations

import asyncio
import base64

import pytest

from connectors.webhook.endpoint import EndpointRefused
from connectors.webhook.signing import SecretError, Signer
from connectors.webhook.sink import run
from schemas.catalog import Catalog
from streams.cli.sink import signer_of
from streams.settings import Settings
from streams.state.contract import Contract

CATALOG = Catalog.load()
SECRET = "whsec_" + base64.b64encode(b"lyon-secret-of-thirty-two-bytes!").decode()
VARIABLE = "TEST_SINK_LYON_SECRET"


def _contract(url: str | None = "https://hooks.lyon.example/in") -> Contract:
    delivery = {"delivery": {"webhook": {"url": url, "secret_env": VARIABLE}}} if url else {}
    return Contract.checked({
        "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
        "subscriber_siret": "21690123100011", "purpose": "test", "legal_basis": "test",
        "datasets": {"quotient_familial": ["quotient_familial"]}, "consent": "not_required",
        "population": "all", "retention": "P1D", "valid_from": "2026-01-01", **delivery,
    }, CATALOG)


def test_the_secret_is_read_from_the_variable_the_contract_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, SECRET)
    assert isinstance(signer_of(_contract()), Signer)


def test_an_unset_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    with pytest.raises(SecretError, match=f"^{VARIABLE}: not set"):
        signer_of(_contract())


def test_a_contract_without_a_webhook_is_refused() -> None:
    with pytest.raises(LookupError, match=r"names no webhook \(delivery.webhook\)"):
        signer_of(_contract(None))


@pytest.mark.parametrize("url", ["https://127.0.0.1:8443/in", "https://[::1]/in",
                                 "https://169.254.169.254/latest/meta-data"])
def test_a_private_endpoint_is_refused_before_anything_is_read(url: str) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1")  # never reached
    with pytest.raises(EndpointRefused, match=r"^delivery\.webhook\.url: "):
        asyncio.run(run(settings, _contract(url), Signer(SECRET, VARIABLE), asyncio.Event()))
