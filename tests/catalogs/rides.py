"""A catalog unlike the example in every name and shape: the generality tests' second catalog.

Other id, time and key names; a composite key (city, driver) whose parts
concatenate alike; an INT64 key (vehicle); two feature groups over the same
key; optional fields (a string and a float) with null windows; a BOOL field;
features of every type: int sums, max and last, a float min, a string and a
bool last, distinct counts of a string and of an optional string; a numpy
row function of two columns; an integer row expression; windows from 5
minutes to a day; serving budgets on groups and features (overridden both
ways) and defaults of every type, with a group that declares none. It lives in a user's project (``features/rides.py``), so
nothing of Tandem imports it: the engines' workers get its row functions by
value.
"""

import numpy as np

from transforms import (Agg, Catalog, Completeness, Drift, EventSchema, Feature, FeatureGroup, Field, FieldType, Range,
                        row_expression, row_function)
from transforms.schema import finite_non_negative, non_empty

RIDES = EventSchema(
    name="rides",
    version=3,
    fields=(
        Field("ride_id", FieldType.STRING, non_empty),
        Field("driver", FieldType.STRING, non_empty),
        Field("city", FieldType.STRING, non_empty),
        Field("vehicle", FieldType.INT64),
        Field("fare", FieldType.FLOAT64, finite_non_negative),
        Field("km", FieldType.FLOAT64, finite_non_negative),
        Field("riders", FieldType.INT64),
        Field("surge", FieldType.BOOL),
        Field("promo", FieldType.STRING, required=False),
        Field("tip", FieldType.FLOAT64, required=False),
        Field("ts", FieldType.TIMESTAMP_MS),
    ),
    event_id="ride_id",
    entity_keys=("driver", "city", "vehicle"),
    event_time="ts",
)


@row_function(FieldType.FLOAT64)
def fare_per_km(fare, km):
    """Fare per kilometre, a ride under 100 m counted as 100 m."""
    return np.asarray(fare, dtype=np.float64) / np.maximum(np.asarray(km, dtype=np.float64), 0.1)


@row_expression
def minute_of_hour(ts):
    return ts // 60_000 % 60


DRIVER = FeatureGroup("driver", "driver", (  # serving: fresh for 10 minutes, served up to an hour old
    Feature("driver_rides_5m", Agg.COUNT, "5m", default=0),
    Feature("driver_riders_30m", Agg.SUM, "30m", of="riders", default=-1),
    Feature("driver_max_riders_2h", Agg.MAX, "2h", of="riders", max_staleness="3h"),  # overrides the group's
    Feature("driver_min_fare_30m", Agg.MIN, "30m", of="fare", default=0.0),
    Feature("driver_last_riders_2h", Agg.LAST, "2h", of="riders"),
    Feature("driver_cities_2h", Agg.DISTINCT_COUNT, "2h", of="city", default=0),
    Feature("driver_fare_per_km_avg_30m", Agg.MEAN, "30m", of="fare_per_km", fresh_for="90s", default=-1.5),
), description="Driver activity", fresh_for="10m", max_staleness="1h")

DRIVER_DAY = FeatureGroup("driver_day", "driver", (  # a second group over the same key; no fresh_for: fresh
    Feature("driver_km_sum_1d", Agg.SUM, "1d", of="km"),  # until aged out at 2 days, no default
    Feature("driver_last_minute_1d", Agg.LAST, "1d", of="minute_of_hour"),
), max_staleness="2d")

CITY_DRIVER = FeatureGroup("city_driver", ("city", "driver"), (  # a composite key; stale after 30 minutes, never
    Feature("cd_rides_10m", Agg.COUNT, "10m"),                     # aged out (no max_staleness)
    Feature("cd_fare_sum_1h", Agg.SUM, "1h", of="fare", default=0.0),
    Feature("cd_tip_sum_1h", Agg.SUM, "1h", of="tip"),  # optional: null over a window of nulls
    Feature("cd_tip_avg_1h", Agg.MEAN, "1h", of="tip"),
    Feature("cd_tip_min_10m", Agg.MIN, "10m", of="tip"),
    Feature("cd_last_promo_1h", Agg.LAST, "1h", of="promo", default="none"),  # the latest non-null string
    Feature("cd_promos_1h", Agg.DISTINCT_COUNT, "1h", of="promo"),  # 0 over a window of nulls
    Feature("cd_last_surge_10m", Agg.LAST, "10m", of="surge", default=False, max_staleness="1d"),  # a bool
), description="A driver in a city", fresh_for="30m")

VEHICLE = FeatureGroup("vehicle", "vehicle", (  # an int64 key; no serving declarations: always fresh
    Feature("vehicle_rides_1h", Agg.COUNT, "1h"),
    Feature("vehicle_max_riders_1h", Agg.MAX, "1h", of="riders"),
    Feature("vehicle_last_driver_1h", Agg.LAST, "1h", of="driver"),
    Feature("vehicle_surges_1h", Agg.DISTINCT_COUNT, "1h", of="surge"),
))

#: Sparse optional fields and the features over them hold nulls by design: their completeness minimums are
#: declared below the 95 % default (measured: promo ~30 %, tip ~40 %, the tip features 44-51 %, last promo ~40 %
#: non-null); fare has rare absurd values (1e16), tolerated up to 5 %; its drift is watched, not blocking.
GATES = (
    Completeness(column="promo", min=0.2), Completeness(column="tip", min=0.3),
    *(Completeness(column=c, min=0.3) for c in ("cd_tip_sum_1h", "cd_tip_avg_1h", "cd_tip_min_10m")),
    Completeness(column="cd_last_promo_1h", min=0.25),
    Range(column="fare", min=0, max=1e6, max_outside=0.05, action="warn"),
    Drift(column="driver_fare_per_km_avg_30m", action="warn"),
)

CATALOG = Catalog(RIDES, (fare_per_km, minute_of_hour), (DRIVER, DRIVER_DAY, CITY_DRIVER, VEHICLE), GATES)


def rides(n: int, seed: int, start_ms: int) -> list[dict]:
    """Adversarial ride records in arrival order: hot and unicode keys, keys that concatenate alike (as
    single keys and as (city, driver) pairs: ("NY", "C12") and ("NYC", "12")), extreme int64 keys, nulls and
    absent optional fields, exact window edges, ties, disorder, duplicates and invalid records."""
    rng = np.random.default_rng(seed)
    drivers = ["d-hot", "NY", "NYC", "Zoë", "東京-7", "d1", "d12", "d 1", "C12", "12"]
    cities = ["NY", "C12", "NYC", "12", "Zürich", "東京"]
    vehicles = [0, 1, 12, 112, -1, -(2**63), 2**63 - 1, 2**53 + 1]
    promos = ["SPRING", "spring", "Zoë10", "", "東京"]
    records, t = [], start_ms
    for i in range(n):
        t += int(rng.choice([0, 1, 1_000, 60_000, 300_000, 1_800_000, int(rng.integers(0, 90_000))]))
        records.append({
            "ride_id": f"r{seed}-{i:05d}",
            "driver": drivers[0] if rng.random() < 0.4 else drivers[int(rng.integers(len(drivers)))],
            "city": cities[int(rng.integers(len(cities)))],
            "fare": float(np.round(rng.lognormal(2.5, 1.0), 2)) if rng.random() > 0.02 else 1e16,
            "km": float(np.round(rng.exponential(5.0), 3)),
            "vehicle": vehicles[int(rng.integers(len(vehicles)))],
            "riders": int(rng.integers(1, 7)),
            "surge": bool(rng.random() < 0.3),
            "ts": t,
        })
        roll = rng.random()  # optional fields: a value, null, or absent
        if roll < 0.3:
            records[-1]["promo"] = promos[int(rng.integers(len(promos)))]
        elif roll < 0.5:
            records[-1]["promo"] = None
        if rng.random() < 0.5:
            records[-1]["tip"] = float(np.round(rng.exponential(3.0), 2)) if rng.random() < 0.8 else None
    out = []
    for rec in records:
        roll = rng.random()
        if roll < 0.05:  # arrives late: somewhere later in the stream
            out.insert(len(out) - int(rng.integers(0, min(len(out), 40) + 1)), rec)
            continue
        out.append(rec)
        if roll < 0.08:
            out.append(dict(rec))  # a retry
        elif roll < 0.10:
            out.append({**rec, "ride_id": rec["ride_id"] + "-bad", "riders": "two"})  # wrong type
        elif roll < 0.095:
            out.append({**rec, "ride_id": rec["ride_id"] + "-bad", "surge": 1})  # a bool must be true or false
        elif roll < 0.11:
            out.append({k: v for k, v in rec.items() if k != "city"} | {"ride_id": rec["ride_id"] + "-nocity"})
    return out
