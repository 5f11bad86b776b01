"""Batch vs stream, per event id and per column, with every difference explained or not.

The batch path sees every valid event; the stream path folds only the events
that are not late. So batch and stream may legitimately differ, and the only
honest way to say a difference is legitimate is to check it against the
reference evaluator twice (``tandem.reference``):

* ``batch_reference``: all valid events (batch semantics);
* ``stream_reference``: the same records with the stream's allowed lateness.

A value is **exact** when batch, stream and their references all agree bit for
bit (type included: ``1`` is not ``1.0``). A difference is **explained** only
when both paths equal their own reference *and* it is accounted for by a late
event the stream reported and the reference agrees is late (``confirmed
late``): the row of a confirmed late event is missing from the stream, or a
feature's window ``[t - W, t]`` of the same entity holds such an event.
Everything else is **unexplained**: a path that differs from its reference, a
row missing or extra with no reported late event behind it, a late event the
stream did not report. There is no tolerance anywhere: floats compare by their
bits; for float columns the largest relative difference is measured so a
near-miss is visible, never forgiven.

Besides values, each path's rejections must be the reference's (event id and
reason), each path must write at most one row per event id, and the stream's
late events must be exactly the reference's: a failure of any is an
:class:`Issue` and fails the run too.
"""

from __future__ import annotations

import bisect
import math
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tandem.reference import DUPLICATE, INVALID, LATE, Evaluation, evaluate
from transforms import Catalog, FieldType

EXACT, EXPLAINED, UNEXPLAINED = "exact", "explained", "unexplained"
#: How many mismatches of each column keep their full detail for the reports.
EXAMPLES_PER_COLUMN = 5


@dataclass(frozen=True)
class References:
    """The reference evaluator's answers for both paths' semantics over the same records."""

    batch: Evaluation
    stream: Evaluation
    allowed_lateness_ms: int


def references(records: Iterable[Any], allowed_lateness_ms: int, catalog: Catalog,
               batch: Evaluation | None = None, not_after_ms: int | None = None) -> References:
    """``not_after_ms``: the engines' bound on future event times (see ``tandem.reference.evaluate``)."""
    records = list(records)
    batch = batch if batch is not None else evaluate(records, catalog, not_after_ms=not_after_ms)
    return References(batch, evaluate(records, catalog, allowed_lateness_ms, not_after_ms), allowed_lateness_ms)


@dataclass(frozen=True)
class PathOutput:
    """What one engine produced: feature rows (event time as epoch ms) and ``(event id, reason)`` rejections."""

    rows: list[dict[str, Any]]
    rejected: list[tuple[str | None, str]]


@dataclass(frozen=True)
class WindowEvent:
    event_id: str
    event_time: int
    value: Any  # the aggregated column's value (None for counts)
    late: bool  # the stream reported it late and the reference agrees


@dataclass(frozen=True)
class Mismatch:
    """One (event, column) where batch and stream are not both exactly right. ``None``: no row."""

    event_id: str
    column: str
    status: str  # explained | unexplained
    why: str
    event_time: int | None
    key: Any  # the entity of the row (a key value, or a tuple of them for a composite key), None for other columns
    batch: Any
    stream: Any
    batch_reference: Any
    stream_reference: Any
    window: tuple[WindowEvent, ...] = ()  # filled for the first examples only

    @property
    def has_values(self) -> bool:
        return self.batch is not None and self.stream is not None


@dataclass
class ColumnStats:
    name: str
    dtype: FieldType
    window_ms: int | None  # None for a column that is not a windowed feature
    rows: int = 0
    exact: int = 0
    explained: int = 0
    unexplained: int = 0
    differing: int = 0  # rows both paths wrote whose values differ at all
    batch_vs_reference: int = 0
    stream_vs_reference: int = 0
    largest_difference: float = 0.0  # relative for floats, absolute for ints, over differing values
    largest_unexplained_difference: float = 0.0

    @property
    def is_float(self) -> bool:
        return self.dtype is FieldType.FLOAT64


@dataclass(frozen=True)
class Issue:
    """A failure that is not one value: rejections that differ, rows written twice, late sets that differ."""

    kind: str
    detail: str
    event_ids: tuple[str | None, ...] = ()


@dataclass
class Comparison:
    columns: list[ColumnStats]
    mismatches: list[Mismatch]
    issues: list[Issue]
    events_compared: int
    confirmed_late: list[str]
    counts: dict[str, Counter] = field(default_factory=dict)  # path -> accepted / reason counts
    event_id: str = "event_id"  # the catalog's names of the event id and time, for the reports
    event_time: str = "event_time"

    @property
    def unexplained(self) -> int:
        return sum(c.unexplained for c in self.columns) + len(self.issues)

    @property
    def passed(self) -> bool:
        return self.unexplained == 0

    def examples(self, column: str, status: str = UNEXPLAINED) -> list[Mismatch]:
        return [m for m in self.mismatches if m.column == column and m.status == status][:EXAMPLES_PER_COLUMN]


def same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality: same type, and for floats the same IEEE-754 bits (``0.0`` is not ``-0.0``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def difference(a: Any, b: Any, is_float: bool) -> float:
    """Relative difference of floats (``|a-b| / max(|a|,|b|)``, inf across inf), absolute for ints."""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) or isinstance(b, bool):
        return math.inf
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b)) if is_float else float(abs(a - b))


def compare(batch: PathOutput, stream: PathOutput, refs: References,
            catalog: Catalog) -> Comparison:
    schema = catalog.schema
    eid = schema.event_id
    issues: list[Issue] = []
    b_rows = _by_id(batch.rows, eid, "batch", issues)
    s_rows = _by_id(stream.rows, eid, "stream", issues)
    rb = {r[eid]: r for r in refs.batch.rows}
    rs = {r[eid]: r for r in refs.stream.rows}

    reference_late = {r.event_id for r in refs.stream.rejected if r.reason == LATE}
    reported_late = {i for i, reason in stream.rejected if reason == LATE}
    confirmed = reported_late & reference_late
    _check_late_sets(reported_late, reference_late, issues)
    _check_rejections("batch", batch.rejected, refs.batch, issues)
    _check_rejections("stream", stream.rejected, refs.stream, issues)

    windows = _FeatureWindows(catalog, rb, confirmed)
    stats = _column_stats(catalog)
    mismatches: list[Mismatch] = []
    ids = sorted(set(b_rows) | set(s_rows) | set(rb) | set(rs),
                 key=lambda i: (rb.get(i, {}).get(schema.event_time, 0), str(i)))
    for i in ids:
        b, s, ref_b, ref_s = b_rows.get(i), s_rows.get(i), rb.get(i), rs.get(i)
        for col in stats:
            col.rows += 1
            status, why = _classify(i, col, b, s, ref_b, ref_s, confirmed, reported_late, windows)
            bv, sv = _value(b, col.name), _value(s, col.name)
            if b is not None and ref_b is not None and not same(bv, ref_b[col.name]):
                col.batch_vs_reference += 1
            if s is not None and (ref_s is None or not same(sv, ref_s[col.name])):
                col.stream_vs_reference += 1
            if b is not None and s is not None and not same(bv, sv):
                col.differing += 1
                d = difference(bv, sv, col.is_float)
                col.largest_difference = max(col.largest_difference, d)
                if status == UNEXPLAINED:
                    col.largest_unexplained_difference = max(col.largest_unexplained_difference, d)
            if status == EXACT:
                col.exact += 1
                continue
            setattr(col, status, getattr(col, status) + 1)
            row = ref_b or b or s or {}
            mismatches.append(Mismatch(
                i, col.name, status, why, row.get(schema.event_time), windows.entity_of(col.name, row),
                bv, sv, _value(ref_b, col.name), _value(ref_s, col.name)))
    mismatches = _with_windows(mismatches, windows)
    counts = {"batch": _counts(batch), "stream": _counts(stream),
              "batch_reference": Counter(refs.batch.counts), "stream_reference": Counter(refs.stream.counts)}
    return Comparison(stats, mismatches, issues, len(ids), sorted(confirmed), counts, schema.event_id, schema.event_time)


def _classify(i, col: ColumnStats, b, s, ref_b, ref_s, confirmed, reported_late, windows) -> tuple[str, str]:
    name = col.name
    problems = []
    if b is not None and (ref_b is None or not same(b[name], ref_b[name])):
        problems.append("batch differs from the reference" if ref_b is not None else "batch row for an event the reference rejects")
    if b is None and ref_b is not None:
        problems.append("no batch row for a valid event")
    if s is not None and (ref_s is None or not same(s[name], ref_s[name])):
        problems.append("stream differs from the reference" if ref_s is not None
                        else "stream row for an event the reference says is late or rejected")
    if s is None and ref_s is not None:
        problems.append("no stream row for an on-time event" + (" (the stream reported it late)" if i in reported_late else ""))
    if s is None and ref_s is None and ref_b is not None and i not in confirmed:
        problems.append("no stream row and the stream did not report it late")
    if problems:
        return UNEXPLAINED, "; ".join(problems)
    if b is not None and s is not None:
        if same(b[name], s[name]):
            return EXACT, ""
        late = windows.late_in_window(i, name)
        if late:
            return EXPLAINED, "late event(s) in its window the stream did not fold: " + ", ".join(late[:3]) + (
                f" and {len(late) - 3} more" if len(late) > 3 else "")
        return UNEXPLAINED, "batch and stream differ with no reported late event in the window"
    return EXPLAINED, "a late event: the stream reported it and folds it into no window"


class _FeatureWindows:
    """Which confirmed late events lie in a feature's window, and the events of a window (for examples)."""

    def __init__(self, catalog: Catalog, batch_reference: dict[str, dict], confirmed: set[str]):
        self.schema = catalog.schema
        self.rows = batch_reference
        self.confirmed = confirmed
        self.feature = {f.name: (g, f) for g, f in catalog.features}
        t = self.schema.event_time
        # per group key -> entity (key tuple) -> (sorted times, ids in that order), for all and for confirmed late events
        self._all: dict[tuple, dict[tuple, tuple[list[int], list[str]]]] = {}
        self._late: dict[tuple, dict[tuple, tuple[list[int], list[str]]]] = {}
        for g in catalog.groups:
            every, late = defaultdict(list), defaultdict(list)
            for i, r in batch_reference.items():
                every[g.key_of(r)].append((r[t], i))
                if i in confirmed:
                    late[g.key_of(r)].append((r[t], i))
            self._all[g.key] = {k: _columns(v) for k, v in every.items()}
            self._late[g.key] = {k: _columns(v) for k, v in late.items()}

    def entity_of(self, column: str, row: dict) -> Any:
        """The entity a feature column's row belongs to, as reports show it (None for other columns)."""
        return self.feature[column][0].shown_key(row) if column in self.feature and row else None

    def _span(self, index, i: str, column: str) -> list[tuple[int, str]]:
        if column not in self.feature or i not in self.rows:
            return []
        g, f = self.feature[column]
        row = self.rows[i]
        t = row[self.schema.event_time]
        times, ids = index[g.key].get(g.key_of(row), ([], []))
        lo, hi = bisect.bisect_left(times, t - f.window_ms), bisect.bisect_right(times, t)  # [t - W, t]
        return list(zip(times[lo:hi], ids[lo:hi]))

    def late_in_window(self, i: str, column: str) -> list[str]:
        return [eid for _, eid in self._span(self._late, i, column)]

    def window(self, i: str, column: str) -> tuple[WindowEvent, ...]:
        if column not in self.feature:
            return ()
        of = self.feature[column][1].of
        return tuple(WindowEvent(eid, t, self.rows[eid].get(of) if of else None, eid in self.confirmed)
                     for t, eid in self._span(self._all, i, column))


def _columns(events: list[tuple[int, str]]) -> tuple[list[int], list[str]]:
    events.sort()
    return [t for t, _ in events], [i for _, i in events]


def _with_windows(mismatches: list[Mismatch], windows: _FeatureWindows) -> list[Mismatch]:
    """Attach the window's events to the first examples of each (column, status) only: they can be large."""
    from dataclasses import replace

    seen: Counter = Counter()
    out = []
    for m in mismatches:
        seen[m.column, m.status] += 1
        if seen[m.column, m.status] <= EXAMPLES_PER_COLUMN:
            m = replace(m, window=windows.window(m.event_id, m.column))
        out.append(m)
    return out


def _by_id(rows: list[dict], eid: str, path: str, issues: list[Issue]) -> dict[str, dict]:
    ids = Counter(r[eid] for r in rows)
    twice = sorted((i for i, n in ids.items() if n > 1), key=str)
    if twice:
        issues.append(Issue("rows_written_twice", f"the {path} path wrote {len(twice)} event id(s) more than once",
                            tuple(twice[:20])))
    return {r[eid]: r for r in rows}


def _check_late_sets(reported: set, reference: set, issues: list[Issue]) -> None:
    if reported - reference:
        extra = sorted(reported - reference, key=str)
        issues.append(Issue("late_not_late", f"the stream reported {len(extra)} event(s) late that the reference "
                                             "says are on time, duplicate or invalid", tuple(extra[:20])))
    if reference - reported:
        missed = sorted(reference - reported, key=str)
        issues.append(Issue("late_unreported", f"{len(missed)} late event(s) the stream did not report late",
                            tuple(missed[:20])))


def _check_rejections(path: str, rejected: list[tuple[str | None, str]], ref: Evaluation, issues: list[Issue]) -> None:
    """Invalid and duplicate records, by (event id, reason) with multiplicity; late is checked on its own."""
    got = Counter((i, reason) for i, reason in rejected if reason != LATE)
    want = Counter((r.event_id, r.reason) for r in ref.rejected if r.reason in (INVALID, DUPLICATE))
    if got != want:
        extra, missing = got - want, want - got
        parts = []
        if missing:
            parts.append(f"{sum(missing.values())} the reference rejects were not rejected")
        if extra:
            parts.append(f"{sum(extra.values())} rejected that the reference does not reject")
        ids = [f"{i} ({reason})" for i, reason in [*missing, *extra]]
        issues.append(Issue("rejections_differ", f"{path} rejections differ from the reference: " + ", ".join(parts),
                            tuple(ids[:20])))


def _column_stats(catalog: Catalog) -> list[ColumnStats]:
    windows = {f.name: f.window_ms for _, f in catalog.features}
    return [ColumnStats(name, dtype, windows.get(name)) for name, dtype in catalog.feature_row_columns()
            if name != catalog.schema.event_id]


def _counts(path: PathOutput) -> Counter:
    c = Counter(reason for _, reason in path.rejected)
    c["accepted"] = len(path.rows)
    return c


def _value(row: dict | None, name: str) -> Any:
    return None if row is None else row[name]
