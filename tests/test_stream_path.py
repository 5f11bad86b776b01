"""The Flink stream path against the reference evaluator, on the real local mini-cluster."""

from collections import Counter

import pytest

from stream_jobs.job import run
from stream_jobs.outputs import dead_letters, feature_rows
from runtime.errors import UserError
from runtime.events_io import write_events
from examples.transactions.features.generate import StreamSpec, generate
from tandem.reference import evaluate
from tests.adversarial import adversarial_events, quiet_key_events
from tests.factories import HOUR, NOON, stream_spec, tx
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

COLUMNS = [c for c, _ in TRANSACTIONS.feature_row_columns()]


def run_stream(t_env, tmp_path, records, lateness_ms):
    write_events(records, tmp_path / "events.jsonl", TRANSACTIONS)
    out = tmp_path / "out"
    run(t_env, stream_spec(f"file:{tmp_path / 'events.jsonl'}", out, lateness_ms))
    return feature_rows(out, TRANSACTIONS), dead_letters(out)


def assert_matches_reference(records, got_rows, got_dead, lateness_ms, not_after_ms=None):
    expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=lateness_ms, not_after_ms=not_after_ms)
    got = {r["transaction_id"]: r for r in got_rows}
    assert len(got) == len(got_rows) == len(expected.rows)
    mismatches = [(r["transaction_id"], c, got.get(r["transaction_id"], {}).get(c), r[c])
                  for r in expected.rows for c in COLUMNS
                  if r["transaction_id"] not in got or got[r["transaction_id"]][c] != r[c]
                  or type(got[r["transaction_id"]][c]) is not type(r[c])]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"
    assert Counter((d["transaction_id"], d["reason"]) for d in got_dead) == Counter(
        (r.event_id, r.reason) for r in expected.rejected)
    return expected


def test_stream_equals_the_reference_on_an_adversarial_stream(flink_table_env, tmp_path):
    records = generate(StreamSpec(users=30, merchants=6, rate_per_s=0.05, duration="30h", out_of_order=0.2,
                                  max_delay="20s", seed=2)) + adversarial_events()
    rows, dead = run_stream(flink_table_env, tmp_path, records, 5_000)
    expected = assert_matches_reference(records, rows, dead, 5_000)
    assert expected.counts["late"] > 50  # the stream really had late events to route


def test_keys_quiet_for_longer_than_their_windows_lose_no_row(flink_table_env, tmp_path):
    """Ten days of sparse keys: the window operator drops a key's state once its newest row has
    left the widest window, while the watermark advances many times mid-stream and other keys'
    rows wait; nothing else may change (a mutant clearing with Flink's ``clearAll``, which
    deletes other keys' timers, must fail here)."""
    records = generate(StreamSpec(users=3_000, merchants=1_000, rate_per_s=0.02, duration="10d", seed=5))
    times = [e["event_time"] for e in map(TRANSACTIONS.schema.validate, records) if isinstance(e, dict)]
    records += quiet_key_events(max(times) + HOUR)
    lateness = 3_600_000  # ~70 rows wait for the watermark at any time
    rows, dead = run_stream(flink_table_env, tmp_path, records, lateness)
    assert_matches_reference(records, rows, dead, lateness)


def test_lateness_edges_and_what_late_events_do_to_windows(flink_table_env, tmp_path):
    records = [tx("a", t=NOON + 5_000), tx("on-time", t=NOON), tx("late", t=NOON - 1),
               tx("dup-of-late", t=NOON + 6_000), tx("late", t=NOON - 1), tx("b", t=NOON + 10_000)]
    rows, dead = run_stream(flink_table_env, tmp_path, records, 5_000)
    assert_matches_reference(records, rows, dead, 5_000)
    # exactly the allowed lateness behind is on time; 1 ms more is late; a retry of a late event is a duplicate
    assert sorted((d["transaction_id"], d["reason"]) for d in dead) == [("late", "duplicate"), ("late", "late")]


def test_zero_allowed_lateness(flink_table_env, tmp_path):
    records = generate(StreamSpec(users=10, merchants=3, rate_per_s=0.2, duration="2h", out_of_order=0.3, seed=9))
    rows, dead = run_stream(flink_table_env, tmp_path, records, 0)
    assert_matches_reference(records, rows, dead, 0)


def test_invalid_records_carry_their_kind_and_raw_line(flink_table_env, tmp_path):
    (tmp_path / "events.jsonl").write_text('{"transaction_id": "x", "amount": 1}\nnot json\n\n'
                                           '{"transaction_id": "y", "user_id": "u", "merchant_id": "m", '
                                           '"amount": 1.5, "currency": "USD", "event_time": 1714564800000}\n')
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{tmp_path / 'events.jsonl'}", out, 5_000))
    dead = sorted(dead_letters(out), key=lambda d: d["kind"])
    assert [(d["transaction_id"], d["reason"], d["kind"]) for d in dead] == [
        ("x", "invalid", "missing_field"), (None, "invalid", "unparseable")]
    assert dead[1]["raw"] == "not json"
    assert [r["transaction_id"] for r in feature_rows(out, TRANSACTIONS)] == ["y"]


def test_a_missing_source_or_unknown_scheme_is_a_user_error(flink_table_env, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        run(flink_table_env, stream_spec(f"file:{tmp_path / 'nope.jsonl'}", tmp_path / "out"))
    with pytest.raises(UserError, match="use file:PATH or kafka:BROKERS/TOPIC"):
        run(flink_table_env, stream_spec("s3://bucket/x", tmp_path / "out"))


def test_kafka_source_equals_the_reference(flink_table_env, kafka_broker, tmp_path):
    """Raw JSON lines through a real KRaft broker (one partition: arrival order is the send order)."""
    import json
    import uuid

    topic = f"tx-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    records = generate(StreamSpec(users=10, merchants=3, rate_per_s=0.1, duration="3h", out_of_order=0.2, seed=17))
    lines = [json.dumps(r) for r in records] + ["not json at all"]
    flink_table_env.execute_sql(
        f"CREATE TEMPORARY TABLE to_kafka (line STRING) WITH ('connector' = 'kafka', 'topic' = '{topic}', "
        f"'properties.bootstrap.servers' = '{kafka_broker.bootstrap_servers}', 'format' = 'raw')")
    flink_table_env.from_elements([(line,) for line in lines], ["line"]).execute_insert("to_kafka").wait()

    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"kafka:{kafka_broker.bootstrap_servers}/{topic}", out, 5_000,
                                       kafka_group=f"g-{topic}", kafka_until_latest=True))
    assert_matches_reference(records + ["not json at all"], feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000)
    assert [(d["reason"], d["kind"]) for d in dead_letters(out) if d["raw"] == "not json at all"] == [
        ("invalid", "unparseable")]  # a Kafka message that is not JSON: dead-lettered as it arrived


def test_each_kind_of_bad_record_is_a_dead_letter_with_its_raw_line(flink_table_env, tmp_path):
    """Bad input, one line each: invalid with its kind and the line exactly as it arrived; nothing else lost."""
    import json
    import time

    years_ahead = time.time_ns() // 1_000_000 + 5 * 365 * 86_400_000
    bad = [  # (line, event id the dead letter names, invalid kind)
        ('{"transaction_id": "cut", "amount": ', None, "unparseable"),  # a malformed (truncated) line
        ("[1, 2, 3]", None, "unparseable"),  # JSON, but not an object
        (json.dumps(tx("amount-text", amount="12.50")), "amount-text", "wrong_type"),
        (json.dumps(tx("user-number", user=42)), "user-number", "wrong_type"),
        (json.dumps({k: v for k, v in tx("no-currency").items() if k != "currency"}), "no-currency", "missing_field"),
        (json.dumps(tx("null-merchant", merchant=None)), "null-merchant", "missing_field"),
        (json.dumps(tx("bad-date", t="2024-13-01T00:00:00Z")), "bad-date", "unparseable"),
        (json.dumps(tx("no-zone", t="2024-05-01T00:00:00")), "no-zone", "unparseable"),
        (json.dumps(tx("negative", amount=-1.0)), "negative", "out_of_domain"),
        (json.dumps(tx("years-ahead", t=years_ahead)), "years-ahead", "out_of_domain"),
        (json.dumps(tx("extra", channel="web")), "extra", "unknown_field"),
    ]
    good = [tx("good-1", t=NOON), tx("good-2", t=NOON + 1_000)]
    lines = [json.dumps(good[0])] + [line for line, _, _ in bad] + [json.dumps(good[1])]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{tmp_path / 'events.jsonl'}", out, 5_000))
    got = Counter((d["transaction_id"], d["reason"], d["kind"], d["raw"]) for d in dead_letters(out))
    assert got == Counter((eid, "invalid", kind, line) for line, eid, kind in bad)
    assert sorted(r["transaction_id"] for r in feature_rows(out, TRANSACTIONS)) == ["good-1", "good-2"]
