"""Standard Webhooks headers: verifiable by the library's own verifier, with either secret of a
rotation; a bad secret variable is named, never quoted."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from connectors.webhook.signing import SecretError, Signer

OLD = "whsec_" + base64.b64encode(b"old-secret-of-thirty-two-bytes!!").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-of-thirty-two-bytes!!").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-s-secret-32-bytes!!").decode()
BODY = '{"specversion":"1.0","id":"dlv-1"}'


def _headers(secrets: str) -> dict[str, str]:
    return Signer(secrets, "LYON_WEBHOOK_SECRET").headers("dlv-1", datetime.now(UTC), BODY)


def test_the_receiver_verifies_a_call_with_its_secret() -> None:
    headers = _headers(OLD)
    assert headers["webhook-id"] == "dlv-1"
    assert Webhook(OLD).verify(BODY, headers) == {"specversion": "1.0", "id": "dlv-1"}


def test_a_call_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, _headers(OLD))


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(BODY.replace("dlv-1", "dlv-2"), _headers(OLD))


def test_during_a_rotation_both_secrets_verify() -> None:
    headers = _headers(f"{OLD} {NEW}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(OLD).verify(BODY, headers)
    Webhook(NEW).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(BODY, headers)


def test_the_timestamp_is_the_call_s_own() -> None:
    at = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    headers = Signer(OLD, "V").headers("dlv-1", at, BODY)
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"] == Webhook(OLD).sign("dlv-1", at, BODY)


@pytest.mark.parametrize("secrets", ["", "   ", f"{OLD} {NEW} {OTHER}", "whsec_not*base64!"])
def test_a_bad_secret_variable_is_named_never_quoted(secrets: str) -> None:
    with pytest.raises(SecretError) as refused:
        Signer(secrets, "LYON_WEBHOOK_SECRET")
    assert str(refused.value).startswith("LYON_WEBHOOK_SECRET: ")
    for word in secrets.split():
        assert word not in str(refused.value)
