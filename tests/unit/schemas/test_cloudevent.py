"""The published event's envelope: an id that carries nothing, a time that every reader can read."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from schemas.cloudevent import PublishedEvent

EVENT = {"source": "cnous", "type": "statut_etudiant_boursier", "subject": "184127645108946",
         "data": {}}


def _refusal(**changes: Any) -> dict[str, Any]:
    with pytest.raises(pydantic.ValidationError) as refused:
        PublishedEvent.model_validate(EVENT | changes)
    (error,) = refused.value.errors(include_input=False)
    return dict(error)


@pytest.mark.parametrize("event_id", [
    "0b8a5c4e-3f7d-4b2a-9c1e-6d5f4a3b2c1d", "dossier-2026.01_a", "x", "A" * 64,
])
def test_an_id_is_a_uuid_or_a_short_token(event_id: str) -> None:
    assert PublishedEvent.model_validate(EVENT | {"id": event_id}).id == event_id


@pytest.mark.parametrize("event_id", [
    "", "A" * 65, "dossier\n", "dossier\r\n", "a b", "dossier/1", "né", "x" * 300, "\n",
])
def test_any_other_id_is_refused_without_repeating_it(event_id: str) -> None:
    error = _refusal(id=event_id)
    assert error["loc"] == ("id",)
    assert "letters, digits" in error["msg"]
    if event_id.strip():
        assert event_id.strip() not in error["msg"]


@pytest.mark.parametrize("time", [
    "2026-09-01T10:00:00Z", "2026-09-01T10:00:00.123+02:00", "2026-09-01t10:00:00.123456z",
    "1970-01-01T00:00:00Z", "2099-12-31T23:59:59+01:00",
])
def test_time_is_an_rfc3339_instant_with_an_offset(time: str) -> None:
    moment = PublishedEvent.model_validate(EVENT | {"time": time}).time
    assert moment == datetime.fromisoformat(time.upper())


def test_an_aware_datetime_is_taken_as_it_is() -> None:
    now = datetime.now(UTC)
    assert PublishedEvent.model_validate(EVENT | {"time": now}).time == now


@pytest.mark.parametrize("time", [
    1772612130, 1772612130.5, "1772612130", True,  # epochs: pydantic took them for instants
    "9999-12-31T23:00:00-12:00",  # its UTC form does not exist
    "9999-12-31T23:00-12:00", "2026-09-01T10:00", "2026-09-01", "2026-09-01T10:00:00",
    "2026-09-01 10:00:00Z", "2026-09-01T10:00:00+0200", "2026-09-01T10:00:00.1234567Z",
    "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
    datetime(2026, 9, 1, 10, 0),  # naive
])
def test_any_other_time_is_refused_naming_the_field(time: Any) -> None:
    error = _refusal(time=time)
    assert error["loc"] == ("time",)
    assert "RFC 3339" in error["msg"] or "between" in error["msg"]
    assert str(time) not in error["msg"]
