"""Which of the persons' recorded choices expiry tombstones: every key of a pair whose latest
choice ended it before the horizon, except the marker of a standing objection; and forgetting
them never changes what a contract decides, whatever the history (hypothesis)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import Catalog
from streams.kafka.topics import CONSENTS, POPULATION
from streams.routing.rules import consent_reason, population_reason
from streams.state.contract import Contract
from streams.state.directory import Standing
from streams.state.history_expiry import Choice, expired, overwritten

CATALOG = Catalog.load()
HORIZON = datetime(2026, 6, 1, tzinfo=UTC)
BEFORE, AFTER = HORIZON - timedelta(days=1), HORIZON + timedelta(days=1)


def _contract(consent: str, population: str = "all", revoked: bool = False) -> Contract:
    contract = Contract.checked({
        "id": f"c-{consent.replace('_', '-')}-{population}-{int(revoked)}",
        "subscriber": "ville-de-test", "subscriber_siret": "21690123100011",
        "purpose": "essai", "legal_basis": "essai",
        "datasets": {"quotient_familial": ["quotient_familial"]}, "consent": consent,
        "population": population, "retention": "P30D", "valid_from": "2026-01-01"}, CATALOG)
    return contract.revoke(HORIZON) if revoked else contract


CONTRACTS = {c.id: c for c in [_contract("opt_in"), _contract("opt_out"),
                                _contract("not_required", "enrolled"),
                                _contract("opt_out", revoked=True)]}
OPT_IN, OPT_OUT, ENROLLED, REVOKED = CONTRACTS


def _consent(contract: str, at: datetime, withdrawn: bool, subject: str = "sr1_a") -> Choice:
    return Choice(CONSENTS, 0, f"{contract}/{subject}/{int(at.timestamp() * 1000)}", contract,
                  subject, at, withdrawn, _offset(at))


def _population(contract: str, at: datetime, removed: bool, subject: str = "sr1_a") -> Choice:
    return Choice(POPULATION, 0, f"{contract}/{subject}", contract, subject, at, removed,
                  _offset(at))


def _offset(at: datetime) -> int:
    """Records written in the order of their clocks, unless a test says otherwise."""
    return int(at.timestamp() * 1000)


def test_a_withdrawal_past_the_horizon_takes_the_pair_s_whole_history() -> None:
    grant = _consent(OPT_IN, BEFORE - timedelta(days=30), False)
    withdrawal = _consent(OPT_IN, BEFORE, True)
    other = _consent(OPT_IN, BEFORE, True, subject="sr1_b")
    assert expired([grant, withdrawal, other], CONTRACTS, HORIZON) == [grant, withdrawal, other]


def test_a_recent_withdrawal_or_a_standing_grant_is_kept() -> None:
    assert expired([_consent(OPT_IN, BEFORE, False), _consent(OPT_IN, AFTER, True)],
                   CONTRACTS, HORIZON) == []
    assert expired([_consent(OPT_IN, BEFORE - timedelta(days=1), True),
                    _consent(OPT_IN, BEFORE, False)], CONTRACTS, HORIZON) == []


def test_an_objection_stands_while_its_opt_out_contract_may_deliver() -> None:
    grant = _consent(OPT_OUT, BEFORE - timedelta(days=1), False)
    objection = _consent(OPT_OUT, BEFORE, True)
    assert expired([grant, objection], CONTRACTS, HORIZON) == [grant]
    revoked = [_consent(REVOKED, BEFORE, True)]
    assert expired(revoked, CONTRACTS, HORIZON) == revoked
    unknown = [_consent("c-gone", BEFORE, True)]
    assert expired(unknown, CONTRACTS, HORIZON) == []


def test_a_removal_past_the_horizon_is_tombstoned_an_enrolment_never() -> None:
    removed = _population(ENROLLED, BEFORE, True)
    assert expired([removed, _population(ENROLLED, BEFORE, False, "sr1_b"),
                    _population(ENROLLED, AFTER, True, "sr1_c")], CONTRACTS, HORIZON) == [removed]


def _reasons(choices: Iterable[Choice]) -> dict[tuple[str, str], tuple[str | None, ...]]:
    """What each contract decides for each subject from these records, as a follower folds
    them: the latest population record, the latest consent decision."""
    standings: dict[tuple[str, str], Standing] = {}
    for choice in sorted(choices, key=lambda c: c.offset):
        pair = (choice.contract_id, choice.subject)
        standing = standings.get(pair, Standing())
        standings[pair] = (Standing(not choice.ended, standing.consent)
                           if choice.topic == POPULATION else
                           Standing(standing.enrolled, "withdrawn" if choice.ended
                                    else "granted"))
    return {(contract.id, subject): (
        population_reason(contract.population, standings.get((contract.id, subject),
                                                               Standing()).enrolled),
        consent_reason(contract.consent, standings.get((contract.id, subject),
                                                        Standing()).consent))
        for contract in CONTRACTS.values() if not contract.revoked
        for subject in ("sr1_a", "sr1_b")}


_CHOICES = st.builds(
    lambda topic, contract, subject, days, ended: (
        _consent(contract, HORIZON + timedelta(days=days), ended, subject) if topic == CONSENTS
        else _population(contract, HORIZON + timedelta(days=days), ended, subject)),
    st.sampled_from([CONSENTS, POPULATION]), st.sampled_from(list(CONTRACTS)),
    st.sampled_from(["sr1_a", "sr1_b"]), st.integers(-5, 5), st.booleans())


@given(st.lists(_CHOICES, max_size=12))
def test_compaction_after_expiry_leaves_every_decision_as_it_was(
        choices: list[Choice]) -> None:
    latest = {(c.topic, c.key): c for c in sorted(choices, key=lambda c: c.offset)}
    live = list(latest.values())  # one record per key, as compaction leaves them
    gone = expired(live, CONTRACTS, HORIZON)
    assert _reasons([c for c in live if c not in gone]) == _reasons(live)


def test_the_latest_choice_is_the_last_written_whatever_the_writers_clocks() -> None:
    """A withdrawal then a grant made again, the second writer's clock a minute behind: the
    grant is what routing folded last, so it stands and nothing is expired."""
    withdrawal = _consent(OPT_IN, BEFORE, True)
    late_clock = dataclasses.replace(_consent(OPT_IN, BEFORE - timedelta(minutes=1), False),
                                     offset=withdrawal.offset + 1)
    assert expired([withdrawal, late_clock], CONTRACTS, HORIZON) == []
    removal = _population(ENROLLED, BEFORE, True)
    enrolled_again = dataclasses.replace(removal, ended=False, offset=removal.offset + 1,
                                         recorded_at=BEFORE - timedelta(minutes=1))
    assert expired([removal, enrolled_again], CONTRACTS, HORIZON) == []


TP = TopicPartition(POPULATION, 2)


def test_a_choice_written_between_the_read_and_its_tombstone_is_written_again() -> None:
    tombstones = {(TP, "c/sr1_a"): 12, (TP, "c/sr1_b"): 13}
    records = [(TP, "c/sr1_a", 10, b"enrolled again", [("h", b"1")]),
               (TP, "c/sr1_x", 11, b"someone else", []),
               (TP, "c/sr1_a", 12, None, []), (TP, "c/sr1_b", 13, None, [])]
    assert overwritten(records, tombstones) == {(TP, "c/sr1_a"): (b"enrolled again",
                                                                  [("h", b"1")])}


def test_a_key_tombstoned_again_meanwhile_is_not_brought_back() -> None:
    records = [(TP, "c/sr1_a", 10, b"enrolled again", []), (TP, "c/sr1_a", 11, None, []),
               (TP, "c/sr1_a", 12, None, [])]
    assert overwritten(records, {(TP, "c/sr1_a"): 12}) == {}
