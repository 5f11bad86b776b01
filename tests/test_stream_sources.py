"""The stream job's sources and dead-letter outputs: Parquet and directory replays, a followed
directory, Kafka start positions, dead letters to Kafka, and their counters -- on the real
mini-cluster and a real KRaft broker, every expectation from the reference evaluator."""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from stream_jobs.job import latest_checkpoint, run
from stream_jobs.outputs import dead_letters, feature_rows
from stream_jobs.sources import stage_file_input
from runtime.errors import UserError
from runtime.events_io import decode_json_line, read_events, write_events
from transforms.schema import Undecodable
from runtime.run_log import RunLog
from examples.transactions.features.generate import PARQUET_INVALID_KINDS, StreamSpec, generate
from tandem.reference import evaluate
from local_services import free_port
from tests.factories import HOUR, NOON, T0, stream_spec, tx
from tests.test_stream_path import COLUMNS, assert_matches_reference
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return value


def drop_file(folder, name, records):
    """Write a file under a hidden name, then rename it: a follower never sees it half-written."""
    hidden = folder / f".{name}"
    write_events(records, hidden, TRANSACTIONS)
    os.replace(hidden, folder / name)


def assert_dead_letters_carry_kind_and_raw(records, dead, lateness_ms, **kw):
    """Each dead letter has the reference's reason and kind, and its raw record as it arrived."""
    expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=lateness_ms, **kw).rejected
    got = Counter((d["transaction_id"], d["reason"], d["kind"], _stream_raw(d["raw"])) for d in dead)
    assert got == Counter((r.event_id, r.reason, r.kind, _reference_raw(r.raw)) for r in expected)


def _stream_raw(text: str) -> str:
    """The stream keeps a record's text: compared as the JSON value it spells, read as the reference reads a
    line (a line it cannot read, e.g. a key twice or nesting past Python's reach, stays text)."""
    value = decode_json_line(text)
    return value.text if isinstance(value, Undecodable) else _reference_raw(value)


def _reference_raw(raw) -> str:
    """The reference keeps the value (any JSON value, or a Parquet row whose timestamp is spelled in epoch
    milliseconds), or the text of a line it could not read."""
    if isinstance(raw, Undecodable):
        return raw.text
    return json.dumps(raw, sort_keys=True, default=lambda v: (v - EPOCH) // timedelta(milliseconds=1))


# --- files ------------------------------------------------------------------------------------

def test_a_parquet_file_is_replayed_as_the_reference_reads_it(flink_table_env, tmp_path):
    spec = StreamSpec(users=12, merchants=4, rate_per_s=0.1, duration="2h", out_of_order=0.2, invalid=0.05,
                      duplicates=0.03, invalid_kinds=PARQUET_INVALID_KINDS, time_format="epoch_ms", seed=31)
    events = tmp_path / "events.parquet"
    write_events(generate(spec), events, TRANSACTIONS)
    records = list(read_events(events))  # what the reference sees: typed Parquet values, datetimes
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{events}", out, 5_000))
    expected = assert_matches_reference(records, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000)
    assert expected.counts["invalid"] > 0 and expected.counts["duplicate"] > 0
    assert_dead_letters_carry_kind_and_raw(records, dead_letters(out), 5_000)


def test_a_directory_is_replayed_in_file_name_order(flink_table_env, tmp_path):
    """Name order decides arrival order, and so which events are late: b's events are behind a's."""
    folder = tmp_path / "in"
    a = [tx(f"a{i}", t=NOON + HOUR + i) for i in range(3)]
    b = [tx(f"b{i}", t=NOON + i) for i in range(3)] + [tx("b-new", t=NOON + 2 * HOUR)]
    c = [tx("c0", t=NOON + 3 * HOUR)]
    write_events(a, folder / "1-a.jsonl", TRANSACTIONS)
    write_events(b, folder / "2-b.parquet", TRANSACTIONS)
    (folder / "3-c.jsonl").write_text(json.dumps(c[0]))  # no final newline: must not glue onto the next file
    write_events([tx("d0", t=NOON + 4 * HOUR)], folder / "4-d.jsonl", TRANSACTIONS)
    records = a + list(read_events(folder / "2-b.parquet")) + c + [tx("d0", t=NOON + 4 * HOUR)]
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{folder}", out, 5_000))
    assert_matches_reference(records, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000)
    assert sorted(d["transaction_id"] for d in dead_letters(out)) == ["b0", "b1", "b2"]


def test_staging_refuses_what_it_cannot_replay(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with pytest.raises(UserError, match="no .jsonl or .parquet files"):
        stage_file_input(folder, tmp_path / "stage")
    write_events([tx("a")], folder / "a.jsonl", TRANSACTIONS)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="notes.txt: not a .jsonl or .parquet file"):
        stage_file_input(folder, tmp_path / "stage")
    (folder / "notes.txt").unlink()
    (folder / ".hidden.tmp").write_text("half-written")  # hidden files are not inputs
    staged = stage_file_input(folder, tmp_path / "stage")
    mtime = staged.stat().st_mtime_ns
    time.sleep(0.01)
    assert stage_file_input(folder, tmp_path / "stage") == staged and staged.stat().st_mtime_ns == mtime  # unchanged
    assert [json.loads(line) for line in staged.read_text().splitlines()] == [tx("a")]


def assert_equals_reference_but_held(records, rows, dead, lateness_ms, held: str):
    """An unbounded job emits an event's row once the watermark passes it: every row but ``held``'s
    (the last event, which nothing followed) equals the reference's, and every dead letter is there."""
    expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=lateness_ms)
    assert held not in {r["transaction_id"] for r in rows}
    want = [r for r in expected.rows if r["transaction_id"] != held]
    assert len(want) == len(expected.rows) - 1
    assert_matches_reference_rows(want, rows)
    assert Counter((d["transaction_id"], d["reason"]) for d in dead) == Counter(
        (r.event_id, r.reason) for r in expected.rejected)


def assert_matches_reference_rows(want, rows):
    got = {r["transaction_id"]: r for r in rows}
    assert len(got) == len(rows) == len(want)
    bad = [(w["transaction_id"], c) for w in want for c in COLUMNS
           if w["transaction_id"] not in got or got[w["transaction_id"]][c] != w[c]
           or type(got[w["transaction_id"]][c]) is not type(w[c])]
    assert not bad, f"{len(bad)} mismatches, first: {bad[:5]}"


def garbage_lines(seed: int, n: int, t: int) -> list[str]:
    """A burst of fuzzed lines for a JSON Lines stream: truncated records, JSON that is no object, schema drift
    (a renamed, an extra, a retyped field), wrong types, duplicate keys, deep nesting, unicode and control
    characters. Each is one line of UTF-8 text (a line ends at \\n only; no \\r either, which a reader of
    text might take for an end too); some are blank-looking (spaces, tabs)."""
    rng = random.Random(seed)
    alphabet = "ab{}[]\":,0123456789.-eE \\\tü☃𝄞\x00\x01\x1f\u2028\ufeff"
    lines = []
    for i in range(n):
        rec = tx(f"g-{i}", user=f"gu{i % 3}", t=t + i)
        kind = i % 12
        if kind == 0:
            text = json.dumps(rec)[:rng.randrange(1, len(json.dumps(rec)))]  # truncated
        elif kind == 1:
            text = rng.choice(["42", "\"text\"", "[1, 2]", "null", "true", "{}", "[]", "-0.0", "1e999"])
        elif kind == 2:
            rec["amount_usd"] = rec.pop("amount")  # drift: a renamed field
            text = json.dumps(rec)
        elif kind == 3:
            rec["amount"] = "12.50"  # drift: a retyped field
            text = json.dumps(rec)
        elif kind == 4:
            rec["channel"] = "web"  # drift: an extra field
            text = json.dumps(rec)
        elif kind == 5:
            rec["user_id"] = rng.choice([5, None, ["u"], {"id": "u"}, True])
            text = json.dumps(rec)
        elif kind == 6:
            text = json.dumps(rec)[:-1] + f', "transaction_id": "g-dup-{i}"}}'  # a key twice
        elif kind == 7:
            text = "[" * 3000 + "]" * 3000
        elif kind == 8:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))
        elif kind == 9:
            rec["event_time"] = rng.choice(["yesterday", "2024-13-01T00:00:00Z", -1, 1.5, "", 2**70])
            text = json.dumps(rec)
        elif kind == 10:
            text = json.dumps(rec, ensure_ascii=False).replace("gu", "g\u0000u")  # a NUL inside a key value
        else:
            text = rng.choice(["   ", "\t", " \t "])
        assert "\n" not in text and "\r" not in text
        lines.append(text)
    return lines


def test_follow_reads_files_written_while_the_job_runs(flink_table_env, tmp_path):
    """A followed folder: files dropped while the job runs are read in turn; a burst of fuzzed garbage and
    schema-drifted records between two good files is dead-lettered line by line, each with the reference's
    reason and its raw text, and the job keeps running and reads the next file."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = generate(StreamSpec(users=8, merchants=3, rate_per_s=0.05, duration="1h", out_of_order=0.2, seed=41))
    second = [tx("n1", user="u-new", t=T0 + 2 * HOUR), tx("n2", user="u-new", t=T0 + 2 * HOUR + 1),
              tx("n1", user="u-new", t=T0 + 2 * HOUR + 2),  # a retry: duplicate
              tx("n-late", user="u-new", t=T0), {"transaction_id": "n-bad", "amount": "12"},
              tx("n-last", user="u-new", t=T0 + 3 * HOUR)]  # moves the watermark past everything before it
    drop_file(inbox, "part-1.jsonl", first)
    (inbox / ".part-2.jsonl").write_text("\n".join(garbage_lines(17, 240, T0 + HOUR)) + "\n", encoding="utf-8")
    garbage = list(read_events(inbox / ".part-2.jsonl"))
    out, port = tmp_path / "out", free_port()
    flink_table_env.get_config().set("metrics.fetcher.update-interval", "500 ms")
    result = run(flink_table_env, stream_spec(f"file:{inbox}", out, 5_000, follow_ms=200, checkpoint_interval_ms=500,
                                                roll_interval_ms=500, rest_port=port), wait=False)
    try:
        wait_for(lambda: feature_rows(out, TRANSACTIONS), 180, "the first file's rows")
        os.replace(inbox / ".part-2.jsonl", inbox / "part-2.jsonl")
        drop_file(inbox, "part-3.jsonl", second)
        records = first + garbage + second
        expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000)
        wait_for(lambda: len(feature_rows(out, TRANSACTIONS)) >= len(expected.rows) - 1
                 and len(dead_letters(out)) >= len(expected.rejected), 120, "the second file's rows")
        # the live counters (Flink metrics, through the REST API) count each reason
        want = {reason: expected.counts[reason] for reason in ("invalid", "duplicate", "late")}
        wait_for(lambda: dead_letter_metrics(port, result.get_job_client().get_job_id()) == want, 60,
                 f"the dead-letter counters to read {want}")
        assert result.get_job_client().get_job_status().result().name == "RUNNING"  # following, not finished
        time.sleep(1.5)  # more checkpoints: anything extra would be committed by now
    finally:
        result.get_job_client().cancel().result()
    assert_equals_reference_but_held(records, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000, "n-last")
    assert_dead_letters_carry_kind_and_raw(records, dead_letters(out), 5_000)
    assert {("n1", "duplicate"), ("n-late", "late"), ("n-bad", "invalid")} <= {
        (d["transaction_id"], d["reason"]) for d in dead_letters(out)}
    assert sum(d["reason"] == "invalid" for d in dead_letters(out)) >= 200  # the burst: every line but the blank


def dead_letter_metrics(port: int, job_id) -> dict[str, int]:
    """``tandem.dead_letters_<reason>`` summed over the job's operators, from Flink's REST API."""
    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.load(response)

    totals: dict[str, int] = {}
    for vertex in get(f"/jobs/{job_id}")["vertices"]:
        base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
        ids = [m["id"] for m in get(base) if ".tandem.dead_letters_" in m["id"]]
        if ids:
            for m in get(f"{base}?get={','.join(ids)}"):
                reason = m["id"].rsplit("dead_letters_", 1)[1]
                totals[reason] = totals.get(reason, 0) + int(float(m["value"]))
    return totals


@pytest.mark.parametrize("name", ["_events.jsonl", ".events.jsonl"])
def test_a_file_named_like_a_hidden_file_is_replayed_too(flink_table_env, tmp_path, name):
    """Flink's file source silently skips a file named .x or _x, even named alone: it is staged under a plain name."""
    records = [tx("a", t=NOON), tx("b", t=NOON + 1)]
    write_events(records, tmp_path / name, TRANSACTIONS)
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"file:{tmp_path / name}", out, 5_000))
    assert sorted(r["transaction_id"] for r in feature_rows(out, TRANSACTIONS)) == ["a", "b"]


def test_follow_needs_a_directory_of_json_lines(flink_table_env, tmp_path):
    write_events([tx("a")], tmp_path / "a.jsonl", TRANSACTIONS)
    with pytest.raises(UserError, match="watches a directory"):
        run(flink_table_env, stream_spec(f"file:{tmp_path / 'a.jsonl'}", tmp_path / "out", follow_ms=200))
    write_events([tx("b")], tmp_path / "b.parquet", TRANSACTIONS)
    with pytest.raises(UserError, match="b.parquet: a followed directory is read as JSON Lines"):
        run(flink_table_env, stream_spec(f"file:{tmp_path}", tmp_path / "out", follow_ms=200))


# --- Kafka ------------------------------------------------------------------------------------

def produce(brokers: str, topic: str, lines: list[str]) -> None:
    """Send raw lines to a topic with a Flink job of its own (one partition: send order is arrival order)."""
    from stream_jobs.flink_env import build_table_env

    t_env = build_table_env(parallelism=1)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE to_kafka (line STRING) WITH ('connector' = 'kafka', 'topic' = '{topic}', "
        f"'properties.bootstrap.servers' = '{brokers}', 'format' = 'raw')")
    t_env.from_elements([(line,) for line in lines], ["line"]).execute_insert("to_kafka").wait()


def new_topic(kafka_broker) -> str:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    return topic


def test_kafka_earliest_reads_the_topic_from_its_start(flink_table_env, kafka_broker, tmp_path):
    topic = new_topic(kafka_broker)
    old = generate(StreamSpec(users=6, merchants=2, rate_per_s=0.05, duration="1h", seed=51))
    produce(kafka_broker.bootstrap_servers, topic, [json.dumps(r) for r in old])
    out = tmp_path / "out"
    run(flink_table_env, stream_spec(f"kafka:{kafka_broker.bootstrap_servers}/{topic}", out, 5_000,
                                       kafka_group=f"g-{topic}", kafka_start="earliest", kafka_until_latest=True))
    assert_matches_reference(old, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000)


def test_kafka_latest_reads_only_what_arrives_after_the_start(flink_table_env, kafka_broker, tmp_path):
    topic, brokers = new_topic(kafka_broker), kafka_broker.bootstrap_servers
    old = [tx(f"old{i}", t=NOON + i) for i in range(5)]
    new = generate(StreamSpec(users=6, merchants=2, rate_per_s=0.05, duration="1h", start="2024-05-02T00:00:00Z",
                              seed=52)) + [tx("last", t=T0 + 3 * 24 * HOUR)]
    produce(brokers, topic, [json.dumps(r) for r in old])
    out = tmp_path / "out"
    result = run(flink_table_env, stream_spec(f"kafka:{brokers}/{topic}", out, 5_000, kafka_group=f"g-{topic}",
                                                kafka_start="latest", checkpoint_interval_ms=500,
                                                roll_interval_ms=500), wait=False)
    try:
        # A completed checkpoint: the source runs and has its partitions, with their end offsets at start.
        wait_for(lambda: latest_checkpoint(out / "_checkpoints"), 180, "the job's first checkpoint")
        time.sleep(1)
        produce(brokers, topic, [json.dumps(r) for r in new])
        expected = evaluate(new, TRANSACTIONS, allowed_lateness_ms=5_000)
        wait_for(lambda: len(feature_rows(out, TRANSACTIONS)) >= len(expected.rows) - 1, 120,
                 "the new records' rows")
        time.sleep(1.5)  # more checkpoints: anything extra (an old record) would be committed by now
    finally:
        result.get_job_client().cancel().result()
    assert_equals_reference_but_held(new, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000, "last")


def test_a_bad_kafka_start_is_a_user_error(flink_table_env, tmp_path):
    for start in ("newest", "timestamp:yesterday", "timestamp:"):
        with pytest.raises(UserError, match="--kafka-start"):
            run(flink_table_env, stream_spec("kafka:127.0.0.1:9/t", tmp_path / "out", kafka_start=start))


# --- dead letters to Kafka --------------------------------------------------------------------

def read_topic(brokers: str, topic: str) -> list[dict]:
    """Every committed record of a topic (read_committed), read by a bounded Flink job of the test's own."""
    from stream_jobs.flink_env import build_table_env

    t_env = build_table_env(parallelism=1, streaming=False)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE dl_read (transaction_id STRING, reason STRING, kind STRING, detail STRING, "
        f"`raw` STRING) WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = "
        f"'{brokers}', 'properties.isolation.level' = 'read_committed', 'format' = 'json', "
        f"'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')")
    with t_env.execute_sql("SELECT * FROM dl_read").collect() as rows:
        return [dict(zip(["transaction_id", "reason", "kind", "detail", "raw"], row)) for row in rows]


def test_dead_letters_go_to_a_kafka_topic_with_reason_and_raw_record(kafka_broker, tmp_path):
    """``tandem stream --dead-letters kafka:...`` as a user runs it; its summary counts what the topic holds."""
    from tests.test_cli import run as tandem

    topic, brokers = new_topic(kafka_broker), kafka_broker.bootstrap_servers
    records = generate(StreamSpec(users=10, merchants=3, rate_per_s=0.1, duration="2h", out_of_order=0.3,
                                  max_delay="60s", invalid=0.05, duplicates=0.05, seed=61))
    events = tmp_path / "events.jsonl"
    write_events(records, events, TRANSACTIONS)
    with events.open("a") as fh:
        fh.write("not json at all\n")
    records = list(read_events(events))  # as the reference reads the file: the last line is undecodable
    out, lake = tmp_path / "out", tmp_path / "lake"  # not the example project's own lake
    result = tandem("stream", "--source", f"file:{events}", "--out", str(out), "--dead-letters", f"kafka:{brokers}/{topic}",
                    "--lake", str(lake))
    assert result.returncode == 0, result.stderr[-3000:]

    expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000)
    assert min(expected.counts[r] for r in ("invalid", "duplicate", "late")) > 0
    assert not (out / "dead_letters").exists()  # not to files as well
    got = read_topic(brokers, topic)
    assert_dead_letters_carry_kind_and_raw(records, got, 5_000)
    assert_matches_reference(records, feature_rows(out, TRANSACTIONS), got, 5_000)
    summary = ", ".join(f"{reason} {expected.counts[reason]:,}" for reason in ("duplicate", "invalid", "late"))
    assert f"{len(expected.rows):,} feature rows, dead letters: {summary}" in result.stdout, result.stdout
    runs = RunLog(lake).read("stream:transactions")  # its run log rows: the feature rows it committed
    assert runs and sum(r.rows_out for r in runs) == len(expected.rows)


@pytest.mark.parametrize("option, message", [
    (["--dead-letters", "s3://bucket/dl"], "--dead-letters 's3://bucket/dl': use files or kafka:"),
    (["--kafka-start", "newest"], "--kafka-start 'newest': use one of group-offsets, earliest, latest, timestamp:T"),
    (["--follow"], "--follow watches a directory for new files"),
    (["--restarts=-1"], "--restarts must be 0 or more"),
], ids=["dead-letters", "kafka-start", "follow-a-file", "restarts"])
def test_bad_stream_options_are_one_line(tmp_path, option, message):
    from tests.test_cli import assert_one_line_error, run as tandem

    events = tmp_path / "e.jsonl"
    write_events([tx("a")], events, TRANSACTIONS)
    source = "kafka:127.0.0.1:9/t" if option[0] == "--kafka-start" else f"file:{events}"
    assert_one_line_error(tandem("stream", "--source", source, "--out", str(tmp_path / "out"), *option), 1, message)


def test_a_missing_kafka_topic_or_a_silent_broker_is_one_error_at_start(flink_table_env, kafka_broker, tmp_path):
    """Checked before Flink starts (else: a source waiting forever, a dead-letter producer timing out later)."""
    brokers, topic = kafka_broker.bootstrap_servers, new_topic(kafka_broker)
    events = tmp_path / "e.jsonl"
    write_events([tx("a")], events, TRANSACTIONS)
    with pytest.raises(UserError, match=rf"^--source: Kafka at {brokers} has no topic 'nope': create it first"):
        run(flink_table_env, stream_spec(f"kafka:{brokers}/nope", tmp_path / "a"))
    with pytest.raises(UserError, match=rf"^--dead-letters: Kafka at {brokers} has no topic 'gone'"):
        run(flink_table_env, stream_spec(f"file:{events}", tmp_path / "b", dead_letters=f"kafka:{brokers}/gone"))
    silent = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(UserError, match=rf"^--dead-letters: Kafka at {silent} did not answer within 10 s"):
        run(flink_table_env, stream_spec(f"kafka:{brokers}/{topic}", tmp_path / "c", dead_letters=f"kafka:{silent}/x"))
    assert time.monotonic() - began < 30
    assert not (tmp_path / "a" / "features").exists() and not (tmp_path / "b" / "features").exists()
