"""Versioned event schemas and the validation every source record goes through.

Validation is the boundary rule of docs/semantics.md: a record either becomes a typed
event or an :class:`Invalid` with a machine-readable ``kind`` and a one-line
``detail``. Nothing is dropped and nothing is coerced into a different value.
What the boundary accepts, exactly:

* ``STRING``: a JSON string of valid Unicode (a ``\\ud800`` escape without its
  pair is refused). Id and key fields must also be non-empty.
* ``FLOAT64``: a JSON number (an int is accepted only when it is exactly
  representable as a double, ``|x| <= 2**53``); booleans are not numbers.
  ``-0.0`` is read as ``0.0``: the same value, spelled once, so that max and
  sum are bit-identical on every engine.
* ``TIMESTAMP_MS``: UTC epoch milliseconds as a JSON integer, an aware
  ``datetime`` (Parquet timestamps), or an ISO-8601 string of exactly the form
  ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`` in ASCII digits. A
  string without an offset, or a fraction finer than a millisecond that is
  not zero, is rejected: truncating it would change the event's time.
* ``BOOL``: a JSON ``true`` or ``false`` (not 0/1, not a string).
* ``null`` for a required field counts as missing; an optional field
  (``required=False``) that is absent or null is null; a field the schema does not
  name is rejected as ``unknown_field`` (a schema change, not data).
"""

from __future__ import annotations

import enum
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

#: Event times must fall in [MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS). Epoch 0 and
#: earlier are excluded because Flink's event-time operators silently drop them
#: (measured on Flink 2.x); 2100 bounds typos like a seconds value read as milliseconds x1000.
MIN_EVENT_TIME_MS = 1
MAX_EVENT_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_EXACT_INT_AS_DOUBLE = 2**53

#: How far ahead of the wall clock an event time may be when the record crosses
#: the boundary (sources pass ``not_after_ms = now + this`` to :meth:`EventSchema.validate`).
#: Producer clocks drift by seconds, so an hour never rejects a real event; a
#: time-zone mistake or a unit typo is hours to years ahead, and on the stream
#: path one such event would advance the watermark and make every later event
#: ``late`` until real time caught up. The bound caps that damage at an hour.
DEFAULT_MAX_FUTURE_MS = 3_600_000


class FieldType(enum.Enum):
    STRING = "string"
    FLOAT64 = "float64"
    INT64 = "int64"
    TIMESTAMP_MS = "timestamp_ms"
    BOOL = "bool"


class InvalidKind(str, enum.Enum):
    """Why a record was rejected; the dead-letter outputs carry this word."""

    UNPARSEABLE = "unparseable"  # not a JSON object, or a value that cannot be read (bad timestamp text)
    MISSING_FIELD = "missing_field"  # a required field is absent or null
    WRONG_TYPE = "wrong_type"  # present, but of another type
    OUT_OF_DOMAIN = "out_of_domain"  # right type, value outside the field's rule
    UNKNOWN_FIELD = "unknown_field"  # a field the schema version does not name


@dataclass(frozen=True)
class Invalid:
    """A rejected record: the reason kind, the field at fault (if any), and a one-line detail."""

    kind: InvalidKind
    field: str | None
    detail: str


#: A domain rule returns None when the (already typed) value is fine, else what is wrong.
DomainRule = Callable[[Any], str | None]


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    rule: DomainRule | None = None
    required: bool = True


@dataclass(frozen=True)
class EventSchema:
    """A named, versioned record layout with its event id, entity keys and event time."""

    name: str
    version: int
    fields: tuple[Field, ...]
    event_id: str
    entity_keys: tuple[str, ...]
    event_time: str
    _by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {f.name: f for f in self.fields}
        if len(by_name) != len(self.fields):
            raise ValueError(f"schema {self.name} v{self.version}: duplicate field names")
        for role, name in [("event id", self.event_id), ("event time", self.event_time)] + [
            ("entity key", k) for k in self.entity_keys
        ]:
            if name not in by_name:
                raise ValueError(f"schema {self.name} v{self.version}: {role} {name!r} is not a field")
        if by_name[self.event_time].type is not FieldType.TIMESTAMP_MS:
            raise ValueError(f"schema {self.name} v{self.version}: event time must be TIMESTAMP_MS")
        if by_name[self.event_id].type is not FieldType.STRING or not by_name[self.event_id].required:
            raise ValueError(f"schema {self.name} v{self.version}: event id {self.event_id!r} must be a required "
                             "STRING field")
        object.__setattr__(self, "_by_name", by_name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def get_field(self, name: str) -> Field:
        return self._by_name[name]

    def claimed_id(self, record: Any) -> str | None:
        """The event id a rejected raw record claims: its id field when that is a string, else None."""
        rid = record.get(self.event_id) if isinstance(record, Mapping) else None
        return rid if isinstance(rid, str) else None

    def validate(self, record: Any, not_after_ms: int | None = None) -> dict[str, Any] | Invalid:
        """Return the typed event (event time as UTC epoch ms) or why it is invalid.

        Fields are checked in schema order, so the reported problem is deterministic.
        ``not_after_ms``: the latest event time accepted (``out_of_domain``
        beyond it); callers compute it from their clock and
        :data:`DEFAULT_MAX_FUTURE_MS`. None keeps only the fixed range.
        """
        if isinstance(record, Undecodable):
            return Invalid(InvalidKind.UNPARSEABLE, None, record.error)
        if not isinstance(record, Mapping):
            return Invalid(InvalidKind.UNPARSEABLE, None, f"record is {_json_kind(record)}, expected an object")
        event: dict[str, Any] = {}
        for f in self.fields:
            raw = record.get(f.name)
            if raw is None:
                if f.required:
                    what = "is null" if f.name in record else "is missing"
                    return Invalid(InvalidKind.MISSING_FIELD, f.name, f"required field {f.name!r} {what}")
                event[f.name] = None
                continue
            typed = _read_typed(f, raw)
            if isinstance(typed, Invalid):
                return typed
            if f.rule is not None and (problem := f.rule(typed)) is not None:
                return Invalid(InvalidKind.OUT_OF_DOMAIN, f.name, f"{f.name}: {problem}")
            if f.name == self.event_time and not_after_ms is not None and typed > not_after_ms:
                return Invalid(InvalidKind.OUT_OF_DOMAIN, f.name,
                               f"{f.name}: {format_timestamp_ms(typed)} is after {format_timestamp_ms(not_after_ms)}, "
                               "the latest event time accepted now (wall clock + max future)")
            event[f.name] = typed
        unknown = sorted(str(k) for k in record if k not in self._by_name)
        if unknown:
            return Invalid(
                InvalidKind.UNKNOWN_FIELD,
                unknown[0],
                f"field {unknown[0]!r} is not in schema {self.name} v{self.version}",
            )
        return event


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _wrong_type(f: Field, raw: Any, expected: str) -> Invalid:
    return Invalid(InvalidKind.WRONG_TYPE, f.name, f"{f.name}: expected {expected}, got {_json_kind(raw)} {_short(raw)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _read_typed(f: Field, raw: Any) -> Any:
    """Convert a raw value to the field's type without changing its value, or say why not."""
    if f.type is FieldType.STRING:
        if not isinstance(raw, str):
            return _wrong_type(f, raw, "a string")
        if _SURROGATE.search(raw):  # only a JSON escape makes one; no engine can write it out
            return Invalid(InvalidKind.OUT_OF_DOMAIN, f.name, f"{f.name}: {_short(raw)} is not valid Unicode "
                           "(an unpaired surrogate)")
        return raw
    if f.type is FieldType.FLOAT64:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            return _wrong_type(f, raw, "a number")
        if isinstance(raw, int):
            if abs(raw) > MAX_EXACT_INT_AS_DOUBLE:
                return Invalid(
                    InvalidKind.OUT_OF_DOMAIN, f.name, f"{f.name}: integer {raw} is not exactly representable as float64"
                )
            return float(raw)
        return 0.0 if raw == 0 else float(raw)  # -0.0 -> 0.0, same value
    if f.type is FieldType.INT64:
        if isinstance(raw, bool) or not isinstance(raw, int):
            return _wrong_type(f, raw, "an integer")
        if not -(2**63) <= raw < 2**63:
            return Invalid(InvalidKind.OUT_OF_DOMAIN, f.name, f"{f.name}: {raw} does not fit in int64")
        return raw
    if f.type is FieldType.TIMESTAMP_MS:
        return _read_timestamp(f, raw)
    if f.type is FieldType.BOOL:
        return raw if isinstance(raw, bool) else _wrong_type(f, raw, "true or false")
    raise AssertionError(f"unhandled field type {f.type}")


_ISO_UTC = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _read_timestamp(f: Field, raw: Any) -> int | Invalid:
    if isinstance(raw, bool):
        return _wrong_type(f, raw, "epoch milliseconds or an ISO-8601 string")
    if isinstance(raw, int):
        ms = raw
    elif isinstance(raw, datetime):
        if raw.tzinfo is None:
            return Invalid(InvalidKind.OUT_OF_DOMAIN, f.name, f"{f.name}: timestamp has no time zone")
        delta = raw - _EPOCH
        if delta.microseconds % 1000:
            return Invalid(InvalidKind.OUT_OF_DOMAIN, f.name, f"{f.name}: finer than a millisecond")
        ms = delta // timedelta(milliseconds=1)
    elif isinstance(raw, str):
        parsed = parse_iso_timestamp_ms(raw)
        if isinstance(parsed, str):
            return Invalid(InvalidKind.UNPARSEABLE, f.name, f"{f.name}: {parsed}")
        ms = parsed
    else:
        return _wrong_type(f, raw, "epoch milliseconds or an ISO-8601 string")
    if not MIN_EVENT_TIME_MS <= ms < MAX_EVENT_TIME_MS:
        return Invalid(
            InvalidKind.OUT_OF_DOMAIN,
            f.name,
            f"{f.name}: {ms} ms is outside 1970-01-01T00:00:00.001Z .. 2100-01-01T00:00:00Z",
        )
    return ms


def parse_iso_timestamp_ms(text: str) -> int | str:
    """UTC epoch ms of a strict ISO-8601 timestamp with an offset, or a description of the problem."""
    m = _ISO_UTC.fullmatch(text)
    if m is None:
        return f"{_short(text)} is not an ISO-8601 timestamp like 2024-05-01T12:00:00.250Z"
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    fraction = (fraction or "").ljust(9, "0")
    if fraction[3:] != "000000":
        return f"{_short(text)} is finer than a millisecond"
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    except ValueError as e:
        return f"{_short(text)} is not a valid date-time ({e})"
    if offset == "Z":
        offset_ms = 0
    else:
        sign = 1 if offset[0] == "+" else -1
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            return f"{_short(text)} has an invalid UTC offset"
        offset_ms = sign * (oh * 60 + om) * 60_000
    return (local - _EPOCH) // timedelta(milliseconds=1) + int(fraction[:3]) - offset_ms


def not_after_now(max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> int | None:
    """``not_after_ms`` for a record crossing the boundary now (None: no bound)."""
    return None if max_future_ms is None else time.time_ns() // 1_000_000 + max_future_ms


def format_timestamp_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, the one spelling Tandem writes."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# Domain rules reused by schemas ------------------------------------------------


def non_empty(value: str) -> str | None:
    return "must not be empty" if value == "" else None


def finite_non_negative(value: float) -> str | None:
    if not math.isfinite(value):
        return f"{value!r} is not finite"
    return f"{value!r} is negative" if value < 0 else None


_CURRENCY = re.compile(r"[A-Z]{3}")


def currency_code(value: str) -> str | None:
    return None if _CURRENCY.fullmatch(value) else f"{_short(value)} is not 3 upper-case letters (ISO 4217)"


@dataclass(frozen=True)
class Undecodable:
    """A source record that could not be decoded at all (a line that is not JSON, say).

    Readers pass it on instead of dropping it, so it reaches the dead letters.
    """

    text: str
    error: str


# Schema drift: what every record shows is a change of schema, not a bad record ------------

#: The JSON types (see :func:`json_type`) a field of each type may arrive as.
ACCEPTED_JSON_TYPES: dict[FieldType, frozenset[str]] = {
    FieldType.STRING: frozenset({"string"}),
    FieldType.FLOAT64: frozenset({"integer", "number"}),
    FieldType.INT64: frozenset({"integer"}),
    FieldType.TIMESTAMP_MS: frozenset({"integer", "string", "timestamp"}),
    FieldType.BOOL: frozenset({"boolean"}),
}

Shape = tuple[tuple[str, str], ...]


def json_type(value: Any) -> str:
    """The type word of a decoded value, as used in record shapes and drift messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def record_shape(record: Any) -> Shape | None:
    """Sorted ``(field, json type)`` pairs of a record; None for what is not an object."""
    if not isinstance(record, Mapping):
        return None
    return tuple(sorted((str(k), json_type(v)) for k, v in record.items()))


def schema_drift(schema: EventSchema, shapes: Mapping[Shape, int]) -> list[str]:
    """The schema changes an input shows, one line each; empty when there is none.

    A problem that *every* decodable record shares (a field missing from all,
    a field of another type in all, a new field in all) is a change of the
    input's schema: the batch job stops before writing anything. A problem
    only some records show is bad data: those records are dead-lettered.
    """
    total = sum(shapes.values())
    if total == 0:
        return []
    present: dict[str, int] = {}
    typed: dict[str, dict[str, int]] = {}
    for shape, n in shapes.items():
        for key, jtype in shape:
            if jtype != "null":
                present[key] = present.get(key, 0) + n
                typed.setdefault(key, {})[jtype] = typed.setdefault(key, {}).get(jtype, 0) + n
    missing = [f.name for f in schema.fields if f.required and present.get(f.name, 0) == 0]
    new = sorted(k for k, n in present.items() if n == total and k not in schema._by_name)
    problems = []
    if len(missing) == 1 and len(new) == 1:
        problems.append(f"field {missing[0]!r} is missing and {new[0]!r} is new in every record: renamed?")
    else:
        problems += [f"field {name!r} is missing from every record" for name in missing]
        problems += [f"field {name!r} is new: every record has it" for name in new]
    for f in schema.fields:
        seen = typed.get(f.name, {})
        if seen and not set(seen) & ACCEPTED_JSON_TYPES[f.type]:
            got = ", ".join(sorted(seen))
            problems.append(f"field {f.name!r} changed type: expected {f.type.value}, every record has {got}")
    return [f"schema {schema.name} v{schema.version}: {p}" for p in problems]
