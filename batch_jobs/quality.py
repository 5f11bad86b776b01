"""The quality gates' figures of one table, in one Spark aggregation.

:func:`measure` returns the aggregate expressions for every gate on the
table's columns (plus row count, partitions, null counts, numeric summaries and
the newest event) so a job folds them into the one pass it already makes over
its staged rows; :func:`figures` reads them back from the result row. A
references gate joins the distinct keys of its lake table first (broadcast),
so it is still the same single aggregation. The verdicts are judged in
``runtime.gates``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_jobs.compile_catalog import EVENT_DATE
from runtime.errors import UserError
from runtime.gates import Figures
from runtime.lake import Lake
from transforms import Catalog
from transforms.catalog import NUMERIC
from transforms.quality import Drift, Gate, Range, References

DECILES = [i / 10 for i in range(1, 10)]


@dataclass
class Measure:
    """The rows to aggregate (joined with reference keys when a gate needs them) and the expressions."""

    rows: DataFrame
    exprs: list[Column]
    columns: list[str]
    drift_new: list[str] = field(default_factory=list)  # drift columns without edges yet: deciles measured
    _edges: dict[str, list[float]] = field(default_factory=dict)


def _q(name: str) -> str:
    return f"`{name}`"


def measure(spark: SparkSession, df: DataFrame, lake: Lake, catalog: Catalog, gates: tuple[Gate, ...],
            edges: dict[str, list[float] | None]) -> Measure:
    """Expressions for the gates on ``df``'s columns. ``edges``: each drift column's reference decile edges
    (None: none yet; its deciles are measured so this run becomes the reference)."""
    present = [c for c in df.columns if c != EVENT_DATE]
    types = {**dict(catalog.input_columns()), **{f.name: catalog.feature_dtype(f) for _, f in catalog.features}}
    rows, exprs = df, [F.count(F.lit(1)).alias("_g_rows"), F.collect_set(F.col(EVENT_DATE)).alias("_g_dates"),
                       F.max(F.col(catalog.schema.event_time)).alias("_g_newest")]
    exprs += [F.count(F.col(_q(c))).alias(f"_g_nn_{i}") for i, c in enumerate(present)]
    numeric = [c for c in present if types.get(c) in NUMERIC]
    for i, c in enumerate(numeric):
        x = F.col(_q(c)).cast("double")
        exprs += [F.avg(x).alias(f"_g_mean_{i}"), F.min(x).alias(f"_g_min_{i}"), F.max(x).alias(f"_g_max_{i}")]
    m = Measure(rows, exprs, present)
    for j, gate in enumerate(g for g in gates if g.column in present):
        x = F.col(_q(gate.column))
        if isinstance(gate, Range):
            out = F.lit(False)
            if gate.min is not None:
                out = out | (x < F.lit(gate.min))
            if gate.max is not None:
                out = out | (x > F.lit(gate.max))
            m.exprs.append(F.sum(F.when(x.isNotNull() & out, 1).otherwise(0)).alias(f"_g_out_{j}"))
        elif isinstance(gate, Drift):
            e = edges.get(gate.column)
            if e is None:
                m.exprs.append(F.percentile_approx(x.cast("double"), DECILES, 10_000).alias(f"_g_dec_{j}"))
                m.drift_new.append(gate.column)
            else:
                m._edges[gate.column] = e
                m.exprs += _histogram(x.cast("double"), e, f"_g_h_{j}")
        elif isinstance(gate, References):
            path = str(lake.root / gate.table)
            from batch_jobs.delta_tables import table_exists

            if not table_exists(spark, path):
                raise UserError(f"gate {gate.name}: no Delta table at {path} (the reference table it checks against)")
            ref = spark.read.format("delta").load(path)
            if gate.key_column not in ref.columns:
                raise UserError(f"gate {gate.name}: {path} has no column {gate.key_column!r} "
                                f"(its columns: {', '.join(ref.columns)})")
            flag = f"_g_ref_{j}"
            keys = ref.select(F.col(_q(gate.key_column)).alias(f"_g_key_{j}")).distinct().withColumn(flag, F.lit(True))
            m.rows = m.rows.join(F.broadcast(keys), m.rows[_q(gate.column)] == keys[f"_g_key_{j}"], "left")
            m.exprs.append(F.sum(F.when(x.isNotNull() & F.col(flag).isNull(), 1).otherwise(0)).alias(f"_g_miss_{j}"))
    return m


def _histogram(x: Column, edges: list[float], prefix: str) -> list[Column]:
    """Counts of non-null ``x`` in (-inf, e1], (e1, e2], ..., (ek, inf)."""
    bounds = [None, *edges, None]
    out = []
    for i in range(len(bounds) - 1):
        cond = x.isNotNull()
        if bounds[i] is not None:
            cond = cond & (x > F.lit(bounds[i]))
        if bounds[i + 1] is not None:
            cond = cond & (x <= F.lit(bounds[i + 1]))
        out.append(F.sum(F.when(cond, 1).otherwise(0)).alias(f"{prefix}_{i}"))
    return out


def figures(spark: SparkSession, m: Measure, row, catalog: Catalog, gates: tuple[Gate, ...]) -> Figures:
    """The figures of the aggregated ``row``. A drift column measured for the first time gets its histogram
    over its own deciles in a second, small aggregation (once per pipeline: later runs reuse these edges)."""
    from datetime import timezone

    newest = row["_g_newest"]
    fig = Figures(rows=row["_g_rows"], dates=sorted(row["_g_dates"] or []),
                  newest_event=newest.replace(tzinfo=timezone.utc) if newest is not None and newest.tzinfo is None
                  else newest)
    fig.non_null = {c: row[f"_g_nn_{i}"] for i, c in enumerate(m.columns)}
    types = {**dict(catalog.input_columns()), **{f.name: catalog.feature_dtype(f) for _, f in catalog.features}}
    numeric = [c for c in m.columns if types.get(c) in NUMERIC]
    for i, c in enumerate(numeric):
        stats = {k: row[f"_g_{k}_{i}"] for k in ("mean", "min", "max")}
        fig.summaries[c] = {k: float(v) for k, v in stats.items() if v is not None}
    bootstrap = []
    for j, gate in enumerate(g for g in gates if g.column in m.columns):
        if isinstance(gate, Range):
            fig.outside[gate.name] = row[f"_g_out_{j}"]
        elif isinstance(gate, References):
            fig.missing_refs[gate.name] = row[f"_g_miss_{j}"]
        elif isinstance(gate, Drift):
            if gate.column in m._edges:
                e = m._edges[gate.column]
                fig.edges[gate.column] = e
                fig.histograms[gate.column] = [row[f"{f'_g_h_{j}'}_{i}"] for i in range(len(e) + 1)]
            elif row[f"_g_dec_{j}"]:
                e = sorted(set(float(v) for v in row[f"_g_dec_{j}"] if math.isfinite(v)))  # edges are finite
                fig.edges[gate.column] = e
                bootstrap.append((gate.column, e, f"_g_h_{j}"))
    if bootstrap:
        counts = m.rows.agg(*[c for col, e, p in bootstrap for c in _histogram(F.col(_q(col)).cast("double"), e, p)]
                            ).first()
        for col, e, p in bootstrap:
            fig.histograms[col] = [counts[f"{p}_{i}"] for i in range(len(e) + 1)]
    return fig


def partition_rows(spark: SparkSession, new_rows: DataFrame, dates, table_path: str | None = None) -> dict:
    """The volume gate's counts: each complete date's rows after the write (``runtime.gates`` says why
    complete only), ``new_rows``' plus, when they are appended to the Delta table at ``table_path``, its
    rows of that date already there. Small jobs: grouped by date over the new rows and the pruned partitions."""
    from datetime import datetime, timezone

    from batch_jobs.delta_tables import table_exists

    today = datetime.now(timezone.utc).date()
    complete = [d for d in dates if d < today]
    if not complete:
        return {}
    counts = {r[0]: r[1] for r in new_rows.where(F.col(EVENT_DATE).isin(complete)).groupBy(EVENT_DATE).count()
              .collect()}
    if table_path is not None and table_exists(spark, table_path):
        there = spark.read.format("delta").load(table_path).where(F.col(EVENT_DATE).isin(complete))
        for r in there.groupBy(EVENT_DATE).count().collect():
            counts[r[0]] = counts.get(r[0], 0) + r[1]
    return counts

