"""The Flink stream job: raw records in, feature rows and dead letters out, with docs/semantics.md's rules.

The stages, each the stream twin of a rule in ``tandem/reference.py``:

1. **Validate**: every raw line gets the verdict of the reader and validator
   the reference uses (``runtime.events_io.decode_json_line``,
   ``transforms.schema``), from their JVM twin ``RecordValidator`` where the
   schema's rules have one (``compile_catalog.validation_spec``), else from
   a Python UDF calling them. Blank lines are skipped as the file reader
   skips them; invalid records become dead letters (``invalid``), with kind
   and detail from ``transforms.schema`` itself (a Python UDF that sees only
   the invalid lines). Among them: an event time more than ``max_future_ms``
   ahead of the wall clock when the record is validated
   (``transforms.schema.DEFAULT_MAX_FUTURE_MS``), so one far-future event
   cannot advance the watermark and make later events late.
2. **Deduplicate** and 3. **lateness**, in one JVM keyed operator
   (``jvm/udf`` ``Admit``): the first valid record of an id in arrival order
   is the event, later ones are dead letters (``duplicate``), and ids are
   forgotten ``dedup_ttl`` after they were first seen (processing time); a
   first record more than the allowed lateness behind the latest first record
   before it is a dead letter (``late``), decided per record, not by when a
   periodic watermark happens to be emitted.
4. **Windows** (``stream_jobs/compile_catalog.py``): Tandem's window
   operator per feature group (a JVM process table function) on a watermark
   of ``max accepted event time - allowed lateness - 1 ms``. It processes a
   row when the watermark passes its event time; Flink discards rows that
   are behind the watermark on arrival, and stage 3 has already removed every
   such row, so no event is lost without a dead letter.

The validated rows pass through a DataStream once (``to_data_stream``), so
each line is validated once for its two uses (the invalid lines' dead letters,
and ``Admit``); ``Admit``'s output re-enters the Table API with the event-time
attribute and its watermark, computed from accepted rows only. Arrival order
must be well defined, so the source and stages 1-3 run at parallelism 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.common import Row
from pyflink.datastream import DataStream
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes, Schema, StreamTableEnvironment
from pyflink.table.udf import udf

from stream_jobs.compile_catalog import (FLINK_TYPES, ROWTIME, TS_MS, feature_views, interval, register_row_functions,
                                         row_function_sql, validation_spec)
from runtime import dead_letters as dl
from runtime.events_io import decode_json_line
from transforms import Catalog, Invalid
from transforms.schema import DEFAULT_MAX_FUTURE_MS, not_after_now

#: Status words of the validation function.
OK, INVALID, BLANK = "ok", "invalid", "blank"
#: The kind of an invalid line that the JVM validator refused and ``transforms.schema`` accepts: a Tandem bug.
MISMATCH = "validator_mismatch"
#: Rows Admit did not accept (duplicates, late events) get this event time: it never advances the watermark.
NO_TIME_MS = 1


@dataclass(frozen=True)
class StreamOutputs:
    features: str  # view of feature rows (the catalog's columns, event time as epoch ms)
    dead_letters: str  # view of runtime.dead_letters' columns (event id, reason, kind, detail, raw)


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
        rid = schema.claimed_id(record)
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
    # 1. validate, with two empty columns stage 2 fills in
    cols = ", ".join(f"v.`{n}` AS `{n}`" for n in fields)
    validated = t_env.sql_query(
        f"SELECT line, v.status AS status, v.not_after AS not_after, {cols}, "
        f"CAST(NULL AS STRING) AS verdict, CAST(NULL AS BIGINT) AS latest_ms "
        f"FROM (SELECT line, tandem_validate(line) AS v FROM {source_table})")
    names = validated.get_schema().get_field_names()
    # Through a DataStream once, so each line is validated once for both of its uses.
    rows = t_env.to_data_stream(validated)
    t_env.create_temporary_view("tandem_checked", t_env.from_data_stream(rows, _schema(validated)))

    # 2-3. deduplicate and check lateness (jvm/udf Admit), then event time + watermark from accepted rows only
    admit = get_gateway().jvm.dev.tandem.udf.Admit
    admitted = DataStream(admit.apply(
        rows._j_data_stream, names.index("status"), OK, names.index(eid),
        admit(names.index(etime), names.index("verdict"), names.index("latest_ms"), allowed_lateness_ms,
              dedup_ttl_ms),
        "tandem_admit"))
    rowtime = (f"TO_TIMESTAMP_LTZ(CASE WHEN verdict = '{admit.ACCEPTED}' THEN `{etime}` ELSE {NO_TIME_MS} END, 3)",
               f"{ROWTIME} - {interval(allowed_lateness_ms + 1)}")
    t_env.create_temporary_view("tandem_admitted", t_env.from_data_stream(admitted, _schema(validated, rowtime)))
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW tandem_accepted AS
        SELECT {", ".join(f"`{n}`" for n in fields)}, `{etime}` AS {TS_MS}, {ROWTIME}
        FROM tandem_admitted WHERE verdict = '{admit.ACCEPTED}'""")

    # 4. row functions, then the chained windows
    t_env.execute_sql(f"CREATE TEMPORARY VIEW tandem_rows AS SELECT *, {', '.join(row_function_sql(catalog))} "
                      f"FROM tandem_accepted")
    last = feature_views(t_env, "tandem_rows", catalog)
    columns = ", ".join(f"`{name}`" for name, _ in catalog.feature_row_columns())
    t_env.execute_sql(f"CREATE TEMPORARY VIEW tandem_features AS SELECT {columns} FROM {last}")

    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW tandem_dead_letters AS
        SELECT e.raw_id AS `{eid}`, '{dl.INVALID}' AS reason, e.kind AS kind, e.detail AS detail, line AS `raw`
          FROM (SELECT line, tandem_explain(line, not_after) AS e FROM tandem_checked WHERE status = '{INVALID}')
        UNION ALL
        SELECT `{eid}`, '{dl.DUPLICATE}', CAST(NULL AS STRING),
               CONCAT({_text(dl.DUPLICATE_DETAIL[0])}, `{eid}`, {_text(dl.DUPLICATE_DETAIL[1])}), line
          FROM tandem_admitted WHERE verdict = '{admit.DUPLICATE}'
        UNION ALL
        SELECT `{eid}`, '{dl.LATE}', CAST(NULL AS STRING),
               CONCAT(CAST(latest_ms - `{etime}` AS STRING), {_text(dl.LATE_DETAIL[0])},
                      '{allowed_lateness_ms}', {_text(dl.LATE_DETAIL[1])}), line
          FROM tandem_admitted WHERE verdict = '{admit.LATE}'""")
    return StreamOutputs("tandem_features", "tandem_dead_letters")


def _text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _schema(table, rowtime: tuple[str, str] | None = None) -> Schema:
    """``table``'s columns as a schema for ``from_data_stream``, plus the attribute ``rt`` and its watermark."""
    builder = Schema.new_builder()
    for field_name, data_type in zip(table.get_schema().get_field_names(), table.get_schema().get_field_data_types()):
        builder = builder.column(field_name, data_type)
    if rowtime is not None:
        expression, watermark = rowtime
        builder = builder.column_by_expression(ROWTIME, expression).watermark(ROWTIME, watermark)
    return builder.build()
