"""The reference evaluator against hand-computed cases: the ground truth must be right first."""

import math

import pytest

from tandem.reference import evaluate
from tests.factories import HOUR, MIN, NOON, T0, by_id, tx
from transforms import Agg, Catalog, EventSchema, Feature, FeatureGroup, Field, FieldType
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from transforms.schema import Undecodable


def rows_of(records, **kw):
    return by_id(evaluate(records, TRANSACTIONS, **kw).rows)


# Windows: [t - W, t], both ends inclusive, peers included ---------------------


def test_event_exactly_w_after_another_is_in_its_window():
    rows = rows_of([tx("a", t=NOON), tx("b", t=NOON + 10 * MIN)])
    assert rows["b"]["user_txn_count_10m"] == 2
    assert rows["a"]["user_txn_count_10m"] == 1  # windows look back, never forward


def test_event_w_plus_1ms_after_another_is_not():
    rows = rows_of([tx("a", t=NOON), tx("b", t=NOON + 10 * MIN + 1)])
    assert rows["b"]["user_txn_count_10m"] == 1
    assert rows["b"]["user_txn_count_1h"] == 2


def test_each_window_length_has_its_own_edge():
    events = [tx("a", t=NOON - 24 * HOUR, amount=5.0), tx("b", t=NOON - HOUR, amount=7.0), tx("c", t=NOON, amount=11.0)]
    c = rows_of(events)["c"]
    assert (c["user_txn_count_10m"], c["user_txn_count_1h"], c["user_txn_count_24h"]) == (1, 2, 3)
    assert (c["user_amount_sum_1h"], c["user_amount_sum_24h"]) == (18.0, 23.0)
    assert c["user_amount_max_24h"] == 11.0
    assert c["user_amount_avg_7d"] == 23.0 / 3


def test_events_in_the_same_millisecond_are_peers_and_see_each_other():
    rows = rows_of([tx("a", t=NOON, amount=1.0), tx("b", t=NOON, amount=2.0), tx("c", t=NOON, amount=4.0)])
    for tid in "abc":
        assert rows[tid]["user_txn_count_10m"] == 3
        assert rows[tid]["user_amount_sum_1h"] == 7.0
        assert rows[tid]["user_amount_max_24h"] == 4.0


def test_windows_are_per_entity():
    rows = rows_of([tx("a", user="u1", merchant="m1"), tx("b", user="u2", merchant="m1", t=NOON + 1)])
    assert rows["b"]["user_txn_count_1h"] == 1
    assert rows["b"]["merchant_txn_count_1h"] == 2


def test_arrival_order_does_not_change_any_feature():
    events = [tx("a", t=NOON, amount=1e16), tx("b", t=NOON + 1, amount=1.0), tx("c", t=NOON + 2, amount=1.0),
              tx("d", t=NOON + 3, amount=0.1), tx("e", t=NOON + 3, amount=0.2)]
    forward, backward = evaluate(events, TRANSACTIONS).rows, evaluate(events[::-1], TRANSACTIONS).rows
    assert by_id(forward) == by_id(backward)


def test_distinct_merchants_counts_each_merchant_once():
    rows = rows_of([tx("a", merchant="m1"), tx("b", merchant="m2", t=NOON + 1), tx("c", merchant="m1", t=NOON + 2)])
    assert rows["c"]["user_distinct_merchants_24h"] == 2


def test_merchant_features():
    rows = rows_of([tx("a", user="u1", merchant="m9", amount=10.0, t=NOON - 2 * HOUR),
                    tx("b", user="u2", merchant="m9", amount=20.0, t=NOON)])
    assert rows["b"]["merchant_txn_count_1h"] == 1
    assert rows["b"]["merchant_amount_avg_24h"] == 15.0


# Numbers ----------------------------------------------------------------------


def test_sums_are_correctly_rounded_exact_sums_not_running_double_sums():
    # Measured on Spark: 1e16 + 1 + 1 as a running double sum is 1e16; the exact sum rounds to 1e16 + 2.
    rows = rows_of([tx("a", amount=1e16), tx("b", amount=1.0, t=NOON + 1), tx("c", amount=1.0, t=NOON + 2)])
    assert rows["c"]["user_amount_sum_1h"] == 1.0000000000000002e16
    assert rows["c"]["user_amount_avg_7d"] == 1.0000000000000002e16 / 3


def test_sum_after_a_large_value_leaves_the_window_is_not_negative():
    # The Flink retraction failure (bounded OVER SUM): the true sum is 0.1 + 0.2.
    rows = rows_of([tx("a", amount=1e16), tx("b", amount=1.0, t=NOON + 1),
                    tx("d", amount=0.1, t=NOON + HOUR + 2), tx("e", amount=0.2, t=NOON + HOUR + 3)])
    assert rows["e"]["user_amount_sum_1h"] == 0.30000000000000004


def test_amount_zero():
    rows = rows_of([tx("a", amount=0.0), tx("b", amount=0, t=NOON + 1)])
    assert rows["b"]["amount_log1p"] == 0.0
    assert rows["b"]["user_amount_sum_1h"] == 0.0
    assert rows["b"]["user_amount_max_24h"] == 0.0
    assert rows["b"]["user_amount_avg_7d"] == 0.0
    assert math.copysign(1, rows["b"]["user_amount_max_24h"]) == 1


def test_negative_zero_amount_is_read_as_zero():
    row = rows_of([tx("a", amount=-0.0)])["a"]
    assert math.copysign(1, row["user_amount_max_24h"]) == 1.0


def test_very_large_amounts_overflow_the_sum_to_inf_but_keep_max():
    rows = rows_of([tx("a", amount=1e308), tx("b", amount=1e308, t=NOON + 1)])
    assert rows["a"]["user_amount_sum_1h"] == 1e308
    assert rows["b"]["user_amount_sum_1h"] == math.inf
    assert rows["b"]["user_amount_avg_7d"] == math.inf  # mean = sum / count (docs/semantics.md)
    assert rows["b"]["user_amount_max_24h"] == 1e308
    assert rows["b"]["amount_log1p"] == pytest.approx(709.196208642166, rel=1e-15)


def test_largest_finite_amount_is_accepted():
    rows = rows_of([tx("a", amount=1.7976931348623157e308)])
    assert rows["a"]["user_amount_max_24h"] == 1.7976931348623157e308


# Row functions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, night",
    [(0, 1), (6 * HOUR - 1, 1), (6 * HOUR, 0), (5 * HOUR + 59 * MIN, 1), (24 * HOUR - 1, 0), (24 * HOUR, 1)],
    ids=["00:00:00.000", "05:59:59.999", "06:00:00.000", "05:59", "23:59:59.999", "next-midnight"],
)
def test_is_night_hour_boundaries(offset, night):
    assert rows_of([tx("a", t=T0 + offset)])["a"]["is_night"] == night


def test_night_count_sums_is_night_over_24h():
    events = [tx("a", t=T0 + HOUR), tx("b", t=T0 + 5 * HOUR), tx("c", t=T0 + 7 * HOUR)]
    assert rows_of(events)["c"]["user_night_txn_count_24h"] == 2


def test_is_night_follows_utc_not_the_written_offset():
    # 01:30 at +02:00 is 23:30 UTC the day before: not night.
    assert rows_of([tx("a", t="2024-05-01T01:30:00+02:00")])["a"]["is_night"] == 0


def test_amount_log1p():
    assert rows_of([tx("a", amount=math.e - 1)])["a"]["amount_log1p"] == pytest.approx(1.0, rel=1e-15)
    assert rows_of([tx("a", amount=1e-20)])["a"]["amount_log1p"] == 1e-20  # log1p, not log(1 + x)


# Duplicates -------------------------------------------------------------------


def test_duplicate_is_counted_once_and_the_first_copy_wins():
    result = evaluate([tx("a", amount=5.0), tx("a", amount=500.0, t=NOON + 1), tx("b", t=NOON + 2)], TRANSACTIONS)
    rows = by_id(result.rows)
    assert set(rows) == {"a", "b"}
    assert rows["a"]["user_amount_max_24h"] == 5.0
    assert rows["b"]["user_txn_count_1h"] == 2
    [dup] = result.rejected
    assert (dup.event_id, dup.reason, dup.position) == ("a", "duplicate", 1)


def test_invalid_record_does_not_claim_its_event_id():
    result = evaluate([tx("a", amount=-1.0), tx("a", amount=3.0, t=NOON + 1)], TRANSACTIONS)
    assert [r["amount_log1p"] for r in result.rows] == [math.log1p(3.0)]
    assert [r.reason for r in result.rejected] == ["invalid"]


# Invalid records: every kind goes to the rejections, with its reason -----------


INVALID_CASES = {
    "missing field": (lambda r: r.pop("amount"), "missing_field", "amount"),
    "null key": (lambda r: r.update(user_id=None), "missing_field", "user_id"),
    "amount as string": (lambda r: r.update(amount="12.5"), "wrong_type", "amount"),
    "amount as bool": (lambda r: r.update(amount=True), "wrong_type", "amount"),
    "user id as number": (lambda r: r.update(user_id=42), "wrong_type", "user_id"),
    "event time as float": (lambda r: r.update(event_time=1.7e12), "wrong_type", "event_time"),
    "negative amount": (lambda r: r.update(amount=-0.01), "out_of_domain", "amount"),
    "nan amount": (lambda r: r.update(amount=float("nan")), "out_of_domain", "amount"),
    "infinite amount": (lambda r: r.update(amount=float("inf")), "out_of_domain", "amount"),
    "int amount beyond 2**53": (lambda r: r.update(amount=2**53 + 1), "out_of_domain", "amount"),
    "lower-case currency": (lambda r: r.update(currency="usd"), "out_of_domain", "currency"),
    "4-letter currency": (lambda r: r.update(currency="USDT"), "out_of_domain", "currency"),
    "empty event id": (lambda r: r.update(transaction_id=""), "out_of_domain", "transaction_id"),
    "empty merchant": (lambda r: r.update(merchant_id=""), "out_of_domain", "merchant_id"),
    "event time at epoch 0": (lambda r: r.update(event_time=0), "out_of_domain", "event_time"),
    "event time in 2100": (lambda r: r.update(event_time=4_102_444_800_000), "out_of_domain", "event_time"),
    "sub-millisecond time": (lambda r: r.update(event_time="2024-05-01T00:00:00.0001Z"), "unparseable", "event_time"),
    "time without offset": (lambda r: r.update(event_time="2024-05-01T00:00:00"), "unparseable", "event_time"),
    "time that is not a date": (lambda r: r.update(event_time="2024-02-30T00:00:00Z"), "unparseable", "event_time"),
    "time as prose": (lambda r: r.update(event_time="yesterday"), "unparseable", "event_time"),
    "unknown field": (lambda r: r.update(card_number="4111"), "unknown_field", "card_number"),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_every_invalid_kind_is_rejected_with_its_reason(case):
    corrupt, kind, field = INVALID_CASES[case]
    bad = tx("bad")
    corrupt(bad)
    result = evaluate([tx("good", t=NOON - 1), bad], TRANSACTIONS)
    assert [r["transaction_id"] for r in result.rows] == ["good"]
    [rej] = result.rejected
    assert (rej.reason, rej.kind, rej.position) == ("invalid", kind, 1)
    assert field in rej.detail
    assert rej.raw is bad


def test_undecodable_and_non_object_records_are_rejected_not_dropped():
    result = evaluate([Undecodable("{oops", "line 1: not valid JSON"), [1, 2], "text", tx("a")], TRANSACTIONS)
    assert [r.kind for r in result.rejected] == ["unparseable"] * 3
    assert result.rejected[0].detail == "line 1: not valid JSON"
    assert result.counts == {"accepted": 1, "invalid": 3}
    assert result.records_in == 4


def test_iso_and_epoch_times_are_the_same_instant():
    rows = rows_of([tx("a", t="2024-05-01T12:00:00.250Z"), tx("b", t=NOON + 250),
                    tx("c", t="2024-05-01T14:00:00.250+02:00")])
    assert {r["event_time"] for r in rows.values()} == {NOON + 250}
    assert rows["a"]["user_txn_count_10m"] == 3


# Lateness (stream semantics) ---------------------------------------------------


def test_event_exactly_allowed_lateness_behind_is_on_time_one_more_ms_is_late():
    events = [tx("a", t=NOON + 5000), tx("on-time", t=NOON), tx("late", t=NOON - 1)]
    result = evaluate(events, TRANSACTIONS, allowed_lateness_ms=5000)
    assert [r["transaction_id"] for r in result.rows] == ["a", "on-time"]
    [late] = result.rejected
    assert (late.event_id, late.reason) == ("late", "late")
    # The batch path sees every valid event.
    assert evaluate(events, TRANSACTIONS).counts["accepted"] == 3


def test_late_events_are_not_folded_into_windows():
    events = [tx("a", t=NOON), tx("b", t=NOON + 10_000), tx("late", t=NOON + 1000), tx("c", t=NOON + 10_001)]
    rows = by_id(evaluate(events, TRANSACTIONS, allowed_lateness_ms=5000).rows)
    assert rows["c"]["user_txn_count_10m"] == 3
    assert by_id(evaluate(events, TRANSACTIONS).rows)["c"]["user_txn_count_10m"] == 4


def test_watermark_is_the_max_over_accepted_events_only():
    # The invalid record's far-future time and the duplicate must not advance the watermark.
    events = [tx("a", t=NOON), tx("x", t=NOON + HOUR, amount=-1.0), tx("b", t=NOON - 4000)]
    assert evaluate(events, TRANSACTIONS, allowed_lateness_ms=5000).counts == {"accepted": 2, "invalid": 1}


def test_a_duplicate_of_a_late_event_is_a_duplicate():
    events = [tx("a", t=NOON + 10_000), tx("late", t=NOON), tx("late", t=NOON)]
    result = evaluate(events, TRANSACTIONS, allowed_lateness_ms=1000)
    assert [r.reason for r in result.rejected] == ["late", "duplicate"]


# Other aggregations, through a catalog a user would write ----------------------


def test_min_last_and_int_sum_on_a_custom_catalog():
    group = FeatureGroup("user", "user_id", (
        Feature("min_amount_1h", Agg.MIN, "1h", of="amount"),
        Feature("last_merchant_1h", Agg.LAST, "1h", of="merchant_id"),
        Feature("night_sum_1h", Agg.SUM, "1h", of="is_night"),
    ))
    catalog = Catalog(TRANSACTIONS.schema, TRANSACTIONS.row_functions, (group,))
    events = [tx("b", t=T0, amount=3.0, merchant="mB"), tx("a", t=T0, amount=2.0, merchant="mA"),
              tx("c", t=T0 - 1, amount=1.0, merchant="mC")]
    rows = by_id(evaluate(events, catalog).rows)
    # Peers at T0: the last one is the greatest event id, "b", whatever the arrival order.
    assert rows["a"]["last_merchant_1h"] == rows["b"]["last_merchant_1h"] == "mB"
    assert rows["c"]["last_merchant_1h"] == "mC"
    assert rows["a"]["min_amount_1h"] == 1.0
    # a and b at 00:00 are night hours; c at 23:59:59.999 the day before is not.
    assert rows["a"]["night_sum_1h"] == 2 and isinstance(rows["a"]["night_sum_1h"], int)


def test_feature_row_has_exactly_the_design_columns():
    row = evaluate([tx("a")], TRANSACTIONS).rows[0]
    assert list(row) == [
        "transaction_id", "user_id", "merchant_id", "event_time", "amount_log1p", "is_night",
        "user_txn_count_10m", "user_txn_count_1h", "user_txn_count_24h", "user_amount_sum_1h",
        "user_amount_sum_24h", "user_amount_max_24h", "user_amount_avg_7d", "user_night_txn_count_24h",
        "user_distinct_merchants_24h", "merchant_txn_count_1h", "merchant_amount_avg_24h",
    ]


def test_no_records():
    result = evaluate([], TRANSACTIONS)
    assert (result.rows, result.rejected, result.records_in) == ([], [], 0)


# Optional fields, composite and int64 keys, every feature type -------------------------------------------

_SHOPS = EventSchema("visits", 1, (
    Field("vid", FieldType.STRING), Field("shop", FieldType.STRING), Field("aisle", FieldType.STRING),
    Field("till", FieldType.INT64), Field("coupon", FieldType.STRING, required=False),
    Field("spend", FieldType.FLOAT64, required=False), Field("member", FieldType.BOOL), Field("at", FieldType.TIMESTAMP_MS),
), event_id="vid", entity_keys=("shop", "aisle", "till"), event_time="at")
_SHOP_AISLE = FeatureGroup("shop_aisle", ("shop", "aisle"), (
    Feature("n", Agg.COUNT, "10m"),
    Feature("spend_sum", Agg.SUM, "10m", of="spend"),
    Feature("spend_avg", Agg.MEAN, "10m", of="spend"),
    Feature("spend_min", Agg.MIN, "10m", of="spend"),
    Feature("coupon_last", Agg.LAST, "10m", of="coupon"),
    Feature("coupons", Agg.DISTINCT_COUNT, "10m", of="coupon"),
    Feature("member_last", Agg.LAST, "10m", of="member"),
))
_TILL = FeatureGroup("till", "till", (Feature("till_n", Agg.COUNT, "10m"), Feature("till_max", Agg.MAX, "10m", of="till")))
_VISITS = Catalog(_SHOPS, (), (_SHOP_AISLE, _TILL))


def _visits(records):
    return {r["vid"]: r for r in evaluate(records, _VISITS).rows}


def _visit(vid, shop, aisle, t, till=7, member=False, **optional):
    return {"vid": vid, "shop": shop, "aisle": aisle, "till": till, "member": member, "at": t, **optional}


def test_aggregations_skip_nulls_and_a_window_of_nulls_is_null_or_zero():
    rows = _visits([
        _visit("a", "s", "x", NOON),  # coupon and spend absent
        _visit("b", "s", "x", NOON + MIN, coupon=None, spend=None),  # explicitly null
        _visit("c", "s", "x", NOON + 2 * MIN, coupon="", spend=2.5, member=True),  # "" is a value
        _visit("d", "s", "x", NOON + 3 * MIN, spend=None),
        _visit("e", "s", "x", NOON + 3 * MIN + 10 * MIN + 1),  # c and d out of its window
    ])
    assert [rows["a"][f] for f in ("n", "spend_sum", "spend_avg", "spend_min", "coupon_last", "coupons")] == \
        [1, None, None, None, None, 0]
    assert rows["b"]["n"] == 2 and rows["b"]["spend_sum"] is None and rows["b"]["coupons"] == 0
    assert (rows["c"]["spend_sum"], rows["c"]["spend_avg"], rows["c"]["coupon_last"], rows["c"]["coupons"]) == \
        (2.5, 2.5, "", 1)
    # d's own values are null: last falls back to c's, the mean divides by the one non-null value
    assert (rows["d"]["n"], rows["d"]["spend_avg"], rows["d"]["coupon_last"], rows["d"]["member_last"]) == \
        (4, 2.5, "", False)
    assert rows["c"]["member_last"] is True
    assert (rows["e"]["n"], rows["e"]["spend_sum"], rows["e"]["coupon_last"]) == (1, None, None)


def test_last_ties_on_time_take_the_greatest_event_id_that_has_a_value():
    rows = _visits([_visit("p2", "s", "x", NOON, coupon="two"), _visit("p1", "s", "x", NOON, coupon="one"),
                           _visit("p3", "s", "x", NOON)])
    assert {rows[i]["coupon_last"] for i in ("p1", "p2", "p3")} == {"two"}  # p3 is greatest but has none


def test_composite_keys_whose_parts_concatenate_alike_are_two_entities():
    rows = _visits([_visit("a", "NY", "C12", NOON, till=1), _visit("b", "NYC", "12", NOON, till=11),
                           _visit("c", "NY", "C12", NOON + 1, till=111)])
    assert (rows["a"]["n"], rows["b"]["n"], rows["c"]["n"]) == (1, 1, 2)
    assert (rows["c"]["till_n"], rows["c"]["till_max"]) == (1, 111)  # int64 keys: 1, 11 and 111 apart too
