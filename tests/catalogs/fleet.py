"""A catalog for the online store and Feast tests, unlike the example in its keys and feature types.

A composite key (string ``city``, int64 ``driver_id``); a group keyed by the
int64 alone, named like its key column (so the view and the entity share a
name); a composite of two strings given out of Feast's (sorted) order,
``("zone", "city")``; features of every type a feature can have (string, bool,
int64, float64), over optional fields, so a window can hold no value: null.
Tests build its feature rows by hand; nothing of Tandem imports it.
"""

from transforms import Agg, Catalog, Completeness, EventSchema, Feature, FeatureGroup, Field, FieldType
from transforms.schema import non_empty

FLEET = EventSchema(
    name="fleet",
    version=1,
    fields=(
        Field("trip_id", FieldType.STRING, non_empty),
        Field("city", FieldType.STRING, non_empty),
        Field("driver_id", FieldType.INT64),
        Field("zone", FieldType.STRING, non_empty),
        Field("event_time", FieldType.TIMESTAMP_MS),
        Field("fare", FieldType.FLOAT64, required=False),
        Field("seats", FieldType.INT64, required=False),
        Field("vehicle", FieldType.STRING, required=False),
        Field("surge", FieldType.BOOL, required=False),
    ),
    event_id="trip_id",
    entity_keys=("city", "driver_id", "zone"),
    event_time="event_time",
)

CITY_DRIVER = FeatureGroup("city_driver", ("city", "driver_id"), (
    Feature("cd_trips_1h", Agg.COUNT, "1h"),
    Feature("cd_fare_sum_1h", Agg.SUM, "1h", of="fare"),
    Feature("cd_max_seats_1h", Agg.MAX, "1h", of="seats"),
    Feature("cd_last_vehicle_1h", Agg.LAST, "1h", of="vehicle"),
    Feature("cd_last_surge_1h", Agg.LAST, "1h", of="surge"),
))

DRIVER = FeatureGroup("driver_id", "driver_id", (
    Feature("d_fare_mean_1d", Agg.MEAN, "1d", of="fare"),
    Feature("d_last_vehicle_1d", Agg.LAST, "1d", of="vehicle"),
    Feature("d_last_surge_1d", Agg.LAST, "1d", of="surge"),
))

ZONE_CITY = FeatureGroup("zone_city", ("zone", "city"), (
    Feature("zc_trips_1h", Agg.COUNT, "1h"),
    Feature("zc_last_seats_1h", Agg.LAST, "1h", of="seats"),
))

#: The tests' hand-made feature rows are a quarter null at random (counts too): completeness warns, never blocks.
CATALOG = Catalog(FLEET, (), (CITY_DRIVER, DRIVER, ZONE_CITY), tuple(
    Completeness(column=f.name, min=0.75, action="warn") for g in (CITY_DRIVER, DRIVER, ZONE_CITY) for f in g.features))
