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
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
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


# --- Feast's row ids, and the batches that keep colliding ones apart --------------------------

def test_row_ids_are_keys_then_timestamp_with_no_separator():
    ts = pd.to_datetime([T0, T0, T0 + 1], unit="ms", utc=True)
    df = pd.DataFrame({"city": ["NY", "NY1", None], "driver_id": pd.array([112, 12, 5], dtype="Int64"),
                       "event_timestamp": ts})
    ids = fs.row_ids(df, ["city", "driver_id"])
    assert ids.tolist()[:2] == ["NY1122024-05-01 00:00:00"] * 2 and pd.isna(ids[2])  # a null key: no id
    assert fs.row_ids(df, ["driver_id"]).tolist() == ["1122024-05-01 00:00:00", "122024-05-01 00:00:00",
                                                       "52024-05-01 00:00:00.001"]
    with pytest.raises(ValueError, match="'driver_id' is float64: keys are strings or integers"):
        fs.row_ids(df.astype({"driver_id": "float64"}), ["driver_id"])


def test_batches_never_hold_two_entity_rows_with_one_id():
    """Random entity rows over keys that concatenate alike: every batch is collision-free in every view, every
    row is in exactly one batch, and equal rows stay together."""
    rng = random.Random(5)
    texts = ["1", "12", "2", "21", "121", None]
    for _ in range(40):
        n = rng.randrange(1, 40)
        df = pd.DataFrame({"a": [rng.choice(texts) for _ in range(n)], "b": [rng.choice(texts) for _ in range(n)],
                           "c": pd.array([rng.choice([1, 12, 2, 21, None]) for _ in range(n)], dtype="Int64"),
                           "event_timestamp": pd.to_datetime([T0 + rng.choice([0, 0, 1]) for _ in range(n)],
                                                             unit="ms", utc=True)})
        views = {"ab": ["a", "b"], "ca": ["c", "a"], "b": ["b"]}
        batches = fs.collision_free_batches(df, views)
        assert sorted(i for b in batches for i in b) == list(range(n))
        batch_of = {i: k for k, b in enumerate(batches) for i in b}
        rows = [tuple(None if pd.isna(v) else v for v in df.iloc[i]) for i in range(n)]
        for i in range(n):
            for j in range(n):
                if rows[i] == rows[j]:
                    assert batch_of[i] == batch_of[j]
        for view, keys in views.items():
            ids = fs.row_ids(df, keys)
            entity = [tuple(df[c].iat[i] for c in [*keys, "event_timestamp"]) for i in range(n)]
            for i in range(n):
                for j in range(n):
                    if pd.notna(ids[i]) and ids[i] == ids[j] and entity[i] != entity[j]:
                        assert batch_of[i] != batch_of[j], (view, entity[i], entity[j])
    t = pd.to_datetime([T0] * 3, unit="ms", utc=True)
    three = pd.DataFrame({"a": ["1", "12", "121"], "b": ["211", "11", "1"], "event_timestamp": t})
    assert [b.tolist() for b in fs.collision_free_batches(three, {"ab": ["a", "b"]})] == [[0], [1], [2]]
    assert len(fs.collision_free_batches(three, {"a": ["a"], "b": ["b"]})) == 1  # one key per view: no clash


def test_a_non_utc_session_is_refused():
    fs.check_session_time_zone("UTC")
    with pytest.raises(ValueError, match="not UTC"):
        fs.check_session_time_zone("America/New_York")


def test_row_ids_are_sparks_concat(spark):
    """row_ids is Feast's id only if it prints keys as Spark's CAST(key AS STRING) does: strings as they are,
    int64 in decimal, null making the whole CONCAT null."""
    ms = [T0, T0 + 1, T0 + 120, T0 + 999, 1_999_999_999_999, T0]
    df = pd.DataFrame({"city": ["NY", "ü-東京", "", "NY1", "x", None],
                       "driver_id": pd.array([112, -5, 0, 2**63 - 1, -(2**63), 1], dtype="Int64"),
                       "event_timestamp": pd.to_datetime(ms, unit="ms", utc=True)})
    got = spark.createDataFrame(df).selectExpr(
        "CONCAT(CAST(city AS STRING), CAST(driver_id AS STRING), CAST(event_timestamp AS STRING)) AS id").collect()
    assert [r.id for r in got] == [None if pd.isna(i) else i for i in fs.row_ids(df, ["city", "driver_id"])]


def test_guard_mirrors_sparks_timestamp_text_and_why_utc_matters(spark):
    """row_ids' ids are Feast's ids only if its timestamp text is Spark's CAST(ts AS STRING)."""
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


# --- composite and int64 keys (tests/catalogs/fleet.py) --------------------------------------------

FLEET_T = T0 + 10 * HOUR  # the instant entity rows whose ids collide share
#: (city, driver_id, zone) rows: ("NY", 112) / ("NY1", 12) read "NY112" in city_driver; (zone, city)
#: ("NY", "C12") / ("NYC", "12") / ("N", "YC12") read "NYC12" in zone_city; "nobody" has no feature rows.
TRIPLES = [("NY", 112, "Q"), ("NY1", 12, "Q"), ("C12", 5, "NY"), ("12", 5, "NYC"), ("YC12", 1, "N"),
           ("NY", 12, "NYC"), ("東京", 2**63 - 1, "Zürich"), ("nobody", -1, "none")]
SPARK_TYPES = {FieldType.STRING: "string", FieldType.INT64: "bigint", FieldType.FLOAT64: "double",
               FieldType.BOOL: "boolean"}


def fleet_feature_rows(seed=23):
    """group -> its feature table's rows: each entity of TRIPLES (but nobody's) at FLEET_T, 2 h before and
    after, and at a few random instants; random values of every type, a quarter of them null."""
    from tests.catalogs.fleet import CATALOG as FLEET

    rng = random.Random(seed)
    values = {FieldType.STRING: ["", "a", "ü-東京"], FieldType.BOOL: [True, False],
              FieldType.INT64: [0, 7, -3, 2**53 + 1, 2**63 - 1, -(2**63)],  # beyond a double's exact ints
              FieldType.FLOAT64: [0.5, -2.25, 1e300]}
    tables = {}
    for g in FLEET.groups:
        entities = sorted({tuple(dict(zip(("city", "driver_id", "zone"), t))[k] for k in g.key)
                           for t in TRIPLES if t[0] != "nobody"}, key=str)
        rows = []
        for key in entities:
            times = {FLEET_T - 2 * HOUR, FLEET_T, FLEET_T + 2 * HOUR} | {FLEET_T + rng.randrange(-DAY, DAY)
                                                                          for _ in range(3)}
            for t in sorted(times):
                row = {**dict(zip(g.key, key)), "event_time": t, "trip_id": f"{g.entity}-{len(rows)}"}
                for f in g.features:
                    dtype = FLEET.feature_dtype(f)
                    row[f.name] = None if rng.random() < 0.25 else rng.choice(values[dtype])
                rows.append(row)
        tables[g.entity] = rows
    return tables


def write_fleet_tables(spark, tables, lake):
    """Each group's rows as the batch job lays out a feature table (runtime.lake): Delta, by event_date."""
    from datetime import datetime, timezone

    from runtime.lake import EVENT_DATE
    from tests.catalogs.fleet import CATALOG as FLEET

    for g in FLEET.groups:
        columns = [*g.key, "event_time", "trip_id", *(f.name for f in g.features), EVENT_DATE]
        types = {**{k: SPARK_TYPES[FLEET.schema.get_field(k).type] for k in g.key}, "event_time": "timestamp",
                 "trip_id": "string", **{f.name: SPARK_TYPES[FLEET.feature_dtype(f)] for f in g.features},
                 EVENT_DATE: "date"}
        data = []
        for r in tables[g.entity]:
            at = datetime.fromtimestamp(r["event_time"] / 1000, timezone.utc)
            values = {**r, "event_time": at, EVENT_DATE: at.date()}
            data.append(tuple(values[c] for c in columns))
        (spark.createDataFrame(data, ", ".join(f"`{c}` {types[c]}" for c in columns))
         .write.format("delta").partitionBy(EVENT_DATE).save(Lake.at(lake).tables(FLEET).features(g.entity)))


@pytest.fixture(scope="module")
def fleet_world(spark, redis_server, tmp_path_factory):
    """The fleet catalog's feature tables (written here) and its Feast registry (applied in-process)."""
    from feature_repo.definitions import feast_objects
    from tests.catalogs.fleet import CATALOG as FLEET

    lake = tmp_path_factory.mktemp("fleet-lake")
    tables = fleet_feature_rows()
    write_fleet_tables(spark, tables, lake)
    (lake / "_feast").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        store = fs.open_store("fleet_tests", lake, f"{redis_server.host}:{redis_server.port}")
        store.apply(feast_objects([FLEET], lake))
    try:
        yield {"catalog": FLEET, "tables": tables, "store": store, "lake": lake,
               "redis": f"{redis_server.host}:{redis_server.port}"}
    finally:
        spark.conf.unset("spark.sql.parser.quotedRegexColumnNames")  # Feast sets it on our shared session


def fleet_entity_df():
    """Every triple at every instant around its feature rows (before all of them, 1 ms either side of
    FLEET_T, at it, far after), shuffled, with some rows twice."""
    times = [FLEET_T - 3 * DAY, FLEET_T - 2 * HOUR, FLEET_T - 1, FLEET_T, FLEET_T + 1, FLEET_T + 5 * DAY]
    rows = [(*t, ts) for t in TRIPLES for ts in times]
    rng = random.Random(7)
    rows += rng.sample(rows, 6)
    rng.shuffle(rows)
    df = pd.DataFrame(rows, columns=["city", "driver_id", "zone", "t"])
    df["event_timestamp"] = pd.to_datetime(df.pop("t"), unit="ms", utc=True)
    return df


def fleet_expected(world, entity_df):
    """feature name -> expected value per entity row, by the point-in-time rule (latest at or before t)."""
    want = {}
    for g in world["catalog"].groups:
        index = latest_at(world["tables"][g.entity], g)
        rows = [expected_row(index, tuple(e[k] for k in g.key), e["event_timestamp"].value // 1_000_000)
                for _, e in entity_df.iterrows()]
        want.update({f.name: [None if r is None else r[f.name] for r in rows] for f in g.features})
    return want


def test_composite_and_int64_keys_are_entities_named_by_their_columns(fleet_world):
    from feast.value_type import ValueType

    store = fleet_world["store"]
    assert {e.name: (e.join_key, e.value_type) for e in store.list_entities()} == {
        "city": ("city", ValueType.STRING), "driver_id": ("driver_id", ValueType.INT64),
        "zone": ("zone", ValueType.STRING)}
    assert {v.name: v.join_keys for v in store.list_feature_views()} == {
        "city_driver": ["city", "driver_id"], "driver_id": ["driver_id"], "zone_city": ["zone", "city"]}
    assert [str(f.dtype) for f in store.get_feature_view("city_driver").features] == [
        "Int64", "Float64", "Int64", "String", "Bool"]


_KINDS = {int: (int, np.integer), float: (float, np.floating), bool: (bool, np.bool_), str: str}


def test_training_data_gives_colliding_composite_keys_their_own_features(fleet_world):
    """Entity rows whose Feast row ids collide (same instant, keys that concatenate alike) each get their own
    point-in-time row; Feast alone, on the same rows, mixes them up."""
    from feature_repo.definitions import service_name

    store, catalog = fleet_world["store"], fleet_world["catalog"]
    entity_df = fleet_entity_df()
    want = fleet_expected(fleet_world, entity_df)
    views = {g.entity: list(g.key) for g in catalog.groups}
    assert len(fs.collision_free_batches(entity_df, views)) == 3  # "NYC12" is three zone_city entities at FLEET_T
    began = time.monotonic()
    got = fs.training_data(store, entity_df, service_name(catalog))
    print(f"training_data, {len(entity_df)} entity rows in 3 batches: {time.monotonic() - began:.1f}s")
    assert got[["city", "driver_id", "zone", "event_timestamp"]].equals(entity_df)
    nulls = hits = big = 0
    for name, values in want.items():
        for i, expected in enumerate(values):
            value = got[name].iat[i]
            if expected is None:
                assert pd.isna(value), (name, entity_df.iloc[i].tolist(), value)
                nulls += 1
            else:  # of the feature's type: a double equal to 2**63 - 1 by numpy's comparison is not it
                assert isinstance(value, _KINDS[type(expected)]) and value == expected, (
                    name, entity_df.iloc[i].tolist(), value, expected)
                hits += 1
                big += type(expected) is int and abs(expected) > 2**53
    assert nulls > 50 and hits > 200 and big > 10, (nulls, hits, big)

    raw = store.get_historical_features(entity_df=entity_df.assign(row=range(len(entity_df))),
                                        features=store.get_feature_service(service_name(catalog))).to_df()
    wrong = sum(1 for _, r in raw.iterrows() for name in want
                if not (pd.isna(r[name]) and want[name][r["row"]] is None) and r[name] != want[name][r["row"]])
    print(f"Feast alone: {len(raw)} rows for {len(entity_df)} entity rows, {wrong} feature values not the "
          "entity row's own")
    assert wrong > 0 or len(raw) != len(entity_df)


def test_materialize_serves_every_type_exactly(spark, fleet_world):
    """Nullable int64 features beyond 2**53 reach Redis exactly (Spark's toPandas would make them doubles),
    as do strings, bools and nulls: online, each entity's latest feature row."""
    from feature_repo.materialize import materialize

    store, catalog, tables = fleet_world["store"], fleet_world["catalog"], fleet_world["tables"]
    done = materialize(spark, Lake.at(fleet_world["lake"]), [catalog], fleet_world["redis"], "fleet_tests")
    assert {m.group: m.rows for m in done} == {g: len({tuple(r[k] for k in catalog.group(g).key) for r in rows})
                                               for g, rows in tables.items()}
    triples = [dict(zip(("city", "driver_id", "zone"), t)) for t in TRIPLES]
    got = fs.online_features(store, triples, service_name(catalog))
    big = 0
    for g in catalog.groups:
        index = latest_at(tables[g.entity], g)
        for i, t in enumerate(triples):
            want = expected_row(index, tuple(t[k] for k in g.key), float("inf"))
            for f in g.features:
                expected = None if want is None else want[f.name]
                assert got[f.name][i] == expected and type(got[f.name][i]) is type(expected), (
                    g.entity, t, f.name, got[f.name][i], expected)
                big += isinstance(expected, int) and not isinstance(expected, bool) and abs(expected) > 2**53
    assert big > 3, big


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
