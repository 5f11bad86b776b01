"""``tandem parity`` through the real engines: Spark (batch), the Flink mini-cluster (stream), the reference.

The engine outputs it writes are checked against the reference evaluator
directly (not only through the harness's own verdict), on hypothesis-drawn
adversarial streams and on a fixed seed through the command line.
"""

import contextlib
import json
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from runtime.errors import UserError
from runtime.events_io import write_events
from examples.transactions.features.generate import PARQUET_INVALID_KINDS, StreamSpec, generate
from tandem.parity.compare import same
from tandem.parity.run import run_parity
from tandem.reference import evaluate
from tests.factories import tx
from tests.parity_streams import streams
from tandem.init import example_dir
from tests.shell import shell_env
from tests.test_cli import TANDEM, assert_one_line_error, run
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from transforms.schema import not_after_now

COLUMNS = [c for c, _ in TRANSACTIONS.feature_row_columns()]


def read_rows(path: Path) -> dict[str, dict]:
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("event_time"), "event_time",
                             table["event_time"].cast(pa.int64()))
    rows = table.to_pylist()
    assert len({r["transaction_id"] for r in rows}) == len(rows), f"{path.name}: an event id twice"
    return {r["transaction_id"]: r for r in rows}


def assert_rows_are_the_reference(path: Path, expected_rows: list[dict]) -> None:
    got = read_rows(path)
    assert got.keys() == {r["transaction_id"] for r in expected_rows}, path.name
    wrong = [(r["transaction_id"], c, got[r["transaction_id"]][c], r[c]) for r in expected_rows for c in COLUMNS
             if not same(got[r["transaction_id"]][c], r[c])]
    assert not wrong, f"{path.name}: {len(wrong)} values differ from the reference, first: {wrong[:5]}"


def assert_outputs_are_the_reference(out: Path, records: list, lateness_ms: int) -> tuple:
    bound = not_after_now()  # the engines reject events more than an hour ahead of their clock
    batch_ref = evaluate(records, TRANSACTIONS, not_after_ms=bound)
    stream_ref = evaluate(records, TRANSACTIONS, allowed_lateness_ms=lateness_ms, not_after_ms=bound)
    assert_rows_are_the_reference(out / "batch.parquet", batch_ref.rows)
    assert_rows_are_the_reference(out / "stream.parquet", stream_ref.rows)
    rejected = Counter((r["path"], r["transaction_id"], r["reason"]) for r in pq.read_table(out / "rejected.parquet").to_pylist())
    assert rejected == Counter([("batch", r.event_id, r.reason) for r in batch_ref.rejected]
                               + [("stream", r.event_id, r.reason) for r in stream_ref.rejected])
    return batch_ref, stream_ref


def unexplained_summary(comparison) -> str:
    return "; ".join([f"{i.kind}: {i.detail} {i.event_ids[:3]}" for i in comparison.issues]
                     + [f"{m.column} of {m.event_id!r}: {m.why} (batch {m.batch!r}, stream {m.stream!r})"
                        for m in comparison.mismatches if m.status == "unexplained"][:10])


@settings(max_examples=3, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_adversarial_streams_have_parity(spark, data):
    """Ties, window edges, disorder inside and beyond the lateness, retries, invalid records, hot and unicode keys.

    Each example is one engine run over several drawn sub-streams (see
    tests/parity_streams.py); no shrinking, as every step would rerun both engines.
    """
    lateness = data.draw(st.sampled_from([0, 5_000]), label="allowed lateness ms")
    records = data.draw(streams(lateness, max_substreams=6), label="records")
    records.insert(len(records) // 2, tx("from-2099", t="2099-01-01T00:00:00Z"))  # invalid: far in the future
    with tempfile.TemporaryDirectory() as tmp:
        events, out = Path(tmp) / "events.jsonl", Path(tmp) / "out"
        write_events(records, events, TRANSACTIONS)
        result = run_parity(events, out, lateness, TRANSACTIONS, spark=spark)
        assert result.comparison.passed, unexplained_summary(result.comparison)
        _, stream_ref = assert_outputs_are_the_reference(out, records, lateness)
        assert json.loads((out / "report.json").read_text())["verdict"] == "pass"
    # the stream did exercise what it claims: lateness, retries, invalid records (built into every sub-stream)
    assert min(stream_ref.counts["late"], stream_ref.counts["duplicate"], stream_ref.counts["invalid"]) >= 1
    assert "from-2099" in {r.event_id for r in stream_ref.rejected if r.reason == "invalid"}


def test_parity_command_on_a_fixed_seed(tmp_path):
    """The command as CI runs it: a Parquet file (epoch ms times), exit code, files, report."""
    records = generate(StreamSpec(users=40, merchants=8, rate_per_s=0.3, duration="3h", out_of_order=0.1,
                                  max_delay="20s", invalid_kinds=PARQUET_INVALID_KINDS, time_format="epoch_ms",
                                  seed=11))
    events, out = tmp_path / "_events.parquet", tmp_path / "out"  # a name Flink's file source would skip
    write_events(records, events, TRANSACTIONS)
    env = shell_env(TANDEM_PROJECT=str(example_dir()))  # as from a shell (tests/shell.py), in the example project
    result = subprocess.run([TANDEM, "parity", "--events", str(events), "--out", str(out), "--allowed-lateness", "5s"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PASS" in result.stdout and "user_amount_avg_7d" in result.stdout
    _, stream_ref = assert_outputs_are_the_reference(out, records, 5_000)
    report = json.loads((out / "report.json").read_text())
    assert (report["verdict"], report["unexplained"], report["records"]) == ("pass", 0, len(records))
    assert report["late_events_confirmed"] == stream_ref.counts["late"] > 10
    assert report["paths"]["stream"]["late"] == stream_ref.counts["late"]
    avg = report["columns"]["user_amount_avg_7d"]
    assert avg["explained"] > 0 and avg["unexplained"] == avg["batch_vs_reference"] == avg["stream_vs_reference"] == 0
    assert "PASS" in (out / "report.html").read_text()


# Bad input: one line, non-zero exit, nothing that could pass for a result --------------------


def _events(tmp_path, text):
    path = tmp_path / "e.jsonl"
    path.write_text(text)
    return path


@pytest.mark.parametrize("make_events, text", [
    (lambda d: d / "missing.jsonl", "no such file"),
    (lambda d: _events(d, ""), "holds no records"),
    (lambda d: _events(d, 'nope\n{"transaction_id": "x"}\n'), "no record is valid (2 invalid)"),
], ids=["missing", "empty", "all-invalid"])
def test_unusable_events_are_one_line(tmp_path, make_events, text):
    assert_one_line_error(run("parity", "--events", str(make_events(tmp_path)), "--out", str(tmp_path / "out")), 1, text)
    assert not (tmp_path / "out").exists()


def test_an_output_directory_with_files_is_refused(tmp_path):
    events = _events(tmp_path, json.dumps({"transaction_id": "x"}) + "\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text('{"verdict": "pass"}')
    assert_one_line_error(run("parity", "--events", str(events), "--out", str(tmp_path / "out")), 1, "is not empty")
    assert_one_line_error(run("parity", "--events", str(events), "--out", str(tmp_path / "out"), "--allowed-lateness",
                              "5 s"), 2, "invalid duration")


def test_a_run_that_dies_part_way_leaves_no_report(tmp_path):
    events = tmp_path / "e.jsonl"
    write_events(generate(StreamSpec(users=3, duration="5m", seed=1)), events, TRANSACTIONS)

    @contextlib.contextmanager
    def dies_at_the_batch(name):
        if name.startswith("batch"):
            raise KeyboardInterrupt  # as if the user pressed ^C before Spark finished
        yield

    with pytest.raises(KeyboardInterrupt):
        run_parity(events, tmp_path / "out", 5_000, TRANSACTIONS, step=dies_at_the_batch)
    assert (tmp_path / "out").exists() and not (tmp_path / "out" / "report.json").exists()
    with pytest.raises(UserError, match="is not empty"):  # and the leftovers cannot be taken for a new run
        run_parity(events, tmp_path / "out", 5_000, TRANSACTIONS)
