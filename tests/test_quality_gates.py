"""Quality gates: declared in the catalog, judged by one rule, and blocking for real on Spark.

A "payments" catalog unlike the example (other id, key, time and field names;
an optional field; a critical feature) is ingested, backfilled and
materialised into a real Redis. Each gate kind blocks a crafted bad batch
(nothing written: tables at the same Delta version, Redis unchanged; a run
log row that says why; an alert in the project's alerts file) and passes a
good one. The expected verdicts and figures are worked out by hand from the
rules in ``runtime/gates.py``'s docstring.
"""

from __future__ import annotations

import json
import math
import random
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runtime.errors import UserError
from runtime.gates import Figures, judge, ks, psi
from runtime.run_log import GateResult, RunLog, RunRecord
from transforms import (Agg, Catalog, Completeness, Drift, EventSchema, Feature, FeatureGroup, Field, FieldType,
                        Freshness, Range, References, Volume, row_function)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
DAY_MS = 86_400_000


def payments(*gates, critical=False) -> Catalog:
    schema = EventSchema(name="payments", version=1, fields=(
        Field("pay_id", FieldType.STRING), Field("account", FieldType.STRING), Field("shop", FieldType.STRING),
        Field("cents", FieldType.INT64), Field("channel", FieldType.STRING, required=False),
        Field("paid_at", FieldType.TIMESTAMP_MS)), event_id="pay_id", entity_keys=("account",), event_time="paid_at")
    return Catalog(schema, (), (FeatureGroup("account", "account", (
        Feature("acct_pays_1h", Agg.COUNT, "1h"),
        Feature("acct_cents_sum_1h", Agg.SUM, "1h", of="cents"),
        Feature("acct_last_channel_1d", Agg.LAST, "1d", of="channel", critical=critical),
    )),), gates)


# --- declaration: refused where the catalog is built ---------------------------------------------

@pytest.mark.parametrize("gate, message", [
    (Completeness(column="nope"), "gate completeness(nope): unknown column 'nope'"),
    (Completeness(column="channel", min=1.5), "min must be a share between 0 and 1 (got 1.5)"),
    (Range(column="channel", max=3), "range needs a numeric column; 'channel' is string"),
    (Range(column="cents"), "give min, max or both"),
    (Range(column="cents", min=5, max=1), "min 5 is above max 1"),
    (Drift(column="cents", method="chi2"), "method 'chi2' is not one of psi, ks"),
    (Drift(column="cents", threshold=-1), "threshold must be a number above 0"),
    (Volume(max_drop=0), "max_drop must be a share between 0 and 1"),
    (Freshness(max_age="soon"), "invalid duration 'soon'"),
    (References(column="shop", table="../other"), "must be a path inside the lake"),
    (References(column="acct_pays_1h", table="ref/x"), "references checks a field of the events"),
    (Completeness(column="channel", action="page"), "action 'page' is not 'block' or 'warn'"),
])
def test_a_gate_the_catalog_cannot_hold_is_refused_naming_it(gate, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        payments(gate)


def test_a_gate_on_a_row_function_is_refused_since_no_table_stores_it():
    @row_function(FieldType.INT64)
    def double_cents(cents):
        return cents * 2

    double = double_cents
    base = payments()
    with pytest.raises(ValueError, match="'double_cents' is a row function, which no table stores"):
        Catalog(base.schema, (double,), base.groups, (Range(column="double_cents", max=10),))


def test_defaults_gate_every_field_and_feature_and_a_declared_gate_replaces_its_default():
    gates = {g.name: g for g in payments(Completeness(column="channel", min=0.5), critical=True).quality_gates}
    assert gates["completeness(channel)"].min == 0.5
    assert gates["completeness(cents)"].min == 0.95 and gates["completeness(acct_pays_1h)"].min == 0.95
    assert gates["completeness(acct_last_channel_1d)"].min == 0.99  # critical
    assert "volume" in gates and len([g for g in gates if g.startswith("completeness")]) == 9


# --- judging: each rule on hand-made figures -------------------------------------------------------

def ok_run(rows, dates, **kw):
    return RunRecord("ingest:payments", "schedule", NOW - timedelta(days=1), NOW - timedelta(days=1),
                     rows_out=rows, partitions=dates, **kw)


def verdicts(gates, fig, history=(), sla_ms=3_600_000):
    return {r.gate: (r.verdict, r.figure, r.threshold) for r in judge(tuple(gates), fig, list(history), NOW, sla_ms)}


def test_completeness_range_and_references_by_their_rules():
    fig = Figures(rows=200, dates=["2026-12-04"], non_null={"channel": 189, "cents": 180},
                  outside={"range(cents)": 9}, missing_refs={"references(shop)": 0})
    got = verdicts([Completeness(column="channel"), Completeness(column="cents", min=0.9),
                    Range(column="cents", max=100, max_outside=0.05), References(column="shop", table="ref/shops")], fig)
    assert got["completeness(channel)"] == ("fail", 0.945, 0.95)  # 189 / 200 < 95 %
    assert got["completeness(cents)"] == ("pass", 0.9, 0.9)  # exactly the minimum passes
    assert got["range(cents)"] == ("pass", 0.05, 0.05)  # 9 of the 180 non-null values: exactly 5 %
    assert got["references(shop)"] == ("pass", 0.0, 0.0)


def test_a_warn_gate_that_fails_says_warn():
    fig = Figures(rows=10, dates=["2026-12-04"], non_null={"channel": 1})
    assert verdicts([Completeness(column="channel", action="warn")], fig)["completeness(channel)"][0] == "warn"


def test_freshness_against_max_age_or_the_pipeline_sla():
    fig = Figures(rows=1, newest_event=NOW - timedelta(minutes=90))
    assert verdicts([Freshness(max_age="2h")], fig)["freshness"] == ("pass", 5400.0, 7200.0)
    assert verdicts([Freshness()], fig, sla_ms=3_600_000)["freshness"] == ("fail", 5400.0, 3600.0)


def volume_run(figure, status="success"):
    """An earlier run whose volume gate measured ``figure`` rows per complete partition (None: not judged)."""
    gate = GateResult("volume", "volume", None, figure, None, "pass", "block", "")
    return RunRecord("ingest:payments", "schedule", NOW - timedelta(days=1), NOW - timedelta(days=1),
                     status=status, gates=[gate])


def test_volume_against_the_least_of_the_recent_successful_runs():
    history = [volume_run(150.0), volume_run(100.0), volume_run(None),  # not judged: no figure to compare with
               volume_run(1.0, status="failed")]  # a failed run does not count
    day, today = date(2026, 12, 2), NOW.date()

    def fig(**partitions):
        return Figures(rows=sum(partitions.values()), dates=list(partitions), partition_rows=partitions)

    assert verdicts([Volume()], fig(**{str(day): 49}), history)["volume"] == ("fail", 49.0, 50.0)  # .5 x 100
    two = {str(day): 40, str(day - timedelta(days=1)): 60}
    assert verdicts([Volume()], fig(**two), history)["volume"] == ("pass", 50.0, 50.0)  # 50 per partition
    assert verdicts([Volume(runs=1)], fig(**{str(day): 60}), history)["volume"] == ("pass", 60.0, 50.0)
    assert verdicts([Volume()], fig(**{str(day): 1}))["volume"][0] == "pass"  # nothing to compare yet
    # today's partition is still filling: not judged, and not averaged in with complete ones
    assert verdicts([Volume()], fig(**{str(today): 1}), history)["volume"] == ("pass", None, None)
    assert verdicts([Volume()], fig(**{str(today): 1, str(day): 90}), history)["volume"] == ("pass", 90.0, 50.0)


def test_drift_psi_and_ks_against_the_recorded_reference():
    edges = [10.0, 20.0, 30.0]
    ref = ok_run(100, ["a"], distributions={"cents": {"edges": edges, "counts": [25, 25, 25, 25]}})
    fig = Figures(rows=100, dates=["b"], non_null={"cents": 100}, histograms={"cents": [10, 20, 30, 40]},
                  edges={"cents": edges})
    # PSI = sum (p - q) ln(p / q), p = .1 .2 .3 .4, q = .25 each; KS = max |cumsum p - cumsum q| = .15 (at bin 1)
    want_psi = sum((p - 0.25) * math.log(p / 0.25) for p in (0.1, 0.2, 0.3, 0.4))
    assert math.isclose(psi([0.1, 0.2, 0.3, 0.4], [0.25] * 4), want_psi) and math.isclose(want_psi, 0.2282, abs_tol=1e-4)
    assert math.isclose(ks([0.1, 0.2, 0.3, 0.4], [0.25] * 4), 0.2)  # cumulative .1/.25 .3/.5 .6/.75: gaps .15 .2 .15
    got = verdicts([Drift(column="cents"), Drift(column="cents", method="ks", threshold=0.25)][:1], fig, [ref])
    assert got["drift(cents)"][0] == "fail" and math.isclose(got["drift(cents)"][1], want_psi)
    got = verdicts([Drift(column="cents", method="ks", threshold=0.25)], fig, [ref])
    assert got["drift(cents)"][0] == "pass" and math.isclose(got["drift(cents)"][1], 0.2)
    first = verdicts([Drift(column="cents")], fig, [])
    assert first["drift(cents)"][0] == "pass"  # the first run becomes the reference


# --- on Spark: each gate kind blocks a bad batch and passes a good one -----------------------------

def write_batch(path, n, *, start_ms, seed=0, channel_null=0.0, cents=lambda r: r.randint(100, 900),
                shops=("s1", "s2"), tag="b"):
    r = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n):
            rec = {"pay_id": f"{tag}-{seed}-{i}", "account": f"acct-{i % 7}", "shop": r.choice(shops),
                   "cents": cents(r), "paid_at": start_ms + i * 1000}
            if r.random() >= channel_null:
                rec["channel"] = r.choice(["web", "app"])
            fh.write(json.dumps(rec) + "\n")
    return path


@pytest.fixture()
def project_ops(tmp_path):
    """A project's operations (owner, alerts file) for a lake in tmp_path."""
    from runtime.operations import parse_operations

    doc = {"pipelines": {"payments": {"owner": "payments-oncall"}}, "alerts": {"file": "alerts.jsonl"}}
    return parse_operations(tmp_path / "tandem.yaml", doc, tmp_path / "lake")


def delta_version(spark, path):
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    return DeltaTable.forPath(spark, path).history(1).first()["version"]


def events_versions(spark, lake, catalog):
    t = lake.tables(catalog)
    return [delta_version(spark, p) for p in (t.events, t.dead_letters, t.ingest_log)]


def assert_blocked(run_log_path, ops, gate_name, pipeline="ingest:payments"):
    last = RunLog(run_log_path).read(pipeline=pipeline)[-1]
    assert last.status == "blocked" and last.error is None
    failing = [g for g in last.gates if g.verdict == "fail"]
    assert [g.gate for g in failing] == [gate_name], failing
    alerts = [json.loads(line) for line in ops.alerts.file.read_text().splitlines()]
    blocked = [a for a in alerts if a.get("kind") == "gate_blocked" and a.get("subject") == gate_name]
    assert blocked and blocked[-1]["owner"] == "payments-oncall" and "RUNBOOK.md#" in blocked[-1]["runbook"]
    text = (ops.metrics.textfile / f"{pipeline.replace(':', '_')}.prom").read_text()
    samples = {(s.name, s.labels.get("gate"), s.labels.get("status")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("tandem_gate_verdict", gate_name, None)] == 2  # fail
    assert samples[("tandem_run_status", None, "blocked")] == 1 and samples[("tandem_run_status", None, "success")] == 0
    return failing[0]


def recent_ms(minutes_ago):
    return int((time.time() - minutes_ago * 60) * 1000)


INGEST_CASES = {
    # gate, a good batch, a bad batch (kwargs of write_batch)
    "completeness": (Completeness(column="channel", min=0.9), dict(channel_null=0.02), dict(channel_null=0.4)),
    "range": (Range(column="cents", min=0, max=1000), {}, dict(cents=lambda r: r.choice([500, 5000]))),
    "references": (References(column="shop", table="reference/shops"), {}, dict(shops=("s1", "s-unknown"))),
    "freshness": (Freshness(max_age="1h"), dict(fresh=True), {}),
}


@pytest.mark.parametrize("kind", list(INGEST_CASES))
def test_an_ingest_gate_blocks_a_bad_batch_and_passes_a_good_one(spark, tmp_path, project_ops, kind):
    from batch_jobs.ingest import ingest
    from runtime.lake import Lake
    from runtime.runs import GateBlocked

    gate, good, bad = INGEST_CASES[kind]
    catalog = payments(gate)
    lake = Lake.at(tmp_path / "lake")
    if kind == "references":
        spark.createDataFrame([("s1",), ("s2",)], "shop string").write.format("delta").save(
            str(lake.root / "reference" / "shops"))
    fresh = good.pop("fresh", False)
    good_file = write_batch(tmp_path / "good.jsonl", 200, start_ms=recent_ms(30) if fresh else 1_714_521_600_000,
                            seed=1, **good)
    ingest(spark, good_file, lake, catalog, operations=project_ops)
    before = events_versions(spark, lake, catalog)
    assert before[0] is not None
    bad_file = write_batch(tmp_path / "bad.jsonl", 200, start_ms=1_714_521_600_000 + DAY_MS, seed=2, tag="x", **bad)
    with pytest.raises(GateBlocked, match=f"quality gate {gate.name.replace('(', '.').replace(')', '.')} blocked"):
        ingest(spark, bad_file, lake, catalog, operations=project_ops)
    assert events_versions(spark, lake, catalog) == before  # nothing written: events, dead letters, ingest log
    assert_blocked(lake.root, project_ops, gate.name)
    assert RunLog(lake.root).read()[0].status == "success"


def test_volume_and_drift_block_against_the_run_history(spark, tmp_path, project_ops):
    from batch_jobs.ingest import ingest
    from runtime.lake import Lake
    from runtime.runs import GateBlocked

    catalog = payments(Drift(column="cents", threshold=0.5))  # sampling noise of 100-300 rows stays far below
    lake = Lake.at(tmp_path / "lake")
    day = 1_714_521_600_000
    for i in range(2):  # two days of ~normal cents around 500: the reference
        ingest(spark, write_batch(tmp_path / f"ok{i}.jsonl", 300, start_ms=day + i * DAY_MS, seed=10 + i,
                                  cents=lambda r: int(r.gauss(500, 50))), lake, catalog, operations=project_ops)
    runs = RunLog(lake.root).read()
    assert [r.status for r in runs] == ["success", "success"]
    assert runs[0].distributions["cents"]["edges"] == runs[1].distributions["cents"]["edges"]  # one reference
    versions = events_versions(spark, lake, catalog)
    with pytest.raises(GateBlocked, match="quality gate drift.cents. blocked"):  # the same volume, shifted values
        ingest(spark, write_batch(tmp_path / "shift.jsonl", 300, start_ms=day + 2 * DAY_MS, seed=20,
                                  cents=lambda r: int(r.gauss(800, 50))), lake, catalog, operations=project_ops)
    drift = assert_blocked(lake.root, project_ops, "drift(cents)")
    assert drift.figure > 1.0  # most values beyond the reference's top decile
    with pytest.raises(GateBlocked, match="quality gate volume blocked"):  # the same values, a third of the rows
        ingest(spark, write_batch(tmp_path / "thin.jsonl", 100, start_ms=day + 3 * DAY_MS, seed=30,
                                  cents=lambda r: int(r.gauss(500, 50))), lake, catalog, operations=project_ops)
    volume = assert_blocked(lake.root, project_ops, "volume")
    assert (volume.figure, volume.threshold) == (100.0, 150.0)  # (1 - 0.5) x 300 rows in the one partition
    assert events_versions(spark, lake, catalog) == versions


def test_volume_judges_a_late_trickle_by_its_days_total_and_a_run_of_today_not_at_all(spark, tmp_path, project_ops):
    """A file of one late event into a complete day: the day's partition holds 301 rows after it, not 1, so
    the default volume gate lets it through; events of today are not judged (the day is still filling)."""
    from batch_jobs.ingest import ingest
    from runtime.lake import Lake

    catalog, lake = payments(), Lake.at(tmp_path / "lake")
    day = 1_714_521_600_000
    for i in range(2):
        ingest(spark, write_batch(tmp_path / f"day{i}.jsonl", 300, start_ms=day + i * DAY_MS, seed=40 + i), lake,
               catalog, operations=project_ops)
    ingest(spark, write_batch(tmp_path / "late.jsonl", 1, start_ms=day + 3_600_000, seed=50, tag="late"), lake,
           catalog, operations=project_ops)
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    ingest(spark, write_batch(tmp_path / "today.jsonl", 2, start_ms=now_ms, seed=51, tag="now"), lake, catalog,
           operations=project_ops)
    runs = RunLog(lake.root).read()
    assert [r.status for r in runs] == ["success"] * 4
    volume = [next(g for g in r.gates if g.gate == "volume") for r in runs]
    assert [v.figure for v in volume] == [300.0, 300.0, 301.0, None]  # the late day's total; today: not judged
    assert volume[2].threshold == 150.0 and "nothing to judge" in volume[3].why


def test_a_feature_gate_blocks_the_backfill_and_the_materialisation(spark, redis_server, tmp_path, project_ops):
    """A critical feature (99 %) blocks the backfill: the feature table keeps its version. Materialising the
    table as it is, with a stricter gate on a feature, leaves Redis exactly as it was."""
    from batch_jobs.backfill import backfill
    from batch_jobs.ingest import ingest
    from feature_repo.materialize import materialize
    from runtime.lake import Lake
    from runtime.runs import GateBlocked

    lake = Lake.at(tmp_path / "lake")
    address = f"{redis_server.host}:{redis_server.port},db=9"
    day = date(2024, 5, 1)
    lenient = payments(Completeness(column="channel", min=0.0), critical=True)
    ingest(spark, write_batch(tmp_path / "a.jsonl", 210, start_ms=1_714_521_600_000, seed=3), lake, lenient,
           operations=project_ops)
    backfill(spark, lake, day, day, lenient, operations=project_ops)
    table = lake.tables(lenient).features("account")
    version = delta_version(spark, table)
    # Three days on (beyond the 1d window): every 'channel' of accounts acct-0..acct-3 missing, so their
    # last channel is null: 4 x 30 of the 210 rows
    later = day + timedelta(days=3)
    path = tmp_path / "b.jsonl"
    write_batch(path, 210, start_ms=1_714_521_600_000 + 3 * DAY_MS, seed=4, tag="d2")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in rec.items() if not (k == "channel" and rec["account"] < "acct-4")})
                            + "\n" for rec in lines))
    ingest(spark, path, lake, lenient, operations=project_ops)
    with pytest.raises(GateBlocked, match=r"quality gate completeness.acct_last_channel_1d. blocked"):
        backfill(spark, lake, later, later, lenient, operations=project_ops)
    failing = assert_blocked(lake.root, project_ops, "completeness(acct_last_channel_1d)", "backfill:payments")
    assert failing.threshold == 0.99 and math.isclose(failing.figure, 90 / 210)  # acct-4..6: 3 of 7 accounts
    assert delta_version(spark, table) == version

    import redis as redis_client
    client = redis_client.Redis(redis_server.host, redis_server.port, db=9)
    client.flushdb()
    client.set("untouched", "1")
    strict = payments(Completeness(column="acct_cents_sum_1h", min=1.0), Range(column="acct_cents_sum_1h", max=1000))
    with pytest.raises(GateBlocked, match=r"quality gate range.acct_cents_sum_1h. blocked"):
        materialize(spark, lake, [strict], address, "gates_tests", operations=project_ops)
    assert client.keys("*") == [b"untouched"]
    assert_blocked(lake.root, project_ops, "range(acct_cents_sum_1h)", "materialize:payments")
    done = materialize(spark, lake, [lenient], address, "gates_tests", operations=project_ops)
    assert [m.written for m in done] == [7] and client.dbsize() == 8
    assert RunLog(lake.root).read(pipeline="materialize:payments")[-1].status == "success"


def test_a_gate_on_a_reference_table_that_is_not_there_is_one_line(spark, tmp_path):
    from batch_jobs.ingest import ingest
    from runtime.lake import Lake

    catalog = payments(References(column="shop", table="reference/none"))
    with pytest.raises(UserError, match=r"gate references\(shop\): no Delta table at .*reference/none"):
        ingest(spark, write_batch(tmp_path / "a.jsonl", 5, start_ms=1_714_521_600_000), Lake.at(tmp_path / "lake"),
               catalog)
    failed = RunLog(tmp_path / "lake").read()
    assert [r.status for r in failed] == ["failed"] and "reference/none" in failed[0].error


def test_a_down_webhook_never_hides_a_blocked_run(spark, tmp_path):
    """The webhook's port is closed: the run is still blocked and recorded, the alert is in the file, and the
    row says the webhook did not get it, without the URL's secret path."""
    from batch_jobs.ingest import ingest
    from local_services import free_port
    from runtime.lake import Lake
    from runtime.operations import parse_operations
    from runtime.runs import GateBlocked

    doc = {"alerts": {"file": "alerts.jsonl", "webhook": f"http://127.0.0.1:{free_port()}/hooks/T0/SECRET-TOKEN"}}
    ops = parse_operations(tmp_path / "tandem.yaml", doc, tmp_path / "lake")
    lake = Lake.at(tmp_path / "lake")
    with pytest.raises(GateBlocked):
        ingest(spark, write_batch(tmp_path / "a.jsonl", 50, start_ms=1_714_521_600_000, channel_null=0.5),
               lake, payments(), operations=ops)
    run = RunLog(lake.root).read()[-1]
    assert run.status == "blocked" and run.gates and any(g.gate == "completeness(channel)" for g in run.gates)
    assert any("webhook not delivered" in a for a in run.alerts), run.alerts
    assert "SECRET-TOKEN" not in " ".join(run.alerts) + ops.alerts.file.read_text()
    assert json.loads(ops.alerts.file.read_text().splitlines()[-1])["kind"] == "gate_blocked"
