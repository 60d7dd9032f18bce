"""Standard Webhooks signatures, with two secrets while one replaces the other.

The subscriber verifies each call with any Standard Webhooks library: ``webhook-id`` is the
delivery's own id (the same on every retry, so the receiver can drop a repeat), ``webhook-
timestamp`` the time of this very call (receivers refuse old ones, so a retry is signed anew),
``webhook-signature`` one ``v1,`` signature per secret. During a rotation the variable named
by the contract's ``secret_env`` holds both secrets, space-separated: a receiver that still
knows only the old one, or already only the new one, finds its own among the signatures.
"""

from __future__ import annotations

import binascii
from datetime import datetime

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

MAX_SECRETS = 2
"""The old and the new one: a rotation never needs more."""


class SecretError(ValueError):
    """The secret variable is missing, empty or malformed; names the variable, never its value."""


class Signer:
    """Signs a call with every secret the variable holds."""

    def __init__(self, secrets: str, variable: str) -> None:
        words = secrets.split()
        if not words:
            raise SecretError(f"{variable}: holds no webhook secret")
        if len(words) > MAX_SECRETS:
            raise SecretError(f"{variable}: holds more than {MAX_SECRETS} secrets (the current "
                              f"one and, while rotating, the next)")
        try:
            self._hooks = [Webhook(word) for word in words]
        except (binascii.Error, ValueError, EmptyWebhookSecretError):
            raise SecretError(f"{variable}: a secret is not base64 (whsec_ followed by "
                              f"base64)") from None

    def headers(self, message_id: str, at: datetime, body: str) -> dict[str, str]:
        """The three Standard Webhooks headers of one call carrying ``body`` at ``at``."""
        signatures = " ".join(hook.sign(message_id, at, body) for hook in self._hooks)
        return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signatures}
