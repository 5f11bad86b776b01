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

The page (``--html``) charts, per pipeline and per run in the period: the
freshness at the run's end t (t − ``newest_event`` of the latest successful
run ended at or before t holding one: the age of what was served then, the
same measure as ``freshness_age_s`` at until), the rows it wrote
(``rows_out``), and each quality gate's verdict. It is one self-contained file:
inline SVG drawn here, no scripts, no external styles or fonts.
"""

from __future__ import annotations

import html
import math
import re
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


def breaches(statuses: list[PipelineStatus]) -> list:
    """An ``sla_breach`` alert (``runtime.alerts``) per pipeline whose freshness is beyond its SLA or whose
    availability is below its target; one ongoing breach per pipeline and kind of breach (its subject)."""
    from runtime.alerts import Alert

    out = []
    for s in statuses:
        if s.freshness_age_s is not None and not s.fresh:
            out.append(Alert("sla_breach", s.pipeline, s.owner,
                             f"{s.pipeline}: the newest served event is {human(s.freshness_age_s)} old, beyond its "
                             f"{human(s.freshness_sla_s)} freshness SLA",
                             {"age_s": s.freshness_age_s, "sla_s": s.freshness_sla_s}, subject="freshness"))
        if s.availability is not None and s.availability < s.availability_target:
            out.append(Alert("sla_breach", s.pipeline, s.owner,
                             f"{s.pipeline}: availability {share(s.availability)} of {s.scheduled_runs} scheduled "
                             f"runs, below its {share(s.availability_target)} target",
                             {"availability": s.availability, "target": s.availability_target,
                              "budget_left": s.budget_left}, subject="availability"))
    return out


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


@dataclass(frozen=True)
class ServedAge:
    """A run of the period and the freshness at its end t: of what was served just before it, and after it."""

    run: RunRecord
    before: float | None  # t - newest_event of the latest earlier success holding one (None: nothing yet)
    after: float | None  # the same with this run counted: it differs when this run published a newer event


def served_ages(records: list[RunRecord], pipeline: str, since: datetime, until: datetime) -> list[ServedAge]:
    """Each run of ``pipeline`` in the period, in order of end, with the freshness at its end."""
    newest, out = None, []
    for r in sorted((r for r in records if r.pipeline == pipeline and r.ended_at is not None
                     and r.ended_at <= until), key=_order):
        before = None if newest is None else (r.ended_at - newest).total_seconds()
        if r.status == "success" and r.newest_event is not None:
            newest = r.newest_event
        if r.ended_at >= since:
            out.append(ServedAge(r, before, None if newest is None else (r.ended_at - newest).total_seconds()))
    return out


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


# --- the page -------------------------------------------------------------------------------------

GRID_RUNS = 60  # the gate grid shows this many latest runs of the period
CHART_RUNS = 4000  # the charts' lines join at most this many runs of the period, evenly spread
DOT_RUNS = 300  # beyond this many runs, a chart marks only the failed ones (the latest this many)
W, H = 560, 210  # one chart
L, R, T, B = 62, 14, 16, 36  # its margins: y labels left, time labels below
TIME_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
DURATION_STEPS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
                  2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400, 365 * 86400)
GREEN, AMBER, RED, GREY, BLUE = "#1a7f37", "#c88a00", "#cf222e", "#8c959f", "#3b6fb6"
STATUS_COLOUR = {"success": GREEN, "failed": RED, "blocked": AMBER}
VERDICT_COLOUR = {"pass": GREEN, "warn": AMBER, "fail": RED}

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #1f2328;
       background: #fff; max-width: 1220px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 0; }
.sub { color: #59636e; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 20px; width: 100%; }
th, td { border-bottom: 1px solid #d1d9e0; padding: 5px 8px; text-align: right; white-space: nowrap;
         font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; font-weight: 600; } th:first-child, td:first-child, td.why { text-align: left; }
th.why { text-align: left; } td.why { white-space: normal; max-width: 300px; color: #59636e; }
.bad { background: #ffebe9; color: #a40e26; font-weight: 600; }
.ok { color: #1a7f37; }
section { border: 1px solid #d1d9e0; border-radius: 8px; padding: 14px 18px; margin: 0 0 22px; }
.head { display: flex; flex-wrap: wrap; gap: 6px 8px; align-items: baseline; margin: 0 0 10px; }
.owner { color: #59636e; margin-right: 8px; }
.chip { border-radius: 12px; padding: 2px 10px; background: #eef1f4; white-space: nowrap; }
.chip.bad { background: #ffebe9; } .chip.good { background: #dafbe1; color: #116329; }
.failure { margin: 0 0 10px; color: #59636e; } .failure b { color: #a40e26; }
.charts { display: flex; gap: 16px; flex-wrap: wrap; }
figure { margin: 0 0 10px; } figcaption { color: #59636e; font-size: 12.5px; max-width: 560px; }
figure.grid figcaption { max-width: none; }
svg text { font: 11.5px system-ui, -apple-system, "Segoe UI", sans-serif; fill: #59636e; }
svg text.label { fill: #1f2328; }
svg text.sla { fill: #cf222e; paint-order: stroke; stroke: #fbfcfd; stroke-width: 4px; font-weight: 600; }
.legend span { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px; }
"""


def render_html(statuses: list[PipelineStatus], records: list[RunRecord], since: datetime, until: datetime,
                project: str = "") -> str:
    """The status page: a summary table, then per pipeline its figures, two charts and its gate grid."""
    bad = sum(s.breached for s in statuses)
    verdict = (f"<b class='bad'>&nbsp;{bad} of {len(statuses)} pipelines miss a target&nbsp;</b>" if bad
               else f"<b class='ok'>all {len(statuses)} pipelines meet their targets</b>")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Tandem status{': ' + _e(project) if project else ''}</title><style>{_CSS}</style></head><body>",
        f"<h1>Pipeline status{': ' + _e(project) if project else ''}</h1>",
        f"<p class='sub'>{_e(period_words(since, until))}. {verdict}. Figures from the run log; the definitions "
        "are in <code>tandem/status.py</code>.</p>",
        _summary(statuses),
    ]
    parts.extend(_section(s, served_ages(records, s.pipeline, since, until), since, until) for s in statuses)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _cell(text: str, bad: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in (cls, "bad" if bad else "") if c)
    return f"<td class='{classes}'>{_e(text)}</td>" if classes else f"<td>{_e(text)}</td>"


def _summary(statuses: list[PipelineStatus]) -> str:
    head = ("<tr><th>pipeline</th><th>owner</th><th>runs</th><th>failed</th><th>availability</th><th>target</th>"
            "<th>budget left</th><th>freshness</th><th>SLA</th><th>complete</th><th>MTTR</th>"
            "<th class='why'>last failure</th></tr>")
    rows = []
    for s in statuses:
        failure = "" if s.last_failure_at is None else f"{when(s.last_failure_at)}: {s.last_failure_why}"
        rows.append(
            f"<tr><td><a href='#{_id(s.pipeline)}'>{_e(s.pipeline)}</a></td>{_cell(s.owner)}{_cell(str(s.runs))}"
            f"{_cell(str(s.failed_runs))}{_cell(share(s.availability), not s.available)}"
            f"{_cell(share(s.availability_target))}"
            f"{_cell(share(s.budget_left), s.budget_left is not None and s.budget_left < 0)}"
            f"{_cell(human(s.freshness_age_s), not s.fresh)}{_cell(human(s.freshness_sla_s))}"
            f"{_cell(share(s.completeness))}{_cell(human(s.mttr_s))}{_cell(failure, cls='why')}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _chip(text: str, bad: bool | None = None) -> str:
    cls = "chip" + ("" if bad is None else " bad" if bad else " good")
    return f"<span class='{cls}'>{_e(text)}</span>"


def _section(s: PipelineStatus, ages: list[ServedAge], since: datetime,
             until: datetime) -> str:
    budget_bad = s.budget_left is not None and s.budget_left < 0
    chips = [
        _chip(f"{s.runs} run{'' if s.runs == 1 else 's'}, {s.failed_runs} failed"),
        _chip(f"availability {share(s.availability)} (target {share(s.availability_target)}, "
              f"{s.scheduled_runs} scheduled)", None if s.availability is None else not s.available),
        _chip(f"budget left {share(s.budget_left)}", None if s.budget_left is None else budget_bad),
        _chip(f"freshness {human(s.freshness_age_s)} (SLA {human(s.freshness_sla_s)})", not s.fresh),
        _chip(f"complete {share(s.completeness)}"),
        _chip(f"MTTR {human(s.mttr_s)}"),
    ]
    out = [f"<section id='{_id(s.pipeline)}'><div class='head'><h2>{_e(s.pipeline)}</h2>"
           f"<span class='owner'>owner {_e(s.owner)}</span>{''.join(chips)}</div>"]
    if s.last_failure_at is not None:
        out.append(f"<p class='failure'><b>last failure</b> {_e(when(s.last_failure_at))}: "
                   f"{_e(s.last_failure_why)}</p>")
    if not ages:
        out.append("<p><i>No run ended in the period.</i></p></section>")
        return "\n".join(out)
    out.append("<div class='charts'>" + _freshness_chart(s, ages, since, until)
               + _volume_chart([a.run for a in ages], since, until) + "</div>")
    out.append(_gate_grid([a.run for a in ages]))
    out.append("</section>")
    return "\n".join(out)


def nice_top(value: float, steps: tuple[float, ...] | None = None) -> tuple[float, float]:
    """The top of an axis holding ``value`` and its tick step: a multiple of a round step, at most 5 ticks."""
    value = max(value, 1e-9)
    if steps is None:  # counts: 1, 2, 5 x 10^k
        k = 10 ** max(len(str(int(value))) - 2, 0)
        steps = tuple(m * k * f for f in (1, 10, 100) for m in (1, 2, 5))
    step = next((st for st in steps if value / st <= 5), None)
    if step is None:
        step = steps[-1] * math.ceil(value / steps[-1] / 5)
    return math.ceil(value / step) * step, step


class _Frame:
    """A chart's axes: time across [since, until], a value up the side from 0 to a round top."""

    def __init__(self, since: datetime, until: datetime, top: float, steps: tuple[float, ...] | None = None):
        self.since, self.span = since, max((until - since).total_seconds(), 1.0)
        self.top, self.step = nice_top(top, steps)

    def x(self, t: datetime) -> float:
        return L + (t - self.since).total_seconds() / self.span * (W - L - R)

    def y(self, v: float) -> float:
        return H - B - max(min(v, self.top), 0) / self.top * (H - T - B)

    def axes(self, label) -> str:
        parts = [f"<rect x='{L}' y='{T}' width='{W - L - R}' height='{H - T - B}' fill='#fbfcfd' stroke='#d1d9e0'/>"]
        for k in range(round(self.top / self.step) + 1):
            y = self.y(k * self.step)
            parts.append(f"<line x1='{L}' x2='{W - R}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e6eaef'/>"
                         f"<text x='{L - 6}' y='{y + 4:.1f}' text-anchor='end'>{_e(label(k * self.step))}</text>")
        for t in self.time_ticks():
            x = self.x(t)
            label = t.strftime("%b %d") if (t.hour, t.minute) == (0, 0) else t.strftime("%H:%M")
            anchor = "start" if x - L < 20 else "end" if W - R - x < 20 else "middle"
            parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{H - B}' y2='{H - B + 4}' stroke='#8c959f'/>"
                         f"<text x='{x:.1f}' y='{H - B + 17}' text-anchor='{anchor}'>{_e(label)}</text>")
        return "".join(parts)

    def time_ticks(self) -> list[datetime]:
        """Round UTC times across the period, at most 8 (midnights shown as dates, other times as HH:MM)."""
        step = next((st for st in TIME_STEPS if self.span / st <= 8), None)
        step = step or TIME_STEPS[-1] * math.ceil(self.span / TIME_STEPS[-1] / 8)
        first = math.ceil(self.since.timestamp() / step) * step
        n = int((self.since.timestamp() + self.span - first) // step) + 1
        return [datetime.fromtimestamp(first + k * step, tz=timezone.utc) for k in range(n)]


def _svg(kind: str, pipeline: str, body: str, caption: str, width: int = W, height: int = H) -> str:
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' class='{kind}' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{_e(pipeline)} {kind}'>{body}</svg>"
            f"<figcaption>{caption}</figcaption></figure>")


def _latest(items: list, n: int) -> tuple[list, str]:
    return (items[-n:], f" (the latest {n} of {len(items)} runs drawn)") if len(items) > n else (items, "")


def _even(items: list, n: int) -> tuple[list, str]:
    """At most ``n`` of ``items``, evenly spread, the last included; and a note when some were left out."""
    if len(items) <= n:
        return items, ""
    return ([items[k * (len(items) - 1) // (n - 1)] for k in range(n)],
            f"; {n:,} of {len(items):,} runs drawn, evenly spread")


def _dots(items: list, failed) -> tuple[list, str]:
    """Every item when there are few; else only the failed ones (the latest ``DOT_RUNS``)."""
    if len(items) <= DOT_RUNS:
        return items, ""
    failures = [x for x in items if failed(x)]
    return failures[-DOT_RUNS:], f"; {len(items):,} runs: only failed runs are marked"


def _freshness_chart(s: PipelineStatus, ages: list[ServedAge], since: datetime, until: datetime) -> str:
    shown, note = _even(ages, CHART_RUNS)
    known = [v for a in ages for v in (a.before, a.after) if v is not None]
    frame = _Frame(since, until, max([s.freshness_sla_s * 1.1, *known, s.freshness_age_s or 0]), DURATION_STEPS)
    sla_y = frame.y(s.freshness_sla_s)
    body = [frame.axes(human),
            f"<line x1='{L}' x2='{W - R}' y1='{sla_y:.1f}' y2='{sla_y:.1f}' stroke='{RED}' stroke-dasharray='6 4'/>"
            f"<text x='{L + 6}' y='{sla_y - 5:.1f}' class='sla'>"
            f"SLA {_e(human(s.freshness_sla_s))}</text>"]
    # The age of what is served grows by one second a second and drops when a run publishes newer events.
    curve = []
    first = ages[0]
    if first.before is not None:  # the age at since, from a run before the period
        curve.append((frame.x(since), frame.y(first.before - (first.run.ended_at - since).total_seconds())))
    for a in shown:
        x = frame.x(a.run.ended_at)
        curve.extend((x, frame.y(v)) for v in dict.fromkeys((a.before, a.after)) if v is not None)
    if s.freshness_age_s is not None:
        curve.append((frame.x(until), frame.y(s.freshness_age_s)))
    if curve:
        body.append("<polyline fill='none' stroke='#6e7781' stroke-width='1.5' stroke-linejoin='round' points='"
                    + " ".join(f"{x:.1f},{y:.1f}" for x, y in curve) + "'/>")
    marked, marked_note = _dots([a for a in ages if a.after is not None], lambda a: a.run.status in FAILED)
    for a in marked:
        body.append(f"<circle cx='{frame.x(a.run.ended_at):.1f}' cy='{frame.y(a.after):.1f}' r='4' "
                    f"fill='{STATUS_COLOUR[a.run.status]}' stroke='#fff'><title>{_e(_run_title(a.run))}\n"
                    f"served data {_e(human(a.after))} old</title></circle>")
    if s.freshness_age_s is not None:
        body.append(f"<circle cx='{frame.x(until):.1f}' cy='{frame.y(s.freshness_age_s):.1f}' r='5' fill='#fff' "
                    f"stroke='{GREEN if s.fresh else RED}' stroke-width='2.5'><title>at {_e(when(until))}: "
                    f"{_e(human(s.freshness_age_s))} old</title></circle>")
    caption = (f"<b>Freshness</b>: age of the newest served event over time; a dot at each run's end "
               f"(its status), the ring now; the dashed line is the SLA{_e(note + marked_note)}.")
    return _svg("freshness", s.pipeline, "".join(body), caption)


def _volume_chart(runs: list[RunRecord], since: datetime, until: datetime) -> str:
    frame = _Frame(since, until, max(r.rows_out for r in runs))
    body = [frame.axes(lambda v: f"{v:,.0f}")]
    bars, note = _dots(runs, lambda r: r.status in FAILED)
    if note:  # many runs: their volume as a line, the failed ones as bars
        shown, sampled = _even(runs, CHART_RUNS)
        note = sampled + note
        body.append(f"<polyline fill='none' stroke='{GREEN}' stroke-width='1.2' stroke-linejoin='round' points='"
                    + " ".join(f"{frame.x(r.ended_at):.1f},{frame.y(r.rows_out):.1f}" for r in shown) + "'/>")
    width = 2.0 if note else max(3.0, min(10.0, (W - L - R) / max(len(runs), 1) * 0.6))
    for r in bars:  # a failed or blocked run's bar is at least 4 px: seen even when it wrote nothing
        x, y = frame.x(r.ended_at), frame.y(r.rows_out)
        height = max(H - B - y, 4.0 if r.status in FAILED else 1.5)
        body.append(f"<rect x='{x - width / 2:.1f}' y='{H - B - height:.1f}' width='{width:.1f}' "
                    f"height='{height:.1f}' fill='{STATUS_COLOUR[r.status]}'><title>{_e(_run_title(r))}</title></rect>")
    caption = (f"<b>Volume</b>: rows written by each run (green success, red failed, amber blocked){_e(note)}.")
    return _svg("volume", runs[0].pipeline, "".join(body), caption)


def _gate_grid(runs: list[RunRecord]) -> str:
    shown, note = _latest(runs, GRID_RUNS)
    gates: list[str] = []
    for r in shown:
        gates.extend(g.gate for g in r.gates if g.gate not in gates)
    if not gates:
        return "<p><i>No quality gate ran in these runs.</i></p>"
    cell, gap = 18, 3
    label_w = min(280, 16 + 7 * max(len(g) for g in [*gates, "run status"]))
    width, height = label_w + cell * len(shown) + 4, cell * (len(gates) + 1) + 4

    def square(x, y, colour, title, round_=2):
        return (f"<rect x='{x}' y='{y}' width='{cell - gap}' height='{cell - gap}' rx='{round_}' fill='{colour}'>"
                f"<title>{_e(title)}</title></rect>")

    body = [f"<text x='{label_w - 8}' y='{cell - 6}' text-anchor='end' class='label'>run status</text>"]
    for i, r in enumerate(shown):
        x = label_w + i * cell
        body.append(square(x, 0, STATUS_COLOUR[r.status], _run_title(r), (cell - gap) // 2))
        by_name = {g.gate: g for g in r.gates}
        for j, name in enumerate(gates, start=1):
            g = by_name.get(name)
            if g is None:
                body.append(square(x, j * cell, "#e6eaef", f"{name}: not run ({when(r.ended_at)})"))
                continue
            body.append(square(x, j * cell, VERDICT_COLOUR[g.verdict],
                               f"{g.gate} at {when(r.ended_at)}: {g.verdict.upper()} ({g.action} on failure)\n"
                               f"figure {_num(g.figure)}, threshold {_num(g.threshold)}\n{g.why}"))
    for j, name in enumerate(gates, start=1):
        body.append(f"<text x='{label_w - 8}' y='{j * cell + 11}' text-anchor='end' class='label'>"
                    f"{_e(name if len(name) <= 38 else name[:37] + '…')}<title>{_e(name)}</title></text>")
    legend = "".join(f"<span style='background:{c}'></span>{v}" for v, c in
                     (*VERDICT_COLOUR.items(), ("not run", "#e6eaef")))
    caption = (f"<b>Quality gates</b> of each run, oldest to newest <span class='legend'>{legend}</span><br>"
               f"{len(shown)} runs ended {_e(when(shown[0].ended_at))} to {_e(when(shown[-1].ended_at))}"
               f"{_e(note)}; the top row is each run's status; hover a square for its figures.")
    return (f"<figure class='grid'><svg xmlns='http://www.w3.org/2000/svg' class='gates' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}' role='img' aria-label='{_e(runs[0].pipeline)} "
            f"gates'>{''.join(body)}</svg><figcaption>{caption}</figcaption></figure>")


def _run_title(r: RunRecord) -> str:
    text = (f"{when(r.ended_at)} {r.trigger} run: {r.status}, {r.rows_out:,} rows out of {r.rows_in:,} in"
            + (f", {r.retries} retries" if r.retries else ""))
    why = _why(r) if r.status in FAILED else ""
    return text + (f"\n{why}" if why else "")


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def _id(pipeline: str) -> str:
    return "p-" + re.sub(r"[^A-Za-z0-9_-]", "-", pipeline)


def _e(value) -> str:
    return html.escape(str(value), quote=True)
