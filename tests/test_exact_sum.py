"""Exact window sums and means in real Spark and Flink equal math.fsum over the same window, per row.

One set of adversarial cases (one entity each) runs through one Spark window
query (``exact_sum`` / ``exact_mean``) and through Tandem's Flink window
operator (``FlinkWindowFeatures``, the stream path's), both over a 1 h window
``[t - 1h, t]``. The expected values are computed here, from ``math.fsum``
(``Fraction`` when fsum overflows), never from the code under test. Flink reads
the rows in a shuffled order with a watermark generous enough that nothing is
late, so its windows see rows arrive out of order and leave in time order
(exact removal). Both engines' native ``SUM`` runs beside them, as evidence
of why neither is used.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from pyspark.sql import functions as F

from batch_jobs.exact_sum import register_exact_sum as register_spark

H = 3_600_000
# Flink's bounded OVER windows silently drop rows with event time <= 0 (their
# "last triggering time" starts at 0), so the cases start at 2024-01-01.
T0 = 1_704_067_200_000
MAX = 1.7976931348623157e308

# Measured against native sums: 1e16, 1, 1, then 0.1 and 0.2 an hour later; true sums 1.1 and 0.30000000000000004.
STACK_NOTES = [(0, 1e16), (1, 1.0), (2, 1.0), (H + 2, 0.1), (H + 3, 0.2)]


def _random_case(rng: random.Random, n: int, span_ms: int) -> list[tuple[int, float]]:
    """Values of every scale and sign (cancellation, subnormals, money), clustered in time."""
    def value() -> float:
        kind = rng.randrange(6)
        if kind == 0:
            return round(rng.uniform(0, 500), 2)
        if kind == 1:
            return rng.uniform(-1, 1) * 10.0 ** rng.randint(-30, 30)
        if kind == 2:
            return rng.choice([1e16, -1e16, 1.0, 0.1, 2.0 ** -53])
        if kind == 3:
            return rng.uniform(-1, 1) * 1e300
        if kind == 4:
            return rng.choice([5e-324, -5e-324, 2.2250738585072014e-308])
        return math.ldexp(rng.random(), rng.randint(-1074, 1023))
    times = sorted(rng.randrange(span_ms) for _ in range(n))
    times += rng.sample(times, n // 10)  # ties in time
    return [(t, value()) for t in sorted(times)]


def _cases() -> dict[str, list[tuple[int, float]]]:
    """entity -> [(ms after T0, amount)]"""
    rng = random.Random(20240101)
    return {
        "stack_notes": STACK_NOTES,
        "huge_tiny": [(0, 1e308), (10, 1e308), (20, -1e308), (30, 5e-324), (H, 1e-300), (H + 10, 1e300),
                      (H + 15, -1e300), (H + 20, 1e-300), (2 * H + 11, 3.0), (2 * H + 30, 1e16)],
        "overflow_edge": [(0, MAX), (1, 2.0 ** 970), (1, -5e-324), (2, MAX), (H + 1, -MAX), (H + 2, 1.0),
                          (3 * H, 0.5)],
        "peers": [(0, 0.1)] * 7 + [(0, 1e16), (5, 0.7), (5, -1e16), (5, 0.3), (H, 0.2), (H, 0.2), (H + 5, 1.0)],
        "window_edge": [(0, 0.1), (H, 0.2), (H + 1, 0.3), (2 * H + 1, 0.4)],  # t - 1h is inside
        "cancel": [(i * 60_000, x) for i, x in enumerate([1e20, 3.14, -1e20, 1e-20, 2.71, -3.14] * 20)],
        "random_a": _random_case(rng, 400, 5 * H),
        "random_b": _random_case(rng, 250, 2 * H),
    }


def _rows() -> list[tuple[int, str, int, float]]:
    """(id, user_id, ts_ms, amount) for every case."""
    rows = []
    for user, events in _cases().items():
        for ms, amount in events:
            rows.append((len(rows), user, T0 + ms, amount))
    return rows


def _fsum(values: list[float]) -> float:
    """Correctly rounded exact sum, +-inf past the double range (the test's own oracle)."""
    try:
        return math.fsum(values)
    except OverflowError:
        total = sum(map(Fraction, values), Fraction(0))
        try:
            return float(total)
        except OverflowError:
            return math.inf if total > 0 else -math.inf


def _expected(rows) -> dict[int, tuple[float, float]]:
    """id -> (sum, mean) over the same user's rows with ts in [ts - 1h, ts], peers included."""
    out = {}
    for rid, user, ts, _ in rows:
        window = [a for _, u, t, a in rows if u == user and ts - H <= t <= ts]
        total = _fsum(window)
        out[rid] = (total, total / len(window))
    return out


def _same(a: float, b: float) -> bool:
    """Bit-identical (0.0 vs -0.0 differ; inf equals inf)."""
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


ROWS = _rows()
EXPECTED = _expected(ROWS)


@pytest.fixture(scope="module")
def spark_results(spark):
    """id -> (amount, exact_sum, exact_mean, native SUM) from one Spark window query."""
    register_spark(spark)
    shuffled = random.Random(1).sample(ROWS, len(ROWS))
    spark.createDataFrame(shuffled, "id long, user_id string, ts_ms long, amount double") \
        .repartition(3).createOrReplaceTempView("exact_sum_events")
    result = spark.sql(f"""
        SELECT id, amount, exact_sum(amount) OVER w AS s, exact_mean(amount) OVER w AS m, SUM(amount) OVER w AS native
        FROM exact_sum_events
        WINDOW w AS (PARTITION BY user_id ORDER BY ts_ms RANGE BETWEEN {H} PRECEDING AND CURRENT ROW)""")
    return {r.id: (r.amount, r.s, r.m, r.native) for r in result.collect()}


@pytest.fixture(scope="module")
def spark_prefix_results(spark, spark_results):
    """id -> (amount, sum, mean, None) through the prefix form the batch compiler uses:
    exact states up to t and before t - 1h, subtracted exactly."""
    result = spark.sql(f"""
        SELECT id, amount,
               exact_window_sum(exact_sum_state(amount) OVER upto, exact_sum_state(amount) OVER before) AS s,
               exact_window_mean(exact_sum_state(amount) OVER upto, exact_sum_state(amount) OVER before) AS m
        FROM exact_sum_events
        WINDOW upto AS (PARTITION BY user_id ORDER BY ts_ms RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
               before AS (PARTITION BY user_id ORDER BY ts_ms RANGE BETWEEN UNBOUNDED PRECEDING AND {H + 1} PRECEDING)""")
    return {r.id: (r.amount, r.s, r.m, None) for r in result.collect()}


@pytest.fixture(scope="module")
def flink_results(_flink_gateway, tmp_path_factory):
    """id -> (amount, sum, mean, native SUM): Tandem's window operator, and one native OVER query, rows shuffled."""
    from pyflink.java_gateway import get_gateway

    from stream_jobs.flink_env import build_table_env

    t_env = build_table_env(parallelism=1, streaming=True)
    path = tmp_path_factory.mktemp("exact_sum") / "events.csv"
    shuffled = random.Random(2).sample(ROWS, len(ROWS))
    path.write_text("".join(f"{rid},{user},{ts},{amount!r}\n" for rid, user, ts, amount in shuffled))
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE exact_sum_events (
            id BIGINT, user_id STRING, ts_ms BIGINT, amount DOUBLE,
            rt AS TO_TIMESTAMP_LTZ(ts_ms, 3),
            WATERMARK FOR rt AS rt - INTERVAL '1' DAY  -- > the data's span: nothing is late
        ) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')""")
    windows = get_gateway().jvm.dev.tandem.udf.FlinkWindowFeatures(f"order=id;s=sum/{H}/amount;m=mean/{H}/amount")
    t_env._j_tenv.createTemporarySystemFunction("exact_sum_windows", windows)
    operator = t_env.sql_query("""
        SELECT id, amount, s, m FROM exact_sum_windows(
            input => TABLE exact_sum_events PARTITION BY user_id, on_time => DESCRIPTOR(rt), uid => 'exact_sum')""")
    native = t_env.sql_query("""
        SELECT id, SUM(amount) OVER (PARTITION BY user_id ORDER BY rt
                                     RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW)
        FROM exact_sum_events""")
    with operator.execute().collect() as rows:
        results = {r[0]: tuple(r[1:]) for r in rows}
    with native.execute().collect() as rows:
        natives = {r[0]: r[1] for r in rows}
    return {rid: (*values, natives.get(rid)) for rid, values in results.items()}


def _mismatches(results) -> list[str]:
    bad = []
    for rid, _, ts, amount in ROWS:
        got_amount, got_sum, got_mean, _ = results[rid]
        want_sum, want_mean = EXPECTED[rid]
        if not (_same(got_amount, amount) and _same(got_sum, want_sum) and _same(got_mean, want_mean)):
            bad.append(f"id {rid}: amount {got_amount!r}/{amount!r} sum {got_sum!r}/{want_sum!r} "
                       f"mean {got_mean!r}/{want_mean!r}")
    return bad


def test_cases_are_adversarial():
    """Guard the test data: overflow, recovery from it, and values leaving windows all occur."""
    sums = [s for s, _ in EXPECTED.values()]
    assert math.inf in sums and 1e308 in sums and MAX in sums
    assert len(ROWS) > 800 and len(set(EXPECTED)) == len(ROWS)


def test_spark_window_exact_sum_equals_fsum_per_row(spark_results):
    assert set(spark_results) == set(EXPECTED)
    assert _mismatches(spark_results) == []


def test_spark_prefix_state_differences_equal_fsum_per_row(spark_prefix_results):
    assert set(spark_prefix_results) == set(EXPECTED)
    assert _mismatches(spark_prefix_results) == []


def test_flink_window_operator_sum_and_mean_equal_fsum_per_row(flink_results):
    assert set(flink_results) == set(EXPECTED), "Flink dropped rows (late? event time <= 0?)"
    assert _mismatches(flink_results) == []


def test_native_sums_differ_on_the_stack_notes_case(spark_results, flink_results):
    """Why exact sums exist: both engines' SUM miss the correctly rounded sum here."""
    ids = [rid for rid, user, _, _ in ROWS if user == "stack_notes"]
    want = [EXPECTED[i][0] for i in ids]
    assert want == [1e16, 1e16, 1.0000000000000002e16, 1.1, 0.30000000000000004]
    assert [spark_results[i][1] for i in ids] == want == [flink_results[i][1] for i in ids]
    # Spark adds in order: 1e16 + 1 + 1 rounds twice, to 1e16.
    assert spark_results[ids[2]][3] == 1e16
    # Flink retracts leaving rows in doubles: sum - 1e16 - 1 lost the ones long ago.
    flink_native = [flink_results[i][3] for i in ids[3:]]
    assert flink_native != want[3:] and min(flink_native) < 0


def test_spark_group_by_merges_partial_buffers_exactly(spark):
    """Plain GROUP BY: partial aggregates per partition, serialized and merged, still exact."""
    register_spark(spark)
    rows = [(user, amount) for _, user, _, amount in ROWS]
    df = spark.createDataFrame(random.Random(3).sample(rows, len(rows)), "user_id string, amount double")
    result = df.repartition(4).groupBy("user_id").agg(F.expr("exact_sum(amount)").alias("s"),
                                                      F.expr("exact_mean(amount)").alias("m"))
    got = {r.user_id: (r.s, r.m) for r in result.collect()}
    for user in {u for u, _ in rows}:
        values = [a for u, a in rows if u == user]
        total = _fsum(values)
        assert _same(got[user][0], total) and _same(got[user][1], total / len(values)), user
