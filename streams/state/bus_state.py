"""The state routing decides under: the contracts in force, and the reference directory.

Plain data folded from the records of the three state topics, with no Kafka client, so that the
routing rules stay pure and property tests can build any state they like. Contracts are few and
global: every worker holds them all, in memory. Enrolments and consents are per subject: they
live in the reference directory (:mod:`streams.state.directory`), which a worker keeps for the
partitions it routes only (:mod:`streams.state.directory_partitions`). The state follower
(:mod:`streams.state.follower`) keeps both up to date in every worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.kafka.topics import CONSENTS, CONTRACTS, POPULATION
from streams.state.contract import Contract
from streams.state.directory import (
    ConsentStatus,
    MemoryDirectory,
    SubjectDirectory,
    consent_change,
    population_change,
    release_of,
)

__all__ = ["BusState", "ConsentStatus"]


@dataclass
class BusState:
    """The latest contract records, and the subjects' files, as the topics say."""

    contracts: dict[str, Contract] = field(default_factory=dict)
    directory: SubjectDirectory = field(default_factory=MemoryDirectory)
    generation: int = 0
    """Bumped on every contract change, so routers know to recompile their plans."""

    def forget(self, topic: str, key: str, partition: int = 0) -> None:
        """Apply a tombstone: a deleted contract or enrolment is gone for routing too
        (consent tombstones change nothing, :func:`~streams.state.directory.release_of`)."""
        if topic == CONTRACTS:
            if self.contracts.pop(key, None) is not None:
                self.generation += 1
        elif topic == POPULATION and (change := release_of(key)) is not None:
            self.directory.apply(change, partition)

    def apply(self, topic: str, record: Mapping[str, Any], partition: int = 0) -> None:
        """Fold one record of a state topic (in its JSON form) into the state."""
        if topic == CONTRACTS:
            contract = Contract.from_record(record)
            self.contracts[contract.id] = contract
            self.generation += 1
        elif topic == CONSENTS:
            self.directory.apply(consent_change(record), partition)
        elif topic == POPULATION:
            self.directory.apply(population_change(record), partition)
