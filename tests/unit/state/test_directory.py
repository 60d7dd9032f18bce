"""The reference directory: a subject's file says which contracts follow it and its consents.

Folded from population and consent records in any order of arrival per key, stored compactly,
read back equal; kept on disk per partition with the positions it folded, and thrown away when
it cannot be trusted (other topics, or left too long).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.kafka.partitioning import subject_partition
from streams.state.bus_state import BusState
from streams.state.directory import (
    Change,
    MemoryDirectory,
    Standing,
    decode_file,
    encode_file,
    release_of,
)
from streams.state.directory_partitions import PartitionedDirectory, PartitionNotHeld
from streams.state.directory_store import STALE_AFTER, DirectoryStore
from streams.state.slots import SlotsTaken, StateSlot

SUBJECT = "sr1_" + "cd" * 32
IDENTITY = {"bus.consents": "topic-id-1", "bus.population": "topic-id-2"}
contract_ids = st.from_regex(r"[a-z0-9-]{3,12}", fullmatch=True)
changes = st.builds(
    Change, contract_ids, st.just(SUBJECT),
    enrolled=st.none() | st.booleans(),
    consent=st.none() | st.sampled_from(["granted", "withdrawn"]))


@given(st.lists(changes, max_size=30))
def test_a_file_is_the_latest_word_of_each_record_and_reads_back_equal(
        folded: list[Change]) -> None:
    directory = MemoryDirectory()
    enrolled: dict[str, bool] = {}
    consents: dict[str, str] = {}
    for change in folded:
        directory.apply(change)
        if change.enrolled is not None:
            enrolled[change.contract_id] = change.enrolled
        elif change.consent is not None:
            consents[change.contract_id] = change.consent
    file = directory.file_of(SUBJECT)
    expected = {cid: Standing(enrolled.get(cid, False), consents.get(cid))  # type: ignore[arg-type]
                for cid in enrolled.keys() | consents.keys()
                if enrolled.get(cid) or cid in consents}
    assert dict(file) == expected
    assert decode_file(encode_file(file)) == expected
    assert (SUBJECT in directory.files) == bool(expected), "an empty file is not kept"


def test_a_population_tombstone_releases_and_a_consent_tombstone_changes_nothing() -> None:
    state = BusState()
    state.apply("bus.population", {"contract_id": "lyon", "subject_ref": SUBJECT,
                                   "enrolled": True})
    state.apply("bus.consents", {"contract_id": "lyon", "subject_ref": SUBJECT,
                                 "status": "withdrawn"})
    state.forget("bus.consents", f"lyon/{SUBJECT}/1700000000000")
    assert state.directory.file_of(SUBJECT, 0) == {"lyon": Standing(True, "withdrawn")}
    state.forget("bus.population", f"lyon/{SUBJECT}")
    assert state.directory.file_of(SUBJECT, 0) == {"lyon": Standing(False, "withdrawn")}
    assert release_of("no-slash") is None


def test_a_consent_record_of_another_status_is_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        BusState().apply("bus.consents", {"contract_id": "lyon", "subject_ref": SUBJECT,
                                          "status": "maybe"})


def test_a_store_keeps_files_and_positions_across_a_restart(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "p0", IDENTITY)
    assert store.rebuilt
    assert store.positions == {}
    store.write({SUBJECT: {"lyon": Standing(True, "granted")}}, {"bus.population": 41})
    store.write({"732829320": {"acme": Standing(True)}}, {"bus.consents": 7})
    store.close()
    again = DirectoryStore(tmp_path / "p0", IDENTITY)
    assert not again.rebuilt
    assert again.positions == {"bus.population": 41, "bus.consents": 7}
    assert again.file_of(SUBJECT) == {"lyon": Standing(True, "granted")}
    again.write({SUBJECT: {}}, {"bus.population": 42})
    assert again.file_of(SUBJECT) == {}, "an emptied file is deleted"
    assert again.memory() > 0
    again.close()


def test_a_store_of_other_topics_or_left_too_long_starts_again(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "p0", IDENTITY)
    store.write({SUBJECT: {"lyon": Standing(True)}}, {"bus.population": 41})
    store.close()
    recreated = DirectoryStore(tmp_path / "p0", {**IDENTITY, "bus.population": "another-id"})
    assert recreated.rebuilt
    assert recreated.positions == {}
    assert recreated.file_of(SUBJECT) == {}
    recreated.write({SUBJECT: {"lyon": Standing(True)}}, {"bus.population": 3})
    recreated.close()
    later = DirectoryStore(tmp_path / "p0", recreated.identity,
                           now=time.time() + STALE_AFTER + 1)
    assert later.rebuilt
    assert later.file_of(SUBJECT) == {}
    later.close()


def test_a_subject_reference_cannot_overwrite_the_store_s_own_record(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "p0", IDENTITY)
    store.write({"m": {"lyon": Standing(True)}, "": {"acme": Standing(True)}},
                {"bus.population": 5})
    store.close()
    again = DirectoryStore(tmp_path / "p0", IDENTITY)
    assert not again.rebuilt
    assert again.positions == {"bus.population": 5}
    assert again.file_of("m") == {"lyon": Standing(True)}
    again.close()


def test_each_worker_on_a_host_takes_its_own_slot_and_finds_it_again(tmp_path: Path) -> None:
    first = StateSlot.claim(tmp_path)
    second = StateSlot.claim(tmp_path)
    assert (first.path.name, second.path.name) == ("slot-0", "slot-1")
    first.release()
    assert StateSlot.claim(tmp_path).path.name == "slot-0", "a freed slot is taken again"
    assert oct((tmp_path / "slot-1").stat().st_mode & 0o777) == "0o700"


def test_a_state_directory_whose_slots_are_all_held_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streams.state.slots.MAX_SLOTS", 2)
    StateSlot.claim(tmp_path), StateSlot.claim(tmp_path)
    with pytest.raises(SlotsTaken, match="CIRCULATION_STATE_DIR"):
        StateSlot.claim(tmp_path)


def test_a_worker_holds_only_its_partitions_and_refuses_to_read_another_s(
        tmp_path: Path) -> None:
    directory = PartitionedDirectory(StateSlot.claim(tmp_path), 3, IDENTITY)
    mine = subject_partition(SUBJECT, 3)
    directory.hold([mine])
    assert directory.partition_of(SUBJECT) == mine
    directory.apply(Change("lyon", SUBJECT, enrolled=True), mine)
    assert directory.file_of(SUBJECT, mine) == {"lyon": Standing(True)}, "pending, read back"
    directory.commit({mine: {"bus.population": 1}})
    other = (mine + 1) % 3
    directory.apply(Change("lyon", SUBJECT, enrolled=True), other)  # not held: dropped
    with pytest.raises(PartitionNotHeld):
        directory.file_of(SUBJECT, other)
    directory.release([mine])
    directory.hold([mine])
    assert directory.stores[mine].positions == {"bus.population": 1}
    assert directory.file_of(SUBJECT, mine) == {"lyon": Standing(True)}
    directory.close()
