"""The parity comparison on its own (no engines): it must pass correct outputs and catch every tampering.

The "engine outputs" here are the reference's rows, then altered by hand; the
expected classifications are worked out by hand from the six records below.
"""

import copy
import json
import math

import pytest

from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from tandem.parity.compare import PathOutput, compare, references, same
from tests.factories import NOON, tx

LATENESS = 5_000


def records():
    return [
        tx("a", t=NOON + 10_000, amount=1.0),
        tx("late", t=NOON, amount=4.0),  # 10 s behind "a": late for the stream, in a's and b's windows
        tx("b", t=NOON + 20_000, amount=1.0),
        tx("c", user="u2", merchant="m2", t=NOON + 30_000, amount=2.0),
        tx("c", user="u2", merchant="m2", t=NOON + 30_000, amount=9.0),  # a retry: duplicate
        tx("bad", amount=-1.0),  # invalid
    ]


@pytest.fixture(scope="module")
def refs():
    return references(records(), LATENESS, TRANSACTIONS)


def outputs(refs):
    """Perfect engines: exactly the reference's rows and rejections, deep-copied for tampering."""
    batch = PathOutput(copy.deepcopy(refs.batch.rows), [(r.event_id, r.reason) for r in refs.batch.rejected])
    stream = PathOutput(copy.deepcopy(refs.stream.rows), [(r.event_id, r.reason) for r in refs.stream.rejected])
    return batch, stream


def row(path, tid):
    return next(r for r in path.rows if r["transaction_id"] == tid)


def col(comparison, name):
    return next(c for c in comparison.columns if c.name == name)


def test_correct_outputs_pass_and_the_late_event_explains_every_difference(refs):
    batch, stream = outputs(refs)
    assert row(batch, "b")["user_txn_count_10m"] == 3 and row(stream, "b")["user_txn_count_10m"] == 2  # by hand
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert c.passed and c.unexplained == 0 and c.issues == []
    assert c.confirmed_late == ["late"] and c.events_compared == 4  # a, late, b, c
    count = col(c, "user_txn_count_10m")
    # a and b differ (the late event is in both windows), "late" has no stream row, c is untouched
    assert (count.rows, count.exact, count.explained, count.unexplained, count.differing) == (4, 1, 3, 0, 2)
    assert count.largest_difference == 1.0  # 2 vs 1 and 3 vs 2
    peak = col(c, "user_amount_max_24h")  # batch sees 4.0 in a's and b's windows, the stream 1.0
    assert (peak.explained, peak.differing, peak.largest_difference) == (3, 2, 0.75)
    merchants = col(c, "user_distinct_merchants_24h")  # one merchant either way: only the missing row differs
    assert (merchants.exact, merchants.explained, merchants.differing) == (3, 1, 0)
    assert (col(c, "user_id").exact, col(c, "user_id").explained) == (3, 1)


def test_one_ulp_in_one_stream_sum_is_caught_and_measured(refs):
    batch, stream = outputs(refs)
    row(stream, "c")["user_amount_sum_24h"] = math.nextafter(2.0, math.inf)
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert not c.passed and c.unexplained == 1
    s = col(c, "user_amount_sum_24h")
    assert (s.unexplained, s.explained, s.differing, s.stream_vs_reference) == (1, 3, 3, 1)
    assert s.largest_unexplained_difference == pytest.approx(2.0 ** -52, rel=1e-3)
    [m] = c.examples("user_amount_sum_24h")
    assert (m.event_id, m.stream, m.batch) == ("c", math.nextafter(2.0, math.inf), 2.0)
    assert "stream differs from the reference" in m.why


def test_a_wrong_value_is_not_excused_by_a_late_event_in_its_window(refs):
    batch, stream = outputs(refs)
    row(stream, "b")["user_txn_count_1h"] = 7  # b's window does hold the late event: still wrong
    row(stream, "b")["user_txn_count_10m"] = 3  # equal to batch, but the stream must not have folded "late"
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert col(c, "user_txn_count_1h").unexplained == 1 and col(c, "user_txn_count_10m").unexplained == 1
    assert not c.passed


def test_a_late_event_the_stream_did_not_report_explains_nothing(refs):
    batch, stream = outputs(refs)
    stream = PathOutput(stream.rows, [(i, reason) for i, reason in stream.rejected if reason != "late"])
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert [i.kind for i in c.issues] == ["late_unreported"]
    count = col(c, "user_txn_count_10m")
    assert (count.explained, count.unexplained) == (0, 3)  # the lost row and both rows it changed
    assert col(c, "user_id").unexplained == 1


def test_a_silently_lost_row_is_unexplained_in_every_column(refs):
    batch, stream = outputs(refs)
    stream.rows.remove(row(stream, "c"))
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert all(x.unexplained == 1 for x in c.columns)
    assert "no stream row for an on-time event" in c.examples("user_id")[0].why


def test_both_paths_wrong_the_same_way_is_caught(refs):
    batch, stream = outputs(refs)
    row(batch, "c")["amount_log1p"] = row(stream, "c")["amount_log1p"] = 0.5
    c = compare(batch, stream, refs, TRANSACTIONS)
    a = col(c, "amount_log1p")
    assert (a.unexplained, a.differing, a.batch_vs_reference, a.stream_vs_reference) == (1, 0, 1, 1)


@pytest.mark.parametrize("column, value", [("user_txn_count_1h", 1.0), ("is_night", False)], ids=["int-as-float", "int-as-bool"])
def test_types_must_match_not_just_values(refs, column, value):
    batch, stream = outputs(refs)
    assert row(stream, "c")[column] == value  # equal as Python numbers...
    row(stream, "c")[column] = value
    assert col(compare(batch, stream, refs, TRANSACTIONS), column).unexplained == 1  # ...but not the same value


def test_bitwise_equality():
    assert same(1.5, 1.5) and same(math.inf, math.inf) and same("ü", "ü")
    assert not same(0.0, -0.0) and not same(1, 1.0) and not same(True, 1) and not same(math.nan, -math.nan)


def test_rows_written_twice_and_rejections_that_differ_are_issues(refs):
    batch, stream = outputs(refs)
    stream.rows.append(dict(row(stream, "a")))
    batch = PathOutput(batch.rows, [(i, reason) for i, reason in batch.rejected if reason != "duplicate"])
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert sorted(i.kind for i in c.issues) == ["rejections_differ", "rows_written_twice"]
    assert all(x.unexplained == 0 for x in c.columns) and c.unexplained == 2 and not c.passed


def test_a_row_for_an_invalid_record_is_unexplained(refs):
    batch, stream = outputs(refs)
    stream.rows.append(dict(row(stream, "a"), transaction_id="bad"))
    c = compare(batch, stream, refs, TRANSACTIONS)
    assert col(c, "user_id").unexplained == 1
    assert "reference says is late or rejected" in c.examples("user_id")[0].why


def test_reports_carry_the_unexplained_example_with_its_window(refs, tmp_path):
    from tandem.parity import html, report
    from tandem.parity.run import ParityRun

    batch, stream = outputs(refs)
    row(stream, "b")["user_amount_sum_1h"] = math.inf
    run = ParityRun(tmp_path / "e.jsonl", tmp_path, LATENESS, 6, compare(batch, stream, refs, TRANSACTIONS))
    doc = json.loads(json.dumps(report.to_json(run), allow_nan=False))  # strict JSON: inf is spelled out
    assert doc["verdict"] == "fail" and doc["unexplained"] == 1
    [example] = doc["columns"]["user_amount_sum_1h"]["unexplained_examples"]
    assert (example["transaction_id"], example["stream"], example["batch"]) == ("b", "inf", 6.0)
    assert [(e["transaction_id"], e["late"]) for e in example["window"]] == [("late", True), ("a", False), ("b", False)]
    page = html.render(run)
    assert "FAIL" in page and "<svg" in page
    assert "stream differs from the reference</p>" in page and "3 events in its window [t − 1h, t] of u1" in page
