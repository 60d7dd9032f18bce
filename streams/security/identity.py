"""The registry's side of a principal's credential: a client of the identity server (Keycloak).

The schema registry authenticates with OpenID Connect; a Kafka client or a Confluent serializer
only knows a user name and a password, which the registry exchanges for a token as the
client-credentials grant of the client named after the principal (basic client credentials).
So a principal's registry credential is a confidential client with a service account, its
secret the principal's password, and what it may do at the registry is one realm role on that
service account: ``sr-admin`` (register, change, delete schemas: ``bus-admin`` alone) or
``sr-readonly`` (read: every other principal).

:class:`IdentityAdmin` manages those clients through Keycloak's admin REST API, authenticated by
the client-credentials grant of a client allowed to manage clients (``bus-admin``), so no
separate administrator's password is needed. Its errors say what failed and never carry a
password or a token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import httpx

from schemas.registry import in_clear, verification
from streams.security.principals import Principal, UnknownPrincipal
from streams.settings import Settings

Role = Literal["sr-admin", "sr-readonly"]
ADMIN_ROLE: Role = "sr-admin"
READONLY_ROLE: Role = "sr-readonly"
DEVELOPER_ROLE = "sr-developer"
"""Apicurio's third role (write without admin): defined in the realm, given to no principal."""
REGISTRY_ROLES = (ADMIN_ROLE, DEVELOPER_ROLE, READONLY_ROLE)
PRINCIPAL_ATTRIBUTE = "circulation.principal"
"""Marks the realm's clients that are the bus's principals, apart from Keycloak's own."""
_PAGE = 100
_TOKEN_MARGIN = 10.0


class IdentityError(RuntimeError):
    """The identity server refused a request or could not be reached; the message says which,
    and never contains a password or a token."""


def client_representation(principal: str, password: str) -> dict[str, Any]:
    """A principal's client as Keycloak's admin API and realm imports describe it: confidential,
    a service account and nothing else (no browser or password logins)."""
    return {
        "clientId": principal, "enabled": True, "protocol": "openid-connect",
        "publicClient": False, "clientAuthenticatorType": "client-secret", "secret": password,
        "serviceAccountsEnabled": True, "standardFlowEnabled": False,
        "implicitFlowEnabled": False, "directAccessGrantsEnabled": False,
        "attributes": {PRINCIPAL_ATTRIBUTE: "true"},
    }


def admin_url(issuer: str) -> str:
    """The admin API of the realm whose issuer is ``issuer``: ``…/realms/R`` gives
    ``…/admin/realms/R``."""
    base, separator, realm = issuer.rstrip("/").rpartition("/realms/")
    if not separator or not base or not realm or "/" in realm:
        raise IdentityError(f"the identity URL {issuer!r} is not a realm's URL "
                            "(https://host:port/realms/<realm>)")
    return f"{base}/admin/realms/{realm}"


def _principal(name: str) -> Principal:
    try:
        return Principal.parse(name)
    except UnknownPrincipal as exc:
        raise IdentityError(f"{name!r} is no principal: {exc}") from exc


class IdentityAdmin:
    """The realm's principals as clients: create, update, list, delete (names only, never
    secrets). One instance keeps a connection and a token while it lives."""

    def __init__(self, issuer: str, client_id: str, client_secret: str,
                 cafile: Path | None = None, timeout: float = 10.0) -> None:
        """``issuer`` is the realm's URL; ``client_id``/``client_secret`` a client allowed to
        manage the realm's clients and role mappings (``bus-admin``)."""
        self.issuer = issuer.rstrip("/")
        self.admin = admin_url(self.issuer)
        if in_clear(self.issuer):
            raise IdentityError(f"the identity server at {self.issuer} is plain http: the "
                                "managing client's secret would cross the network readable; "
                                "give its https URL")
        self._credentials = (client_id, client_secret)
        self._http = httpx.Client(timeout=timeout, verify=verification(cafile))
        self._token: tuple[str, float] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityAdmin:
        """The identity server ``settings.identity_url`` names, authenticated with the
        registry credential of these settings (the operator's: ``bus-admin``)."""
        credentials = settings.registry_credentials()
        if settings.identity_url is None:
            raise IdentityError("CIRCULATION_IDENTITY_URL is not set: the registry's identity "
                                "server is unknown")
        if credentials is None:
            raise IdentityError("no registry credential to manage the identity server with: set "
                                "CIRCULATION_SASL_USERNAME and CIRCULATION_SASL_PASSWORD (or the "
                                "CIRCULATION_SCHEMA_REGISTRY_ ones) to bus-admin's")
        return cls(settings.identity_url, *credentials, cafile=settings.registry_cafile())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IdentityAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def put_client(self, principal: str, password: str, role: Role) -> None:
        """Make ``principal``'s client exist with ``password`` as its secret and ``role`` as its
        only registry role: created, or updated in place (a rotation keeps its id)."""
        _principal(principal)
        wanted = client_representation(principal, password)
        found = self._client_id(principal)
        if found is None:
            found = self._create(principal, wanted)
        else:
            self._call("PUT", f"/clients/{found}", f"update the client {principal}", wanted)
        self._grant_only(principal, found, role)

    def exists(self, principal: str) -> bool:
        """Whether the realm has a client named ``principal``."""
        return self._client_id(principal) is not None

    def clients(self) -> list[str]:
        """The principals the realm holds clients for, sorted (Keycloak's own clients left out)."""
        names: list[str] = []
        first = 0
        while True:
            page = self._call("GET", f"/clients?first={first}&max={_PAGE}", "list the clients")
            names += [client["clientId"] for client in page
                      if client.get("attributes", {}).get(PRINCIPAL_ATTRIBUTE) == "true"]
            if len(page) < _PAGE:
                return sorted(names)
            first += _PAGE

    def delete(self, principal: str) -> bool:
        """Delete ``principal``'s client (its service account goes with it); False when there
        was none."""
        found = self._client_id(principal)
        if found is None:
            return False
        self._call("DELETE", f"/clients/{found}", f"delete the client {principal}")
        return True

    def _client_id(self, principal: str) -> str | None:
        """Keycloak's id of the client named ``principal``, or None."""
        matches = self._call("GET", "/clients", f"look the client {principal} up",
                             params={"clientId": principal})
        exact = [client["id"] for client in matches if client.get("clientId") == principal]
        return exact[0] if exact else None

    def _create(self, principal: str, representation: dict[str, Any]) -> str:
        response = self._request("POST", "/clients", f"create the client {principal}",
                                 representation)
        created = response.headers.get("Location", "").rstrip("/").rsplit("/", 1)[-1]
        return created or self._existing(principal)

    def _existing(self, principal: str) -> str:
        found = self._client_id(principal)
        if found is None:
            raise IdentityError(f"the identity server created the client {principal} but does "
                                "not find it")
        return found

    def _grant_only(self, principal: str, client: str, role: Role) -> None:
        """Give the client's service account ``role`` and take away the other registry roles:
        removed first, so that a change of role never holds both, even for a moment."""
        what = f"set the registry role of {principal}"
        account = self._call("GET", f"/clients/{client}/service-account-user", what)["id"]
        mappings = f"/users/{account}/role-mappings/realm"
        held = self._call("GET", mappings, what)
        stale = [mapping for mapping in held
                 if mapping["name"] in REGISTRY_ROLES and mapping["name"] != role]
        if stale:
            self._call("DELETE", mappings, what, stale)
        if not any(mapping["name"] == role for mapping in held):
            granted = self._call("GET", f"/roles/{role}", f"read the realm role {role}")
            self._call("POST", mappings, what, [granted])

    def _call(self, method: str, path: str, what: str, body: Any = None,
              params: dict[str, str] | None = None) -> Any:
        """One admin request; its JSON answer (None when it has no body)."""
        response = self._request(method, path, what, body, params)
        return response.json() if response.content else None

    def _request(self, method: str, path: str, what: str, body: Any = None,
                 params: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        try:
            response = self._http.request(method, self.admin + path, json=body, params=params,
                                          headers=headers)
        except httpx.HTTPError as exc:
            raise IdentityError(f"could not {what}: identity server at {self.admin} "
                                f"unreachable ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise IdentityError(f"could not {what}: {_refusal(response)}")
        return response

    def _access_token(self) -> str:
        """A token of the managing client, fetched again shortly before it expires."""
        if self._token is not None and self._token[1] > time.monotonic():
            return self._token[0]
        client_id = self._credentials[0]
        try:
            response = self._http.post(f"{self.issuer}/protocol/openid-connect/token",
                                       data={"grant_type": "client_credentials"},
                                       auth=self._credentials)
        except httpx.HTTPError as exc:
            raise IdentityError(f"identity server at {self.issuer} unreachable "
                                f"({type(exc).__name__})") from None
        if response.status_code != 200:
            raise IdentityError(f"the identity server refused {client_id}'s credential: "
                                f"{_refusal(response)}")
        answer = response.json()
        lifetime = float(answer.get("expires_in", 60))
        self._token = (answer["access_token"], time.monotonic() + lifetime - _TOKEN_MARGIN)
        return self._token[0]


def _refusal(response: httpx.Response) -> str:
    """The status and the server's own reason (Keycloak's ``errorMessage`` or ``error``), never
    the request: that is where a password would be."""
    reason = ""
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        reason = str(answer.get("errorMessage") or answer.get("error_description")
                     or answer.get("error") or "")[:200]
    if response.status_code == 403 and not reason:
        reason = "the managing client lacks the realm-management roles to do it"
    return f"HTTP {response.status_code}" + (f" ({reason})" if reason else "")
