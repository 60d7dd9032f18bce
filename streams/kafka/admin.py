"""Creating, aligning and describing the bus's topics, idempotently.

Production clusters usually refuse automatic topic creation, so the bus creates what it needs
explicitly, with the partition count and retention it means to have, and aligns the configuration
of topics that already exist (a contract's retention may change).

Aligning sets the keys the bus owns (a :class:`TopicSpec`'s ``config``) and only those, with
Kafka's incremental alter-configs: the older AlterConfigs request replaces a topic's whole
configuration, so a key an operator set by hand (``max.message.bytes``, say) would silently
return to the broker's default on every ``contracts apply``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from confluent_kafka import KafkaException, TopicCollection
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ResourceType
from confluent_kafka.admin import ConfigResource as ClusterConfigResource

from streams.kafka import clients
from streams.kafka.topics import TopicSpec
from streams.settings import Settings


class TopicError(RuntimeError):
    """The cluster refused to create or configure a topic; the message names it and why."""


async def existing_topics(settings: Settings, prefix: str) -> list[str]:
    """The cluster's topics whose name starts with ``prefix``, sorted."""
    async with clients.admin(settings) as admin:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))


async def topic_partitions(settings: Settings, topics: list[str],
                           missing_ok: bool = False) -> list[TopicPartition]:
    """Every partition of ``topics``, asked of the admin client (a consumer's metadata may not
    know a topic it has not subscribed to); :class:`TopicError` when one does not exist, unless
    ``missing_ok`` (a missing topic then has no partitions)."""
    async with clients.admin(settings) as admin:
        described = await admin.describe_topics(topics)
    partitions = []
    for topic in described:
        if missing_ok and topic["error_code"] == UnknownTopicOrPartitionError.errno:
            continue
        if topic["error_code"] != 0:
            raise TopicError(f"cannot describe topic {topic['topic']}: error "
                             f"{topic['error_code']}")
        partitions += [TopicPartition(topic["topic"], p["partition"])
                       for p in topic["partitions"]]
    return sorted(partitions)


async def end_offsets(settings: Settings, topics: list[str],
                      missing_ok: bool = False) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics`` now: where the next record will go
    (none for a missing topic, with ``missing_ok``)."""
    partitions = await topic_partitions(settings, topics, missing_ok)
    if not partitions:
        return {}
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def ensure_topics(settings: Settings, specs: list[TopicSpec],
                        align: bool = True) -> list[str]:
    """Create the missing topics and, with ``align``, align the configuration of the others;
    return those created."""
    if not specs:
        return []
    async with clients.admin(settings) as admin:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics([
                NewTopic(t.name, t.partitions, t.replication, topic_configs=t.config)
                for t in missing
            ])
            for name, code, message in (e[:3] for e in response.topic_errors):
                if code == 0:
                    created.append(name)
                elif code != TopicAlreadyExistsError.errno:
                    raise TopicError(f"could not create topic {name}: error {code} {message}")
        await _wait_for_leaders(admin, created)
        to_align = [s for s in specs if s.name not in created and s.config and align]
        if to_align:
            differing = _differing(to_align, await described_configs(
                admin, [s.name for s in to_align]))
            await asyncio.to_thread(_set_configs, settings, differing)
            await _wait_for_configs(admin, to_align)
        return created


def _differing(specs: list[TopicSpec],
               described: dict[str, dict[str, str | None]]) -> dict[str, dict[str, str]]:
    """Of each topic's owned keys, those the broker describes otherwise; a topic whose keys
    all hold is left out, so that aligning an aligned bus writes nothing."""
    differing = {s.name: {k: v for k, v in s.config.items()
                          if described.get(s.name, {}).get(k) != v} for s in specs}
    return {name: keys for name, keys in differing.items() if keys}


def _set_configs(settings: Settings, configs: dict[str, dict[str, str]]) -> None:
    """SET each of these keys on its topic, leaving every other key as it is."""
    if not configs:
        return
    admin = clients.cluster_admin(settings)
    resources = [ClusterConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        for key, value in sorted(keys.items())]) for name, keys in sorted(configs.items())]
    futures = admin.incremental_alter_configs(resources, request_timeout=30)
    for resource, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            raise TopicError(f"could not configure topic {resource.name}: "
                             f"{clients.refusal(exc)}") from None


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Return once every partition of ``names`` has a leader, so the first write succeeds."""

    async def leaderless(waiting: list[str]) -> list[str]:
        described = await admin.describe_topics(waiting)
        return [t["topic"] for t in described
                if t["error_code"] != 0 or not t["partitions"]
                or any(p["leader"] < 0 for p in t["partitions"])]

    await _until_none_left(names, leaderless, "topics without a partition leader")


async def _wait_for_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Return once the broker describes every topic of ``specs`` with its configuration. The
    controller acknowledges a change before the broker has applied it from the metadata log: a
    contract's shorter retention must be in force when ``contracts apply`` returns."""
    wanted = {s.name: s.config for s in specs}

    async def unapplied(waiting: list[str]) -> list[str]:
        described = await described_configs(admin, waiting)
        return [name for name in waiting
                if any(described.get(name, {}).get(k) != v for k, v in wanted[name].items())]

    await _until_none_left(list(wanted), unapplied, "configuration not in force")


async def described_configs(admin: AIOKafkaAdminClient,
                            names: list[str]) -> dict[str, dict[str, str | None]]:
    """The configuration the broker describes for each topic of ``names`` (a topic it could
    not describe is left out)."""
    answers = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    return {name: {entry[0]: entry[1] for entry in entries}
            for answer in answers
            for code, _, _, name, entries in answer.resources if code == 0}


async def _until_none_left(names: list[str],
                           pending: Callable[[list[str]], Awaitable[list[str]]],
                           what: str, timeout: float = 30.0) -> None:
    """Ask ``pending`` which of ``names`` the broker does not show as wanted yet, until none;
    :class:`TopicError` naming ``what`` and those left after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while names:
        names = await pending(names)
        if names and asyncio.get_running_loop().time() > deadline:
            raise TopicError(f"{what} after {timeout:.0f}s: {', '.join(names)}")
        if names:
            await asyncio.sleep(0.1)


async def topic_layout(settings: Settings, topics: list[str]) -> dict[str, tuple[str, int]]:
    """Each topic's id and partition count. The id tells a topic from one deleted and created
    again under the same name (a store of what the first held must not be read on the second);
    only the cluster admin client asks for it."""
    return await asyncio.to_thread(_topic_layout, settings, topics)


def _topic_layout(settings: Settings, topics: list[str]) -> dict[str, tuple[str, int]]:
    admin = clients.cluster_admin(settings)
    try:
        futures = admin.describe_topics(TopicCollection(topics), request_timeout=30)
        described = {name: future.result() for name, future in futures.items()}
    except KafkaException as exc:
        raise TopicError(f"cannot describe topics {', '.join(topics)}: "
                         f"{clients.refusal(exc)}") from None
    return {name: (str(d.topic_id), len(d.partitions)) for name, d in described.items()}
