"""The catalog -> Spark plan: the one place where Tandem's features become Spark operators.

How each piece of a catalog runs on Spark:

* **Row functions** declared as integer expressions (``row_expression``, e.g.
  ``is_night``) are compiled to native Spark expressions (:func:`native`),
  operator by operator with the same rounding as numpy; no Python runs. Other
  row functions (numpy code, e.g. ``amount_log1p``) run through the vectorised
  Arrow path: a pandas UDF calls the very numpy function declared in
  ``transforms/`` on whole columns. Either way a row function is defined once
  and its arithmetic is the reference's.
* **Windows** are Spark's own window functions: one ``PARTITION BY key ORDER
  BY event time (ms)`` per feature group and ``RANGE BETWEEN W PRECEDING AND
  CURRENT ROW`` frames, which include both ends and all peers (the docs/semantics.md
  rule, native to Spark). No per-key Python.
* **Aggregations**: count, min, max and integer sums are Spark's natives over
  the sliding frame (they skip nulls, and give null over no value); a
  distinct count is ``size(collect_set)``; ``last`` is ``max_by(value, (event
  time, event id))`` over the rows with a value. Float sums and means must be the
  correctly rounded exact sum (Spark's running double sum depends on order),
  and are taken as a difference of exact prefix sums: the JVM
  ``exact_sum_state`` aggregate over ``RANGE UNBOUNDED PRECEDING AND CURRENT
  ROW`` (all values up to t, peers included) and over ``... AND W+1
  PRECEDING`` (all values before t - W), which ``exact_window_sum`` /
  ``exact_window_mean`` subtract exactly and round once (see
  ``batch_jobs/exact_sum.py``). Spark evaluates frames that start unbounded
  incrementally but re-aggregates a sliding frame for every row, so this is
  O(1) per row where the sliding frame is O(window).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, DoubleType, LongType, StringType, TimestampType

from runtime.lake import EVENT_DATE  # noqa: F401 (re-exported: the batch jobs' partition column)
from transforms import Agg, Catalog, FieldType
from transforms.aggregations import Feature
from transforms.expressions import BinOp, Col, Expr, Lit
from transforms.rows import RowFunction

#: The event time as epoch milliseconds: what windows order by and row functions read.
TS_MS = "_ts_ms"

SPARK_TYPES: dict[FieldType, DataType] = {
    FieldType.STRING: StringType(),
    FieldType.FLOAT64: DoubleType(),
    FieldType.INT64: LongType(),
    FieldType.TIMESTAMP_MS: TimestampType(),
    FieldType.BOOL: BooleanType(),
}


def with_row_functions(events: DataFrame, catalog: Catalog) -> DataFrame:
    """Add ``_ts_ms`` and one column per row function (native expression or Arrow pandas UDF)."""
    schema = catalog.schema
    df = events.withColumn(TS_MS, F.unix_millis(F.col(schema.event_time)))
    for fn in catalog.row_functions:
        inputs = {name: F.col(TS_MS if name == schema.event_time else name) for name in fn.inputs}
        column = native(fn.expr, inputs) if fn.expr is not None else _pandas_udf(fn)(*inputs.values())
        df = df.withColumn(fn.name, column)
    return df


def native(expr: Expr, columns: dict[str, Column]) -> Column:
    """An integer expression as a Spark Column (long), rounding like numpy.

    ``//`` and ``%`` take a positive constant ``k``: floor modulo is ``pmod``,
    and floor division is ``(a - pmod(a, k)) div k``, an exact division (Spark's
    ``div`` truncates toward zero, numpy's floors).
    """
    if isinstance(expr, Col):
        return columns[expr.name].cast("long")
    if isinstance(expr, Lit):
        return F.lit(expr.value).cast("long")
    assert isinstance(expr, BinOp)
    a, b = native(expr.left, columns), native(expr.right, columns)
    if expr.op == "%":
        return F.pmod(a, b)
    if expr.op == "//":
        return F.call_function("div", a - F.pmod(a, b), b)
    ops = {"+": a + b, "-": a - b, "*": a * b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}
    return ops[expr.op].cast("long")


def _pandas_udf(fn: RowFunction):
    def run(*columns):
        return fn.on_series(*columns)

    run.__name__ = fn.name
    return F.pandas_udf(run, SPARK_TYPES[fn.dtype])


def with_features(df: DataFrame, catalog: Catalog) -> DataFrame:
    """Add every feature column: one window pass (shuffle + sort) per feature group."""
    event_id = catalog.schema.event_id
    types = dict(catalog.input_columns())
    for group in catalog.groups:
        order = Window.partitionBy(*group.key).orderBy(TS_MS)  # a tuple of columns: parts never concatenate
        states = _prefix_states(group.features, types, order)
        df = df.select("*", *(column.alias(name) for name, column in states.items()))
        df = df.select(
            "*", *(_aggregate(f, types.get(f.of), order, event_id).alias(f.name) for f in group.features)
        ).drop(*states)
    return df


def _exact(feature: Feature, col_type: FieldType | None) -> bool:
    """Float sums and means: taken from exact prefix states, not from the sliding frame."""
    return (feature.agg is Agg.SUM and col_type is not FieldType.INT64) or feature.agg is Agg.MEAN


def _upto(column: str) -> str:
    return f"_upto_{column}"


def _before(column: str, window_ms: int) -> str:
    return f"_before_{column}_{window_ms}"


def _prefix_states(features, types: dict, order: Window) -> dict[str, Column]:
    """The exact-sum states a group's float sums and means need, each computed once:
    per column, all values up to t (peers included); per (column, W), all values before t - W."""
    states: dict[str, Column] = {}
    for f in features:
        if _exact(f, types.get(f.of)):
            state = F.call_function("exact_sum_state", F.col(f.of).cast("double"))
            states[_upto(f.of)] = state.over(order.rangeBetween(Window.unboundedPreceding, 0))
            states[_before(f.of, f.window_ms)] = state.over(
                order.rangeBetween(Window.unboundedPreceding, -f.window_ms - 1))
    return states


def _aggregate(feature: Feature, col_type: FieldType | None, order: Window, event_id: str) -> Column:
    col = F.col(feature.of) if feature.of else None
    agg = feature.agg
    frame = order.rangeBetween(-feature.window_ms, 0)
    if _exact(feature, col_type):
        combine = "exact_window_sum" if agg is Agg.SUM else "exact_window_mean"
        return F.call_function(combine, F.col(_upto(feature.of)), F.col(_before(feature.of, feature.window_ms)))
    if agg is Agg.COUNT:
        return F.count(F.lit(1)).over(frame)
    if agg is Agg.SUM:
        return F.sum(col).over(frame)
    if agg is Agg.MIN:
        return F.min(col).over(frame)
    if agg is Agg.MAX:
        return F.max(col).over(frame)
    if agg is Agg.DISTINCT_COUNT:
        return F.size(F.collect_set(col).over(frame)).cast("long")
    if agg is Agg.LAST:  # the latest non-null value: max_by skips rows whose ordering is null
        return F.max_by(col, F.when(col.isNotNull(), F.struct(F.col(TS_MS), F.col(event_id)))).over(frame)
    raise AssertionError(f"unhandled aggregation {agg}")


def feature_rows(events: DataFrame, catalog: Catalog) -> DataFrame:
    """Validated, deduplicated events -> one feature row per event (the catalog's feature row columns + event_date)."""
    df = with_features(with_row_functions(events, catalog), catalog)
    columns = [name for name, _ in catalog.feature_row_columns()]
    return df.select(*columns, F.to_date(F.col(catalog.schema.event_time)).alias(EVENT_DATE))


def group_table(rows: DataFrame, catalog: Catalog, entity: str) -> DataFrame:
    """The per-entity feature table: key, event time, event id, the group's features, event_date."""
    group = catalog.group(entity)
    schema = catalog.schema
    return rows.select(*group.key, schema.event_time, schema.event_id, *(f.name for f in group.features), EVENT_DATE)
