"""Field projection: the schema and the data a subscriber may see, and nothing more.

Data minimisation is made visible in the registry: a contract's delivery schema is the dataset
schema *projected* on the contract's fields, so reading a subscriber's schema tells exactly what
it receives. :func:`project_schema` builds that record schema from a dataset schema's JSON, and
:func:`project_datum` cuts an event down to the same fields.

Naming. A projected record keeps the dataset record's short name (``QuotientFamilial``) but moves
into its own namespace, ``fr.gouv.circulation.deliver.<contract>.<dataset>`` (see
:func:`delivery_namespace`), so it can never be mistaken for the provider's record, and two
datasets of one contract never clash on a nested type they both name alike (URSSAF's and DGFiP's
certificates both define a ``StatutAttestation`` enum). Every named type the kept fields use is
moved into that namespace too, and a type that was defined inside a dropped field (``Personne``
is defined by ``allocataires`` and only referenced by ``enfants``) is defined again where it is
first used, so the projection always parses on its own.

Each kept field keeps its type, doc, default and constraints (``minimum``, ``pattern``...), in
the dataset schema's order (field order is part of the Avro binary encoding, so the order of the
contract's list must not change the schema).

A contract naming several datasets delivers several record types on one topic: its delivery
schema (:func:`delivery_schema`) is then the Avro union of the projected records, which any
standard Avro deserializer reads without configuration; :func:`union_value` tags a datum with
its branch so that two records with the same fields are never confused when writing.

Everything here is pure: no registry, no Kafka.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DELIVERY_NAMESPACE = "fr.gouv.circulation.deliver"
"""Root namespace of every projected record."""

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "enum", "fixed", "error"})
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DeliverySchema = dict[str, Any] | list[dict[str, Any]]
"""A delivery topic's value schema: one projected record, or the union of several."""


class ProjectionError(ValueError):
    """The requested projection is impossible (unknown field, malformed schema)."""


def delivery_namespace(contract_id: str, dataset_id: str) -> str:
    """``fr.gouv.circulation.deliver.<contract>.<dataset>`` with the id made an Avro name.

    Contract ids use hyphens and may start with a digit, neither allowed in an Avro name: hyphens
    become underscores and a leading digit gets an underscore prefix. Contract ids never contain
    underscores, so two contracts never share a namespace.
    """
    part = contract_id.replace("-", "_")
    if part[:1].isdigit():
        part = f"_{part}"
    for name in (part, dataset_id):
        if not _AVRO_NAME.fullmatch(name):
            raise ProjectionError(f"{name!r} cannot be part of an Avro namespace")
    return f"{DELIVERY_NAMESPACE}.{part}.{dataset_id}"


def field_names(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The top-level field names of a record schema (JSON form), in order."""
    if schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
        raise ProjectionError("only a record schema can be projected")
    return tuple(str(f["name"]) for f in schema["fields"])


def full_name(schema: Mapping[str, Any]) -> str:
    """The Avro full name of a named schema (JSON form)."""
    return _full_name(str(schema["name"]), schema.get("namespace"))


def project_schema(
    schema: Mapping[str, Any],
    fields: Iterable[str],
    *,
    namespace: str,
    doc: str,
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record schema of ``schema`` reduced to ``fields``, renamed into ``namespace``.

    ``doc`` replaces the record's doc (say which contract and purpose it serves);
    ``annotations``, when given, are kept as the record's ``circulation`` attribute, so the
    registered schema still says what it is for once fetched back from the registry.
    """
    wanted = list(fields)
    known = field_names(schema)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ProjectionError(f"no field {', '.join(map(repr, unknown))} in {full_name(schema)} "
                              f"(fields: {', '.join(known)})")
    if not wanted:
        raise ProjectionError("a projection keeps at least one field")
    source_namespace = _namespace_of(str(schema["name"]), schema.get("namespace"))
    renamer = _Renamer(namespace, _definitions(schema, source_namespace))
    projected: dict[str, Any] = {"type": "record", "name": _short(str(schema["name"])),
                                 "namespace": namespace, "doc": doc}
    if annotations is not None:
        projected["circulation"] = dict(annotations)
    renamer.claim(_full_name(str(schema["name"]), source_namespace))
    projected["fields"] = [
        {**f, "type": renamer.rewrite(f["type"], source_namespace)}
        for f in schema["fields"] if f["name"] in wanted
    ]
    return projected


def delivery_schema(records: Sequence[dict[str, Any]]) -> DeliverySchema:
    """The value schema of a delivery topic: the record itself, or the union of several.

    A single-dataset contract gets a plain record (the simplest thing for a consumer); several
    datasets give a union, whose branches must have distinct full names.
    """
    if not records:
        raise ProjectionError("a delivery schema needs at least one projected record")
    names = [full_name(r) for r in records]
    if len(set(names)) != len(names):
        raise ProjectionError(f"projected records must have distinct names, got {names}")
    return dict(records[0]) if len(records) == 1 else [dict(r) for r in records]


def project_datum(datum: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Only the ``fields`` of ``datum`` (those it has), every other field dropped.

    Works on both a fastavro datum and its JSON form: top-level fields are copied as they are.
    """
    return {name: datum[name] for name in dict.fromkeys(fields) if name in datum}


def union_value(schema: DeliverySchema, record_name: str, datum: Mapping[str, Any]) -> Any:
    """What to hand fastavro for ``datum`` of record ``record_name`` under ``schema``.

    For a union, fastavro's tuple notation ``(full name, datum)`` picks the branch explicitly:
    guessing it from the fields would confuse two datasets projected on the same field names.
    """
    if isinstance(schema, dict):
        if full_name(schema) != record_name:
            raise ProjectionError(f"{record_name} is not the delivery record {full_name(schema)}")
        return dict(datum)
    if record_name not in {full_name(r) for r in schema}:
        raise ProjectionError(f"{record_name} is not a branch of this delivery schema")
    return (record_name, dict(datum))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _namespace_of(name: str, namespace: Any) -> str:
    """The namespace a name lives in: its own dotted prefix, else the given namespace."""
    if "." in name:
        return name.rsplit(".", 1)[0]
    return str(namespace) if namespace else ""


def _full_name(name: str, namespace: Any) -> str:
    if "." in name:
        return name
    return f"{namespace}.{name}" if namespace else name


def _definitions(schema: Any, namespace: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Every named type defined in ``schema``: full name → (definition, its namespace)."""
    found: dict[str, tuple[dict[str, Any], str]] = {}

    def walk(node: Any, enclosing: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, enclosing)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                own = _namespace_of(str(node["name"]), node.get("namespace", enclosing))
                found[_full_name(_short(str(node["name"])), own)] = (node, own)
                for child in node.get("fields", ()):
                    walk(child["type"], own)
            elif kind == "array":
                walk(node["items"], enclosing)
            elif kind == "map":
                walk(node["values"], enclosing)
            elif isinstance(kind, dict | list):
                walk(kind, enclosing)

    walk(schema, namespace)
    return found


@dataclass
class _Renamer:
    """Rewrites types into the target namespace, defining each named type once."""

    target: str
    definitions: Mapping[str, tuple[dict[str, Any], str]]
    defined: dict[str, str] = field(default_factory=dict)
    """source full name → short name in the target namespace, once emitted."""

    def claim(self, source_name: str) -> str:
        """Record that ``source_name`` is defined (under its short name) in the target."""
        short = _short(source_name)
        if short in self.defined.values() and self.defined.get(source_name) != short:
            raise ProjectionError(f"two named types called {short!r} cannot share "
                                  f"the namespace {self.target}")
        self.defined[source_name] = short
        return short

    def rewrite(self, node: Any, enclosing: str) -> Any:
        """``node`` with every named type moved to the target namespace."""
        if isinstance(node, list):
            return [self.rewrite(branch, enclosing) for branch in node]
        if isinstance(node, str):
            return node if node in _PRIMITIVES else self._reference(node, enclosing)
        if not isinstance(node, dict):
            raise ProjectionError(f"not an Avro type: {node!r}")
        kind = node.get("type")
        if kind in _NAMED:
            return self._definition(node, enclosing)
        if kind == "array":
            return {**node, "items": self.rewrite(node["items"], enclosing)}
        if kind == "map":
            return {**node, "values": self.rewrite(node["values"], enclosing)}
        if isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            return {**node, "type": self.rewrite(kind, enclosing)}
        return dict(node)

    def _reference(self, name: str, enclosing: str) -> Any:
        """A reference: the short name if already defined, else the definition inlined here."""
        source = _full_name(name, enclosing)
        if source in self.defined:
            return self.defined[source]
        if source not in self.definitions:
            raise ProjectionError(f"unknown named type {name!r}")
        definition, namespace = self.definitions[source]
        return self._definition(definition, namespace)

    def _definition(self, node: dict[str, Any], enclosing: str) -> Any:
        own = _namespace_of(str(node["name"]), node.get("namespace", enclosing))
        source = _full_name(_short(str(node["name"])), own)
        if source in self.defined:
            return self.defined[source]
        rewritten = {k: v for k, v in node.items() if k != "namespace"}
        rewritten["name"] = self.claim(source)
        if "fields" in node:
            rewritten["fields"] = [{**f, "type": self.rewrite(f["type"], own)}
                                   for f in node["fields"]]
        return rewritten
