"""Judging quality gates: an engine's figures for one table, held to the catalog's gates.

The engines measure (``batch_jobs.quality`` in one Spark aggregation per table,
the stream per interval); the verdicts are decided here, once, so a gate means
the same on every path. Each verdict is a ``runtime.run_log.GateResult``:
``pass``; ``fail`` (a ``block`` gate stops the write, a ``warn`` gate only
alerts); or ``warn`` for a ``warn`` gate that failed. A gate that has nothing
to judge yet (no earlier run to compare volume or drift with) passes and says
so.

Rules, as computed:

- completeness: non-null values / rows >= ``min`` (no rows: passes, nothing to judge);
- freshness: (run end - newest event time) <= ``max_age`` (default: the pipeline's freshness SLA);
- volume: the mean rows of the complete partitions a run wrote, counted in the table after the write (the
  partition's total, not the run's share of it; a partition is complete once its UTC day is over: today's
  is still filling and is not judged) >= (1 - ``max_drop``) x the least such figure among the pipeline's
  last ``runs`` successful runs that had one. So a late file of a few events into a complete day is judged
  by the day's total, and an hourly run of today is not judged at all;
- range: values outside ``[min, max]`` / non-null values <= ``max_outside``;
- drift: the column's histogram over the reference's decile edges (recorded by the pipeline's first
  successful run holding the column, and kept by every later run) against the mean histogram of the last
  successful runs (at most 7): PSI = sum over bins of (p - q) ln(p / q), shares floored at 1e-4;
  KS = the largest gap between the two cumulative shares at the edges; <= the threshold;
- references: values absent from the reference table = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

from runtime.run_log import GateResult, RunRecord
from transforms.quality import WARN, Completeness, Drift, Freshness, Gate, Range, References, Volume

_FLOOR = 1e-4  # PSI's share floor: an empty bin would make the index infinite
REFERENCE_RUNS = 7


@dataclass
class Figures:
    """What an engine measured on the rows a run is about to publish."""

    rows: int
    dates: list = field(default_factory=list)  # the distinct event dates (partitions) among them
    non_null: dict[str, int] = field(default_factory=dict)  # column -> non-null values
    outside: dict[str, int] = field(default_factory=dict)  # range gate name -> non-null values outside
    histograms: dict[str, list[int]] = field(default_factory=dict)  # drift column -> counts per reference bin
    edges: dict[str, list[float]] = field(default_factory=dict)  # drift column -> the bin edges used
    missing_refs: dict[str, int] = field(default_factory=dict)  # references gate name -> values not found
    newest_event: datetime | None = None
    summaries: dict[str, dict[str, float]] = field(default_factory=dict)  # column -> mean, min, max
    partition_rows: dict = field(default_factory=dict)  # event date -> the partition's rows after the write

    @property
    def partitions(self) -> int:
        return len(self.dates)

    def null_rates(self) -> dict[str, float]:
        return {c: (1 - n / self.rows) if self.rows else 0.0 for c, n in self.non_null.items()}

    def distributions(self) -> dict[str, dict]:
        """What the run log keeps: summaries, and each drift column's edges and counts (the next run's reference)."""
        out: dict[str, dict] = {c: dict(s) for c, s in self.summaries.items()}
        for c, counts in self.histograms.items():
            out.setdefault(c, {}).update(edges=list(self.edges[c]), counts=list(counts))
        return out


def reference_edges(history: list[RunRecord], column: str) -> list[float] | None:
    """The decile edges the pipeline's drift histograms of ``column`` use: the first successful run's."""
    for run in history:
        d = run.distributions.get(column) if run.status == "success" else None
        if d and d.get("edges"):
            return list(d["edges"])
    return None


def judge(gates: tuple[Gate, ...], figures: Figures, history: list[RunRecord], ended_at: datetime,
          freshness_sla_ms: int) -> list[GateResult]:
    """The verdict of each gate that applies to ``figures`` (gates on columns it did not measure are skipped).
    ``history``: the same pipeline's earlier runs, oldest first."""
    ok = [r for r in history if r.status == "success"]
    out = []
    for gate in gates:
        result = _judge(gate, figures, ok, ended_at, freshness_sla_ms)
        if result is not None:
            figure, threshold, passed, why = result
            verdict = "pass" if passed else ("warn" if gate.action == WARN else "fail")
            out.append(GateResult(gate.name, gate.kind, gate.column, figure, threshold, verdict, gate.action, why))
    return out


def _judge(gate, fig: Figures, ok: list[RunRecord], ended_at: datetime, sla_ms: int):
    if isinstance(gate, Completeness):
        if gate.column not in fig.non_null:
            return None
        if not fig.rows:
            return None, gate.min, True, "no rows: nothing to judge"
        share = fig.non_null[gate.column] / fig.rows
        return share, gate.min, share >= gate.min, (
            f"{gate.column} is {_pct(share)} non-null ({fig.non_null[gate.column]:,} of {fig.rows:,} rows), "
            f"{'at or above' if share >= gate.min else 'below'} the {_pct(gate.min)} minimum")
    if isinstance(gate, Freshness):
        if fig.newest_event is None:
            return None
        limit_s = (sla_ms if gate.max_age is None else _ms(gate.max_age)) / 1000
        age = (ended_at - fig.newest_event).total_seconds()
        return age, limit_s, age <= limit_s, (
            f"the newest event is {_age(age)} old, {'within' if age <= limit_s else 'beyond'} the {_age(limit_s)} maximum")
    if isinstance(gate, Volume):
        if not fig.partitions:
            return None
        complete = [n for d, n in fig.partition_rows.items() if _date(d) < ended_at.date()]
        if not complete:
            return None, None, True, "no complete partition written (today's is still filling): nothing to judge"
        per = sum(complete) / len(complete)
        past = [v.figure for r in ok if (v := _volume(r)) is not None][-gate.runs:]
        if not past:
            return per, None, True, f"{per:,.0f} rows per partition; no earlier successful run to compare with"
        floor = (1 - gate.max_drop) * min(past)
        return per, floor, per >= floor, (
            f"{per:,.0f} rows per complete partition against at least {min(past):,.0f} in the last {len(past)} "
            f"successful run(s): {'within' if per >= floor else 'a drop beyond'} the {_pct(gate.max_drop)} allowed")
    if isinstance(gate, Range):
        if gate.name not in fig.outside:
            return None
        n = fig.non_null.get(gate.column, fig.rows)
        share = fig.outside[gate.name] / n if n else 0.0
        bounds = f"[{'-inf' if gate.min is None else gate.min}, {'inf' if gate.max is None else gate.max}]"
        return share, gate.max_outside, share <= gate.max_outside, (
            f"{fig.outside[gate.name]:,} of {n:,} {gate.column} values ({_pct(share)}) outside {bounds}, "
            f"{'within' if share <= gate.max_outside else 'above'} the {_pct(gate.max_outside)} allowed")
    if isinstance(gate, Drift):
        if gate.column not in fig.histograms:
            return None
        refs = [r.distributions[gate.column]["counts"] for r in ok[-REFERENCE_RUNS:]
                if (r.distributions.get(gate.column) or {}).get("edges") == fig.edges[gate.column]
                and r.distributions[gate.column].get("counts")]
        if not refs:
            return None, gate.limit, True, f"{gate.column}: first distribution recorded, the reference from now on"
        q = _mean_shares(refs)
        p = _shares(fig.histograms[gate.column])
        if p is None:
            return None, gate.limit, True, f"{gate.column}: no values to compare"
        value = psi(p, q) if gate.method == "psi" else ks(p, q)
        return value, gate.limit, value <= gate.limit, (
            f"{gate.column} {gate.method.upper()} {value:.3f} against the last {len(refs)} successful run(s), "
            f"{'within' if value <= gate.limit else 'above'} the {gate.limit:g} threshold")
    if isinstance(gate, References):
        if gate.name not in fig.missing_refs:
            return None
        n = fig.missing_refs[gate.name]
        return float(n), 0.0, n == 0, (f"{n:,} {gate.column} value(s) not in {gate.table}.{gate.key_column}"
                                        if n else f"every {gate.column} value is in {gate.table}.{gate.key_column}")
    raise TypeError(f"unknown gate {gate!r}")


def _volume(run: RunRecord) -> GateResult | None:
    """The run's judged volume figure, if it had one."""
    return next((g for g in run.gates if g.kind == "volume" and g.figure is not None), None)


def _date(d) -> date:
    return d if isinstance(d, date) else date.fromisoformat(str(d))


def _shares(counts: list[int]) -> list[float] | None:
    total = sum(counts)
    return [c / total for c in counts] if total else None


def _mean_shares(histograms: list[list[int]]) -> list[float]:
    shares = [s for s in (_shares(h) for h in histograms) if s is not None]
    return [sum(col) / len(shares) for col in zip(*shares)]


def psi(p: list[float], q: list[float]) -> float:
    """Population stability index of shares ``p`` against reference shares ``q``."""
    total = 0.0
    for a, b in zip(p, q):
        a, b = max(a, _FLOOR), max(b, _FLOOR)
        total += (a - b) * math.log(a / b)
    return total


def ks(p: list[float], q: list[float]) -> float:
    """The largest gap between the cumulative shares at the bin edges."""
    gap = cp = cq = 0.0
    for a, b in zip(p, q):
        cp, cq = cp + a, cq + b
        gap = max(gap, abs(cp - cq))
    return gap


def _ms(text: str) -> int:
    from transforms import parse_duration

    return parse_duration(text)


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
