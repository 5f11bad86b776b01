"""Backfill: recompute the feature tables for a range of event dates, idempotently.

Runnable as a Spark job::

    spark-submit --properties-file tandem-spark.conf batch_jobs/backfill.py \\
        --start 2024-05-01 --end 2024-05-07 [--project DIR] [--catalog NAME] [--lake PATH]

(``python -m batch_jobs.spark_session > tandem-spark.conf`` writes the
properties: pinned jars, UTC), or as ``tandem backfill --start ... --end ...``.

Windows reach back before ``--start``: the job reads the events it needs from
``start - longest window`` so the first day's features are complete. The rows
are staged (persisted), checked (one row per event of the range: same count
and same ids as the events table, no missing value), and only then each feature table's partitions of the range are
replaced in one Delta commit (``batch_jobs.delta_tables``).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_jobs.compile_catalog import EVENT_DATE, feature_rows, group_table
from batch_jobs.delta_tables import date_range_predicate, replace_partitions, table_exists
from batch_jobs.quality import figures, measure, partition_rows
from runtime.errors import UserError
from runtime.gates import Figures, reference_edges
from runtime.lake import Lake
from runtime.operations import Operations
from runtime.runs import Run, Trigger, recorded_run
from transforms import Catalog
from transforms.quality import Drift, Freshness, Gate, Volume

DAY_MS = 86_400_000


@dataclass
class BackfillResult:
    start: date
    end: date
    rows: int
    tables: dict[str, str]  # entity -> path


def longest_window_ms(catalog: Catalog) -> int:
    return max(f.window_ms for _, f in catalog.features)


def events_for_range(spark: SparkSession, lake: Lake, catalog: Catalog, start: date, end: date) -> DataFrame:
    """The events whose windows the range needs: from ``start - longest window`` to ``end``."""
    tables = lake.tables(catalog)
    if not table_exists(spark, tables.events):
        raise UserError(f"no events table at {tables.events}: run `tandem ingest --events PATH` first")
    lookback = longest_window_ms(catalog)
    first_ms = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000) - lookback
    first_day = start - timedelta(days=math.ceil(lookback / DAY_MS))
    events = spark.read.format("delta").load(tables.events)
    return events.where(
        (F.col(EVENT_DATE) >= F.lit(first_day)) & (F.col(EVENT_DATE) <= F.lit(end))  # partition pruning
        & (F.unix_millis(F.col(catalog.schema.event_time)) >= F.lit(first_ms))
    ).select(*catalog.schema.field_names)


def compute_features(spark: SparkSession, lake: Lake, catalog: Catalog, start: date, end: date) -> DataFrame:
    """Feature rows (the catalog's feature row columns + event_date) of the events dated ``[start, end]``."""
    from batch_jobs.exact_sum import register_exact_sum

    register_exact_sum(spark)
    rows = feature_rows(events_for_range(spark, lake, catalog, start, end), catalog)
    return rows.where(date_range_predicate(start, end))


def backfill(spark: SparkSession, lake: Lake, start: date, end: date, catalog: Catalog, trigger: str | Trigger = "cli",
             operations: Operations | None = None, gates: bool = True) -> BackfillResult:
    """Recompute, check, gate and commit; the run is one row of the lake's run log (``runtime.runs``),
    and ``operations`` (the project's alert channels and SLAs) hear of a failure or a gate. ``gates=False``
    only to price them (benchmarks/batch_features.py): no CLI or job turns them off."""
    if start > end:
        raise UserError(f"--start {start} is after --end {end}")
    with recorded_run(lake.root, f"backfill:{catalog.schema.name}", trigger, operations) as run:
        rows = compute_features(spark, lake, catalog, start, end)
        # Stage only what the tables store: a row function no table keeps (amount_log1p) is never computed.
        stored = list(dict.fromkeys(c for g in catalog.groups for c in group_table(rows, catalog, g.entity).columns))
        staged = rows.select(*stored).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            checked = tuple(g for g in catalog.quality_gates if not isinstance(g, Freshness)) if gates else ()
            with run.stage("compute and check"):
                n, figures = _check_staged(spark, staged, lake, catalog, start, end, checked, run)
            run.record.rows_in = run.record.rows_out = n
            run.record.partitions = sorted(d.isoformat() for d in figures.dates)
            if any(isinstance(g, Volume) for g in checked):  # the staged rows are each date's whole partition
                figures.partition_rows = partition_rows(spark, staged, figures.dates)
            run.gate(checked, figures)
            tables = {}
            with run.stage("write"):
                for group in catalog.groups:
                    path = lake.tables(catalog).features(group.entity)
                    table = group_table(staged, catalog, group.entity)
                    replace_partitions(table, path, start, end,
                                       [*group.key, catalog.schema.event_time, catalog.schema.event_id])
                    tables[group.entity] = path
        finally:
            staged.unpersist()
    return BackfillResult(start, end, n, tables)


def _id_fingerprint(df: DataFrame, event_id: str) -> list[Column]:
    """Row count and the sum of 64-bit id hashes: equal for two sets of rows with the same ids.

    One aggregation pass with no shuffle (unlike a distinct count), and any
    lost, extra or repeated event changes it.
    """
    return [F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(F.col(event_id)).cast("decimal(38,0)")).alias("ids")]


def _check_staged(spark, staged: DataFrame, lake: Lake, catalog: Catalog, start: date, end: date,
                  gates: tuple[Gate, ...], run: Run) -> tuple[int, Figures]:
    """Refuse to commit rows that are not exactly one complete feature row per event of the range (a null
    only where the catalog allows one: a feature of an optional field); measure the gates' figures in the
    same aggregation."""
    event_id = catalog.schema.event_id
    tables = lake.tables(catalog)
    events = spark.read.format("delta").load(tables.events).where(date_range_predicate(start, end))
    expected = events.agg(*_id_fingerprint(events, event_id)).first()
    if expected["n"] == 0:
        raise UserError(f"no events dated {start} .. {end} in {tables.events}: nothing to backfill")
    names = [c for c in staged.columns if c != EVENT_DATE and not catalog.may_be_null(c)]
    edges = {g.column: reference_edges(run.history(), g.column) for g in gates if isinstance(g, Drift)}
    m = measure(spark, staged, lake, catalog, gates, edges)
    stats = m.rows.agg(
        *_id_fingerprint(staged, event_id),
        *(F.sum(F.col(c).isNull().cast("long")).alias(c) for c in names),
        *m.exprs,
    ).first()
    nulls = {c: stats[c] for c in names if stats[c]}
    if stats["n"] != expected["n"] or stats["ids"] != expected["ids"] or nulls:
        raise RuntimeError(
            f"staged feature rows failed validation, nothing committed: {stats['n']} rows for {expected['n']} "
            f"events, ids {'match' if stats['ids'] == expected['ids'] else 'differ'}; null values: {nulls or 'none'}")
    return expected["n"], figures(spark, m, stats, catalog, gates)


def parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option}: {text!r} is not a date like 2024-05-01") from None


def main(argv: list[str] | None = None) -> int:
    """``spark-submit batch_jobs/backfill.py --start D --end D [--project DIR] [--catalog C] [--lake PATH]``."""
    from batch_jobs.spark_session import build_spark
    from runtime.project import find_project

    parser = argparse.ArgumentParser(prog="backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, help="first event date (UTC), e.g. 2024-05-01")
    parser.add_argument("--end", required=True, help="last event date (UTC), inclusive")
    parser.add_argument("--project", default=None, help="project folder (default: the nearest tandem.yaml)")
    parser.add_argument("--catalog", default=None, help="one catalog: a source name of the project or "
                                                        "MODULE_OR_FILE[:ATTR] (default: every catalog)")
    parser.add_argument("--lake", default=None, help="lake root (default: the project's)")
    args = parser.parse_args(argv)
    try:
        start, end = parse_date(args.start, "--start"), parse_date(args.end, "--end")
        project = find_project(args.project)
        catalogs = [project.catalog(args.catalog)] if args.catalog else list(project.catalogs().values())
        lake = Lake.at(args.lake or project.lake_root)
        spark = build_spark("tandem-backfill")
        for catalog in catalogs:
            result = backfill(spark, lake, start, end, catalog, operations=project.operations)
            print(f"backfilled {result.rows} feature rows of {catalog.schema.name} for {result.start} .. "
                  f"{result.end} into " + ", ".join(result.tables.values()))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
