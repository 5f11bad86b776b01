"""The serving lookup (serving/) against a real redis-server and the real Feast SDK, on the rides catalog.

Rows are written by the project's own writer (``stream_jobs.online_sink``,
what the stream job and ``tandem materialize`` use), the registry is applied
in-process (``FeatureStore.apply``). Expected statuses come from the rule as
the README states it, written out here (:func:`oracle`) with the rides
catalog's declared numbers typed in by hand, never from ``serving``; expected
values from Feast's own ``get_online_features``.
"""

from __future__ import annotations

import math
import random
import time

import pytest
import redis

from feature_repo import store as fs
from feature_repo.definitions import feast_objects, service_name
from runtime.degraded import clear_degraded, mark_degraded
from serving import OnlineLookup
from serving.errors import BadEntities, BadRequest, NotFound, TooLarge, Unavailable
from stream_jobs.online_sink import OnlineWriter
from local_services import free_port
from tests.catalogs.rides import CATALOG as RIDES
from transforms import FieldType

PROJECT = "serve_tests"
DB = 3  # a logical database of the session's Redis no other test module uses
SEC, MIN, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000
NOW = 1_714_600_000_000  # 2024-05-01T21:46:40Z

#: The rides catalog's declarations, typed in from tests/catalogs/rides.py: (fresh_for, max_staleness, default).
DECLARED = {
    "driver_rides_5m": (10 * MIN, HOUR, 0),
    "driver_riders_30m": (10 * MIN, HOUR, -1),
    "driver_max_riders_2h": (10 * MIN, 3 * HOUR, None),
    "driver_min_fare_30m": (10 * MIN, HOUR, 0.0),
    "driver_last_riders_2h": (10 * MIN, HOUR, None),
    "driver_cities_2h": (10 * MIN, HOUR, 0),
    "driver_fare_per_km_avg_30m": (90 * SEC, HOUR, -1.5),
    "driver_km_sum_1d": (None, 2 * DAY, None),
    "driver_last_minute_1d": (None, 2 * DAY, None),
    "cd_rides_10m": (30 * MIN, None, None),
    "cd_fare_sum_1h": (30 * MIN, None, 0.0),
    "cd_tip_sum_1h": (30 * MIN, None, None),
    "cd_tip_avg_1h": (30 * MIN, None, None),
    "cd_tip_min_10m": (30 * MIN, None, None),
    "cd_last_promo_1h": (30 * MIN, None, "none"),
    "cd_promos_1h": (30 * MIN, None, None),
    "cd_last_surge_10m": (30 * MIN, DAY, False),
    "vehicle_rides_1h": (None, None, None),
    "vehicle_max_riders_1h": (None, None, None),
    "vehicle_last_driver_1h": (None, None, None),
    "vehicle_surges_1h": (None, None, None),
}
#: Every budget edge of the catalog, each probed at the edge, 1 ms inside and 1 ms beyond; and a future event.
EDGES = sorted({b for fresh, oldest, _ in DECLARED.values() for b in (fresh, oldest) if b is not None})
AGES = sorted({0, -5 * SEC, *(e + d for e in EDGES for d in (-1, 0, 1))})


def oracle(age_ms, feature, degraded=False):
    """(status, served value or None) by the rule: absent, too old or degraded -> the default if declared
    (defaulted) else null (missing); else fresh up to fresh_for (both ends), stale beyond it."""
    fresh, oldest, default = DECLARED[feature]
    if age_ms is None or degraded or (oldest is not None and age_ms > oldest):
        return ("defaulted", default) if default is not None else ("missing", None)
    return ("fresh" if fresh is None or age_ms <= fresh else "stale"), "stored"


def feature_names(group):
    return [f.name for f in group.features]


def row(driver, city, vehicle, t, values):
    return {"ride_id": f"r-{driver}-{city}-{vehicle}-{t}", "driver": driver, "city": city, "vehicle": vehicle,
            "ts": t, "fare_per_km": 1.0, "minute_of_hour": 1, **values}


def value_for(dtype, rng, wide=True):
    """A value of ``dtype``, null one time in five, often an edge of its encoding."""
    if rng.random() < 0.2:
        return None
    return rng.choice({
        FieldType.STRING: ["", "a", "ü-東京", "x" * 300, "NY", "none"],
        FieldType.BOOL: [True, False],
        FieldType.INT64: [0, 1, -1, 127, 128, 2**53 + 1, -(2**63), 2**63 - 1] if wide else [0, 1, -1, 300],
        FieldType.FLOAT64: [0.0, -0.0, 1.5, 0.1 + 0.2, -2.5, 5e-324, 1e300, float("inf"), float("-inf")],
    }[dtype])


def random_values(rng):
    return {f.name: value_for(RIDES.feature_dtype(f), rng) for _, f in RIDES.features}


@pytest.fixture(scope="module")
def world(redis_server, tmp_path_factory):
    """The rides catalog registered in Feast over db DB of the session's Redis, a writer and a lookup on it."""
    lake = tmp_path_factory.mktemp("serve-lake")
    (lake / "_feast").mkdir()
    address = f"{redis_server.host}:{redis_server.port},db={DB}"
    store = fs.open_store(PROJECT, lake, address)
    store.apply(feast_objects([RIDES], lake))
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=DB)
    client.flushdb()
    writer = OnlineWriter(address, catalog=RIDES, project=PROJECT)
    lookup = OnlineLookup([RIDES], PROJECT, address, degraded_refresh=0)  # the marks read by every lookup: the
    # tests of the rule see a mark at once; the tests of the refresh interval make lookups of their own
    yield {"store": store, "client": client, "writer": writer, "lookup": lookup, "address": address}
    writer.close()
    lookup.close()


@pytest.fixture
def empty(world):
    world["client"].flushdb()
    return world


# --- Feast's hash keys --------------------------------------------------------------------------------------

def test_hash_keys_are_feasts_byte_for_byte():
    from feast.infra.online_stores.helpers import _redis_key
    from feast.value_type import ValueType

    from runtime.feast_layout import value_type
    from serving import features as sf
    from stream_jobs.online_sink import entity_key_proto

    assert (sf._STRING, sf._INT64) == (ValueType.STRING.value, ValueType.INT64.value)
    rng = random.Random(5)
    strings = ["a", "NY", "NYC", "C12", "12", "ü", "東京-7", "d 1", "x" * 1000, "\x00", "😀"]
    ints = [0, 1, -1, 12, 112, 2**31, -(2**31) - 1, 2**53 + 1, -(2**63), 2**63 - 1]
    keys = {("driver",): [FieldType.STRING], ("vehicle",): [FieldType.INT64],
            ("city", "driver"): [FieldType.STRING, FieldType.STRING],
            ("zone", "city"): [FieldType.STRING, FieldType.STRING],  # given out of Feast's sorted order
            ("vehicle", "city", "a_first"): [FieldType.INT64, FieldType.STRING, FieldType.INT64]}
    checked = 0
    for key, types in keys.items():
        encode = sf.HashKeys("proj_ü", key, tuple(types))
        for _ in range(200):
            values = tuple(rng.choice(strings if t is FieldType.STRING else ints) for t in types)
            feast_key = _redis_key("proj_ü", entity_key_proto(key, tuple(value_type(t) for t in types), values), 3)
            assert encode(values) == feast_key, (key, values)
            checked += 1
    assert checked == 1000


def test_stored_values_decode_as_feasts_protobuf_message_does():
    """serving.online_store.value_of reads common encodings itself: on every edge of each type, other Value
    fields, and random bytes shaped like them, it returns what the Value message's own decoder gives (the same
    type; a float's very bits) or, where the decoder refuses the bytes, refuses them too."""
    import struct

    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.message import DecodeError

    from serving.online_store import value_of

    def decoded(stored):
        try:
            if not stored:
                return "ok", None
            message = Value.FromString(stored)
            which = message.WhichOneof("val")
            return "ok", None if which in (None, "null_val") else getattr(message, which)
        except DecodeError:
            return "refused", None

    def ours(stored):
        try:
            return "ok", value_of(stored)
        except DecodeError:
            return "refused", None

    values = [Value(int64_val=v) for v in (0, 1, 127, 128, 255, -1, 2**53 + 1, 2**63 - 1, -(2**63))]
    values += [Value(bool_val=v) for v in (True, False)]
    values += [Value(double_val=v) for v in (0.0, -0.0, 1.5, 0.1 + 0.2, 5e-324, 1e300, math.inf, -math.inf, math.nan)]
    values += [Value(string_val=v) for v in ("", "a", "none", "ü-東京", "😀", "x" * 125, "x" * 126, "x" * 127,
                                             "x" * 128, "x" * 300)]
    values += [Value(null_val=0), Value(int32_val=5), Value(float_val=1.5), Value(bytes_val=b"ab"),
               Value(unix_timestamp_val=7)]
    cases = [b"", *(v.SerializeToString() for v in values)]
    rng = random.Random(9)
    for _ in range(50_000):  # the fast paths' tags with arbitrary lengths and bytes
        size = rng.choice([1, 2, 3, 9, 10, rng.randrange(1, 140)])
        cases.append(bytes([rng.choice([0x29, 0x20, 0x38, 0x12, rng.randrange(256)])])
                     + rng.randbytes(size - 1))
    for stored in cases:
        want, got = decoded(stored), ours(stored)
        assert got[0] == want[0] and type(got[1]) is type(want[1]), (stored.hex(), got, want)
        if isinstance(want[1], float):
            assert struct.pack("<d", got[1]) == struct.pack("<d", want[1]), stored.hex()
        else:
            assert got[1] == want[1], stored.hex()


# --- statuses at the budget edges ---------------------------------------------------------------------------

@pytest.mark.parametrize("alone", [False, True], ids=["batch", "one-entity-lookups"])
def test_statuses_at_every_budget_edge_follow_the_rule(empty, alone):
    """One entity per age; each feature's status and value at exactly its edges, 1 ms inside and beyond. In one
    batch, and entity by entity (a one-entity lookup takes a path of its own)."""
    rng = random.Random(1)
    written = {}
    for age in AGES:
        values = random_values(rng)
        written[age] = values
        empty["writer"].write([row(f"d{age}", "c", age, NOW - age, values)])
    ages = list(AGES) + [None]  # and an entity never written
    entities = {"driver": [f"d{a}" for a in ages], "city": ["c"] * len(ages), "vehicle": [a or 0 for a in AGES] + [7]}
    if alone:
        results = [empty["lookup"].lookup({k: [v[i]] for k, v in entities.items()}, feature_service="rides_all",
                                          now_ms=NOW) for i in range(len(ages))]
        result = results[0]
        for r in results[1:]:  # the one-entity results side by side, as one batch's columns
            for column, more in zip(result.features, r.features):
                for mine, theirs in ((column.values, more.values), (column.statuses, more.statuses),
                                     (column.event_times_ms, more.event_times_ms), (column.ages_ms, more.ages_ms)):
                    mine.extend(theirs)
        assert all(r.degraded == {} and r.errors == {} for r in results)
    else:
        result = empty["lookup"].lookup(entities, feature_service="rides_all", now_ms=NOW)
    assert [c.feature.name for c in result.features] == [f.name for _, f in RIDES.features]
    seen = set()
    for column in result.features:
        name = column.feature.name
        for i, age in enumerate(ages):
            want_status, want_value = oracle(age, name)
            served = column[i]
            assert served.status.value == want_status, (name, age, served)
            seen.add(want_status)
            if want_value == "stored":
                stored = written[age][name]
                assert served.value == stored or (stored != stored and served.value is None), (name, age)
                assert type(served.value) is type(stored) or stored is None
            else:
                assert served.value == want_value and type(served.value) is type(want_value), (name, age, served)
            if age is None:
                assert served.event_time_ms is None and served.age_ms is None
            else:
                assert served.event_time_ms == NOW - age and served.age_ms == age, (name, age)
    assert seen == {"fresh", "stale", "defaulted", "missing"}
    assert result.degraded == {} and result.errors == {}


def test_a_stored_null_is_a_value_judged_by_its_age(empty):
    """A sum over a window of nulls is stored as null: present, served as null with its age's status."""
    values = {f.name: None for _, f in RIDES.features}
    empty["writer"].write([row("dn", "cn", 1, NOW - 20 * MIN, values)])
    result = empty["lookup"].lookup({"driver": ["dn"], "city": ["cn"], "vehicle": [1]}, feature_service="rides_all",
                                    now_ms=NOW)
    for column in result.features:
        want, _ = oracle(20 * MIN, column.feature.name)
        assert column[0].status.value == want and column[0].age_ms == 20 * MIN
        assert column[0].value == (DECLARED[column.feature.name][2] if want == "defaulted" else None)


def test_an_entity_written_in_one_view_is_missing_in_another_of_the_same_key(empty):
    """driver and driver_day share one Redis hash per driver; a row of one is not a row of the other."""
    with OnlineWriter(empty["address"], catalog=RIDES, project=PROJECT, groups=["driver"]) as driver_only:
        driver_only.write([row("d-only", "c", 1, NOW - MIN, random_values(random.Random(2)))])
    result = empty["lookup"].lookup({"driver": ["d-only"]}, features=["driver:driver_rides_5m",
                                                                      "driver_day:driver_km_sum_1d"], now_ms=NOW)
    assert result.column("driver:driver_rides_5m")[0].status.value == "fresh"
    assert result.column("driver_day:driver_km_sum_1d")[0].status.value == "missing"


# --- degraded groups ----------------------------------------------------------------------------------------

def test_a_degraded_group_serves_its_defaults_and_says_why(empty):
    client = empty["client"]
    empty["writer"].write([row("dg", "cg", 3, NOW - MIN, random_values(random.Random(3)))])
    mark = {"since": "2024-05-01T20:00:00+00:00", "pipeline": "stream:rides", "run_id": "r1",
            "gates": ["completeness(driver_rides_5m)"], "why": "driver_rides_5m 80 % non-null < 95 %"}
    mark_degraded(client, PROJECT, {"driver": mark})
    try:
        result = empty["lookup"].lookup({"driver": ["dg"], "city": ["cg"], "vehicle": [3]},
                                        feature_service="rides_all", now_ms=NOW)
    finally:
        clear_degraded(client, PROJECT, ["driver"])
    assert result.degraded == {"driver": mark}  # only groups marked: driver_day etc. are not listed
    for column in result.features:
        degraded = column.feature.view == "driver"
        want_status, want_value = oracle(MIN, column.feature.name, degraded=degraded)
        assert column[0].status.value == want_status, column.feature.name
        if degraded:
            assert column[0].value == want_value
            assert column[0].age_ms == MIN and column[0].event_time_ms == NOW - MIN  # the age still shown
    statuses = {c.feature.name: c[0].status.value for c in result.features}
    assert statuses["driver_rides_5m"] == "defaulted" and statuses["driver_last_riders_2h"] == "missing"
    assert statuses["driver_km_sum_1d"] == "fresh"  # driver_day: same key, not degraded
    after = empty["lookup"].lookup({"driver": ["dg"]}, features=["driver:driver_rides_5m"], now_ms=NOW)
    assert after.degraded == {} and after.column("driver:driver_rides_5m")[0].status.value == "fresh"


def test_the_degraded_marks_of_groups_not_requested_are_not_reported(empty):
    mark_degraded(empty["client"], PROJECT, {"vehicle": {"since": "x", "why": "range(vehicle_rides_1h)"}})
    try:
        result = empty["lookup"].lookup({"driver": ["d"]}, features=["driver:driver_rides_5m"], now_ms=NOW)
    finally:
        clear_degraded(empty["client"], PROJECT, ["vehicle"])
    assert result.degraded == {} and result.column("driver:driver_rides_5m")[0].status.value == "defaulted"


def calls(client, command):
    """How many times Redis ran ``command`` since the last CONFIG RESETSTAT (its own count)."""
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def test_the_marks_are_read_once_per_interval_and_a_mark_is_honoured_after_it(empty):
    """With degraded_refresh 0.25 s a lookup reads the marks only when those it holds were read 0.25 s ago or
    more (its clock injected here; Redis real): in between, a one-entity lookup is one HMGET and nothing else,
    and a mark written meanwhile is not yet seen (the documented delay); from 0.25 s after the read it is."""
    client = empty["client"]
    empty["writer"].write([row("dm", "cm", 1, NOW - MIN, random_values(random.Random(11)))])
    clock = [0.0]
    lookup = OnlineLookup([RIDES], PROJECT, empty["address"], degraded_refresh=0.25, monotonic=lambda: clock[0])
    ref = "driver:driver_rides_5m"

    def served():
        return lookup.lookup({"driver": ["dm"]}, features=[ref], now_ms=NOW).column(ref)[0]

    try:
        client.config_resetstat()
        assert served().status.value == oracle(MIN, "driver_rides_5m")[0] == "fresh"
        assert (calls(client, "hmget"), calls(client, "hgetall")) == (1, 1)  # the first lookup reads the marks
        mark_degraded(client, PROJECT, {"driver": {"since": "2024-05-01T21:40:00+00:00", "why": "range(fare)"}})
        client.config_resetstat()
        clock[0] = 0.125
        assert served().status.value == "fresh"  # marked 0.125 s after the read: not yet seen
        assert (calls(client, "hmget"), calls(client, "hgetall")) == (1, 0)
        clock[0] = 0.25  # the interval since the read: the marks are read, the mark honoured
        now = served()
        assert (now.status.value, now.value) == oracle(MIN, "driver_rides_5m", degraded=True) == ("defaulted", 0)
        assert (calls(client, "hmget"), calls(client, "hgetall")) == (2, 1)
        clear_degraded(client, PROJECT, ["driver"])
        clock[0] = 0.375
        assert served().status.value == "defaulted"  # cleared: the cleared mark is still held
        clock[0] = 0.5
        assert served().status.value == "fresh"
    finally:
        clear_degraded(client, PROJECT, ["driver"])
        lookup.close()


def test_by_default_a_mark_is_honoured_a_quarter_second_after_it_is_written(empty):
    """The default interval, on the wall clock: a lookup that starts 0.25 s after a mark is written (or cleared)
    judges by it, whatever the lookups before it read (README: "Serving")."""
    client = empty["client"]
    empty["writer"].write([row("dq", "cq", 1, NOW - MIN, random_values(random.Random(12)))])
    lookup = OnlineLookup([RIDES], PROJECT, empty["address"])
    ref = "driver:driver_rides_5m"

    def served():
        return lookup.lookup({"driver": ["dq"]}, features=[ref], now_ms=NOW).column(ref)[0].status.value

    try:
        assert served() == "fresh"
        mark_degraded(client, PROJECT, {"driver": {"since": "2024-05-01T21:40:00+00:00", "why": "range(fare)"}})
        time.sleep(0.25)
        assert served() == oracle(MIN, "driver_rides_5m", degraded=True)[0] == "defaulted"
        clear_degraded(client, PROJECT, ["driver"])
        time.sleep(0.25)
        assert served() == "fresh"
    finally:
        clear_degraded(client, PROJECT, ["driver"])
        lookup.close()


def test_an_error_reply_to_a_lone_hmget_fails_only_that_view(empty):
    """A one-hash lookup between reads of the marks is a plain HMGET: its error reply is reported as the
    pipeline's is, against the view, its values served as absent."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.value_type import ValueType

    from stream_jobs.online_sink import entity_key_proto

    lookup = OnlineLookup([RIDES], PROJECT, empty["address"], degraded_refresh=60)
    try:
        lookup.lookup({"vehicle": [6]}, features=["vehicle:vehicle_rides_1h"], now_ms=NOW)  # reads the marks
        empty["client"].set(_redis_key(PROJECT, entity_key_proto(("vehicle",), (ValueType.INT64,), (6,)), 3), b"str")
        empty["client"].config_resetstat()
        result = lookup.lookup({"vehicle": [6]}, features=["vehicle:vehicle_rides_1h"], now_ms=NOW)
        assert (calls(empty["client"], "hmget"), calls(empty["client"], "hgetall")) == (1, 0)
    finally:
        lookup.close()
    assert "WRONGTYPE" in result.errors["vehicle"] and set(result.errors) == {"vehicle"}
    assert [s.value for s in result.column("vehicle:vehicle_rides_1h").statuses] == ["missing"]


# --- exactly what Feast reads -------------------------------------------------------------------------------

def test_values_equal_feasts_get_online_features_for_every_type_and_entity(world, empty):
    """Rows of every feature type (edges, nulls, unicode, int64 extremes as keys and values), entities absent
    from Redis among them: every present value equals Feast's, every absent one is null in Feast."""
    rng = random.Random(7)
    drivers = ["d-hot", "NY", "NYC", "Zoë", "東京-7", "d1", "d12", "C12", "12"]
    cities = ["NY", "C12", "NYC", "12", "Zürich"]
    vehicles = [0, 1, 12, 112, -1, -(2**63), 2**63 - 1, 2**53 + 1]
    rows = [row(rng.choice(drivers), rng.choice(cities), rng.choice(vehicles), NOW - rng.randrange(0, 30 * MIN),
                random_values(rng)) for _ in range(300)]  # none older than a budget's max_staleness: all served
    rng.shuffle(rows)
    for i in range(0, len(rows), 37):
        world["writer"].write(rows[i:i + 37])
    triples = sorted({(r["driver"], r["city"], r["vehicle"]) for r in rows})
    triples += [("nobody", "NY", 5), ("d-hot", "Atlantis", 2**62), ("NY", "C12", -(2**63)),  # absent, all or some
                ("nobody-2", "Nowhere", 2**63 - 2), ("ghost", "C12", -7), ("ghost-2", "NY", 11)]
    entities = {"driver": [t[0] for t in triples], "city": [t[1] for t in triples], "vehicle": [t[2] for t in triples]}
    store = world["store"]
    feast = store.get_online_features(features=store.get_feature_service(service_name(RIDES)),
                                      entity_rows=[{"driver": d, "city": c, "vehicle": v} for d, c, v in triples])
    feast_values = feast.to_dict()
    names = list(feast.proto.metadata.feature_names.val)
    feast_ts = {n: feast.proto.results[names.index(n)].event_timestamps for n in names}
    ours = world["lookup"].lookup(entities, feature_service=service_name(RIDES), now_ms=NOW)
    compared = absent = nulls = 0
    for column in ours.features:
        name = column.feature.name
        for i in range(len(triples)):
            served, theirs = column[i], feast_values[name][i]
            if served.status.value in ("fresh", "stale"):
                assert served.value == theirs or (served.value != served.value and theirs != theirs), (name, i)
                if theirs is None:
                    nulls += 1
                else:
                    assert type(served.value) is type(theirs), (name, served.value, theirs)
                    if isinstance(theirs, float) and theirs == 0:
                        assert math.copysign(1, served.value) == math.copysign(1, theirs)  # -0.0 stays -0.0
                ts = feast_ts[name][i]
                assert served.event_time_ms == ts.seconds * 1000 + round(ts.nanos / 1e6), (name, i)
                compared += 1
            else:
                assert theirs is None, (name, triples[i], served, theirs)  # absent or aged out: Feast has none
                assert served.status.value in ("defaulted", "missing")
                if served.event_time_ms is None:
                    absent += 1
    assert compared > 3000 and absent > 90 and nulls > 500, (compared, absent, nulls)
    assert {type(v) for c in ours.features for v in c.values if v is not None} == {str, int, float, bool}
    assert {-(2**63), 2**63 - 1} <= set(feast_values["vehicle"])

    # Ten days later Feast still serves every stored value, PRESENT; the lookup ages them out by the budgets.
    later = world["lookup"].lookup(entities, feature_service=service_name(RIDES), now_ms=NOW + 10 * DAY)
    again = store.get_online_features(features=store.get_feature_service(service_name(RIDES)),
                                      entity_rows=[{"driver": d, "city": c, "vehicle": v} for d, c, v in triples])
    assert again.to_dict() == feast_values
    aged = later.column("driver:driver_rides_5m")
    present = [i for i, s in enumerate(ours.column("driver:driver_rides_5m").statuses) if s.value != "defaulted"]
    assert present and all(aged[i].status.value == "defaulted" and aged[i].value == 0 for i in present)
    vehicle = "vehicle:vehicle_rides_1h"  # no budget declared: never aged out
    assert later.column(vehicle).statuses == ours.column(vehicle).statuses and "fresh" in ours.column(vehicle).statuses


def test_a_list_of_refs_reads_the_same_as_the_service(world, empty):
    world["writer"].write([row("dr", "cr", 9, NOW - HOUR, random_values(random.Random(9)))])
    entities = {"vehicle": [9, 9], "driver": ["dr", "dr"], "city": ["cr", "cr"]}  # the same entity twice
    refs = ["vehicle:vehicle_surges_1h", "city_driver:cd_last_promo_1h", "driver:driver_fare_per_km_avg_30m"]
    subset = world["lookup"].lookup(entities, features=refs, now_ms=NOW)
    whole = world["lookup"].lookup(entities, feature_service="rides_all", now_ms=NOW)
    assert [c.feature.ref for c in subset.features] == refs  # in request order
    for ref in refs:
        assert subset.column(ref)[0] == subset.column(ref)[1] == whole.column(ref)[0]
    assert list(subset.entities) == ["vehicle", "city", "driver"]  # the key columns, in first-needed order


# --- refusals -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("features, service, error, text", [
    (["nope:driver_rides_5m"], None, NotFound, "no feature view 'nope' (the views: city_driver, driver, "),
    (["driver:nope"], None, NotFound, "feature view 'driver' has no feature 'nope' (its features: driver_rides_5m"),
    (None, "nope_all", NotFound, "no feature service 'nope_all' (the services: rides_all)"),
    (["driver_rides_5m"], None, BadRequest, "feature 'driver_rides_5m' (str) is not a \"view:feature\" ref"),
    (["driver:driver_rides_5m", "driver:driver_rides_5m"], None, BadRequest, "is requested twice"),
    ([], None, BadRequest, "features must be a non-empty list"),
    ("driver:driver_rides_5m", None, BadRequest, "features must be a non-empty list"),
    ([7], None, BadRequest, "feature 7 (int) is not a"),
    (None, None, BadRequest, "give either features"),
    (["driver:driver_rides_5m"], "rides_all", BadRequest, "not both"),
])
def test_unknown_or_malformed_features_are_refused_in_one_line(world, features, service, error, text):
    with pytest.raises(error) as e:
        world["lookup"].lookup({"driver": ["d"]}, features=features, feature_service=service)
    assert text in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("entities, text", [
    ({}, "entities lack key column 'city'"),
    ({"city": ["c"]}, "entities lack key column 'driver'"),
    ({"city": ["c"], "driver": ["d"], "vehicle": [1]}, "entities: 'vehicle' (str) is not a key of the requested"),
    ({"city": ["c", "c"], "driver": ["d"]}, "entities: 'driver' has 1 values but 'city' has 2"),
    ({"city": "c", "driver": ["d"]}, "entities: 'city' must be a list of values"),
    ({"city": [""], "driver": ["d"]}, "entities: city[0] is '' (str), but 'city' is a string key"),
    ({"city": ["c"], "driver": [12]}, "entities: driver[0] is 12 (int), but 'driver' is a string key"),
    ({"city": ["c"], "driver": [None]}, "driver[0] is None (NoneType)"),
    ([["c", "d"]], "entities must map each key column to a list of values"),
])
def test_missing_or_wrongly_typed_composite_keys_are_refused(world, entities, text):
    with pytest.raises(BadEntities) as e:
        world["lookup"].lookup(entities, features=["city_driver:cd_rides_10m"])
    assert text in str(e.value)


@pytest.mark.parametrize("value, shown", [("12", "'12' (str)"), (True, "True (bool)"), (1.0, "1.0 (float)"),
                                          (2**63, f"{2**63} (int)"), (-(2**63) - 1, f"{-(2**63) - 1} (int)")])
def test_an_int64_key_takes_integers_in_range_only(world, value, shown):
    with pytest.raises(BadEntities) as e:
        world["lookup"].lookup({"vehicle": [1, value]}, features=["vehicle:vehicle_rides_1h"])
    assert f"entities: vehicle[1] is {shown}, but 'vehicle' is an int64 key" in str(e.value)


def test_int64_key_extremes_are_served(empty):
    rows = [row("d", "c", v, NOW - MIN, {**random_values(random.Random(v % 97)), "vehicle_rides_1h": i})
            for i, v in enumerate([-(2**63), 2**63 - 1, 0])]
    empty["writer"].write(rows)
    result = empty["lookup"].lookup({"vehicle": [2**63 - 1, -(2**63), 0, 5]}, features=["vehicle:vehicle_rides_1h"],
                                    now_ms=NOW)
    column = result.column("vehicle:vehicle_rides_1h")
    assert column.values == [1, 0, 2, None]
    assert [s.value for s in column.statuses] == ["fresh", "fresh", "fresh", "missing"]


def test_a_batch_beyond_the_maximum_is_refused(world):
    small = OnlineLookup([RIDES], PROJECT, world["address"], max_entities=3)
    try:
        assert len(small.lookup({"vehicle": [1, 2, 3]}, features=["vehicle:vehicle_rides_1h"])) == 3
        with pytest.raises(TooLarge, match="4 entities in one lookup; this server takes at most 3"):
            small.lookup({"vehicle": [1, 2, 3, 4]}, features=["vehicle:vehicle_rides_1h"])
    finally:
        small.close()


# --- failures of the store ----------------------------------------------------------------------------------

def test_an_error_reply_for_one_entity_fails_only_that_views_values_and_says_so(empty):
    empty["writer"].write([row("dw", "cw", 4, NOW - MIN, random_values(random.Random(4)))])
    from feast.infra.online_stores.helpers import _redis_key
    from feast.value_type import ValueType

    from stream_jobs.online_sink import entity_key_proto

    vehicle_5 = _redis_key(PROJECT, entity_key_proto(("vehicle",), (ValueType.INT64,), (5,)), 3)
    empty["client"].set(vehicle_5, b"not a hash")  # vehicle 5's key holds a string
    result = empty["lookup"].lookup({"driver": ["dw", "dw"], "vehicle": [4, 5]},
                                    features=["driver:driver_rides_5m", "vehicle:vehicle_rides_1h"], now_ms=NOW)
    assert "WRONGTYPE" in result.errors["vehicle"] and set(result.errors) == {"vehicle"}
    assert [s.value for s in result.column("vehicle:vehicle_rides_1h").statuses] == ["fresh", "missing"]
    assert [s.value for s in result.column("driver:driver_rides_5m").statuses] == ["fresh", "fresh"]


def test_an_unreachable_redis_is_unavailable_in_one_line_without_its_password():
    port = free_port()
    lookup = OnlineLookup([RIDES], PROJECT, f"127.0.0.1:{port},password=s3cret-Pa55word", timeout=0.5)
    try:
        assert "s3cret" not in (lookup.store.ping() or "") and lookup.store.ping() is not None
        with pytest.raises(Unavailable) as e:
            lookup.lookup({"vehicle": [1]}, features=["vehicle:vehicle_rides_1h"])
    finally:
        lookup.close()
    message = str(e.value)
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message and "\n" not in message
    assert e.value.status == 503


def test_an_address_that_is_not_redis_is_refused_without_echoing_it():
    from runtime.errors import UserError

    with pytest.raises(UserError) as e:
        OnlineLookup([RIDES], PROJECT, "no-port-here,password=s3cret-Pa55word")
    assert "s3cret" not in str(e.value) and "expected host:port" in str(e.value)


def test_corrupt_stored_bytes_fail_only_those_values_and_say_so(empty):
    """A field or a _ts that is not the protobuf Feast wrote: served as absent (defaulted or missing), named in
    errors; the entity's other groups and the other entities are served."""
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.value_type import ValueType

    from stream_jobs.online_sink import entity_key_proto

    empty["writer"].write([row(d, "c", 1, NOW - MIN, random_values(random.Random(6))) for d in ("ok", "bad", "bad-ts")])
    key = lambda d: _redis_key(PROJECT, entity_key_proto(("driver",), (ValueType.STRING,), (d,)), 3)  # noqa: E731
    empty["client"].hset(key("bad"), _mmh3("driver:driver_rides_5m"), b"\xff\xff\xff")
    empty["client"].hset(key("bad-ts"), "_ts:driver", b"\xff\xff")
    refs = ["driver:driver_rides_5m", "driver:driver_last_riders_2h", "driver_day:driver_km_sum_1d"]
    result = empty["lookup"].lookup({"driver": ["ok", "bad", "bad-ts"]}, features=refs, now_ms=NOW)
    assert set(result.errors) == {"driver"} and "not a protobuf message Feast wrote" in result.errors["driver"]
    assert [s.value for s in result.column(refs[0]).statuses] == ["fresh", "defaulted", "defaulted"]
    assert result.column(refs[0]).values == [result.column(refs[0]).values[0], 0, 0]
    assert [s.value for s in result.column(refs[1]).statuses] == ["fresh", "fresh", "missing"]
    assert [s.value for s in result.column(refs[2]).statuses] == ["fresh", "fresh", "fresh"]
    alone = empty["lookup"].lookup({"driver": ["bad"]}, features=refs, now_ms=NOW)  # one entity: its own path
    assert set(alone.errors) == {"driver"} and "not a protobuf message Feast wrote" in alone.errors["driver"]
    assert [alone.column(r)[0].status.value for r in refs] == ["defaulted", "fresh", "fresh"]
    assert alone.column(refs[0])[0] == (0, "defaulted", None, None)  # absent: no event time, no age
    alone = empty["lookup"].lookup({"driver": ["bad-ts"]}, features=refs, now_ms=NOW)
    assert [alone.column(r)[0].status.value for r in refs] == ["defaulted", "missing", "fresh"]


def test_the_python_function_takes_numpy_and_pandas_columns(empty):
    import numpy as np
    import pandas as pd

    empty["writer"].write([row("dn", "cn", -(2**63), NOW - MIN, {**random_values(random.Random(8)),
                                                                  "vehicle_rides_1h": 5, "cd_rides_10m": 6})])
    result = empty["lookup"].lookup({"vehicle": np.array([-(2**63), 3], dtype=np.int64),
                                     "city": pd.Series(["cn", "cn"]), "driver": np.array(["dn", "dn"])},
                                    features=["vehicle:vehicle_rides_1h", "city_driver:cd_rides_10m"], now_ms=NOW)
    assert result.entities == {"vehicle": [-(2**63), 3], "city": ["cn", "cn"], "driver": ["dn", "dn"]}
    assert [type(v) for c in result.entities.values() for v in c] == [int, int, str, str, str, str]
    assert result.column("vehicle:vehicle_rides_1h").values == [5, None]
    assert result.column("city_driver:cd_rides_10m").values == [6, 6]


def test_one_round_trip_reads_each_entity_hash_once(empty):
    """Redis's own command counts: one HMGET per distinct entity hash (driver and driver_day share the driver's
    hash, as Feast keys it; an entity named twice is read once) and one HGETALL of the degraded marks."""
    empty["writer"].write([row(d, "c", 1, NOW - MIN, random_values(random.Random(10))) for d in ("a", "b")])
    client = empty["client"]
    client.config_resetstat()
    result = empty["lookup"].lookup({"driver": ["a", "b", "a", "zz"]}, now_ms=NOW, features=[
        "driver:driver_rides_5m", "driver_day:driver_km_sum_1d", "driver:driver_cities_2h"])
    assert calls(client, "hmget") == 3 and calls(client, "hgetall") == 1
    assert [s.value for s in result.column("driver_day:driver_km_sum_1d").statuses] == ["fresh"] * 3 + ["missing"]
    assert result.column("driver:driver_rides_5m").values[0] == result.column("driver:driver_rides_5m").values[2]
