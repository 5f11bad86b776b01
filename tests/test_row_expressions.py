"""Integer row expressions: numpy (the reference), Spark and Flink agree bit for bit.

The rule being tested once per engine: ``//`` and ``%`` by a positive constant
round toward negative infinity (Python/numpy), while Spark's ``div`` and
Flink's ``/``/``MOD`` truncate toward zero, so negative operands and exact
multiples are where a naive compilation goes wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from examples.transactions.features.transactions import CATALOG as TRANSACTIONS
from transforms.expressions import col, evaluate
from examples.transactions.features.transactions import MS_PER_HOUR
from transforms.rows import row_expression

VALUES = [0, 1, -1, 5, -5, 6, -6, 7, -7, 23, 24, 25, -24, -25,
          MS_PER_HOUR * 6 - 1, MS_PER_HOUR * 6, MS_PER_HOUR * 24 - 1, MS_PER_HOUR * 24,
          -MS_PER_HOUR * 18 - 1, -MS_PER_HOUR * 18, 4_102_444_799_999, 2**40 + 7, -(2**40) - 7]

a, b = col("a"), col("b")
EXPRESSIONS = {
    "floordiv": a // 7,
    "mod": a % 7,
    "is_night_shape": a // MS_PER_HOUR % 24 < 6,
    "mixed": (a * 3 - 5) // 4 + (a % 5 >= 2) - (b > a),
    "constant_left": 10 - a // 1000 * 2,
    "compare_le": (a <= b) + (a >= 0),
}


def expected(expr) -> list[int]:
    rows = np.array(VALUES, dtype=np.int64)
    return [int(v) for v in np.broadcast_to(evaluate(expr, {"a": rows, "b": rows[::-1].copy()}), rows.shape)]


def test_numpy_meaning_is_python_floor_semantics():
    pairs = list(zip(VALUES, VALUES[::-1]))
    assert expected(EXPRESSIONS["mixed"]) == [(x * 3 - 5) // 4 + (x % 5 >= 2) - (y > x) for x, y in pairs]
    assert expected(EXPRESSIONS["is_night_shape"]) == [int(x // MS_PER_HOUR % 24 < 6) for x in VALUES]


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_spark_native_equals_numpy(spark, name):
    from pyspark.sql import functions as F

    from batch_jobs.compile_catalog import native

    df = spark.createDataFrame(list(zip(VALUES, VALUES[::-1])), "a long, b long")
    got = [r[0] for r in df.select(native(EXPRESSIONS[name], {"a": F.col("a"), "b": F.col("b")})).collect()]
    assert got == expected(EXPRESSIONS[name])


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_flink_native_equals_numpy(flink_table_env, name):
    from stream_jobs.compile_catalog import native_sql

    rows = ", ".join(f"(CAST({x} AS BIGINT), CAST({y} AS BIGINT))" for x, y in zip(VALUES, VALUES[::-1]))
    sql = native_sql(EXPRESSIONS[name], {"a": "a", "b": "b"})
    result = flink_table_env.execute_sql(f"SELECT a, b, {sql} FROM (VALUES {rows}) AS t(a, b)")
    with result.collect() as it:  # VALUES rows may arrive in any order: match them by input
        got = {(row[0], row[1]): row[2] for row in it}
    assert got == dict(zip(zip(VALUES, VALUES[::-1]), expected(EXPRESSIONS[name])))


def test_reference_catalog_compiles_is_night_natively():
    is_night = {fn.name: fn for fn in TRANSACTIONS.row_functions}["is_night"]
    assert is_night.expr is not None


def test_expressions_refuse_what_engines_would_round_differently():
    with pytest.raises(TypeError, match="positive integer constant"):
        a // b
    with pytest.raises(TypeError, match="positive integer constant"):
        a % -3
    with pytest.raises(TypeError, match="int64 constants"):
        a + 0.5
    with pytest.raises(TypeError, match="no truth value"):
        bool(a < 1)
    with pytest.raises(TypeError, match="must return an integer expression"):
        row_expression(lambda event_time: 1)
