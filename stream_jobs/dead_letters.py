"""Where the stream job's dead letters go, and how they are counted.

Every dead letter is one JSON object with ``runtime.dead_letters``' columns:
the event id (named as in the catalog's schema), ``reason`` (``invalid`` |
``duplicate`` | ``late``), ``kind`` (for ``invalid``: the
:class:`~transforms.InvalidKind`), ``detail`` and ``raw`` (the record as it
arrived). It goes to one of:

- ``files`` (default): JSON Lines part files under ``OUT/dead_letters``,
  committed on checkpoints (exactly once, like the feature log);
- ``kafka:BROKERS/TOPIC``: a topic, written in Kafka transactions committed on
  checkpoints (exactly once for ``read_committed`` consumers; at least once
  when checkpoints are off). The topic must exist (checked at start).

Counted twice over, for two uses:

- **live**: Flink metric counters ``tandem.dead_letters_<reason>`` on the
  operator that counts them (a vectorised Python UDF), shown by Flink's web
  UI and REST API (``tandem stream --rest-port``) and by any metric reporter a
  cluster configures. They restart from 0 when the job restarts.
- **exact**: ``tandem stream`` prints per-reason counts at the end of a
  bounded run, read from the committed output (:func:`file_counts`,
  :func:`kafka_counts`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pandas as pd
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from stream_jobs.outputs import dead_letters as committed_dead_letters, file_sink_options
from stream_jobs.sources import kafka_client_options, sql_options
from runtime.dead_letters import REASONS, dead_letter_columns
from runtime.errors import UserError
from transforms import Catalog

#: Kafka transactions must outlive a checkpoint interval plus a restart, and stay
#: under the broker's transaction.max.timeout.ms (15 min by default; Flink's 1 h default is refused).
KAFKA_TRANSACTION_TIMEOUT_MS = 600_000
#: The SQL function that counts the dead letters on their way to the sink (the monitor finds their vertex by it).
COUNTING_FUNCTION = "tandem_count_dead_letter"


def parse_target(target: str | None) -> tuple[str, str] | None:
    """``None``/``files`` -> None (part files); ``kafka:BROKERS/TOPIC`` -> (brokers, topic)."""
    if target in (None, "files"):
        return None
    kind, _, where = target.partition(":")
    brokers, _, topic = where.partition("/")
    if kind != "kafka" or not brokers or not topic:
        raise UserError(f"--dead-letters {target!r}: use files or kafka:HOST:PORT[,HOST:PORT]/TOPIC")
    return brokers, topic


def columns_sql(catalog: Catalog) -> str:
    """The dead letters' columns as a SQL table definition."""
    from stream_jobs.compile_catalog import SQL_TYPES

    return ", ".join(f"`{name}` {SQL_TYPES[t]}" for name, t in dead_letter_columns(catalog))


def create_sink(t_env: StreamTableEnvironment, catalog: Catalog, target: str | None, out_dir: Path,
                roll_interval_ms: int, exactly_once: bool, kafka_properties: dict[str, str] | None = None) -> str:
    """Register the dead-letter sink table for ``target``; return its name. ``kafka_properties``: the
    project's Kafka client properties (credentials, TLS)."""
    kafka = parse_target(target)
    if kafka is None:
        options = file_sink_options(Path(out_dir) / "dead_letters", roll_interval_ms)
    else:
        brokers, topic = kafka
        options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": brokers,
                   "format": "json", "sink.delivery-guarantee": "exactly-once" if exactly_once else "at-least-once"}
        if exactly_once:
            # One prefix per (output folder, topic): a rerun over the same --out finds and aborts its own
            # lingering transactions, and two jobs never fence each other.
            digest = hashlib.sha256(f"{Path(out_dir).resolve()}|{topic}".encode()).hexdigest()[:16]
            options |= {"sink.transactional-id-prefix": f"tandem-dead-letters-{digest}",
                        "properties.transaction.timeout.ms": str(KAFKA_TRANSACTION_TIMEOUT_MS)}
        options |= kafka_client_options(kafka_properties or {})
    t_env.execute_sql(f"CREATE TEMPORARY TABLE tandem_dead_letter_sink ({columns_sql(catalog)}) "
                      f"WITH ({sql_options(options)})")
    return "tandem_dead_letter_sink"


class _CountReasons(ScalarFunction):
    """Pass ``reason`` through, counting each value in a Flink metric counter."""

    def is_deterministic(self) -> bool:
        return False  # a side effect: never fold it into a constant

    def open(self, function_context: FunctionContext) -> None:
        group = function_context.get_metric_group().add_group("tandem")
        self.counters = {reason: group.counter(f"dead_letters_{reason}") for reason in REASONS}

    def eval(self, reason: pd.Series) -> pd.Series:
        for value, n in reason.value_counts().items():
            self.counters[value].inc(int(n))
        return reason


def counted_insert_sql(t_env: StreamTableEnvironment, catalog: Catalog, dead_letters_view: str, sink: str) -> str:
    """The INSERT that sends ``dead_letters_view`` to ``sink`` through the counting UDF."""
    t_env.create_temporary_system_function(
        COUNTING_FUNCTION,
        udf(_CountReasons(), result_type=DataTypes.STRING(), func_type="pandas", name=COUNTING_FUNCTION))
    # Through a DataStream and back (JVM only): otherwise the planner pushes the call into each
    # branch of the dead letters' UNION ALL, where ``reason`` is a constant -- one counting operator
    # per reason, and a pandas UDF without column input, which PyFlink's Arrow writer cannot run.
    merged = t_env.from_data_stream(t_env.to_data_stream(t_env.from_path(dead_letters_view)))
    t_env.create_temporary_view("tandem_dead_letters_merged", merged)
    return (f"INSERT INTO {sink} SELECT `{catalog.schema.event_id}`, {COUNTING_FUNCTION}(reason), kind, "
            f"detail, `raw` FROM tandem_dead_letters_merged")


def file_counts(out_dir: Path) -> Counter:
    """Per-reason counts of the committed dead-letter part files under ``OUT``."""
    return Counter(d["reason"] for d in committed_dead_letters(out_dir))


def kafka_counts(brokers: str, topic: str, since_ms: int, catalog: Catalog,
                 properties: dict[str, str] | None = None) -> Counter:
    """Per-reason counts of the committed dead letters written to ``topic`` at or after ``since_ms``.

    A bounded batch query (``read_committed``, from the first record stamped at
    or after ``since_ms`` to the end offsets): what a downstream consumer sees.
    Other writers to the same topic in that time are counted too.
    """
    from stream_jobs.flink_env import build_table_env

    t_env = build_table_env(parallelism=1, streaming=False)
    options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": brokers,
               "properties.group.id": "tandem-dead-letter-count", "properties.isolation.level": "read_committed",
               "format": "json", "scan.startup.mode": "timestamp", "scan.startup.timestamp-millis": str(since_ms),
               "scan.bounded.mode": "latest-offset"} | kafka_client_options(properties or {})
    t_env.execute_sql(f"CREATE TEMPORARY TABLE tandem_dead_letters_read ({columns_sql(catalog)}) "
                      f"WITH ({sql_options(options)})")
    with t_env.execute_sql("SELECT reason, COUNT(*) FROM tandem_dead_letters_read GROUP BY reason").collect() as rows:
        return Counter({row[0]: row[1] for row in rows})
