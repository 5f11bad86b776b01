"""Benchmark: Tandem's Spark batch job vs a hand-written Spark SQL job, whole reference catalog.

Run from the repository root (after ``./dev setup``)::

    .venv/bin/python benchmarks/batch_features.py                  # 2,000,000 events (~18 min on 2 cores)
    .venv/bin/python benchmarks/batch_features.py --events 200000  # quick run

What it does, in order:

1. Generates N transactions with ``examples.transactions.features.generate.StreamSpec`` (100k users,
   5k merchants, default skew, a fixed rate so the density of events per key
   and so the window sizes do not depend on N), once, cached as Parquet under
   the git-ignored ``benchmarks/.data/<key>/`` (a child process, so the driver's
   memory figures do not carry the generator's lists).
2. Builds the ``events`` Delta table with Tandem's real ingestion
   (``batch_jobs.ingest.ingest``: validation on the driver, dedup, Delta
   writes), timed and reported separately; cached with its figures
   (``--reingest`` to measure it again).
3. In one Spark session (``build_spark``, same settings for every job), after
   an untimed warm-up, runs ``--rounds`` interleaved rounds (A, A', B, then the
   variants; every other round in reverse order, so no job always goes first)
   over the full date range, each job writing the two per-entity
   Delta feature tables the way the backfill writes them (``group_table``
   columns, ``delta_tables.replace_partitions``) to its own fresh folder:

   * ``A``  Tandem's backfill as shipped: ``batch_jobs.backfill.backfill``
     (``compute_features`` -> persist -> validation pass -> two writes);
   * ``A'`` ``compute_features`` -> ``group_table`` -> ``replace_partitions``
     per table, without backfill's persist + validation staging;
   * ``B``  hand-written Spark SQL: native window functions (RANGE frames on
     epoch ms), native SUM/AVG/MAX/COUNT, ``size(collect_set())``, native
     ``hour()`` (session zone UTC), one query per table.

   and variants of A' that compile float sums/means differently, to price
   Tandem's prefix-state compilation (``--no-variants`` skips them):

   * ``A' sliding exact_sum``  ``exact_sum`` over each sliding RANGE frame
     (exact; Tandem's compilation before prefix states);
   * ``A' sliding native SUM``  Spark's SUM over each sliding frame (what B
     does; fast where frames are small, but not exact).
4. Compares every output with A's tables, feature by feature (A is bit-exact
   with the reference evaluator: tests/test_batch_path.py).

Also reported: how many rows each sliding window frame re-aggregates in
total (Spark recomputes a RANGE frame for every row, so this, more than the
event count, is what both jobs pay for).

Memory: a background thread samples, every 0.25 s, the driver JVM's heap in
use (``MemoryMXBean``), its RSS, the Python driver's RSS and the PSS of the
Python workers (pandas UDFs); the old generation's peak comes from the
``MemoryPoolMXBean`` peak (reset before each job). In local mode the driver
JVM is also the only executor, so these are the job's whole footprint.

Results are printed as tables and written to ``benchmarks/.data/<key>/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA_DIR = REPO / "benchmarks" / ".data"
TARGET_RATIO = 1.2
DAY_MS = 86_400_000

from examples.transactions.features.transactions import CATALOG as TRANSACTIONS  # noqa: E402


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSpec:
    events: int
    users: int
    merchants: int
    rate_per_s: float
    seed: int

    @property
    def key(self) -> str:
        return f"n{self.events}-u{self.users}-m{self.merchants}-r{self.rate_per_s:g}-s{self.seed}"

    @property
    def duration_s(self) -> int:
        return max(1, round(self.events / self.rate_per_s))

    def stream_spec(self):
        from examples.transactions.features.generate import PARQUET_INVALID_KINDS, StreamSpec

        # Defaults for everything else: skew 1.0, 2% ties, 5% out of order,
        # 1% duplicates, 1% invalid records (the kinds a typed Parquet file can carry).
        return StreamSpec(users=self.users, merchants=self.merchants, rate_per_s=self.rate_per_s,
                          duration=f"{self.duration_s}s", invalid_kinds=PARQUET_INVALID_KINDS, seed=self.seed)


def _generate(spec: DataSpec, path: str) -> None:
    """Child process: generate the stream and write it as typed Parquet."""
    from runtime.events_io import write_events
    from examples.transactions.features.generate import generate
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    tmp = path + ".tmp.parquet"
    write_events(generate(spec.stream_spec()), tmp, TRANSACTIONS)
    os.replace(tmp, path)


def ensure_events_file(spec: DataSpec, folder: Path, say) -> Path:
    path = folder / "events.parquet"
    if path.exists():
        say(f"events file: {path} (cached)")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    say(f"generating {spec.events:,} events -> {path} ...")
    began = time.monotonic()
    proc = multiprocessing.get_context("spawn").Process(target=_generate, args=(spec, str(path)))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or not path.exists():
        raise SystemExit(f"generating events failed (exit code {proc.exitcode})")
    say(f"generated in {time.monotonic() - began:.1f} s (not part of any figure)")
    return path


def _frame_stats(events_dir: str, out: str) -> None:
    """Child process: how many rows each window frame of the catalog holds, summed over all events.

    Spark evaluates a sliding RANGE frame by re-aggregating the whole frame for
    every row, so this sum (not the event count) is what the window operators
    cost, in both jobs. Read with pyarrow from the events table's Parquet files
    (written once by ingestion, so every file is live).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds

    from examples.transactions.features.transactions import CATALOG as C

    table = ds.dataset(events_dir, format="parquet").to_table(
        columns=list(dict.fromkeys(k for g in C.groups for k in g.key)) + [C.schema.event_time])
    time_type = table.schema.field(C.schema.event_time).type
    ms = (table[C.schema.event_time].cast(pa.timestamp("ms", tz=getattr(time_type, "tz", None)), safe=False)
          .cast(pa.int64()).to_numpy())
    stats = {}
    for group in C.groups:
        (key,) = group.key  # the example catalog: one key per group
        codes = np.unique(table[key].to_numpy(zero_copy_only=False), return_inverse=True)[1].astype(np.int64)
        order = np.lexsort((ms, codes))
        composite = (codes[order] << 42) + ms[order]  # key-major, then time: one sorted array
        counts = np.bincount(codes)
        for w_ms, window in sorted({(f.window_ms, f.window) for f in group.features}):
            lo = np.searchsorted(composite, composite - w_ms, side="left")
            hi = np.searchsorted(composite, composite, side="right")
            size = hi - lo
            stats[f"{group.entity} {window}"] = {"frame_rows": int(size.sum()), "mean_frame": float(size.mean()),
                                                 "max_frame": int(size.max())}
        top = int(counts.max())
        stats[f"{group.entity} hottest key"] = {"events": top, "share": top / len(codes), "keys": int(len(counts))}
    Path(out).write_text(json.dumps(stats, indent=1))


def frame_stats(lake_events: str, folder: Path, say) -> dict:
    path = folder / "frames.json"
    if not path.exists():
        say("counting window frame sizes (pyarrow, child process, not timed) ...")
        proc = multiprocessing.get_context("spawn").Process(target=_frame_stats, args=(lake_events, str(path)))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            return {}
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- memory and CPU sampling


def _proc_status_kb(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _python_workers(jvm_pid: int) -> list[int]:
    """PySpark's daemon and workers under the JVM (not the short-lived helpers the JVM spawns,
    whose copy-on-write view of the JVM's memory would be counted as theirs)."""
    found = []
    for pid in _descendants(jvm_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"pyspark.daemon" in fh.read():  # not "pyspark": the JVM's own classpath has it
                    found.append(pid)
        except OSError:
            pass
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Usage:
    wall_s: float = 0.0
    jvm_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    heap_used_peak_mb: float = 0.0
    old_gen_peak_mb: float = 0.0
    gc_s: float = 0.0
    jvm_rss_peak_mb: float = 0.0
    driver_rss_peak_mb: float = 0.0
    workers_pss_peak_mb: float = 0.0
    load1: float = 0.0


class Monitor:
    """Samples the driver JVM and the Python processes while a job runs."""

    def __init__(self, spark, interval: float = 0.25):
        self.jvm = spark.sparkContext._jvm
        mf = self.jvm.java.lang.management.ManagementFactory
        self.memory = mf.getMemoryMXBean()
        self.pools = [p for p in mf.getMemoryPoolMXBeans() if str(p.getType()) == "Heap memory"]
        self.gcs = list(mf.getGarbageCollectorMXBeans())
        self.jvm_pid = int(self.jvm.java.lang.ProcessHandle.current().pid())
        self.interval = interval

    def _gc_ms(self) -> int:
        return sum(max(0, g.getCollectionTime()) for g in self.gcs)

    @contextlib.contextmanager
    def measure(self):
        self.jvm.java.lang.System.gc()  # every job starts from a collected heap
        for pool in self.pools:
            pool.resetPeakUsage()
        usage = Usage(load1=os.getloadavg()[0])
        stop = threading.Event()
        peaks = {"heap": 0, "jvm_rss": 0, "driver_rss": 0, "workers": 0}
        # Python workers come and go (and are reaped without their CPU reaching a parent's
        # cutime): CPU is the last value seen per worker, minus its value at the start.
        cpu_start = {p: _cpu_seconds(p) for p in _python_workers(self.jvm_pid)}
        cpu_seen = dict(cpu_start)

        def sample():
            peaks["heap"] = max(peaks["heap"], self.memory.getHeapMemoryUsage().getUsed())
            peaks["jvm_rss"] = max(peaks["jvm_rss"], _proc_status_kb(self.jvm_pid, "VmRSS"))
            peaks["driver_rss"] = max(peaks["driver_rss"], _proc_status_kb(os.getpid(), "VmRSS"))
            workers = _python_workers(self.jvm_pid)
            peaks["workers"] = max(peaks["workers"], sum(_pss_kb(p) for p in workers))
            for p in workers:
                cpu_seen[p] = max(cpu_seen.get(p, 0.0), _cpu_seconds(p))

        def loop():
            while not stop.wait(self.interval):
                try:
                    sample()
                except Exception:  # the gateway may be busy closing; a missed sample is fine
                    pass

        thread = threading.Thread(target=loop, daemon=True, name="bench-monitor")
        gc0, cpu0 = self._gc_ms(), _cpu_seconds(self.jvm_pid)
        began = time.monotonic()
        thread.start()
        try:
            yield usage
        finally:
            usage.wall_s = time.monotonic() - began
            stop.set()
            thread.join()
            sample()
            usage.jvm_cpu_s = _cpu_seconds(self.jvm_pid) - cpu0
            usage.workers_cpu_s = sum(cpu - cpu_start.get(p, 0.0) for p, cpu in cpu_seen.items())
            usage.gc_s = (self._gc_ms() - gc0) / 1000
            usage.heap_used_peak_mb = peaks["heap"] / 2**20
            usage.old_gen_peak_mb = sum(p.getPeakUsage().getUsed() for p in self.pools
                                        if "Old" in str(p.getName())) / 2**20
            usage.jvm_rss_peak_mb = peaks["jvm_rss"] / 1024
            usage.driver_rss_peak_mb = peaks["driver_rss"] / 1024
            usage.workers_pss_peak_mb = peaks["workers"] / 1024

    def max_heap_mb(self) -> float:
        return self.memory.getHeapMemoryUsage().getMax() / 2**20


# --------------------------------------------------------------------------- the jobs


@dataclass(frozen=True)
class Context:
    spark: object
    lake: object  # runtime.lake.Lake holding the events table (and A's feature tables)
    out: Path  # where every other job writes its tables
    start: date
    end: date


def _key_columns(catalog, group) -> list[str]:
    return [*group.key, catalog.schema.event_time, catalog.schema.event_id]


def table_paths(ctx: Context, job: str) -> dict[str, str]:
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    if job in WRITES_AS_A:
        return {g.entity: ctx.lake.tables(TRANSACTIONS).features(g.entity) for g in TRANSACTIONS.groups}
    folder = re.sub(r"[^A-Za-z0-9]+", "_", job.replace("'", "p")).strip("_")  # A'+native rows -> Ap_native_rows
    return {g.entity: str(ctx.out / folder / g.entity) for g in TRANSACTIONS.groups}


def job_a(ctx: Context) -> None:
    """Tandem's backfill, exactly as ``tandem backfill`` runs it."""
    from batch_jobs.backfill import backfill

    backfill(ctx.spark, ctx.lake, ctx.start, ctx.end, TRANSACTIONS)


def _write_groups(ctx: Context, rows, job: str) -> None:
    """The backfill's writes: each group's table, partitions of the range replaced in one commit."""
    from batch_jobs.compile_catalog import group_table
    from batch_jobs.delta_tables import replace_partitions
    from examples.transactions.features.transactions import CATALOG as C

    paths = table_paths(ctx, job)
    for group in C.groups:
        replace_partitions(group_table(rows, C, group.entity), paths[group.entity], ctx.start, ctx.end,
                           _key_columns(C, group))


def job_a_direct(ctx: Context) -> None:
    """compute_features -> group_table -> replace_partitions: the backfill without its staging."""
    from batch_jobs.backfill import compute_features
    from examples.transactions.features.transactions import CATALOG as C

    _write_groups(ctx, compute_features(ctx.spark, ctx.lake, C, ctx.start, ctx.end), "A'")


@contextlib.contextmanager
def compiled_float_sums(kind: str):
    """Compile float sums/means another way, to price Tandem's prefix-state compilation.

    ``sliding exact``: ``exact_sum`` over each sliding RANGE frame (Tandem's
    compilation before the prefix form: exact, but re-aggregates every frame);
    ``sliding native``: Spark's SUM / SUM/COUNT over the sliding frame (what B
    does; not exact).
    """
    from pyspark.sql import functions as F

    import batch_jobs.compile_catalog as cc
    from transforms import Agg

    saved, saved_states = cc._aggregate, cc._prefix_states

    def aggregate(feature, col_type, order, event_id):
        if not cc._exact(feature, col_type):
            return saved(feature, col_type, order, event_id)
        frame = order.rangeBetween(-feature.window_ms, 0)
        col = F.col(feature.of).cast("double")
        total = F.call_function("exact_sum", col) if kind == "sliding exact" else F.sum(col)
        return total.over(frame) if feature.agg is Agg.SUM else total.over(frame) / F.count(F.lit(1)).over(frame)

    cc._aggregate, cc._prefix_states = aggregate, lambda *args: {}
    try:
        yield
    finally:
        cc._aggregate, cc._prefix_states = saved, saved_states


def job_a_sliding_exact(ctx: Context) -> None:
    from batch_jobs.backfill import compute_features
    from examples.transactions.features.transactions import CATALOG as C

    with compiled_float_sums("sliding exact"):
        rows = compute_features(ctx.spark, ctx.lake, C, ctx.start, ctx.end)  # the plan is built here
    _write_groups(ctx, rows, "A' sliding exact_sum")


def job_a_sliding_native(ctx: Context) -> None:
    from batch_jobs.backfill import compute_features
    from examples.transactions.features.transactions import CATALOG as C

    with compiled_float_sums("sliding native"):
        rows = compute_features(ctx.spark, ctx.lake, C, ctx.start, ctx.end)
    _write_groups(ctx, rows, "A' sliding native SUM")


def hand_written_sql(ctx: Context) -> dict[str, str]:
    """Job B's two queries, as an engineer would write them by hand for this catalog."""
    from batch_jobs.backfill import longest_window_ms

    from examples.transactions.features.transactions import CATALOG as C

    lookback = longest_window_ms(C)
    first_ms = int(datetime(ctx.start.year, ctx.start.month, ctx.start.day, tzinfo=timezone.utc).timestamp() * 1000) - lookback
    first_day = ctx.start - timedelta(days=-(-lookback // DAY_MS))
    events = f"""
      SELECT transaction_id, user_id, merchant_id, amount, event_time, event_date,
             unix_millis(event_time) AS ts
      FROM delta.`{ctx.lake.tables(TRANSACTIONS).events}`
      WHERE event_date BETWEEN DATE'{first_day}' AND DATE'{ctx.end}'
        AND unix_millis(event_time) >= {first_ms}"""
    in_range = f"event_date BETWEEN DATE'{ctx.start}' AND DATE'{ctx.end}'"

    def frame(key: str, ms: int) -> str:
        return f"(PARTITION BY {key} ORDER BY ts RANGE BETWEEN {ms} PRECEDING AND CURRENT ROW)"

    user = f"""
      SELECT * FROM (
        SELECT user_id, event_time, transaction_id,
               count(1)                       OVER w10m AS user_txn_count_10m,
               count(1)                       OVER w1h  AS user_txn_count_1h,
               count(1)                       OVER w24h AS user_txn_count_24h,
               sum(amount)                    OVER w1h  AS user_amount_sum_1h,
               sum(amount)                    OVER w24h AS user_amount_sum_24h,
               max(amount)                    OVER w24h AS user_amount_max_24h,
               avg(amount)                    OVER w7d  AS user_amount_avg_7d,
               sum(CASE WHEN hour(event_time) < 6 THEN 1 ELSE 0 END) OVER w24h AS user_night_txn_count_24h,
               CAST(size(collect_set(merchant_id) OVER w24h) AS BIGINT) AS user_distinct_merchants_24h,
               event_date
        FROM ({events})
        WINDOW w10m AS {frame('user_id', 600_000)},
               w1h  AS {frame('user_id', 3_600_000)},
               w24h AS {frame('user_id', 86_400_000)},
               w7d  AS {frame('user_id', 604_800_000)}
      ) WHERE {in_range}"""
    merchant = f"""
      SELECT * FROM (
        SELECT merchant_id, event_time, transaction_id,
               count(1)    OVER w1h  AS merchant_txn_count_1h,
               avg(amount) OVER w24h AS merchant_amount_avg_24h,
               event_date
        FROM ({events})
        WINDOW w1h  AS {frame('merchant_id', 3_600_000)},
               w24h AS {frame('merchant_id', 86_400_000)}
      ) WHERE {in_range}"""
    return {"user": user, "merchant": merchant}


def job_b(ctx: Context) -> None:
    from batch_jobs.delta_tables import replace_partitions
    from examples.transactions.features.transactions import CATALOG as C

    paths = table_paths(ctx, "B")
    for group in C.groups:
        sql = hand_written_sql(ctx)[group.entity]
        replace_partitions(ctx.spark.sql(sql), paths[group.entity], ctx.start, ctx.end, _key_columns(C, group))


def job_a_no_gates(ctx: Context) -> None:
    """Tandem's backfill with its staged check but no gate figures: the baseline that prices the gates."""
    from batch_jobs.backfill import backfill

    backfill(ctx.spark, ctx.lake, ctx.start, ctx.end, TRANSACTIONS, gates=False)


def gated_catalog():
    """The example catalog with a gate of every kind a backfill runs, beside the defaults (completeness of
    every column, volume): a range, two drifts (PSI and KS), a critical feature's completeness."""
    from transforms import Catalog, Completeness, Drift, Range

    t = TRANSACTIONS
    feature = {f.name: f for _, f in t.features}
    float_features = [n for n, f in feature.items() if t.feature_dtype(f).value == "float64"]
    gates = (Range(column=float_features[0], min=0), Drift(column=float_features[0]),
             Drift(column=float_features[-1], method="ks"), Completeness(column=float_features[1], min=0.99))
    return Catalog(t.schema, t.row_functions, t.groups, gates)


def job_a_all_gates(ctx: Context) -> None:
    """Tandem's backfill with a gate of every backfill kind (``gated_catalog``)."""
    from batch_jobs.backfill import backfill

    backfill(ctx.spark, ctx.lake, ctx.start, ctx.end, gated_catalog())


MAIN_JOBS = {"A": job_a, "A'": job_a_direct, "B": job_b, "A no gates": job_a_no_gates,
             "A all gates": job_a_all_gates}
WRITES_AS_A = {"A", "A no gates", "A all gates"}  # backfill() itself: the lake's own feature tables
VARIANTS = {
    "A' sliding exact_sum": job_a_sliding_exact,
    "A' sliding native SUM": job_a_sliding_native,
}
DESCRIPTIONS = {
    "A": "Tandem backfill() as shipped: compute_features, staged (persist), validation pass, 2 writes",
    "A'": "compute_features -> group_table -> replace_partitions (no staging/validation)",
    "B": "hand-written Spark SQL, native windows/aggregates, one query per table",
    "A no gates": "A without the gates' figures in its validation pass (the baseline that prices them)",
    "A all gates": "A with a range, two drift and a critical completeness gate beside the defaults",
    "A' sliding exact_sum": "A' with float sums/means as exact_sum over each sliding frame (exact; the "
                            "compilation before prefix states)",
    "A' sliding native SUM": "A' with float sums/means as Spark's SUM over each sliding frame (not exact)",
}


# --------------------------------------------------------------------------- checks


def compare_tables(spark, reference: dict[str, str], other: dict[str, str]) -> dict:
    """Per feature: rows whose value differs from the reference table's, and the largest difference."""
    from pyspark.sql import functions as F

    from examples.transactions.features.transactions import CATALOG as C

    eid = C.schema.event_id
    out = {}
    for group in C.groups:
        a = spark.read.format("delta").load(reference[group.entity]).alias("a")
        b = spark.read.format("delta").load(other[group.entity]).alias("b")
        joined = a.join(b, F.col(f"a.{eid}") == F.col(f"b.{eid}"), "full_outer")
        aggs = [F.count(F.lit(1)).alias("_rows"),
                F.sum((F.col(f"a.{eid}").isNull() | F.col(f"b.{eid}").isNull()).cast("long")).alias("_unmatched")]
        for f in group.features:
            differs = ~F.col(f"a.{f.name}").eqNullSafe(F.col(f"b.{f.name}"))
            diff = F.abs(F.col(f"a.{f.name}") - F.col(f"b.{f.name}"))
            aggs += [F.sum(differs.cast("long")).alias(f"{f.name}__n"),
                     F.max(diff).alias(f"{f.name}__abs"),
                     F.max(diff / F.greatest(F.abs(F.col(f"a.{f.name}")), F.lit(1e-300))).alias(f"{f.name}__rel")]
        row = joined.agg(*aggs).first().asDict()
        out[group.entity] = {
            "rows": row["_rows"], "unmatched": row["_unmatched"],
            "features": {f.name: {"differ": row[f"{f.name}__n"] or 0,
                                  "max_abs": float(row[f"{f.name}__abs"] or 0.0),
                                  "max_rel": float(row[f"{f.name}__rel"] or 0.0)} for f in group.features},
        }
    return out


def compare_row_functions(ctx: Context) -> dict:
    """amount_log1p / is_night: Tandem's pandas UDFs (numpy) vs Spark's native log1p / hour()."""
    from pyspark.sql import functions as F

    from batch_jobs.backfill import events_for_range
    from batch_jobs.compile_catalog import with_row_functions
    from examples.transactions.features.transactions import CATALOG as C

    df = with_row_functions(events_for_range(ctx.spark, ctx.lake, C, ctx.start, ctx.end), C)
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum((~F.col("amount_log1p").eqNullSafe(F.log1p("amount"))).cast("long")).alias("amount_log1p"),
        F.max(F.try_divide(F.abs(F.col("amount_log1p") - F.log1p("amount")), F.abs(F.log1p("amount")))).alias("rel"),
        F.sum((~F.col("is_night").eqNullSafe((F.hour("event_time") < 6).cast("long"))).cast("long")).alias("is_night"),
    ).first()
    return {"rows": row["rows"], "amount_log1p": row["amount_log1p"] or 0, "amount_log1p_max_rel": row["rel"] or 0.0,
            "is_night": row["is_night"] or 0}


# --------------------------------------------------------------------------- machine


def machine_info(spark) -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    jvm = spark.sparkContext._jvm
    prop = jvm.java.lang.System.getProperty
    delta_jar = next((j.rsplit("/", 1)[-1] for j in spark.conf.get("spark.jars").split(",") if "delta-spark" in j), "?")
    import pandas
    import pyarrow

    return {
        "nproc": nproc,
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "java": f"{prop('java.vm.name')} {prop('java.runtime.version')}",
        "spark": spark.version,
        "delta": delta_jar,
        "python": platform.python_version(),
        "pyarrow/pandas": f"{pyarrow.__version__} / {pandas.__version__}",
        "spark master": spark.sparkContext.master,
        "driver heap (-Xmx)": f"{spark.conf.get('spark.driver.memory', '1g')} (max {Monitor(spark).max_heap_mb():.0f} MiB)",
        "shuffle partitions": spark.conf.get("spark.sql.shuffle.partitions"),
    }


# --------------------------------------------------------------------------- report


@dataclass
class Run:
    job: str
    round: int
    usage: Usage
    events: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.usage.wall_s


@dataclass
class Results:
    spec: dict
    machine: dict = field(default_factory=dict)
    ingest: dict = field(default_factory=dict)
    range: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    differences: dict = field(default_factory=dict)
    row_functions: dict = field(default_factory=dict)
    python_driver_maxrss_mb: float = 0.0


GATES_MAX_COST = 0.10  # issue 13: the gates may add at most 10 % to the backfill


def median_wall(runs: list[Run], job: str) -> float:
    return statistics.median(r.usage.wall_s for r in runs if r.job == job)


def print_report(console, res: Results, runs: list[Run]) -> None:
    from rich.table import Table

    t = Table(title="Machine", show_header=False)
    for k, v in res.machine.items():
        t.add_row(k, str(v))
    console.print(t)

    ing = res.ingest
    t = Table(title="Data and ingestion (not part of the A/B figures)", show_header=False)
    t.add_row("generator", res.spec["generator"])
    t.add_row("records in file", f"{ing['records']:,}")
    t.add_row("accepted events", f"{ing['accepted']:,}  (rejected: {ing['rejected']})")
    t.add_row("event dates", f"{res.range['start']} .. {res.range['end']} ({res.range['days']} days)")
    t.add_row("ingest (driver validation)",
              f"{ing['seconds']:.1f} s = {ing['records'] / ing['seconds']:,.0f} records/s"
              f"{' (cached: measured ' + ing['measured_at'] + ')' if ing.get('cached') else ''}")
    t.add_row("ingest peaks", f"heap {ing['heap_used_peak_mb']:,.0f} MiB, JVM RSS {ing['jvm_rss_peak_mb']:,.0f} MiB, "
                              f"Python driver RSS {ing['driver_rss_peak_mb']:,.0f} MiB")
    console.print(t)

    if res.frames:
        t = Table(title="Window work: rows each sliding frame re-aggregates, summed over all events "
                        "(Spark recomputes a RANGE frame for every row, in A and B alike)")
        for col in ("frame", "rows aggregated", "per event (mean)", "largest frame"):
            t.add_column(col, justify="left" if col == "frame" else "right")
        hot = []
        for name, f in res.frames.items():
            if "frame_rows" in f:
                t.add_row(name, f"{f['frame_rows']:,}", f"{f['mean_frame']:.1f}", f"{f['max_frame']:,}")
            else:
                hot.append(f"{name.split()[0]}: {f['events']:,} events ({f['share']:.1%}) of {f['keys']:,} keys")
        t.caption = "hottest key, " + "; ".join(hot)
        console.print(t)

    t = Table(title="Runs (in execution order)")
    for col in ("job", "round", "wall s", "events/s", "JVM CPU s", "py workers CPU s", "GC s",
                "heap used peak MiB", "old gen peak MiB", "JVM RSS MiB", "py driver RSS MiB", "py workers PSS MiB",
                "load1 at start"):
        t.add_column(col, justify="right" if col != "job" else "left", no_wrap=col == "job")
    for r in runs:
        u = r.usage
        t.add_row(r.job, str(r.round), f"{u.wall_s:.1f}", f"{r.events_per_s:,.0f}", f"{u.jvm_cpu_s:.0f}",
                  f"{u.workers_cpu_s:.1f}", f"{u.gc_s:.1f}", f"{u.heap_used_peak_mb:,.0f}", f"{u.old_gen_peak_mb:,.0f}",
                  f"{u.jvm_rss_peak_mb:,.0f}", f"{u.driver_rss_peak_mb:,.0f}", f"{u.workers_pss_peak_mb:,.0f}",
                  f"{u.load1:.1f}")
    console.print(t)

    base = "B" if any(r.job == "B" for r in runs) else "A no gates" if any(r.job == "A no gates" for r in runs) else "A"
    b = median_wall(runs, base)
    target = f" (target A/B <= {TARGET_RATIO})" if base == "B" else ""
    t = Table(title=f"Summary: median wall time, ratio to {base}{target}")
    for col in ("job", "rounds (s)", "median s", "events/s", f"vs {base}", "JVM CPU s (median)"):
        t.add_column(col, justify="left" if col == "job" else "right", no_wrap=col == "job")
    for job in [j for j in DESCRIPTIONS if any(r.job == j for r in runs)]:
        mine = [r for r in runs if r.job == job]
        med = median_wall(runs, job)
        ratio = med / b
        mark = "" if job == base or base != "B" else (" ok" if ratio <= TARGET_RATIO else " over")
        t.add_row(job, " / ".join(f"{r.usage.wall_s:.1f}" for r in mine), f"{med:.1f}",
                  f"{mine[0].events / med:,.0f}", f"{ratio:.2f}{mark}",
                  f"{statistics.median(r.usage.jvm_cpu_s for r in mine):.0f}")
    console.print(t)
    for job in [j for j in DESCRIPTIONS if any(r.job == j for r in runs)]:
        console.print(f"  {job:<31} {DESCRIPTIONS[job]}")

    if res.differences:
        names = list(res.differences)
        t = Table(title="Feature values that differ from A's (A is bit-exact with the reference evaluator)")
        t.add_column("table.feature", no_wrap=True)
        for name in names:
            t.add_column(f"{name}: rows differing", justify="right")
            t.add_column(f"{name}: max rel diff", justify="right")
        first = res.differences[names[0]]
        for entity, d in first.items():
            t.add_row(f"{entity} (rows / unmatched ids)",
                      *[x for n in names for x in (f"{res.differences[n][entity]['rows']:,} / "
                                                   f"{res.differences[n][entity]['unmatched']:,}", "")])
            for fname in d["features"]:
                cells = []
                for n in names:
                    f = res.differences[n][entity]["features"][fname]
                    rows = max(res.differences[n][entity]["rows"], 1)
                    cells += [f"{f['differ']:,} ({f['differ'] / rows:.1%})" if f["differ"] else "0",
                              f"{f['max_rel']:.2g}" if f["differ"] else ""]
                t.add_row(f"{entity}.{fname}", *cells)
        console.print(t)
    if res.row_functions:
        rf = res.row_functions
        console.print(f"Row functions over {rf['rows']:,} events, Tandem (numpy, pandas UDF) vs Spark native: "
                      f"amount_log1p vs log1p() differs in {rf['amount_log1p']:,} rows "
                      f"(max rel diff {rf['amount_log1p_max_rel']:.2g}), is_night vs hour() < 6 in {rf['is_night']:,}.")
    console.print(f"Python driver peak RSS over the whole process (getrusage, incl. ingestion): "
                  f"{res.python_driver_maxrss_mb:,.0f} MiB")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="transactions to generate (default 2,000,000)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=0.05,
                        help="events per second of event time (default 0.05: 2M events span ~463 days); "
                             "sets how many events fall in each key's windows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds; each runs A, A', B and the variants, in reverse order every other round (default 2)")
    parser.add_argument("--no-variants", action="store_true", help="skip the profiling variants")
    parser.add_argument("--jobs", default=None,
                        help="only these main jobs, comma-separated (e.g. \"A,A no gates,A all gates\" to price the "
                             "gates with more rounds); default: all")
    parser.add_argument("--driver-memory", default=None,
                        help="spark.driver.memory (default: build_spark's, 4g)")
    parser.add_argument("--reingest", action="store_true", help="ingest again even when a cached lake exists")
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="cache folder (default benchmarks/.data)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.events < 1000:
        parser.error("--rounds must be >= 1 and --events >= 1000")
    wanted = set(MAIN_JOBS) if args.jobs is None else {j.strip() for j in args.jobs.split(",")}
    if wanted - set(MAIN_JOBS):
        parser.error(f"--jobs: unknown {sorted(wanted - set(MAIN_JOBS))}; the jobs are {', '.join(MAIN_JOBS)}")

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 200)
    say = lambda msg: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")  # noqa: E731
    spec = DataSpec(args.events, args.users, args.merchants, args.rate, args.seed)
    folder = Path(args.data_dir).resolve() / spec.key
    events_file = ensure_events_file(spec, folder, say)

    from batch_jobs.ingest import ingest
    from batch_jobs.spark_session import build_spark
    from runtime.lake import Lake
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    conf = {"spark.driver.memory": args.driver_memory} if args.driver_memory else {}
    say("starting Spark (build_spark, local[*]) ...")
    spark = build_spark("tandem-benchmark", conf=conf)
    spark.sparkContext.setLogLevel("ERROR")
    monitor = Monitor(spark)
    ss = spec.stream_spec()
    res = Results(spec={**asdict(spec), "generator": (
        f"StreamSpec(users={ss.users:,}, merchants={ss.merchants:,}, rate_per_s={ss.rate_per_s:g}, "
        f"duration={ss.duration}, skew={ss.skew}, ties={ss.ties}, out_of_order={ss.out_of_order}, "
        f"duplicates={ss.duplicates}, invalid={ss.invalid}, seed={ss.seed}) -> Parquet")})
    res.machine = machine_info(spark)

    lake = Lake.at(folder / "lake")
    ingest_file = folder / "ingest.json"
    if args.reingest or not ingest_file.exists():
        shutil.rmtree(lake.root, ignore_errors=True)
        ingest_file.unlink(missing_ok=True)
        say(f"ingesting {events_file.name} with batch_jobs.ingest.ingest ...")
        with monitor.measure() as u:
            result = ingest(spark, events_file, lake, TRANSACTIONS)
        res.ingest = {"seconds": u.wall_s, "records": result.records, "accepted": result.accepted,
                      "rejected": dict(result.rejected), "heap_used_peak_mb": u.heap_used_peak_mb,
                      "jvm_rss_peak_mb": u.jvm_rss_peak_mb, "driver_rss_peak_mb": u.driver_rss_peak_mb,
                      "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        ingest_file.write_text(json.dumps(res.ingest, indent=1))
        say(f"ingested in {u.wall_s:.1f} s ({result.records / u.wall_s:,.0f} records/s)")
    else:
        res.ingest = {**json.loads(ingest_file.read_text()), "cached": True}
        say(f"events table: {lake.tables(TRANSACTIONS).events} (cached; ingest figures from {res.ingest['measured_at']})")

    from pyspark.sql import functions as F

    bounds = spark.read.format("delta").load(lake.tables(TRANSACTIONS).events).agg(
        F.min("event_date").alias("start"), F.max("event_date").alias("end"), F.count(F.lit(1)).alias("n")).first()
    start, end, n_events = bounds["start"], bounds["end"], bounds["n"]
    res.range = {"start": str(start), "end": str(end), "days": (end - start).days + 1, "events": n_events}
    res.frames = frame_stats(lake.tables(TRANSACTIONS).events, folder, say)
    out = folder / "out"
    ctx = Context(spark, lake, out, start, end)

    runs: list[Run] = []

    def run(job: str, fn, rnd: int) -> None:
        for path in table_paths(ctx, job).values():
            shutil.rmtree(path, ignore_errors=True)
        say(f"round {rnd}: {job} ...")
        with monitor.measure() as u:
            fn(ctx)
        runs.append(Run(job, rnd, u, n_events))
        say(f"round {rnd}: {job} {u.wall_s:.1f} s ({n_events / u.wall_s:,.0f} events/s, "
            f"JVM CPU {u.jvm_cpu_s:.0f} s, heap peak {u.heap_used_peak_mb:,.0f} MiB)")

    # Warm-up, not timed: JIT, Python workers and Delta code paths, so round 1 is not charged for them.
    warm = Context(spark, Lake.at(folder / "warmup"), folder / "warmup" / "out", start, min(end, start + timedelta(days=1)))
    shutil.rmtree(warm.lake.root, ignore_errors=True)
    warm.lake.tables(TRANSACTIONS).root.mkdir(parents=True)
    os.symlink(lake.tables(TRANSACTIONS).events, warm.lake.tables(TRANSACTIONS).events)
    say("warm-up (untimed): A and B over the first two days ...")
    for fn in (job_a, job_b):
        fn(warm)
    shutil.rmtree(warm.lake.root, ignore_errors=True)

    variants = {} if args.no_variants else dict(VARIANTS)
    order = [(job, fn) for job, fn in {**MAIN_JOBS, **variants}.items() if job in wanted or job in variants]
    for rnd in range(1, args.rounds + 1):
        # Odd rounds run the list forwards, even rounds backwards: no job always goes first.
        for job, fn in (order if rnd % 2 else order[::-1]):
            run(job, fn, rnd)

    say("comparing feature values with A's tables (not timed) ...")
    reference = table_paths(ctx, "A")
    for job in ["B", "A'", "A' sliding exact_sum", "A' sliding native SUM"]:
        if "A" in wanted and any(r.job == job for r in runs):
            res.differences[job] = compare_tables(spark, reference, table_paths(ctx, job))
    res.row_functions = compare_row_functions(ctx)
    res.runs = [{"job": r.job, "round": r.round, "events": r.events, **asdict(r.usage)} for r in runs]
    res.python_driver_maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (folder / "results.json").write_text(json.dumps(asdict(res), indent=1, default=str))

    print_report(console, res, runs)
    if {"A", "B"} <= wanted:
        a, b = median_wall(runs, "A"), median_wall(runs, "B")
        verdict = "meets" if a / b <= TARGET_RATIO else "misses"
        console.print(f"[bold]A/B = {a:.1f} s / {b:.1f} s = {a / b:.2f}[/bold] ({verdict} the target <= "
                      f"{TARGET_RATIO}); results: {folder / 'results.json'}")
    base = median_wall(runs, "A no gates") if "A no gates" in wanted else None
    for job in ("A", "A all gates") if base else ():
        if job not in wanted:
            continue
        cost = median_wall(runs, job) / base - 1
        verdict = "meets" if cost <= GATES_MAX_COST else "misses"
        console.print(f"[bold]gates' cost, {job} vs A no gates = {median_wall(runs, job):.1f} s / {base:.1f} s: "
                      f"{cost:+.1%}[/bold] ({verdict} the target <= {GATES_MAX_COST:.0%})")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
