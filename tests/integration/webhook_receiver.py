"""A subscriber's webhook endpoint for the tests: a real HTTP server on 127.0.0.1, in a thread,
that verifies every call with the ``standardwebhooks`` verifier and answers from a script
(fail, throttle, time out, then accept), recording what it accepted and in which order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one call: a status, headers, and a delay before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


ACCEPT = Answer()
Script = Callable[[int, dict[str, Any]], Answer]
"""(number of the call, from 0; the event it carries) → the answer."""


@dataclass
class Calls:
    """What the receiver saw: every call, the deliveries it accepted, verification failures."""

    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(webhook-id, event) of every verified call, in arrival order."""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    """The events it answered 2xx to, in order."""
    unverified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Receiver:
    """Serves ``script`` on 127.0.0.1 (a free port) until closed; ``url`` is its endpoint."""

    def __init__(self, secret: str, script: Script) -> None:
        self.calls = Calls()
        hook, calls = Webhook(secret), self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    event = hook.verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with calls.lock:
                        calls.unverified += 1
                    self._answer(Answer(400))
                    return
                with calls.lock:
                    number = len(calls.seen)
                    calls.seen.append((self.headers["webhook-id"], event))
                answer = script(number, event)
                time.sleep(answer.delay)
                if 200 <= answer.status < 300:
                    with calls.lock:
                        calls.accepted.append(event)
                self._answer(answer)

            def _answer(self, answer: Answer) -> None:
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sink gave up waiting: a timeout, as scripted

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads what it needs from the calls."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/circulation"

    def accepted_ids(self) -> list[str]:
        with self.calls.lock:
            return [str(event["id"]) for event in self.calls.accepted]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def as_json(event: dict[str, Any]) -> str:
    """An event as compared between calls (key order aside)."""
    return json.dumps(event, sort_keys=True)
