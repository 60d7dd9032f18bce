"""JSON form ↔ Avro datum, Avro binary encoding, and the Confluent wire format.

Providers post events (HTTP ingest, batch files) in a JSON form where dates are ``"YYYY-MM-DD"``,
instants RFC 3339 strings and bytes base64; fastavro wants :class:`datetime.date`, aware
:class:`datetime.datetime` and :class:`bytes`. :func:`from_json` and :func:`to_json` convert both
ways and validate while doing so, so a bad input is refused with the path of the failing field
and never its value (``data.enfants[1].date_naissance: not a date (YYYY-MM-DD)``): the HTTP API
turns that into a 4xx and the router into a dead letter.

Besides Avro types, a field may carry constraints as extra attributes, enforced here on its
non-null value: ``minimum`` / ``maximum`` (ints and longs) and ``pattern`` (strings, full match).

Schemas are fastavro-parsed (``fastavro.parse_schema``), e.g. ``SchemaVersion.parsed``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

Schema = dict[str, Any]
"""A fastavro-parsed record schema."""

MAGIC_BYTE = 0
_HEADER = struct.Struct(">BI")
_MAX_SCHEMA_ID = 2**31
_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_INSTANT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(?:\.(?P<fraction>[0-9]+))?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


class ValidationError(ValueError):
    """A JSON document or datum does not fit its schema; ``field`` is the path of the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class DecodeError(ValueError):
    """Bytes that cannot be read as the expected Avro record: they go to the dead-letter topic."""


class FramingError(DecodeError):
    """A Kafka value that is not in the Confluent wire format (magic byte, schema id, payload)."""


def from_json(schema: Schema, data: Any, *, root: str = "data") -> Any:
    """Validate a JSON-form document and turn it into a datum fastavro can write."""
    return _Converter(_named(schema), inbound=True).convert(schema, data, root)


def to_json(schema: Schema, datum: Any, *, root: str = "data") -> Any:
    """Turn a datum (as fastavro reads it) into its JSON form: the exact inverse of from_json.

    Every field is present in the output, nullable ones as ``None`` when unset.
    """
    return _Converter(_named(schema), inbound=False).convert(schema, datum, root)


def encode(schema: Schema, datum: Any) -> bytes:
    """Avro binary encoding of a datum (from :func:`from_json`), without schema or framing."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, datum, strict=True, strict_allow_default=True)
    return buffer.getvalue()


def decode(writer_schema: Schema, reader_schema: Schema | None, payload: bytes) -> Any:
    """Read Avro bytes written with ``writer_schema`` as ``reader_schema`` (schema evolution).

    The whole payload must be consumed: trailing bytes mean the writer schema is the wrong one.
    """
    buffer = io.BytesIO(payload)
    try:
        datum = fastavro.schemaless_reader(buffer, writer_schema, reader_schema)
    except SchemaResolutionError as exc:
        raise DecodeError(f"reader schema cannot read the writer schema: {exc}") from exc
    except (EOFError, StopIteration, ValueError, IndexError, KeyError, OverflowError) as exc:
        raise DecodeError(f"not a valid Avro record for this schema: {exc!r}") from exc
    if buffer.tell() != len(payload):
        raise DecodeError(f"{len(payload) - buffer.tell()} unread bytes after the Avro record")
    return datum


def frame(schema_id: int, payload: bytes) -> bytes:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the Avro payload."""
    if not 0 <= schema_id < _MAX_SCHEMA_ID:
        raise ValueError(f"schema id {schema_id} does not fit a registry id (0 to 2**31-1)")
    return _HEADER.pack(MAGIC_BYTE, schema_id) + payload


def schema_ids(values: Iterable[bytes | None]) -> set[int]:
    """The distinct schema ids the wire-format ``values`` name (any other value names none);
    read from the id bytes alone, since a batch of thousands names a few ids."""
    named = {value[1:_HEADER.size] for value in values
             if value is not None and len(value) >= _HEADER.size and value[0] == MAGIC_BYTE}
    return {int.from_bytes(raw, "big") for raw in named}


def unframe(message: bytes) -> tuple[int, bytes]:
    """Split a Confluent wire-format value into (schema id, Avro payload)."""
    if len(message) < _HEADER.size:
        raise FramingError(
            f"{len(message)} bytes is too short for the Confluent wire format "
            f"(magic byte and 4-byte schema id, then the payload)"
        )
    magic, schema_id = _HEADER.unpack_from(message)
    if magic != MAGIC_BYTE:
        raise FramingError(f"magic byte 0x{magic:02x}, expected 0x00: not Confluent wire format")
    if schema_id >= _MAX_SCHEMA_ID:  # four bytes hold more than a registry id (a Java int)
        raise FramingError(f"schema id {schema_id} beyond any registry id (0 to 2**31-1)")
    return schema_id, bytes(message[_HEADER.size :])


def _named(schema: Schema) -> Mapping[str, Any]:
    """Named types of a parsed schema, to resolve references such as ``"...Personne"``."""
    named = schema.get("__named_schemas") if isinstance(schema, dict) else None
    if named is None:
        raise TypeError("expected a schema parsed with fastavro.parse_schema")
    return named  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Converter:
    """Walks a schema and a value together; ``inbound`` means JSON form → datum."""

    named: Mapping[str, Any]
    inbound: bool

    def convert(self, schema: Any, value: Any, path: str) -> Any:
        """Convert ``value`` described by ``schema``; ``path`` names it in errors."""
        if isinstance(schema, list):
            return self._union(schema, value, path)
        if isinstance(schema, str):
            if schema in self.named:
                return self.convert(self.named[schema], value, path)
            return _PRIMITIVES[schema](value, path, self.inbound)
        logical = _LOGICAL.get(schema.get("logicalType", ""))
        if logical is not None:
            return logical(value, path, self.inbound)
        kind = schema["type"]
        if kind == "record":
            return self._record(schema, value, path)
        if kind in ("array", "map"):
            return self._container(schema, value, path)
        if kind == "enum":
            return _enum(schema["symbols"], value, path)
        if kind == "fixed":
            return _fixed(schema["size"], value, path, self.inbound)
        return self.convert(kind, value, path)

    def _record(self, schema: Any, value: Any, path: str) -> dict[str, Any]:
        """Every field present (or defaulted), no unknown field, constraints respected."""
        if not isinstance(value, Mapping):
            raise ValidationError(path, f"expected an object, got {_describe(value)}")
        fields = schema["fields"]
        names = [f["name"] for f in fields]
        if not value.keys() <= set(names):
            raise ValidationError(path, f"an unknown field (known: {', '.join(names)})")
        out = {}
        for field in fields:
            name, where = field["name"], f"{path}.{field['name']}"
            if name in value:
                raw = value[name]
            elif "default" in field:
                raw = field["default"]
            else:
                raise ValidationError(where, "missing required field")
            out[name] = self.convert(field["type"], raw, where)
            check_field_constraints(field, out[name], where)
        return out

    def _container(self, schema: Any, value: Any, path: str) -> Any:
        """Arrays (JSON lists) and maps (JSON objects with string keys)."""
        if schema["type"] == "array":
            if not isinstance(value, list | tuple):
                raise ValidationError(path, f"expected an array, got {_describe(value)}")
            items = schema["items"]
            return [self.convert(items, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValidationError(path, f"expected an object, got {_describe(value)}")
        values = schema["values"]
        return {k: self.convert(values, v, f"{path}[{k!r}]") for k, v in value.items()}

    def _union(self, branches: list[Any], value: Any, path: str) -> Any:
        """``None`` for a null branch; otherwise the first other branch that accepts the value."""
        if value is None and "null" in branches:
            return None
        others = [b for b in branches if b != "null"]
        if len(others) == 1:
            return self.convert(others[0], value, path)
        reasons = []
        for branch in others:
            try:
                return self.convert(branch, value, path)
            except ValidationError as exc:
                reasons.append(exc.reason)
        raise ValidationError(path, f"matches no type of the union ({'; '.join(reasons)})")


def _describe(value: Any) -> str:
    """An offending value as error messages describe it: by its type, never by itself.

    Refusals end up in CLI output, HTTP answers, logs and dead letters; whatever was typed into
    the wrong field (a NIR, a name) must not travel with them.
    """
    return type(value).__name__


def check_field_constraints(field: Mapping[str, Any], value: Any, path: str) -> None:
    """Enforce the ``minimum``/``maximum``/``pattern`` attributes of a field."""
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in field and value < field["minimum"]:
            raise ValidationError(path, f"below the minimum {field['minimum']}")
        if "maximum" in field and value > field["maximum"]:
            raise ValidationError(path, f"above the maximum {field['maximum']}")
    if isinstance(value, str) and "pattern" in field and not re.fullmatch(field["pattern"], value):
        raise ValidationError(path, f"does not match {field['pattern']}")


def _expect(value: Any, types: type | tuple[type, ...], name: str, path: str) -> None:
    """Refuse a value of the wrong Python type (a bool is never a number here)."""
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ValidationError(path, f"expected {name}, got {_describe(value)}")


def _null(value: Any, path: str, _inbound: bool) -> None:
    if value is not None:
        raise ValidationError(path, f"expected null, got {_describe(value)}")


def _boolean(value: Any, path: str, _inbound: bool) -> bool:
    _expect(value, bool, "a boolean", path)
    return bool(value)


def _integer(kind: str) -> Callable[[Any, str, bool], int]:
    """An Avro int (32-bit) or long (64-bit) converter."""
    low, high = _RANGES[kind]

    def convert(value: Any, path: str, _inbound: bool) -> int:
        _expect(value, int, f"an {kind}" if kind == "int" else "a long", path)
        if not low <= value <= high:
            raise ValidationError(path, f"out of range for an Avro {kind}")
        return int(value)

    return convert


def _floating(value: Any, path: str, _inbound: bool) -> float:
    _expect(value, (int, float), "a number", path)
    try:
        return float(value)
    except OverflowError:  # JSON integers have no bound; a double stops near 1.8e308
        raise ValidationError(path, "out of range for an Avro double") from None


def _string(value: Any, path: str, _inbound: bool) -> str:
    _expect(value, str, "a string", path)
    if not value.isascii():
        try:  # JSON may carry a lone surrogate ("\ud800"), which no Avro writer can encode
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(path, "not valid Unicode text (a lone surrogate)") from None
    return str(value)


def _bytes(value: Any, path: str, inbound: bool) -> Any:
    """Bytes travel as base64 in the JSON form."""
    if not inbound:
        _expect(value, bytes, "bytes", path)
        return base64.b64encode(value).decode("ascii")
    _expect(value, str, "a base64 string", path)
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValidationError(path, "not base64") from None


def _fixed(size: int, value: Any, path: str, inbound: bool) -> Any:
    converted = _bytes(value, path, inbound)
    if len(converted if inbound else value) != size:
        raise ValidationError(path, f"expected exactly {size} bytes")
    return converted


def _enum(symbols: list[str], value: Any, path: str) -> str:
    if not isinstance(value, str) or value not in symbols:
        raise ValidationError(path, f"not one of {', '.join(symbols)}")
    return value


def _date(value: Any, path: str, inbound: bool) -> Any:
    """Dates are ``YYYY-MM-DD`` strings in the JSON form, :class:`date` in the datum."""
    if not inbound:
        if not isinstance(value, date) or isinstance(value, datetime):
            raise ValidationError(path, f"expected a date, got {_describe(value)}")
        return value.isoformat()
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValidationError(path, "not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(path, "not a date (YYYY-MM-DD)") from None


def rfc3339_millis(value: datetime) -> str:
    """An aware instant as RFC 3339 in UTC with milliseconds (``…T10:00:00.123Z``): the one
    text form of instants on the bus (JSON documents, CloudEvents times, expiries)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _instant(value: Any, path: str, inbound: bool) -> Any:
    """Instants are RFC 3339 strings (rendered in UTC with milliseconds) or aware datetimes."""
    if not inbound:
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise ValidationError(path, f"expected an aware datetime, got {_describe(value)}")
        if value.microsecond % 1000:
            raise ValidationError(path, "more precise than milliseconds")
        return rfc3339_millis(value)
    match = _INSTANT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValidationError(path, "not an RFC 3339 instant")
    if (match["fraction"] or "").ljust(3, "0")[3:].strip("0"):
        raise ValidationError(path, "more precise than milliseconds")
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except ValueError:
        raise ValidationError(path, "not an RFC 3339 instant") from None


_PRIMITIVES: dict[str, Callable[[Any, str, bool], Any]] = {
    "null": _null,
    "boolean": _boolean,
    "int": _integer("int"),
    "long": _integer("long"),
    "float": _floating,
    "double": _floating,
    "string": _string,
    "bytes": _bytes,
}
_LOGICAL: dict[str, Callable[[Any, str, bool], Any]] = {
    "date": _date,
    "timestamp-millis": _instant,
}
