"""The event catalog: every dataset and bus record schema shipped in ``schemas/catalog/``.

Layout (checked at load, so a misplaced file fails loudly instead of silently vanishing):

- ``<provider>/<dataset>.v<N>.avsc`` — a dataset published by that provider alone;
- ``shared/<dataset>.v<N>.avsc`` — a dataset published by several providers (e.g. CNAF and MSA);
- ``bus/<name>.v<N>.avsc`` — the bus's own records (audit, consent, contract...).

Each file carries a ``"circulation"`` attribute (Avro allows extra attributes) that repeats its
identity, so a schema fetched back from the registry still says which dataset it is, who may
publish it and whether its subject is a person or a company.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any, Literal, cast

import fastavro
from fastavro.schema import SchemaParseException

SubjectKind = Literal["person", "company"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("person", "company")
BUS_FOLDER = "bus"
SHARED_FOLDER = "shared"
_FILE_NAME = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


class CatalogError(Exception):
    """A shipped schema file is malformed or misplaced: a packaging bug, not a runtime input."""


class UnknownDataset(LookupError):
    """No dataset of that id exists in the catalog."""


class NotPublishedBy(LookupError):
    """The dataset exists, but the given provider is not one of its publishers."""


class UnknownBusRecord(LookupError):
    """No bus record of that name exists in the catalog."""


class UnknownVersion(LookupError):
    """The dataset or bus record has no schema of that version."""


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a schema: its JSON text (what gets registered) and its fastavro form."""

    version: int
    text: str = field(repr=False)
    """The schema as compact JSON, as a schema registry expects it."""
    parsed: dict[str, Any] = field(repr=False)
    """``fastavro.parse_schema`` of it, for the codec (do not mutate)."""

    @property
    def raw(self) -> dict[str, Any]:
        """The schema as a JSON object (a fresh copy, free to modify)."""
        return cast(dict[str, Any], json.loads(self.text))

    @property
    def full_name(self) -> str:
        """Avro full name of the record, e.g. ``fr.gouv.circulation.bus.AuditRecord``."""
        return cast(str, self.parsed["name"])


@dataclass(frozen=True, kw_only=True)
class _Versioned:
    """Something with numbered schema versions 1..N."""

    versions: Mapping[int, SchemaVersion]

    @property
    def latest(self) -> SchemaVersion:
        """The highest version: the one producers should write."""
        return self.versions[max(self.versions)]

    def version(self, number: int) -> SchemaVersion:
        """A given version; :class:`UnknownVersion` when it was never shipped."""
        try:
            return self.versions[number]
        except KeyError:
            known = ", ".join(str(v) for v in sorted(self.versions))
            raise UnknownVersion(f"no version {number} (known: {known})") from None


@dataclass(frozen=True, kw_only=True)
class Dataset(_Versioned):
    """A dataset (event type) that providers publish, e.g. ``quotient_familial``."""

    id: str
    providers: tuple[str, ...]
    subject_kind: SubjectKind


@dataclass(frozen=True, kw_only=True)
class BusRecord(_Versioned):
    """A record type the bus itself writes, e.g. ``audit``."""

    name: str


@dataclass(frozen=True)
class Catalog:
    """All datasets and bus records, looked up by id; build it with :meth:`Catalog.load`."""

    _datasets: Mapping[str, Dataset]
    _bus_records: Mapping[str, BusRecord]

    @classmethod
    def load(cls, root: Traversable | None = None) -> Catalog:
        """Parse every ``.avsc`` under ``root`` (default: the files shipped in this package)."""
        root = root if root is not None else resources.files("schemas") / "catalog"
        datasets: dict[str, list[tuple[str, SchemaVersion]]] = {}
        bus: dict[str, list[SchemaVersion]] = {}
        for folder, name, version in _schema_files(root):
            if folder == BUS_FOLDER:
                bus.setdefault(name, []).append(version)
            else:
                datasets.setdefault(name, []).append((folder, version))
        return cls(
            MappingProxyType({n: _dataset(n, vs) for n, vs in sorted(datasets.items())}),
            MappingProxyType({n: _bus_record(n, vs) for n, vs in sorted(bus.items())}),
        )

    def datasets(self) -> tuple[Dataset, ...]:
        """Every dataset, sorted by id."""
        return tuple(self._datasets.values())

    def dataset(self, dataset_id: str) -> Dataset:
        """The dataset of that id; :class:`UnknownDataset` otherwise."""
        try:
            return self._datasets[dataset_id]
        except KeyError:
            known = ", ".join(self._datasets)
            raise UnknownDataset(f"unknown dataset {dataset_id!r} (known: {known})") from None

    def providers(self) -> tuple[str, ...]:
        """Every provider that publishes at least one dataset, sorted."""
        return tuple(sorted({p for d in self._datasets.values() for p in d.providers}))

    def datasets_of(self, provider: str) -> tuple[Dataset, ...]:
        """The datasets a provider publishes (empty for an unknown provider)."""
        return tuple(d for d in self._datasets.values() if provider in d.providers)

    def topic_for(self, provider: str, dataset_id: str) -> str:
        """The provider topic ``provider.<provider>.<dataset>``, only if it may publish it."""
        dataset = self.dataset(dataset_id)
        if provider not in dataset.providers:
            raise NotPublishedBy(
                f"provider {provider!r} does not publish dataset {dataset_id!r} "
                f"(published by: {', '.join(dataset.providers)})"
            )
        return f"provider.{provider}.{dataset_id}"

    def provider_topics(self) -> list[str]:
        """Every provider topic the catalog allows, in a stable order."""
        return sorted(self.topic_for(provider, dataset.id)
                      for dataset in self.datasets() for provider in dataset.providers)

    def bus_records(self) -> tuple[BusRecord, ...]:
        """Every bus record, sorted by name."""
        return tuple(self._bus_records.values())

    def bus_record(self, name: str) -> BusRecord:
        """The bus record of that name; :class:`UnknownBusRecord` otherwise."""
        try:
            return self._bus_records[name]
        except KeyError:
            known = ", ".join(self._bus_records)
            raise UnknownBusRecord(f"unknown bus record {name!r} (known: {known})") from None


def _schema_files(root: Traversable) -> Iterator[tuple[str, str, SchemaVersion]]:
    """Yield (folder, name, version) for every ``<folder>/<name>.v<N>.avsc`` under ``root``."""
    for folder in sorted(root.iterdir(), key=lambda t: t.name):
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir(), key=lambda t: t.name):
            if not file.name.endswith(".avsc"):
                continue
            where = f"{folder.name}/{file.name}"
            match = _FILE_NAME.fullmatch(file.name)
            if match is None:
                raise CatalogError(f"{where}: file name must be <name>.v<N>.avsc")
            version = _parse(where, file.read_text(encoding="utf-8"), int(match["version"]))
            _check_identity(where, folder.name, match["name"], version)
            yield folder.name, match["name"], version


def _parse(where: str, text: str, number: int) -> SchemaVersion:
    """Parse one file's JSON with fastavro, turning any failure into a :class:`CatalogError`."""
    try:
        raw = json.loads(text)
        parsed = fastavro.parse_schema(raw)
    except (ValueError, TypeError, KeyError, SchemaParseException) as exc:
        raise CatalogError(f"{where}: not a valid Avro schema: {exc}") from exc
    if raw.get("type") != "record" or not isinstance(raw.get("circulation"), dict):
        raise CatalogError(f"{where}: must be a record with a 'circulation' attribute")
    text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    return SchemaVersion(number, text, cast(dict[str, Any], parsed))


def _check_identity(where: str, folder: str, name: str, version: SchemaVersion) -> None:
    """The ``circulation`` attribute must agree with the file's name and folder."""
    meta = version.raw["circulation"]
    key = "bus_record" if folder == BUS_FOLDER else "dataset"
    if meta.get(key) != name or meta.get("version") != version.version:
        expected = f"{key}={name!r}, version={version.version}"
        raise CatalogError(f"{where}: its 'circulation' attribute must say {expected}")
    if folder == BUS_FOLDER:
        return
    providers = meta.get("providers")
    if not isinstance(providers, list) or not all(
        isinstance(p, str) and _IDENTIFIER.fullmatch(p) for p in providers
    ):
        raise CatalogError(f"{where}: 'providers' must be a list of provider ids")
    well_placed = len(providers) > 1 if folder == SHARED_FOLDER else providers == [folder]
    if not well_placed:
        raise CatalogError(
            f"{where}: a dataset lives in its only provider's folder, or in "
            f"'{SHARED_FOLDER}/' when several providers publish it (providers: {providers})"
        )
    if meta.get("subject_kind") not in SUBJECT_KINDS:
        raise CatalogError(f"{where}: 'subject_kind' must be one of {SUBJECT_KINDS}")


def _versions(what: str, versions: list[SchemaVersion]) -> Mapping[int, SchemaVersion]:
    """Versions must run 1..N without gaps and keep the same record name."""
    numbers = sorted(v.version for v in versions)
    if numbers != list(range(1, len(numbers) + 1)):
        raise CatalogError(f"{what}: versions must be 1..N without gaps, found {numbers}")
    if len({v.full_name for v in versions}) != 1:
        raise CatalogError(f"{what}: every version must keep the same record name")
    return MappingProxyType({v.version: v for v in sorted(versions, key=lambda v: v.version)})


def _dataset(dataset_id: str, found: list[tuple[str, SchemaVersion]]) -> Dataset:
    """Assemble a dataset; all its versions must agree on providers and subject kind."""
    metas = {(f, tuple(v.raw["circulation"]["providers"])) for f, v in found}
    kinds = {v.raw["circulation"]["subject_kind"] for _, v in found}
    if len(metas) != 1 or len(kinds) != 1:
        raise CatalogError(f"{dataset_id}: versions disagree on folder, providers or subject kind")
    ((_, providers),) = metas
    versions = _versions(dataset_id, [v for _, v in found])
    kind = cast(SubjectKind, kinds.pop())
    return Dataset(id=dataset_id, providers=providers, subject_kind=kind, versions=versions)


def _bus_record(name: str, found: list[SchemaVersion]) -> BusRecord:
    """Assemble a bus record from its versions."""
    return BusRecord(name=name, versions=_versions(f"{BUS_FOLDER}/{name}", found))
