"""``tandem parity``: one events file through the batch path, the stream path and the reference.

The batch path is the real one: ``batch_jobs.ingest`` into a Delta lake under
``OUT/work/lake``, then ``batch_jobs.backfill.compute_features`` over every
event date in it, so it sees every valid event. The stream path is the real
Flink job (``stream_jobs.job.run``) with a ``file:`` source replaying the
events in file order (JSON Lines or Parquet, as ``stream_jobs/sources.py``
replays them). Checkpoints are off: the replay is bounded and nothing restarts.

Outputs land in ``OUT``; ``report.json`` is written last and atomically, with
the verdict in it, so a run that died part-way can never pass for a pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runtime.errors import UserError
from tandem.parity import BATCH, REJECTED, REPORT_HTML, REPORT_JSON, STREAM  # noqa: F401 (re-exported)
from runtime.events_io import read_events, write_feature_rows
from tandem.parity.compare import Comparison, PathOutput, references, compare
from tandem.reference import evaluate
from transforms import Catalog
from transforms.schema import DEFAULT_MAX_FUTURE_MS, not_after_now

WORK = "work"  # the engines' own files (lake, stream output), kept for inspection

Step = Callable[[str], AbstractContextManager]


@contextlib.contextmanager
def _quiet_step(_: str) -> Iterator[None]:
    yield


@dataclass
class ParityRun:
    events: Path
    out_dir: Path
    allowed_lateness_ms: int
    records: int
    comparison: Comparison
    timings: dict[str, float] = field(default_factory=dict)
    serving: Any = None  # tandem.serving.ServingComparison with --serving

    @property
    def passed(self) -> bool:
        return self.comparison.passed and (self.serving is None or self.serving.passed)


def check_out_dir(out_dir: Path) -> None:
    """An output directory must be new or empty: old files could pass for this run's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory; choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: exists and is not empty; choose a new --out or remove it")


def run_parity(events: Path, out_dir: Path, allowed_lateness_ms: int, catalog: Catalog,
               spark=None, step: Step = _quiet_step, serving_redis: str | None = None,
               serving_sample: int = 25, serving_project: str = "tandem_parity",
               state_backend: str = "hashmap") -> ParityRun:
    """Run both engines and the reference over ``events``, compare, and write every output under ``out_dir``.

    ``spark``: an existing session (tests share one); otherwise one is built.
    ``step``: wraps each stage, for progress display.
    ``serving_redis``: also check training = serving (``tandem.serving``): backfill
    the lake's feature tables, ``feast apply`` + materialise them into this Redis,
    let the stream write into it too, then compare ``get_historical_features``
    with ``get_online_features`` for ``serving_sample`` entities per group;
    ``serving_project`` names the Feast project (and the Redis keys' suffix) it writes.
    ``state_backend``: the stream job's (the project's ``defaults: state_backend``).
    """
    events, out_dir = Path(events), Path(out_dir)
    check_out_dir(out_dir)
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(name: str):
        began = time.perf_counter()
        with step(name):
            yield
        timings[name] = round(time.perf_counter() - began, 3)

    # Both engines reject event times more than DEFAULT_MAX_FUTURE_MS ahead of their clock when they
    # validate; the reference takes the bound as of now. Only an event within the seconds between this
    # line and the engines' validation of that bound could be judged differently: loudly, as an issue.
    not_after_ms = not_after_now(DEFAULT_MAX_FUTURE_MS)
    with timed("reading events and evaluating the reference (batch semantics)"):
        records = list(read_events(events))
        if not records:
            raise UserError(f"{events}: holds no records")
        batch_reference = evaluate(records, catalog, not_after_ms=not_after_ms)
        if not batch_reference.rows:
            raise UserError(f"{events}: no record is valid ({batch_reference.counts['invalid']} invalid); "
                            "nothing to compare")

    work = out_dir / WORK
    work.mkdir(parents=True, exist_ok=True)
    with timed("batch: Spark ingest into Delta and feature rows"):
        batch, batch_rejected = _run_batch(spark, events, work / "lake", catalog)
    store = None
    if serving_redis:
        with timed("serving: backfill feature tables, feast apply, materialize into Redis"):
            store = _prepare_serving(spark, work / "lake", serving_redis, catalog, batch_reference, serving_project)
    with timed("stream: Flink replay of the file" + (" into Redis" if serving_redis else "")):
        stream, stream_rejected = _run_stream(events, work, allowed_lateness_ms, catalog, serving_redis,
                                              serving_project, state_backend)
    with timed("reference (stream semantics) and comparison"):
        refs = references(records, allowed_lateness_ms, catalog, batch=batch_reference, not_after_ms=not_after_ms)
        comparison = compare(PathOutput(batch, [(r[0], r[1]) for r in batch_rejected]),
                             PathOutput(stream, [(r[0], r[1]) for r in stream_rejected]), refs, catalog)
    result = ParityRun(events, out_dir, allowed_lateness_ms, len(records), comparison, timings)
    if store is not None:
        from tandem.serving import compare_training_serving

        with timed("serving: get_historical_features vs get_online_features"):
            reported_late = {i for i, reason, _ in stream_rejected if reason == "late"}
            result.serving = compare_training_serving(store, catalog, refs.batch, refs.stream, reported_late,
                                                      sample=serving_sample)
    with timed("writing outputs"):
        write_feature_rows(batch, out_dir / BATCH, catalog)
        write_feature_rows(stream, out_dir / STREAM, catalog)
        _write_rejected(batch_rejected, stream_rejected, out_dir / REJECTED, catalog)
        from tandem.parity import html, report

        (out_dir / REPORT_HTML).write_text(html.render(result), encoding="utf-8")
        write_json_atomically(report.to_json(result), out_dir / REPORT_JSON)  # last: its presence means finished
    return result


def write_json_atomically(doc: dict[str, Any], path: Path) -> None:
    """Write to a temporary sibling, then rename: readers see the whole file or none."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# The batch path ----------------------------------------------------------------


def _run_batch(spark, events: Path, lake_root: Path, catalog: Catalog):
    """Ingest then compute the feature rows of every event date in the lake; rows with time as epoch ms."""
    from pyspark.sql import functions as F

    from batch_jobs.backfill import compute_features
    from batch_jobs.compile_catalog import EVENT_DATE
    from batch_jobs.ingest import ingest
    from batch_jobs.spark_session import build_spark
    from runtime.lake import Lake

    spark = spark or build_spark("tandem-parity")
    lake = Lake.at(lake_root)
    ingest(spark, events, lake, catalog)
    first, last = spark.read.format("delta").load(lake.tables(catalog).events).agg(F.min(EVENT_DATE), F.max(EVENT_DATE)).first()
    t = catalog.schema.event_time
    columns = [name for name, _ in catalog.feature_row_columns()]
    frame = compute_features(spark, lake, catalog, first, last).select(
        *(F.unix_millis(t).alias(t) if name == t else F.col(name) for name in columns))
    rows = [row.asDict() for row in frame.collect()]
    eid = catalog.schema.event_id
    dead = spark.read.format("delta").load(lake.tables(catalog).dead_letters).select(eid, "reason", "kind", "detail")
    rejected = [(r[eid], r["reason"], _detail(r["kind"], r["detail"])) for r in dead.collect()]
    return rows, rejected


def _prepare_serving(spark, lake_root: Path, redis: str, catalog: Catalog, batch_reference, project: str):
    """The batch side of serving: feature tables for every event date, registered and materialised."""
    from datetime import datetime, timezone

    from batch_jobs.backfill import backfill
    from batch_jobs.spark_session import build_spark
    from runtime.lake import Lake
    from feature_repo.materialize import materialize
    from tandem.serving import register

    spark = spark or build_spark("tandem-parity")
    times = [r[catalog.schema.event_time] for r in batch_reference.rows]
    first, last = (datetime.fromtimestamp(t / 1000, tz=timezone.utc).date() for t in (min(times), max(times)))
    backfill(spark, Lake.at(lake_root), first, last, catalog)
    store = register(project, [catalog], lake_root, redis)
    materialize(spark, Lake.at(lake_root), [catalog], redis, project, first, last)
    return store


# The stream path ---------------------------------------------------------------


def _run_stream(events: Path, work: Path, allowed_lateness_ms: int, catalog: Catalog,
                redis: str | None, project: str, state_backend: str):
    from stream_jobs.flink_env import build_table_env
    from stream_jobs.job import StreamJobSpec, run
    from stream_jobs.outputs import dead_letters, feature_rows

    # The stream's file source replays JSON Lines or Parquet itself (stream_jobs/sources.py). The copy gives
    # the file a plain name: Flink's file source silently reads nothing from a file named _x or .x.
    source = work / "stream_input" / f"events{events.suffix.lower()}"
    source.parent.mkdir(parents=True)
    shutil.copyfile(events, source)
    out = work / "stream"
    run(build_table_env(parallelism=1),
        StreamJobSpec(f"file:{source}", out, allowed_lateness_ms, catalog=catalog, project=project, redis=redis,
                      checkpoint_interval_ms=0, state_backend=state_backend))
    rows = feature_rows(out, catalog)
    eid = catalog.schema.event_id
    rejected = [(d[eid], d["reason"], _detail(d.get("kind"), d.get("detail"))) for d in dead_letters(out)]
    return rows, rejected


def _detail(kind: str | None, detail: str | None) -> str | None:
    return f"{kind}: {detail}" if kind else detail


def _write_rejected(batch: list[tuple], stream: list[tuple], path: Path, catalog: Catalog) -> None:
    """``rejected.parquet`` of the parity contract: the event id (named as in the schema), path, reason, detail."""
    eid = catalog.schema.event_id
    schema = pa.schema([(eid, pa.string()), ("path", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
    rows = [{eid: i, "path": p, "reason": reason, "detail": detail}
            for p, rejected in (("batch", batch), ("stream", stream)) for i, reason, detail in rejected]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
