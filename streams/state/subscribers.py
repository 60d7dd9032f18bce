"""One subscriber id, one organisation: the SIRET a subscriber id stands for never changes.

A subscriber's pseudonyms are keyed by its id (:mod:`streams.privacy.pseudonyms`), and its
delivery topics are named after it. A second organisation given a contract under the same id
would receive the same pseudonyms, and could join its data with the first one's. So every
contract naming a subscriber id must give the same SIRET: the files checked together
(``contracts validate``) and every contract ever recorded, revoked ones included
(``contracts apply``). SIRETs are public; a refusal names them.
"""

from __future__ import annotations

from streams.state.contract import Contract


class SubscriberBindings:
    """The SIRET each subscriber id was first seen with, and where."""

    def __init__(self) -> None:
        self._bound: dict[str, dict[str, str]] = {}
        """subscriber id → SIRET → where it was seen first (a file, a recorded contract)."""

    def record(self, contract: Contract, where: str) -> None:
        """Remember ``contract``'s binding without checking it (what is already recorded)."""
        self._bound.setdefault(contract.subscriber, {}).setdefault(
            contract.subscriber_siret, where)

    def bind(self, contract: Contract, where: str) -> str | None:
        """Remember ``contract``'s binding; the reason it is refused if its subscriber id is
        already bound to another SIRET, None otherwise."""
        sirets = self._bound.get(contract.subscriber, {})
        others = [(siret, seen) for siret, seen in sirets.items()
                  if siret != contract.subscriber_siret]
        if others:
            siret, seen = others[0]
            return (f"subscriber {contract.subscriber} is bound to SIRET {siret} ({seen}), not "
                    f"{contract.subscriber_siret}: one subscriber id is one organisation, as "
                    f"its pseudonyms are keyed by the id; give this organisation its own id")
        self.record(contract, where)
        return None
