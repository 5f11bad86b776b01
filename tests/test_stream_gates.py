"""The stream's quality gates: each interval of output measured (stream_jobs/quality.py), judged, recorded,
alerted, and its feature groups marked degraded in Redis or cleared again (stream_jobs/gatekeeper.py).

The measuring is checked against figures worked out by hand from the rules (Spark's comparisons: a NaN is
above every bound and in the last drift bin); the gatekeeper against the session's real Redis and a real
webhook receiver; and the whole on a real Flink job whose output breaks a gate. Catalogs other than the
example's: a sensor readings catalog here, the rides catalog for the Flink job.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
import redis as redis_client

from runtime.degraded import degraded_groups, degraded_key
from runtime.errors import UserError
from runtime.events_io import write_events
from runtime.operations import parse_operations
from runtime.run_log import RunLog, RunRecord
from stream_jobs.gatekeeper import Gatekeeper
from stream_jobs.quality import guarded_groups, measure, stream_gates
from tests.catalogs import rides
from tests.factories import T0, TEST_PROJECT
from tests.receiver import Receiver
from transforms import (Agg, Catalog, Completeness, Drift, EventSchema, Feature, FeatureGroup, Field, FieldType, Range,
                        References, Volume)

DAY_MS = 86_400_000
REDIS_DB = 13  # a logical database of the session's Redis that no other test module uses

READINGS = EventSchema(
    name="readings", version=1,
    fields=(Field("reading_id", FieldType.STRING), Field("sensor", FieldType.STRING), Field("site", FieldType.INT64),
            Field("temp", FieldType.FLOAT64), Field("humidity", FieldType.FLOAT64, required=False),
            Field("at", FieldType.TIMESTAMP_MS)),
    event_id="reading_id", entity_keys=("sensor", "site"), event_time="at")
SENSOR = FeatureGroup("sensor", "sensor", (Feature("temp_max_1h", Agg.MAX, "1h", of="temp"),
                                           Feature("readings_10m", Agg.COUNT, "10m")))
SITE = FeatureGroup("site", "site", (Feature("humidity_mean_1h", Agg.MEAN, "1h", of="humidity"),))
GATES = (Range(column="temp_max_1h", min=-50, max=60), Completeness(column="humidity_mean_1h", min=0.5),
         References(column="site", table="reference/sites"), Drift(column="temp_max_1h", method="ks", action="warn"),
         Range(column="temp", min=-100, max=100))  # a field the feature rows do not carry: judged at ingest only
CATALOG = Catalog(READINGS, (), (SENSOR, SITE), GATES)


def reading(i: int, sensor: str, site: int, at: int, temp_max: float, humidity_mean: float | None) -> dict:
    """A feature row as the stream's feature log holds it."""
    return {"reading_id": f"r{i}", "sensor": sensor, "site": site, "at": at, "temp_max_1h": temp_max,
            "readings_10m": 1, "humidity_mean_1h": humidity_mean}


ROWS = [reading(1, "s1", 1, T0, 10.0, 40.0),
        reading(2, "s1", 2, T0 + 1_000, 60.0, None),  # exactly on the maximum: inside
        reading(3, "Straße-東", 3, T0 + DAY_MS, 60.5, 20.0),  # outside
        reading(4, "s2", 2, T0 + DAY_MS + 5, math.nan, None),  # NaN: above the maximum
        reading(5, "s2", 7, T0 + 2_000, -50.0, None)]  # exactly on the minimum; site 7 is no reference site


def test_which_gates_the_stream_judges_and_which_groups_they_guard():
    names = {g.name for g in stream_gates(CATALOG)}
    assert {"range(temp_max_1h)", "completeness(humidity_mean_1h)", "references(site)", "drift(temp_max_1h)",
            "completeness(sensor)", "completeness(readings_10m)"} <= names
    assert "range(temp)" not in names and "completeness(temp)" not in names  # fields: the ingest's
    assert not any(isinstance(g, Volume) for g in stream_gates(CATALOG))
    by_name = {g.name: g for g in stream_gates(CATALOG)}
    assert guarded_groups(CATALOG, by_name["range(temp_max_1h)"]) == ["sensor"]  # its feature's group
    assert guarded_groups(CATALOG, by_name["references(site)"]) == ["site"]  # the groups keyed by it
    assert guarded_groups(CATALOG, by_name["completeness(at)"]) == ["sensor", "site"]  # every group


def test_an_interval_is_measured_by_the_rules():
    gates = stream_gates(CATALOG)
    fig = measure(ROWS, CATALOG, gates, {"temp_max_1h": None}, {"references(site)": {1, 2, 3}})
    assert fig.rows == 5
    assert fig.non_null["humidity_mean_1h"] == 2 and fig.non_null["temp_max_1h"] == 5 and fig.non_null["site"] == 5
    assert fig.outside == {"range(temp_max_1h)": 2}  # 60.5 and NaN; 60.0 and -50.0 are on the bounds
    assert fig.missing_refs == {"references(site)": 1}
    assert fig.dates == [date(2024, 5, 1), date(2024, 5, 2)]  # T0 is 2024-05-01T00:00Z
    assert fig.newest_event == datetime.fromtimestamp((T0 + DAY_MS + 5) / 1000, timezone.utc)
    # deciles of [-50, 10, 60, 60.5, NaN]: the values of rank ceil(k/10 x 5), k = 1..9, are -50 -50 10 10 60 60
    # 60.5 60.5 NaN; the NaN is no edge
    assert fig.edges["temp_max_1h"] == [-50.0, 10.0, 60.0, 60.5]
    assert fig.histograms["temp_max_1h"] == [1, 1, 1, 1, 1]  # (-inf,-50] (-50,10] (10,60] (60,60.5] (60.5,inf)+NaN
    s = fig.summaries["temp_max_1h"]
    assert s["min"] == -50.0 and math.isnan(s["max"]) and math.isnan(s["mean"])  # NaN is the largest, as in Spark
    assert fig.summaries["humidity_mean_1h"] == {"mean": 30.0, "min": 20.0, "max": 40.0}

    given = measure(ROWS, CATALOG, gates, {"temp_max_1h": [0.0, 50.0]}, {})
    assert given.edges["temp_max_1h"] == [0.0, 50.0] and given.histograms["temp_max_1h"] == [1, 1, 3]
    assert given.missing_refs == {}  # no keys read: not judged


def test_no_rows_is_nothing_to_judge():
    fig = measure([], CATALOG, stream_gates(CATALOG), {"temp_max_1h": None}, {})
    assert fig.rows == 0 and fig.newest_event is None and "temp_max_1h" not in fig.histograms


@pytest.fixture
def lake(tmp_path):
    from deltalake import write_deltalake

    root = tmp_path / "lake"
    write_deltalake(str(root / "reference" / "sites"), pa.table({"site": pa.array([1, 2, 3], pa.int64())}))
    return root


def operations(tmp_path, lake, webhook=None):
    doc = {"pipelines": {"readings": {"owner": "sensors-oncall"}}, "alerts": {"file": "alerts.jsonl"}}
    if webhook:
        doc["alerts"]["webhook"] = webhook
    return parse_operations(tmp_path / "tandem.yaml", doc, lake)


def interval(keeper: Gatekeeper, rows: list[dict]) -> RunRecord:
    now = datetime.now(timezone.utc)
    record = RunRecord("stream:readings", "checkpoint", now - timedelta(seconds=1), now)
    keeper.judge(record, rows)
    return record


def failing(record: RunRecord) -> set[str]:
    """The blocking gates that failed (the warn drift gate follows the hot intervals too, and only alerts)."""
    return {g.gate for g in record.gates if g.blocks}


def test_a_failing_gate_marks_its_groups_degraded_alerts_once_and_a_passing_interval_clears_them(
        redis_server, tmp_path, lake, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    receiver = Receiver()
    client = redis_client.Redis(redis_server.host, redis_server.port, db=REDIS_DB)
    client.delete(degraded_key("gk_project"))
    ops = operations(tmp_path, lake, receiver.url)
    catalog = Catalog(READINGS, (), (SENSOR, SITE), tuple(g for g in GATES if not isinstance(g, Drift)))
    keeper = Gatekeeper(catalog=catalog, pipeline="stream:readings", project="gk_project", lake=lake,
                        redis=f"{redis_server.host}:{redis_server.port},db={REDIS_DB}", operations=ops)
    good = [reading(i, f"s{i % 3}", 1 + i % 3, T0 + i * 1_000, 20.0 + i % 5, 50.0) for i in range(40)]
    try:
        first = interval(keeper, good)
        assert failing(first) == set() and degraded_groups(client, "gk_project") == {}

        hot = [dict(r, temp_max_1h=75.0) if i % 4 == 0 else r for i, r in enumerate(good)]  # 10 of 40 outside
        second = interval(keeper, hot)
        assert "range(temp_max_1h)" in failing(second)
        marks = degraded_groups(client, "gk_project")
        assert set(marks) == {"sensor"}  # the site group is not guarded by that gate
        assert marks["sensor"]["gates"] == ["range(temp_max_1h)"] and marks["sensor"]["run_id"] == second.run_id
        assert "10 of 40 temp_max_1h values (25.0%)" in marks["sensor"]["why"]
        since = marks["sensor"]["since"]

        third = interval(keeper, hot)  # still failing: still marked since the first failure, alerted once
        assert degraded_groups(client, "gk_project")["sensor"]["since"] == since
        alerts = [json.loads(line) for line in ops.alerts.file.read_text().splitlines()]
        degraded = [a for a in alerts if a.get("kind") == "stream_degraded" and a["subject"] == "range(temp_max_1h)"]
        assert [a["suppressed"] for a in degraded] == [False, True]  # in the file both times, the second a repeat
        posted = [p["body"] for p in receiver.posts if "range(temp_max_1h)" in json.dumps(p["body"])]
        assert len(posted) == 1, posted  # one webhook post for the ongoing failure
        first_alert = degraded[0]
        assert first_alert["owner"] == "sensors-oncall" and first_alert["pipeline"] == "stream:readings"
        assert "feature group(s) sensor marked degraded" in first_alert["summary"]
        assert first_alert["runbook"].endswith("#a-stream-is-degraded")
        assert any("stream_degraded" in line for line in second.alerts)

        orphan = [dict(r, site=7) if i < 30 else r for i, r in enumerate(good)]  # 30 of 40 not reference sites
        fourth = interval(keeper, orphan)
        assert failing(fourth) == {"references(site)"}
        assert set(degraded_groups(client, "gk_project")) == {"site"}  # sensor passed again: cleared

        fifth = interval(keeper, good)
        assert failing(fifth) == set() and degraded_groups(client, "gk_project") == {}
        records = [json.loads(line) for line in ops.alerts.file.read_text().splitlines()]
        assert records[-1]["type"] == "resolved" and records[-1]["pipeline"] == "stream:readings"
        assert interval(keeper, []).gates == []  # an empty interval judges nothing
    finally:
        keeper.close()
        receiver.stop()
        client.close()
    assert third.run_id != second.run_id


def test_a_failing_warn_gate_alerts_a_distribution_anomaly_and_marks_nothing(redis_server, tmp_path, lake):
    client = redis_client.Redis(redis_server.host, redis_server.port, db=REDIS_DB)
    client.delete(degraded_key("gk_drift"))
    ops = operations(tmp_path, lake)
    keeper = Gatekeeper(catalog=CATALOG, pipeline="stream:readings", project="gk_drift", lake=lake,
                        redis=f"{redis_server.host}:{redis_server.port},db={REDIS_DB}", operations=ops)
    try:
        usual = [reading(i, "s1", 1, T0 + i, 20.0 + i % 5, 50.0) for i in range(50)]
        first = interval(keeper, usual)  # the reference: its deciles are 20, 20, 21, 21, ..., 24
        assert [g.verdict for g in first.gates if g.kind == "drift"] == ["pass"]
        shifted = interval(keeper, [dict(r, temp_max_1h=r["temp_max_1h"] + 30) for r in usual])
        drift = next(g for g in shifted.gates if g.kind == "drift")
        assert (drift.verdict, drift.figure) == ("warn", 1.0)  # every value above the last edge: KS 1
        assert degraded_groups(client, "gk_drift") == {}
        alerts = [json.loads(line) for line in ops.alerts.file.read_text().splitlines()]
        assert [a["kind"] for a in alerts] == ["distribution_anomaly"] and "written anyway" in alerts[0]["summary"]
    finally:
        keeper.close()
        client.close()


def test_a_missing_reference_table_is_one_clear_error_before_the_job_starts(tmp_path):
    with pytest.raises(UserError, match=r"gate references\(site\): no Delta table at .*reference/sites"):
        Gatekeeper(catalog=CATALOG, pipeline="stream:readings", project="gk_project", lake=tmp_path / "empty")


def test_a_real_stream_job_whose_output_breaks_a_gate_marks_the_group_degraded_and_alerts(
        flink_table_env, redis_server, tmp_path, monkeypatch):
    """The rides catalog with a blocking range gate on a feature; every ride's driver carries 40 riders, so
    every feature row's driver_max_riders_2h (the most riders of the driver's rides in two hours) is 40,
    outside [1, 6]: every judged interval fails it with a share of 1."""
    from stream_jobs.job import StreamJobSpec, run

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    gate = Range(column="driver_max_riders_2h", min=1, max=6)
    catalog = Catalog(rides.RIDES, rides.CATALOG.row_functions, rides.CATALOG.groups,
                      tuple(g for g in rides.GATES if not isinstance(g, Drift)) + (gate,))
    records = [{"ride_id": f"r{i}", "driver": "Zoë" if i % 2 else "d-7", "city": "Zürich", "vehicle": i % 3,
                "fare": 12.5, "km": 3.0, "riders": 40, "surge": False, "promo": "P", "tip": 1.0,
                "ts": T0 + i * 1_000} for i in range(30)]
    events, lake = tmp_path / "rides.jsonl", tmp_path / "lake"
    write_events(records, events, catalog)
    receiver = Receiver()
    doc = {"pipelines": {"rides": {"owner": "rides-oncall"}}, "alerts": {"file": "alerts.jsonl",
                                                                         "webhook": receiver.url}}
    ops = parse_operations(tmp_path / "tandem.yaml", doc, lake)
    client = redis_client.Redis(redis_server.host, redis_server.port, db=REDIS_DB)
    client.delete(degraded_key(TEST_PROJECT))
    try:
        run(flink_table_env, StreamJobSpec(
            f"file:{events}", tmp_path / "out", 5_000, catalog=catalog, project=TEST_PROJECT, lake=lake,
            checkpoint_interval_ms=500, roll_interval_ms=500, operations=ops,
            redis=f"{redis_server.host}:{redis_server.port},db={REDIS_DB}"))
        marks = degraded_groups(client, TEST_PROJECT)
    finally:
        receiver.stop()
        client.close()

    rows = RunLog(lake).read("stream:rides")
    judged = [g for r in rows for g in r.gates if g.gate == gate.name]
    assert judged and all((g.verdict, g.figure) == ("fail", 1.0) for g in judged)
    assert sum(r.rows_out for r in rows) == 30  # one feature row per ride: the stream cannot hold them back
    assert set(marks) == {"driver"} and marks["driver"]["gates"] == [gate.name]  # the feature's own group
    assert marks["driver"]["pipeline"] == "stream:rides"
    alerts = [json.loads(line) for line in ops.alerts.file.read_text().splitlines()]
    degraded = [a for a in alerts if a.get("kind") == "stream_degraded"]
    assert degraded and {a["subject"] for a in degraded} == {gate.name}
    assert degraded[0]["owner"] == "rides-oncall" and "driver marked degraded" in degraded[0]["summary"]
    assert [p for p in receiver.posts if gate.name in json.dumps(p["body"])]
