"""``sink files`` before it touches Kafka: one sink per contract's folder, and a day's file it
cannot read back refuses the start, naming the file and the line, never their content; the
intervals its documentation gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.durable_files import exclusive_lock
from connectors.files.day_files import UnreadableDayFile, contract_folder
from connectors.files.sink import (
    EXPIRY_CHECK_S,
    FLUSH_INTERVAL_S,
    FLUSH_RECORDS,
    LOCK_NAME,
    FileSink,
    SinkLocked,
)
from schemas.catalog import Catalog
from streams.settings import Settings
from streams.state.contract import Contract

CATALOG = Catalog.load()
UNREACHABLE = Settings(kafka_bootstrap="127.0.0.1:1",
                       schema_registry_url="http://127.0.0.1:1/apis/ccompat/v7")
"""Never reached: each refusal comes first."""
CONTRACT = Contract.checked({
    "id": "lyon-cantine-2026", "subscriber": "ville-de-lyon",
    "subscriber_siret": "21690123100011", "purpose": "test", "legal_basis": "test",
    "datasets": {"quotient_familial": ["quotient_familial"]}, "consent": "not_required",
    "population": "all", "retention": "P1D", "valid_from": "2026-01-01"}, CATALOG)


async def _run(root: Path) -> None:
    await FileSink(UNREACHABLE, CONTRACT, root).run(asyncio.Event())


def test_a_second_sink_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    folder = contract_folder(tmp_path, CONTRACT.id)
    folder.mkdir()
    with exclusive_lock(folder / LOCK_NAME, "held by the first sink"), \
            pytest.raises(SinkLocked, match=r"another file sink writes to .*one sink per"):
        asyncio.run(_run(tmp_path))


def test_a_day_file_the_sink_cannot_read_back_refuses_the_start(tmp_path: Path) -> None:
    folder = contract_folder(tmp_path, CONTRACT.id)
    folder.mkdir()
    (folder / "2026-11-01.jsonl").write_text("1 85 05 78 006 084 36\n", encoding="utf-8")
    with pytest.raises(UnreadableDayFile, match=r"2026-11-01\.jsonl line 1: not a JSON") as refused:
        asyncio.run(_run(tmp_path))
    assert "85 05" not in str(refused.value)


def test_the_intervals_the_documentation_gives() -> None:
    """Expired files are looked for every minute; a flush gathers half a second, at most
    5,000 deliveries (README, docs/commands.md)."""
    assert (EXPIRY_CHECK_S, FLUSH_INTERVAL_S, FLUSH_RECORDS) == (60.0, 0.5, 5000)
