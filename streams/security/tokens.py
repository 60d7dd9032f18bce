"""Bearer tokens for the HTTP gateway: one per party, kept as a hash on ``bus.tokens``.

A provider's batch system or a commune's portal reaches the bus over HTTPS with a bearer token
instead of a Kafka credential. ``circulation credentials create PRINCIPAL --token`` makes one,
prints it once and writes only its SHA-256 to ``bus.tokens``, keyed by principal on a compacted
topic: every gateway replica follows the topic and so accepts a token as soon as it is made, a
new token replaces the principal's last one everywhere, and nothing but ``bus-gateway`` and
``bus-admin`` may read the hashes (:mod:`streams.security.access`).

A fast hash is enough: a token is 256 random bits, never a person's choice, so there is no
dictionary to slow an attacker down, and the gateway checks one on every request. The token
is never logged, never put in an exception, and never kept once printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.catalog import Catalog
from schemas.registration import value_subject
from schemas.serde import AvroSerde
from streams.kafka import clients
from streams.kafka.admin import TopicError, topic_partitions
from streams.kafka.topics import TOKENS
from streams.security.principals import Principal, UnknownPrincipal
from streams.settings import Settings

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "circ_"  # noqa: S105  (a prefix, not a secret)
"""Marks a string as a Circulation token, so that secret scanners can be taught to find one
pasted where it should not be."""
TOKEN_SUBJECT = value_subject(TOKENS)
_FOLLOW_WAIT_MS = 1000


class TokenError(RuntimeError):
    """A token could not be made or the tokens could not be read; never names a token."""


def new_token() -> str:
    """A fresh token: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The hex SHA-256 a token is kept and looked up as."""
    return hashlib.sha256(token.encode()).hexdigest()


def may_hold_token(principal: Principal) -> bool:
    """Only the parties call the gateway; the bus's components connect to Kafka themselves."""
    return principal.kind in ("provider", "subscriber")


async def issue_token(settings: Settings, principal: Principal,
                      catalog: Catalog | None = None) -> str:
    """Make ``principal``'s token, write its hash durably, and return the token (once)."""
    if not may_hold_token(principal):
        raise TokenError(f"{principal.name} is a component of the bus: only providers and "
                         "subscribers hold gateway tokens")
    token = new_token()
    schema = (catalog or Catalog.load()).bus_record("token").latest
    serde = AvroSerde(clients.schema_registry(settings))
    record = {"principal": principal.name, "token_sha256": token_hash(token),
              "issued_at": datetime.now(UTC)}
    value = serde.encode_datum(TOKEN_SUBJECT, schema, record)
    producer = clients.producer(settings)
    try:
        await producer.start()
        await producer.send_and_wait(TOKENS, value, key=principal.name.encode())
    except KafkaError as exc:
        raise TokenError(f"the token's hash could not be written to {TOKENS}: "
                         f"{type(exc).__name__}") from None
    finally:
        await producer.stop()
    return token


class TokenDirectory:
    """The gateway's view of ``bus.tokens``: which principal holds which token hash.

    It reads the whole topic before the gateway answers (:meth:`start`), then follows it, so
    a token made on one side of the cluster opens every replica within a second. Each
    principal's latest record wins, as compaction will keep it.
    """

    def __init__(self, settings: Settings, serde: AvroSerde) -> None:
        self._settings = settings
        self._serde = serde
        self._by_principal: dict[str, str] = {}
        self._by_hash: dict[str, Principal] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: asyncio.Task[None] | None = None

    def principal(self, token: str) -> Principal | None:
        """The principal ``token`` stands for, or None for an unknown or replaced token.
        Compared by digest, in constant time for the candidate found."""
        digest = token_hash(token)
        found = self._by_hash.get(digest)
        if found is None or not hmac.compare_digest(self._by_principal[found.name], digest):
            return None
        return found

    def apply(self, record: Mapping[str, Any]) -> None:
        """One record of the topic: the principal's token is now this hash."""
        try:
            who = Principal.parse(str(record["principal"]))
        except UnknownPrincipal:
            log.warning("token record for no principal skipped", topic=TOKENS)
            return
        if not may_hold_token(who):
            log.warning("token record for a component skipped", principal=who.name)
            return
        replaced = self._by_principal.get(who.name)
        if replaced is not None:
            self._by_hash.pop(replaced, None)
        digest = str(record["token_sha256"])
        self._by_principal[who.name] = digest
        self._by_hash[digest] = who

    async def start(self) -> None:
        """Read every token record there is, then follow the topic in the background."""
        try:
            partitions = await topic_partitions(self._settings, [TOKENS])
        except TopicError as exc:
            raise TokenError(f"{TOKENS} cannot be read ({exc}): the operator creates the "
                             "bus's topics (`circulation local up`, or the cluster's "
                             "deployment) and grants bus-gateway its reading") from None
        consumer = clients.consumer(self._settings, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while await _behind(consumer, ends):
            await self._read(consumer)
        self._follower = asyncio.create_task(self._follow(consumer), name="token-follower")

    async def reach_kafka(self) -> None:
        """Ask the broker for the topic's end offsets: a round trip proving it answers."""
        if self._consumer is None or not self.following:
            raise TokenError("the token directory does not follow bus.tokens")
        await self._consumer.end_offsets(list(self._consumer.assignment()))

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def following(self) -> bool:
        """Whether the directory still follows the topic (what readiness asks)."""
        return self._follower is not None and not self._follower.done()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        """Follow the topic for as long as the gateway runs: a broker or registry that fails
        for a while must not leave a replaced token open here, so any error is logged and the
        read tried again."""
        while True:
            try:
                await self._read(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("token follower", error=type(exc).__name__)
                await asyncio.sleep(1)

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=_FOLLOW_WAIT_MS)
        messages = [m for found in batches.values() for m in found]
        await self._serde.fetch_writers(m.value for m in messages)
        for message in messages:
            if message.value is None:  # a tombstone: the principal's token is withdrawn
                self.withdraw((message.key or b"").decode(errors="replace"))
                continue
            try:
                _, record = self._serde.decode(message.value)
            except Exception as exc:  # one damaged record must not lock every party out
                log.warning("token record unreadable, skipped", error=type(exc).__name__)
                continue
            self.apply(record)

    def withdraw(self, principal: str) -> None:
        """The principal holds no token any more."""
        digest = self._by_principal.pop(principal, None)
        if digest is not None:
            self._by_hash.pop(digest, None)


async def _behind(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether some partition has not been read up to the end it had when reading began."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return True
    return False
