"""The catalog -> Flink SQL: the one place where Tandem's features become Flink operators.

How each piece of a catalog runs on Flink:

* **Row functions** declared as integer expressions (``row_expression``, e.g.
  ``is_night``) compile to native Flink SQL (:func:`native_sql`) with numpy's
  rounding; no Python runs. Other row functions run as vectorised (pandas)
  Python UDFs calling the very numpy function declared in ``transforms/``:
  one definition, the reference's arithmetic, Arrow batches across the
  JVM/Python boundary.
* **Windows** are Flink's own event-time ``OVER`` windows: ``PARTITION BY key
  ORDER BY rowtime RANGE BETWEEN INTERVAL W PRECEDING AND CURRENT ROW``, which
  include both ends and all peers. Flink computes one OVER window per SELECT,
  so the windows are *chained*: one view per (group, window length), each
  adding its features to the row and keeping the rowtime attribute, so the
  last view carries the whole feature row of each event without any join.
* **Aggregations**: count, min, max and integer sums are Flink's natives;
  float sums use the JVM ``exact_sum`` aggregate (exact retraction as rows
  leave the window, see ``stream_jobs/exact_sum.py``); a mean is ``exact_sum
  / count``; a distinct count is ``COUNT(DISTINCT)``.
"""

from __future__ import annotations

from itertools import groupby

from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.udf import udf

from transforms import Agg, Catalog, FieldType
from transforms.aggregations import Feature
from transforms.expressions import BinOp, Col, Expr, Lit
from transforms.rows import RowFunction

ROWTIME = "rt"  # the event time as an event-time attribute (TIMESTAMP_LTZ(3))
TS_MS = "ts_ms"  # the event time as epoch milliseconds (BIGINT): what row functions read

FLINK_TYPES = {
    FieldType.STRING: DataTypes.STRING(),
    FieldType.FLOAT64: DataTypes.DOUBLE(),
    FieldType.INT64: DataTypes.BIGINT(),
    FieldType.TIMESTAMP_MS: DataTypes.BIGINT(),  # epoch ms; the rowtime column carries the attribute
}
SQL_TYPES = {FieldType.STRING: "STRING", FieldType.FLOAT64: "DOUBLE", FieldType.INT64: "BIGINT",
             FieldType.TIMESTAMP_MS: "BIGINT"}


def register_row_functions(t_env: StreamTableEnvironment, catalog: Catalog) -> None:
    for fn in catalog.row_functions:
        if fn.expr is None:
            t_env.create_temporary_system_function(f"rowfn_{fn.name}", _pandas_udf(fn))


def _pandas_udf(fn: RowFunction):
    return udf(fn.on_series, result_type=FLINK_TYPES[fn.dtype], func_type="pandas", name=f"rowfn_{fn.name}")


def row_function_sql(catalog: Catalog) -> list[str]:
    """SELECT items adding each row function's column (event time is passed as epoch ms)."""
    schema = catalog.schema
    items = []
    for fn in catalog.row_functions:
        inputs = {i: TS_MS if i == schema.event_time else _q(i) for i in fn.inputs}
        call = native_sql(fn.expr, inputs) if fn.expr is not None else f"rowfn_{fn.name}({', '.join(inputs.values())})"
        items.append(f"{call} AS {_q(fn.name)}")
    return items


def native_sql(expr: Expr, columns: dict[str, str]) -> str:
    """An integer expression as Flink SQL (BIGINT), rounding like numpy.

    Flink's BIGINT ``/`` and ``MOD`` truncate toward zero; with a positive
    constant ``k`` the floor modulo is ``MOD(MOD(a, k) + k, k)`` and the floor
    division ``(a - floor_mod) / k`` is exact.
    """
    if isinstance(expr, Col):
        return f"CAST({columns[expr.name]} AS BIGINT)"
    if isinstance(expr, Lit):
        return f"CAST({expr.value} AS BIGINT)"
    assert isinstance(expr, BinOp)
    a, b = native_sql(expr.left, columns), native_sql(expr.right, columns)
    floor_mod = f"MOD(MOD({a}, {b}) + {b}, {b})"
    if expr.op == "%":
        return floor_mod
    if expr.op == "//":
        return f"(({a} - {floor_mod}) / {b})"
    if expr.op in ("+", "-", "*"):
        return f"({a} {expr.op} {b})"
    return f"CAST({a} {expr.op} {b} AS BIGINT)"


def feature_views(t_env: StreamTableEnvironment, source_view: str, catalog: Catalog, prefix: str = "tandem") -> str:
    """Create the chained OVER views over ``source_view``; return the name of the last one.

    ``source_view`` must hold the accepted events with their row-function
    columns and the rowtime attribute ``rt``.
    """
    types = dict(catalog.input_columns())
    current = source_view
    for group in catalog.groups:
        by_window = groupby(sorted(group.features, key=lambda f: f.window_ms), key=lambda f: f.window_ms)
        for window_ms, features in by_window:
            frame = (f"PARTITION BY {_q(group.key)} ORDER BY {ROWTIME} "
                     f"RANGE BETWEEN {interval(window_ms)} PRECEDING AND CURRENT ROW")
            items = ", ".join(f"{_aggregate(f, types.get(f.of), frame)} AS {_q(f.name)}" for f in features)
            view = f"{prefix}_{group.entity}_{window_ms}ms"
            t_env.execute_sql(f"CREATE TEMPORARY VIEW {view} AS SELECT *, {items} FROM {current}")
            current = view
    return current


def _aggregate(feature: Feature, col_type: FieldType | None, frame: str) -> str:
    col = _q(feature.of) if feature.of else None
    agg = feature.agg
    if agg is Agg.COUNT:
        return f"COUNT(*) OVER ({frame})"
    if agg is Agg.SUM:
        if col_type is FieldType.INT64:
            return f"SUM({col}) OVER ({frame})"
        return f"exact_sum({col}) OVER ({frame})"
    if agg is Agg.MEAN:
        return f"exact_sum(CAST({col} AS DOUBLE)) OVER ({frame}) / CAST(COUNT(*) OVER ({frame}) AS DOUBLE)"
    if agg is Agg.MIN:
        return f"MIN({col}) OVER ({frame})"
    if agg is Agg.MAX:
        return f"MAX({col}) OVER ({frame})"
    if agg is Agg.DISTINCT_COUNT:
        return f"COUNT(DISTINCT {col}) OVER ({frame})"
    raise NotImplementedError(f"feature {feature.name}: {agg.value} is not compiled for Flink yet")


def interval(ms: int) -> str:
    """An exact SQL interval literal for ``ms`` milliseconds (``DAY TO SECOND(3)``)."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def _q(name: str) -> str:
    return f"`{name}`"
