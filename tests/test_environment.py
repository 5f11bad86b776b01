"""The pinned environment works with real components: Spark+Arrow+Delta, Flink,
Flink's Kafka connector against a real KRaft broker, and a real Redis."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid

import pandas as pd


def test_spark_pandas_udf_runs_on_arrow(spark):
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")
    def log1p(amount: pd.Series) -> pd.Series:
        return amount.map(math.log1p)

    amounts = [0.0, 1.0, 12.5, 1e6]
    df = spark.createDataFrame([(a,) for a in amounts], "amount double")
    out = df.withColumn("amount_log1p", log1p("amount")).orderBy("amount").toPandas()

    assert out["amount_log1p"].tolist() == [math.log1p(a) for a in amounts]


def test_spark_writes_and_reads_partitioned_delta(spark, tmp_path):
    from delta.tables import DeltaTable

    rows = [("t1", "u1", 10.0, dt.date(2024, 1, 1)),
            ("t2", "u1", 2.5, dt.date(2024, 1, 1)),
            ("t3", "u2", 7.0, dt.date(2024, 1, 2))]
    df = spark.createDataFrame(rows, "transaction_id string, user_id string, amount double, event_date date")
    path = str(tmp_path / "features")

    df.write.format("delta").partitionBy("event_date").save(path)

    back = spark.read.format("delta").load(path).orderBy("transaction_id").collect()
    assert [tuple(r) for r in back] == rows
    assert sorted(p.name for p in (tmp_path / "features").glob("event_date=*")) == [
        "event_date=2024-01-01", "event_date=2024-01-02"]
    history = DeltaTable.forPath(spark, path).history().collect()
    assert [(h["version"], h["operation"]) for h in history] == [(0, "WRITE")]
    assert json.loads(history[0]["operationParameters"]["partitionBy"]) == ["event_date"]


def test_spark_session_and_jvm_are_utc(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID() == "UTC"
    # 1970-01-01T05:30Z: hour 5 (is_night) on date 1970-01-01 only when pinned to UTC.
    row = spark.sql("SELECT hour(timestamp_millis(19800000)) AS h, "
                    "CAST(to_date(timestamp_millis(19800000)) AS STRING) AS d, "
                    "timestamp_millis(19800000) AS ts").first()
    assert (row.h, row.d) == (5, "1970-01-01")
    # collect() converts through the Python process zone, which build_spark pins.
    assert row.ts == dt.datetime(1970, 1, 1, 5, 30)


def test_flink_local_minicluster_runs_sql(flink_table_env):
    result = flink_table_env.execute_sql(
        "SELECT user_id, COUNT(*) AS n, SUM(amount) AS total "
        "FROM (VALUES ('u1', 1.5), ('u2', 2.0), ('u1', 3.0)) AS t(user_id, amount) "
        "GROUP BY user_id")
    with result.collect() as rows:
        # Streaming GROUP BY emits a changelog; keep the final row per key.
        final = {r[0]: (r[1], float(r[2])) for r in rows}
    assert final == {"u1": (2, 4.5), "u2": (1, 2.0)}
    assert flink_table_env.get_config().get("table.local-time-zone", "") == "UTC"


def _kafka_table(name: str, topic: str, bootstrap: str, extra: str = "") -> str:
    return f"""
        CREATE TEMPORARY TABLE {name} (
            transaction_id STRING, user_id STRING, amount DOUBLE, event_time TIMESTAMP(3)
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{topic}',
            'properties.bootstrap.servers' = '{bootstrap}',
            'format' = 'json'{extra}
        )"""


def test_flink_kafka_connector_round_trip(flink_table_env, kafka_broker):
    topic = f"env-check-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    t_env = flink_table_env
    t_env.execute_sql(_kafka_table("sink", topic, kafka_broker.bootstrap_servers))
    t_env.execute_sql(_kafka_table(
        "source", topic, kafka_broker.bootstrap_servers,
        ",\n'properties.group.id' = 'env-check', 'scan.startup.mode' = 'earliest-offset',"
        " 'scan.bounded.mode' = 'latest-offset'"))
    sent = [("t1", "u1", 10.5, "2024-01-01 00:00:00.001"),
            ("t2", "u2", 0.0, "2024-01-01 05:59:59.999"),
            ("t3", "u1", 1e16, "2024-01-02 23:00:00.000")]
    values = ", ".join(f"('{t}', '{u}', CAST({a!r} AS DOUBLE), TIMESTAMP '{ts}')" for t, u, a, ts in sent)

    t_env.execute_sql(f"INSERT INTO sink VALUES {values}").wait(60_000)

    with t_env.execute_sql("SELECT transaction_id, user_id, amount, event_time FROM source").collect() as rows:
        got = [(r[0], r[1], r[2], r[3].isoformat(sep=" ", timespec="milliseconds")) for r in rows]
    assert got == sent


def test_redis_set_get(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        client.set("tandem:env-check", "42")
        assert client.get("tandem:env-check") == b"42"
        assert client.get("tandem:absent") is None
    finally:
        client.close()


def test_only_beams_teardown_cancellation_is_kept_off_stderr(tmp_path):
    """flink_env's thread hook drops Beam's "Multiplexer hanging up" reader-thread death, and nothing else."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "threads.py"
    script.write_text(f"""
import sys, threading
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import grpc
from stream_jobs.flink_env import _quiet_beam_teardown

class Cancelled(grpc.RpcError):  # the two methods Beam's grpc rendezvous error answers
    def __init__(self, details):
        self._details = details
    def code(self):
        return grpc.StatusCode.CANCELLED
    def details(self):
        return self._details

def die(error):
    raise error

_quiet_beam_teardown()
for name, error in [("read_grpc_client_inputs", Cancelled("Multiplexer hanging up")),
                    ("read_grpc_client_inputs", Cancelled("Socket closed")),
                    ("read_grpc_client_inputs", ValueError("a real failure")),
                    ("other", Cancelled("Multiplexer hanging up"))]:
    t = threading.Thread(target=die, args=(error,), name=name)
    t.start()
    t.join()
""")
    err = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120).stderr
    assert err.count("Exception in thread") == 3, err
    assert "Socket closed" in err and "a real failure" in err and "Exception in thread other" in err
