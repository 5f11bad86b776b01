"""Running the stream job: sources, sinks, and the ``main`` that ``flink run`` and ``tandem stream`` call.

Sources: ``file:PATH`` replays a JSON Lines file (or a directory's files) in
file order; ``kafka:BROKERS/TOPIC`` reads a topic. Sinks: the append-only
feature log and the dead letters, as JSON Lines part files under ``--out``
(committed on checkpoints: exactly once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyflink.table import StreamTableEnvironment

from stream_jobs.compile_catalog import SQL_TYPES
from stream_jobs.pipeline import build
from tandem.errors import UserError
from transforms import Catalog, REFERENCE_CATALOG

SOURCE = "tandem_source"


@dataclass(frozen=True)
class StreamJobSpec:
    source: str  # file:PATH | kafka:BROKERS/TOPIC
    out_dir: Path
    allowed_lateness_ms: int = 5_000
    catalog: Catalog = REFERENCE_CATALOG
    redis: str | None = None  # host:port (or redis://...) of the online store; None: no online writes
    kafka_group: str = "tandem-stream"
    kafka_until_latest: bool = False  # stop at the offsets that were latest at start (replays, tests)
    checkpoint_interval_ms: int = 2_000  # 0 turns checkpointing off


def create_source(t_env: StreamTableEnvironment, source: str, kafka_group: str = "tandem-stream",
                  kafka_until_latest: bool = False) -> None:
    """``file:PATH`` or ``kafka:BROKERS/TOPIC`` as the one-column (``line``) table :data:`SOURCE`.

    Kafka starts from the group's committed offsets, or the earliest offsets for
    a new group; with several partitions the arrival order across them (and so
    which events are late) is the broker's interleaving: use one partition
    where replays must be deterministic.
    """
    kind, _, where = source.partition(":")
    if kind == "file":
        path = Path(where)
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        options = {"connector": "filesystem", "path": str(path.resolve()), "format": "raw"}
    elif kind == "kafka":
        brokers, _, topic = where.partition("/")
        if not brokers or not topic:
            raise UserError(f"--source {source!r}: use kafka:HOST:PORT[,HOST:PORT]/TOPIC")
        options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": brokers,
                   "properties.group.id": kafka_group, "format": "raw", "scan.startup.mode": "group-offsets",
                   "properties.auto.offset.reset": "earliest"}
        if kafka_until_latest:
            options["scan.bounded.mode"] = "latest-offset"
    else:
        raise UserError(f"--source {source!r}: use file:PATH or kafka:BROKERS/TOPIC")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {SOURCE} (line STRING) WITH ({_options(options)})")


def create_sinks(t_env: StreamTableEnvironment, out_dir: Path, catalog: Catalog) -> tuple[str, str]:
    feature_cols = ", ".join(f"`{name}` {SQL_TYPES[t]}" for name, t in catalog.feature_row_columns())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE tandem_feature_log ({feature_cols}) WITH "
                      f"({_options({'connector': 'filesystem', 'path': str(out_dir / 'features'), 'format': 'json'})})")
    t_env.execute_sql("CREATE TEMPORARY TABLE tandem_dead_letter_sink (transaction_id STRING, reason STRING, "
                      "kind STRING, detail STRING, `raw` STRING) WITH "
                      f"({_options({'connector': 'filesystem', 'path': str(out_dir / 'dead_letters'), 'format': 'json'})})")
    return "tandem_feature_log", "tandem_dead_letter_sink"


def run(t_env: StreamTableEnvironment, spec: StreamJobSpec, wait: bool = True):
    """Build and submit the job; with ``wait``, block until a bounded source is exhausted.

    Checkpoints go to ``OUT/_checkpoints`` and are kept when the job dies; a
    run over the same ``OUT`` resumes from the newest complete one, so a
    killed job restarted with the same arguments loses and repeats nothing.
    """
    if spec.redis:  # an unreachable online store is the user's to fix: say so before Flink starts
        from stream_jobs.online_sink import OnlineWriter

        OnlineWriter(spec.redis, catalog=spec.catalog).close()
    configure_checkpoints(t_env, spec)
    create_source(t_env, spec.source, spec.kafka_group, spec.kafka_until_latest)
    outputs = build(t_env, SOURCE, spec.catalog, spec.allowed_lateness_ms)
    feature_sink, dead_sink = create_sinks(t_env, spec.out_dir, spec.catalog)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"INSERT INTO {feature_sink} SELECT * FROM {outputs.features}")
    statements.add_insert_sql(f"INSERT INTO {dead_sink} SELECT * FROM {outputs.dead_letters}")
    if spec.redis:
        from stream_jobs.online_udf import online_write_sql

        statements.add_insert_sql(online_write_sql(t_env, outputs.features, spec.redis, spec.catalog))
    result = statements.execute()
    if wait:
        result.wait()
    return result


def configure_checkpoints(t_env: StreamTableEnvironment, spec: StreamJobSpec) -> None:
    if spec.checkpoint_interval_ms <= 0:
        return
    folder = (spec.out_dir / "_checkpoints").resolve()
    config = t_env.get_config()
    config.set("execution.checkpointing.interval", f"{spec.checkpoint_interval_ms} ms")
    config.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    config.set("execution.checkpointing.dir", folder.as_uri())
    config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    # With checkpoints on, Flink's default is to restart a failing job forever: fail loudly instead.
    config.set("restart-strategy.type", "fixed-delay")
    config.set("restart-strategy.fixed-delay.attempts", "3")
    config.set("restart-strategy.fixed-delay.delay", "1 s")
    latest = latest_checkpoint(folder)
    if latest is not None:
        config.set("execution.state-recovery.path", latest.as_uri())


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (``chk-N`` with its ``_metadata``) of any earlier run."""
    complete = [p.parent for p in folder.glob("*/chk-*/_metadata")] if folder.exists() else []
    return max(complete, key=lambda p: p.stat().st_mtime, default=None)


def _options(options: dict[str, str]) -> str:
    return ", ".join(f"'{k}' = '{v}'" for k, v in options.items())


def main(argv: list[str] | None = None) -> int:
    """``flink run -py stream_jobs/job.py --source ... --out ...`` (or ``tandem stream``)."""
    import argparse
    import sys

    from stream_jobs.flink_env import build_table_env
    from transforms import parse_duration

    parser = argparse.ArgumentParser(prog="stream", description="Tandem's Flink stream job")
    parser.add_argument("--source", required=True, help="file:PATH or kafka:BROKERS/TOPIC")
    parser.add_argument("--out", required=True, help="folder for the feature log and dead letters")
    parser.add_argument("--allowed-lateness", default="5s", help="e.g. 500ms, 5s, 2m (default 5s)")
    parser.add_argument("--redis", default=None, help="online store host:port (omit: no online writes)")
    parser.add_argument("--checkpoint-interval", default="2s", help="e.g. 500ms, 2s; 0ms turns checkpoints off")
    args = parser.parse_args(argv)
    try:
        lateness = parse_duration(args.allowed_lateness)
        interval = parse_duration(args.checkpoint_interval)
        run(build_table_env(parallelism=1), StreamJobSpec(args.source, Path(args.out), lateness, redis=args.redis,
                                                          checkpoint_interval_ms=interval))
    except (UserError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
