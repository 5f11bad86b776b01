"""Materialisation: each entity's latest feature row, from the Delta feature tables into Redis, exactly.

Tandem materialises through the stream's own writer
(``stream_jobs.online_sink.OnlineWriter``: Feast's bytes, made by Feast's
functions) rather than ``feast materialize``, for two reasons measured on
Feast 0.67:

- Feast reads the offline rows into numpy (Spark's ``toPandas``, pyarrow's
  ``to_numpy``), which turns an int64 column holding a null into doubles: a
  value beyond 2**53 is served rounded, and one near 2**63 fails the whole run
  ("Value out of range"). Here rows travel as Arrow and Python ints.
- Feast skips a row whose event time equals the stored one, so a corrected
  backfill never replaces the value it corrects. Here the writer's guard
  applies: a row replaces the stored one when its event time is the same or
  newer, so a re-materialised correction lands and a newer stream row still wins.

The latest row per entity is chosen in Spark (greatest event time, ties by
greatest event id; peers carry equal features), so only one row per entity
reaches the driver.

Each group's latest rows over every event date are also written, atomically,
as serving's fallback snapshot (``runtime.serving_snapshot``), after the
gates pass and before Redis is written: ``tandem serve`` serves them while
Redis cannot be reached, so refreshing the snapshot must not need Redis (a
run against a dead Redis refreshes the snapshot, then fails on the write).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from runtime.errors import UserError
from runtime.lake import EVENT_DATE, Lake
from runtime.operations import Operations
from runtime.runs import GateBlocked, Run, Trigger, recorded_run
from transforms import Catalog
from transforms.quality import Completeness, Range

_BATCH_ROWS = 5_000  # rows per write call: bounds the Python-side memory of one call


@dataclass(frozen=True)
class Materialized:
    catalog: str
    group: str
    rows: int  # entities read (one latest row each)
    written: int  # rows Redis took; the rest held a newer event of their entity
    stale: int
    snapshot: str | None = None  # the fallback snapshot written (runtime.serving_snapshot)


def check_groups(catalogs: list[Catalog], groups: Iterable[str] | None) -> set[str] | None:
    """``groups`` as a set (None: all), refused in one line when one names no group of ``catalogs``."""
    wanted = None if groups is None else set(groups)
    unknown = (wanted or set()) - {g.entity for c in catalogs for g in c.groups}
    if unknown:
        raise UserError(f"no catalog has a feature group {sorted(unknown)[0]!r}")
    return wanted


def materialize(spark, lake: Lake, catalogs: Iterable[Catalog], address: str, project: str,
                first: date | None = None, last: date | None = None,
                groups: Iterable[str] | None = None, trigger: str | Trigger = "cli",
                operations: Operations | None = None) -> list[Materialized]:
    """Write each group's latest row per entity among event dates ``first`` .. ``last`` (inclusive, UTC;
    default: all) into the Redis at ``address``, in project ``project``'s Feast layout. ``groups``: only
    these feature groups (by entity name). One run log row per catalog (``runtime.runs``)."""

    catalogs = list(catalogs)
    wanted = check_groups(catalogs, groups)
    out = []
    for catalog in catalogs:
        chosen = [g for g in catalog.groups if wanted is None or g.entity in wanted]
        if chosen:
            with recorded_run(lake.root, f"materialize:{catalog.schema.name}", trigger, operations) as run:
                out += _materialize_catalog(spark, lake, catalog, chosen, address, project, first, last, run)
    return out


def _materialize_catalog(spark, lake: Lake, catalog: Catalog, groups: list, address: str, project: str,
                         first: date | None, last: date | None, run: Run) -> list[Materialized]:
    """Every group's latest rows gated first (completeness and range of what would be served); written only
    when no gate blocks."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from batch_jobs.quality import figures, measure
    from stream_jobs.online_sink import OnlineWriter

    schema = catalog.schema
    gates = tuple(g for g in catalog.quality_gates if isinstance(g, (Completeness, Range)))
    staged, blocked, table_of = [], None, {}
    try:
        with run.stage("read and check"):
            for group in groups:
                path = lake.tables(catalog).features(group.entity)
                if not DeltaTable.isDeltaTable(spark, path):
                    raise UserError(f"no feature table of group {group.entity!r} at {path}: run `tandem backfill` first")
                table = table_all = spark.read.format("delta").load(path)
                if first is not None:
                    table = table.where(F.col(EVENT_DATE) >= F.lit(first))
                if last is not None:
                    table = table.where(F.col(EVENT_DATE) <= F.lit(last))
                latest = _latest_rows(table, group, schema).persist()
                staged.append((group, latest))
                table_of[group.entity] = table_all
                m = measure(spark, latest.select(*group.key, schema.event_time, EVENT_DATE,
                                                 *(f.name for f in group.features)), lake, catalog, gates, {})
                try:
                    run.gate(gates, figures(spark, m, m.rows.agg(*m.exprs).first(), catalog, gates))
                except GateBlocked as e:  # judge every group before refusing: the run log gets all verdicts
                    blocked = blocked or e
        if blocked:
            raise blocked
        snapshots = {}
        with run.stage("snapshot"):
            for group, latest in staged:
                snapshots[group.entity] = _write_snapshot(spark, lake, catalog, group, table_of[group.entity],
                                                          latest if first is None and last is None else None)
        out = []
        with run.stage("write"):
            for group, latest in staged:
                rows = written = stale = 0
                # One writer per group: a feature table's rows carry only its group's columns.
                with OnlineWriter(address, catalog=catalog, project=project, groups=[group.entity]) as writer:
                    batches = latest.select(*group.key, F.unix_millis(schema.event_time).alias(schema.event_time),
                                            *(f.name for f in group.features)).toArrow()
                    for batch in batches.to_batches(max_chunksize=_BATCH_ROWS):
                        stats = writer.write(batch.to_pylist())
                        rows += batch.num_rows
                        written, stale = written + stats.written, stale + stats.stale
                out.append(Materialized(schema.name, group.entity, rows, written, stale, snapshots[group.entity]))
                run.record.rows_in += rows
                run.record.rows_out += written
        return out
    finally:
        for _, latest in staged:
            latest.unpersist()


def _latest_rows(table, group, schema):
    """One row per entity of ``table``: its latest event's (greatest event time, ties by greatest event id)."""
    from pyspark.sql import Window, functions as F

    newest = Window.partitionBy(*group.key).orderBy(F.col(schema.event_time).desc(), F.col(schema.event_id).desc())
    return table.withColumn("_n", F.row_number().over(newest)).where("_n = 1").drop("_n")


def _write_snapshot(spark, lake: Lake, catalog: Catalog, group, table, latest) -> str:
    """Write ``group``'s fallback snapshot: the latest row per entity over every event date of its feature
    table (``latest`` when it already is that, i.e. no date range was given). Returns its path."""
    from pyspark.sql import functions as F

    from runtime.serving_snapshot import write_snapshot

    schema = catalog.schema
    rows = latest if latest is not None else _latest_rows(table, group, schema)
    arrow = rows.select(*group.key, F.unix_millis(schema.event_time).alias(schema.event_time),
                        *(f.name for f in group.features)).toArrow()
    return str(write_snapshot(lake.root, group.entity, schema.name, tuple(group.key), schema.event_time, arrow))
