"""Reading and writing transaction files: nothing dropped, nothing coerced."""

import json

import pyarrow.parquet as pq
import pytest

from runtime.errors import UserError
from runtime.events_io import read_events, write_events, write_feature_rows, write_rejections
from examples.transactions.features.generate import PARQUET_INVALID_KINDS, StreamSpec, generate
from tandem.reference import evaluate
from tests.factories import NOON, tx
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from transforms.schema import Undecodable


def test_jsonl_keeps_every_line_in_order_including_garbage(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(tx("a")) + "\n{not json\n\n[1,2]\n" + '{"a": 1, "a": 2}\n' + json.dumps(tx("b")) + "\n")
    records = list(read_events(path))
    assert records[0]["transaction_id"] == "a" and records[-1]["transaction_id"] == "b"
    assert isinstance(records[1], Undecodable) and records[1].error.startswith("line 2: not valid JSON")
    assert records[2] == [1, 2]  # blank line 3 is not a record; line 4 is, and validation rejects it
    assert isinstance(records[3], Undecodable) and "duplicate key 'a'" in records[3].error
    result = evaluate(records, TRANSACTIONS)
    assert result.counts == {"accepted": 2, "invalid": 3}


def test_parquet_round_trip_gives_the_same_features_as_jsonl(tmp_path):
    spec = StreamSpec(users=20, merchants=5, duration="20m", invalid=0.05, invalid_kinds=PARQUET_INVALID_KINDS,
                      time_format="epoch_ms", seed=11)
    records = generate(spec)
    write_events(records, tmp_path / "e.parquet", TRANSACTIONS)
    write_events(records, tmp_path / "e.jsonl", TRANSACTIONS)
    from_parquet = evaluate(read_events(tmp_path / "e.parquet"), TRANSACTIONS)
    from_jsonl = evaluate(read_events(tmp_path / "e.jsonl"), TRANSACTIONS)
    assert from_parquet.rows == from_jsonl.rows
    assert [(r.reason, r.kind) for r in from_parquet.rejected] == [(r.reason, r.kind) for r in from_jsonl.rejected]
    assert from_parquet.counts["invalid"] > 0
    assert pq.read_schema(tmp_path / "e.parquet").field("event_time").type.unit == "ms"


def test_parquet_refuses_records_it_cannot_type(tmp_path):
    with pytest.raises(UserError, match="write .jsonl instead"):
        write_events([tx("a", amount="12")], tmp_path / "e.parquet", TRANSACTIONS)
    with pytest.raises(UserError, match="outside schema"):
        write_events([tx("a", extra=1)], tmp_path / "e.parquet", TRANSACTIONS)


@pytest.mark.parametrize("name, content, message", [
    ("missing.jsonl", None, "no such file"),
    ("e.csv", "a,b\n", "unknown file type"),
    ("binary.jsonl", b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ("bad.parquet", b"not parquet at all", "not a readable Parquet file"),
])
def test_unreadable_input_is_a_user_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message):
        list(read_events(path))


def test_a_directory_is_not_an_events_file(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        read_events(tmp_path / "d.jsonl")


def test_feature_rows_and_rejections_are_typed_parquet(tmp_path):
    result = evaluate([tx("a", t=NOON), tx("a", t=NOON), tx("b", amount=-1.0)], TRANSACTIONS)
    write_feature_rows(result.rows, tmp_path / "f.parquet", TRANSACTIONS)
    write_rejections(result.rejected, tmp_path / "r.parquet", TRANSACTIONS)
    features = pq.read_table(tmp_path / "f.parquet")
    assert features.column_names == [c for c, _ in TRANSACTIONS.feature_row_columns()]
    assert str(features.schema.field("event_time").type) == "timestamp[ms, tz=UTC]"
    assert features.column("user_txn_count_1h").to_pylist() == [1]
    rejected = pq.read_table(tmp_path / "r.parquet").to_pylist()
    assert [(r["transaction_id"], r["reason"], r["kind"]) for r in rejected] == [
        ("a", "duplicate", None), ("b", "invalid", "out_of_domain")]
    assert json.loads(rejected[1]["raw"])["amount"] == -1.0


def test_one_listing_rule_for_ingest_and_the_stream(tmp_path):
    """A directory's visible events files in name order; .x and _x skipped; anything else refused, in one line."""
    from batch_jobs.ingest import input_files
    from runtime.events_io import events_files
    from stream_jobs.sources import stage_file_input

    for name in ("b.jsonl", "a.parquet", ".writing.jsonl", "_tmp.jsonl"):
        (tmp_path / name).write_text("")
    assert events_files(tmp_path) == input_files(tmp_path) == [tmp_path / "a.parquet", tmp_path / "b.jsonl"]
    (tmp_path / "notes.txt").write_text("x")
    for read in (events_files, input_files, lambda p: stage_file_input(p, p / "_staging")):
        with pytest.raises(UserError, match="notes.txt: not a .jsonl or .parquet file"):
            read(tmp_path)
