"""The stream job's monitor (stream_jobs/monitor.py) on the real mini-cluster, with a catalog other than the
example's: its Prometheus endpoint scraped over HTTP while the job runs (the online sink's counters too),
its run log rows per checkpoint adding up to the reference evaluator's counts, a ``failed`` row when the
job fails for real, and the last row of a bounded job, whose counters are gone with its cluster.

One job serves the first three (Flink jobs are slow to start): it follows a directory (so it stays up),
reads a file of adversarial rides, is watched, and is then failed by a poisoned ride that its row
function refuses.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import timedelta

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from local_services import free_port
from runtime.dead_letters import REASONS
from runtime.events_io import write_events
from runtime.run_log import RunLog
from stream_jobs.job import StreamJobSpec, run
from stream_jobs.monitor import RunningTotals
from tandem.reference import evaluate
from tests.catalogs import rides
from tests.factories import T0, TEST_PROJECT, example_project
from tests.test_stream_sources import wait_for
from transforms import Catalog, FieldType, row_function

LATENESS_MS = 5_000
REDIS_DB = 8  # a logical database of the session's Redis that no other test module uses
DAY_MS = 86_400_000
POISON_FARE = 4242.4242  # rides() rounds fares to cents: no generated ride has it


@row_function(FieldType.FLOAT64)
def fare_per_km(fare, km):
    """rides' fare per km; a ride of the poison fare fails the job (in the Python UDF worker, as a bug would)."""
    if np.any(np.asarray(fare, dtype=np.float64) == POISON_FARE):
        raise ValueError(f"poisoned ride: fare {POISON_FARE}")
    return rides.fare_per_km.fn(fare, km)


CATALOG = Catalog(rides.RIDES, (fare_per_km, rides.minute_of_hour), rides.CATALOG.groups)


def ride(ride_id: str, ts: int, fare: float = 10.0) -> dict:
    return {"ride_id": ride_id, "driver": "d-last", "city": "NY", "vehicle": 7, "fare": fare, "km": 2.0,
            "riders": 1, "surge": False, "ts": ts}


def drop_file(folder, name, records):
    """Write a file under a hidden name, then rename it: the follower never sees it half-written."""
    write_events(records, folder / f".{name}", CATALOG)
    os.replace(folder / f".{name}", folder / name)


def scrape(port: int) -> dict[tuple, float]:
    """The endpoint's samples over HTTP, parsed by prometheus_client: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sums(rows) -> tuple[int, int, dict[str, int]]:
    rejected: dict[str, int] = {}
    for r in rows:
        for reason, n in r.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + n
    return sum(r.rows_in for r in rows), sum(r.rows_out for r in rows), rejected


def test_the_monitor_serves_metrics_logs_checkpoints_and_a_failure(flink_table_env, redis_server, tmp_path):
    records = rides.rides(300, seed=23, start_ms=T0)
    newest = max(r["ts"] for r in records if isinstance(r.get("ts"), int)) + DAY_MS
    records.append(ride("last", newest))  # moves the watermark past every other event: only its own row waits
    expected = evaluate(records, CATALOG, allowed_lateness_ms=LATENESS_MS)
    want_rows = len(expected.rows) - 1  # the last event's row waits for a watermark that never comes
    want_dead = {reason: expected.counts[reason] for reason in ("invalid", "duplicate", "late")
                 if expected.counts[reason]}
    assert want_rows > 50 and len(want_dead) == 3  # the oracle exercises every reason
    assert max(r["ts"] for r in expected.rows) == newest

    inbox, lake, port = tmp_path / "inbox", tmp_path / "lake", free_port()
    inbox.mkdir()
    drop_file(inbox, "part-1.jsonl", records)
    spec = StreamJobSpec(f"file:{inbox}", tmp_path / "out", LATENESS_MS, catalog=CATALOG, project=TEST_PROJECT,
                         follow_ms=200, checkpoint_interval_ms=500, roll_interval_ms=500, restart_attempts=1,
                         lake=lake, metrics_port=port, redis=f"{redis_server.host}:{redis_server.port},db={REDIS_DB}")
    result = run(flink_table_env, spec, wait=False)
    job = result.get_job_client()
    pipeline = (("pipeline", "stream:rides"),)
    try:
        # 1. live metrics, scraped while the job runs
        def counted(m):
            return (m.get(("tandem_stream_records_in_total", pipeline)) == len(records)
                    and m.get(("tandem_stream_feature_rows_total", pipeline)) == want_rows
                    and {dict(k)["reason"]: v for (name, k), v in m.items()
                         if name == "tandem_stream_dead_letters_total"} == want_dead)

        metrics = wait_for(lambda: (m := scrape(port)) and counted(m) and m, 300, "the metrics to count every record")
        scraped_at = time.time()
        assert metrics[("tandem_stream_newest_event_timestamp_seconds", pipeline)] == newest / 1000
        freshness = metrics[("tandem_stream_feature_freshness_seconds", pipeline)]
        assert scraped_at - newest / 1000 - 5 < freshness <= scraped_at - newest / 1000
        lag = metrics[("tandem_stream_watermark_lag_seconds", pipeline)]  # watermark = newest - lateness - 1 ms
        assert lag == pytest.approx(freshness + (LATENESS_MS + 1) / 1000, abs=5)
        assert metrics[("tandem_stream_restarts_total", pipeline)] == 0

        # the JVM online sink's counters: each feature row, for each view (feature group), is written, or
        # refused as stale, or dropped for a newer row of its entity in the same batch
        def online(m):
            return sum(m.get((f"tandem_stream_online_rows_{what}_total", pipeline), 0)
                       for what in ("written", "stale", "superseded"))

        metrics = wait_for(lambda: (m := scrape(port)) and online(m) == want_rows * len(CATALOG.groups) and m, 60,
                           "the online sink to account for every feature row")
        assert metrics[("tandem_stream_online_rows_written_total", pipeline)] > 0
        assert metrics[("tandem_stream_online_write_retries_total", pipeline)] == 0
        assert metrics[("tandem_stream_online_write_errors_total", pipeline)] == 0
        batches = metrics[("tandem_stream_online_write_seconds_count", pipeline)]
        assert batches >= 1 and 0 < metrics[("tandem_stream_online_write_seconds_sum", pipeline)] < 60 * batches
        # each group's degraded gauge (tests/test_stream_gates.py checks what sets it)
        degraded = {dict(k)["group"]: v for (name, k), v in metrics.items() if name == "tandem_stream_group_degraded"}
        assert set(degraded) == {g.entity for g in CATALOG.groups} and set(degraded.values()) <= {0.0, 1.0}

        # 2. a row per checkpoint, adding up to the reference's counts
        log = RunLog(lake)
        want = (len(records), want_rows, want_dead)
        complete = wait_for(lambda: (rows := log.read("stream:rides")) and sums(rows) == want and rows, 60,
                            "checkpoint rows adding up to the reference")
        # two checkpoints more, however slow the machine: anything counted twice would show by then
        checkpoints = wait_for(lambda: len(rows := log.read("stream:rides")) >= len(complete) + 2 and rows, 60,
                               "two more checkpoint rows")
        assert len(checkpoints) >= 2 and sums(checkpoints) == want
        metrics = scrape(port)
        assert metrics[("tandem_stream_checkpoints_total", pipeline + (("status", "completed"),))] >= len(checkpoints)
        assert ("tandem_stream_checkpoints_total", pipeline + (("status", "failed"),)) in metrics
        assert 0 <= metrics[("tandem_stream_last_checkpoint_duration_seconds", pipeline)] < 60
        assert job.get_job_status().result().name == "RUNNING"  # following the folder, not finished

        # 3. a ride its row function refuses fails the job for real: restarted once from the last checkpoint, it
        # reads the ride again and fails for good: a failed row with the root cause
        drop_file(inbox, "part-2.jsonl", [ride("poisoned", newest + 1_000, fare=POISON_FARE)])
        wait_for(lambda: [r for r in log.read("stream:rides") if r.status == "failed"], 180, "the failed row")
    finally:
        if not job.get_job_execution_result().done():
            job.cancel().result()
        result.monitor.join()

    for r in checkpoints:  # one row per completed checkpoint: from its trigger to its completion
        assert (r.pipeline, r.trigger, r.status, r.error) == ("stream:rides", "checkpoint", "success", None)
        assert r.retries == 0 and set(r.stages) == {"checkpoint"}
        assert r.ended_at - r.started_at == timedelta(seconds=r.stages["checkpoint"])
    for a, b in zip(checkpoints, checkpoints[1:]):  # one checkpoint at a time
        assert a.ended_at <= b.started_at
    assert checkpoints[-1].newest_event.timestamp() * 1000 == newest

    rows = log.read("stream:rides")
    later, failed = rows[len(checkpoints):-1], rows[-1]
    assert rows[:len(checkpoints)] == checkpoints and len({r.run_id for r in rows}) == len(rows)
    assert all(r.status == "success" for r in later)  # checkpoints between the poisoned ride's read and the failure
    assert failed.status == "failed" and failed.trigger == "checkpoint"
    assert failed.error.endswith(f"ValueError: poisoned ride: fare {POISON_FARE}")
    assert sum(r.retries for r in [*later, failed]) == 1  # the one restart
    records_in, rows_out, rejected = sums([*later, failed])
    # the new attempt's counters start from 0 and are added on: nothing more than the poisoned ride, read twice
    assert records_in <= 2 and rows_out == 0 and rejected == {}
    with pytest.raises(urllib.error.URLError):  # the endpoint stopped with the job
        scrape(port)


def test_a_finished_job_ends_with_a_row_counting_what_it_committed(flink_table_env, tmp_path):
    """A bounded job's cluster stops with it, counters and all, often before the monitor reads them again:
    its last row counts what the job committed (new part files only: the folder holds an earlier run's)."""
    records = rides.rides(200, seed=29, start_ms=T0)
    expected = evaluate(records, CATALOG, allowed_lateness_ms=LATENESS_MS)
    events, out, lake = tmp_path / "rides.jsonl", tmp_path / "out", tmp_path / "lake"
    write_events(records, events, CATALOG)
    for folder, earlier in (("features", expected.rows[:5]), ("dead_letters", [{"ride_id": "x", "reason": "late"}])):
        (out / folder).mkdir(parents=True)
        (out / folder / "part-earlier-run-0-0").write_text("".join(json.dumps(r) + "\n" for r in earlier))
    run(flink_table_env, StreamJobSpec(f"file:{events}", out, LATENESS_MS, catalog=CATALOG, project=TEST_PROJECT,
                                       checkpoint_interval_ms=500, roll_interval_ms=500, lake=lake))
    rows = RunLog(lake).read("stream:rides")
    assert rows and all((r.trigger, r.status) == ("checkpoint", "success") for r in rows)
    assert sums(rows) == (len(records), len(expected.rows),
                          {reason: expected.counts[reason] for reason in REASONS if expected.counts[reason]})
    assert rows[-1].newest_event.timestamp() * 1000 == max(r["ts"] for r in expected.rows)


def test_tandem_stream_gives_the_project_lake_and_the_flink_main_none_unless_told(tmp_path):
    from stream_jobs.options import OPTIONS, job_arguments

    project = example_project(tmp_path / "project")
    values = {o.name: o.default for o in OPTIONS} | {"source": "file:x", "out": "out", "project": str(project.root)}
    assert job_arguments(values, project_lake=True)["lake"] == project.lake_root  # tandem stream
    assert (job_arguments(values)["lake"], job_arguments(values)["metrics_port"]) == (None, None)  # the Flink main
    values |= {"lake": str(tmp_path / "elsewhere"), "metrics_port": 9464}
    for project_lake in (True, False):
        args = job_arguments(values, project_lake=project_lake)
        assert (args["lake"], args["metrics_port"]) == (tmp_path / "elsewhere", 9464)


def test_running_totals_carry_counts_across_task_restarts_and_ignore_stale_readings():
    """Flink's counters start again from 0 with each task attempt; the totals go on. A lower reading with no
    restart since the attempt began is a stale answer of Flink's metric fetcher, not a new counter."""
    totals = RunningTotals()
    for value, restarts in ((5, 0), (12, 0), (0, 0), (13, 0),  # a stale 0: still the first attempt's 13
                            (3, 1), (9, 1), (4, 1), (11, 1),  # a restart: 3, 9, 11 are the new attempt's
                            (2, 3), (6, 3)):  # two restarts more, one attempt seen
        totals.see("records_in", value, restarts)
    totals.see("dead_letters_late", 2, 3)
    assert totals.totals() == {"records_in": 13 + 11 + 6, "dead_letters_late": 2}
