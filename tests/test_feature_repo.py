"""feature_repo/ end to end: real Spark, Delta, the feast CLI and a real Redis.

The feature tables are built by the real batch path (ingest, backfill); every
expected value below is computed here from the reference evaluator's rows
(latest event at or before t), never by the code under test. ``feast apply``
and ``feast materialize`` run once per module through the real CLI, each in a
fresh JVM (~15 s and ~30 s); materialize runs while the offline tests do.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from feature_repo import store as fs
from feature_repo.definitions import service_name
from feature_repo.repo import write_repo
from runtime.lake import Lake
from examples.transactions.features.generate import StreamSpec, generate
from tandem.reference import evaluate
from tests.factories import HOUR, MIN, T0, example_project, tx
from transforms import FieldType
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

pytestmark = pytest.mark.filterwarnings("ignore:The spark .* experimental:RuntimeWarning")

GROUPS = TRANSACTIONS.groups
DAY = 24 * HOUR
LATE = 30 * DAY  # "far after the last event"
FEAST = str(Path(sys.executable).with_name("feast"))


def adversarial_events():
    """Users "1" and "12" (the shape of Feast's CONCAT(key, ts) collision) at the same instants,
    peers in one millisecond, and a lone old event."""
    t = T0 + 22 * HOUR + 123  # inside the generated stream, odd milliseconds
    return [
        tx("adv-1", user="1", t=t, amount=10.0, merchant="m-adv"),
        tx("adv-2", user="12", t=t, amount=99.5, merchant="m-adv"),
        tx("adv-3", user="1", t=t + MIN, amount=1.25, merchant="m-adv"),  # peers: same user, same ms
        tx("adv-4", user="1", t=t + MIN, amount=2.5, merchant="m-peer"),
        tx("adv-5", user="12", t=t + MIN, amount=0.0, merchant="m-adv"),
        tx("adv-6", user="old", t=T0 - 20 * DAY, amount=7.0, merchant="m-old"),
    ]


def write_feature_tables(spark, records, lake):
    """The real batch path: ingest the records, backfill every date they cover."""
    from datetime import datetime, timezone

    from batch_jobs.backfill import backfill
    from batch_jobs.ingest import ingest
    from runtime.events_io import write_events

    path = Path(lake) / "events.jsonl"
    write_events(records, path, TRANSACTIONS)
    ingest(spark, path, Lake.at(lake), TRANSACTIONS)
    days = [datetime.fromtimestamp(r["event_time"] / 1000, timezone.utc).date() for r in evaluate(records, TRANSACTIONS).rows]
    backfill(spark, Lake.at(lake), min(days), max(days), TRANSACTIONS)


class FeastCli:
    """One ``feast`` CLI call in the project's generated repository, as a user runs it (env vars, cwd),
    in the background."""

    def __init__(self, env, *args, log_dir):
        self.args, self.began = args, time.monotonic()
        self.log = Path(log_dir) / f"feast-{args[0]}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([FEAST, *args], cwd=env["TANDEM_PROJECT"] + "/feast_repo",
                                         env={**os.environ, **env},
                                         stdout=log, stderr=subprocess.STDOUT)

    def wait(self, timeout=300):
        code = self.proc.wait(timeout)
        assert code == 0, f"feast {' '.join(self.args)} exited {code}:\n{self.log.read_text()[-4000:]}"
        print(f"feast {self.args[0]}: {time.monotonic() - self.began:.1f}s")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def latest_at(rows, group):
    """key values (a tuple) -> (sorted event times, rows): the oracle of "latest event at or before t"."""
    by_key = {}
    for r in sorted(rows, key=lambda r: r["event_time"]):
        times, rs = by_key.setdefault(tuple(r[k] for k in group.key), ([], []))
        times.append(r["event_time"])
        rs.append(r)
    return by_key


def expected_row(index, key, t_ms):
    times, rs = index.get(key, ([], []))
    i = bisect.bisect_right(times, t_ms)
    return rs[i - 1] if i else None


@pytest.fixture(scope="module")
def world(spark, redis_server, tmp_path_factory):
    """Reference rows -> Delta lake -> feast apply (CLI). Restores the Spark setting Feast flips."""
    records = generate(StreamSpec(users=25, merchants=6, rate_per_s=0.04, duration="6h",
                                  start="2024-05-01T21:00:00Z", ties=0.1, seed=7)) + adversarial_events()
    rows = evaluate(records, TRANSACTIONS).rows
    for g in GROUPS:  # the layout's promise, checked on the input: peers are equal
        seen = {}
        for r in rows:
            vals = tuple(r[f.name] for f in g.features)
            assert seen.setdefault((*(r[k] for k in g.key), r["event_time"]), vals) == vals
    lake = tmp_path_factory.mktemp("lake")
    write_feature_tables(spark, records, lake)
    project = example_project(tmp_path_factory.mktemp("project"), lake=lake)
    write_repo(project)  # what `tandem init` and `tandem feast` write
    env = {"TANDEM_PROJECT": str(project.root), **fs.feast_env(lake, f"{redis_server.host}:{redis_server.port}")}
    FeastCli(env, "apply", log_dir=lake).wait()
    # Materialize (a fresh JVM, ~30 s) runs while the offline tests use this process's Spark.
    times = [r["event_time"] for r in rows]
    day = [pd.Timestamp(t, unit="ms").floor("D") for t in (min(times), max(times) + DAY)]
    materialize = FeastCli(env, "materialize", *(d.strftime("%Y-%m-%dT%H:%M:%S") for d in day), log_dir=lake)
    with warnings.catch_warnings():  # Feast's "experimental" notice; pytestmark misses fixtures
        warnings.simplefilter("ignore", RuntimeWarning)
        store = fs.open_store(project.name, lake, env["TANDEM_REDIS"])
    try:
        yield {"rows": rows, "lake": lake, "env": env, "materialize": materialize, "store": store}
    finally:
        materialize.kill()
        spark.conf.unset("spark.sql.parser.quotedRegexColumnNames")  # Feast sets it on our shared session


def entity_rows(rows):
    """Every event time (included), 1 ms before it, 1 ms before each user's first event, far after."""
    out = []
    for r in rows:
        out += [(r["user_id"], r["merchant_id"], r["event_time"]), (r["user_id"], r["merchant_id"], r["event_time"] - 1)]
    first, last = {}, {}
    for r in rows:
        first[r["user_id"]] = min(first.get(r["user_id"], r["event_time"]), r["event_time"])
        last[r["user_id"]] = max(last.get(r["user_id"], r["event_time"]), r["event_time"])
    out += [(u, "m-none", t - 1) for u, t in first.items()] + [(u, "m-adv", t + LATE) for u, t in last.items()]
    return out


def test_registry_is_generated_from_the_catalog(world):
    store = world["store"]
    service = store.get_feature_service(service_name(TRANSACTIONS))
    assert [p.name for p in service.feature_view_projections] == [g.entity for g in GROUPS]
    for g in GROUPS:
        view = store.get_feature_view(g.entity)
        assert view.join_keys == list(g.key) and view.online and view.ttl.total_seconds() == 0
        assert [store.get_entity(k).join_key for k in g.key] == list(g.key)
        assert [(f.name, str(f.dtype)) for f in view.features] == [
            (f.name, {FieldType.INT64: "Int64", FieldType.FLOAT64: "Float64"}[TRANSACTIONS.feature_dtype(f)])
            for f in g.features]
        assert view.batch_source.path == Lake.at(world["lake"]).tables(TRANSACTIONS).features(g.entity)


def test_training_data_is_point_in_time_correct(world):
    rows = world["rows"]
    ents = entity_rows(rows)
    entity_df = pd.DataFrame(ents, columns=["user_id", "merchant_id", "t"])
    entity_df["event_timestamp"] = pd.to_datetime(entity_df.pop("t"), unit="ms", utc=True)
    began = time.monotonic()
    got = fs.training_data(world["store"], entity_df, service_name(TRANSACTIONS))
    print(f"get_historical_features, {len(entity_df)} entity rows: {time.monotonic() - began:.1f}s")

    assert len(got) == len(entity_df)
    assert got[["user_id", "merchant_id"]].values.tolist() == entity_df[["user_id", "merchant_id"]].values.tolist()
    nulls = hits = 0
    for g in GROUPS:
        index = latest_at(rows, g)
        key_col = 0 if g.key == ("user_id",) else 1
        for i, e in enumerate(ents):
            want = expected_row(index, (e[key_col],), e[2])
            for f in g.features:
                value = got[f.name].iat[i]
                if want is None:
                    assert pd.isna(value), (g.entity, e, f.name, value)
                    nulls += 1
                else:
                    assert value == want[f.name], (g.entity, e, f.name, value, want[f.name])
                    hits += 1
    assert nulls and hits


def test_collision_shaped_keys_get_their_own_values(world):
    """Users "1" and "12" at the same instants: each gets its own row (and the guard lets them through)."""
    t = T0 + 22 * HOUR + 123
    entity_df = pd.DataFrame({"user_id": ["1", "12", "1", "12", "12"],
                              "merchant_id": ["m-adv"] * 5,
                              "event_timestamp": pd.to_datetime([t, t, t + MIN, t + MIN, t + LATE], unit="ms", utc=True)})
    got = fs.training_data(world["store"], entity_df, ["user:user_txn_count_1h", "user:user_amount_sum_1h"])
    assert got["user_txn_count_1h"].tolist() == [1, 1, 3, 2, 2]
    assert got["user_amount_sum_1h"].tolist() == [10.0, 99.5, 13.75, 99.5, 99.5]


def test_peers_repeat_feasts_entity_rows_but_not_training_datas(world):
    """Feast joins every feature row at the latest time, so user "1"'s two peers double its row."""
    t = T0 + 22 * HOUR + 123 + MIN
    entity_df = pd.DataFrame({"user_id": ["1", "12"], "event_timestamp": pd.to_datetime([t, t], unit="ms", utc=True)})
    refs = ["user:user_txn_count_1h"]
    raw = world["store"].get_historical_features(entity_df=entity_df.copy(), features=refs).to_df()
    assert sorted(raw["user_id"]) == ["1", "1", "12"]
    got = fs.training_data(world["store"], entity_df, refs)
    assert got["user_id"].tolist() == ["1", "12"] and got["user_txn_count_1h"].tolist() == [3, 2]
    assert got["event_timestamp"].equals(entity_df["event_timestamp"])


def test_materialize_then_online_serves_each_entitys_latest_row(world):
    rows, store = world["rows"], world["store"]
    world["materialize"].wait()  # `feast materialize <first event's day> <day after the last>`

    users = sorted({r["user_id"] for r in rows}) + ["nobody"]
    merchants = sorted({r["merchant_id"] for r in rows})
    pairs = [{"user_id": u, "merchant_id": merchants[i % len(merchants)]} for i, u in enumerate(users)]
    pairs += [{"user_id": users[0], "merchant_id": m} for m in merchants]
    got = fs.online_features(store, pairs, service_name(TRANSACTIONS))
    for g in GROUPS:
        index = latest_at(rows, g)
        for i, p in enumerate(pairs):
            want = expected_row(index, tuple(p[k] for k in g.key), float("inf"))
            for f in g.features:
                assert got[f.name][i] == (None if want is None else want[f.name]), (g.entity, p, f.name)


# --- the row-id guard, without Feast ---------------------------------------------------------

def test_guard_rejects_composite_keys_whose_concatenation_collides():
    ts = pd.to_datetime([T0, T0], unit="ms", utc=True)
    df = pd.DataFrame({"a": ["1", "12"], "b": ["23", "3"], "event_timestamp": ts})
    with pytest.raises(ValueError, match="same for different entity rows"):
        fs.check_row_ids(df, {"pair": ["a", "b"]})
    fs.check_row_ids(df, {"a_only": ["a"], "b_only": ["b"]})  # one key per view: distinct


def test_guard_rejects_a_non_utc_session():
    df = pd.DataFrame({"a": ["1"], "event_timestamp": pd.to_datetime([T0], unit="ms", utc=True)})
    with pytest.raises(ValueError, match="not UTC"):
        fs.check_row_ids(df, {"v": ["a"]}, session_time_zone="America/New_York")


def test_guard_mirrors_sparks_timestamp_text_and_why_utc_matters(spark):
    """The guard's ids are Feast's ids only if its timestamp text is Spark's CAST(ts AS STRING)."""
    ms = [T0, T0 + 1, T0 + 10, T0 + 100, T0 + 120, T0 + 123, T0 + 999, 0, 1_999_999_999_999]
    ts = pd.Series(pd.to_datetime(ms, unit="ms", utc=True))
    df = spark.createDataFrame([(m,) for m in ms], "m long").selectExpr("CAST(timestamp_millis(m) AS STRING) AS s")
    assert [r.s for r in df.collect()] == fs._spark_ts_text(ts).tolist()
    # In a zone with DST, two instants an hour apart print the same: same key -> same Feast row id.
    fold = [1730611800000, 1730615400000]  # 2024-11-03 05:30Z and 06:30Z = 01:30 EDT and 01:30 EST
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        text = [r.s for r in spark.createDataFrame([(m,) for m in fold], "m long")
                .selectExpr("CAST(timestamp_millis(m) AS STRING) AS s").collect()]
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    assert text == ["2024-11-03 01:30:00", "2024-11-03 01:30:00"]


def test_yaml_spark_conf_matches_tandems_spark_settings(tmp_path):
    """feature_store.yaml's Spark conf (for the CLI) must not drift from batch_jobs.spark_session."""
    from batch_jobs.spark_session import submit_conf

    conf = dict(fs.repo_config("p", tmp_path, "localhost:1").offline_store.spark_conf)
    want = submit_conf()
    assert conf.pop("spark.master") == "local[*]"
    assert conf.pop("spark.driver.extraJavaOptions") == "-Duser.timezone=UTC"
    for machine_specific in ("spark.sql.warehouse.dir", "spark.driver.extraJavaOptions"):  # scratch dirs
        want.pop(machine_specific)
    assert conf == want


# --- Feast definitions across catalogs ---------------------------------------------------------

def test_entities_are_shared_and_a_key_column_has_one_type_per_project(tmp_path):
    """Catalogs of one project share an entity per key column; two types for one column name is refused."""
    from feature_repo.definitions import feast_objects, key_entities
    from tests.catalogs.fleet import CATALOG as FLEET
    from transforms import Agg, Catalog, EventSchema, Feature, FeatureGroup, Field

    def catalog(name, driver_type):
        schema = EventSchema(name=name, version=1, fields=(
            Field("id", FieldType.STRING), Field("city", FieldType.STRING), Field("driver_id", driver_type),
            Field("t", FieldType.TIMESTAMP_MS)), event_id="id", entity_keys=("city", "driver_id"), event_time="t")
        return Catalog(schema, (), (FeatureGroup(f"{name}_g", ("driver_id", "city"),
                                                 (Feature(f"{name}_n", Agg.COUNT, "1h"),)),))

    objects = feast_objects([FLEET, catalog("shifts", FieldType.INT64)], tmp_path)
    assert sorted(o.name for o in objects if type(o).__name__ == "Entity") == ["city", "driver_id", "zone"]
    with pytest.raises(ValueError) as e:
        key_entities([FLEET, catalog("payroll", FieldType.STRING)])
    assert str(e.value) == ("key column 'driver_id' is int64 in catalog fleet but string in catalog payroll: "
                            "rename one, or give both one type")
