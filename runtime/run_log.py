"""The run log: one row per run of every pipeline, in a Delta table of the lake.

Every ingest, backfill, materialisation and stream checkpoint appends one
:class:`RunRecord` to ``<lake>/_tandem/run_log``; metrics, ``tandem status``
and alerts read from it, so it is the one record of what ran, what it read
and wrote, what each quality gate measured and decided, and why a run failed.

A pipeline is named ``<kind>:<source>`` (``ingest:transactions``,
``backfill:rides``, ``materialize:rides``, ``stream:transactions``).

The table is written with delta-rs (the ``deltalake`` package), not Spark, so
that a stream job, the orchestrator and ``tandem status`` append and read it
without a JVM; each append is one Delta commit (atomic, concurrent appends
retried by delta-rs). It is read through the table's file list and pyarrow's
Parquet reader (delta-rs's own pyarrow dataset path aborts the interpreter at
exit with pyarrow 16, delta-rs issue #2184). Rows are checked when written and
when read: a malformed row is refused with the field and the reason, never
skipped.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from runtime.errors import UserError

KINDS = ("ingest", "backfill", "materialize", "stream")
STATUSES = ("success", "failed", "blocked")  # blocked: a quality gate refused the write; nothing was published
TRIGGERS = ("cli", "schedule", "sensor", "backfill", "manual", "retry", "checkpoint", "test")  # manual: started in the orchestrator's UI
VERDICTS = ("pass", "warn", "fail")
ACTIONS = ("block", "warn")


@dataclass(frozen=True)
class GateResult:
    """One quality gate's figures and verdict in one run."""

    gate: str  # its name, e.g. "completeness(amount)"
    kind: str  # completeness | freshness | volume | range | drift | references
    column: str | None
    figure: float | None  # what was measured (a share, an age in seconds, a row count, a PSI...)
    threshold: float | None  # the bound it was held to
    verdict: str  # pass | warn | fail
    action: str  # block | warn: what a failure does
    why: str  # one line, with the figures

    @property
    def blocks(self) -> bool:
        return self.verdict == "fail" and self.action == "block"


@dataclass
class RunRecord:
    pipeline: str
    trigger: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str = "success"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    retries: int = 0
    rows_in: int = 0
    rows_out: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> records
    gates: list[GateResult] = field(default_factory=list)
    null_rates: dict[str, float] = field(default_factory=dict)  # column -> share of nulls in the output
    distributions: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> {mean, p50, ...}
    partitions: list[str] = field(default_factory=list)  # event dates the run wrote (or touched)
    newest_event: datetime | None = None  # the newest event time in the run's output: freshness
    alerts: list[str] = field(default_factory=list)  # what was alerted, and where it was not delivered
    error: str | None = None

    @property
    def kind(self) -> str:
        return self.pipeline.split(":", 1)[0]

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field that is not what the run log holds."""
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"run log row {self.run_id or '?'} ({self.pipeline or '?'}): {name} {why}")

        kind, _, source = (self.pipeline or "").partition(":")
        if kind not in KINDS or not source:
            raise bad("pipeline", f"{self.pipeline!r} is not <kind>:<source> with kind one of {', '.join(KINDS)}")
        if not self.run_id:
            raise bad("run_id", "is empty")
        if self.trigger not in TRIGGERS:
            raise bad("trigger", f"{self.trigger!r} is not one of {', '.join(TRIGGERS)}")
        if self.status not in STATUSES:
            raise bad("status", f"{self.status!r} is not one of {', '.join(STATUSES)}")
        for name in ("started_at", "ended_at", "newest_event"):
            t = getattr(self, name)
            if t is None and name != "started_at":
                continue
            if not isinstance(t, datetime) or t.utcoffset() is None:
                raise bad(name, f"{t!r} is not a datetime with a time zone")
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise bad("ended_at", "is before started_at")
        for name in ("retries", "rows_in", "rows_out"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise bad(name, f"{n!r} is not a count")
        for reason, n in self.rejected.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise bad("rejected", f"{reason}={n!r} is not a count")
        for name, mapping in (("stages", self.stages), ("null_rates", self.null_rates)):
            for key, v in mapping.items():
                if not _finite(v) or v < 0 or (name == "null_rates" and v > 1):
                    raise bad(name, f"{key}={v!r} is out of range")
        for g in self.gates:
            if g.verdict not in VERDICTS or g.action not in ACTIONS:
                raise bad("gates", f"{g.gate}: verdict {g.verdict!r} / action {g.action!r} unknown")
        if self.status == "blocked" and not any(g.blocks for g in self.gates):
            raise bad("status", "is blocked but no gate blocked")
        if self.status == "failed" and not self.error:
            raise bad("error", "is empty on a failed run")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_TS = pa.timestamp("us", tz="UTC")
_GATE = pa.struct([("gate", pa.string()), ("kind", pa.string()), ("column", pa.string()),
                   ("figure", pa.float64()), ("threshold", pa.float64()), ("verdict", pa.string()),
                   ("action", pa.string()), ("why", pa.string())])
SCHEMA = pa.schema([
    ("pipeline", pa.string()), ("run_id", pa.string()), ("trigger", pa.string()),
    ("started_at", _TS), ("ended_at", _TS), ("status", pa.string()),
    ("stages", pa.map_(pa.string(), pa.float64())), ("retries", pa.int64()),
    ("rows_in", pa.int64()), ("rows_out", pa.int64()), ("rejected", pa.map_(pa.string(), pa.int64())),
    ("gates", pa.list_(_GATE)), ("null_rates", pa.map_(pa.string(), pa.float64())),
    ("distributions", pa.string()),  # JSON: column -> {statistic: value}; inf/-inf/nan as text
    ("partitions", pa.list_(pa.string())), ("newest_event", _TS), ("alerts", pa.list_(pa.string())),
    ("error", pa.string()),
])


def _row(r: RunRecord) -> dict[str, Any]:
    row = asdict(r)
    for name in ("stages", "rejected", "null_rates"):
        row[name] = list(row[name].items())
    row["distributions"] = json.dumps(_json_numbers(r.distributions), sort_keys=True, allow_nan=False)
    return row


def _json_numbers(value: Any) -> Any:
    """JSON has no infinity or NaN: a mean that overflowed is kept as the text "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(v) for v in value]
    return value


def _record(row: dict[str, Any]) -> RunRecord:
    row = dict(row)
    for name in ("stages", "rejected", "null_rates"):
        row[name] = dict(row[name] or [])
    row["gates"] = [GateResult(**g) for g in row["gates"] or []]
    row["partitions"], row["alerts"] = list(row["partitions"] or []), list(row["alerts"] or [])
    try:
        row["distributions"] = json.loads(row["distributions"] or "{}")
    except ValueError as e:
        raise ValueError(f"run log row {row.get('run_id')}: distributions is not JSON: {e}") from None
    return RunRecord(**row)


_COMMIT_TRIES = 5  # a commit that lost a race to create the log is tried again


class RunLog:
    """The run log of one lake."""

    def __init__(self, lake_root: str | Path):
        self.path = Path(lake_root) / "_tandem" / "run_log"

    def append(self, *records: RunRecord) -> None:
        """Check and append ``records`` in one commit; a malformed record raises and nothing is written.

        Appends from several processes all land (Delta's optimistic commits), except that two which find no
        log yet both try to create it and one loses ("Metadata changed since last commit"): that one tries
        again, as an append to the log the other created. A lost commit left only unreferenced files."""
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        for r in records:
            r.check()
        if not records:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([_row(r) for r in records], schema=SCHEMA)
        for attempt in range(_COMMIT_TRIES):
            try:
                write_deltalake(str(self.path), table, mode="append")
                return
            except CommitFailedError:
                if attempt == _COMMIT_TRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def read(self, pipeline: str | None = None, since: datetime | None = None) -> list[RunRecord]:
        """Runs in start order (all, or of ``pipeline``, or started at or after ``since``). Raises
        ``UserError`` naming the row when one is malformed."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        from deltalake import DeltaTable

        if not (self.path / "_delta_log").is_dir():
            return []
        files = DeltaTable(str(self.path)).file_uris()
        if not files:
            return []
        wanted = None  # pushed down to the Parquet files' statistics: a long log is not read whole
        if pipeline is not None:
            wanted = pc.field("pipeline") == pipeline
        if since is not None:
            later = pc.field("started_at") >= pa.scalar(since, type=_TS)
            wanted = later if wanted is None else wanted & later
        rows = pq.ParquetDataset(files, schema=SCHEMA, filters=wanted).read().to_pylist()
        out = []
        for row in rows:
            try:
                r = _record(row)
                r.check()
            except (TypeError, ValueError) as e:
                raise UserError(f"{self.path}: {e}") from None
            if (pipeline is None or r.pipeline == pipeline) and (since is None or r.started_at >= since):
                out.append(r)
        return sorted(out, key=lambda r: (r.started_at, r.run_id))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
