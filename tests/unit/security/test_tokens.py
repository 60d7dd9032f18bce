"""Gateway tokens: only their hash is kept, a new one replaces the last, a component holds none."""

from __future__ import annotations

from typing import Any

from streams.security.principals import Principal
from streams.security.tokens import TOKEN_PREFIX, TokenDirectory, new_token, token_hash
from streams.settings import Settings


def _directory() -> TokenDirectory:
    return TokenDirectory(Settings(), serde=None)  # type: ignore[arg-type]  # never asked here


def _record(principal: str, token: str) -> dict[str, Any]:
    return {"principal": principal, "token_sha256": token_hash(token), "issued_at": None}


def test_a_token_is_prefixed_random_and_long() -> None:
    made = {new_token() for _ in range(100)}
    assert len(made) == 100
    assert all(t.startswith(TOKEN_PREFIX) and len(t) >= len(TOKEN_PREFIX) + 43 for t in made)


def test_the_hash_is_not_the_token_and_is_stable() -> None:
    token = new_token()
    assert token_hash(token) == token_hash(token)
    assert token not in token_hash(token)
    assert len(token_hash(token)) == 64


def test_a_known_token_opens_as_its_principal_and_nothing_else_does() -> None:
    directory = _directory()
    token = new_token()
    directory.apply(_record("provider.cnaf", token))
    assert directory.principal(token) == Principal("provider.cnaf", "provider")
    assert directory.principal(new_token()) is None
    assert directory.principal(token_hash(token)) is None, "the hash itself is no token"
    assert directory.principal("") is None


def test_a_new_token_replaces_the_principals_last_one() -> None:
    directory = _directory()
    first, second = new_token(), new_token()
    directory.apply(_record("subscriber.ville-de-lyon", first))
    directory.apply(_record("subscriber.ville-de-lyon", second))
    assert directory.principal(first) is None
    assert directory.principal(second) == Principal("subscriber.ville-de-lyon", "subscriber")


def test_a_withdrawn_principal_opens_nothing() -> None:
    directory = _directory()
    token = new_token()
    directory.apply(_record("provider.cnaf", token))
    directory.withdraw("provider.cnaf")
    assert directory.principal(token) is None


def test_records_for_components_or_no_principal_are_skipped() -> None:
    directory = _directory()
    for name in ("bus-admin", "bus-worker", "bus-gateway", "not a principal"):
        token = new_token()
        directory.apply(_record(name, token))
        assert directory.principal(token) is None, name


async def test_the_follower_outlives_a_registry_or_broker_failure() -> None:
    """A follower that stopped on one error would leave every replaced token open on this
    replica for as long as it runs: it logs, waits and reads again."""
    import asyncio

    from schemas.registry import RegistryError

    directory = _directory()
    token = new_token()
    failures = [RegistryError("401 from the registry"), RuntimeError("anything else")]

    async def read(_: object) -> None:
        if failures:
            raise failures.pop(0)
        directory.apply(_record("provider.cnaf", token))
        await asyncio.sleep(0.01)

    directory._read = read  # type: ignore[method-assign]
    directory._follower = asyncio.create_task(directory._follow(object()))  # type: ignore[arg-type]
    try:
        for _ in range(50):
            if directory.principal(token) is not None:
                break
            await asyncio.sleep(0.1)
        assert directory.following
        assert directory.principal(token) == Principal("provider.cnaf", "provider")
    finally:
        await directory.stop()
    assert not directory.following
