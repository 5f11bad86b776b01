"""Serving declarations: how old a served value may be, and what to serve instead of one that is too old.

Declared in the catalog beside the features (``Feature(..., fresh_for="1h",
max_staleness="1d", default=0)``), with group-wide durations on
``FeatureGroup(..., fresh_for=..., max_staleness=...)`` that a feature's own
override. A value's age is the serving time minus its event time:

* ``fresh_for`` is the freshness budget: a value at most this old is *fresh*;
* ``max_staleness`` is the oldest a value may be served: older than
  ``fresh_for`` but at most this old it is *stale*; beyond it, it is not served
  (the default is, or nothing);
* ``default`` is served in place of a value that cannot be: too old, absent
  from the online store, or of a group a stream gate marked degraded.

Undeclared durations are no bound: without ``fresh_for`` every served value is
fresh; without ``max_staleness`` none is ever aged out. The statuses this
gives are stated once, in ``serving.statuses``; this module holds the
declarations and their checks only (engine-free, like all of ``transforms``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from transforms.durations import format_duration, parse_duration
from transforms.schema import FieldType

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Budget:
    """A feature's effective budget in milliseconds (None: no bound); ``fresh_ms <= max_ms`` when both are set."""

    fresh_ms: int | None = None
    max_ms: int | None = None

    def describe(self) -> str:
        show = lambda ms: "none" if ms is None else format_duration(ms)  # noqa: E731
        return f"fresh_for {show(self.fresh_ms)}, max_staleness {show(self.max_ms)}"


def duration_ms(owner: str, what: str, text: str | None) -> int | None:
    """A declared duration in ms (None when not declared); a ValueError naming ``owner`` otherwise."""
    if text is None:
        return None
    try:
        ms = parse_duration(text)
    except ValueError as e:
        raise ValueError(f"{owner}: {what}: {e}") from None
    if ms <= 0:
        raise ValueError(f"{owner}: {what} must be longer than 0 (got {text!r}); leave it out for no bound")
    return ms


def resolve(owner: str, fresh_ms: int | None, max_ms: int | None) -> Budget:
    """The budget of a feature whose own or inherited durations are these; refuses fresh_for > max_staleness."""
    if fresh_ms is not None and max_ms is not None and fresh_ms > max_ms:
        raise ValueError(f"{owner}: fresh_for {format_duration(fresh_ms)} is longer than max_staleness "
                         f"{format_duration(max_ms)}; a value is stale between the two, so fresh_for <= max_staleness")
    return Budget(fresh_ms, max_ms)


#: A default of each feature type: what Python value it must be (a bool is not an int64, an int not a float64).
_DEFAULT_FITS = {
    FieldType.INT64: lambda v: type(v) is int and INT64_MIN <= v <= INT64_MAX,
    FieldType.FLOAT64: lambda v: type(v) is float and not math.isnan(v),
    FieldType.STRING: lambda v: type(v) is str,
    FieldType.BOOL: lambda v: type(v) is bool,
}
_EXAMPLES = {FieldType.INT64: "0", FieldType.FLOAT64: "0.0", FieldType.STRING: '""', FieldType.BOOL: "False"}


def check_default(feature: str, default: Any, dtype: FieldType) -> None:
    """A declared default must be a value of the feature's type (NaN is null in Feast's store: no default)."""
    if default is None or _DEFAULT_FITS[dtype](default):
        return
    what = "an int64 beyond its range" if type(default) is int and dtype is FieldType.INT64 else \
        "NaN" if isinstance(default, float) and math.isnan(default) else f"{type(default).__name__} {default!r}"
    raise ValueError(f"feature {feature}: default is {what}, but the feature is {dtype.value}: "
                     f"declare a value of that type, e.g. default={_EXAMPLES[dtype]}")
