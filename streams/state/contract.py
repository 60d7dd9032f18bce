"""Contracts: who may receive which fields of which datasets, for what purpose, for how long.

A contract is written by an operator as a YAML file (one contract per file, a folder holds
several) and recorded on the compacted ``bus.contracts`` topic (see
:mod:`streams.state.contract_store`). The file keys are the interface with operators::

    id: lyon-cantine-2026                # [a-z0-9-]{3,64}, unique
    subscriber: ville-de-lyon            # [a-z0-9-]{3,64}, one SIRET for good
    subscriber_siret: "21690123100011"   # quoted: YAML would read it as a number
    purpose: Tarification sociale de la restauration scolaire   # at most 300 characters
    legal_basis: CRPA art. L114-8 ; délibération n° 2026-114   # at most 1,000
    datasets:                            # dataset id -> the only fields delivered
      quotient_familial: [quotient_familial, annee, mois]
    consent: opt_in                      # opt_in | opt_out | not_required
    population: enrolled                 # enrolled | all
    retention: P90D                      # ISO 8601 duration, at most P10Y
    valid_from: 2026-01-01
    valid_until: 2027-12-31              # optional
    delivery:                            # optional: the bus pushes deliveries itself
      webhook:
        url: https://api.example.fr/circulation   # the subscriber's HTTPS endpoint
        secret_env: LYON_WEBHOOK_SECRET  # the variable holding the signing secret, never it

:func:`streams.state.contract_files.validate_paths` checks files without touching Kafka and
reports *every* problem, each with its file, line, key and reason. ``revoked`` and ``revoked_at``
belong to the recorded contract only: they are set by ``circulation contracts revoke``, never
written in a file.

Retention is an ISO 8601 duration (``P90D``, ``P1Y``, ``P6M``, ``PT12H``, ``P1Y2M10DT2H30M``)
turned into milliseconds for the delivery topic's ``retention.ms`` with a fixed convention:
1Y = 365 days, 1M = 30 days, 1W = 7 days. Calendar-exact arithmetic would make the same
contract's retention depend on the day it is applied; a convention keeps it reproducible.

Every value is bounded (:data:`MAX_RETENTION`, :data:`MAX_PURPOSE`, :data:`MAX_LEGAL_BASIS`)
and every pattern must match the whole value (a trailing newline is not a name). A refusal
names the key and says what is expected, never repeating the value: an operator may paste an
identifier in the wrong key.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from schemas.catalog import Catalog, UnknownDataset
from schemas.codec import rfc3339_millis
from schemas.identifiers import InvalidIdentifier, validate_siret
from schemas.nir_detection import TooDeep, contains_nir, nir_locations
from schemas.projection import (
    DeliverySchema,
    delivery_namespace,
    delivery_schema,
    field_names,
    full_name,
    project_schema,
)
from schemas.registration import value_subject

ConsentMode = Literal["opt_in", "opt_out", "not_required"]
"""How a contract reads a person's recorded consent (:func:`streams.routing.rules.decide`)."""
PopulationMode = Literal["enrolled", "all"]
"""Whether a contract follows everyone (``all``) or only the persons its subscriber enrolled."""

FILE_KEYS = ("id", "subscriber", "subscriber_siret", "purpose", "legal_basis", "datasets",
             "consent", "population", "retention", "valid_from", "valid_until", "delivery")
"""The keys a contract file may hold, in the order they are written back."""
RECORD_ONLY_KEYS = ("revoked", "revoked_at")
"""Keys of the recorded contract that only ``contracts revoke`` sets."""
YAML_SUFFIXES = (".yaml", ".yml")

_NAME = re.compile(r"[a-z0-9-]{3,64}")
_DURATION = re.compile(
    r"P(?=[0-9]|T[0-9])(?:(?P<Y>[0-9]+)Y)?(?:(?P<M>[0-9]+)M)?(?:(?P<W>[0-9]+)W)?"
    r"(?:(?P<D>[0-9]+)D)?(?:T(?=[0-9])(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)S)?)?"
)
"""Matched with ``fullmatch`` only: ``$`` would also match before a final newline."""
_DAY_MS = 86_400_000
_UNIT_MS = {"Y": 365 * _DAY_MS, "M": 30 * _DAY_MS, "W": 7 * _DAY_MS, "D": _DAY_MS,
            "h": 3_600_000, "m": 60_000, "s": 1_000}
_MINUTE_MS = 60_000

MAX_RETENTION = timedelta(days=10 * 365)
"""The longest retention a contract may set: ten years, with the file convention (3,650 days).

Long enough for the longest periods for which administrations keep working files; short enough
to catch a slip of the unit (``P90Y`` for ``P90D``). A delivery topic is where a subscriber
collects its data, not an archive: keeping data longer is the subscriber's own processing,
under its own retention rules.
"""
_MAX_RETENTION_MS = int(MAX_RETENTION.total_seconds() * 1000)
MAX_PURPOSE = 300
"""Characters of ``purpose``: a purpose is one sentence, as in a register of processing."""
MAX_LEGAL_BASIS = 1000
"""Characters of ``legal_basis``: the articles and texts cited, not the texts themselves.

Both are written into the delivery schema's documentation, which every subscriber reads.
"""


def duration_ms(text: str) -> int:
    """Milliseconds of an ISO 8601 duration (1Y = 365 days, 1M = 30 days); positive only.

    Raises ``ValueError`` for anything unparseable, zero, or beyond :data:`MAX_RETENTION`; the
    message never repeats the text.
    """
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("not an ISO 8601 duration (e.g. P90D, P1Y, P6M, PT12H, "
                         "P1Y2M10DT2H30M; whole numbers, upper-case designators)")
    total = sum(int(value) * _UNIT_MS[unit] for unit, value in match.groupdict().items()
                if value is not None)
    if total == 0:
        raise ValueError("the retention is zero: data would be deleted on arrival")
    if total > _MAX_RETENTION_MS:
        raise ValueError(f"the retention must be at most {MAX_RETENTION.days} days "
                         f"(P10Y, with 1Y = 365 days)")
    return total


def segment_ms(retention: int) -> int:
    """Kafka ``segment.ms`` for a retention: min(retention/10, 1 day), at least 1 minute.

    Kafka deletes whole closed segments only, so a segment that lives as long as the retention
    would keep expired data up to twice as long; rolling much sooner makes expiry real.
    """
    return max(_MINUTE_MS, min(retention // 10, _DAY_MS))


NIR_REASON = "holds what looks like a NIR: a contract names no person"
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
"""Unicode control, format (bidirectional overrides, zero-width), surrogate, private-use and
unassigned characters: a contract's texts are shown to people and sent as headers."""


def _refuse_identifiers(value: str) -> None:
    """A contract's words go into topic names, delivery headers and the audit trail, kept for
    good: a NIR typed into one is refused, by field (contract files are scanned whole, first,
    by :func:`nir_problems`)."""
    if contains_nir(value):
        raise ValueError(NIR_REASON)


def delivery_topic(subscriber: str, contract_id: str) -> str:
    """The delivery topic of a subscriber's contract, named without reading the contract: a
    subscriber's client may read its deliveries and nothing else, not even ``bus.contracts``."""
    return f"deliver.{subscriber}.{contract_id}"


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix refused, not a secret)
"""How Standard Webhooks secrets are written: one pasted into a contract is refused."""
_ENV_NAME_REASON = ("must name the environment variable that holds the secret (upper-case "
                    "letters, digits and underscores), never hold the secret itself")


class Webhook(BaseModel):
    """A subscriber's webhook endpoint; its signing secret is read from the environment.

    A contract is published to operators and subscribers and kept on a topic for good, so a
    secret must never be written in it: ``secret_env`` names the variable the sink reads, and a
    value shaped like a secret, or a URL carrying credentials, is refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(min_length=1, max_length=2000)
    secret_env: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an absolute https:// URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials: the sink signs each call instead")
        _refuse_identifiers(value)
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        if value.startswith(_SECRET_PREFIX) or not _ENV_NAME.fullmatch(value):
            raise ValueError(_ENV_NAME_REASON)
        return value


class Delivery(BaseModel):
    """How the bus pushes a contract's deliveries to its subscriber (optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    webhook: Webhook | None = None


class Contract(BaseModel):
    """One contract as recorded on ``bus.contracts``; build it from a file or from a record.

    Validated on construction: id and subscriber patterns, SIRET (Luhn), ISO 8601 retention,
    non-empty dataset and field lists, ``valid_until`` not before ``valid_from``. The datasets
    and fields are checked against a :class:`Catalog` when one is passed as validation context
    (``Contract.model_validate(data, context={"catalog": catalog})``, or :meth:`checked`): a
    record read back from the topic was checked when applied, and must still load when the
    catalog has evolved since.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str
    subscriber: str
    subscriber_siret: str
    purpose: str = Field(min_length=1, max_length=MAX_PURPOSE)
    legal_basis: str = Field(min_length=1, max_length=MAX_LEGAL_BASIS)
    datasets: dict[str, tuple[str, ...]]
    consent: ConsentMode
    population: PopulationMode
    retention: str
    valid_from: date
    valid_until: date | None = None
    revoked: bool = False
    revoked_at: datetime | None = None
    delivery: Delivery | None = None

    @classmethod
    def checked(cls, data: Mapping[str, Any], catalog: Catalog) -> Contract:
        """Validate ``data`` including its datasets and fields against ``catalog``."""
        return cls.model_validate(data, context={"catalog": catalog})

    @field_validator("id", "subscriber")
    @classmethod
    def _name_pattern(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 3 to 64 lower-case letters, digits or hyphens")
        _refuse_identifiers(value)
        return value

    @field_validator("subscriber_siret", mode="before")
    @classmethod
    def _siret(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("a SIRET must be a quoted string (unquoted, YAML reads a number "
                             "and may drop leading zeros)")
        try:
            return validate_siret(value)
        except InvalidIdentifier as exc:
            raise ValueError(exc.reason) from None

    @field_validator("purpose", "legal_basis")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        if any(unicodedata.category(char) in _INVISIBLE for char in value):
            raise ValueError("holds control or invisible formatting characters (it travels in "
                             "every delivery's headers)")
        _refuse_identifiers(value)
        return value.strip()

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, value: dict[str, tuple[str, ...]], info: ValidationInfo,
                  ) -> dict[str, tuple[str, ...]]:
        if nir_locations(value):  # dataset and field names become schema names and headers
            raise ValueError(NIR_REASON)
        _raise_problems(shape_problems(value), value, _context_catalog(info))
        return value

    @model_validator(mode="after")
    def _against_catalog(self, info: ValidationInfo) -> Contract:
        """With a catalog in the context, every dataset and field must exist in it."""
        catalog = _context_catalog(info)
        if catalog is not None:
            _raise_problems(catalog_problems(self.datasets, catalog, self.consent),
                            self.datasets, catalog)
        return self

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        duration_ms(value)
        return value

    @field_validator("valid_from", "valid_until", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        """Only real dates or ``YYYY-MM-DD``: pydantic would read a number as a timestamp."""
        if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
            return value
        if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return value
        raise ValueError("expected a date YYYY-MM-DD")

    @field_validator("valid_until")
    @classmethod
    def _window(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value < start:
            raise ValueError(f"valid_until {value} is before valid_from {start}")
        return value

    @field_validator("revoked_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("revoked_at must be an aware (UTC) instant")
        return value

    @model_validator(mode="after")
    def _revocation(self) -> Contract:
        """A revocation always says when, and only a revoked contract has a revocation time."""
        if (self.revoked_at is not None) != self.revoked:
            raise ValueError("revoked_at is set exactly when the contract is revoked")
        return self

    @property
    def retention_ms(self) -> int:
        """The retention in milliseconds, for the delivery topic's ``retention.ms``."""
        return duration_ms(self.retention)

    @property
    def delivery_topic(self) -> str:
        """``deliver.<subscriber>.<contract id>``: the only topic the subscriber reads."""
        return delivery_topic(self.subscriber, self.id)

    @property
    def delivery_subject(self) -> str:
        """Registry subject of the delivery topic's values (Confluent TopicNameStrategy)."""
        return value_subject(self.delivery_topic)

    @property
    def erasure_subject(self) -> str:
        """Registry subject of the erasure notices on the delivery topic (a record of its own,
        not a version of the delivery schema)."""
        return f"{self.delivery_topic}-erasure_notice"

    def topic_config(self) -> dict[str, str]:
        """Delivery topic configuration: delete (never compact) what the retention expires."""
        retention = self.retention_ms
        return {"cleanup.policy": "delete", "retention.ms": str(retention),
                "segment.ms": str(segment_ms(retention))}

    def is_active(self, on: date) -> bool:
        """Whether events may be delivered on day ``on``: in force and not revoked."""
        if self.revoked:
            return False
        return self.valid_from <= on and (self.valid_until is None or on <= self.valid_until)

    def state(self, on: date) -> str:
        """One word for operators: active, revoked, expired or pending."""
        if self.revoked:
            return "revoked"
        if on < self.valid_from:
            return "pending"
        return "active" if self.is_active(on) else "expired"

    def revoke(self, at: datetime) -> Contract:
        """This contract revoked at ``at`` (cut to milliseconds, as the record stores it)."""
        instant = at.astimezone(UTC)
        instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
        return Contract.model_validate({**self.model_dump(), "revoked": True,
                                        "revoked_at": instant})

    def projected_records(self, catalog: Catalog) -> list[dict[str, Any]]:
        """One record schema per dataset: its latest schema cut down to the contract's fields."""
        records = []
        for dataset_id, fields in self.datasets.items():
            source = catalog.dataset(dataset_id).latest.raw
            doc = (f"{dataset_id} as delivered to {self.subscriber} (SIRET "
                   f"{self.subscriber_siret}) under contract {self.id}, for: {self.purpose}. "
                   f"Legal basis: {self.legal_basis}. Only these fields are delivered: "
                   f"{', '.join(f for f in field_names(source) if f in fields)}.")
            records.append(project_schema(
                source, fields, namespace=delivery_namespace(self.id, dataset_id), doc=doc,
                annotations={"contract": self.id, "subscriber": self.subscriber,
                             "dataset": dataset_id, "projected_from": full_name(source)},
            ))
        return records

    def delivery_schema(self, catalog: Catalog) -> DeliverySchema:
        """The delivery topic's value schema: the projected record, or their union."""
        return delivery_schema(self.projected_records(catalog))

    def to_record(self) -> dict[str, Any]:
        """The JSON form of the bus ``contract`` record (``codec.from_json`` makes it a datum)."""
        return {
            "id": self.id,
            "subscriber": self.subscriber,
            "subscriber_siret": self.subscriber_siret,
            "purpose": self.purpose,
            "legal_basis": self.legal_basis,
            "datasets": {name: list(fields) for name, fields in self.datasets.items()},
            "consent": self.consent,
            "population": self.population,
            "retention": self.retention,
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "revoked": self.revoked,
            "revoked_at": rfc3339_millis(self.revoked_at) if self.revoked_at else None,
            "delivery": self.delivery.model_dump() if self.delivery else None,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Contract:
        """A contract from the JSON form of a bus ``contract`` record (``codec.to_json``)."""
        return cls.model_validate(dict(record))

    def to_file(self) -> dict[str, Any]:
        """The contract as an operator writes it (plus the revocation, once revoked)."""
        data: dict[str, Any] = {key: getattr(self, key) for key in FILE_KEYS}
        data["datasets"] = {name: list(fields) for name, fields in self.datasets.items()}
        if data["valid_until"] is None:
            del data["valid_until"]
        if self.delivery is None:
            del data["delivery"]
        else:
            data["delivery"] = self.delivery.model_dump(exclude_none=True)
        if self.revoked:
            data["revoked"] = True
            data["revoked_at"] = rfc3339_millis(self.revoked_at) if self.revoked_at else None
        return data


Place = tuple[str | int, ...]
"""Where a problem is: keys and list positions from the document's root, as pydantic's ``loc``."""
Problem = tuple[Place, str]
_NESTED_KEYS = {"delivery": ("webhook",), "delivery.webhook": ("url", "secret_env")}
"""The keys the bus defines below a file key, named in problems like the file keys."""
"""A place and the reason, in operators' words, never repeating the value found there."""


def place_name(place: Sequence[Any], document: Any = None,
               known_datasets: Collection[str] = ()) -> str:
    """A place as operators read it (``datasets.quotient_familial[1]``), naming only what the bus
    defines: the keys of a contract file and the datasets of the catalog.

    Any other key is input, and an operator may paste an identifier anywhere: it is shown by its
    position instead (``datasets[2]``: the third dataset; ``[11]``: the twelfth key).
    """
    shown = ""
    container = document
    for depth, part in enumerate(place):
        named = isinstance(part, str) and (
            (depth == 0 and part in FILE_KEYS + RECORD_ONLY_KEYS)
            or (depth == 1 and shown == "datasets" and part in known_datasets)
            or part in _NESTED_KEYS.get(shown, ()))
        if named:
            shown += f".{part}" if shown else str(part)
        else:
            shown += f"[{part if isinstance(part, int) else _position(container, part)}]"
        container = _child(container, part)
    return shown


def _position(container: Any, key: Any) -> str:
    """The position of ``key`` among a mapping's keys, or ``?`` when it is not one of them."""
    keys = list(container) if isinstance(container, Mapping) else []
    return str(keys.index(key)) if key in keys else "?"


def _child(container: Any, part: Any) -> Any:
    if isinstance(container, Mapping):
        return container.get(part)
    if isinstance(container, Sequence) and isinstance(part, int) and 0 <= part < len(container):
        return container[part]
    return None


def _context_catalog(info: ValidationInfo) -> Catalog | None:
    catalog = info.context.get("catalog") if isinstance(info.context, dict) else None
    return catalog if isinstance(catalog, Catalog) else None


def _raise_problems(problems: list[Problem], datasets: Any, catalog: Catalog | None) -> None:
    """One ``ValueError`` listing ``problems`` (pydantic reports it under ``datasets``)."""
    if problems:
        known = [d.id for d in catalog.datasets()] if catalog is not None else []
        raise ValueError("; ".join(f"{place_name(place, {'datasets': datasets}, known)}: "
                                   f"{reason}" for place, reason in problems))


def shape_problems(datasets: Any) -> list[Problem]:
    """Empty lists and repeated fields: they can only be mistakes.

    Skips what it cannot read (pydantic reports wrong types), like :func:`catalog_problems`.
    """
    if not isinstance(datasets, Mapping):
        return []
    if not datasets:
        return [(("datasets",), "names no dataset: a contract covers at least one")]
    problems: list[Problem] = []
    for dataset_id, fields in datasets.items():
        if not isinstance(fields, Sequence) or isinstance(fields, str):
            continue
        if not fields:
            problems.append((("datasets", dataset_id), "lists no field"))
        first: dict[str, int] = {}
        for position, name in enumerate(fields):
            if isinstance(name, str) and name in first:
                problems.append((("datasets", dataset_id, position),
                                 f"this field is listed twice (also at [{first[name]}])"))
            elif isinstance(name, str):
                first[name] = position
    return problems


def catalog_problems(datasets: Any, catalog: Catalog, consent: Any = None) -> list[Problem]:
    """Each dataset or field the catalog does not know.

    Tolerates a malformed ``datasets`` value (it only checks the entries it can read), so that
    a file with several problems gets all of them reported. With ``consent``, also refuses a
    consent requirement on datasets about companies: consent is given by persons.
    """
    if not isinstance(datasets, Mapping):
        return []
    problems: list[Problem] = []
    for dataset_id, fields in datasets.items():
        try:
            dataset = catalog.dataset(str(dataset_id))
        except UnknownDataset:
            known = ", ".join(d.id for d in catalog.datasets())
            problems.append((("datasets", dataset_id), f"unknown dataset (known: {known})"))
            continue
        known_fields = field_names(dataset.latest.raw)
        for position, name in enumerate(fields if isinstance(fields, list | tuple) else ()):
            if isinstance(name, str) and name not in known_fields:
                problems.append((("datasets", dataset_id, position),
                                 f"unknown field (dataset {dataset.id} v{dataset.latest.version} "
                                 f"has: {', '.join(known_fields)})"))
        if consent in ("opt_in", "opt_out") and dataset.subject_kind == "company":
            problems.append((("consent",), f"{consent} needs a person's consent, but "
                                           f"{dataset.id} is about companies: use not_required"))
    return problems


def nir_problems(document: Any) -> list[tuple[str, str]]:
    """(key, reason) for every string of a contract document that holds a NIR.

    A contract is published to operators and subscribers alike (its texts go into the delivery
    schema's documentation): a person's number has no place in it. The SIRET is not scanned.
    """
    if not isinstance(document, Mapping):
        return []
    try:
        places = nir_locations(document, skip={"subscriber_siret"})
    except TooDeep as exc:
        return [(exc.field, exc.reason)]
    return [(place, NIR_REASON) for place in places]
