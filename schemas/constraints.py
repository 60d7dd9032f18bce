"""The catalog's value constraints, checked on decoded data without converting it.

Events published over Kafka by a provider's own client skip the JSON validation of
:func:`schemas.codec.from_json`, so the router must enforce the ``minimum`` / ``maximum`` /
``pattern`` attributes on what it decodes. Converting every datum back to JSON would do that at
a cost per field; this module walks the schema once and keeps only the paths that carry a
constraint, so the check per event touches those fields alone (often none).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from schemas.codec import check_field_constraints

Check = Callable[[Any, str], None]
_CONSTRAINTS = ("minimum", "maximum", "pattern")


def _no_check(_: Any, __: str) -> None:
    return None


def compile_checker(schema: Mapping[str, Any]) -> Callable[[Any], None]:
    """A function raising :class:`~schemas.codec.ValidationError` on a datum that breaks a
    constraint of ``schema`` (a record schema in JSON form)."""
    check = _Compiler().type_check(schema)

    def run(datum: Any) -> None:
        check(datum, "data")

    return run


class _Compiler:
    """Builds checks for a schema's types, resolving named records as it meets them."""

    def __init__(self) -> None:
        self.named: dict[str, Check] = {}

    def type_check(self, node: Any) -> Check:
        if isinstance(node, str):
            return self.named.get(node, _no_check) if "." in node or node[:1].isupper() \
                else _no_check
        if isinstance(node, list):
            return self._union(node)
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "record":
                return self._record(node)
            if kind == "array":
                return self._array(self.type_check(node["items"]))
            if kind == "map":
                return self._map(self.type_check(node["values"]))
            if isinstance(kind, (dict, list)):
                return self.type_check(kind)
        return _no_check

    def _record(self, node: Mapping[str, Any]) -> Check:
        checks: list[tuple[str, Mapping[str, Any], Check]] = []
        for field in node["fields"]:
            inner = self.type_check(field["type"])
            if inner is not _no_check or any(c in field for c in _CONSTRAINTS):
                checks.append((field["name"], field, inner))

        def check(datum: Any, path: str) -> None:
            for name, field, inner in checks:
                value = datum.get(name)
                where = f"{path}.{name}"
                if value is not None:
                    check_field_constraints(field, value, where)
                    inner(value, where)

        result = check if checks else _no_check
        name = str(node["name"])
        namespace = node.get("namespace")
        self.named[name] = result
        if namespace:
            self.named[f"{namespace}.{name}"] = result
        return result

    def _union(self, branches: list[Any]) -> Check:
        checks = [c for c in map(self.type_check, branches) if c is not _no_check]
        if not checks:
            return _no_check

        def check(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for inner in checks:
                    inner(value, path)

        return check

    @staticmethod
    def _array(item: Check) -> Check:
        if item is _no_check:
            return _no_check

        def check(values: Any, path: str) -> None:
            for index, value in enumerate(values):
                item(value, f"{path}[{index}]")

        return check

    @staticmethod
    def _map(item: Check) -> Check:
        if item is _no_check:
            return _no_check

        def check(values: Any, path: str) -> None:
            for key, value in values.items():
                item(value, f"{path}.{key}")

        return check



_COMPANY_IDENTIFIER = re.compile(r"\^?(?:\[0-9\]|\\d)\{(?:9|14)\}\$?")
"""A ``pattern`` accepting exactly a SIREN's 9 or a SIRET's 14 digits: how the catalog types
them (``"pattern": "^[0-9]{14}$"``)."""


def company_identifier_paths(schema: Mapping[str, Any], root: str = "data") -> frozenset[str]:
    """Paths of the fields a record schema (JSON form) types as SIREN or SIRET.

    Those identifiers are public and never NIRs, yet their digits are what a NIR scan looks at,
    so callers of :func:`schemas.nir_detection.nir_locations` skip them. The paths are the ones
    it walks: dotted from ``root``, ``*`` standing for an array's items; the values of Avro maps
    are not followed (no dataset types a company identifier there).
    """
    found: set[str] = set()
    _IdentifierPaths(found).walk(schema, root, frozenset())
    return frozenset(found)


@dataclass
class _IdentifierPaths:
    """Walks records, unions and arrays, resolving named records as it meets them."""

    found: set[str]
    named: dict[str, Any] = dataclass_field(default_factory=dict)

    def walk(self, node: Any, path: str, active: frozenset[str]) -> None:
        """``active``: the records being walked above, so a recursive type ends the walk."""
        if isinstance(node, str):
            if node in self.named and node not in active:
                self.walk(self.named[node], path, active)
        elif isinstance(node, list):
            for branch in node:
                self.walk(branch, path, active)
        elif isinstance(node, Mapping):
            kind = node.get("type")
            if kind == "record":
                self._record(node, path, active)
            elif kind == "array":
                self.walk(node["items"], f"{path}.*", active)
            elif isinstance(kind, list | Mapping):
                self.walk(kind, path, active)

    def _record(self, node: Mapping[str, Any], path: str, active: frozenset[str]) -> None:
        names = {str(node["name"])}
        if node.get("namespace"):
            names.add(f"{node['namespace']}.{node['name']}")
        self.named.update(dict.fromkeys(names, node))
        for item in node["fields"]:
            where = f"{path}.{item['name']}"
            if _COMPANY_IDENTIFIER.fullmatch(str(item.get("pattern", ""))):
                self.found.add(where)
            self.walk(item["type"], where, active | names)


def holds_plain_numbers(schema: Any) -> bool:
    """Whether a schema (JSON form) has a ``long`` that is not a timestamp: a number large
    enough to be a NIR typed as one, which no scan of the encoded bytes can see (Avro writes it
    in binary), so callers scanning for NIRs walk the decoded record instead."""
    if schema == "long":
        return True
    if isinstance(schema, list):
        return any(holds_plain_numbers(branch) for branch in schema)
    if not isinstance(schema, Mapping):
        return False
    kind = schema.get("type")
    if kind == "long":
        return "logicalType" not in schema
    if kind == "record":
        return any(holds_plain_numbers(item["type"]) for item in schema["fields"])
    if kind in ("array", "map"):
        return holds_plain_numbers(schema["items" if kind == "array" else "values"])
    return holds_plain_numbers(kind)
