"""``tandem status``: how each pipeline has been running, computed from the run log alone.

One :class:`PipelineStatus` per pipeline of the run log, over a period
[since, until] (``tandem status``: the last 7 days, or ``--since``, up to now).
The definitions, exactly as computed below:

* A run's time is its end (``ended_at``). A run is *in the period* when it
  ended at or after ``since`` and at or before ``until``; a run with no end is
  still running and counts nowhere. A run *failed* when its status is
  ``failed`` or ``blocked`` (a gate refused the write: nothing was published).
  "Latest" means the largest (ended_at, started_at, run_id).
* ``runs``: the runs in the period. ``scheduled_runs``: those with trigger
  ``schedule``. ``failed_runs``: the failed runs in the period, any trigger
  (retries and manual runs included).
* ``availability`` = successful scheduled runs / scheduled runs, in the
  period; None when nothing was scheduled.
* ``budget_left``: the reliability budget allows allowed = (1 − target) ×
  scheduled_runs failed scheduled runs; budget_left = (allowed − failed
  scheduled runs) / allowed: 1 untouched, 0 spent, negative overspent. None
  when nothing was scheduled. (target: the pipeline's ``availability`` in
  tandem.yaml, 0 < target < 1.)
* ``freshness_age_s`` = until − ``newest_event`` of the latest successful run
  holding a ``newest_event`` among the runs ended at or before until (before
  the period too: what is served does not expire with the period); None when
  there is none. ``freshness_sla_s``: the pipeline's SLA (``freshness_for``).
  ``fresh``: an age is known and age ≤ SLA.
* ``completeness`` = the lowest (1 − null rate) over the columns of the latest
  successful run ended at or before until; None when there is none or it
  recorded no null rates.
* Last failure: the latest failed run in the period; ``last_failure_at`` its
  end; ``last_failure_why`` its ``error`` (failed) or the ``why`` of each gate
  that blocked it, joined by "; " (blocked). None when no run failed.
* ``mttr_s``: every run ended at or before until, in order of end, is walked;
  a failure *episode* opens at the end of a failed run when none is open, and
  closes at the end of the next successful run, whatever its trigger (a retry
  or a manual rerun repairs too); its repair time is close − open. ``mttr_s`` =
  the mean repair time of the episodes that closed in the period; an episode
  still open at until is not counted. None when no episode closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from rich.console import Console
from rich.table import Table

from runtime.operations import Operations, PipelineSettings
from runtime.run_log import RunRecord
from transforms import parse_duration

FAILED = ("failed", "blocked")


@dataclass(frozen=True)
class PipelineStatus:
    pipeline: str
    owner: str
    runs: int
    scheduled_runs: int
    failed_runs: int
    availability: float | None
    availability_target: float
    budget_left: float | None
    freshness_age_s: float | None
    freshness_sla_s: float
    fresh: bool
    completeness: float | None
    last_failure_at: datetime | None
    last_failure_why: str | None
    mttr_s: float | None

    @property
    def available(self) -> bool:
        """Availability met its target (or nothing was scheduled)."""
        return self.availability is None or self.availability >= self.availability_target

    @property
    def breached(self) -> bool:
        return not self.available or not self.fresh or (self.budget_left is not None and self.budget_left < 0)


# --- the figures ----------------------------------------------------------------------------------


def parse_since(text: str, now: datetime) -> datetime:
    """``7d``/``12h``/... before ``now``, or a date or time (ISO 8601; UTC unless it says otherwise)."""
    try:
        return now - timedelta(milliseconds=parse_duration(text))
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (e.g. 12h, 7d) nor a date or time "
                         "(e.g. 2026-05-01, 2026-05-01T12:00Z)") from None
    t = t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)
    if t > now:
        raise ValueError(f"{text!r} is in the future")
    return t


def _order(r: RunRecord):
    return (r.ended_at, r.started_at, r.run_id)


def _why(r: RunRecord) -> str:
    if r.status == "blocked":
        return "; ".join(g.why for g in r.gates if g.blocks)
    return r.error or ""


def pipeline_status(pipeline: str, records: Iterable[RunRecord], settings: PipelineSettings,
                    since: datetime, until: datetime) -> PipelineStatus:
    """The figures of one pipeline (the module's docstring defines them) from its runs, any order."""
    ended = sorted((r for r in records if r.pipeline == pipeline and r.ended_at is not None and r.ended_at <= until),
                   key=_order)
    period = [r for r in ended if r.ended_at >= since]
    scheduled = [r for r in period if r.trigger == "schedule"]
    ok_scheduled = sum(1 for r in scheduled if r.status == "success")
    target = settings.availability
    availability = budget_left = None
    if scheduled:
        availability = ok_scheduled / len(scheduled)
        allowed = (1 - target) * len(scheduled)
        budget_left = (allowed - (len(scheduled) - ok_scheduled)) / allowed
    successes = [r for r in ended if r.status == "success"]
    holding = [r for r in successes if r.newest_event is not None]
    age = (until - holding[-1].newest_event).total_seconds() if holding else None
    sla = settings.freshness_for(pipeline) / 1000
    rates = successes[-1].null_rates if successes else {}
    failures = [r for r in period if r.status in FAILED]
    return PipelineStatus(
        pipeline=pipeline, owner=settings.owner, runs=len(period), scheduled_runs=len(scheduled),
        failed_runs=len(failures), availability=availability, availability_target=target,
        budget_left=budget_left, freshness_age_s=age, freshness_sla_s=sla, fresh=age is not None and age <= sla,
        completeness=min(1 - v for v in rates.values()) if rates else None,
        last_failure_at=failures[-1].ended_at if failures else None,
        last_failure_why=_why(failures[-1]) if failures else None,
        mttr_s=_mttr(ended, since))


def _mttr(ended: list[RunRecord], since: datetime) -> float | None:
    opened, repairs = None, []
    for r in ended:
        if r.status in FAILED:
            opened = opened or r.ended_at
        elif opened is not None:
            if r.ended_at >= since:
                repairs.append((r.ended_at - opened).total_seconds())
            opened = None
    return sum(repairs) / len(repairs) if repairs else None


def compute(records: list[RunRecord], operations: Operations | None, since: datetime,
            until: datetime) -> list[PipelineStatus]:
    """One status per pipeline of ``records``, by name."""
    settings = operations.pipeline if operations is not None else (lambda name: PipelineSettings())
    return [pipeline_status(name, records, settings(name), since, until)
            for name in sorted({r.pipeline for r in records})]


# --- shown in words -------------------------------------------------------------------------------


def human(seconds: float | None) -> str:
    """``seconds`` in the two largest units: 45s, 3m 20s, 2h 5m, 1d 3h."""
    if seconds is None:
        return "n/a"
    if seconds < 0:
        return "-" + human(-seconds)
    s = int(seconds)
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // small_size
            return f"{s // size}{unit}" + (f" {rest}{small}" if rest else "")
    return f"{s}s"


def share(value: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def when(t: datetime | None) -> str:
    return "n/a" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") + "Z"


def period_words(since: datetime, until: datetime) -> str:
    return f"{when(since)} to {when(until)} ({human((until - since).total_seconds())})"


def print_table(statuses: list[PipelineStatus], console: Console, since: datetime, until: datetime) -> None:
    """One row per pipeline; a missed target, an overspent budget or stale data in red."""
    if not console.is_terminal and console.width < 200:  # a pipe or CI log: whole figures, not "99.…"
        console = Console(file=console.file, width=200)
    table = Table(title=f"Pipelines, {period_words(since, until)}")
    table.add_column("pipeline", no_wrap=True)
    table.add_column("owner", no_wrap=True)
    table.add_column("runs (failed)", justify="right", no_wrap=True)
    table.add_column("availability / target", justify="right", no_wrap=True)
    table.add_column("budget left", justify="right", no_wrap=True)
    table.add_column("freshness / SLA", justify="right", no_wrap=True)
    table.add_column("complete", justify="right", no_wrap=True)
    table.add_column("MTTR", justify="right", no_wrap=True)
    table.add_column("last failure", overflow="fold")
    for s in statuses:
        failure = "" if s.last_failure_at is None else f"{when(s.last_failure_at)}: {s.last_failure_why}"
        table.add_row(
            s.pipeline, s.owner, f"{s.runs} ({s.failed_runs})",
            _red(f"{share(s.availability)} / {share(s.availability_target)}", not s.available),
            _red(share(s.budget_left), s.budget_left is not None and s.budget_left < 0),
            _red(f"{human(s.freshness_age_s)} / {human(s.freshness_sla_s)}", not s.fresh),
            share(s.completeness), human(s.mttr_s), failure)
    console.print(table)
    bad = [s.pipeline for s in statuses if s.breached]
    console.print(f"[bold red]{len(bad)} of {len(statuses)} pipelines miss a target[/]: {', '.join(bad)}" if bad
                  else f"[bold green]all {len(statuses)} pipelines meet their targets[/]", highlight=False)


def _red(text: str, bad: bool) -> str:
    from rich.markup import escape

    return f"[bold red]{escape(text)}[/]" if bad else escape(text)
