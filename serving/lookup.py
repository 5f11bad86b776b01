"""The lookup: a batch of entities' features from the online store, each value with its event time, age and status.

``OnlineLookup.lookup`` is what ``tandem serve`` answers with, and a Python
function of its own (a model server in the same process calls it directly)::

    from runtime.project import find_project
    from serving import OnlineLookup

    lookup = OnlineLookup.for_project(find_project("path/to/project"))
    result = lookup.lookup({"driver": ["d1", "d2"]}, features=["driver:driver_rides_5m"])
    # or feature_service="rides_all"; composite keys: {"city": [...], "driver": [...]}
    for row in result.rows():
        served = row["driver:driver_rides_5m"]  # .value, .status, .event_time_ms, .age_ms

It reads what Feast's ``get_online_features`` reads (``serving.online_store``),
in one round trip, and judges each value by the one rule of
``serving.statuses``: the value served is the stored one when ``fresh`` or
``stale``, the declared default when ``defaulted``, null when ``missing``. The
response says which of the requested groups a stream gate marked degraded, and
why; a view whose read failed for one entity (an error reply) is named in
``errors`` and its values are served as absent, never dropped. The degraded
marks are re-read at most every ``degraded_refresh`` seconds (``serving.marks``;
0.25 s by default), in the round trip of the lookup that finds them due: a mark
written or cleared is honoured by every lookup that starts that long after it.

The round trip goes through a circuit breaker (``serving.breaker``). When
Redis cannot be read (the breaker is open, or Redis did not answer this
lookup) and the lookup has a fallback snapshot (``serving.snapshot``; a
project's lookup always has one), every value comes from the snapshot with
status ``fallback`` (or ``defaulted``/``missing`` by the rule), and
``online_store`` says the breaker's state, since when and why. Without a
snapshot the lookup raises :class:`~serving.errors.Unavailable` (HTTP 503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import redis
from google.protobuf.message import DecodeError

from runtime.errors import UserError, one_line
from serving.breaker import CLOSED, BreakerOpen, BreakerState, CircuitBreaker
from serving.errors import BadRequest, TooLarge, Unreachable
from serving.features import Features, HashKeys, Plan, Requested, entity_columns
from serving.marks import DEFAULT_REFRESH_S, DegradedMarks
from serving.metrics import ServeMetrics
from serving.online_store import OnlineStore, event_ms, value_of
from serving.snapshot import FallbackSnapshot, SnapshotMissing
from serving.statuses import Status, fallback_status, status
from transforms import Catalog
from transforms.durations import format_duration

DEFAULT_MAX_ENTITIES = 1_000
_SERVED = (Status.FRESH, Status.STALE)
_UNSEEN = object()  # a memo miss (None is a value)
_CLOSED = {"state": CLOSED}

log = logging.getLogger(__name__)


class Served(NamedTuple):
    """One served value: the value (the default when defaulted, None when missing), its status, and the event
    time and age of the stored value it judged (None when the store holds none)."""

    value: Any
    status: Status
    event_time_ms: int | None
    age_ms: int | None


@dataclass
class FeatureColumn:
    """One requested feature over the lookup's entities (columnar, as Feast's response is)."""

    feature: Requested
    values: list = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    event_times_ms: list[int | None] = field(default_factory=list)
    ages_ms: list[int | None] = field(default_factory=list)

    def __getitem__(self, i: int) -> Served:
        return Served(self.values[i], self.statuses[i], self.event_times_ms[i], self.ages_ms[i])


@dataclass
class LookupResult:
    now_ms: int  # the serving time every age is measured from
    entities: dict[str, list]  # the key columns, as requested (checked)
    features: list[FeatureColumn]  # in request order
    degraded: dict[str, dict]  # requested group -> its mark (since, pipeline, run_id, gates, why)
    errors: dict[str, str]  # view -> why some of its values were unreadable (an error reply, corrupt bytes,
    # no fallback snapshot): those are served as absent (defaulted or missing), never dropped
    online_store: dict = field(default_factory=lambda: dict(_CLOSED))  # {"state": "closed"} when Redis was
    # read; else the breaker's state, since, why, and the snapshot each view's values came from

    def __len__(self) -> int:
        return len(next(iter(self.entities.values()), []))

    def column(self, ref: str) -> FeatureColumn:
        """The column of ``"view:feature"``."""
        for c in self.features:
            if c.feature.ref == ref:
                return c
        raise KeyError(ref)

    def rows(self) -> list[dict[str, Served]]:
        """Per entity: ``"view:feature"`` -> :class:`Served`."""
        return [{c.feature.ref: c[i] for c in self.features} for i in range(len(self))]

    def to_json(self, full_feature_names: bool = False) -> dict[str, Any]:
        """The HTTP response body: Feast's feature server shape (``metadata.feature_names`` and one ``results``
        entry per column, entity key columns first), with each value's status, event time and age.

        Feature names are bare (``trips_1h``) or, with ``full_feature_names``, ``view__feature`` as Feast
        writes them. Non-finite floats are the strings ``"Infinity"``, ``"-Infinity"``, ``"NaN"`` (protobuf's
        JSON mapping; JSON has no such numbers); int64 values are JSON integers, exact in any client that
        reads integers exactly (JavaScript's ``JSON.parse`` rounds beyond 2**53).
        """
        names = [f"{c.feature.view}__{c.feature.name}" if full_feature_names else c.feature.name
                 for c in self.features]
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise BadRequest(f"two requested features are named {twice!r}: set full_feature_names to tell them "
                             "apart (view__feature)")
        results: list[dict[str, Any]] = [{"values": list(v)} for v in self.entities.values()]
        texts: dict[int | None, str | None] = {None: None}  # an entity's features share its row's event time
        words = {s: s.value for s in Status}
        for c in self.features:
            stamps = []
            for t in c.event_times_ms:
                text = texts.get(t, "")
                if text == "":
                    text = texts[t] = _iso(t)
                stamps.append(text)
            results.append({"values": [_json_value(v) for v in c.values],
                            "statuses": [words[s] for s in c.statuses],
                            "event_timestamps": stamps,
                            "ages_ms": list(c.ages_ms)})
        return {
            "metadata": {
                "feature_names": [*self.entities, *names],
                "served_at": _iso(self.now_ms),
                "features": [_describe(c.feature) for c in self.features],
                "degraded": self.degraded,
                "errors": self.errors,
                "online_store": self.online_store,
            },
            "results": results,
        }


class OnlineLookup:
    """Looks up features of ``catalogs`` (the project's) in the Redis at ``redis`` (Feast's connection string).

    ``max_entities`` bounds one lookup (:class:`~serving.errors.TooLarge` beyond); ``timeout`` bounds its Redis
    round trip (seconds); ``metrics`` counts the served statuses; ``clock`` gives the serving time in UTC
    epoch ms (the wall clock by default). ``breaker`` guards the Redis round trip (default: open after 5
    failures in a row, a probe 10 s later); ``snapshot`` is the fallback served while Redis cannot be read
    (None: such a lookup raises :class:`~serving.errors.Unavailable`). ``degraded_refresh`` bounds, in seconds,
    how late a degraded mark written or cleared in Redis is honoured (0: the marks are read by every lookup);
    ``monotonic`` is the clock of that interval.
    """

    def __init__(self, catalogs: Sequence[Catalog], project: str, redis: str, *,
                 max_entities: int = DEFAULT_MAX_ENTITIES, timeout: float = 1.0,
                 metrics: ServeMetrics | None = None, clock=None, breaker: CircuitBreaker | None = None,
                 snapshot: FallbackSnapshot | None = None, degraded_refresh: float = DEFAULT_REFRESH_S,
                 monotonic=time.monotonic):
        if max_entities < 1:
            raise UserError(f"max_entities must be at least 1 (got {max_entities})")
        self.features = Features(catalogs)
        self.project = project
        self.max_entities = max_entities
        self.metrics = None
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self.store = OnlineStore(redis, project, timeout=timeout)
        self._hash_keys = {g.entity: HashKeys(project, g.key, tuple(c.schema.get_field(k).type for k in g.key))
                           for c in catalogs for g in c.groups}
        self.views = {g.entity: tuple(g.key) for c in catalogs for g in c.groups}  # view -> key columns
        self.breaker = breaker or CircuitBreaker()
        self.breaker.on_open, self.breaker.on_close = self._opened, self._closed
        self.snapshot = snapshot
        self.degraded_marks = DegradedMarks(degraded_refresh, monotonic=monotonic)  # as last read: what every lookup,
        # a fallback one included, judges by
        if metrics is not None:
            self.attach_metrics(metrics)

    def attach_metrics(self, metrics: ServeMetrics) -> None:
        """Count served statuses into ``metrics`` and expose the breaker there."""
        self.metrics = metrics
        metrics.watch_breaker(self.breaker)

    def _opened(self, state: BreakerState) -> None:
        log.warning("the online store's circuit breaker opened after %d failures in a row (%s): serving from the "
                    "fallback snapshot%s for %.1fs, then one probe", state.failures, state.why,
                    "" if self.snapshot is not None else " (none configured: lookups answer 503)",
                    self.breaker.reset_s)
        if self.metrics is not None:
            self.metrics.breaker_opened()

    def _closed(self, state: BreakerState) -> None:
        if state.state != CLOSED:
            log.warning("the online store answers again: its circuit breaker closed (open since %s)",
                        _iso(state.since_ms))

    @classmethod
    def for_project(cls, project, redis: str | None = None, **kw) -> "OnlineLookup":
        """The lookup of a ``runtime.project.Project``: its catalogs, its online store (or ``redis``)."""
        address = redis or project.online_store
        if not address:
            raise UserError(f"{project.config_path}: no online store to serve from: set online_store, "
                            "$TANDEM_REDIS or --redis")
        settings = project.serving
        kw.setdefault("max_entities", settings.max_entities)
        kw.setdefault("breaker", CircuitBreaker(settings.breaker_failures, settings.breaker_reset_ms / 1000))
        kw.setdefault("snapshot", FallbackSnapshot(project.lake_root))
        kw.setdefault("degraded_refresh", settings.degraded_refresh_ms / 1000)
        return cls(list(project.catalogs().values()), project.name, address, **kw)

    def lookup(self, entities: Mapping[str, Sequence], features: Sequence[str] | None = None,
               feature_service: str | None = None, now_ms: int | None = None) -> LookupResult:
        """The values of ``features`` (``"view:feature"`` refs) or ``feature_service`` for ``entities`` (key
        column -> one value per entity), as of ``now_ms`` (default: the clock when Redis answered)."""
        plan = self.features.plan(features, feature_service)
        count, columns = entity_columns(plan, entities)
        if count > self.max_entities:
            raise TooLarge(f"{count} entities in one lookup; this server takes at most {self.max_entities} "
                           "(split the batch, or raise serving.max_entities)")
        commands, reads = self._commands(plan, count, columns)
        read_at = self.degraded_marks.due()  # None: the marks held are recent enough, this lookup does not read them
        try:
            replies, marks = self.breaker.call(lambda: self.store.round_trip(commands, marks=read_at is not None))
        except (Unreachable, BreakerOpen) as e:
            if self.snapshot is None:
                raise
            return self._fallback(plan, count, columns, self.clock() if now_ms is None else now_ms, str(e))
        if marks is None:
            marks = self.degraded_marks.marks
        else:
            self.degraded_marks.update(marks, read_at)
        now = self.clock() if now_ms is None else now_ms
        out: list = [None] * len(plan.features)  # each column put at its place in the request's order
        result = LookupResult(now, columns, out, _degraded(plan, marks), {})
        counts: dict[tuple[str, Status], int] | None = None if self.metrics is None else {}
        memo: dict[bytes, Any] = {}
        for view, (command_of, offset), positions in zip(plan.views, reads, plan.positions):
            degraded = view.name in marks
            width = len(view.features) + 1  # the features' fields, then _ts:<view>
            absent = [None] * width
            decoded: dict[int, tuple[list, int | None]] = {}  # per command: an entity named twice is read once
            rows = []
            for c in command_of:
                row = decoded.get(c)
                if row is None:
                    reply = replies[c]
                    try:
                        if isinstance(reply, Exception):
                            raise reply
                        part = reply[offset:offset + width]
                        t = event_ms(part[-1])
                        row = (part, t, None if t is None else now - t)
                    except (redis.exceptions.ResponseError, DecodeError) as e:  # served as absent, and said so
                        result.errors.setdefault(view.name, _unreadable(view.name, e))
                        row = (absent, None, None)
                    decoded[c] = row
                rows.append(row)
            if count == 1:  # one entity: the same rule, without a batch's per-column loops and memo (a fifth of
                # a one-entity lookup's Python)
                part, t, row_age = rows[0]
                for j, feature in enumerate(view.features):
                    stored = part[j]
                    age = None if stored is None else row_age
                    has_default = feature.default is not None
                    s = status(age, feature.budget, degraded, has_default)
                    value = feature.default
                    if s in _SERVED:
                        try:
                            value = value_of(stored)
                        except DecodeError as e:
                            result.errors.setdefault(view.name, _unreadable(view.name, e))
                            age, s = None, status(None, feature.budget, degraded, has_default)
                    out[positions[j]] = FeatureColumn(feature, [value], [s], [None if age is None else t], [age])
                    if counts is not None:
                        counts[(view.name, s)] = counts.get((view.name, s), 0) + 1
                continue
            for j, feature in enumerate(view.features):
                column = out[positions[j]] = FeatureColumn(feature, [], [], [], [])
                budget, default, has_default = feature.budget, feature.default, feature.default is not None
                values, statuses, times, ages = column.values, column.statuses, column.event_times_ms, column.ages_ms
                for part, t, row_age in rows:  # per value: the hot loop of a batch (BENCHMARKS.md)
                    stored = part[j]
                    age = None if stored is None else row_age
                    s = status(age, budget, degraded, has_default)
                    if s in _SERVED:
                        try:
                            value = memo.get(stored, _UNSEEN)  # equal bytes, equal value: decoded once
                            if value is _UNSEEN:
                                value = memo[stored] = value_of(stored)
                        except DecodeError as e:
                            result.errors.setdefault(view.name, _unreadable(view.name, e))
                            age, s, value = None, status(None, budget, degraded, has_default), default
                    else:
                        value = default
                    values.append(value)
                    statuses.append(s)
                    times.append(None if age is None else t)
                    ages.append(age)
                if counts is not None:  # a few statuses among many values: counted per status, not per value
                    for s in set(statuses):
                        counts[(view.name, s)] = counts.get((view.name, s), 0) + statuses.count(s)
        if self.metrics is not None:
            self.metrics.groups_read([v.name for v in plan.views], marks)
            self.metrics.served({(group, s.value): n for (group, s), n in counts.items()})
        return result

    def _fallback(self, plan: Plan, count: int, columns: dict[str, list], now: int, why: str) -> LookupResult:
        """The lookup served from the fallback snapshot: each value ``fallback`` (or defaulted/missing by the
        rule), judged by the degraded marks as last read; a view without a usable snapshot is served as absent
        and named in ``errors``."""
        marks = self.degraded_marks.marks
        state = self.breaker.state()
        snapshots: dict[str, str | None] = {}
        out: list = [None] * len(plan.features)
        result = LookupResult(now, columns, out, _degraded(plan, marks), {},
                              {"state": state.state, "since": _iso(state.since_ms), "why": state.why or why,
                               "snapshots": snapshots})
        counts: dict[tuple[str, Status], int] = {}
        for view, positions in zip(plan.views, plan.positions):
            degraded = view.name in marks
            try:
                snap = self.snapshot.view(view.name, self.views[view.name])
                snapshots[view.name] = _iso(snap.written_at_ms)
                parts = [columns[k] for k in view.key]
                rows = [snap.index.get(tuple([p[i] for p in parts])) for i in range(count)]
            except SnapshotMissing as e:
                snap, rows = None, [None] * count
                snapshots[view.name] = None
                result.errors[view.name] = str(e)
            for feature, position in zip(view.features, positions):
                column = out[position] = FeatureColumn(feature, [], [], [], [])
                has_default = feature.default is not None
                stored = None if snap is None else snap.columns.get(feature.name)
                if snap is not None and stored is None:
                    result.errors.setdefault(view.name, f"the fallback snapshot of view {view.name!r} has no "
                                                        f"feature {feature.name!r} (written before it was added): "
                                                        "run `tandem materialize`")
                for r in rows:
                    t = None if r is None or stored is None else snap.event_ms[r]
                    age = None if t is None else now - t
                    s = fallback_status(age, feature.budget, degraded, has_default)
                    column.values.append(stored[r] if s is Status.FALLBACK else feature.default)
                    column.statuses.append(s)
                    column.event_times_ms.append(t)
                    column.ages_ms.append(age)
                    counts[(view.name, s)] = counts.get((view.name, s), 0) + 1
        if self.metrics is not None:
            self.metrics.served({(group, s.value): n for (group, s), n in counts.items()})
        return result

    def _commands(self, plan: Plan, count: int, columns: dict[str, list]):
        """The HMGETs of a lookup: one per distinct entity hash (``Plan.hashes``), asking for the fields of every
        requested view stored in it; and, per view, the command each entity's row comes from and where its
        fields start. An entity named twice in a batch is read once."""
        commands: list[tuple[bytes, tuple[bytes, ...]]] = []
        reads: list[tuple[list[int], int]] = [([], 0)] * len(plan.views)
        if count == 1:  # one entity: one command per hash, nothing to share (a tenth of a one-entity lookup)
            for c, read in enumerate(plan.hashes):
                commands.append((self._hash_keys[read.view](tuple([columns[k][0] for k in read.key])), read.fields))
                for v, offset in zip(read.members, read.offsets):
                    reads[v] = ([c], offset)
            return commands, reads
        for read in plan.hashes:
            hash_key, fields = self._hash_keys[read.view], read.fields
            targets = []
            for v, offset in zip(read.members, read.offsets):
                target: list[int] = []
                reads[v] = (target, offset)
                targets.append(target)
            parts = [columns[k] for k in read.key]
            seen: dict[Any, int] = {}
            for i in range(count):
                values = tuple([p[i] for p in parts])
                c = seen.get(values)
                if c is None:
                    c = seen[values] = len(commands)
                    commands.append((hash_key(values), fields))
                for target in targets:
                    target.append(c)
        return commands, reads

    def close(self) -> None:
        self.store.close()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _degraded(plan: Plan, marks: dict[str, dict]) -> dict[str, dict]:
    """The marks of the requested groups, copied: the marks held are shared by later lookups, a result is the
    caller's to change."""
    if not marks:
        return {}
    return {v.name: dict(marks[v.name]) for v in plan.views if v.name in marks}


def _iso(ms: int | None) -> str | None:
    """UTC epoch ms as ISO 8601 with milliseconds and ``Z`` (exact: no float on the way)."""
    if ms is None:
        return None
    try:
        t = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:  # beyond year 9999: no writer of Tandem stores such a time
        return None
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _unreadable(view: str, e: Exception) -> str:
    if isinstance(e, DecodeError):
        return f"a stored value of view {view!r} is not a protobuf message Feast wrote: {one_line(e)}"
    return one_line(e)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return "NaN" if v != v else "Infinity" if v > 0 else "-Infinity"
    return v


def _describe(f: Requested) -> dict[str, Any]:
    show = lambda ms: None if ms is None else format_duration(ms)  # noqa: E731
    return {"name": f.name, "view": f.view, "type": f.dtype.value, "fresh_for": show(f.budget.fresh_ms),
            "max_staleness": show(f.budget.max_ms), "default": _json_value(f.default)}
