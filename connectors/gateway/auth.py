"""Who is calling: the bearer token's principal, and what it may touch.

A provider may publish only its own datasets, a subscriber touch only its own contracts. A
missing, malformed, unknown or replaced token is ``401`` with ``WWW-Authenticate: Bearer``;
a known caller reaching for another party's resource is ``403``. Neither answer repeats the
token, and nothing here logs it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from connectors.gateway.problems import Problem
from streams.security.principals import Principal
from streams.security.tokens import TokenDirectory

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="A party's token, from `circulation credentials create "
                                "PRINCIPAL --token`.")


def tokens_of(request: Request) -> TokenDirectory:
    """The directory the application follows (set up by its lifespan)."""
    directory: TokenDirectory = request.app.state.tokens
    return directory


async def caller(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The authenticated principal, or a ``401`` problem."""
    if credentials is None:
        raise Problem(401, "a bearer token is required (Authorization: Bearer <token>)",
                      headers={"WWW-Authenticate": "Bearer"})
    who = tokens_of(request).principal(credentials.credentials)
    if who is None:
        raise Problem(401, "the bearer token is unknown or was replaced",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return who


Caller = Annotated[Principal, Depends(caller)]
"""A route parameter that is the authenticated caller."""


def is_provider(who: Principal, provider_id: str) -> bool:
    """Whether ``who`` is the provider ``provider_id`` (a catalog id, ``_`` for ``-``)."""
    return who.kind == "provider" and who.party == provider_id.replace("_", "-")


def require_provider(who: Principal, provider_id: str, what: str) -> None:
    """Refuse (``403``) unless ``who`` is the provider ``provider_id`` (a catalog id)."""
    if not is_provider(who, provider_id):
        raise Problem(403, f"{what}: only its provider may do this; the token is "
                           f"{who.name}'s")


def require_subscriber(who: Principal, subscriber_id: str, what: str) -> None:
    """Refuse (``403``) unless ``who`` is the subscriber ``subscriber_id``."""
    if who.kind != "subscriber" or who.party != subscriber_id:
        raise Problem(403, f"{what}: only its subscriber may do this; the token is "
                           f"{who.name}'s")
