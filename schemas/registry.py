"""A client for the Confluent-compatible schema registry API (Apicurio's ``ccompat`` locally).

Only the calls the bus needs: register a schema under a subject, read one back by id, and set a
subject's compatibility level. Ids are cached both ways, because a producer asks for the same id
millions of times and a consumer decodes by id on every record.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from pathlib import Path
from typing import Any, Literal

import httpx

Compatibility = Literal[
    "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
    "FULL_TRANSITIVE",
]
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(RuntimeError):
    """The registry refused a request or could not be reached; the message says which."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, did not answer in time, or failed on its side (5xx):
    asking again later may succeed, unlike a refusal."""


class UnknownSchemaId(RegistryError):
    """The registry holds no schema under that id: the record, not the registry, is at fault."""


class RegistryRefused(RegistryError):
    """The registry did not authenticate the caller (401) or does not let it do this (403)."""


def canonical(schema: Any) -> str:
    """A stable text form of a schema, so that the same schema is recognised in the cache."""
    parsed = json.loads(schema) if isinstance(schema, str) else schema
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


def in_clear(url: str) -> bool:
    """Whether requests to ``url`` cross a network unencrypted: plain http to a host other
    than the loopback interface."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or parsed.host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        return True


def verification(cafile: Path | None) -> ssl.SSLContext | bool:
    """How an https peer's certificate is checked: against ``cafile`` when given (a private
    CA), else against the system's CAs; never not at all."""
    return ssl.create_default_context(cafile=str(cafile)) if cafile is not None else True


class SchemaRegistry:
    """Synchronous client; one per process is enough (it keeps a connection pool)."""

    def __init__(self, url: str, timeout: float = 10.0, auth: tuple[str, str] | None = None,
                 cafile: Path | None = None) -> None:
        """``auth`` is HTTP basic auth (a client of the registry's identity server);
        ``cafile`` the CA an ``https`` registry's certificate must chain to (the system's
        when unset)."""
        self.url = url.rstrip("/")
        if auth is not None and in_clear(self.url):
            raise RegistryError(f"the schema registry at {self.url} is plain http: a credential "
                                "sent there crosses the network readable; give its https URL")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, auth=auth,
                                  verify=verification(cafile),
                                  headers={"Accept": _CONTENT_TYPE})
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, Any] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              missing_ok: bool = False) -> Any:
        try:
            response = self._http.request(
                method, path, json=body,
                headers={"Content-Type": _CONTENT_TYPE} if body is not None else None,
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"schema registry at {self.url} unreachable: "
                                      f"{type(exc).__name__} {exc}") from exc
        if response.status_code == 404 and path.startswith("/schemas/ids/"):
            raise UnknownSchemaId(f"no schema with id {path.rsplit('/', 1)[-1]} in the registry")
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code in (401, 403):
            why = ("the credential is unknown or wrong" if response.status_code == 401
                   else "the credential may not do this")
            raise RegistryRefused(f"schema registry refused {method} {path}: HTTP "
                                  f"{response.status_code} ({why})")
        if response.status_code >= 500:
            raise RegistryUnavailable(f"schema registry failed {method} {path}: "
                                      f"HTTP {response.status_code} {response.text[:500]}")
        if response.status_code >= 400:
            raise RegistryError(f"schema registry refused {method} {path}: "
                                f"HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    def register(self, subject: str, schema: Any) -> int:
        """Register ``schema`` under ``subject`` (idempotent) and return its global id."""
        text = canonical(schema)
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        answer = self._call("POST", f"/subjects/{subject}/versions",
                            {"schema": text, "schemaType": "AVRO"})
        schema_id = int(answer["id"])
        self._ids[(subject, text)] = schema_id
        self._schemas[schema_id] = json.loads(text)
        return schema_id

    def lookup(self, subject: str, schema: Any) -> int | None:
        """The global id of ``schema`` if it is registered under ``subject``, else None: what a
        principal that may only read the registry asks instead of registering."""
        text = canonical(schema)
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        answer = self._call("POST", f"/subjects/{subject}", {"schema": text, "schemaType": "AVRO"},
                            missing_ok=True)
        if answer is None:
            return None
        schema_id = int(answer["id"])
        self._ids[(subject, text)] = schema_id
        self._schemas[schema_id] = json.loads(text)
        return schema_id

    def schema(self, schema_id: int) -> Any:
        """The schema registered under ``schema_id``, as parsed JSON."""
        cached = self._schemas.get(schema_id)
        if cached is None:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
            cached = json.loads(answer["schema"])
            self._schemas[schema_id] = cached
        return cached

    def subjects(self) -> list[str]:
        """Every subject the registry holds."""
        return list(self._call("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        """The version numbers registered under ``subject``."""
        return [int(v) for v in self._call("GET", f"/subjects/{subject}/versions")]

    def is_compatible(self, subject: str, schema: Any) -> bool:
        """Whether registering ``schema`` under ``subject`` would pass the subject's
        compatibility rule, asked without registering anything (true for a new subject)."""
        answer = self._call("POST", f"/compatibility/subjects/{subject}/versions/latest",
                            {"schema": canonical(schema), "schemaType": "AVRO"},
                            missing_ok=True)
        return answer is None or bool(answer.get("is_compatible"))

    def set_compatibility(self, subject: str, level: Compatibility) -> None:
        """Make the registry enforce ``level`` for every later registration under ``subject``."""
        self._call("PUT", f"/config/{subject}", {"compatibility": level})

    def compatibility(self, subject: str) -> str:
        """The compatibility level configured for ``subject``."""
        answer = self._call("GET", f"/config/{subject}?defaultToGlobal=true")
        return str(answer.get("compatibilityLevel") or answer.get("compatibility"))
