"""The reference evaluator: catalog semantics in small, obviously correct Python.

It is the ground truth the Spark path, the Flink path and the parity harness
are tested against, so it favours plainness over speed: every window is a
slice of the entity's time-sorted events, every aggregate is computed from
that slice directly. The rules (docs/semantics.md), in the order they apply to each
record in arrival order:

1. **Validate** against the catalog's schema; a failure is rejected ``invalid``.
2. **Deduplicate** by event id: the first valid record with an id is the
   event; any later valid record with that id is rejected ``duplicate``.
   (An invalid record claims no id: it may not even have one.)
3. **Lateness** (stream semantics only, when ``allowed_lateness_ms`` is set):
   an event whose time is earlier than ``max(event time of the events
   accepted before it) - allowed_lateness`` is rejected ``late`` and not folded
   into any window. Exactly ``allowed_lateness`` behind is on time. This is a
   bounded-out-of-orderness watermark advanced on every record, so it does not
   depend on when an engine happens to emit watermarks.
4. **Windows**: each accepted event gets one feature row; its features
   aggregate the accepted events of the same entity with time in ``[t - W, t]``
   (see :mod:`transforms.aggregations` for each aggregation's rule).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.dead_letters import DUPLICATE, INVALID, LATE, duplicate_detail, late_detail
from transforms import Agg, Catalog, Invalid
from transforms.numbers import exact_mean, exact_sum



@dataclass(frozen=True)
class Rejection:
    """A record that produced no feature row, and why. ``position`` is its arrival index."""

    position: int
    event_id: str | None
    reason: str  # invalid | duplicate | late
    kind: str | None  # for invalid: the InvalidKind value
    detail: str
    raw: Any


@dataclass
class Evaluation:
    rows: list[dict[str, Any]]  # one feature row per accepted event, in arrival order
    rejected: list[Rejection]
    records_in: int
    counts: Counter = field(default_factory=Counter)  # accepted / invalid / duplicate / late


def evaluate(
    records: Iterable[Any],
    catalog: Catalog,
    allowed_lateness_ms: int | None = None,
    not_after_ms: int | None = None,
) -> Evaluation:
    """Evaluate ``catalog`` over raw ``records`` in arrival order.

    ``allowed_lateness_ms=None`` is the batch path: every valid event counts.
    ``not_after_ms``: an event time after it is ``invalid`` (``out_of_domain``),
    as the engines reject events too far ahead of their clock
    (``transforms.schema.DEFAULT_MAX_FUTURE_MS``); None: no such bound.
    """
    schema = catalog.schema
    accepted: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    seen_ids: set[str] = set()
    max_time: int | None = None
    position = -1
    for position, raw in enumerate(records):
        event = schema.validate(raw, not_after_ms)
        if isinstance(event, Invalid):
            rejected.append(Rejection(position, schema.claimed_id(raw), INVALID, event.kind.value, event.detail, raw))
            continue
        eid, t = event[schema.event_id], event[schema.event_time]
        if eid in seen_ids:
            rejected.append(Rejection(position, eid, DUPLICATE, None, duplicate_detail(eid), raw))
            continue
        seen_ids.add(eid)
        if allowed_lateness_ms is not None and max_time is not None and t < max_time - allowed_lateness_ms:
            rejected.append(
                Rejection(position, eid, LATE, None, late_detail(max_time - t, allowed_lateness_ms), raw)
            )
            continue
        max_time = t if max_time is None else max(max_time, t)
        accepted.append(event)

    rows = _feature_rows(accepted, catalog)
    counts = Counter({"accepted": len(rows)})
    counts.update(r.reason for r in rejected)
    return Evaluation(rows=rows, rejected=rejected, records_in=position + 1, counts=counts)


def _feature_rows(events: list[dict[str, Any]], catalog: Catalog) -> list[dict[str, Any]]:
    schema = catalog.schema
    columns = _with_row_functions(events, catalog)
    rows = [{name: columns[name][i] for name in (schema.event_id, *schema.entity_keys, schema.event_time)}
            | {fn.name: columns[fn.name][i] for fn in catalog.row_functions}
            for i in range(len(events))]
    for group in catalog.groups:
        # Per entity: event indexes sorted by (event time, event id): the window order.
        by_key: dict[tuple, list[int]] = defaultdict(list)
        for i, key in enumerate(zip(*(columns[k] for k in group.key))):
            by_key[key].append(i)  # the key tuple: ("NY", "C12") and ("NYC", "12") stay apart
        used = {f.of for f in group.features if f.of is not None}
        for members in by_key.values():
            members.sort(key=lambda i: (columns[schema.event_time][i], columns[schema.event_id][i]))
            times = [columns[schema.event_time][i] for i in members]
            values = {col: [columns[col][i] for i in members] for col in used}
            for i in members:
                t = columns[schema.event_time][i]
                end = bisect.bisect_right(times, t)  # peers at t included
                for feature in group.features:
                    start = bisect.bisect_left(times, t - feature.window_ms)  # t - W included
                    window = values[feature.of][start:end] if feature.of else times[start:end]
                    rows[i][feature.name] = _aggregate(feature.agg, window)
    return rows


def _with_row_functions(events: list[dict[str, Any]], catalog: Catalog) -> dict[str, list[Any]]:
    columns: dict[str, Any] = {name: [e[name] for e in events] for name in catalog.schema.field_names}
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    for fn in catalog.row_functions:
        out = fn.apply(arrays) if events else np.asarray([])
        arrays[fn.name] = out
        columns[fn.name] = out.tolist()
    return columns


def _aggregate(agg: Agg, values: list[Any]) -> Any:
    """One aggregate of a window's values, listed in (event time, event id) order; nulls are skipped."""
    if agg is Agg.COUNT:
        return len(values)
    values = [v for v in values if v is not None]
    if agg is Agg.DISTINCT_COUNT:
        return len(set(values))
    if not values:
        return None
    if agg is Agg.SUM:
        return sum(values) if all(isinstance(v, int) for v in values) else exact_sum(values)
    if agg is Agg.MEAN:
        return exact_mean([float(v) for v in values])
    if agg is Agg.MIN:
        return min(values)
    if agg is Agg.MAX:
        return max(values)
    if agg is Agg.LAST:
        return values[-1]
    raise AssertionError(f"unhandled aggregation {agg}")
