"""Benchmark: Tandem's Flink stream job vs a hand-written Flink SQL job, whole reference catalog; and freshness.

Run from the repository root (after ``./dev setup``)::

    .venv/bin/python benchmarks/stream_features.py                   # 2,000,000 events
    .venv/bin/python benchmarks/stream_features.py --events 100000   # quick run

Two measurements, each printed as tables (and written to
``benchmarks/.data/<key>/stream_results.json``):

1. **Throughput.** N transactions (``examples.transactions.features.generate.StreamSpec``: 100k users,
   5k merchants, default skew and anomalies, the batch benchmark's fixed
   event-time rate so window sizes do not depend on N), written once as JSON
   Lines with ``runtime.events_io`` and cached under the git-ignored
   ``benchmarks/.data/<key>/``, are replayed from the file by, in one PyFlink
   gateway JVM (started, and warmed up with one untimed run of A and B over
   the first ``--warmup-lines``, before anything is timed), in ``--rounds`` interleaved
   rounds (every other round in reverse order):

   * ``A``  Tandem's stream job as shipped: ``stream_jobs.job.run`` with a
     ``StreamJobSpec`` incl. ``redis=`` (a real ``redis-server``, flushed
     before each run), default checkpoints (2 s), the feature log and dead
     letters as files, parallelism 1 (what ``tandem stream`` runs);
   * ``B``  hand-written Flink SQL: the JSON format source with a watermark,
     a SQL filter for validity, native ``LN``/``HOUR``, the same six chained
     event-time OVER windows with native COUNT/SUM/MAX/AVG/COUNT DISTINCT,
     into a ``blackhole`` sink, parallelism ``--ceiling-parallelism`` (2: both
     cores): the engine's own ceiling;

   and, unless ``--no-variants``, a ladder of jobs from B up to A, each adding
   one of Tandem's costs (all at parallelism 1), to see where the time goes.
   Timing: Flink's own net runtime of the job (``JobExecutionResult``, from the
   job's start on the cluster to its end; JVM start-up and SQL planning
   excluded), and the wall time around submit+wait for reference. CPU seconds
   of the gateway JVM (the mini-cluster) and of the Python UDF workers are
   sampled while each job runs. After the rounds, A's feature log and the
   final Redis contents are compared bit for bit with the reference
   evaluator's rows (``tandem.reference``), computed once in a child process
   and cached.

2. **Freshness.** A real KRaft Kafka broker (``local_services.kafka_broker``),
   a topic with one partition, Tandem's job reading it (``kafka:``, Redis on,
   checkpoints on), and ``benchmarks/jvm/PacedProducer.java`` replaying a
   generated stream at a steady ``--fresh-rate`` events/s (2,000), event times
   shifted to track the wall clock, logging each record's send time. A child
   process subscribes to Redis keyspace notifications (hash events) and, on
   each, reads the entity's ``_ts:<view>`` (the event time Feast serves)
   back; the time that read returns is when the value was readable. An
   accepted event (the reference evaluator over the same records in the same
   order says which) is fresh in a view when Redis first serves, after the
   event was sent, a row of its entity at least as new as the event;
   end-to-end freshness is the later of its user and merchant views, minus
   its send time. The first ``--fresh-warmup`` seconds are discarded; the
   next ``--fresh-seconds`` are measured. Run once per ``--fresh-lateness``
   (the watermark holds an event until one ``allowed lateness + 1 ms`` newer
   arrives, so freshness is at least the allowed lateness by construction).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA_DIR = REPO / "benchmarks" / ".data"
PRODUCER_SOURCE = REPO / "benchmarks" / "jvm" / "PacedProducer.java"
TARGET_RATIO = 0.5  # A's throughput / B's, at least
TARGET_P99_S = 1.0

from examples.transactions.features.transactions import CATALOG as TRANSACTIONS  # noqa: E402

BENCH_PROJECT = "tandem_bench"  # the Feast project (Redis key suffix) the benchmark writes


def _clean_env() -> dict[str, str]:
    """This process's environment without PyFlink's markers (a UDF run leaves PYFLINK_GATEWAY_DISABLED)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_")}


def _spawn(target, *args) -> multiprocessing.Process:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_clean_env())
    try:
        proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
        proc.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return proc


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSpec:
    events: int
    users: int
    merchants: int
    rate_per_s: float
    seed: int
    skew: float = 1.0  # Zipf exponent of key popularity (the generator's default)

    @property
    def key(self) -> str:
        key = f"stream-n{self.events}-u{self.users}-m{self.merchants}-r{self.rate_per_s:g}-s{self.seed}"
        return key if self.skew == 1.0 else f"{key}-z{self.skew:g}"

    @property
    def duration_s(self) -> int:
        return max(1, round(self.events / self.rate_per_s))

    def stream_spec(self):
        from examples.transactions.features.generate import StreamSpec

        # Defaults otherwise: 2% ties, 5% out of order (up to 30 s), 1% duplicates,
        # 1% invalid records of every kind JSON can carry. Epoch-ms times, as a producer would write.
        return StreamSpec(users=self.users, merchants=self.merchants, rate_per_s=self.rate_per_s,
                          duration=f"{self.duration_s}s", time_format="epoch_ms", seed=self.seed, skew=self.skew)


def _generate(spec, path: str) -> None:
    """Child process: generate the stream and write it as JSON Lines (runtime.events_io)."""
    from runtime.events_io import write_events
    from examples.transactions.features.generate import generate
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    tmp = path + ".tmp.jsonl"
    write_events(generate(spec), tmp, TRANSACTIONS)
    os.replace(tmp, path)


def ensure_file(path: Path, spec, say) -> Path:
    if path.exists():
        say(f"events file: {path} (cached)")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    say(f"generating {path.name} ...")
    began = time.monotonic()
    proc = _spawn(_generate, spec, str(path))
    proc.join()
    if proc.exitcode != 0 or not path.exists():
        raise SystemExit(f"generating events failed (exit code {proc.exitcode})")
    say(f"generated in {time.monotonic() - began:.1f} s (not part of any figure)")
    return path


def head_file(src: Path, dst: Path, lines: int) -> Path:
    if not dst.exists():
        with src.open(encoding="utf-8") as fin, dst.open("w", encoding="utf-8") as fout:
            for i, line in enumerate(fin):
                if i >= lines:
                    break
                fout.write(line)
    return dst


def _reference(events: str, lateness_ms: int, out: str) -> None:
    """Child process: the reference evaluator's feature rows (Parquet) and counts (JSON)."""
    from runtime.events_io import read_events, write_feature_rows
    from tandem.reference import evaluate
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    began = time.monotonic()
    ev = evaluate(read_events(events), TRANSACTIONS, allowed_lateness_ms=lateness_ms)
    write_feature_rows(ev.rows, out + ".tmp.parquet", TRANSACTIONS)
    os.replace(out + ".tmp.parquet", out)
    Path(out).with_suffix(".json").write_text(json.dumps(
        {"records": ev.records_in, "counts": dict(ev.counts), "seconds": time.monotonic() - began}))


def ensure_reference(events: Path, lateness_ms: int, folder: Path, say) -> tuple[Path, dict]:
    path = folder / f"reference-{lateness_ms}ms.parquet"
    if not path.exists():
        say(f"reference evaluator over {events.name} (child process, not timed) ...")
        proc = _spawn(_reference, str(events), lateness_ms, str(path))
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"the reference evaluator failed (exit code {proc.exitcode})")
    info = json.loads(path.with_suffix(".json").read_text())
    say(f"reference: {info['records']:,} records, {info['counts']} ({info['seconds']:.0f} s)")
    return path, info


# --------------------------------------------------------------------------- CPU sampling


def _descendants(pid: int):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@dataclass
class Usage:
    wall_s: float = 0.0
    net_s: float = 0.0  # Flink's net runtime of the job
    jvm_cpu_s: float = 0.0
    python_cpu_s: float = 0.0
    workers: int = 0
    redis_cpu_s: float = 0.0  # the redis-server process
    load1: float = 0.0


class CpuMonitor:
    """CPU seconds of the gateway JVM (the mini-cluster) and of the Python UDFs.

    On the local mini-cluster PyFlink runs Python UDFs in *loopback* mode:
    inside this (the client) Python process, as threads sharing its GIL, so
    this process's CPU time is counted as Python's. In ``process`` mode
    (``_python_worker_execution_mode=process``, or a real cluster) they are
    worker processes under the JVM: those come and go with each job, so each
    one's CPU time is sampled every ``interval`` s and its last sample kept (a
    worker's last ~interval before it exits can be missed).
    """

    def __init__(self, jvm_pid: int, redis_pid: int, interval: float = 0.5):
        self.jvm_pid, self.redis_pid, self.interval = jvm_pid, redis_pid, interval

    def _cpu(self, proc) -> float:
        t = proc.cpu_times()
        return t.user + t.system

    @contextlib.contextmanager
    def measure(self):
        import psutil

        usage = Usage(load1=os.getloadavg()[0])
        jvm, me, rs = psutil.Process(self.jvm_pid), psutil.Process(), psutil.Process(self.redis_pid)
        jvm_start, me_start, rs_start = self._cpu(jvm), self._cpu(me), self._cpu(rs)
        before = {p.pid: self._cpu(p) for p in _descendants(self.jvm_pid) if _is_python(p)}
        last: dict[int, float] = {}
        stop = threading.Event()

        def sample():
            for p in _descendants(self.jvm_pid):
                with contextlib.suppress(psutil.Error):
                    if _is_python(p):
                        last[p.pid] = self._cpu(p)

        def loop():
            while not stop.wait(self.interval):
                sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        began = time.monotonic()
        try:
            yield usage
        finally:
            usage.wall_s = time.monotonic() - began
            sample()
            stop.set()
            thread.join()
            usage.jvm_cpu_s = self._cpu(jvm) - jvm_start
            usage.redis_cpu_s = self._cpu(rs) - rs_start
            usage.python_cpu_s = (self._cpu(me) - me_start
                                   + sum(cpu - before.get(pid, 0.0) for pid, cpu in last.items()))
            usage.workers = len(set(last) - set(before))


def _is_python(proc) -> bool:
    import psutil

    try:
        return "python" in proc.name()
    except psutil.Error:
        return False


def gateway_pid() -> int:
    """The PyFlink gateway JVM: this process's java child."""
    import psutil

    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.name() == "java":
                return p.pid
    raise RuntimeError("no PyFlink gateway JVM among this process's children")


# --------------------------------------------------------------------------- jobs


@dataclass
class Ctx:
    events: Path
    out: Path  # jobs' output folders live under here
    lateness_ms: int
    redis_url: str
    ceiling_parallelism: int


def _net_s(result) -> float:
    return result.get_job_client().get_job_execution_result().result().get_net_runtime() / 1000.0


def _interval_sql(ms: int) -> str:
    from stream_jobs.compile_catalog import interval

    return interval(ms)


def _job_a_env(python_processes: bool, config: dict | None):
    """A parallelism-1 table environment for Tandem's job, Python UDFs in worker processes or (default) threads,
    with extra Flink options."""
    from stream_jobs.flink_env import build_table_env

    mode = os.environ.pop("_python_worker_execution_mode", None)
    if python_processes:
        os.environ["_python_worker_execution_mode"] = "process"  # read when the environment is built
    try:
        t_env = build_table_env(parallelism=1)
    finally:
        os.environ.pop("_python_worker_execution_mode", None)
        if mode is not None:
            os.environ["_python_worker_execution_mode"] = mode
    for key, value in (config or {}).items():
        t_env.get_config().set(key, value)
    return t_env


def job_a(ctx: Ctx, name: str, redis: bool = True, checkpoints: bool = True, interval_ms: int | None = None,
          config: dict | None = None, python_processes: bool = False, python_validation: bool = False) -> float:
    """Tandem's stream job as shipped (``tandem stream``): stream_jobs.job.run, parallelism 1.

    The keyword arguments make the variants: no Redis, no checkpoints, another
    checkpoint interval, extra Flink options, Python UDFs in worker processes
    (PyFlink's ``process`` mode) instead of the local default, threads of this
    process (``loopback``), and validation by the Python UDF (the job's way for
    a schema whose rules have no JVM twin) instead of the JVM validator.
    """
    from stream_jobs import pipeline
    from stream_jobs.job import StreamJobSpec, run

    out = ctx.out / name.replace(" ", "_")
    shutil.rmtree(out, ignore_errors=True)  # else it would resume from an earlier run's checkpoint
    if redis:
        import redis as redis_py

        redis_py.Redis.from_url(ctx.redis_url).flushall()  # else the guard would skip every write
    interval = {} if checkpoints and interval_ms is None else {"checkpoint_interval_ms": interval_ms or 0}
    spec = StreamJobSpec(f"file:{ctx.events}", out, ctx.lateness_ms, redis=ctx.redis_url if redis else None,
                         catalog=TRANSACTIONS, project=BENCH_PROJECT, **interval)
    t_env = _job_a_env(python_processes, config)
    jvm_spec = getattr(pipeline, "validation_spec", None)
    if python_validation:
        pipeline.validation_spec = lambda schema: None
    try:
        return _net_s(run(t_env, spec, wait=True))
    finally:
        if jvm_spec is not None:
            pipeline.validation_spec = jvm_spec


def _raw_lines(t_env, events: Path) -> str:
    """The file as one-column (``line``) raw text, as Tandem's file source reads it."""
    t_env.execute_sql(f"CREATE TEMPORARY TABLE bench_lines (line STRING) WITH "
                      f"('connector' = 'filesystem', 'path' = '{events}', 'format' = 'raw')")
    return "bench_lines"


def job_a_core(ctx: Ctx, name: str) -> float:
    """Tandem's pipeline (stream_jobs.pipeline.build) with its feature rows into a blackhole: no sinks, no checkpoints."""
    from stream_jobs.flink_env import build_table_env
    from stream_jobs.pipeline import build
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    t_env = build_table_env(parallelism=1)
    outputs = build(t_env, _raw_lines(t_env, ctx.events), TRANSACTIONS, ctx.lateness_ms)
    _blackhole(t_env, "bench_sink")
    result = t_env.execute_sql(f"INSERT INTO bench_sink SELECT * FROM {outputs.features}")
    result.wait()
    return _net_s(result)


def _blackhole(t_env, name: str) -> None:
    from stream_jobs.compile_catalog import SQL_TYPES
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    cols = ", ".join(f"`{n}` {SQL_TYPES[t]}" for n, t in TRANSACTIONS.feature_row_columns())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({cols}) WITH ('connector' = 'blackhole')")


def _native_source(t_env, events: Path, lateness_ms: int) -> str:
    """The hand-written source: Flink's JSON format, event-time watermark, a SQL validity filter."""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE b_source (
            transaction_id STRING, user_id STRING, merchant_id STRING, amount DOUBLE, currency STRING,
            event_time BIGINT,
            rt AS TO_TIMESTAMP_LTZ(COALESCE(event_time, 0), 3),
            WATERMARK FOR rt AS rt - {_interval_sql(lateness_ms + 1)}
        ) WITH ('connector' = 'filesystem', 'path' = '{events}', 'format' = 'json',
                'json.ignore-parse-errors' = 'true', 'json.fail-on-missing-field' = 'false')""")
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW b_valid AS
        SELECT *, event_time AS ts_ms FROM b_source
        WHERE transaction_id <> '' AND user_id <> '' AND merchant_id <> '' AND amount >= 0
          AND amount < CAST('Infinity' AS DOUBLE) AND REGEXP(currency, '^[A-Z]{3}$') AND event_time IS NOT NULL""")
    return "b_valid"


def _udf_validated_source(t_env, events: Path, lateness_ms: int) -> str:
    """Tandem's validation (stream_jobs.pipeline: JVM, or Python for rules without a JVM twin) on raw lines,
    then the same watermark as B (no dedup/lateness stages)."""
    import inspect

    from stream_jobs.compile_catalog import ROWTIME, TS_MS
    from stream_jobs import pipeline
    from stream_jobs.pipeline import OK, _schema
    from examples.transactions.features.transactions import CATALOG as C

    source = _raw_lines(t_env, events)
    # The job's own validation (JVM or Python), with the job's default future bound where it has one.
    if hasattr(pipeline, "register_validation"):
        pipeline.register_validation(t_env, C, inspect.signature(pipeline.build).parameters["max_future_ms"].default)
    else:  # commits before the JVM validator
        extra = ([inspect.signature(pipeline.build).parameters["max_future_ms"].default]
                 if "max_future_ms" in inspect.signature(pipeline._validation_udf).parameters else [])
        t_env.create_temporary_system_function("tandem_validate", pipeline._validation_udf(C, *extra))
    cols = ", ".join(f"v.`{f.name}` AS `{f.name}`" for f in C.schema.fields)
    table = t_env.sql_query(f"SELECT {cols} FROM (SELECT tandem_validate(line) AS v FROM {source}) "
                            f"WHERE v.status = '{OK}'")
    rowtime = (f"TO_TIMESTAMP_LTZ(event_time, 3)", f"{ROWTIME} - {_interval_sql(lateness_ms + 1)}")
    t_env.create_temporary_view("b_validated", t_env.from_data_stream(t_env.to_data_stream(table),
                                                                      _schema(table, rowtime)))
    t_env.execute_sql(f"CREATE TEMPORARY VIEW b_valid AS SELECT {', '.join(f'`{f.name}`' for f in C.schema.fields)}, "
                      f"event_time AS {TS_MS}, {ROWTIME} FROM b_validated")
    return "b_valid"


def _rows(t_env, source: str, python_rows: bool) -> str:
    if python_rows:  # Tandem's row functions: pandas UDFs over transforms/rows.py
        from stream_jobs.compile_catalog import register_row_functions, row_function_sql
        from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

        register_row_functions(t_env, TRANSACTIONS)
        items = ", ".join(row_function_sql(TRANSACTIONS))
    else:
        items = "LN(1 + amount) AS amount_log1p, CAST(CASE WHEN HOUR(rt) < 6 THEN 1 ELSE 0 END AS BIGINT) AS is_night"
    t_env.execute_sql(f"CREATE TEMPORARY VIEW b_rows AS SELECT *, {items} FROM {source}")
    return "b_rows"


def _native_windows(t_env, source: str) -> str:
    """The six OVER windows, hand-written: native COUNT/SUM/MAX/AVG/COUNT DISTINCT, chained (one OVER per SELECT)."""
    def frame(key: str, ms: int) -> str:
        return f"PARTITION BY {key} ORDER BY rt RANGE BETWEEN {_interval_sql(ms)} PRECEDING AND CURRENT ROW"

    m10, h1, d1, d7 = 600_000, 3_600_000, 86_400_000, 604_800_000
    views = [
        ("b_u10m", f"COUNT(*) OVER ({frame('user_id', m10)}) AS user_txn_count_10m"),
        ("b_u1h", f"COUNT(*) OVER ({frame('user_id', h1)}) AS user_txn_count_1h, "
                  f"SUM(amount) OVER ({frame('user_id', h1)}) AS user_amount_sum_1h"),
        ("b_u24h", f"COUNT(*) OVER ({frame('user_id', d1)}) AS user_txn_count_24h, "
                   f"SUM(amount) OVER ({frame('user_id', d1)}) AS user_amount_sum_24h, "
                   f"MAX(amount) OVER ({frame('user_id', d1)}) AS user_amount_max_24h, "
                   f"SUM(is_night) OVER ({frame('user_id', d1)}) AS user_night_txn_count_24h, "
                   f"COUNT(DISTINCT merchant_id) OVER ({frame('user_id', d1)}) AS user_distinct_merchants_24h"),
        ("b_u7d", f"AVG(amount) OVER ({frame('user_id', d7)}) AS user_amount_avg_7d"),
        ("b_m1h", f"COUNT(*) OVER ({frame('merchant_id', h1)}) AS merchant_txn_count_1h"),
        ("b_m24h", f"AVG(amount) OVER ({frame('merchant_id', d1)}) AS merchant_amount_avg_24h"),
    ]
    current = source
    for name, items in views:
        t_env.execute_sql(f"CREATE TEMPORARY VIEW {name} AS SELECT *, {items} FROM {current}")
        current = name
    return current


def job_b(ctx: Ctx, name: str, parallelism: int | None = None, validate: bool = False, python_rows: bool = False,
          tandem_windows: bool = False) -> float:
    """Hand-written Flink SQL into a blackhole; the flags swap in one of Tandem's pieces each."""
    from stream_jobs.compile_catalog import feature_views
    from stream_jobs.flink_env import build_table_env
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    t_env = build_table_env(parallelism=parallelism or ctx.ceiling_parallelism)
    src = (_udf_validated_source if validate else _native_source)(t_env, ctx.events, ctx.lateness_ms)
    rows = _rows(t_env, src, python_rows)
    if tandem_windows:  # Tandem's window operator (stream_jobs.compile_catalog) instead of OVER windows
        last = feature_views(t_env, rows, TRANSACTIONS, prefix="b")
    else:
        last = _native_windows(t_env, rows)
    _blackhole(t_env, "bench_sink")
    cols = ", ".join(f"`{n}`" for n, _ in TRANSACTIONS.feature_row_columns())
    result = t_env.execute_sql(f"INSERT INTO bench_sink SELECT {cols} FROM {last}")
    result.wait()
    return _net_s(result)


#: job name -> (function, kwargs, description). A and B first; the rest is the ladder from B up to A.
JOBS = {
    "A": (job_a, {}, "Tandem's stream job as shipped: file -> validate UDF -> dedup -> lateness -> Tandem's "
                     "window operator -> feature log + dead letters (files) + Redis; checkpoints 2 s; parallelism 1"),
    "B": (job_b, {}, "hand-written Flink SQL: JSON source, SQL filter, native rows and aggregates -> blackhole; "
                     "parallelism --ceiling-parallelism"),
}
LADDER = {
    "B p1": (job_b, {"parallelism": 1}, "B at parallelism 1"),
    "B p1 +validate": (job_b, {"parallelism": 1, "validate": True},
                       "that, reading raw lines through Tandem's validation instead of the JSON format"),
    "B p1 +validate +rows": (job_b, {"parallelism": 1, "validate": True, "python_rows": True},
                             "that, with Tandem's row functions (pandas UDFs) instead of native LN/HOUR"),
    "B p1 +validate +rows +windows": (job_b, {"parallelism": 1, "validate": True, "python_rows": True,
                                              "tandem_windows": True},
                                      "that, with Tandem's window operator instead of the OVER windows"),
    "A core": (job_a_core, {}, "Tandem's whole pipeline (adds dedup and lateness stages) -> blackhole; "
                               "no file sinks, no checkpoints"),
    "A files": (job_a, {"redis": False, "checkpoints": False},
                "that, with the feature log and dead letters as files (stream_jobs.job.run, no Redis, no checkpoints)"),
    "A -Redis": (job_a, {"redis": False}, "that, with checkpoints every 2 s (the default): A without Redis"),
}

#: Run with the ladder, not a step of it: one operator swapped in B, to compare it with Flink's.
SIDE = {
    "B p1 +windows": (job_b, {"parallelism": 1, "tandem_windows": True},
                      "B at parallelism 1 with Tandem's window operator (exact, one per group) instead of the OVER "
                      "windows"),
}

#: Not part of the ladder: changes to A that might close the gap (``--candidates``).
CANDIDATES = {
    "A ckpt 10s": (job_a, {"interval_ms": 10_000}, "A with checkpoints every 10 s instead of 2 s"),
    "A rocksdb": (job_a, {"config": {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true"}},
                  "A with the RocksDB state backend and incremental checkpoints (the default: heap, full snapshots)"),
    "A Flink waits": (job_a, {"config": {"python.fn-execution.bundle.time": "1000",
                                         "execution.buffer-timeout.interval": "100 ms",
                                         "pipeline.auto-watermark-interval": "200 ms"}},
                      "A with Flink's default waits instead of stream_jobs.flink_env.LATENCY_OPTIONS (Python bundles "
                      "1 s, network buffers 100 ms, watermarks every 200 ms): what the freshness settings cost"),
    "A python validation": (job_a, {"python_validation": True},
                            "A validating every line in the Python UDF (transforms.schema itself), as before the JVM "
                            "validator, instead of jvm/udf RecordValidator"),
    "A no object reuse": (job_a, {"config": {"pipeline.object-reuse": "false"}},
                          "A without pipeline.object-reuse (Flink's default: chained operators copy each record)"),
    "A py processes": (job_a, {"python_processes": True},
                       "A with each Python operator in its own worker process (PyFlink 'process' mode; a cluster's "
                       "way) instead of threads of the client process sharing one GIL ('loopback', the local default)"),
}


# --------------------------------------------------------------------------- checks


def _read_feature_log(folder: Path):
    """A's feature log (committed JSON Lines part files) as an Arrow table with the catalog's types."""
    import pyarrow as pa
    import pyarrow.json as pj

    from transforms import FieldType
    from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

    types = {FieldType.STRING: pa.string(), FieldType.FLOAT64: pa.float64(), FieldType.INT64: pa.int64(),
             FieldType.TIMESTAMP_MS: pa.int64()}
    schema = pa.schema([(n, types[t]) for n, t in TRANSACTIONS.feature_row_columns()])
    parts = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    tables = [pj.read_json(p, parse_options=pj.ParseOptions(explicit_schema=schema)) for p in parts]
    return pa.concat_tables(tables).select(schema.names) if tables else schema.empty_table()


def compare_with_reference(log_folder: Path, reference: Path, redis_url: str) -> dict:
    """A's feature log vs the reference rows, and Redis vs each entity's latest reference row: differing values."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from examples.transactions.features.transactions import CATALOG as C

    import pyarrow as pa

    table = pq.read_table(reference)
    i = table.schema.get_field_index(C.schema.event_time)
    ref = table.set_column(i, C.schema.event_time, table.column(i).cast(pa.int64())).to_pandas()
    got = _read_feature_log(log_folder).to_pandas()
    res = {"reference_rows": len(ref), "log_rows": len(got),
           "log_duplicate_ids": int(got["transaction_id"].duplicated().sum())}
    ref_ids, got_ids = set(ref["transaction_id"]), set(got["transaction_id"])
    res["missing_in_log"], res["extra_in_log"] = len(ref_ids - got_ids), len(got_ids - ref_ids)
    both = ref.merge(got.drop_duplicates("transaction_id"), on="transaction_id", how="inner", suffixes=("", "_got"))
    diffs = {}
    for name, _ in C.feature_row_columns():
        if name == "transaction_id":
            continue
        a, b = both[name].to_numpy(), both[f"{name}_got"].to_numpy()
        if a.dtype.kind == "f":  # bit for bit: compare the IEEE bits
            differ = int((a.astype("float64").view("int64") != b.astype("float64").view("int64")).sum())
        else:
            differ = int((a != b).sum())
        if differ:
            diffs[name] = differ
    res["log_values_differing"] = diffs

    # Redis: each entity's stored row (Feast layout) vs its latest reference row.
    import redis as redis_py
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from google.protobuf.timestamp_pb2 import Timestamp

    from stream_jobs.online_sink import OnlineWriter

    writer = OnlineWriter(redis_url, catalog=C, project=BENCH_PROJECT)
    client = redis_py.Redis.from_url(redis_url)
    redis_diffs: dict[str, int] = {}
    checked = 0
    order = ref.sort_values(["event_time", "transaction_id"], kind="stable")
    for view in writer.views:
        latest = order.drop_duplicates(list(view.key), keep="last")
        for start in range(0, len(latest), 5000):
            chunk = latest.iloc[start:start + 5000]
            with client.pipeline(transaction=False) as pipe:
                for _, row in chunk.iterrows():
                    pipe.hgetall(writer._hash_key(view, view.entity(row)))
                stored = pipe.execute()
            for (_, want), got_hash in zip(chunk.iterrows(), stored):
                checked += 1
                ts = Timestamp.FromString(got_hash.get(view.ts_field, b""))
                if ts.ToMilliseconds() != want["event_time"]:
                    redis_diffs["_ts"] = redis_diffs.get("_ts", 0) + 1
                for name, fkey, _vt in view.features:
                    v = ValueProto.FromString(got_hash.get(fkey, b""))
                    value = getattr(v, v.WhichOneof("val")) if v.WhichOneof("val") else None
                    w = want[name]
                    same = (isinstance(value, float) and np.float64(value).view("int64") == np.float64(w).view("int64")
                            if isinstance(w, (float, np.floating)) else value == w)
                    if not same:
                        redis_diffs[name] = redis_diffs.get(name, 0) + 1
    res["redis_entities_checked"] = checked
    res["redis_entities_in_store"] = int(client.dbsize())
    res["redis_values_differing"] = redis_diffs
    writer.close()
    client.close()
    del pd
    return res


# --------------------------------------------------------------------------- freshness


def _observe(redis_url: str, entities: dict, out: str, ready, stop) -> None:
    """Child process: on each keyspace notification of a hash, read its ``_ts:<view>``; log (view, entity, ts, time).

    The time logged is when that read returned: the value was readable by then.
    """
    import numpy as np
    import redis as redis_py
    from google.protobuf.timestamp_pb2 import Timestamp

    from stream_jobs.online_sink import OnlineWriter

    writer = OnlineWriter(redis_url, catalog=TRANSACTIONS, project=BENCH_PROJECT)
    keys = {}
    for vi, view in enumerate(writer.views):
        for ei, value in enumerate(entities[view.name]):
            keys[writer._hash_key(view, value)] = (vi, ei, view.ts_field)
    client = redis_py.Redis.from_url(redis_url)
    client.config_set("notify-keyspace-events", "Kh")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("__keyspace@0__:*")
    prefix = len(b"__keyspace@0__:")
    reader = redis_py.Redis.from_url(redis_url)
    log_v, log_e, log_ts, log_t = [], [], [], []
    ready.set()
    while not stop.is_set():
        msg = pubsub.get_message(timeout=0.05)
        batch = set()
        while msg is not None:
            batch.add(msg["channel"][prefix:])
            msg = pubsub.get_message(timeout=0)
        batch = [k for k in batch if k in keys]
        if not batch:
            continue
        with reader.pipeline(transaction=False) as pipe:
            for k in batch:
                pipe.hget(k, keys[k][2])
            replies = pipe.execute()
        now_us = time.time_ns() // 1000
        for k, raw in zip(batch, replies):
            if raw is None:
                continue
            vi, ei, _ = keys[k]
            log_v.append(vi), log_e.append(ei), log_ts.append(Timestamp.FromString(raw).ToMilliseconds())
            log_t.append(now_us)
    np.savez(out, view=np.array(log_v, dtype=np.int8), entity=np.array(log_e, dtype=np.int64),
             ts=np.array(log_ts, dtype=np.int64), t=np.array(log_t, dtype=np.int64))


@dataclass
class Freshness:
    label: str
    lateness_ms: int
    checkpoint_ms: int
    rate: float
    measured_events: int = 0
    unseen: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    per_view: dict = field(default_factory=dict)
    send_lag_p99_ms: float = 0.0  # producer: how late sends went out against the schedule
    ack_p50_ms: float = 0.0  # producer: send -> broker ack
    timeline: list = field(default_factory=list)  # (second, events, p50, p99)
    observer_notifications: int = 0


def _percentiles(a) -> tuple[float, float, float, float]:
    import numpy as np

    if len(a) == 0:
        return (float("nan"),) * 4
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return float(p50), float(p90), float(p99), float(np.max(a))


def run_freshness(label: str, events: Path, records: list, kafka, redis_url: str, folder: Path, rate: float,
                  warmup_s: float, measure_s: float, lateness_ms: int, checkpoint_ms: int, say,
                  flink_options: dict | None = None) -> Freshness:
    import numpy as np
    import redis as redis_py

    from stream_jobs.job import StreamJobSpec, run
    from runtime.jars import jars
    from tandem.reference import evaluate
    from transforms import parse_duration
    from examples.transactions.features.transactions import CATALOG as C

    res = Freshness(label, lateness_ms, checkpoint_ms, rate)
    work = folder / "freshness" / label.replace(" ", "_")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    topic = f"tx-{label.replace(' ', '-').replace(',', '').replace('=', '')}-{int(time.time())}"
    kafka.create_topic(topic, partitions=1)
    redis_py.Redis.from_url(redis_url).flushall()

    dicts = [r for r in records if isinstance(r, dict)]
    users = sorted({r["user_id"] for r in dicts if isinstance(r.get("user_id"), str)})
    merchants = sorted({r["merchant_id"] for r in dicts if isinstance(r.get("merchant_id"), str)})
    ready, stop = multiprocessing.get_context("spawn").Event(), multiprocessing.get_context("spawn").Event()
    obs_file = work / "observed.npz"
    observer = _spawn(_observe, redis_url, {"user": users, "merchant": merchants}, str(obs_file), ready, stop)
    if not ready.wait(120):
        raise SystemExit("the Redis observer did not start")

    flink_options = dict(flink_options or {})
    if "checkpoint-interval" in flink_options:
        checkpoint_ms = parse_duration(flink_options.pop("checkpoint-interval"))
        res.checkpoint_ms = checkpoint_ms
    python_processes = flink_options.pop("python-workers", "loopback") == "process"
    t_env = _job_a_env(python_processes, flink_options)
    spec = StreamJobSpec(f"kafka:{kafka.bootstrap_servers}/{topic}", work / "out", lateness_ms, redis=redis_url,
                         kafka_group=f"g-{topic}", checkpoint_interval_ms=checkpoint_ms, catalog=TRANSACTIONS,
                         project=BENCH_PROJECT)
    result = run(t_env, spec, wait=False)
    client = result.get_job_client()
    deadline = time.monotonic() + 120
    while client.get_job_status().result().name != "RUNNING":
        if time.monotonic() > deadline:
            raise SystemExit("the Kafka job did not reach RUNNING")
        time.sleep(0.2)
    say(f"freshness {label}: job running (lateness {lateness_ms} ms, checkpoints {checkpoint_ms} ms); "
        f"producing {len(records):,} records at {rate:,.0f}/s ...")

    timed = [r for r in records if isinstance(r, dict) and type(r.get("event_time")) is int]
    base_ms = min(r["event_time"] for r in timed)
    start_ms = int(time.time() * 1000) + 8_000  # after the producer's JVM start and compile
    shift = start_ms - base_ms
    log = work / "producer.log"
    cp = os.pathsep.join(str(p) for p in jars("kafka"))
    producer = subprocess.run(["java", "-Xmx512m", "-cp", cp, str(PRODUCER_SOURCE), kafka.bootstrap_servers, topic,
                               str(events), str(rate), str(start_ms), str(shift), str(log)],
                              capture_output=True, text=True, env=_clean_env())
    if producer.returncode != 0:
        raise SystemExit(f"producer failed: {producer.stderr[-2000:]}")
    shifted = [dict(r, event_time=r["event_time"] + shift) if isinstance(r, dict) and type(r.get("event_time")) is int
               else r for r in records]
    ev = evaluate(shifted, C, allowed_lateness_ms=lateness_ms)  # which records the job accepts, and their times
    # The file runs --fresh-tail s past the measured window, so the watermark has released every
    # measured event by the time the producer is done; a short drain for the last writes.
    time.sleep(5)
    stop.set()
    observer.join(60)
    client.cancel().result()
    with contextlib.suppress(Exception):
        result.wait()

    sends = np.loadtxt(log, dtype=np.int64).reshape(-1, 3)
    send_us, ack_us = sends[:, 1], sends[:, 2]
    due_us = start_ms * 1000 + (np.arange(len(sends)) * 1e6 / rate).astype(np.int64)
    res.send_lag_p99_ms = float(np.percentile(send_us - due_us, 99)) / 1000
    res.ack_p50_ms = float(np.percentile(ack_us - send_us, 50)) / 1000
    obs = np.load(obs_file)
    res.observer_notifications = int(len(obs["t"]))

    index = {"user": {u: i for i, u in enumerate(users)}, "merchant": {m: i for i, m in enumerate(merchants)}}
    accepted = ev.rows  # in arrival order: their positions are those no rejection took
    rejected_at = {r.position for r in ev.rejected}
    k = np.array([i for i in range(ev.records_in) if i not in rejected_at])
    assert len(k) == len(accepted)
    sent = send_us[k]
    ts = np.array([r["event_time"] for r in accepted], dtype=np.int64)
    readable = {}
    for vi, (view, key) in enumerate((("user", "user_id"), ("merchant", "merchant_id"))):
        sel = obs["view"] == vi
        e, ots, ot = obs["entity"][sel], obs["ts"][sel], obs["t"][sel]
        order = np.lexsort((ot, e))
        e, ots, ot = e[order], ots[order], ot[order]
        ots = _running_max_per_group(e, ots)
        ent = np.array([index[view][r[key]] for r in accepted])
        when = np.full(len(accepted), np.iinfo(np.int64).max, dtype=np.int64)
        bounds = np.searchsorted(e, np.arange(len(index[view]) + 1))
        for j in range(len(accepted)):
            lo, hi = bounds[ent[j]], bounds[ent[j] + 1]
            a = lo + np.searchsorted(ot[lo:hi], sent[j], side="left")
            b = lo + np.searchsorted(ots[lo:hi], ts[j], side="left")
            i = max(a, b)
            if i < hi:
                when[j] = ot[i]
        readable[view] = when
    both = np.maximum(readable["user"], readable["merchant"])
    t0 = start_ms * 1000
    window = (sent >= t0 + warmup_s * 1e6) & (sent < t0 + (warmup_s + measure_s) * 1e6)
    seen = both != np.iinfo(np.int64).max
    res.measured_events = int(window.sum())
    res.unseen = int((window & ~seen).sum())
    lat = (both[window & seen] - sent[window & seen]) / 1000.0
    res.p50_ms, res.p90_ms, res.p99_ms, res.max_ms = _percentiles(lat)
    for view, when in readable.items():
        ok = window & (when != np.iinfo(np.int64).max)
        res.per_view[view] = dict(zip(("p50_ms", "p90_ms", "p99_ms", "max_ms"),
                                      _percentiles((when[ok] - sent[ok]) / 1000.0)))
    step = 15
    secs = (sent - t0) / 1e6
    for s in range(0, int(warmup_s + measure_s), step):
        sel = (secs >= s) & (secs < s + step) & seen
        p = _percentiles((both[sel] - sent[sel]) / 1000.0)
        res.timeline.append((s, int(sel.sum()), p[0], p[2]))
    say(f"freshness {label}: p50 {res.p50_ms:,.0f} ms, p99 {res.p99_ms:,.0f} ms over {res.measured_events:,} events "
        f"({res.unseen} never readable)")
    return res


def _running_max_per_group(groups, values):
    """Cumulative max of ``values`` within each run of equal ``groups`` (sorted by group, then time)."""
    import numpy as np

    out = values.copy()
    for i in range(1, len(out)):
        if groups[i] == groups[i - 1] and out[i] < out[i - 1]:
            out[i] = out[i - 1]
    return out if len(out) else np.asarray(values)


# --------------------------------------------------------------------------- machine


def machine_info(redis_url: str) -> dict:
    import pandas
    import pyarrow
    import redis as redis_py
    from pyflink.version import __version__ as flink_version

    from runtime.jars import jars

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
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else (
        (REPO / ".commit").read_text().strip() if (REPO / ".commit").exists() else "unknown")
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() if git.returncode == 0 else ""
    kafka_jar = next((p.name for p in jars("kafka") if p.name.startswith("kafka_")), "?")
    return {
        "code": f"{commit}{' + uncommitted changes' if dirty else ''}",
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count()),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "java": java[-1].strip() if java else "?",
        "flink (PyFlink mini-cluster)": flink_version,
        "redis-server": redis_py.Redis.from_url(redis_url).info("server")["redis_version"],
        "kafka broker": kafka_jar,
        "python / pyarrow / pandas": f"{platform.python_version()} / {pyarrow.__version__} / {pandas.__version__}",
    }


# --------------------------------------------------------------------------- report


@dataclass
class Run:
    job: str
    round: int
    usage: Usage
    events: int


def median_net(runs: list[Run], job: str) -> float:
    return statistics.median(r.usage.net_s for r in runs if r.job == job)


def print_report(console, res: dict, runs: list[Run], descriptions: dict, fresh: list[Freshness]) -> None:
    from rich.table import Table

    t = Table(title="Machine", show_header=False)
    for k, v in res["machine"].items():
        t.add_row(k, str(v))
    console.print(t)
    t = Table(title="Data", show_header=False)
    t.add_row("throughput generator", res["generator"])
    if "reference" in res:
        ref = res["reference"]
        t.add_row("records in file", f"{ref['records']:,}")
        t.add_row("reference (allowed lateness "
                  f"{res['lateness_ms']} ms)", ", ".join(f"{k} {v:,}" for k, v in sorted(ref["counts"].items())))
    if res.get("fresh_generator"):
        t.add_row("freshness generator", res["fresh_generator"])
    console.print(t)

    if runs:
        t = Table(title="Runs (in execution order; net = Flink's net runtime of the job)")
        for col in ("job", "round", "net s", "wall s", "events/s", "JVM CPU s", "Python CPU s", "redis CPU s",
                    "load1 at start"):
            t.add_column(col, justify="left" if col == "job" else "right", no_wrap=col == "job")
        for r in runs:
            u = r.usage
            t.add_row(r.job, str(r.round), f"{u.net_s:.1f}", f"{u.wall_s:.1f}", f"{r.events / u.net_s:,.0f}",
                      f"{u.jvm_cpu_s:.0f}", f"{u.python_cpu_s:.0f}", f"{u.redis_cpu_s:.1f}", f"{u.load1:.1f}")
        console.print(t)

        b = median_net(runs, "B")
        t = Table(title=f"Summary: median net runtime; throughput vs B (target A >= {TARGET_RATIO} x B)")
        for col in ("job", "rounds net s", "median s", "events/s", "throughput vs B", "JVM CPU s", "Python CPU s", "redis CPU s"):
            t.add_column(col, justify="left" if col == "job" else "right", no_wrap=col == "job")
        for job in [j for j in descriptions if any(r.job == j for r in runs)]:
            mine = [r for r in runs if r.job == job]
            med = median_net(runs, job)
            t.add_row(job, " / ".join(f"{r.usage.net_s:.1f}" for r in mine), f"{med:.1f}",
                      f"{mine[0].events / med:,.0f}", f"{b / med:.2f}",
                      f"{statistics.median(r.usage.jvm_cpu_s for r in mine):.0f}",
                      f"{statistics.median(r.usage.python_cpu_s for r in mine):.0f}",
                      f"{statistics.median(r.usage.redis_cpu_s for r in mine):.1f}")
        console.print(t)
        for job in [j for j in descriptions if any(r.job == j for r in runs)]:
            console.print(f"  {job:<28} {descriptions[job]}")
        ladder = [j for j in ["B", "B p1", *LADDER, "A"] if any(r.job == j for r in runs)]
        ladder = list(dict.fromkeys(ladder))
        if len(ladder) > 2:
            t = Table(title="Where A's extra time goes (each step adds one of Tandem's costs; medians)")
            for col in ("step", "median s", "added s", "share of A-B gap"):
                t.add_column(col, justify="left" if col == "step" else "right")
            gap = median_net(runs, "A") - b
            prev = None
            for job in ladder:
                med = median_net(runs, job)
                t.add_row(job, f"{med:.1f}", "" if prev is None else f"{med - prev:+.1f}",
                          "" if prev is None or gap <= 0 else f"{(med - prev) / gap:.0%}")
                prev = med
            console.print(t)
    if res.get("check"):
        c = res["check"]
        console.print(f"A vs the reference evaluator: {c['log_rows']:,} feature log rows for {c['reference_rows']:,} "
                      f"reference rows (missing {c['missing_in_log']}, extra {c['extra_in_log']}, duplicate ids "
                      f"{c['log_duplicate_ids']}); values differing: {c['log_values_differing'] or 'none'}. "
                      f"Redis: {c['redis_entities_checked']:,} entities checked ({c['redis_entities_in_store']:,} "
                      f"keys stored), values differing: {c['redis_values_differing'] or 'none'}.")
    if fresh:
        t = Table(title="Freshness: event sent to Kafka -> its user and merchant rows readable in Redis "
                        f"(target p99 < {TARGET_P99_S:g} s)")
        for col in ("run", "allowed lateness", "checkpoints", "rate/s", "events measured", "never readable",
                    "p50 ms", "p90 ms", "p99 ms", "max ms", "user p99", "merchant p99", "send lag p99 ms",
                    "Kafka ack p50 ms"):
            t.add_column(col, justify="left" if col == "run" else "right", no_wrap=col == "run")
        for f in fresh:
            t.add_row(f.label, f"{f.lateness_ms} ms", f"{f.checkpoint_ms} ms", f"{f.rate:,.0f}",
                      f"{f.measured_events:,}", str(f.unseen), f"{f.p50_ms:,.0f}", f"{f.p90_ms:,.0f}",
                      f"{f.p99_ms:,.0f}", f"{f.max_ms:,.0f}", f"{f.per_view['user']['p99_ms']:,.0f}",
                      f"{f.per_view['merchant']['p99_ms']:,.0f}", f"{f.send_lag_p99_ms:.1f}", f"{f.ack_p50_ms:.1f}")
        console.print(t)
        for f in fresh:
            console.print(f"  {f.label}: per 15 s of sending (from the producer's start; warm-up first): " + ", ".join(
                f"{s}s {n:,} p50 {p50:,.0f} p99 {p99:,.0f}" for s, n, p50, p99 in f.timeline))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="transactions to generate (default 2,000,000)")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=0.05,
                        help="events per second of event time in the throughput data (default 0.05, as the batch "
                             "benchmark): sets how many events fall in each key's windows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skew", type=float, default=1.0,
                        help="Zipf exponent of key popularity in the throughput data (default 1.0: hot keys; 0: uniform)")
    parser.add_argument("--allowed-lateness", default="5s", help="for the throughput jobs (default 5s, the job's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-lines", type=int, default=200_000,
                        help="lines of the untimed warm-up run of A and B (default 200,000)")
    parser.add_argument("--ceiling-parallelism", type=int, default=2, help="B's parallelism (default 2: both cores)")
    parser.add_argument("--no-variants", action="store_true", help="only A and B")
    parser.add_argument("--candidates", default="", help="comma-separated extra variants of A to run in each round: "
                        + ", ".join(CANDIDATES))
    parser.add_argument("--no-check", action="store_true", help="skip comparing A's output with the reference")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-freshness", action="store_true")
    parser.add_argument("--fresh-rate", type=float, default=2000.0, help="events/s into Kafka (default 2000)")
    parser.add_argument("--fresh-warmup", type=float, default=30.0, help="seconds discarded first (default 30)")
    parser.add_argument("--fresh-seconds", type=float, default=90.0, help="seconds measured (default 90)")
    parser.add_argument("--fresh-tail", type=float, default=15.0,
                        help="seconds produced after the measured ones, so the watermark releases them (default 15)")
    parser.add_argument("--fresh-lateness", default="100ms,5s",
                        help="allowed lateness of each freshness run, comma-separated (default 100ms,5s)")
    parser.add_argument("--fresh-checkpoint", default="2s", help="checkpoint interval of the freshness runs")
    parser.add_argument("--fresh-run", action="append", default=[], metavar="KEY=VALUE[;KEY=VALUE...]",
                        help="an extra freshness run (allowed lateness: the first of --fresh-lateness) with these Flink "
                             "options, e.g. 'python.fn-execution.bundle.time=50;pipeline.auto-watermark-interval=50ms'; "
                             "also checkpoint-interval=DURATION and python-workers=process; repeatable")
    parser.add_argument("--fresh-skew", default="",
                        help="extra freshness runs (allowed lateness: the first of --fresh-lateness) on data whose keys "
                             "have these Zipf exponents, comma-separated (the default data: 1.0, hot keys; 0: uniform)")
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="cache folder (default benchmarks/.data)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.events < 1000:
        parser.error("--rounds must be >= 1 and --events >= 1000")

    from rich.console import Console

    from transforms import parse_duration

    lateness_ms = parse_duration(args.allowed_lateness)
    fresh_lateness = [parse_duration(x) for x in args.fresh_lateness.split(",") if x.strip()]
    if any(ms > (args.fresh_tail - 5) * 1000 for ms in fresh_lateness):
        parser.error("--fresh-lateness must be at least 5 s below --fresh-tail")
    fresh_ckpt = parse_duration(args.fresh_checkpoint)
    variants = [dict(kv.split("=", 1) for kv in run.split(";") if kv.strip()) for run in args.fresh_run]

    console = Console(width=None if sys.stdout.isatty() else 220)
    say = lambda msg: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {msg}")  # noqa: E731
    os.environ["TZ"] = "UTC"
    time.tzset()
    spec = DataSpec(args.events, args.users, args.merchants, args.rate, args.seed, args.skew)
    folder = Path(args.data_dir).resolve() / spec.key
    ss = spec.stream_spec()
    res: dict = {"spec": asdict(spec), "lateness_ms": lateness_ms, "generator": (
        f"StreamSpec(users={ss.users:,}, merchants={ss.merchants:,}, rate_per_s={ss.rate_per_s:g}, "
        f"duration={ss.duration}, skew={ss.skew}, ties={ss.ties}, out_of_order={ss.out_of_order}, "
        f"max_delay={ss.max_delay}, duplicates={ss.duplicates}, invalid={ss.invalid}, time_format={ss.time_format}, "
        f"seed={ss.seed}) -> JSON Lines")}

    from local_services.redis_server import RedisServer

    redis_server = RedisServer().start()
    runs: list[Run] = []
    fresh: list[Freshness] = []
    descriptions = {}
    try:
        res["machine"] = machine_info(redis_server.url)
        if not args.no_throughput:
            events = ensure_file(folder / "events.jsonl", ss, say)
            if not args.no_check:
                ref_path, res["reference"] = ensure_reference(events, lateness_ms, folder, say)
            runs, descriptions = throughput(args, events, folder, lateness_ms, redis_server.url,
                                            redis_server._proc.pid, say)
            if not args.no_check:
                say("comparing A's feature log and Redis with the reference evaluator (not timed) ...")
                res["check"] = compare_with_reference(folder / "out" / "A-last" / "features", ref_path,
                                                      redis_server.url)
        if not args.no_freshness:
            fresh, res["fresh_generator"] = freshness(args, folder, fresh_lateness, fresh_ckpt, variants,
                                                      redis_server.url, say)
    finally:
        redis_server.stop()
    res["runs"] = [{"job": r.job, "round": r.round, "events": r.events, **asdict(r.usage)} for r in runs]
    res["freshness"] = [asdict(f) for f in fresh]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stream_results.json").write_text(json.dumps(res, indent=1, default=str))
    print_report(console, res, runs, descriptions, fresh)
    if runs:
        a, b = median_net(runs, "A"), median_net(runs, "B")
        verdict = "meets" if b / a >= TARGET_RATIO else "misses"
        console.print(f"[bold]throughput A/B = {runs[0].events / a:,.0f} / {runs[0].events / b:,.0f} events/s = "
                      f"{b / a:.2f}[/bold] ({verdict} the target >= {TARGET_RATIO})")
    for f in fresh:
        verdict = "meets" if f.p99_ms < TARGET_P99_S * 1000 else "misses"
        console.print(f"[bold]freshness {f.label}: p50 {f.p50_ms:,.0f} ms, p99 {f.p99_ms:,.0f} ms[/bold] "
                      f"({verdict} the target p99 < {TARGET_P99_S:g} s)")
    console.print(f"results: {folder / 'stream_results.json'}")
    return 0


def throughput(args, events: Path, folder: Path, lateness_ms: int, redis_url: str, redis_pid: int, say):
    from stream_jobs.flink_env import build_table_env

    accepted = None
    ref_json = folder / f"reference-{lateness_ms}ms.json"
    if ref_json.exists():
        accepted = json.loads(ref_json.read_text())["counts"]["accepted"]
    if accepted is None:
        with events.open(encoding="utf-8") as fh:
            accepted = sum(1 for _ in fh)
    say("starting the PyFlink gateway JVM (not timed) ...")
    build_table_env(parallelism=1)
    monitor = CpuMonitor(gateway_pid(), redis_pid)
    out = folder / "out"
    jobs = dict(JOBS) if args.no_variants else {**JOBS, **LADDER, **SIDE}
    for name in filter(None, (c.strip() for c in args.candidates.split(","))):
        if name not in CANDIDATES:
            raise SystemExit(f"--candidates: unknown {name!r}; choose from {', '.join(CANDIDATES)}")
        jobs[name] = CANDIDATES[name]
    descriptions = {name: desc for name, (_, _, desc) in jobs.items()}

    warmup = head_file(events, folder / f"warmup-{args.warmup_lines}.jsonl", args.warmup_lines)
    warm = Ctx(warmup, out / "warmup", lateness_ms, redis_url, args.ceiling_parallelism)
    say(f"warm-up (untimed): A and B over the first {args.warmup_lines:,} lines ...")
    for name in ("A", "B"):
        fn, kwargs, _ = jobs[name]
        fn(warm, name, **kwargs)

    ctx = Ctx(events, out, lateness_ms, redis_url, args.ceiling_parallelism)
    runs: list[Run] = []
    order = list(jobs.items())
    for rnd in range(1, args.rounds + 1):
        for name, (fn, kwargs, _) in (order if rnd % 2 else order[::-1]):
            say(f"round {rnd}: {name} ...")
            with monitor.measure() as u:
                u.net_s = fn(ctx, name, **kwargs)
            runs.append(Run(name, rnd, u, accepted))
            say(f"round {rnd}: {name} net {u.net_s:.1f} s, wall {u.wall_s:.1f} s ({accepted / u.net_s:,.0f} events/s; "
                f"CPU: JVM {u.jvm_cpu_s:.0f} s, Python {u.python_cpu_s:.0f} s, redis {u.redis_cpu_s:.1f} s; "
                f"load1 {u.load1:.1f})")
            if name == "A":  # keep the last A's output for the check (its Redis is the current one)
                shutil.rmtree(out / "A-last", ignore_errors=True)
                shutil.copytree(out / "A" / "features", out / "A-last" / "features")
    return runs, descriptions


def freshness(args, folder: Path, lateness: list[int], ckpt_ms: int, variants: list[dict], redis_url: str, say):
    from runtime.events_io import read_events
    from examples.transactions.features.generate import StreamSpec
    from local_services.kafka_broker import KafkaBroker

    total_s = int(args.fresh_warmup + args.fresh_seconds + args.fresh_tail)
    n = int(total_s * args.fresh_rate)

    def data(skew: float | None):
        fspec = StreamSpec(users=args.users, merchants=args.merchants, rate_per_s=args.fresh_rate,
                           duration=f"{total_s}s", time_format="epoch_ms", seed=args.seed,
                           **({} if skew is None else {"skew": skew}))
        key = f"fresh-n{n}-u{args.users}-m{args.merchants}-s{args.seed}" + ("" if skew is None else f"-z{skew:g}")
        path = ensure_file(Path(args.data_dir).resolve() / key / "events.jsonl", fspec, say)
        return fspec, path, list(read_events(path))

    fspec, path, records = data(None)
    say("starting a KRaft Kafka broker ...")
    results = []
    with KafkaBroker() as kafka:
        plan = [(f"lateness {ms} ms", ms, {}, None) for ms in lateness]
        plan += [(f"lateness {lateness[0]} ms, " + ", ".join(f"{k}={v}" for k, v in options.items()),
                  lateness[0], options, None) for options in variants]
        plan += [(f"lateness {lateness[0]} ms, key skew {float(z):g}", lateness[0], {}, float(z))
                 for z in args.fresh_skew.split(",") if z.strip()]
        for label, ms, opts, skew in plan:
            _, run_path, run_records = (fspec, path, records) if skew is None else data(skew)
            results.append(run_freshness(label, run_path, run_records, kafka, redis_url, folder, args.fresh_rate,
                                         args.fresh_warmup, args.fresh_seconds, ms, ckpt_ms, say, opts))
    return results, (f"StreamSpec(users={fspec.users:,}, merchants={fspec.merchants:,}, rate_per_s={fspec.rate_per_s:g}, "
                     f"duration={fspec.duration}, other defaults as above) -> {len(records):,} records, event times "
                     f"shifted to the wall clock at send time")


if __name__ == "__main__":
    sys.exit(main())
