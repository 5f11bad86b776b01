"""Ingestion: raw transaction files -> the Delta ``events`` table and its dead letters.

Every record of every input file ends in exactly one place: ``events`` (valid,
first of its event id) or ``dead_letters`` (``invalid`` with its kind and
detail, or ``duplicate``), with its source file, position and raw text.

The boundary rules run on the driver with the very reader and validator the
reference evaluator uses (``runtime.events_io``, ``transforms.schema``): one
implementation of parsing and validation, so the batch path cannot drift from
it. Deduplication and the writes are Spark's. Before anything is written the
whole input is checked for a schema change (a field renamed, retyped or added
in every record): that fails the run with the field named, since dead-lettering
every record would hide it.

Re-running is safe: a file whose content (sha256) was ingested before is
skipped, and records already written from the same content (a run killed
between its writes) are not written twice.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from batch_jobs.compile_catalog import EVENT_DATE, SPARK_TYPES
from batch_jobs.delta_tables import table_exists
from batch_jobs.quality import figures, measure, partition_rows
from runtime.dead_letters import DUPLICATE, DUPLICATE_DETAIL, INVALID, dead_letter_columns
from runtime.errors import UserError
from runtime.events_io import events_files, raw_text, read_events
from runtime.gates import reference_edges
from runtime.lake import Lake, SourceTables
from runtime.operations import Operations
from runtime.runs import GateBlocked, Run, Trigger, recorded_run
from transforms import Catalog, FieldType, Invalid
from transforms.quality import Drift, Volume
from transforms.schema import DEFAULT_MAX_FUTURE_MS, not_after_now, record_shape, schema_drift

SOURCE_COLUMNS = [("_source", StringType()), ("_source_sha256", StringType()), ("_position", LongType())]


@dataclass
class IngestResult:
    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    records: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count


def input_files(path: str | Path) -> list[Path]:
    """The events files under ``path``: ``runtime.events_io.events_files``, the stream's rule too."""
    return events_files(path)


def ingest(spark: SparkSession, path: str | Path, lake: Lake, catalog: Catalog,
           max_future_ms: int | None = DEFAULT_MAX_FUTURE_MS, trigger: str | Trigger = "cli",
           operations: Operations | None = None) -> IngestResult:
    """Validate, deduplicate, gate and append the records under ``path`` to the lake.

    An event time more than ``max_future_ms`` ahead of the clock when its
    record is read is invalid (``transforms.schema.DEFAULT_MAX_FUTURE_MS`` says why).
    The run is one row of the lake's run log (``runtime.runs``); a blocking gate
    on the new events writes nothing at all (events, dead letters, ingest log).
    """
    with recorded_run(lake.root, f"ingest:{catalog.schema.name}", trigger, operations) as run:
        result = _ingest(spark, path, lake, catalog, max_future_ms, run)
        run.record.rows_in, run.record.rows_out = result.records, result.accepted
        run.record.rejected = dict(result.rejected)
    return result


def _ingest(spark: SparkSession, path: str | Path, lake: Lake, catalog: Catalog, max_future_ms: int | None,
            run: Run) -> IngestResult:
    result = IngestResult()
    tables = lake.tables(catalog)
    done = _ingested_hashes(spark, tables)
    valid_parts, rejected_parts, hashes = [], [], []
    for file_index, file in enumerate(input_files(path)):
        sha = _sha256(file)
        if sha in done:
            result.skipped_files.append(str(file))
            continue
        valid, rejected, shapes, n = _read_and_validate(file, sha, file_index, catalog, max_future_ms)
        if n == 0:
            raise UserError(f"{file}: holds no records")
        drift = schema_drift(catalog.schema, shapes)
        if drift:
            raise UserError(f"{file}: the input's schema changed, nothing was written: " + "; ".join(drift))
        result.files.append(str(file))
        hashes.append(sha)
        result.records += n
        valid_parts.append(valid)
        rejected_parts.append(rejected)
    if not result.files:
        return result

    valid_df = _to_spark(spark, pd.concat(valid_parts, ignore_index=True), _valid_schema(catalog))
    invalid_df = _to_spark(spark, pd.concat(rejected_parts, ignore_index=True), dead_letter_input(catalog))
    events, duplicates = _deduplicate(spark, valid_df, tables, catalog)
    dead = invalid_df.unionByName(duplicates)
    events, dead = _not_yet_written(spark, events, dead, tables)

    events = events.persist()
    dead = dead.persist()
    # The gates' figures and the accepted count in one aggregation over the new events.
    gates = tuple(g for g in catalog.quality_gates if g.column is None or g.column in catalog.schema.field_names)
    edges = {g.column: reference_edges(run.history(), g.column) for g in gates if isinstance(g, Drift)}
    m = measure(spark, events.drop(*(n for n, _ in SOURCE_COLUMNS)), lake, catalog, gates, edges)
    figs = figures(spark, m, m.rows.agg(*m.exprs).first(), catalog, gates)
    result.accepted = figs.rows
    result.rejected.update({r["reason"]: r["n"] for r in dead.groupBy("reason").agg(F.count("*").alias("n")).collect()})
    run.record.partitions = [d.isoformat() for d in figs.dates]
    if any(isinstance(g, Volume) for g in gates):
        figs.partition_rows = partition_rows(spark, events, figs.dates, tables.events)
    if result.accepted:
        try:
            run.gate(gates, figs)
        except GateBlocked:
            events.unpersist()
            dead.unpersist()
            raise
    now = F.current_timestamp()
    (events.withColumn("_ingested_at", now).write.format("delta").mode("append")
     .partitionBy(EVENT_DATE).save(tables.events))
    dead.withColumn("_ingested_at", now).write.format("delta").mode("append").save(tables.dead_letters)
    log = spark.createDataFrame(
        list(zip(result.files, hashes)), "path string, sha256 string"
    ).withColumn("_ingested_at", now)
    log.write.format("delta").mode("append").save(tables.ingest_log)
    events.unpersist()
    dead.unpersist()
    return result


def _read_and_validate(file: Path, sha: str, file_index: int, catalog: Catalog, max_future_ms: int | None):
    """One pass over a file with the reference reader: typed valid rows, rejections, shapes."""
    schema = catalog.schema
    valid: dict[str, list] = {name: [] for name in schema.field_names}
    valid_pos: list[int] = []
    valid_raw: list[str] = []
    rejected: list[dict] = []
    shapes: Counter = Counter()
    n = 0
    for position, record in enumerate(read_events(file)):
        n += 1
        shape = record_shape(record)
        if shape is not None:
            shapes[shape] += 1
        event = schema.validate(record, not_after_now(max_future_ms))
        if isinstance(event, Invalid):
            rejected.append({
                "_source": str(file), "_source_sha256": sha, "_position": position,
                schema.event_id: schema.claimed_id(record),
                "reason": INVALID, "kind": event.kind.value, "detail": event.detail, "raw": raw_text(record),
            })
            continue
        for name in schema.field_names:
            valid[name].append(event[name])
        valid_pos.append(position)
        valid_raw.append(raw_text(record))
    # Nullable pandas types: an optional int64 with a null must not become float64 (2**60 would lose bits).
    frame = pd.DataFrame({f.name: pd.array(valid[f.name], dtype=_PANDAS_TYPES[f.type]) for f in schema.fields})
    frame[schema.event_time] = pd.to_datetime(frame[schema.event_time].astype("int64"), unit="ms", utc=True)
    frame["_source"], frame["_source_sha256"], frame["_position"] = str(file), sha, valid_pos
    frame["_file_index"], frame["_raw"] = file_index, valid_raw
    dead = pd.DataFrame(rejected, columns=[c.name for c in dead_letter_input(catalog).fields])
    return frame, dead, shapes, n


_PANDAS_TYPES = {FieldType.STRING: object, FieldType.INT64: "Int64", FieldType.FLOAT64: "Float64",
                 FieldType.BOOL: "boolean", FieldType.TIMESTAMP_MS: "Int64"}


def _valid_schema(catalog: Catalog) -> StructType:
    fields = [StructField(f.name, SPARK_TYPES[f.type], nullable=not f.required) for f in catalog.schema.fields]
    return StructType(fields + [StructField(n, t) for n, t in SOURCE_COLUMNS] + [StructField("_file_index", IntegerType()), StructField("_raw", StringType())])


def dead_letter_input(catalog: Catalog) -> StructType:
    """The dead letters' columns: source, position, the event id (named as in the schema), reason, kind,
    detail and raw text."""
    return StructType([StructField(n, t) for n, t in SOURCE_COLUMNS]
                      + [StructField(name, SPARK_TYPES[t]) for name, t in dead_letter_columns(catalog)])


def _to_spark(spark: SparkSession, frame: pd.DataFrame, schema: StructType) -> DataFrame:
    if frame.empty:
        return spark.createDataFrame([], schema)
    return spark.createDataFrame(frame[[f.name for f in schema.fields]], schema)


def _deduplicate(spark: SparkSession, valid: DataFrame, tables: SourceTables, catalog: Catalog):
    """First valid record of each event id (in file, then record order) wins; the rest are duplicates.

    An id already in the events table makes every new record with it a duplicate.
    """
    eid = catalog.schema.event_id
    first = Window.partitionBy(eid).orderBy("_file_index", "_position")
    ranked = valid.withColumn("_rank", F.row_number().over(first))
    if table_exists(spark, tables.events):
        known = spark.read.format("delta").load(tables.events).select(eid).distinct().withColumn("_known", F.lit(True))
        ranked = ranked.join(known, eid, "left")
    else:
        ranked = ranked.withColumn("_known", F.lit(False))
    is_first = (F.col("_rank") == 1) & F.coalesce(~F.col("_known"), F.lit(True))
    events = ranked.where(is_first).withColumn(EVENT_DATE, F.to_date(catalog.schema.event_time))
    events = events.select(*catalog.schema.field_names, EVENT_DATE, *(n for n, _ in SOURCE_COLUMNS))
    duplicates = ranked.where(~is_first).select(
        *(n for n, _ in SOURCE_COLUMNS), F.col(eid),
        F.lit(DUPLICATE).alias("reason"), F.lit(None).cast("string").alias("kind"),
        F.concat(F.lit(DUPLICATE_DETAIL[0]), F.col(eid), F.lit(DUPLICATE_DETAIL[1])).alias("detail"),
        F.col("_raw").alias("raw"),
    )
    return events, duplicates


def _not_yet_written(spark: SparkSession, events: DataFrame, dead: DataFrame, tables: SourceTables):
    """Drop records a killed earlier run of the same file content already wrote."""
    keys = ["_source_sha256", "_position"]
    written = [spark.read.format("delta").load(p).select(*keys) for p in (tables.events, tables.dead_letters)
               if table_exists(spark, p)]
    for table in written:
        events = events.join(table, keys, "left_anti")
        dead = dead.join(table, keys, "left_anti")
    return events, dead


def _ingested_hashes(spark: SparkSession, tables: SourceTables) -> set[str]:
    if not table_exists(spark, tables.ingest_log):
        return set()
    return {r["sha256"] for r in spark.read.format("delta").load(tables.ingest_log).select("sha256").collect()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
