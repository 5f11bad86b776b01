"""The catalog -> Spark plan: the one place where Tandem's features become Spark operators.

How each piece of a catalog runs on Spark:

* **Row functions** run through the vectorised Arrow path: a pandas UDF calls
  the very numpy function declared in ``transforms/`` on whole columns, so a
  row function is defined once and its arithmetic is the reference's.
* **Windows** are Spark's own window functions: one ``PARTITION BY key ORDER
  BY event time (ms)`` per feature group and ``RANGE BETWEEN W PRECEDING AND
  CURRENT ROW`` frames, which include both ends and all peers (the DESIGN.md
  rule, native to Spark). No per-key Python.
* **Aggregations**: count, min, max and integer sums are Spark's natives;
  float sums use the JVM ``exact_sum`` aggregate (correctly rounded, order
  independent, see ``batch_jobs/exact_sum.py``) because Spark's running double
  sum depends on order; a mean is ``exact_sum / count``; a distinct count is
  ``size(collect_set)``; ``last`` is ``max_by(value, (event time, event id))``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DoubleType, LongType, StringType, TimestampType

from transforms import Agg, Catalog, FieldType
from transforms.aggregations import Feature
from transforms.rows import RowFunction

#: The event time as epoch milliseconds: what windows order by and row functions read.
TS_MS = "_ts_ms"
EVENT_DATE = "event_date"

SPARK_TYPES: dict[FieldType, DataType] = {
    FieldType.STRING: StringType(),
    FieldType.FLOAT64: DoubleType(),
    FieldType.INT64: LongType(),
    FieldType.TIMESTAMP_MS: TimestampType(),
}


def with_row_functions(events: DataFrame, catalog: Catalog) -> DataFrame:
    """Add ``_ts_ms`` and one column per row function (Arrow-vectorised pandas UDFs)."""
    schema = catalog.schema
    df = events.withColumn(TS_MS, F.unix_millis(F.col(schema.event_time)))
    for fn in catalog.row_functions:
        inputs = [TS_MS if name == schema.event_time else name for name in fn.inputs]
        df = df.withColumn(fn.name, _pandas_udf(fn)(*inputs))
    return df


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
        order = Window.partitionBy(group.key).orderBy(TS_MS)
        df = df.select(
            "*",
            *(_aggregate(f, types.get(f.of), order.rangeBetween(-f.window_ms, 0), event_id).alias(f.name)
              for f in group.features),
        )
    return df


def _aggregate(feature: Feature, col_type: FieldType | None, frame: Window, event_id: str) -> Column:
    col = F.col(feature.of) if feature.of else None
    agg = feature.agg
    if agg is Agg.COUNT:
        return F.count(F.lit(1)).over(frame)
    if agg is Agg.SUM:
        return F.sum(col).over(frame) if col_type is FieldType.INT64 else _exact_sum(col).over(frame)
    if agg is Agg.MEAN:
        return _exact_sum(col.cast("double")).over(frame) / F.count(F.lit(1)).over(frame)
    if agg is Agg.MIN:
        return F.min(col).over(frame)
    if agg is Agg.MAX:
        return F.max(col).over(frame)
    if agg is Agg.DISTINCT_COUNT:
        return F.size(F.collect_set(col).over(frame)).cast("long")
    if agg is Agg.LAST:
        return F.max_by(col, F.struct(F.col(TS_MS), F.col(event_id))).over(frame)
    raise AssertionError(f"unhandled aggregation {agg}")


def _exact_sum(col: Column) -> Column:
    return F.call_function("exact_sum", col)


def feature_rows(events: DataFrame, catalog: Catalog) -> DataFrame:
    """Validated, deduplicated events -> one feature row per event (DESIGN.md columns + event_date)."""
    df = with_features(with_row_functions(events, catalog), catalog)
    columns = [name for name, _ in catalog.feature_row_columns()]
    return df.select(*columns, F.to_date(F.col(catalog.schema.event_time)).alias(EVENT_DATE))


def group_table(rows: DataFrame, catalog: Catalog, entity: str) -> DataFrame:
    """The per-entity feature table: key, event time, event id, the group's features, event_date."""
    group = catalog.group(entity)
    schema = catalog.schema
    return rows.select(group.key, schema.event_time, schema.event_id, *(f.name for f in group.features), EVENT_DATE)
