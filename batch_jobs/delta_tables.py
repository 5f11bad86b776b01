"""Delta writes with the guarantees Tandem promises: whole partitions replaced in one commit.

A feature table is rewritten a date range at a time with ``replaceWhere``:
the new rows of exactly those ``event_date`` partitions and the removal of the
old ones land in one Delta commit, so readers see the table before or after,
never between, and a run killed before its commit leaves it untouched (the
files it wrote are unreferenced and ``VACUUM`` removes them).
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, SparkSession

from batch_jobs.compile_catalog import EVENT_DATE


def table_exists(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def date_range_predicate(start: date, end: date) -> str:
    return f"{EVENT_DATE} >= DATE'{start.isoformat()}' AND {EVENT_DATE} <= DATE'{end.isoformat()}'"


def replace_partitions(rows: DataFrame, path: str, start: date, end: date, sort_by: list[str]) -> None:
    """Atomically replace the ``event_date`` partitions in ``[start, end]`` with ``rows``.

    Rows are laid out deterministically (one file per date, sorted) so a re-run
    writes the same data in the same order. Delta's ``replaceWhere`` also
    refuses, at commit, any row outside the range: a bug cannot leak writes
    into other partitions.
    """
    (rows.repartition(EVENT_DATE).sortWithinPartitions(EVENT_DATE, *sort_by)
     .write.format("delta").mode("overwrite")
     .option("replaceWhere", date_range_predicate(start, end))
     .partitionBy(EVENT_DATE)
     .save(path))
