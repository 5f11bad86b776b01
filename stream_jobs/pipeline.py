"""The Flink stream job: raw records in, feature rows and dead letters out, with DESIGN.md's semantics.

The stages, each the stream twin of a rule in ``tandem/reference.py``:

1. **Validate**: every raw line gets the verdict of the reader and validator
   the reference uses (``tandem.events_io.decode_json_line``,
   ``transforms.schema``), from their JVM twin ``RecordValidator`` where the
   schema's rules have one (``compile_catalog.validation_spec``), else from
   a Python UDF calling them. Blank lines are skipped as the file reader
   skips them; invalid records become dead letters (``invalid``), with kind
   and detail from ``transforms.schema`` itself (a Python UDF that sees only
   the invalid lines). Among them: an event time more than ``max_future_ms``
   ahead of the wall clock when the record is validated
   (``transforms.schema.DEFAULT_MAX_FUTURE_MS``), so one far-future event
   cannot advance the watermark and make later events late.
2. **Deduplicate** (native ``COUNT(*) OVER (PARTITION BY id ORDER BY
   proctime)``): the first valid record of an id in arrival order is the
   event; later ones are dead letters (``duplicate``). State per id expires
   after ``dedup_ttl``.
3. **Lateness** (native, one global ``MAX(event time) OVER (ORDER BY
   proctime)``): an event more than the allowed lateness behind the latest
   event accepted before it is a dead letter (``late``), decided per record,
   not by when a periodic watermark happens to be emitted.
4. **Windows** (``stream_jobs/compile_catalog.py``): Tandem's window
   operator per feature group (a JVM process table function) on a watermark
   of ``max accepted event time - allowed lateness - 1 ms``. It processes a
   row when the watermark passes its event time; Flink discards rows that
   are behind the watermark on arrival, and stage 3 has already removed every
   such row, so no event is lost without a dead letter.

Stages 2 and 3 need time attributes defined on tables derived from earlier
stages (a processing-time attribute, then the event-time attribute and its
watermark, computed from first occurrences only), so the job passes the
table through ``to_data_stream``/``from_data_stream`` twice: JVM-only
conversions, no Python in between. Arrival order must be well defined, so
the source and stages 1-3 run at parallelism 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.common import Row
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes, Schema, StreamTableEnvironment
from pyflink.table.udf import udf

from stream_jobs.compile_catalog import (FLINK_TYPES, ROWTIME, TS_MS, feature_views, interval, register_row_functions,
                                         row_function_sql, validation_spec)
from tandem.events_io import decode_json_line
from transforms import Catalog, Invalid
from transforms.schema import DEFAULT_MAX_FUTURE_MS, not_after_now

#: Status words of the validation function.
OK, INVALID, BLANK = "ok", "invalid", "blank"
#: The kind of an invalid line that the JVM validator refused and ``transforms.schema`` accepts: a Tandem bug.
MISMATCH = "validator_mismatch"
#: Rows that are not first occurrences get this event time: it never advances the watermark.
NO_TIME_MS = 1


@dataclass(frozen=True)
class StreamOutputs:
    features: str  # view of feature rows (DESIGN.md columns, event_time as epoch ms)
    dead_letters: str  # view of (transaction_id, reason, kind, detail, raw)


def register_validation(t_env: StreamTableEnvironment, catalog: Catalog, max_future_ms: int | None) -> str:
    """Register ``tandem_validate(line)`` and ``tandem_explain(line, not_after)``; return "jvm" or "python".

    ``tandem_validate`` returns ``ROW<status, not_after, <schema fields>>``
    (``jvm/udf`` ``FlinkValidate``, or :func:`_validation_udf` when a domain
    rule has no JVM twin); ``tandem_explain`` returns the dead letter's
    ``ROW<kind, detail, raw_id>`` for an invalid line.
    """
    spec = validation_spec(catalog.schema)
    for name in ("tandem_validate", "tandem_explain"):
        t_env.drop_temporary_system_function(name)
    if spec is None:
        t_env.create_temporary_system_function("tandem_validate", _validation_udf(catalog, max_future_ms))
    else:  # registered as an instance, as feature_views does: PyFlink registers Java functions by class name only
        instance = get_gateway().jvm.dev.tandem.udf.FlinkValidate(spec, -1 if max_future_ms is None else max_future_ms)
        t_env._j_tenv.createTemporarySystemFunction("tandem_validate", instance)
    t_env.create_temporary_system_function("tandem_explain", _explain_udf(catalog))
    return "python" if spec is None else "jvm"


def _validation_udf(catalog: Catalog, max_future_ms: int | None):
    schema = catalog.schema
    width = len(schema.fields)
    fields = [DataTypes.FIELD("status", DataTypes.STRING()), DataTypes.FIELD("not_after", DataTypes.BIGINT())]
    fields += [DataTypes.FIELD(f.name, FLINK_TYPES[f.type]) for f in schema.fields]

    def validate(line: str):
        if not line.strip():
            return Row(BLANK, None, *([None] * width))
        not_after = not_after_now(max_future_ms)
        event = schema.validate(decode_json_line(line), not_after)
        if isinstance(event, Invalid):
            return Row(INVALID, not_after, *([None] * width))
        return Row(OK, not_after, *(event[f.name] for f in schema.fields))

    return udf(validate, result_type=DataTypes.ROW(fields), name="tandem_validate")


def _explain_udf(catalog: Catalog):
    schema = catalog.schema
    result = DataTypes.ROW([DataTypes.FIELD("kind", DataTypes.STRING()), DataTypes.FIELD("detail", DataTypes.STRING()),
                            DataTypes.FIELD("raw_id", DataTypes.STRING())])

    def explain(line: str, not_after: int | None):
        record = decode_json_line(line)
        verdict = schema.validate(record, not_after)
        rid = record.get(schema.event_id) if isinstance(record, dict) else None
        rid = rid if isinstance(rid, str) else None
        if not isinstance(verdict, Invalid):
            return Row(MISMATCH, "the JVM validator (jvm/udf RecordValidator) refused this record, which "
                                 "transforms.schema accepts: a Tandem bug, please report it", rid)
        return Row(verdict.kind.value, verdict.detail, rid)

    return udf(explain, result_type=result, name="tandem_explain")


def build(t_env: StreamTableEnvironment, source_table: str, catalog: Catalog, allowed_lateness_ms: int,
          dedup_ttl_ms: int = 7 * 86_400_000, max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS) -> StreamOutputs:
    """Define the job's views over ``source_table`` (one STRING column ``line``); return the output views."""
    schema = catalog.schema
    fields = [f.name for f in schema.fields]
    eid, etime = schema.event_id, schema.event_time
    register_row_functions(t_env, catalog)
    register_validation(t_env, catalog, max_future_ms)
    t_env.get_config().set("table.exec.state.ttl", f"{dedup_ttl_ms} ms")

    # 1. validate
    cols = ", ".join(f"v.`{n}` AS `{n}`" for n in fields)
    validated = t_env.sql_query(
        f"SELECT line, v.status AS status, v.not_after AS not_after, {cols} "
        f"FROM (SELECT line, tandem_validate(line) AS v FROM {source_table})")
    checked = _with_time_attributes(t_env, validated, "tandem_checked", proctime="pt")

    # 2. deduplicate (valid rows only), marking first occurrences
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW tandem_seen AS
        SELECT *, COUNT(*) OVER (PARTITION BY `{eid}` ORDER BY pt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seen
        FROM tandem_checked WHERE status = '{OK}'""")
    # 3. event time + watermark from first occurrences only, then the per-record lateness check
    keep = [n for n in t_env.from_path("tandem_seen").get_schema().get_field_names() if n != "pt"]
    seen = t_env.sql_query(f"SELECT {', '.join(f'`{n}`' for n in keep)} FROM tandem_seen")
    _with_time_attributes(
        t_env, seen, "tandem_timed", proctime="pt",
        rowtime=(f"TO_TIMESTAMP_LTZ(CASE WHEN seen = 1 THEN `{etime}` ELSE {NO_TIME_MS} END, 3)",
                 f"{ROWTIME} - {interval(allowed_lateness_ms + 1)}"))
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW tandem_firsts AS
        SELECT *, MAX(`{etime}`) OVER (ORDER BY pt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS max_ms
        FROM tandem_timed WHERE seen = 1""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW tandem_accepted AS
        SELECT {", ".join(f"`{n}`" for n in fields)}, `{etime}` AS {TS_MS}, {ROWTIME}
        FROM tandem_firsts WHERE `{etime}` >= max_ms - {allowed_lateness_ms}""")

    # 4. row functions, then the chained windows
    t_env.execute_sql(f"CREATE TEMPORARY VIEW tandem_rows AS SELECT *, {', '.join(row_function_sql(catalog))} "
                      f"FROM tandem_accepted")
    last = feature_views(t_env, "tandem_rows", catalog)
    columns = ", ".join(f"`{name}`" for name, _ in catalog.feature_row_columns())
    t_env.execute_sql(f"CREATE TEMPORARY VIEW tandem_features AS SELECT {columns} FROM {last}")

    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW tandem_dead_letters AS
        SELECT e.raw_id AS transaction_id, 'invalid' AS reason, e.kind AS kind, e.detail AS detail, line AS `raw`
          FROM (SELECT line, tandem_explain(line, not_after) AS e FROM tandem_checked WHERE status = '{INVALID}')
        UNION ALL
        SELECT `{eid}`, 'duplicate', CAST(NULL AS STRING), CONCAT('event id ', `{eid}`, ' was seen before'), line
          FROM tandem_timed WHERE seen > 1
        UNION ALL
        SELECT `{eid}`, 'late', CAST(NULL AS STRING),
               CONCAT(CAST(max_ms - `{etime}` AS STRING), ' ms behind the latest event, allowed lateness ',
                      '{allowed_lateness_ms} ms'), line
          FROM tandem_firsts WHERE `{etime}` < max_ms - {allowed_lateness_ms}""")
    return StreamOutputs("tandem_features", "tandem_dead_letters")


def _with_time_attributes(t_env: StreamTableEnvironment, table, name: str, proctime: str,
                          rowtime: tuple[str, str] | None = None):
    """Re-enter ``table`` through a DataStream to declare time attributes on it, as view ``name``."""
    builder = Schema.new_builder()
    for field_name, data_type in zip(table.get_schema().get_field_names(), table.get_schema().get_field_data_types()):
        builder = builder.column(field_name, data_type)
    if rowtime is not None:
        expression, watermark = rowtime
        builder = builder.column_by_expression(ROWTIME, expression).watermark(ROWTIME, watermark)
    builder = builder.column_by_expression(proctime, "PROCTIME()")
    view = t_env.from_data_stream(t_env.to_data_stream(table), builder.build())
    t_env.create_temporary_view(name, view)
    return view

