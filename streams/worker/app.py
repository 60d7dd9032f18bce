"""The routing worker: a Faust app whose one agent routes every provider topic.

The agent runs with concurrency 1 (faust-streaming issue 606 loses messages above that); the bus
scales by partitions and by running more worker processes in the same group. It takes events in
batches without acknowledging them (:mod:`streams.worker.batches`), holds a batch that carries a
fence until the state follower has applied what the fence names (:mod:`streams.state.fences`),
routes it in one synchronous pass and hands every delivery, audit record and dead letter to the
producer. It then goes on with the next batch while :mod:`streams.worker.inflight` waits for the
writes and acknowledges the batches, in order, once all their records are written: a crash replays
unacknowledged batches (same event ids, so duplicates are detectable) but never loses one.
"""

from __future__ import annotations

import gc
import os
import ssl
import sys
from collections.abc import Set
from typing import Any, cast

import faust
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faust.types import TP, StreamT

from schemas.catalog import Catalog
from streams.audit.checkpoints import signing_key
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.kafka.topics import TOKENS, catalog_topics
from streams.logs import reclaim_standard_logging
from streams.privacy.pseudonyms import Pseudonymiser
from streams.privacy.redaction import redacted_error
from streams.privacy.secret import pseudonym_secret
from streams.settings import Settings
from streams.worker.batches import take_batches
from streams.worker.intake import RoutingApp
from streams.worker.service import RoutingService

log = structlog.get_logger(__name__)

APP_ID = "circulation-router"
EXIT_ROUTING_FAILED = 70
"""Exit status (EX_SOFTWARE) of a worker that stopped because a batch could not be routed."""
BATCH_MAX = 1000
BATCH_WITHIN = 0.01
"""Seconds a batch stays open after its first event arrived (:mod:`streams.worker.batches`). Longer
batches cost less per event (fewer produce requests, one log line); shorter ones wait less. A
backlog is taken in whole whatever the window, so the window no longer guards against one; the
shorter window gave the lower tail latency (``tests/benchmarks/HISTORY.md``)."""


async def prepare_topics(settings: Settings, catalog: Catalog) -> None:
    """Create whichever bus or provider topic is missing before the worker subscribes.

    Their configuration is the operator's (``circulation schemas register``): on a secured
    cluster ``bus-worker`` may not change it, nor create a topic, so there every topic must
    exist already and the worker only checks. The gateway's ``bus.tokens`` is left out: the
    worker never reads it, and may not so much as describe it."""
    used = [spec for spec in catalog_topics(settings, catalog) if spec.name != TOKENS]
    await ensure_topics(settings, used, align=False)


def broker_credentials(settings: Settings) -> Any:
    """Faust's credentials for the same security settings the bus's other clients use."""
    options = clients.connection_options(settings)
    context = cast(ssl.SSLContext | None, options.get("ssl_context"))
    if settings.sasl_mechanism:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        return faust.SASLCredentials(username=settings.sasl_username, password=password,
                                     ssl_context=context, mechanism=settings.sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _log_failure(exc: BaseException) -> None:
    log.error("a routed batch could not be written; later batches stay unacknowledged",
              error=redacted_error(exc))


def exit_on_routing_failure(exc: BaseException) -> None:
    """Stop the process when the agent fails, so that its supervisor restarts it.

    Faust would otherwise keep the process up with a dead agent: the failed batch is never
    acknowledged, nothing more is routed, and the shutdown itself hangs waiting for that batch.
    Exiting at once loses nothing: the batch's offsets were not committed, so it is replayed, with
    the same event ids, by whichever worker takes the partitions.
    """
    log.critical("routing failed: the worker exits; the unacknowledged batch will be replayed",
                 error=redacted_error(exc), exit_status=EXIT_ROUTING_FAILED)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_ROUTING_FAILED)


class WorkerProcess(faust.Worker):
    """Faust's worker process, leaving the bus's logging as :mod:`streams.logs` set it up.

    Faust's worker replaces the root logger's handler with a plain-text one, redirects stdout
    and stderr into logging (every JSON line of ours came out behind a text prefix), and sets
    the root logger to DEBUG for its terminal spinner. That last one made aiokafka build and
    hand out a log record for each of its debug calls, a visible share of a busy worker's
    time on the main thread and on the consumer thread.
    """

    def __init__(self, app: faust.App, loglevel: str) -> None:
        super().__init__(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)

    def on_setup_root_logger(self, logger: Any, level: int) -> None:  # noqa: ARG002
        self.spinner = None
        reclaim_standard_logging(level)

    async def on_startup_finished(self) -> None:
        """Once started, take everything alive out of the garbage collector's sight.

        A started worker holds a great many long-lived objects (modules, Faust's services, the
        catalog and its parsed schemas) that every full collection traversed: a pause every
        few seconds under load, in which nothing is routed, and which showed in the latency's
        99th percentile. Frozen, they are never collected (they live
        as long as the process anyway), and a full collection only walks what routing
        allocated since.
        """
        await super().on_startup_finished()
        gc.collect()
        gc.freeze()


def create_app(settings: Settings, catalog: Catalog | None = None,
               exit_on_failure: bool = False,
               pseudonymiser: Pseudonymiser | None = None,
               signer: Ed25519PrivateKey | None = None) -> faust.App:
    """The Faust app of a routing worker (web server off: it would expose table contents).

    ``exit_on_failure`` is for the ``circulation worker`` process; tests that drive the agent in
    process keep Faust's own handling. The worker holds the pseudonym secret and never the
    subject secret: events reach it with their subject reference already made. Without
    ``pseudonymiser`` it reads that secret here, without ``signer`` the key it signs audit
    checkpoints with (:class:`~streams.privacy.secret.SecretRefused`).
    """
    catalog = catalog or Catalog.load()
    pseudonymiser = pseudonymiser or Pseudonymiser(pseudonym_secret(settings))
    signer = signer or signing_key(settings)
    app = RoutingApp(
        APP_ID,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        web_enabled=False,
        store="memory://",
        topic_disable_leader=True,
        producer_acks=-1,
        producer_linger_ms=2,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
        broker_max_poll_records=2000,
    )
    service = RoutingService(app, settings, catalog,
                             exit_on_routing_failure if exit_on_failure else _log_failure,
                             pseudonymiser, signer)
    source = app.topic(*catalog.provider_topics(), key_serializer="raw", value_serializer="raw")

    @app.agent(source, concurrency=1)
    async def route(stream: StreamT[Any]) -> None:
        service.acknowledge = stream.ack
        async for events in take_batches(stream, BATCH_MAX, BATCH_WITHIN):
            try:
                await service.route_batch(events)
            except Exception as exc:
                if exit_on_failure:
                    exit_on_routing_failure(exc)
                raise

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(_: Any, assigned: Set[TP], *__: Any, signal: Any,  # noqa: ARG001
                        **___: Any) -> None:
        service.on_assigned(assigned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(_: Any, revoked: Set[TP], *__: Any, signal: Any,  # noqa: ARG001
                       **___: Any) -> None:
        service.on_revoked(revoked)
        await service.hand_over_state_audit(revoked)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _stop(_: Any, *__: Any, signal: Any, **___: Any) -> None:  # noqa: ARG001
        await service.stop()

    return app
