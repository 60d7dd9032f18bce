"""The contract a portal's request is about, found only for its own subscriber.

A subscriber's token opens its own contracts and nothing else: a provider's token is refused
before any contract is looked up, so that it cannot tell which contract ids exist; a
subscriber reaching for another's contract gets ``403``; an unknown id ``404``, a detail that
does not repeat the id (the path holds whatever the caller typed there).

A revoked or expired contract is found, as ``circulation population`` and ``consent`` find it
(:func:`streams.state.subjects.find_contract`): the workers deliver nothing under it, and a
withdrawal recorded on it still sends its erasure notices, which a subscriber must still obey.
"""

from __future__ import annotations

from connectors.gateway.auth import require_subscriber
from connectors.gateway.problems import Problem
from streams.security.principals import Principal
from streams.settings import Settings
from streams.state.contract import Contract
from streams.state.subjects import find_contract


def require_a_subscriber(who: Principal) -> None:
    """Refuse (``403``) any caller but a subscriber: only a subscriber has contracts."""
    if who.kind != "subscriber":
        raise Problem(403, f"contracts: only their subscriber may change their population or "
                           f"consents; the token is {who.name}'s")


async def own_contract(settings: Settings, who: Principal, contract_id: str) -> Contract:
    """The recorded contract of that id, when ``who`` is its subscriber."""
    require_a_subscriber(who)
    try:
        contract = await find_contract(settings, contract_id)
    except LookupError:
        raise Problem(404, "no contract of that id") from None
    require_subscriber(who, contract.subscriber, f"contract {contract.id}")
    return contract
