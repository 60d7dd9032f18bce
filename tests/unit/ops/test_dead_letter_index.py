"""The dead letters as ``circulation dlq`` reads them: reasons, groups, and the replay's choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.ops.dead_letter_index import (
    DeadLetter,
    by_reason,
    failed_again,
    letter_of,
    parse_since,
    reason_of,
    selected,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _letter(offset: int, reason: str = "DecodeError", *, topic: str = "provider.cnaf.qf",
            ago: timedelta = timedelta(0)) -> DeadLetter:
    return DeadLetter(topic, 0, offset, reason, "why", NOW - ago)


def test_a_reason_is_the_error_type_and_the_field() -> None:
    assert reason_of("UnroutableRecord: key: not the event's subject", "key") == (
        "UnroutableRecord:key", "not the event's subject")
    assert reason_of("DecodeError: no schema with id 12 in the registry", None) == (
        "DecodeError", "no schema with id 12 in the registry")


def test_a_decoded_letter_keeps_its_coordinates_and_reason() -> None:
    letter = letter_of({"error": "ValidationError: data.echelon: out of range",
                        "field": "data.echelon", "origin_topic": "provider.cnous.sb",
                        "origin_partition": 2, "origin_offset": 41, "failed_at": NOW})
    assert letter.origin == ("provider.cnous.sb", 2, 41)
    assert (letter.reason, letter.description) == ("ValidationError:data.echelon", "out of range")


def test_letters_are_grouped_by_reason_with_counts_topics_and_span() -> None:
    letters = [_letter(1, ago=timedelta(hours=2)), _letter(2, topic="provider.dgfip.x"),
               _letter(3, "UnroutableRecord:key", ago=timedelta(hours=1))]
    first, second = by_reason(letters)
    assert (first.reason, first.count) == ("DecodeError", 2)
    assert first.topics == {"provider.cnaf.qf", "provider.dgfip.x"}
    assert (first.first_failed_at, first.last_failed_at) == (NOW - timedelta(hours=2), NOW)
    assert second.as_json() == {
        "reason": "UnroutableRecord:key", "description": "why", "count": 1,
        "origin_topics": ["provider.cnaf.qf"],
        "first_failed_at": "2026-12-03T11:00:00+00:00",
        "last_failed_at": "2026-12-03T11:00:00+00:00"}


def test_a_replay_chooses_by_reason_and_since_one_letter_per_record() -> None:
    letters = [_letter(5, ago=timedelta(hours=3)), _letter(4), _letter(4, ago=timedelta(1)),
               _letter(6, "UnroutableRecord:key")]
    assert [x.origin_offset for x in selected(letters, "DecodeError", None)] == [4, 5]
    assert [x.origin_offset for x in selected(letters, None, NOW - timedelta(hours=1))] == [4, 6]
    assert selected(letters, "ValidationError:data", None) == []


def test_since_is_a_duration_a_date_or_an_instant() -> None:
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("2026-12-01", NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_since("2026-12-01T08:00:00+01:00", NOW) == datetime(2026, 12, 1, 7, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2h30", "-5m", "1841276451089", ""])
def test_a_bad_since_is_refused_without_repeating_it(text: str) -> None:
    with pytest.raises(ValueError, match="a duration") as refused:
        parse_since(text, NOW)
    assert not text or text not in str(refused.value)


def test_what_failed_again_is_a_later_letter_about_a_record_asked() -> None:
    asked = [_letter(4), _letter(5)]
    later = [_letter(5, "ValidationError:data.echelon"), _letter(6)]
    assert [x.origin_offset for x in failed_again(later, asked)] == [5]
