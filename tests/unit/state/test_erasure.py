"""When a contract ends, and the id of its end's notice."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from schemas.catalog import Catalog
from streams.state.contract import Contract
from streams.state.erasure import contract_end, ending_notice_id

CATALOG = Catalog.load()
LYON = Contract.checked(
    yaml.safe_load((Path(__file__).parents[3] / "deploy/contracts/lyon-cantine-2026.yaml")
                   .read_text(encoding="utf-8")), CATALOG)


def _until(day: date | None) -> Contract:
    return Contract.model_validate({**LYON.model_dump(), "valid_until": day})


def test_a_contract_ends_at_midnight_utc_after_its_last_valid_day() -> None:
    contract = _until(date(2026, 12, 31))
    end = contract_end(contract)
    assert end == datetime(2027, 1, 1, tzinfo=UTC)
    assert contract.is_active(date(2026, 12, 31))
    assert not contract.is_active(date(2027, 1, 1))


def test_a_revoked_contract_ends_when_revoked_and_one_without_end_never() -> None:
    at = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    assert contract_end(_until(date(2026, 12, 31)).revoke(at)) == at
    assert contract_end(_until(None)) is None


def test_an_end_s_notice_id_is_the_same_for_the_same_end_and_differs_for_another() -> None:
    end = datetime(2027, 1, 1, tzinfo=UTC)
    later = datetime(2027, 2, 1, tzinfo=UTC)
    assert ending_notice_id(LYON.id, end) == ending_notice_id(LYON.id, end)
    assert len({ending_notice_id(LYON.id, end), ending_notice_id(LYON.id, later),
                ending_notice_id("another-contract", end)}) == 3
