"""``circulation audit verify``: prove the audit chains are intact."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from schemas.catalog import Catalog
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from streams.audit.chain import ChainBreak, verify_chain
from streams.cli.console import console, errors, settings
from streams.kafka import clients
from streams.kafka.topics import AUDIT, topic_partitions
from streams.settings import Settings

app = typer.Typer(help="The audit trail of every routing decision.", no_args_is_help=True)


async def _read_chains(config: Settings) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """Every audit record, per partition, in offset order, up to the end offsets seen now."""
    serde = AvroSerde(SchemaRegistry(config.schema_registry_url))
    reader = Catalog.load().bus_record("audit").latest.parsed
    partitions = await topic_partitions(config, [AUDIT])
    consumer = clients.consumer(config, enable_auto_commit=False)
    await consumer.start()
    chains: dict[int, list[tuple[int, dict[str, Any]]]] = {tp.partition: [] for tp in partitions}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=1000,
                                                       max_records=50_000)).items():
                chains[tp.partition] += [(r.offset, serde.decode(r.value, reader)[1])
                                         for r in records]
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return chains


@app.command()
def verify() -> None:
    """Recompute every hash of every chain; exit 1 on any changed, removed or reordered record."""
    chains = asyncio.run(_read_chains(settings()))
    breaks: list[ChainBreak] = []
    for partition, records in sorted(chains.items()):
        breaks += verify_chain(partition, records)
    for problem in breaks[:50]:
        errors.print(f"[red]broken:[/] {problem}", highlight=False, soft_wrap=True)
    total = sum(len(r) for r in chains.values())
    if breaks:
        errors.print(f"{len(breaks)} break(s) in {total} audit records")
        raise typer.Exit(1)
    console.print(f"[green]intact[/]: {total} audit records in {len(chains)} chains")
