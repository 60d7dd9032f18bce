"""The state routing decides under: contracts in force, consent decisions, enrolments.

Plain data folded from the records of the three state topics, with no Kafka client, so that the
routing rules stay pure and property tests can build any state they like. The state follower
(:mod:`streams.state.follower`) keeps one up to date in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from streams.kafka.topics import CONSENTS, CONTRACTS, POPULATION
from streams.state.contract import Contract

ConsentStatus = Literal["granted", "withdrawn"]
"""A person's recorded choice for one contract; the latest one is in force."""

SubjectKey = tuple[str, str]
"""(contract id, subject reference or SIREN)."""


@dataclass
class BusState:
    """The latest contract records, consent decisions and enrolments, as the topics say."""

    contracts: dict[str, Contract] = field(default_factory=dict)
    consents: dict[SubjectKey, ConsentStatus] = field(default_factory=dict)
    enrolled: set[SubjectKey] = field(default_factory=set)
    generation: int = 0
    """Bumped on every contract change, so routers know to recompile their plans."""

    def forget(self, topic: str, key: str) -> None:
        """Apply a tombstone: a deleted contract or enrolment is gone for routing too.

        Consent tombstones are ignored: each consent key is one decision of the history, and
        erasing an old decision must not revive an older one.
        """
        if topic == CONTRACTS and self.contracts.pop(key, None) is not None:
            self.generation += 1
        elif topic == POPULATION and "/" in key:
            contract_id, subject = key.split("/", 1)
            self.enrolled.discard((contract_id, subject))

    def apply(self, topic: str, record: dict[str, Any]) -> None:
        """Fold one record of a state topic (in its JSON form) into the state."""
        if topic == CONTRACTS:
            contract = Contract.from_record(record)
            self.contracts[contract.id] = contract
            self.generation += 1
        elif topic == CONSENTS:
            self.consents[(record["contract_id"], record["subject_ref"])] = record["status"]
        elif topic == POPULATION:
            key = (record["contract_id"], record["subject_ref"])
            if record["enrolled"]:
                self.enrolled.add(key)
            else:
                self.enrolled.discard(key)
