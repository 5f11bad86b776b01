"""Events years in the future: invalid on both paths, through the one validator, against the clock.

Without the bound, one such event would advance the stream's watermark and make every later
event late; the reference evaluator shows that harm, and the tests show both engines avoid it.
"""

import time

import pytest

from stream_jobs.job import run
from stream_jobs.outputs import dead_letters, feature_rows
from runtime.events_io import write_events
from tandem.reference import evaluate
from tests.factories import NOON, stream_spec, tx
from tests.test_stream_path import assert_matches_reference
from transforms import Invalid, InvalidKind
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from transforms.schema import DEFAULT_MAX_FUTURE_MS, format_timestamp_ms, not_after_now

YEAR_MS = 365 * 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def future_stream():
    """Normal events, one event five years ahead of now, then more normal events arriving after it."""
    ahead = now_ms() + 5 * YEAR_MS
    return ([tx(f"before{i}", t=NOON + i * 1_000) for i in range(5)]
            + [tx("future", t=ahead)]
            + [tx(f"after{i}", t=NOON + 10_000 + i * 1_000) for i in range(5)]), ahead


def test_the_bound_is_an_out_of_domain_event_time_naming_value_and_bound():
    schema = TRANSACTIONS.schema
    bound = 1_714_564_800_000
    assert schema.validate(tx("a", t=bound), not_after_ms=bound)["event_time"] == bound  # at the bound: fine
    bad = schema.validate(tx("a", t=bound + 1), not_after_ms=bound)
    assert isinstance(bad, Invalid) and bad.kind is InvalidKind.OUT_OF_DOMAIN and bad.field == "event_time"
    assert format_timestamp_ms(bound + 1) in bad.detail and format_timestamp_ms(bound) in bad.detail
    assert schema.validate(tx("a", t=bound + 1))["event_time"] == bound + 1  # no bound given: today's rule
    assert DEFAULT_MAX_FUTURE_MS == 3_600_000
    before = now_ms()
    assert before + DEFAULT_MAX_FUTURE_MS <= not_after_now() <= now_ms() + DEFAULT_MAX_FUTURE_MS
    assert not_after_now(None) is None


def test_without_the_bound_one_future_event_makes_every_later_event_late():
    records, _ = future_stream()
    unbounded = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000)
    assert sorted(r.event_id for r in unbounded.rejected) == [f"after{i}" for i in range(5)]  # the harm
    bounded = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000, not_after_ms=not_after_now())
    assert [(r.event_id, r.reason, r.kind) for r in bounded.rejected] == [("future", "invalid", "out_of_domain")]
    assert bounded.counts["accepted"] == 10


def test_the_stream_dead_letters_a_future_event_and_later_events_stay_on_time(flink_table_env, tmp_path):
    records, ahead = future_stream()
    write_events(records, tmp_path / "events.jsonl", TRANSACTIONS)
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{tmp_path / 'events.jsonl'}", out, 5_000))
    dead = dead_letters(out)
    assert [(d["transaction_id"], d["reason"], d["kind"]) for d in dead] == [("future", "invalid", "out_of_domain")]
    assert format_timestamp_ms(ahead) in dead[0]["detail"] and "wall clock + max future" in dead[0]["detail"]
    assert_matches_reference(records, feature_rows(out, TRANSACTIONS), dead, 5_000,
                             not_after_ms=not_after_now())


def test_a_larger_max_future_admits_it(flink_table_env, tmp_path):
    records, _ = future_stream()
    write_events(records, tmp_path / "events.jsonl", TRANSACTIONS)
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{tmp_path / 'events.jsonl'}", out, 5_000, max_future_ms=10 * YEAR_MS))
    assert sorted((d["transaction_id"], d["reason"]) for d in dead_letters(out)) == [
        (f"after{i}", "late") for i in range(5)]


def test_batch_ingestion_dead_letters_a_future_event(spark, tmp_path):
    from batch_jobs.ingest import ingest
    from runtime.lake import Lake

    records, ahead = future_stream()
    write_events(records, tmp_path / "events.jsonl", TRANSACTIONS)
    lake = Lake.at(tmp_path / "lake")
    result = ingest(spark, tmp_path / "events.jsonl", lake, TRANSACTIONS)
    assert (result.accepted, dict(result.rejected)) == (10, {"invalid": 1})
    dead = spark.read.format("delta").load(lake.tables(TRANSACTIONS).dead_letters).collect()
    assert [(d["transaction_id"], d["reason"], d["kind"]) for d in dead] == [("future", "invalid", "out_of_domain")]
    assert format_timestamp_ms(ahead) in dead[0]["detail"]
    ids = {r["transaction_id"] for r in spark.read.format("delta").load(lake.tables(TRANSACTIONS).events).collect()}
    assert "future" not in ids and len(ids) == 10


@pytest.mark.parametrize("max_future_ms", [None, 10 * YEAR_MS])
def test_batch_ingestion_without_or_with_a_wide_bound_keeps_it(spark, tmp_path, max_future_ms):
    from batch_jobs.ingest import ingest
    from runtime.lake import Lake

    records, _ = future_stream()
    write_events(records, tmp_path / "events.jsonl", TRANSACTIONS)
    result = ingest(spark, tmp_path / "events.jsonl", Lake.at(tmp_path / "lake"), TRANSACTIONS,
                    max_future_ms=max_future_ms)
    assert (result.accepted, dict(result.rejected)) == (11, {})
