"""The catalog's value constraints, checked on decoded data without converting it.

Events published over Kafka by a provider's own client skip the JSON validation of
:func:`schemas.codec.from_json`, so the router must enforce the ``minimum`` / ``maximum`` /
``pattern`` attributes on what it decodes. Converting every datum back to JSON would do that at
a cost per field; this module walks the schema once and keeps only the paths that carry a
constraint, so the check per event touches those fields alone (often none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
