"""The Spark batch path against the reference evaluator, on real Spark and real Delta tables."""

import json
from datetime import date

import pytest
from pyspark.sql import functions as F

from batch_jobs.backfill import backfill, compute_features
from batch_jobs.ingest import ingest
from runtime.errors import UserError
from runtime.events_io import write_events
from examples.transactions.features.generate import StreamSpec, generate
from runtime.lake import Lake
from tandem.reference import evaluate
from tests.adversarial import adversarial_events
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

MAY1, MAY2 = date(2024, 5, 1), date(2024, 5, 2)
FEATURE_COLUMNS = [c for c, _ in TRANSACTIONS.feature_row_columns()]


def stream():
    generated = generate(StreamSpec(users=40, merchants=8, rate_per_s=0.05, duration="40h", seed=21))
    return generated + adversarial_events()


def rows_by_id(df):
    """Spark rows -> {event id: {column: python value}}, event_time as epoch ms."""
    out = {}
    for row in df.withColumn("event_time", F.unix_millis("event_time")).collect():
        d = row.asDict()
        out[d["transaction_id"]] = {c: d[c] for c in FEATURE_COLUMNS}
    return out


def assert_same_rows(actual: dict, expected_rows: list[dict]):
    expected = {r["transaction_id"]: r for r in expected_rows}
    assert actual.keys() == expected.keys()
    mismatches = [(eid, c, actual[eid][c], expected[eid][c]) for eid in expected for c in FEATURE_COLUMNS
                  if actual[eid][c] != expected[eid][c] or type(actual[eid][c]) is not type(expected[eid][c])]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    records = stream()
    write_events(records, root / "events.jsonl", TRANSACTIONS)
    lake = Lake.at(root / "lake")
    ingest(spark, root / "events.jsonl", lake, TRANSACTIONS)
    backfill(spark, lake, MAY1, MAY2, TRANSACTIONS)
    return lake, records


def test_feature_tables_equal_the_reference_bit_for_bit(spark, lake):
    lake, records = lake
    expected = evaluate(records, TRANSACTIONS).rows
    for group in TRANSACTIONS.groups:
        table = spark.read.format("delta").load(lake.tables(TRANSACTIONS).features(group.entity))
        got = {r["transaction_id"]: r for r in table.withColumn("event_time", F.unix_millis("event_time")).collect()}
        assert len(got) == len(expected)
        for row in expected:
            actual = got[row["transaction_id"]]
            for f in group.features:
                assert actual[f.name] == row[f.name], (row["transaction_id"], f.name)
            assert (group.key_of(actual), actual["event_time"]) == (group.key_of(row), row["event_time"])


def test_wide_feature_rows_equal_the_reference(spark, lake):
    lake, records = lake
    assert_same_rows(rows_by_id(compute_features(spark, lake, TRANSACTIONS, MAY1, MAY2)), evaluate(records, TRANSACTIONS).rows)


def test_every_record_is_an_event_or_a_dead_letter(spark, lake):
    lake, records = lake
    events = spark.read.format("delta").load(lake.tables(TRANSACTIONS).events)
    dead = spark.read.format("delta").load(lake.tables(TRANSACTIONS).dead_letters)
    assert events.count() + dead.count() == len(records)
    reference = evaluate(records, TRANSACTIONS)
    by_reason = {r["reason"]: r["count"] for r in dead.groupBy("reason").count().collect()}
    assert by_reason == {"invalid": reference.counts["invalid"], "duplicate": reference.counts["duplicate"]}
    kinds = {(r.event_id, r.kind) for r in reference.rejected if r.reason == "invalid" and r.event_id}
    assert kinds <= {(r["transaction_id"], r["kind"]) for r in dead.collect()}
    retry = dead.where("transaction_id = 'retry'").first()
    assert retry["reason"] == "duplicate" and json.loads(retry["raw"])["amount"] == 500.0  # the raw retry is kept
    assert events.where("transaction_id = 'retry'").first()["amount"] == 5.0  # the first copy wins


def test_tables_are_partitioned_by_event_date(spark, lake):
    lake, _ = lake
    from delta.tables import DeltaTable

    for path in (lake.tables(TRANSACTIONS).events, lake.tables(TRANSACTIONS).features("user"), lake.tables(TRANSACTIONS).features("merchant")):
        detail = DeltaTable.forPath(spark, path).detail().first()
        assert detail["partitionColumns"] == ["event_date"]
    dates = {r[0] for r in spark.read.format("delta").load(lake.tables(TRANSACTIONS).features("user")).select("event_date").distinct().collect()}
    assert dates == {MAY1, MAY2}


def test_reingesting_the_same_file_changes_nothing(spark, lake, tmp_path):
    lake, records = lake
    from delta.tables import DeltaTable

    before = DeltaTable.forPath(spark, lake.tables(TRANSACTIONS).events).history(1).first()["version"]
    path = tmp_path / "same.jsonl"
    write_events(records, path, TRANSACTIONS)
    result = ingest(spark, path, lake, TRANSACTIONS)
    assert result.skipped_files == [str(path)] and result.accepted == 0
    assert DeltaTable.forPath(spark, lake.tables(TRANSACTIONS).events).history(1).first()["version"] == before


def test_backfill_rerun_leaves_the_tables_identical(spark, lake):
    lake, _ = lake
    def snapshot():
        return {e: sorted(tuple(r) for r in spark.read.format("delta").load(lake.tables(TRANSACTIONS).features(e)).collect())
                for e in ("user", "merchant")}
    before = snapshot()
    backfill(spark, lake, MAY1, MAY2, TRANSACTIONS)
    assert snapshot() == before


def test_backfill_of_one_day_reads_the_history_its_windows_need(spark, lake):
    lake, records = lake
    expected = [r for r in evaluate(records, TRANSACTIONS).rows if r["event_time"] >= 1_714_608_000_000]  # 2024-05-02
    assert_same_rows(rows_by_id(compute_features(spark, lake, TRANSACTIONS, MAY2, MAY2)), expected)


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda rows: rows.limit(rows.count() - 1), id="one row missing"),
    pytest.param(lambda rows: rows.union(rows.limit(1)), id="one row twice"),
    pytest.param(lambda rows: rows.withColumn(
        "transaction_id", F.when(F.col("transaction_id") == F.lit(rows.first()["transaction_id"]), F.lit("other"))
        .otherwise(F.col("transaction_id"))), id="one id replaced"),
    pytest.param(lambda rows: rows.withColumn(
        "user_amount_sum_1h", F.when(F.col("user_txn_count_1h") == 1, F.lit(None)).otherwise(F.col("user_amount_sum_1h"))),
        id="null feature value"),
])
def test_staged_rows_that_are_not_one_complete_row_per_event_are_refused(spark, lake, tamper):
    from batch_jobs.backfill import _check_staged
    from runtime.run_log import RunLog, RunRecord, utc_now
    from runtime.runs import Run

    lake, _ = lake
    run = Run(RunRecord("backfill:transactions", "test", utc_now()), RunLog(lake.root), None)
    rows = compute_features(spark, lake, TRANSACTIONS, MAY1, MAY2)
    gates = TRANSACTIONS.quality_gates  # their figures ride in the same aggregation
    assert _check_staged(spark, rows, lake, TRANSACTIONS, MAY1, MAY2, gates, run)[0] == rows.count()
    with pytest.raises(RuntimeError, match="failed validation, nothing committed"):
        _check_staged(spark, tamper(rows), lake, TRANSACTIONS, MAY1, MAY2, gates, run)


def test_backfill_of_a_range_without_events_is_an_error(spark, lake):
    lake, _ = lake
    with pytest.raises(UserError, match="no events dated 2024-06-01"):
        backfill(spark, lake, date(2024, 6, 1), date(2024, 6, 2), TRANSACTIONS)
    with pytest.raises(UserError, match="is after"):
        backfill(spark, lake, MAY2, MAY1, TRANSACTIONS)


def test_backfill_without_events_table_is_an_error(spark, tmp_path):
    with pytest.raises(UserError, match="run `tandem ingest"):
        backfill(spark, Lake.at(tmp_path / "empty-lake"), MAY1, MAY1, TRANSACTIONS)


# Schema changes and bad input: nothing written --------------------------------


def _lake_is_empty(lake: Lake) -> bool:
    """No table but the run log, which holds the one failed run and its reason."""
    from runtime.run_log import RunLog

    if lake.root.exists() and {p.name for p in lake.root.iterdir()} - {"_tandem"}:
        return False
    runs = RunLog(lake.root).read()
    return [(r.pipeline, r.status) for r in runs] == [("ingest:transactions", "failed")] and bool(runs[0].error)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(amt=r.pop("amount")), "field 'amount' is missing and 'amt' is new in every record: renamed?"),
    (lambda r: r.update(amount=str(r["amount"])), "field 'amount' changed type: expected float64, every record has string"),
    (lambda r: r.update(channel="web"), "field 'channel' is new: every record has it"),
], ids=["renamed", "retyped", "extra"])
def test_a_schema_change_fails_before_anything_is_written(spark, tmp_path, change, message):
    records = generate(StreamSpec(users=5, duration="10m", invalid=0, duplicates=0, seed=4))
    for r in records:
        change(r)
    write_events(records, tmp_path / "changed.jsonl", TRANSACTIONS)
    lake = Lake.at(tmp_path / "lake")
    with pytest.raises(UserError, match=message.replace("?", r"\?")):
        ingest(spark, tmp_path / "changed.jsonl", lake, TRANSACTIONS)
    assert _lake_is_empty(lake)


def test_a_parquet_schema_change_fails_too(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"transaction_id": ["a"], "user_id": ["u"], "merchant_id": ["m"], "amount": ["1.0"],
                      "currency": ["USD"], "event_time": pa.array([1_714_521_600_000]).cast(pa.timestamp("ms", "UTC"))})
    pq.write_table(table, tmp_path / "e.parquet")
    with pytest.raises(UserError, match="'amount' changed type"):
        ingest(spark, tmp_path / "e.parquet", Lake.at(tmp_path / "lake"), TRANSACTIONS)


@pytest.mark.parametrize("name, content, message", [
    ("missing.jsonl", None, "no such file"),
    ("empty.jsonl", b"", "holds no records"),
    ("garbage.jsonl", bytes(range(256)) * 4, "not UTF-8 text"),
], ids=["missing", "empty", "garbage"])
def test_bad_input_is_a_clear_error_and_writes_nothing(spark, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    lake = Lake.at(tmp_path / "lake")
    with pytest.raises(UserError, match=message):
        ingest(spark, path, lake, TRANSACTIONS)
    assert _lake_is_empty(lake)


def test_parquet_input_gives_the_same_events_as_jsonl(spark, tmp_path):
    from examples.transactions.features.generate import PARQUET_INVALID_KINDS

    records = generate(StreamSpec(users=10, duration="2h", rate_per_s=1, invalid_kinds=PARQUET_INVALID_KINDS,
                                  time_format="epoch_ms", seed=8))
    write_events(records, tmp_path / "e.parquet", TRANSACTIONS)
    lake = Lake.at(tmp_path / "lake")
    result = ingest(spark, tmp_path / "e.parquet", lake, TRANSACTIONS)
    reference = evaluate(records, TRANSACTIONS)
    assert result.accepted == reference.counts["accepted"]
    assert result.rejected == {"invalid": reference.counts["invalid"], "duplicate": reference.counts["duplicate"]}
