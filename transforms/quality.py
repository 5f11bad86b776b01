"""Quality gates, declared in the catalog beside what they guard.

A gate measures one figure of the data a run is about to publish and holds it
to a bound; a failing gate with ``action="block"`` (the default) stops the
write it guards (the Delta commit of an ingest or backfill, the
materialisation into Redis), one with ``action="warn"`` lets it through and
alerts. The stream, which cannot un-emit, alerts and marks the group degraded.

Without any declaration a catalog is gated by :func:`default_gates`: every
field and feature at least 95 % non-null (99 % for a feature marked
``critical``), and the volume check. Declaring a gate on a column replaces
that column's default of the same kind.

Where each gate runs: a gate on a field checks the ingested events; on a
feature, the feature rows of a backfill (and, completeness and range, the
latest rows a materialisation serves; and each interval of the stream's feature
rows, which carry the keys, the event time and the features). A row function is
stored by no table, so a gate guards a feature of it instead. ``Freshness``
checks ingests (and the stream, where declared), ``Volume`` ingests and backfills. The engines compute every
figure of one table in one aggregation; the verdicts are judged in
``runtime.gates``, once for both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from transforms.durations import parse_duration

BLOCK, WARN = "block", "warn"
DEFAULT_COMPLETENESS, CRITICAL_COMPLETENESS = 0.95, 0.99


@dataclass(frozen=True, kw_only=True)
class Gate:
    action: str = BLOCK

    kind = "gate"
    column: str | None = None

    def check(self) -> None:
        if self.action not in (BLOCK, WARN):
            raise ValueError(f"gate {self.name}: action {self.action!r} is not 'block' or 'warn'")

    @property
    def name(self) -> str:
        return f"{self.kind}({self.column})" if self.column else self.kind


def _share(gate: Gate, what: str, value: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value if low_open else 0 <= value) \
            or value > 1:
        raise ValueError(f"gate {gate.name}: {what} must be a share between 0 and 1 (got {value!r})")


@dataclass(frozen=True, kw_only=True)
class Completeness(Gate):
    """At least ``min`` of the column's values are non-null."""

    column: str
    min: float = DEFAULT_COMPLETENESS
    kind = "completeness"

    def check(self) -> None:
        super().check()
        _share(self, "min", self.min)


@dataclass(frozen=True, kw_only=True)
class Freshness(Gate):
    """The newest event is at most ``max_age`` old when the run ends (None: the pipeline's freshness SLA)."""

    max_age: str | None = None
    kind = "freshness"

    def check(self) -> None:
        super().check()
        if self.max_age is not None:
            try:
                parse_duration(self.max_age)
            except ValueError as e:
                raise ValueError(f"gate {self.name}: max_age: {e}") from None


@dataclass(frozen=True, kw_only=True)
class Volume(Gate):
    """Rows per complete partition written (the day's total after the write; today's is not judged) no lower
    than ``1 - max_drop`` times the least of the last ``runs`` successful runs (``runtime.gates``)."""

    max_drop: float = 0.5
    runs: int = 7
    kind = "volume"

    def check(self) -> None:
        super().check()
        _share(self, "max_drop", self.max_drop, low_open=True)
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 1:
            raise ValueError(f"gate {self.name}: runs must be a whole number of runs, at least 1 (got {self.runs!r})")


@dataclass(frozen=True, kw_only=True)
class Range(Gate):
    """At most ``max_outside`` of the column's non-null values fall outside ``[min, max]``."""

    column: str
    min: float | None = None
    max: float | None = None
    max_outside: float = 0.0
    kind = "range"

    def check(self) -> None:
        super().check()
        for bound in (self.min, self.max):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound):
                raise ValueError(f"gate {self.name}: bounds are numbers (got {bound!r})")
        if self.min is None and self.max is None:
            raise ValueError(f"gate {self.name}: give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"gate {self.name}: min {self.min} is above max {self.max}")
        _share(self, "max_outside", self.max_outside)


DRIFT_METHODS = {"psi": 0.2, "ks": 0.1}  # method -> default threshold


@dataclass(frozen=True, kw_only=True)
class Drift(Gate):
    """The column's distribution against the one the last successful runs recorded (deciles): the population
    stability index (``psi``, default threshold 0.2) or the Kolmogorov-Smirnov distance at the deciles (``ks``,
    default 0.1) stays at or below ``threshold``."""

    column: str
    method: str = "psi"
    threshold: float | None = None
    kind = "drift"

    def check(self) -> None:
        super().check()
        if self.method not in DRIFT_METHODS:
            raise ValueError(f"gate {self.name}: method {self.method!r} is not one of {', '.join(DRIFT_METHODS)}")
        t = self.limit
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ValueError(f"gate {self.name}: threshold must be a number above 0 (got {t!r})")

    @property
    def limit(self) -> float:
        return DRIFT_METHODS[self.method] if self.threshold is None else self.threshold


@dataclass(frozen=True, kw_only=True)
class References(Gate):
    """Every non-null value of the field is a ``key`` of the lake table ``table`` (a path in the lake,
    e.g. ``reference/merchants``; ``key`` defaults to the field's name)."""

    column: str
    table: str
    key: str | None = None
    kind = "references"

    def check(self) -> None:
        super().check()
        path = PurePosixPath(self.table)
        if not self.table or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"gate {self.name}: table {self.table!r} must be a path inside the lake")

    @property
    def key_column(self) -> str:
        return self.key or self.column


def default_gates(columns: list[tuple[str, bool]], declared: tuple[Gate, ...]) -> tuple[Gate, ...]:
    """``declared`` plus a default completeness gate for each ``(column, critical)`` without one of its own,
    and the volume gate unless one is declared."""
    have = {g.column for g in declared if isinstance(g, Completeness)}
    out = list(declared)
    out += [Completeness(column=c, min=CRITICAL_COMPLETENESS if critical else DEFAULT_COMPLETENESS)
            for c, critical in columns if c not in have]
    if not any(isinstance(g, Volume) for g in declared):
        out.append(Volume())
    return tuple(out)
