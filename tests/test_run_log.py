"""The run log: rows kept exactly, malformed rows refused on the way in and on the way out, no lost appends."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from runtime.errors import UserError
from runtime.run_log import SCHEMA, GateResult, RunLog, RunRecord, _row

T = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)


def full_record() -> RunRecord:
    return RunRecord(
        pipeline="backfill:rides", trigger="schedule", started_at=T, ended_at=T + timedelta(seconds=42.5),
        status="blocked", stages={"read": 3.25, "gates": 0.5, "write": 0.0}, retries=2, rows_in=10_000,
        rows_out=9_876, rejected={"late": 3, "schema": 121},
        gates=[GateResult("completeness(tip)", "completeness", "tip", 0.9, 0.95, "fail", "block",
                          "tip is 90.0% non-null, below 95%"),
               GateResult("freshness", "freshness", None, 12.0, 3600.0, "pass", "warn", "newest event 12 s old")],
        null_rates={"tip": 0.1, "fare": 0.0}, distributions={"fare": {"mean": 12.5, "p50": 9.0}},
        partitions=["2024-05-01", "2024-05-02"], newest_event=T - timedelta(minutes=5),
        alerts=["gate_blocked: webhook not delivered (connection refused)"], error=None)


def test_a_row_comes_back_as_written(tmp_path):
    log = RunLog(tmp_path)
    rec = full_record()
    other = RunRecord("ingest:rides", "cli", T - timedelta(hours=1), T, status="failed", error="no such file")
    log.append(rec)
    log.append(other)
    assert log.read() == [other, rec]
    assert log.read(pipeline="backfill:rides") == [rec]
    assert log.read(since=T) == [rec]


def test_a_read_by_pipeline_and_start_keeps_exactly_those_rows_across_many_files(tmp_path):
    """The filters are pushed down to the Parquet files: every row of the pipeline started at or after
    ``since`` comes back (the start itself included, microseconds counted), and no other."""
    log = RunLog(tmp_path)
    written = [RunRecord(p, "checkpoint", T + timedelta(seconds=s, microseconds=us), T + timedelta(seconds=s + 1))
               for s in range(0, 40, 7) for us in (0, 1) for p in ("stream:rides", "stream:rides2", "ingest:rides")]
    for i in range(0, len(written), 5):  # several commits, several files
        log.append(*written[i:i + 5])
    since = T + timedelta(seconds=14, microseconds=1)
    expected = [r for r in written if r.pipeline == "stream:rides" and r.started_at >= since]
    assert [r.started_at for r in expected] == [since, T + timedelta(seconds=21), since + timedelta(seconds=7),
                                                T + timedelta(seconds=28), since + timedelta(seconds=14),
                                                T + timedelta(seconds=35), since + timedelta(seconds=21)]
    assert log.read(pipeline="stream:rides", since=since) == expected


@pytest.mark.parametrize("change, field", [
    (dict(pipeline="nightly"), "pipeline"),
    (dict(trigger="cron"), "trigger"),
    (dict(status="ok"), "status"),
    (dict(rows_in=-1), "rows_in"),
    (dict(null_rates={"tip": 1.5}), "null_rates"),
    (dict(ended_at=T - timedelta(seconds=1)), "ended_at"),
    (dict(started_at=T.replace(tzinfo=None)), "started_at"),
    (dict(status="failed", error=None), "error"),
    (dict(gates=[]), "status"),  # blocked, but no gate blocked
])
def test_a_malformed_row_is_refused_and_nothing_is_written(tmp_path, change, field):
    log = RunLog(tmp_path)
    rec = full_record()
    for k, v in change.items():
        setattr(rec, k, v)
    with pytest.raises(ValueError, match=f": {field} "):
        log.append(full_record(), rec)  # one commit: the good row is not written either
    assert log.read() == []


def test_a_malformed_row_in_the_table_is_named_when_read(tmp_path):
    from deltalake import write_deltalake

    log = RunLog(tmp_path)
    log.append(full_record())
    bad = _row(full_record()) | {"run_id": "r-bad", "status": "exploded"}
    write_deltalake(str(log.path), pa.Table.from_pylist([bad], schema=SCHEMA), mode="append")
    with pytest.raises(UserError, match="run log row r-bad .*status 'exploded' is not one of"):
        log.read()


def test_concurrent_appends_from_two_processes_are_all_kept(tmp_path):
    script = (
        "import sys\nfrom datetime import datetime, timezone\nfrom runtime.run_log import RunLog, RunRecord\n"
        "log = RunLog(sys.argv[1])\n"
        "for i in range(8):\n"
        "    log.append(RunRecord(f'stream:{sys.argv[2]}', 'checkpoint', datetime.now(timezone.utc)))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name]) for name in ("a", "b")]
    assert [p.wait(120) for p in procs] == [0, 0]
    runs = RunLog(tmp_path).read()
    assert sorted(r.pipeline for r in runs) == ["stream:a"] * 8 + ["stream:b"] * 8


def test_an_overflowed_summary_is_kept_as_text(tmp_path):
    rec = full_record()
    rec.distributions = {"amount": {"mean": float("inf"), "min": float("-inf"), "max": float("nan"), "p50": 2.5}}
    RunLog(tmp_path).append(rec)
    assert RunLog(tmp_path).read()[0].distributions == {"amount": {"mean": "inf", "min": "-inf", "max": "nan",
                                                                    "p50": 2.5}}
