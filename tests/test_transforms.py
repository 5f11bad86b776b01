"""The catalog declarations, durations, row functions and schema checks of transforms/."""

import re

import numpy as np
import pytest

from transforms import (
    Agg, Catalog, EventSchema, Feature, FeatureGroup, Field, FieldType, format_duration, parse_duration, row_function,
)
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS, TRANSACTIONS_V1, amount_log1p, is_night
from transforms.schema import Invalid, format_timestamp_ms, parse_iso_timestamp_ms
from tests.factories import NOON, tx


@pytest.mark.parametrize("text, ms", [("500ms", 500), ("5s", 5000), ("2m", 120_000), ("1h", 3_600_000),
                                      ("7d", 604_800_000), (" 10m ", 600_000)])
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5", "1.5s", "-5s", "5 s", "5sec", "h", None])
def test_parse_duration_rejects_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match="e.g. 500ms, 5s"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(ms) for ms in (500, 5000, 600_000, 86_400_000, 90_000)] == ["500ms", "5s", "10m", "1d", "90s"]


def test_row_functions_are_vectorised_and_scalar_alike():
    amounts = np.array([0.0, 1.0, 1e-20, 1e308])
    assert amount_log1p(amounts).tolist() == [float(amount_log1p(a)) for a in amounts]
    times = np.array([NOON, NOON - 12 * 3_600_000])
    assert is_night(times).tolist() == [0, 1]
    assert amount_log1p.inputs == ("amount",) and is_night.inputs == ("event_time",)


def test_reference_catalog_is_the_design_catalog():
    windows = {f.name: (f.agg, f.window_ms, f.of) for _, f in TRANSACTIONS.features}
    H = 3_600_000
    assert windows == {
        "user_txn_count_10m": (Agg.COUNT, 600_000, None),
        "user_txn_count_1h": (Agg.COUNT, H, None),
        "user_txn_count_24h": (Agg.COUNT, 24 * H, None),
        "user_amount_sum_1h": (Agg.SUM, H, "amount"),
        "user_amount_sum_24h": (Agg.SUM, 24 * H, "amount"),
        "user_amount_max_24h": (Agg.MAX, 24 * H, "amount"),
        "user_amount_avg_7d": (Agg.MEAN, 7 * 24 * H, "amount"),
        "user_night_txn_count_24h": (Agg.SUM, 24 * H, "is_night"),
        "user_distinct_merchants_24h": (Agg.DISTINCT_COUNT, 24 * H, "merchant_id"),
        "merchant_txn_count_1h": (Agg.COUNT, H, None),
        "merchant_amount_avg_24h": (Agg.MEAN, 24 * H, "amount"),
    }
    assert [g.key for g in TRANSACTIONS.groups] == [("user_id",), ("merchant_id",)]


@pytest.mark.parametrize(
    "features, message",
    [
        ((Feature("x", Agg.SUM, "1h", of="nope"),), "unknown column 'nope'"),
        ((Feature("x", Agg.MAX, "1h", of="currency"),), "needs a numeric (int64 or float64) column"),
        ((Feature("x", Agg.COUNT, "1h"), Feature("x", Agg.COUNT, "2h")), "used twice"),
        ((Feature("amount", Agg.COUNT, "1h"),), "used twice"),
    ],
)
def test_a_malformed_catalog_is_refused_at_declaration(features, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Catalog(TRANSACTIONS_V1, TRANSACTIONS.row_functions, (FeatureGroup("user", "user_id", features),))


_ODD = EventSchema("odd", 1, (
    Field("id", FieldType.STRING), Field("name", FieldType.STRING), Field("score", FieldType.FLOAT64),
    Field("flag", FieldType.BOOL), Field("maybe", FieldType.INT64, required=False), Field("t", FieldType.TIMESTAMP_MS),
), event_id="id", entity_keys=("name", "score", "flag", "maybe"), event_time="t")
_COUNT = (Feature("n", Agg.COUNT, "1h"),)


@pytest.mark.parametrize("groups, row_functions, message", [
    ((FeatureGroup("g", ("name", "id"), _COUNT),), (), "key 'id' is not an entity key of odd"),
    ((FeatureGroup("g", "score", _COUNT),), (), "key 'score' is a float64 field; keys are required string or int64"),
    ((FeatureGroup("g", "flag", _COUNT),), (), "key 'flag' is a bool field"),
    ((FeatureGroup("g", ("name", "maybe"), _COUNT),), (), "key 'maybe' is an optional int64 field"),
    ((FeatureGroup("g", "name", _COUNT), FeatureGroup("g", "name", ())), (), "group name 'g' is used twice"),
    ((FeatureGroup("g", "name", (Feature("x", Agg.LAST, "1h", of="t"),)),), (),
     "last of 't', a timestamp_ms column"),
    ((FeatureGroup("g", "name", (Feature("x", Agg.SUM, "1h", of="flag"),)),), (), "sum needs a numeric"),
    ((), (row_function(FieldType.INT64)(lambda maybe: maybe),), "input 'maybe' is optional"),
])
def test_keys_types_and_optional_inputs_are_checked_at_declaration(groups, row_functions, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Catalog(_ODD, row_functions, groups)


def test_a_group_key_is_a_tuple_of_distinct_fields():
    assert FeatureGroup("g", "a", ()).key == ("a",)
    assert FeatureGroup("g", ["b", "a"], ()).key == ("b", "a")  # the order given
    for bad in ((), ("a", "a"), ("a", ""), 3):
        with pytest.raises(ValueError, match="key must be a field name or a tuple"):
            FeatureGroup("g", bad, ())


def test_a_feature_needs_a_valid_window_and_column():
    with pytest.raises(ValueError, match="needs a column"):
        Feature("x", Agg.SUM, "1h")
    with pytest.raises(ValueError, match="count takes no column"):
        Feature("x", Agg.COUNT, "1h", of="amount")
    with pytest.raises(ValueError, match="invalid duration"):
        Feature("x", Agg.COUNT, "1 hour")


def test_group_key_must_be_an_entity_key():
    with pytest.raises(ValueError, match="not an entity key"):
        Catalog(TRANSACTIONS_V1, (), (FeatureGroup("cur", "currency", (Feature("n", Agg.COUNT, "1h"),)),))


def test_validate_returns_the_typed_event():
    event = TRANSACTIONS_V1.validate(tx("a", amount=3, t="2024-05-01T12:00:00.007Z"))
    assert event == {"transaction_id": "a", "user_id": "u1", "merchant_id": "m1", "amount": 3.0,
                     "currency": "USD", "event_time": NOON + 7}
    assert isinstance(event["amount"], float)


def test_validate_reports_the_first_problem_in_schema_order():
    result = TRANSACTIONS_V1.validate({"transaction_id": "a"})
    assert isinstance(result, Invalid) and result.field == "user_id"
    assert result.detail == "required field 'user_id' is missing"


def test_iso_timestamps_round_trip_and_reject_what_would_be_truncated():
    assert parse_iso_timestamp_ms("1970-01-01T00:00:00.001Z") == 1
    assert parse_iso_timestamp_ms("2024-05-01T12:00:00.120000000Z") == NOON + 120
    assert "finer than a millisecond" in parse_iso_timestamp_ms("2024-05-01T12:00:00.1201Z")
    assert "not an ISO-8601" in parse_iso_timestamp_ms("2024-05-01 12:00:00Z")
    assert "invalid UTC offset" in parse_iso_timestamp_ms("2024-05-01T12:00:00+24:00")
    assert format_timestamp_ms(NOON + 5) == "2024-05-01T12:00:00.005Z"
    assert parse_iso_timestamp_ms(format_timestamp_ms(NOON + 5)) == NOON + 5


def test_a_bool_field_takes_true_or_false_only_and_an_optional_field_may_be_absent_or_null():
    schema = EventSchema("b", 1, (Field("id", FieldType.STRING), Field("ok", FieldType.BOOL),
                                  Field("note", FieldType.STRING, required=False), Field("t", FieldType.TIMESTAMP_MS)),
                         event_id="id", entity_keys=(), event_time="t")
    base = {"id": "x", "t": NOON}
    assert schema.validate({**base, "ok": False}) == {**base, "ok": False, "note": None}
    assert schema.validate({**base, "ok": True, "note": None})["note"] is None
    assert schema.validate({**base, "ok": True, "note": ""})["note"] == ""
    for wrong in (0, 1, "true", None):
        verdict = schema.validate({**base, "ok": wrong})
        assert isinstance(verdict, Invalid) and verdict.field == "ok"
        assert verdict.kind.value == ("missing_field" if wrong is None else "wrong_type")


def test_only_features_of_optional_fields_may_be_null():
    from tests.catalogs.rides import CATALOG as RIDES

    nullable = {name for name, _ in RIDES.feature_row_columns() if RIDES.may_be_null(name)}
    assert nullable == {"cd_tip_sum_1h", "cd_tip_avg_1h", "cd_tip_min_10m", "cd_last_promo_1h"}
