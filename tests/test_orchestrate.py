"""The project's pipelines on Dagster (orchestrate/): generated definitions executed in process on the real
Spark, Delta lake and Redis, checked against the reference evaluator; late data re-run into the tables and
Redis; retries, a blocked gate, the landing sensor, the one-writer lock; and a real ``dagster dev`` (daemon
and webserver) whose schedule ticks and whose UI answers over HTTP.

The main project holds the rides catalog (a user's module unlike the example) beside the example's; a
second, the example's alone, is retried through a Redis that comes up only after the first attempt.
Oracles: the reference evaluator's rows, and each entity's latest reference row for what Redis serves
(decoded with Feast's own protobuf); the stale partitions from the rule in orchestrate/late_data.py,
worked out by hand from the dates of the events.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import redis as redis_client

from local_services import free_port
from local_services.redis_server import RedisServer
from runtime.errors import UserError
from runtime.events_io import write_events
from runtime.lake import Lake
from runtime.project import load_project
from runtime.run_log import RunLog, RunRecord
from tandem.parity.compare import same
from tandem.reference import evaluate
from tests.catalogs.rides import rides
from tests.factories import T0
from tests.shell import shell_env
from tests.test_stream_sources import wait_for

REDIS_DB = 14  # a logical database of the session's Redis that no other test module uses
DAY_MS = 86_400_000
RANGE = {"dagster/asset_partition_range_start": "2024-05-01", "dagster/asset_partition_range_end": "2024-05-03"}


def make_project(root: Path, online_store: str | None, name: str, catalogs: list[str], **orchestration) -> Path:
    """A user's project: rides as their own module (copied in), landing folders, owners, alerts, orchestration."""
    (root / "features").mkdir(parents=True)
    (root / "features" / "__init__.py").write_text("")
    shutil.copy(Path(__file__).parent / "catalogs" / "rides.py", root / "features" / "rides.py")
    settings = {"start": "2024-05-01", "retries": 2, "backoff": "1s", "lock_wait": "2s", **orchestration}
    doc = {"project": name, "catalogs": catalogs, "lake": "lake",
           "pipelines": {"defaults": {"owner": "rides-oncall"}}, "alerts": {"file": "alerts.jsonl"},
           "orchestration": settings}
    if online_store:
        doc["online_store"] = online_store
    (root / "tandem.yaml").write_text(json.dumps(doc))  # JSON is YAML
    for source in ("rides", "transactions"):
        (root / "landing" / source).mkdir(parents=True)
    return root / "tandem.yaml"


def execute(defs: dg.Definitions, job: str, **kw) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(raise_on_error=False, **kw)


def steps(result, kind: str) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == kind}


def feature_tables(spark, lake: Lake, catalog) -> dict[str, dict[str, dict]]:
    """group -> event id -> the stored row, read back from the Delta feature tables."""
    out = {}
    for g in catalog.groups:
        df = spark.read.format("delta").load(lake.tables(catalog).features(g.entity))
        out[g.entity] = {r[catalog.schema.event_id]: r.asDict() for r in df.collect()}
    return out


def assert_tables_equal_reference(spark, lake, catalog, records):
    expected = evaluate(records, catalog).rows
    got = feature_tables(spark, lake, catalog)
    s = catalog.schema
    for g in catalog.groups:
        assert set(got[g.entity]) == {r[s.event_id] for r in expected}, g.entity
        for r in expected:
            row = got[g.entity][r[s.event_id]]
            for f in g.features:
                assert same(row[f.name], r[f.name]), (g.entity, r[s.event_id], f.name, row[f.name], r[f.name])


def served(address: str, project: str, catalog, group, key: tuple) -> dict:
    """What Redis serves for one entity of ``group``: Feast's hash key and field hashes, values decoded with
    Feast's ValueProto (what get_online_features reads)."""
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    from runtime.feast_layout import value_type
    from stream_jobs.online_sink import entity_key_proto, load_repo_config

    config = load_repo_config(project)
    types = tuple(value_type(catalog.schema.get_field(k).type) for k in group.key)
    hkey = _redis_key(project, entity_key_proto(group.key, types, key),
                      entity_key_serialization_version=config.entity_key_serialization_version)
    host, port, db = address.split(":")[0], int(address.split(":")[1].split(",")[0]), int(address.split("db=")[1])
    with redis_client.Redis(host, port, db=db) as r:
        fields = r.hgetall(hkey)
    out = {}
    for f in group.features:
        raw = fields.get(_mmh3(f"{group.entity}:{f.name}"))
        out[f.name] = None if raw is None else feast_value_type_to_python_type(Value.FromString(raw))
    return out


def latest(rows, catalog, group) -> dict[tuple, dict]:
    s = catalog.schema
    out = {}
    for r in sorted(rows, key=lambda r: (r[s.event_time], r[s.event_id])):
        out[tuple(r[k] for k in group.key)] = r
    return out


def assert_redis_equals_reference(address, project, catalog, records, skip=()):
    expected = evaluate(records, catalog).rows
    for g in catalog.groups:
        for key, row in latest(expected, catalog, g).items():
            if (g.entity, key) in skip:
                continue
            got = served(address, project, catalog, g, key)
            for f in g.features:
                want = row[f.name]
                want = None if isinstance(want, float) and want != want else want  # NaN is stored as null
                assert same(got[f.name], want), (g.entity, key, f.name, got[f.name], want)


def _row(pipeline: str, hour: int, dates: list[str], status: str = "success") -> RunRecord:
    began = datetime(2024, 5, 10, tzinfo=timezone.utc) + timedelta(hours=hour)
    return RunRecord(pipeline, "schedule", began, began + timedelta(minutes=10), status=status, partitions=dates)


def test_stale_partitions_follow_the_rule():
    """By hand: an ingest's dates and the days the windows reach forward, where events are, not backfilled since."""
    from orchestrate.late_data import ranges, stale_dates

    history = [_row("ingest:s", 0, ["2024-05-01", "2024-05-02", "2024-05-04"]),
               _row("backfill:s", 1, ["2024-05-01", "2024-05-02", "2024-05-04"]),  # everything fresh
               _row("ingest:s", 2, ["2024-05-01"]),  # late events on 05-01: its rows and 05-02's may change
               _row("ingest:s", 3, ["2024-05-04"], status="blocked"),  # wrote nothing: changes nothing
               _row("backfill:s", 4, ["2024-05-02"], status="failed"),  # repaired nothing
               _row("ingest:t", 5, ["2024-05-03"])]  # another source
    d = [date(2024, 5, day) for day in range(1, 6)]
    assert stale_dates(history, "s", 1, d[0], d[4]) == [d[0], d[1]]
    assert stale_dates(history, "s", 2, d[0], d[4]) == [d[0], d[1]]  # 05-03 holds no events
    assert stale_dates(history, "s", 3, d[0], d[4]) == [d[0], d[1], d[3]]  # 05-04 is 3 days on
    assert stale_dates(history, "s", 1, d[1], d[4]) == [d[1]]  # before the first partition: not asked
    assert stale_dates(history + [_row("backfill:s", 6, ["2024-05-01"])], "s", 1, d[0], d[4]) == [d[1]]
    assert stale_dates(history + [_row("backfill:s", 6, ["2024-05-01", "2024-05-02"])], "s", 1, d[0], d[4]) == []
    assert stale_dates(history, "t", 1, d[0], d[4]) == [d[2]]  # never backfilled
    assert ranges([d[0], d[1], d[3]]) == [(d[0], d[1]), (d[3], d[3])]


@pytest.fixture(scope="module")
def world(spark, redis_server, tmp_path_factory):
    """The rides pipeline run once over 2024-05-01 .. 05-03 (one Spark job per step, in this process)."""
    from orchestrate.definitions import definitions

    root = tmp_path_factory.mktemp("orchestrated")
    address = f"{redis_server.host}:{redis_server.port},db={REDIS_DB}"
    redis_client.Redis(redis_server.host, redis_server.port, db=REDIS_DB).flushdb()
    project = load_project(make_project(root / "project", address, "orchestrated",
                                        ["features.rides", "examples.transactions.features.transactions"]))
    catalog = project.catalog("rides")
    records = rides(300, seed=5, start_ms=T0)
    write_events(records, project.root / "landing" / "rides" / "part-1.jsonl", catalog)
    defs = definitions(project)
    result = execute(defs, "rides_pipeline", tags=RANGE)
    return {"project": project, "catalog": catalog, "records": records, "defs": defs, "result": result,
            "address": address, "lake": Lake.at(project.lake_root)}


def test_the_definitions_follow_the_project(world):
    defs, catalog = world["defs"], world["catalog"]
    keys = {s.key.to_user_string() for s in defs.resolve_all_asset_specs()}
    for source, groups in (("rides", [g.entity for g in catalog.groups]), ("transactions", ["user", "merchant"])):
        assert {f"{source}/events", f"{source}/online", *(f"{source}/{g}" for g in groups)} <= keys
    checks = {(c.asset_key.to_user_string(), c.name): c for c in defs.resolve_asset_graph().asset_check_keys}
    specs = {(s.asset_key.to_user_string(), s.name): s
             for a in defs.resolve_asset_graph().assets_defs for s in a.check_specs}
    assert set(checks) == set(specs)
    # the rides gates where their writes are: promo (a field) on the events, blocking; the fare range warns
    assert specs[("rides/events", "completeness_promo")].blocking
    assert not specs[("rides/events", "range_fare")].blocking
    assert not specs[("rides/driver", "drift_driver_fare_per_km_avg_30m")].blocking  # a feature's, warn
    assert specs[("rides/city_driver", "completeness_cd_tip_sum_1h")].blocking
    assert ("rides/online", "completeness_cd_tip_sum_1h") in specs  # what would be served, checked again
    assert {("rides/events", "volume"), ("rides/driver", "volume")} <= set(specs)
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["rides_daily"].cron_schedule == "0 2 * * *"
    assert schedules["rides_hourly"].cron_schedule == "15 * * * *"
    assert {s.name for s in defs.sensors} == {"rides_landing", "transactions_landing", "rides_schedule_watch",
                                              "transactions_schedule_watch"}


def test_the_asset_graph_equals_the_reference_and_every_step_is_one_run_log_row(world, spark):
    result = world["result"]
    assert result.success, steps(result, "STEP_FAILURE")
    assert steps(result, "STEP_SUCCESS") == {"rides__events", "rides_features", "rides__online"}
    assert_tables_equal_reference(spark, world["lake"], world["catalog"], world["records"])
    assert_redis_equals_reference(world["address"], "orchestrated", world["catalog"], world["records"])
    rows = RunLog(world["project"].lake_root).read()
    assert [(r.pipeline, r.trigger, r.status) for r in rows] == [
        ("ingest:rides", "manual", "success"), ("backfill:rides", "manual", "success"),
        ("materialize:rides", "manual", "success")]
    event_dates = sorted({datetime.fromtimestamp(r["ts"] / 1000, timezone.utc).date().isoformat()
                          for r in evaluate(world["records"], world["catalog"]).rows})
    assert rows[0].partitions == rows[1].partitions == event_dates  # a three-day range, one backfill run
    metadata = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
                for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert metadata["rides/driver"]["run log row"].value == rows[1].run_id  # the Dagster run names its row


def test_a_late_event_reruns_exactly_its_partitions_and_replaces_the_served_row(world, spark):
    from stream_jobs.online_sink import OnlineWriter

    project, catalog, records, defs = world["project"], world["catalog"], world["records"], world["defs"]
    reference = evaluate(records, catalog).rows
    hot = [r for r in reference if r["driver"] == "d-hot"]
    newest = max(hot, key=lambda r: (r["ts"], r["ride_id"]))
    # on the first day, whose total the volume gate judges, and within a day of the driver's newest event
    late = {"ride_id": "late-1", "driver": "d-hot", "city": newest["city"], "vehicle": 12, "fare": 99.5,
            "km": 321.0, "riders": 6, "surge": True, "promo": "LATE", "tip": 2.5,  # complete: passes the gates
            "ts": max(T0 + 20 * 3_600_000, newest["ts"] - DAY_MS + 1)}
    assert late["ts"] < T0 + DAY_MS <= newest["ts"]  # the data reach the next day (rides(300) spans ~26 h)
    late_day = datetime.fromtimestamp(late["ts"] / 1000, timezone.utc).date()
    write_events([late], project.root / "landing" / "rides" / "part-2-late.jsonl", catalog)
    # a newer row than any batch row, as the stream would have written: the re-run must not overwrite it
    vehicle = catalog.group("vehicle")
    stream_row = {**max((r for r in reference if r["vehicle"] == 0), key=lambda r: r["ts"]),
                  "ts": T0 + 30 * DAY_MS, "vehicle_rides_1h": 424242}
    with OnlineWriter(world["address"], catalog=catalog, project="orchestrated", groups=["vehicle"]) as w:
        w.write([stream_row])

    today = execute(defs, "rides_pipeline", partition_key="2024-05-03")  # the hourly run: ingests the late file
    assert today.success, steps(today, "STEP_FAILURE")
    ingest = RunLog(project.lake_root).read(pipeline="ingest:rides")[-1]
    assert ingest.partitions == [late_day.isoformat()] and ingest.rows_out == 1

    # the rule by hand: rides' longest window is 1 day, so the late day and the next, where they hold events
    event_days = {datetime.fromtimestamp(r["ts"] / 1000, timezone.utc).date() for r in reference}
    stale = [d for d in (late_day, late_day + timedelta(days=1)) if d in event_days]
    tick = dg.build_schedule_context(scheduled_execution_time=datetime(2024, 5, 4, 2, 0, tzinfo=timezone.utc),
                                     repository_def=defs.get_repository_def())
    requests = defs.resolve_schedule_def("rides_daily").evaluate_tick(tick).run_requests
    assert [r.partition_key for r in requests] == ["2024-05-03", None]
    assert (requests[1].tags["dagster/asset_partition_range_start"],
            requests[1].tags["dagster/asset_partition_range_end"]) == (stale[0].isoformat(), stale[-1].isoformat())

    rerun = execute(defs, "rides_pipeline", tags=dict(requests[1].tags))
    assert rerun.success, steps(rerun, "STEP_FAILURE")
    everything = [*records, late]
    assert_tables_equal_reference(spark, world["lake"], catalog, everything)
    assert_redis_equals_reference(world["address"], "orchestrated", catalog, everything,
                                  skip={("vehicle", (0,))})
    changed = evaluate(everything, catalog).rows
    driver = latest(changed, catalog, catalog.group("driver_day"))[("d-hot",)]
    assert driver["ts"] == newest["ts"] and driver["driver_km_sum_1d"] == newest["driver_km_sum_1d"] + 321.0
    assert served(world["address"], "orchestrated", catalog, catalog.group("driver_day"), ("d-hot",)) == {
        f.name: driver[f.name] for f in catalog.group("driver_day").features}  # same event time, corrected value
    assert served(world["address"], "orchestrated", catalog, vehicle, (0,))["vehicle_rides_1h"] == 424242
    again = defs.resolve_schedule_def("rides_daily").evaluate_tick(tick).run_requests
    assert [r.partition_key for r in again] == ["2024-05-03"]  # nothing stale any more


def test_a_blocked_gate_stops_downstream_alerts_and_leaves_tables_and_redis_unchanged(world, spark):
    project, catalog, defs = world["project"], world["catalog"], world["defs"]
    lake = world["lake"]
    bad = [{"ride_id": f"nopromo-{i}", "driver": "d-x", "city": "NY", "vehicle": 1, "fare": 5.0, "km": 1.0,
            "riders": 1, "surge": False, "promo": None, "tip": 1.0, "ts": T0 + 2 * DAY_MS + i * 1_000}
           for i in range(20)]  # promo 0 % non-null: below the catalog's 20 % minimum
    path = project.root / "landing" / "rides" / "part-3-bad.jsonl"
    write_events(bad, path, catalog)
    versions = {g.entity: _version(spark, lake.tables(catalog).features(g.entity)) for g in catalog.groups}
    events_version = _version(spark, lake.tables(catalog).events)
    began = datetime.now(timezone.utc)
    db = redis_client.Redis(*world["address"].split(",")[0].split(":"), db=REDIS_DB)
    before = {k: db.hgetall(k) for k in db.keys()}
    try:
        result = execute(defs, "rides_pipeline", partition_key="2024-05-03")
    finally:
        path.unlink()
    assert not result.success
    assert steps(result, "STEP_FAILURE") == {"rides__events"}
    assert not steps(result, "STEP_SUCCESS") & {"rides_features", "rides__online"}  # downstream never ran
    failed_checks = {e.asset_check_evaluation_data.check_name for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed}
    assert "completeness_promo" in failed_checks
    assert _version(spark, lake.tables(catalog).events) == events_version
    assert {g.entity: _version(spark, lake.tables(catalog).features(g.entity)) for g in catalog.groups} == versions
    assert {k: db.hgetall(k) for k in db.keys()} == before
    db.close()
    blocked = [r for r in RunLog(project.lake_root).read(pipeline="ingest:rides", since=began)
               if r.status == "blocked"]
    assert len(blocked) == 1 and blocked[0].retries == 0  # a blocked gate is not retried
    alerts = [json.loads(line) for line in project.operations.alerts.file.read_text().splitlines()]
    gate = [a for a in alerts if a.get("kind") == "gate_blocked" and a["subject"] == "completeness(promo)"]
    assert gate and gate[0]["owner"] == "rides-oncall" and gate[0]["pipeline"] == "ingest:rides"


def _version(spark, path):
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def test_a_second_writer_of_a_pipeline_waits_then_is_refused_and_recorded(world, spark):
    from batch_jobs.backfill import backfill
    from runtime.locks import pipeline_lock

    project, catalog, lake = world["project"], world["catalog"], world["lake"]
    versions = {g.entity: _version(spark, lake.tables(catalog).features(g.entity)) for g in catalog.groups}
    began = time.monotonic()
    with pipeline_lock(project.lake_root, "backfill:rides", 0):  # another run holds it
        with pytest.raises(UserError, match=r"backfill:rides is already running \(pid \d+ since .*\); this run "
                                            r"waited 2 s and was refused, nothing was written"):
            backfill(spark, lake, date(2024, 5, 1), date(2024, 5, 1), catalog, operations=project.operations)
    assert time.monotonic() - began >= 2  # it waited lock_wait first
    row = RunLog(project.lake_root).read(pipeline="backfill:rides")[-1]
    assert row.status == "failed" and "already running" in row.error
    assert {g.entity: _version(spark, lake.tables(catalog).features(g.entity)) for g in catalog.groups} == versions


def test_the_landing_sensor_starts_a_run_per_new_file(world, tmp_path):
    project = world["project"]
    sensor = world["defs"].resolve_sensor_def("transactions_landing")
    instance, repo = dg.DagsterInstance.ephemeral(), world["defs"].get_repository_def()
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))
    assert not first.run_requests  # the folder is empty
    landing = project.root / "landing" / "transactions"
    (landing / "a.jsonl").write_text('{"transaction_id": "t1"}\n')
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))
    (request,) = tick.run_requests
    assert request.partition_key == datetime.now(timezone.utc).date().isoformat()
    assert request.tags["tandem/new_files"] == "a.jsonl"
    same_files = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                               repository_def=repo))
    assert not same_files.run_requests
    (landing / "b.jsonl").write_text('{"transaction_id": "t2"}\n')
    more = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                         repository_def=repo))
    assert [r.tags["tandem/new_files"] for r in more.run_requests] == ["b.jsonl"]
    for f in ("a.jsonl", "b.jsonl"):
        (landing / f).unlink()


def test_a_daily_run_that_did_not_start_alerts_once(tmp_path):
    """The daily schedule ticks every minute here and may be 1 s late: no scheduled backfill since the tick
    alerts schedule_missed once (a repeat of the same tick is suppressed); a scheduled row since is no alarm."""
    from orchestrate.definitions import definitions

    project = load_project(make_project(tmp_path / "project", None, "watched", ["features.rides"],
                                        daily="* * * * *", missed_after="1s"))
    watch = definitions(project).resolve_sensor_def("rides_schedule_watch")
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral())
    if datetime.now(timezone.utc).second < 2:
        time.sleep(2)  # at least 1 s past this minute's tick
    due = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    for _ in range(2):
        watch.evaluate_tick(context)
    alerts = [json.loads(line) for line in project.operations.alerts.file.read_text().splitlines()]
    assert [(a["kind"], a["pipeline"], a["owner"], a["subject"], a["suppressed"]) for a in alerts] == [
        ("schedule_missed", "backfill:rides", "rides-oncall", f"rides_daily {due:%Y-%m-%dT%H:%M}Z", False),
        ("schedule_missed", "backfill:rides", "rides-oncall", f"rides_daily {due:%Y-%m-%dT%H:%M}Z", True)]
    assert alerts[0]["runbook"] == "RUNBOOK.md#a-scheduled-run-did-not-start"
    if datetime.now(timezone.utc).second > 50:
        time.sleep(12)  # into the next minute, so that the row below and the check share one tick
    RunLog(project.lake_root).append(RunRecord("backfill:rides", "schedule", datetime.now(timezone.utc),
                                               datetime.now(timezone.utc)))
    watch.evaluate_tick(context)
    assert len(project.operations.alerts.file.read_text().splitlines()) == len(alerts)  # the run came: no alarm


def test_a_transient_failure_is_retried_and_the_example_graph_equals_the_reference(spark, tmp_path):
    """The example project's pipeline with its Redis down at first: the online step fails, is retried after
    the backoff (Redis came up meanwhile) and succeeds; nobody was alerted for the passing failure."""
    from examples.transactions.features.generate import StreamSpec, generate
    from orchestrate.definitions import definitions

    port = free_port()
    address = f"127.0.0.1:{port},db=0"
    project = load_project(make_project(tmp_path / "project", address, "retried",
                                        ["examples.transactions.features.transactions"], backoff="3s"))
    catalog = project.catalog("transactions")
    records = generate(StreamSpec(users=20, merchants=5, rate_per_s=0.02, duration="30h",
                                  start="2024-05-01T03:00:00Z", seed=13))
    write_events(records, project.root / "landing" / "transactions" / "day.jsonl", catalog)
    server = RedisServer(port=port)
    log = RunLog(project.lake_root)

    def start_redis_after_the_first_failure():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                failed = any(r.status == "failed" for r in log.read(pipeline="materialize:transactions"))
            except Exception:  # the run log is being appended to: read it again
                failed = False
            if failed:
                server.start()
                done.wait()  # the server dies with the thread that started it (PR_SET_PDEATHSIG)
                return
            time.sleep(0.2)

    done = threading.Event()
    helper = threading.Thread(target=start_redis_after_the_first_failure, daemon=True)
    helper.start()
    try:
        result = execute(definitions(project), "transactions_pipeline", tags=RANGE)
        assert result.success, steps(result, "STEP_FAILURE")
        attempts = log.read(pipeline="materialize:transactions")
        assert [(r.status, r.retries) for r in attempts] == [("failed", 0), ("success", 1)]
        assert "unreachable" in attempts[0].error
        assert attempts[0].alerts == ["no alert: a transient failure, 2 retr(ies) left"]
        assert not project.operations.alerts.file.exists() or "pipeline_failed" not in \
            project.operations.alerts.file.read_text()
        assert_tables_equal_reference(spark, Lake.at(project.lake_root), catalog, records)
        assert_redis_equals_reference(address, "retried", catalog, records)
    finally:
        done.set()
        helper.join(10)
        server.stop()


def test_bad_orchestration_settings_are_one_line_each(tmp_path):
    from orchestrate.definitions import definitions

    cases = {"daily": ("every day", r"orchestration\.daily: 'every day' is not a cron schedule"),
             "start": ("May 1st", r"orchestration\.start must be a date"),
             "retries": (-1, r"orchestration\.retries must be a whole number from 0 to 20"),
             "landing": ("nowhere", r"orchestration\.landing: no folder .*nowhere/rides for source 'rides': create it")}
    kept = {"source": "file:inbox", "out": "out"}
    cases = [({key: value}, message) for key, (value, message) in cases.items()] + [
        ({"stall_after": "0s"}, r"orchestration\.stall_after must be longer than 0"),
        ({"streams": {"rides": {**kept, "checkpoint_interval": "0ms"}}},
         r"orchestration\.streams\.rides\.checkpoint_interval: a kept stream must checkpoint"),
        ({"streams": {"rides": {**kept, "checkpoint_interval": "5m"}}},
         r"checkpoint_interval 5m is too long for orchestration\.stall_after \(600 s\): take at least 3"),
        ({"streams": {"rides": {**kept, "checkpoint_interval": "soon"}}},
         r"orchestration\.streams\.rides\.checkpoint_interval: ")]
    for i, (settings, message) in enumerate(cases):
        path = make_project(tmp_path / str(i), "127.0.0.1:6379", "bad", ["features.rides"], **settings)
        with pytest.raises(UserError, match=message):
            definitions(load_project(path))
    path = make_project(tmp_path / "cli", "127.0.0.1:6379", "bad", ["features.rides"], hourly="* * *")
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "orchestrate", "--project", str(path.parent)],
                          capture_output=True, text=True, env=shell_env(), timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: orchestration.hourly: '* * *' is not a cron schedule (five fields, e.g. \"0 2 * * *\")"]


def test_dagster_dev_runs_a_schedule_tick_and_its_ui_answers(tmp_path):
    """``tandem orchestrate``: the real webserver and daemon; a schedule every minute launches a run (in its
    own process, as Dagster does) that lands in the run log as ``schedule``; the UI answers over HTTP."""
    path = make_project(tmp_path / "project", None, "scheduled",
                        ["examples.transactions.features.transactions"], hourly="* * * * *", daily="0 0 1 1 *",
                        lock_wait="5m")  # the landing sensor's run and the schedule's meet at the lock: one waits
    records = [{"transaction_id": f"t{i}", "user_id": "u1", "merchant_id": "m1", "amount": 1.0 + i,
                "currency": "USD", "event_time": T0 + i * 60_000} for i in range(5)]
    write_events(records, path.parent / "landing" / "transactions" / "a.jsonl",
                 load_project(path).catalog("transactions"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tandem.cli", "orchestrate", "--project", str(path.parent),
                             "--port", str(port)], env=shell_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log = RunLog(path.parent / "lake")
    try:
        deadline = time.monotonic() + 120
        info = None
        while info is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    info = json.load(r)
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("the Dagster UI never answered") from None
                time.sleep(1)
        assert info["dagster_webserver_version"] == dg.__version__
        deadline = time.monotonic() + 300
        while not [r for r in log.read(pipeline="ingest:transactions") if r.trigger == "schedule"]:
            assert proc.poll() is None, "tandem orchestrate stopped"
            assert time.monotonic() < deadline, "no scheduled run reached the run log"
            time.sleep(2)
        ingests = log.read(pipeline="ingest:transactions")
        assert [r.status for r in ingests if r.trigger == "schedule"][:1] == ["success"]
        # the landing sensor may have run first (its run and the schedule's share the file): one ingest of it
        assert sum(r.rows_out for r in ingests) == len(records)
        query = json.dumps({"query": "{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }"})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            runs = json.load(r)["data"]["runsOrError"]["results"]
        assert any(run["jobName"] == "transactions_pipeline" and
                   {"key": "dagster/schedule_name", "value": "transactions_hourly"} in run["tags"] for run in runs)
    finally:
        stop_tree(proc)


def stop_tree(proc: subprocess.Popen) -> None:
    """Stop ``proc``'s process group, then whatever of its descendants outlived it: Dagster's code server
    survives ``dagster dev`` while a run it launched is in progress (it lets the run finish), and that run
    would go on loading the machine through the rest of the suite."""
    import psutil

    family = []
    with contextlib.suppress(psutil.Error):
        family = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    left = []
    for p in family:
        with contextlib.suppress(psutil.Error):
            if p.is_running():
                left += [p, *p.children(recursive=True)]
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(left, timeout=10)


_WORKER = """
import sys
import dagster as dg
from orchestrate.definitions import definitions
from runtime.project import load_project
from pathlib import Path
job = definitions(load_project(Path(sys.argv[1]))).resolve_job_def("rides_stream")
job.execute_in_process(instance=dg.DagsterInstance.from_config(sys.argv[2]), tags={"tandem/stream": "rides"},
                       raise_on_error=False)
"""


def test_the_keeper_restarts_a_dead_or_stalled_stream_from_its_checkpoint_with_nothing_lost(tmp_path):
    """The keeper sensor keeps the rides stream job alive, its runs each in a worker process of their own
    (what Dagster's run launcher starts) on an instance on disk. The stream dies three ways, and each time
    the keeper restarts it from its last checkpoint and alerts the owner:

    1. its process is killed: the worker fails the run, the next tick restarts it;
    2. its worker is killed and the stream, orphaned, hangs (SIGSTOP): Dagster still says "started", but
       the checkpoints stopped; after ``stall_after`` the keeper kills the orphan, marks the run failed,
       restarts;
    3. the stream hangs under a live worker: the keeper kills it, the worker fails the run, the next tick
       restarts it; seen dead again before it came back (a restart loop), the alert is a suppressed repeat.

    In the end the rows and dead letters are the reference's, each once."""
    import psutil

    from stream_jobs.outputs import dead_letters, feature_rows

    inbox, out, home = tmp_path / "inbox", tmp_path / "out", tmp_path / "dagster"
    inbox.mkdir()
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    streams = {"rides": {"source": f"file:{inbox}", "out": str(out), "follow": True, "follow_interval": "200ms",
                         "checkpoint_interval": "500ms", "roll_interval": "500ms", "allowed_lateness": "5s"}}
    config = make_project(tmp_path / "project", None, "kept", ["features.rides"], streams=streams,
                          stall_after="15s")
    project = load_project(config)
    catalog = project.catalog("rides")
    from orchestrate.definitions import definitions

    defs = definitions(project)
    keeper = defs.resolve_sensor_def("rides_stream_keeper")
    instance, repo = dg.DagsterInstance.from_config(str(home)), defs.get_repository_def()
    log = RunLog(project.lake_root)
    workers: list[subprocess.Popen] = []

    def tick():
        return keeper.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo)).run_requests

    def start() -> subprocess.Popen:
        worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(config), str(home)], env=shell_env(),
                                  start_new_session=True)
        workers.append(worker)
        return worker

    def stream_of(worker) -> psutil.Process:
        """The worker's ``tandem stream`` process, once it runs."""
        def find():
            for p in psutil.Process(worker.pid).children():
                with contextlib.suppress(psutil.Error):
                    if "stream" in p.cmdline():
                        return p
            return None
        wait_for(lambda: find() is not None, 120, "the worker's stream process")
        return find()

    def latest_run():
        return instance.get_runs(filters=dg.RunsFilter(job_name="rides_stream"), limit=1)[0]

    def checkpoints() -> int:
        return len(log.read(pipeline="stream:rides"))

    def beating(n_before: int):
        wait_for(lambda: checkpoints() >= n_before + 2, 240, "checkpoint rows of the restarted stream")

    def restart_when_stalled():
        requests = []
        wait_for(lambda: requests.extend(tick()) or requests, 90, "the keeper to see the stall", interval=2)
        assert len(requests) == 1
        return requests

    first = rides(120, seed=31, start_ms=T0)
    newest = max(r["ts"] for r in first if isinstance(r.get("ts"), int))
    second = rides(80, seed=32, start_ms=newest + 60_000)
    last = {**second[0], "ride_id": "last", "ts": newest + 30 * DAY_MS}  # moves the watermark past everything
    expected = evaluate([*first, *second, last], catalog, allowed_lateness_ms=5_000)
    want = {r["ride_id"]: r for r in expected.rows if r["ride_id"] != "last"}
    try:
        assert len(tick()) == 1  # none ran yet
        worker = start()
        write_events(first, inbox / "part-1.jsonl", catalog)
        wait_for(lambda: sum(r.rows_in for r in log.read(pipeline="stream:rides")) >= len(first), 240,
                 "a checkpoint row counting the first file")
        assert not tick()  # alive: nothing to do

        # 1. the stream's process is killed: its worker fails the run
        os.killpg(stream_of(worker).pid, signal.SIGKILL)
        assert worker.wait(60) == 0
        assert latest_run().status == dg.DagsterRunStatus.FAILURE
        assert len(tick()) == 1
        n = checkpoints()
        worker = start()
        beating(n)

        # 2. the worker is killed, the orphaned stream hangs: the run stays "started", the heartbeat stops
        orphan = stream_of(worker)
        session = [orphan, *orphan.children(recursive=True)]  # the JVM too
        worker.kill()
        worker.wait(10)
        os.killpg(orphan.pid, signal.SIGSTOP)
        assert latest_run().status == dg.DagsterRunStatus.STARTED
        restart_when_stalled()
        for p in session:  # killed, and ended, before the restart was asked for
            assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, p
        assert latest_run().status == dg.DagsterRunStatus.FAILURE  # marked by the keeper
        n = checkpoints()
        worker = start()
        beating(n)
        write_events([*second, last], inbox / "part-2.jsonl", catalog)
        wait_for(lambda: len(feature_rows(out, catalog)) >= len(want), 240, "every row but the held one")
        time.sleep(1.5)  # more checkpoints: anything counted twice would be committed by now

        # 3. the stream hangs under a live worker: killed by the keeper, the run fails, the next tick restarts
        hung, later = stream_of(worker), []
        os.killpg(hung.pid, signal.SIGSTOP)

        def worker_ended():
            if worker.poll() is not None:
                return True
            later.extend(tick())  # stalled: the stream is killed, the live worker left to end its run
            return False

        wait_for(worker_ended, 90, "the keeper to kill the hung stream (its worker ends)", interval=2)
        assert not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE
        assert latest_run().status == dg.DagsterRunStatus.FAILURE
        later += tick()  # restarted ...
        later += tick()  # ... and seen dead once more before it came back: a restart loop
        assert len(later) >= 2 and all(r.run_key == later[0].run_key for r in later)
    finally:
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(worker.pid).children():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
            worker.kill()
            worker.wait(30)
        for p in psutil.process_iter():  # an orphaned stream of this test (its command names this project)
            with contextlib.suppress(psutil.Error):
                if str(config.parent) in " ".join(p.cmdline()):
                    os.killpg(p.pid, signal.SIGKILL)
    rows = feature_rows(out, catalog)
    assert sorted(r["ride_id"] for r in rows) == sorted(want)  # each once: nothing lost, nothing repeated
    for r in rows:
        for column, _ in catalog.feature_row_columns():
            assert same(r[column], want[r["ride_id"]][column]), (r["ride_id"], column)
    assert Counter((d["ride_id"], d["reason"]) for d in dead_letters(out)) == Counter(
        (r.event_id, r.reason) for r in expected.rejected)
    records = [json.loads(line) for line in project.operations.alerts.file.read_text().splitlines()]
    stopped = [i for i, a in enumerate(records) if a.get("subject") == "stream stopped"]
    assert len(stopped) == 2 + len(later) and all((records[i]["kind"], records[i]["pipeline"], records[i]["owner"]) ==
                                     ("pipeline_failed", "stream:rides", "rides-oncall") for i in stopped)
    assert "stalled: no checkpoint for" in records[stopped[1]]["summary"]
    # the rule: a repeat is suppressed unless the pipeline recovered in between (a clean checkpoint row of the
    # restarted job resolves it: then its next death is a new failure)
    recovered = [any(r.get("type") == "resolved" and r["pipeline"] == "stream:rides" for r in records[a:b])
                 for a, b in zip(stopped, stopped[1:])]
    assert [records[i]["suppressed"] for i in stopped] == [False, *(not r for r in recovered)]
