"""Declarative windowed aggregations: what a feature is, never how an engine computes it.

A :class:`Feature` names one output column: an aggregation of one column (or of
events, for ``count``) over a trailing window, per entity key. The semantics
every engine must reproduce, stated once:

* **Window.** The feature row of an event at time ``t`` aggregates the valid,
  deduplicated events of the same entity with event time in ``[t - W, t]``,
  both ends inclusive, peers (same millisecond) included. The event itself is
  always in its window. An entity is the whole key: a composite key
  ``("city", "driver")`` compares part by part, so ``("NY", "C12")`` and
  ``("NYC", "12")`` are two entities.
* **Nulls.** A value of an optional field may be null; every aggregation of a
  column skips nulls. Over a window with no non-null value, sum, mean, min,
  max and last are null and distinct_count is 0.
* **count** - events in the window (int64), nulls or not.
* **sum** - of an int64 column: the exact integer sum. Of a float64 column:
  the correctly rounded exact sum (``math.fsum``), ``+inf`` if that overflows;
  never the order-dependent running double sum of an engine.
* **mean** - that float64 sum divided by the number of non-null values
  (float64 division).
* **min** / **max** - of the column's values, same type as the column.
* **distinct_count** - exact number of distinct non-null values (int64).
* **last** - the latest non-null value: of the window's events with a value,
  the one with the greatest event time, ties broken by the greatest event id
  (string order = Unicode code point order = UTF-8 byte order, which is what
  Spark and Flink compare). Any type: string, int64, float64, bool.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from transforms.budgets import Budget, duration_ms, resolve
from transforms.durations import parse_duration


class Agg(str, enum.Enum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    DISTINCT_COUNT = "distinct_count"
    LAST = "last"

    @property
    def needs_numeric(self) -> bool:
        return self in (Agg.SUM, Agg.MEAN, Agg.MIN, Agg.MAX)


@dataclass(frozen=True)
class Feature:
    """One feature: ``agg`` of column ``of`` over the trailing ``window`` (e.g. ``"24h"``).

    Serving (``transforms.budgets``): ``fresh_for`` and ``max_staleness`` (durations; the group's when not
    given here) bound how old a served value may be; ``default``, a value of the feature's type, is served
    in place of one that is too old, absent or degraded (None: no default, the value is then null and
    ``missing``).
    """

    name: str
    agg: Agg
    window: str
    of: str | None = None
    critical: bool = False  # its completeness gate defaults to 99 %, not 95 % (transforms.quality)
    default: Any = None
    fresh_for: str | None = None
    max_staleness: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "agg", Agg(self.agg))
        owner = f"feature {self.name}"
        resolve(owner, duration_ms(owner, "fresh_for", self.fresh_for),
                duration_ms(owner, "max_staleness", self.max_staleness))
        if self.agg is Agg.COUNT and self.of is not None:
            raise ValueError(f"feature {self.name}: count takes no column (got of={self.of!r})")
        if self.agg is not Agg.COUNT and self.of is None:
            raise ValueError(f"feature {self.name}: {self.agg.value} needs a column: of=...")
        if self.window_ms <= 0:
            raise ValueError(f"feature {self.name}: window must be positive")

    @property
    def window_ms(self) -> int:
        return parse_duration(self.window)


@dataclass(frozen=True)
class FeatureGroup:
    """Features aggregated per entity key (e.g. all ``user_*`` features per ``user_id``).

    ``key`` is one field name or a tuple of them (a composite key); it is kept
    as a tuple, in the order given. ``fresh_for`` and ``max_staleness`` are the
    serving budget of every feature of the group that declares none of its own
    (:meth:`budget`).
    """

    entity: str
    key: str | tuple[str, ...]
    features: tuple[Feature, ...]
    description: str = ""
    fresh_for: str | None = None
    max_staleness: str | None = None

    def __post_init__(self) -> None:
        key = (self.key,) if isinstance(self.key, str) else tuple(self.key) if isinstance(self.key, (tuple, list)) else ()
        if not key or len(set(key)) != len(key) or not all(isinstance(k, str) and k for k in key):
            raise ValueError(f"group {self.entity}: key must be a field name or a tuple of distinct field names, "
                             f"not {self.key!r}")
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "features", tuple(self.features))
        owner = f"group {self.entity}"
        resolve(owner, duration_ms(owner, "fresh_for", self.fresh_for),
                duration_ms(owner, "max_staleness", self.max_staleness))
        for feature in self.features:
            self.budget(feature)  # a feature's own fresh_for beyond the group's max_staleness, or the reverse

    def budget(self, feature: Feature) -> Budget:
        """``feature``'s serving budget: each duration its own, else the group's, else no bound."""
        owner = f"feature {feature.name} (group {self.entity})"
        fresh = feature.fresh_for if feature.fresh_for is not None else self.fresh_for
        oldest = feature.max_staleness if feature.max_staleness is not None else self.max_staleness
        return resolve(owner, duration_ms(owner, "fresh_for", fresh), duration_ms(owner, "max_staleness", oldest))

    def key_of(self, row) -> tuple:
        """The entity of a row (any mapping of column -> value): its key values, as a tuple."""
        return tuple(row[k] for k in self.key)

    def shown_key(self, row):
        """The entity of a row as reports show it: the value of a single key, the tuple of a composite one."""
        return row[self.key[0]] if len(self.key) == 1 else self.key_of(row)
