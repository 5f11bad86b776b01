"""The quality gates' figures of the stream's output, one interval at a time.

The stream cannot un-emit what it wrote, so its gates judge what each interval published: the feature
rows committed with one checkpoint, which the monitor (``stream_jobs.monitor``) reads back from the
feature log and measures here, in one pass over the rows. The verdicts are judged in ``runtime.gates``,
as for batch runs, so a gate means the same on every path; a failing blocking gate marks the feature
groups it guards degraded (``runtime.degraded``) and alerts ``stream_degraded``, a failing ``warn``
gate only alerts.

Which gates: those on a column of the feature rows (the event id, the entity keys, the event time,
the features): completeness, range, drift (its reference: the deciles of the stream's first interval
holding values, kept by every later interval), references (the reference table's keys are read once,
when the job starts), and freshness where declared. Not volume: an interval's row count follows the
traffic and the checkpoint timing, not the data's health (a stalled stream shows in the freshness gate
and in the records-in metric). Gates on input fields that the feature rows do not carry are judged at
ingest.

Comparisons follow Spark's, so that the batch and stream figures of the same rows agree: a NaN is
above every bound and in the last drift bin; deciles are the smallest value with at least that share of
values at or below it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from runtime.errors import UserError
from runtime.gates import Figures
from transforms import Catalog
from transforms.catalog import NUMERIC
from transforms.quality import Drift, Freshness, Gate, Range, References, Volume

def stream_gates(catalog: Catalog) -> tuple[Gate, ...]:
    """The catalog's gates that the stream judges (see the module docstring)."""
    columns = {name for name, _ in catalog.feature_row_columns()}
    return tuple(g for g in catalog.quality_gates
                 if not isinstance(g, Volume) and (isinstance(g, Freshness) or g.column in columns))


def guarded_groups(catalog: Catalog, gate: Gate) -> list[str]:
    """The feature groups (by entity) whose served values a failing ``gate`` makes suspect: a feature's
    group, the groups keyed by a key field, or every group (freshness, the event time or id)."""
    groups = [g.entity for g in catalog.groups if any(f.name == gate.column for f in g.features)]
    groups = groups or [g.entity for g in catalog.groups if gate.column in g.key]
    return groups or [g.entity for g in catalog.groups]


def reference_keys(lake_root: Path, gates: Sequence[Gate]) -> dict[str, set]:
    """Each references gate's set of keys, read from its lake table (once, when the stream starts)."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    out = {}
    for gate in gates:
        if not isinstance(gate, References):
            continue
        path = Path(lake_root) / gate.table
        if not (path / "_delta_log").is_dir():
            raise UserError(f"gate {gate.name}: no Delta table at {path} (the reference table it checks against)")
        table = DeltaTable(str(path))
        columns = [f.name for f in table.schema().fields]
        if gate.key_column not in columns:
            raise UserError(f"gate {gate.name}: {path} has no column {gate.key_column!r} "
                            f"(its columns: {', '.join(columns)})")
        files = table.file_uris()
        keys = pq.ParquetDataset(files).read(columns=[gate.key_column]).column(0).to_pylist() if files else []
        out[gate.name] = set(keys)
    return out


def measure(rows: Sequence[Mapping[str, Any]], catalog: Catalog, gates: Sequence[Gate],
            edges: Mapping[str, list[float] | None], references: Mapping[str, set]) -> Figures:
    """The figures of one interval's feature rows. ``edges``: each drift column's reference decile edges
    (None: none yet; this interval's deciles become them)."""
    types = dict(catalog.feature_row_columns())
    columns = list(types)
    numeric = [c for c in columns if types[c] in NUMERIC]
    event_time = catalog.schema.event_time
    ranges = [g for g in gates if isinstance(g, Range) and g.column in types]
    refs = [g for g in gates if isinstance(g, References) and g.name in references]
    drifts = [g for g in gates if isinstance(g, Drift) and g.column in types]

    non_null = dict.fromkeys(columns, 0)
    outside = {g.name: 0 for g in ranges}
    missing = {g.name: 0 for g in refs}
    stats: dict[str, list[float]] = {}  # column -> [sum, min, max, n] of non-null values
    values: dict[str, list[float]] = {g.column: [] for g in drifts}
    dates: set[date] = set()
    newest = None
    for row in rows:
        for c in columns:
            v = row.get(c)
            if v is None:
                continue
            non_null[c] += 1
            if c in values:
                values[c].append(float(v))
            if c in numeric:
                x = float(v)
                s = stats.setdefault(c, [0.0, x, x, 0])
                s[0] += x
                s[1], s[2] = _least(s[1], x), _greatest(s[2], x)
                s[3] += 1
        for g in ranges:
            v = row.get(g.column)
            if v is not None and _outside(float(v), g.min, g.max):
                outside[g.name] += 1
        for g in refs:
            v = row.get(g.column)
            if v is not None and v not in references[g.name]:
                missing[g.name] += 1
        t = row.get(event_time)
        if isinstance(t, int):
            newest = t if newest is None else max(newest, t)
            dates.add(datetime.fromtimestamp(t / 1000, timezone.utc).date())

    fig = Figures(rows=len(rows), dates=sorted(dates), non_null=non_null, outside=outside, missing_refs=missing,
                  newest_event=None if newest is None else datetime.fromtimestamp(newest / 1000, timezone.utc))
    fig.summaries = {c: {"mean": s[0] / s[3], "min": s[1], "max": s[2]} for c, s in stats.items()}
    for g in drifts:
        e = edges.get(g.column)
        if e is None:
            e = deciles(values[g.column])
            if not e:
                continue  # no values yet: nothing to take as the reference
        fig.edges[g.column] = list(e)
        fig.histograms[g.column] = histogram(values[g.column], e)
    return fig


def deciles(values: list[float]) -> list[float]:
    """The distinct finite deciles of ``values`` (each the smallest value with at least that share at or below)."""
    ordered = sorted(values, key=_order)
    if not ordered:
        return []
    n = len(ordered)
    picked = {ordered[max(0, (i * n + 9) // 10 - 1)] for i in range(1, 10)}  # rank ceil(i/10 x n), exactly
    return sorted(v for v in picked if math.isfinite(v))


def histogram(values: list[float], edges: list[float]) -> list[int]:
    """Counts in (-inf, e1], (e1, e2], ..., (ek, inf); a NaN in the last bin."""
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[len(edges) if v != v else bisect.bisect_left(edges, v)] += 1
    return counts


def _order(v: float) -> tuple[int, float]:
    return (1, 0.0) if v != v else (0, v)  # NaN last, as Spark orders it


def _outside(v: float, low: float | None, high: float | None) -> bool:
    if v != v:
        return high is not None  # NaN: above any maximum, below no minimum
    return (low is not None and v < low) or (high is not None and v > high)


def _least(a: float, b: float) -> float:
    return b if a != a or b < a else a


def _greatest(a: float, b: float) -> float:
    return a if a != a else b if b != b or b > a else a
