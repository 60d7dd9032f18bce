"""The retention report: every topic the bus owns, the configuration it wants against the one
the broker has in force.

What the bus wants comes from the same functions that create and align the topics: the settings
for its own topics and the provider topics of the catalog
(:func:`streams.kafka.topics.catalog_topics`), and each recorded contract for its delivery topic
(:func:`streams.state.contract_store.delivery_topic_spec`), revoked ones included, since their
topics are kept to their retention. Only the keys the bus owns are compared: a key an operator
set by hand for another reason is none of the report's business, as it is none of ``contracts
apply``'s. A retention lengthened or shortened by hand is a difference either way: longer keeps
personal data past its agreed term, shorter deletes what a subscriber was promised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from schemas.catalog import Catalog
from streams.kafka import clients
from streams.kafka.admin import TopicError, described_configs
from streams.kafka.topics import CONTRACTS, TopicSpec, catalog_topics
from streams.settings import Settings
from streams.state.contract_store import ContractStore, delivery_topic_spec

Status = Literal["ok", "differs", "missing"]
"""``ok``: the broker has the wanted value in force; ``differs``: it has another (or none);
``missing``: the topic does not exist."""


@dataclass(frozen=True)
class KeyCheck:
    """One key of one topic: what the bus wants, what the broker has in force."""

    topic: str
    key: str
    wanted: str
    effective: str | None
    status: Status

    def as_json(self) -> dict[str, Any]:
        """``{topic, key, wanted, effective, status}``, the report's JSON line for it."""
        return asdict(self)


async def wanted_topics(settings: Settings, catalog: Catalog,
                        contracts_topic: str = CONTRACTS) -> list[TopicSpec]:
    """Every topic the bus owns, configured as the settings and the recorded contracts say."""
    with clients.schema_registry(settings) as registry:
        recorded = await ContractStore(settings, registry, catalog, contracts_topic).load()
    deliveries = [delivery_topic_spec(settings, c) for c in recorded.values()]
    return [*catalog_topics(settings, catalog),
            *sorted(deliveries, key=lambda s: s.name)]


async def check_topics(settings: Settings, specs: list[TopicSpec]) -> list[KeyCheck]:
    """Each owned key of each topic of ``specs`` against the broker's configuration in force;
    :class:`TopicError` naming a topic that exists but cannot be described (no
    DescribeConfigs grant, say): a report that guessed would pass a bus it did not see."""
    async with clients.admin(settings) as admin:
        existing = set(await admin.list_topics())
        names = [s.name for s in specs if s.name in existing]
        described = await described_configs(admin, names) if names else {}
    undescribed = sorted(set(names) - described.keys())
    if undescribed:
        raise TopicError(f"cannot describe the configuration of {', '.join(undescribed)}")
    return [_check(s, key, value, described.get(s.name))
            for s in specs for key, value in sorted(s.config.items())]


def _check(topic: TopicSpec, key: str, wanted: str,
           described: dict[str, str | None] | None) -> KeyCheck:
    if described is None:
        return KeyCheck(topic.name, key, wanted, None, "missing")
    effective = described.get(key)
    return KeyCheck(topic.name, key, wanted, effective,
                    "ok" if effective == wanted else "differs")


def passes(checks: list[KeyCheck]) -> bool:
    """Whether every key holds: no difference and no missing topic."""
    return all(check.status == "ok" for check in checks)
