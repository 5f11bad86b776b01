"""Serving declarations in the catalog (transforms/budgets.py): budgets, defaults, and what is refused when declared."""

import dataclasses

import pytest

from tests.catalogs.rides import CATALOG as RIDES, RIDES as SCHEMA
from transforms import Agg, Catalog, Feature, FeatureGroup
from transforms.budgets import Budget

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def budget(catalog, name):
    group, feature = next((g, f) for g, f in catalog.features if f.name == name)
    return group.budget(feature)


def with_groups(*groups):
    return dataclasses.replace(RIDES, groups=groups, gates=())


def test_a_feature_inherits_each_duration_from_its_group_unless_it_declares_its_own():
    assert budget(RIDES, "driver_rides_5m") == Budget(10 * MIN, HOUR)  # the group's two
    assert budget(RIDES, "driver_max_riders_2h") == Budget(10 * MIN, 3 * HOUR)  # its own max, the group's fresh
    assert budget(RIDES, "driver_fare_per_km_avg_30m") == Budget(90_000, HOUR)  # its own fresh, the group's max
    assert budget(RIDES, "driver_km_sum_1d") == Budget(None, 2 * DAY)  # no fresh_for: no freshness bound
    assert budget(RIDES, "cd_rides_10m") == Budget(30 * MIN, None)  # no max_staleness: never aged out
    assert budget(RIDES, "cd_last_surge_10m") == Budget(30 * MIN, DAY)
    assert budget(RIDES, "vehicle_rides_1h") == Budget(None, None)  # nothing declared


def test_defaults_of_every_type_are_kept_as_declared():
    defaults = {f.name: f.default for _, f in RIDES.features}
    assert defaults["driver_rides_5m"] == 0 and type(defaults["driver_rides_5m"]) is int
    assert defaults["driver_min_fare_30m"] == 0.0 and type(defaults["driver_min_fare_30m"]) is float
    assert defaults["cd_last_promo_1h"] == "none"
    assert defaults["cd_last_surge_10m"] is False
    assert defaults["vehicle_rides_1h"] is None


@pytest.mark.parametrize("kw, text", [
    ({"fresh_for": "2h", "max_staleness": "1h"}, "feature f: fresh_for 2h is longer than max_staleness 1h"),
    ({"fresh_for": "soon"}, "feature f: fresh_for: invalid duration 'soon'"),
    ({"max_staleness": "1.5h"}, "feature f: max_staleness: invalid duration '1.5h'"),
    ({"fresh_for": "0s"}, "feature f: fresh_for must be longer than 0"),
    ({"max_staleness": 60}, "feature f: max_staleness: invalid duration 60"),
])
def test_a_feature_with_bad_durations_is_refused_where_it_is_declared(kw, text):
    with pytest.raises(ValueError) as e:
        Feature("f", Agg.COUNT, "1h", **kw)
    assert text in str(e.value)


def test_a_group_with_bad_durations_is_refused():
    with pytest.raises(ValueError, match="group g: fresh_for 2d is longer than max_staleness 1d"):
        FeatureGroup("g", "driver", (Feature("f", Agg.COUNT, "1h"),), fresh_for="2d", max_staleness="1d")
    with pytest.raises(ValueError, match="group g: max_staleness: invalid duration"):
        FeatureGroup("g", "driver", (Feature("f", Agg.COUNT, "1h"),), max_staleness="a day")


def test_a_features_own_duration_that_crosses_its_groups_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"feature f \(group g\): fresh_for 2d is longer than max_staleness 1d"):
        FeatureGroup("g", "driver", (Feature("f", Agg.COUNT, "1h", fresh_for="2d"),), max_staleness="1d")
    with pytest.raises(ValueError, match=r"feature f \(group g\): fresh_for 1h is longer than max_staleness 30m"):
        FeatureGroup("g", "driver", (Feature("f", Agg.COUNT, "1h", max_staleness="30m"),), fresh_for="1h")


@pytest.mark.parametrize("agg, of, default, text", [
    (Agg.COUNT, None, True, "default is bool True, but the feature is int64"),  # a bool is not an int64
    (Agg.COUNT, None, 1.0, "default is float 1.0, but the feature is int64"),
    (Agg.COUNT, None, "0", "default is str '0', but the feature is int64"),
    (Agg.COUNT, None, 2**63, "default is an int64 beyond its range"),
    (Agg.MEAN, "fare", 0, "default is int 0, but the feature is float64: declare a value of that type, e.g. "
                          "default=0.0"),
    (Agg.MIN, "fare", float("nan"), "default is NaN, but the feature is float64"),
    (Agg.LAST, "promo", 5, "default is int 5, but the feature is string"),
    (Agg.LAST, "surge", 0, "default is int 0, but the feature is bool: declare a value of that type, e.g. "
                           "default=False"),
    (Agg.MAX, "riders", 1.5, "default is float 1.5, but the feature is int64"),  # the column's type: int64
])
def test_a_default_not_of_the_features_type_is_refused_by_the_catalog(agg, of, default, text):
    group = FeatureGroup("driver", "driver", (Feature("f", agg, "1h", of=of, default=default),))
    with pytest.raises(ValueError) as e:
        Catalog(SCHEMA, RIDES.row_functions, (group,))
    assert str(e.value).startswith("feature f: ") and text in str(e.value)


@pytest.mark.parametrize("agg, of, default", [
    (Agg.COUNT, None, -(2**63)), (Agg.COUNT, None, 2**63 - 1), (Agg.MEAN, "fare", float("inf")),
    (Agg.LAST, "promo", ""), (Agg.LAST, "surge", True), (Agg.DISTINCT_COUNT, "promo", 0),
    (Agg.SUM, "riders", -7), (Agg.LAST, "fare_per_km", -0.0),
])
def test_a_default_of_the_features_type_is_accepted(agg, of, default):
    group = FeatureGroup("driver", "driver", (Feature("f", agg, "1h", of=of, default=default),))
    assert Catalog(SCHEMA, RIDES.row_functions, (group,)).groups[0].features[0].default == default


def test_nothing_declared_is_no_bound_and_no_default():
    group = FeatureGroup("driver", "driver", (Feature("f", Agg.COUNT, "1h"),))
    catalog = with_groups(group)
    assert catalog.groups[0].budget(catalog.groups[0].features[0]) == Budget(None, None)
    assert catalog.groups[0].features[0].default is None
