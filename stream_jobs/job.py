"""Running the stream job: the ``main`` that ``flink run`` and ``tandem stream`` call.

Sources (``stream_jobs/sources.py``): ``file:PATH`` replays a JSON Lines or
Parquet file (or a directory's files, in name order), or with ``--follow``
watches a directory for new files; ``kafka:BROKERS/TOPIC`` reads a topic from
a chosen start. Sinks: the append-only feature log, JSON Lines part files
under ``--out`` (committed on checkpoints: exactly once); the dead letters
(``stream_jobs/dead_letters.py``: part files, or a Kafka topic); with
``--redis``, the online store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyflink.table import StreamTableEnvironment

from stream_jobs import dead_letters
from stream_jobs.compile_catalog import SQL_TYPES
from stream_jobs.failures import root_cause
from stream_jobs.outputs import file_sink_options
from stream_jobs.pipeline import build
from stream_jobs.sources import SOURCE, SourceSpec, create_source, require_kafka_topics, sql_options
from runtime.errors import UserError
from runtime.operations import Operations
from transforms import Catalog
from transforms.schema import DEFAULT_MAX_FUTURE_MS


@dataclass(frozen=True)
class StreamJobSpec:
    source: str  # file:PATH | kafka:BROKERS/TOPIC
    out_dir: Path
    allowed_lateness_ms: int = 5_000
    catalog: Catalog = field(kw_only=True)  # required, by name
    project: str = field(kw_only=True)  # the project's name: Feast's project, the Redis key suffix
    redis: str | None = None  # host:port (or redis://...) of the online store; None: no online writes
    kafka_group: str = "tandem-stream"
    kafka_start: str = "group-offsets"  # group-offsets | earliest | latest | timestamp:T (see sources.py)
    kafka_until_latest: bool = False  # stop at the offsets that were latest at start (replays, tests)
    kafka_properties: dict[str, str] = field(default_factory=dict, repr=False)  # the project's: credentials, TLS
    follow_ms: int | None = None  # file:DIR: watch it for new files at this interval (unbounded)
    dead_letters: str | None = None  # None or "files": OUT/dead_letters; "kafka:BROKERS/TOPIC"
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS  # events further ahead of the wall clock are invalid
    checkpoint_interval_ms: int = 2_000  # 0 turns checkpointing off
    state_backend: str = "hashmap"  # hashmap (JVM heap) | rocksdb (local disk; incremental checkpoints)
    roll_interval_ms: int = 60_000  # longest a row waits in an open part file (see file_sink_options)
    rest_port: int | None = None  # the mini-cluster's web UI / REST API (metrics) port; None: a random one
    restart_attempts: int = 3  # restarts from the last checkpoint after a failure, then the job fails
    lake: Path | None = None  # its run log gets a row per checkpoint (stream_jobs/monitor.py); None: no rows
    metrics_port: int | None = None  # live metrics for Prometheus at :PORT/metrics (monitor.py); None: none
    operations: Operations | None = None  # the project's SLAs and alert channels: the monitor's gates alert there


def create_feature_log(t_env: StreamTableEnvironment, out_dir: Path, catalog: Catalog, roll_interval_ms: int) -> str:
    feature_cols = ", ".join(f"`{name}` {SQL_TYPES[t]}" for name, t in catalog.feature_row_columns())
    options = file_sink_options(out_dir / "features", roll_interval_ms)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE tandem_feature_log ({feature_cols}) WITH ({sql_options(options)})")
    return "tandem_feature_log"


def run(t_env: StreamTableEnvironment, spec: StreamJobSpec, wait: bool = True):
    """Build and submit the job; with ``wait``, block until a bounded source is exhausted.

    Checkpoints go to ``OUT/_checkpoints`` and are kept when the job dies; a
    run over the same ``OUT`` resumes from the newest complete one, so a
    killed job restarted with the same arguments loses and repeats nothing.

    With ``spec.lake`` or ``spec.metrics_port``, a :class:`~stream_jobs.monitor.StreamMonitor` (``result.monitor``)
    watches the job until it ends: a run log row per checkpoint, live metrics for Prometheus.
    """
    online = None
    if spec.redis:  # an unreachable online store, or options the sink cannot honour: said before Flink starts
        from stream_jobs.online_sink import OnlineWriter
        from stream_jobs.online_table import sink_options

        with OnlineWriter(spec.redis, catalog=spec.catalog, project=spec.project) as writer:
            online = sink_options(writer, spec.catalog)  # its layout (Feast's repo config), address, TLS
    target = dead_letters.parse_target(spec.dead_letters)  # a bad target fails before Flink starts
    if target is not None:
        require_kafka_topics(target[0], [target[1]], "--dead-letters", spec.kafka_properties)
    if spec.max_future_ms < 0:
        raise UserError("--max-future must not be negative")
    if spec.roll_interval_ms <= 0:
        raise UserError("--roll-interval must be more than 0 ms")
    if spec.restart_attempts < 0:
        raise UserError("--restarts must be 0 or more")
    configure_checkpoints(t_env, spec)
    create_source(t_env, SourceSpec(spec.source, spec.out_dir / "_input", spec.follow_ms, spec.kafka_group,
                                    spec.kafka_start, spec.kafka_until_latest, spec.kafka_properties))
    outputs = build(t_env, SOURCE, spec.catalog, spec.allowed_lateness_ms, max_future_ms=spec.max_future_ms)
    feature_sink = create_feature_log(t_env, spec.out_dir, spec.catalog, spec.roll_interval_ms)
    dead_sink = dead_letters.create_sink(t_env, spec.catalog, spec.dead_letters, spec.out_dir, spec.roll_interval_ms,
                                         exactly_once=spec.checkpoint_interval_ms > 0,
                                         kafka_properties=spec.kafka_properties)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"INSERT INTO {feature_sink} SELECT * FROM {outputs.features}")
    statements.add_insert_sql(dead_letters.counted_insert_sql(t_env, spec.catalog, outputs.dead_letters, dead_sink))
    if online is not None:
        from stream_jobs.online_table import online_write_sql

        statements.add_insert_sql(online_write_sql(t_env, outputs.features, online, spec.catalog))
    monitor = _monitor(t_env, spec)  # binds the metrics port: one in use fails before Flink starts
    if monitor is None and spec.rest_port is not None:
        t_env.get_config().set("rest.port", str(spec.rest_port))
    try:
        result = statements.execute()
    except BaseException:
        if monitor is not None:
            monitor.close()
        raise
    if monitor is not None:
        result.monitor = monitor.watch(result.get_job_client())  # it stops by itself when the job ends
    if wait:
        failure = None
        try:
            result.wait()
        except Py4JJavaError as e:
            failure = e
        except BaseException:
            if monitor is not None:
                monitor.stop()
            raise
        if monitor is not None:
            monitor.join()  # its last row is in the run log before run() returns
        if failure is not None:
            raise JobFailed(f"the Flink job failed: {root_cause(failure)}") from failure
    return result


def _monitor(t_env: StreamTableEnvironment, spec: StreamJobSpec):
    """The job's :class:`~stream_jobs.monitor.StreamMonitor` when it has a lake or a metrics port, else None.

    It reads Flink's REST API: on the local mini-cluster the job gets a REST port (a free one unless the
    spec names one); submitted by ``flink run`` to a cluster, the cluster's (the address the client submits
    to). Flink's metric fetcher refreshes every 100 ms (its default, 10 s, would blur each checkpoint's figures).
    """
    if spec.lake is None and spec.metrics_port is None:
        return None
    from local_services import free_port
    from stream_jobs.flink_env import context_settings
    from stream_jobs.gatekeeper import Gatekeeper
    from stream_jobs.monitor import StreamMonitor

    pipeline = f"stream:{spec.catalog.schema.name}"
    gatekeeper = Gatekeeper(catalog=spec.catalog, pipeline=pipeline, project=spec.project, lake=spec.lake,
                            redis=spec.redis, operations=spec.operations)  # a missing reference table fails here
    config = t_env.get_config()
    context = context_settings()
    if context.get("execution.target", "local") == "local":
        port = spec.rest_port if spec.rest_port is not None else free_port()
        config.set("rest.port", str(port))
        rest_url = f"http://127.0.0.1:{port}"
    else:
        rest_url = f"http://{context.get('rest.address', 'localhost')}:{context.get('rest.port', '8081')}"
    config.set("metrics.fetcher.update-interval", "100 ms")
    return StreamMonitor(pipeline=pipeline, rest_url=rest_url, gatekeeper=gatekeeper,
                         allowed_lateness_ms=spec.allowed_lateness_ms, event_time=spec.catalog.schema.event_time,
                         lake=spec.lake, metrics_port=spec.metrics_port, out_dir=spec.out_dir,
                         dead_letter_files=dead_letters.parse_target(spec.dead_letters) is None,
                         checkpoint_interval_ms=spec.checkpoint_interval_ms, source_table=SOURCE)


class JobFailed(UserError):
    """The job failed for good (its restarts used up): the root cause, in one line, is the user's to fix."""


def configure_checkpoints(t_env: StreamTableEnvironment, spec: StreamJobSpec) -> None:
    """The state backend, and checkpoints to ``OUT/_checkpoints``, resumed from the newest complete one.

    RocksDB keeps state on local disk, entry by entry (the window operator keeps a row per entry), so the heap
    stays flat however many rows the windows hold; its checkpoints are incremental (only new files are
    uploaded), else each would copy all of the state. Bloom filters answer the many gets that find nothing
    (a new user, a new pending event time, a new distinct value) without reading a file."""
    config = t_env.get_config()
    config.set("state.backend.type", spec.state_backend)
    if spec.state_backend == "rocksdb":
        config.set("execution.checkpointing.incremental", "true")
        config.set("state.backend.rocksdb.use-bloom-filter", "true")
    if spec.checkpoint_interval_ms <= 0:
        return
    folder = (spec.out_dir / "_checkpoints").resolve()
    config.set("execution.checkpointing.interval", f"{spec.checkpoint_interval_ms} ms")
    config.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    config.set("execution.checkpointing.dir", folder.as_uri())
    config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    # With checkpoints on, Flink's default is to restart a failing job forever: fail loudly instead.
    config.set("restart-strategy.type", "fixed-delay")
    config.set("restart-strategy.fixed-delay.attempts", str(spec.restart_attempts))
    config.set("restart-strategy.fixed-delay.delay", "1 s")
    latest = latest_checkpoint(folder)
    written_by = folder / "state_backend"  # a checkpoint restores only on the backend that wrote it
    if latest is not None:
        earlier = written_by.read_text().strip() if written_by.exists() else "hashmap"  # older runs: hashmap
        if earlier != spec.state_backend:
            raise UserError(f"--state-backend {spec.state_backend}: {folder} holds checkpoints of the {earlier} "
                            f"backend, which only it restores; run with --state-backend {earlier}, or use a new --out")
        config.set("execution.state-recovery.path", latest.as_uri())
    folder.mkdir(parents=True, exist_ok=True)
    written_by.write_text(spec.state_backend + "\n")


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (``chk-N`` with its ``_metadata``) of any earlier run."""
    complete = [p.parent for p in folder.glob("*/chk-*/_metadata")] if folder.exists() else []
    return max(complete, key=lambda p: p.stat().st_mtime, default=None)


def main(argv: list[str] | None = None) -> int:
    """``flink run -py stream_jobs/job.py --source ... --out ...``: ``stream_jobs.options`` (as ``tandem stream``)."""
    import sys

    from stream_jobs.flink_env import build_table_env
    from stream_jobs.options import argument_parser, job_arguments

    args = argument_parser().parse_args(argv)
    try:
        run(build_table_env(parallelism=1, worker_processes=True), StreamJobSpec(**job_arguments(vars(args))))
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
