"""The parity verdict for machines (``report.json``) and for the terminal (a rich table).

``report.json`` is strict JSON: a non-finite float (an overflowed sum) is
written as the string ``"inf"``/``"-inf"``/``"nan"``, never as a bare
``Infinity`` that JSON parsers reject.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from tandem.parity import BATCH, REJECTED, REPORT_HTML, STREAM
from tandem.parity.compare import EXPLAINED, UNEXPLAINED, ColumnStats, Mismatch
from transforms import format_duration

REPORT_VERSION = 1
WINDOW_EVENTS_SHOWN = 50  # per example: the late events, then the latest others


def shown_window(m: Mismatch) -> tuple[list, int]:
    """The window events worth showing (every late one, then the latest others) in time order, and how many not."""
    late = [e for e in m.window if e.late][:WINDOW_EVENTS_SHOWN]
    others = [e for e in m.window if not e.late]
    room = WINDOW_EVENTS_SHOWN - len(late)
    others = others[max(len(others) - room, 0):] if room else []
    shown = sorted(late + others, key=lambda e: (e.event_time, e.event_id))
    return shown, len(m.window) - len(shown)


def to_json(run) -> dict[str, Any]:
    """The whole report of a :class:`tandem.parity.run.ParityRun` as JSON-ready data."""
    c = run.comparison
    return {
        "report_version": REPORT_VERSION,
        "verdict": "pass" if run.passed else "fail",
        "unexplained": c.unexplained,
        "events": str(run.events),
        "records": run.records,
        "allowed_lateness": format_duration(run.allowed_lateness_ms),
        "allowed_lateness_ms": run.allowed_lateness_ms,
        "events_compared": c.events_compared,
        "late_events_confirmed": len(c.confirmed_late),
        "paths": {path: dict(sorted(counts.items())) for path, counts in c.counts.items()},
        "columns": {col.name: _column(col, c) for col in c.columns},
        "event_id": c.event_id, "event_time": c.event_time,  # the catalog's names, used below
        "issues": [{"kind": i.kind, "detail": i.detail, c.event_id: list(i.event_ids)} for i in c.issues],
        "outputs": {"batch": BATCH, "stream": STREAM, "rejected": REJECTED, "html": REPORT_HTML},
        "timings_s": run.timings,
        **({"serving": _serving(run.serving)} if run.serving is not None else {}),
    }


def _serving(s) -> dict[str, Any]:
    return {
        "moment_ms": s.moment_ms, "entities": s.entities, "values": s.values, "exact": s.exact,
        "explained": s.explained, "unexplained": s.unexplained,
        "differences": [{"entity": d.entity, "key": d.key, "feature": d.feature, "training": _number(d.training),
                         "serving": _number(d.serving), "status": d.status, "why": d.why}
                        for d in s.differences[:50]],
    }


def _column(col: ColumnStats, comparison) -> dict[str, Any]:
    return {
        "type": col.dtype.name.lower(),
        "window": format_duration(col.window_ms) if col.window_ms else None,
        "rows": col.rows, "exact": col.exact, "explained": col.explained, "unexplained": col.unexplained,
        "differing": col.differing,
        "batch_vs_reference": col.batch_vs_reference, "stream_vs_reference": col.stream_vs_reference,
        "difference_measure": "relative" if col.is_float else "absolute",
        "largest_difference": _number(col.largest_difference),
        "largest_unexplained_difference": _number(col.largest_unexplained_difference),
        "unexplained_examples": [_mismatch(m, comparison) for m in comparison.examples(col.name, UNEXPLAINED)],
        "explained_examples": [_mismatch(m, comparison) for m in comparison.examples(col.name, EXPLAINED)],
    }


def _mismatch(m: Mismatch, c) -> dict[str, Any]:
    window, omitted = shown_window(m)
    return {
        c.event_id: m.event_id, "why": m.why, c.event_time: m.event_time, "key": m.key,
        "batch": _number(m.batch), "stream": _number(m.stream),
        "batch_reference": _number(m.batch_reference), "stream_reference": _number(m.stream_reference),
        "window": [{c.event_id: e.event_id, c.event_time: e.event_time, "value": _number(e.value),
                    "late": e.late} for e in window],
        "window_events": len(m.window), "window_events_omitted": omitted,
    }


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def format_difference(col: ColumnStats, value: float, among: int | None = None) -> str:
    """``value`` as the column's measure; ``among``: how many values it is the largest of (default: differing)."""
    if (col.differing if among is None else among) == 0:
        return "0"
    if value == 0:
        return "0 (rows, types or signs)"  # a missing row, 1 vs 1.0, or 0.0 vs -0.0: still a mismatch
    if math.isinf(value) and col.dtype.name == "STRING":
        return "differs"
    return f"rel {value:.3g}" if col.is_float else f"abs {value:g}"


def print_table(run, console: Console) -> None:
    """Per column: rows, exact matches, explained, unexplained, largest unexplained difference; then the verdict.

    The largest *unexplained* difference is the one that matters (a late event's
    amount missing from a stream sum is expected); report.json and report.html
    give the largest of all differing values too.
    """
    c = run.comparison
    if not console.is_terminal and console.width < 110:  # a pipe or CI log: whole headers, not "explai…"
        console = Console(file=console.file, width=110)
    table = Table(title=f"Parity: batch (Spark) vs stream (Flink), allowed lateness "
                        f"{format_duration(run.allowed_lateness_ms)}")
    table.add_column("column", no_wrap=True)
    for name in ("rows", "exact", "explained", "unexplained", "largest unexplained difference"):
        table.add_column(name, justify="right")
    for col in c.columns:
        style = "red" if col.unexplained else None
        table.add_row(col.name, f"{col.rows:,}", f"{col.exact:,}", f"{col.explained:,}", f"{col.unexplained:,}",
                      format_difference(col, col.largest_unexplained_difference, col.unexplained), style=style)
    console.print(table)
    counts = c.counts
    console.print(f"records {run.records:,}; batch rows {counts['batch']['accepted']:,}, stream rows "
                  f"{counts['stream']['accepted']:,}; late events reported by the stream and confirmed by the "
                  f"reference: {len(c.confirmed_late):,}", highlight=False)
    for issue in c.issues:
        console.print(f"[red]issue[/] {issue.kind}: {issue.detail}", highlight=False)
    if run.serving is not None:
        s = run.serving
        console.print(f"training = serving ({', '.join(f'{n} {e}' for e, n in s.entities.items())} entities, "
                      f"{s.values:,} values): {s.exact:,} exact, {s.explained:,} explained, "
                      f"{s.unexplained:,} unexplained", highlight=False)
        for d in [d for d in s.differences if d.status == UNEXPLAINED][:5]:
            console.print(f"[red]serving[/] {d.entity} {d.key} {d.feature}: training {d.training!r}, "
                          f"serving {d.serving!r} ({d.why})", highlight=False)
    if run.passed:
        console.print("[bold green]PASS[/]: every difference is explained by a late event the stream reported")
    else:
        serving = f", {run.serving.unexplained:,} training/serving" if run.serving is not None else ""
        console.print(f"[bold red]FAIL[/]: {c.unexplained:,} unexplained "
                      f"({sum(col.unexplained for col in c.columns):,} values, {len(c.issues)} issues{serving})")
