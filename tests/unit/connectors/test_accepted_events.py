"""The replica's memory of accepted ids: kept for the window, forgotten after it, never
holding an id whose write failed."""

from __future__ import annotations

import asyncio

import pytest

from connectors.gateway.accepted_events import AcceptedEvents, IdConflict, Reservation

KEY = ("provider.cnous", "e-1")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_acknowledged_id_is_accepted_again_until_the_window_ends() -> None:
    async def run() -> list[Reservation]:
        clock = Clock()
        accepted = AcceptedEvents(60, clock)
        seen = [await accepted.reserve(KEY, b"d")]
        accepted.acknowledged([KEY])
        clock.now = 59.9
        seen.append(await accepted.reserve(KEY, b"d"))
        clock.now = 60.0
        seen.append(await accepted.reserve(KEY, b"d"))
        return seen

    assert asyncio.run(run()) == [Reservation.NEW, Reservation.ACCEPTED, Reservation.NEW]


def test_another_content_under_an_accepted_id_is_a_conflict() -> None:
    async def run() -> None:
        accepted = AcceptedEvents(60)
        await accepted.reserve(KEY, b"d")
        accepted.acknowledged([KEY])
        await accepted.reserve(KEY, b"other")

    with pytest.raises(IdConflict):
        asyncio.run(run())


def test_a_released_id_is_produced_by_the_next_request() -> None:
    async def run() -> tuple[Reservation, int]:
        accepted = AcceptedEvents(60)
        await accepted.reserve(KEY, b"d")
        accepted.release([KEY])
        return await accepted.reserve(KEY, b"d"), len(accepted)

    assert asyncio.run(run()) == (Reservation.NEW, 1)


def test_without_a_window_nothing_is_kept() -> None:
    async def run() -> tuple[Reservation, int]:
        accepted = AcceptedEvents(0)
        await accepted.reserve(KEY, b"d")
        accepted.acknowledged([KEY])
        return await accepted.reserve(KEY, b"d"), len(accepted)

    assert asyncio.run(run()) == (Reservation.NEW, 1)


def test_a_conflict_in_a_batch_leaves_none_of_its_ids_held() -> None:
    async def run() -> tuple[list[tuple[str, str]], int]:
        accepted = AcceptedEvents(60)
        await accepted.reserve(KEY, b"d")
        accepted.acknowledged([KEY])
        other = ("provider.cnous", "e-0")
        reservations, conflicts = await accepted.reserve_all([(other, b"x"), (KEY, b"changed")])
        assert reservations == {}
        return conflicts, len(accepted)

    assert asyncio.run(run()) == ([KEY], 1)
