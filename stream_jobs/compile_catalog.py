"""The catalog -> Flink SQL: the one place where Tandem's features become Flink operators.

How each piece of a catalog runs on Flink:

* **Row functions** declared as integer expressions (``row_expression``, e.g.
  ``is_night``) compile to native Flink SQL (:func:`native_sql`) with numpy's
  rounding; no Python runs. Other row functions run as vectorised (pandas)
  Python UDFs calling the very numpy function declared in ``transforms/``:
  one definition, the reference's arithmetic, Arrow batches across the
  JVM/Python boundary.
* **Windows** are Tandem's own window operator, one per feature group: the
  JVM process table function ``FlinkWindowFeatures`` (``jvm/udf``, with its
  algorithm in ``KeyWindows``) called as ``TABLE ... PARTITION BY key`` on
  the rowtime (a composite key partitions by all its columns, never a
  concatenation). It buffers rows until the watermark passes their event time,
  then gives each row and its peers the aggregates of ``[t - W, t]``: every
  row enters and leaves each window once, O(1) amortised per row, where
  Flink's ``OVER ... RANGE`` operator walks the key's whole window per new
  timestamp (quadratic on hot keys, BENCHMARKS.md). Counts, integer sums,
  min/max (monotonic deques), distinct counts (multisets) and ``last`` are
  exact by construction; float sums and means use the same exact accumulator
  as the batch path (``ExactSum``, exact removal). The group views chain:
  each keeps every column and adds its group's features.
* **Validation** runs in the JVM (``jvm/udf`` ``RecordValidator``) when every
  domain rule of the schema has a JVM twin (:data:`JVM_RULES`), so valid
  records never cross into Python; a schema with another rule is validated
  by the Python UDF. Either way Python explains the invalid lines, so the
  dead letters' kinds and details are defined once, in ``transforms.schema``.
"""

from __future__ import annotations

from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table.udf import udf

from transforms import Catalog, FieldType, schema as schemas
from transforms.aggregations import FeatureGroup
from transforms.expressions import BinOp, Col, Expr, Lit
from transforms.rows import RowFunction

ROWTIME = "rt"  # the event time as an event-time attribute (TIMESTAMP_LTZ(3))
PTF_ROWTIME = "rowtime"  # the time attribute of a window operator's output (Flink names it)
TS_MS = "ts_ms"  # the event time as epoch milliseconds (BIGINT): what row functions read

FLINK_TYPES = {
    FieldType.STRING: DataTypes.STRING(),
    FieldType.FLOAT64: DataTypes.DOUBLE(),
    FieldType.INT64: DataTypes.BIGINT(),
    FieldType.TIMESTAMP_MS: DataTypes.BIGINT(),  # epoch ms; the rowtime column carries the attribute
    FieldType.BOOL: DataTypes.BOOLEAN(),
}
SQL_TYPES = {FieldType.STRING: "STRING", FieldType.FLOAT64: "DOUBLE", FieldType.INT64: "BIGINT",
             FieldType.TIMESTAMP_MS: "BIGINT", FieldType.BOOL: "BOOLEAN"}


#: Domain rules with a JVM twin in ``RecordValidator`` (checked against these by tests/test_jvm_validation.py).
JVM_RULES = {schemas.non_empty: "non_empty", schemas.finite_non_negative: "finite_non_negative",
             schemas.currency_code: "currency_code"}


def validation_spec(schema: schemas.EventSchema) -> str | None:
    """The schema as ``RecordValidator``'s spec text, or None if a domain rule has no JVM twin."""
    parts = [f"time={schema.event_time}"]
    for f in schema.fields:
        if f.rule is not None and f.rule not in JVM_RULES:
            return None
        rule = "none" if f.rule is None else JVM_RULES[f.rule]
        parts.append(f"{f.name}={f.type.value}/{rule}/{'required' if f.required else 'optional'}")
    return ";".join(parts)


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
    """Create one window-operator view per feature group over ``source_view``; return the last one's name.

    ``source_view`` must hold the accepted events with their row-function
    columns and the rowtime attribute ``rt``. Each view keeps every column
    and adds its group's features; its time attribute is Flink's ``rowtime``.
    """
    gateway = get_gateway()
    current, time_column = source_view, ROWTIME
    for group in catalog.groups:
        function = f"{prefix}_windows_{group.entity}"
        instance = gateway.jvm.dev.tandem.udf.FlinkWindowFeatures(window_spec(catalog, group))
        # PyFlink registers Java functions by class name only; the spec makes this one an instance.
        t_env._j_tenv.dropTemporarySystemFunction(function)
        t_env._j_tenv.createTemporarySystemFunction(function, instance)
        view = f"{prefix}_{group.entity}_windows"
        keys = ", ".join(map(_q, group.key))  # Flink wants one key bare, several in parentheses
        keys = keys if len(group.key) == 1 else f"({keys})"
        # A Table, not a CREATE VIEW: Flink stores a SQL view as text and prints PARTITION BY (a, b) back
        # without its parentheses, so the next view over it would not parse.
        t_env.create_temporary_view(view, t_env.sql_query(
            f"SELECT * FROM {function}(input => TABLE {current} PARTITION BY {keys}, "
            f"on_time => DESCRIPTOR({time_column}), uid => '{view}')"))
        current, time_column = view, PTF_ROWTIME
    return current


def window_spec(catalog: Catalog, group: FeatureGroup) -> str:
    """The group as ``FlinkWindowFeatures``' spec text (``jvm/udf`` ``WindowSpec``)."""
    parts = [f"order={catalog.schema.event_id}"]
    for f in group.features:
        parts.append(f"{f.name}={f.agg.value}/{f.window_ms}" + (f"/{f.of}" if f.of else ""))
    return ";".join(parts)


def interval(ms: int) -> str:
    """An exact SQL interval literal for ``ms`` milliseconds (``DAY TO SECOND(3)``)."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def _q(name: str) -> str:
    return f"`{name}`"
