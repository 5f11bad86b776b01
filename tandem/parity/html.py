"""``report.html``: the parity report a person reads, one self-contained file (inline SVG, no scripts).

Per column: the counts, a chart of every differing value (stream − batch
against event time; explained in grey, unexplained in red), and the first
unexplained mismatches, each with the events of its window (late ones marked)
so the reader can redo the arithmetic by hand.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone

from tandem.parity.compare import UNEXPLAINED, ColumnStats, Mismatch
from tandem.parity.report import format_difference, shown_window
from transforms import format_duration

MAX_POINTS = 600  # per chart: every unexplained point first (up to this), then an even sample of the rest
WIDTH, HEIGHT, PAD = 640, 180, 40

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ccc; padding: .2em .6em; text-align: right; font-variant-numeric: tabular-nums; }
td:first-child, th:first-child { text-align: left; }
.pass { color: #176f2c; } .fail { color: #b00020; } .bad td { background: #fde8ea; }
.late td { background: #fff4d6; } code { font-size: 90%; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; }
"""


def render(run) -> str:
    c = run.comparison
    verdict = "PASS" if run.passed else "FAIL"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Tandem parity: {verdict}</title><style>{_CSS}</style></head><body>",
        f"<h1>Parity <span class='{verdict.lower()}'>{verdict}</span></h1>",
        f"<p>{_e(run.events)}: {run.records:,} records, allowed lateness "
        f"{format_duration(run.allowed_lateness_ms)}. {c.events_compared:,} events compared; "
        f"{len(c.confirmed_late):,} late events reported by the stream and confirmed by the reference. "
        f"<b>{c.unexplained:,}</b> unexplained.</p>",
        _paths_table(c.counts),
        _summary_table(c.columns),
    ]
    if c.issues:
        parts.append("<h2>Issues</h2><ul>" + "".join(
            f"<li><b>{_e(i.kind)}</b>: {_e(i.detail)}"
            + (f" (e.g. {_e(', '.join(str(x) for x in i.event_ids[:10]))})" if i.event_ids else "")
            + "</li>" for i in c.issues) + "</ul>")
    by_column: dict[str, list[Mismatch]] = {}
    for m in c.mismatches:
        by_column.setdefault(m.column, []).append(m)
    for col in c.columns:
        parts.append(_column_section(col, by_column.get(col.name, []), c.examples(col.name, UNEXPLAINED)))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _paths_table(counts: dict) -> str:
    reasons = ["accepted", "invalid", "duplicate", "late"]
    rows = "".join(f"<tr><td>{_e(path)}</td>" + "".join(f"<td>{counts[path].get(r, 0):,}</td>" for r in reasons)
                   + "</tr>" for path in counts)
    return ("<table><tr><th>path</th>" + "".join(f"<th>{r}</th>" for r in reasons) + f"</tr>{rows}</table>")


def _summary_table(columns: list[ColumnStats]) -> str:
    head = ("<tr><th>column</th><th>window</th><th>rows</th><th>exact</th><th>explained</th><th>unexplained</th>"
            "<th>differing values</th><th>largest difference</th><th>batch ≠ reference</th>"
            "<th>stream ≠ reference</th></tr>")
    body = "".join(
        f"<tr class='{'bad' if col.unexplained else ''}'><td><a href='#{_e(col.name)}'>{_e(col.name)}</a></td>"
        f"<td>{format_duration(col.window_ms) if col.window_ms else ''}</td><td>{col.rows:,}</td>"
        f"<td>{col.exact:,}</td><td>{col.explained:,}</td><td>{col.unexplained:,}</td><td>{col.differing:,}</td>"
        f"<td>{format_difference(col, col.largest_difference)}</td><td>{col.batch_vs_reference:,}</td>"
        f"<td>{col.stream_vs_reference:,}</td></tr>" for col in columns)
    return f"<table>{head}{body}</table>"


def _column_section(col: ColumnStats, mismatches: list[Mismatch], examples: list[Mismatch]) -> str:
    out = [f"<section id='{_e(col.name)}'><h2>{_e(col.name)}</h2>",
           f"<p>{col.exact:,} exact, {col.explained:,} explained, {col.unexplained:,} unexplained of "
           f"{col.rows:,} rows; {col.differing:,} values differ between the paths "
           f"(largest: {format_difference(col, col.largest_difference)}; unexplained: "
           f"{format_difference(col, col.largest_unexplained_difference, col.unexplained)}).</p>",
           _chart(col, mismatches)]
    if examples:
        out.append("<h3>First unexplained mismatches</h3>")
        out.extend(_example(col, m) for m in examples)
    out.append("</section>")
    return "\n".join(out)


def _chart(col: ColumnStats, mismatches: list[Mismatch]) -> str:
    points = [(m.event_time, m.stream - m.batch, m.status) for m in mismatches
              if m.has_values and m.event_time is not None and _numeric(m.batch) and _numeric(m.stream)]
    finite = [p for p in points if math.isfinite(p[1])]
    missing_rows = sum(1 for m in mismatches if not m.has_values)
    note = (f"{len(points) - len(finite):,} non-finite differences not drawn. " if len(finite) < len(points) else "")
    note += f"{missing_rows:,} rows present in one path only (not drawn)." if missing_rows else ""
    if not finite:
        return f"<p><i>No differing values to chart.</i> {_e(note)}</p>"
    shown = _sample(finite)
    xs, ys = [p[0] for p in shown], [p[1] for p in shown]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, *ys), max(0.0, *ys)
    x_span, y_span = (x1 - x0) or 1, (y1 - y0) or 1

    def sx(x):
        return PAD + (x - x0) / x_span * (WIDTH - 2 * PAD)

    def sy(y):
        return HEIGHT - PAD / 2 - (y - y0) / y_span * (HEIGHT - PAD)

    dots = "".join(
        f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2.5' fill='#b00020'><title>{_e(_time(x))}: {y:.6g}</title></circle>"
        if s == UNEXPLAINED else f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2' fill='#7a8aa0'/>"
        for x, y, s in reversed(shown))
    axis = (f"<line x1='{PAD}' x2='{WIDTH - PAD}' y1='{sy(0):.1f}' y2='{sy(0):.1f}' stroke='#999'/>"
            f"<text x='2' y='{sy(y1) + 4:.1f}' font-size='10'>{y1:.3g}</text>"
            f"<text x='2' y='{sy(y0) + 4:.1f}' font-size='10'>{y0:.3g}</text>"
            f"<text x='{PAD}' y='{HEIGHT - 2}' font-size='10'>{_e(_time(x0))}</text>"
            f"<text x='{WIDTH - PAD}' y='{HEIGHT - 2}' font-size='10' text-anchor='end'>{_e(_time(x1))}</text>")
    caption = (f"stream − batch by event time: {len(shown):,} of {len(finite):,} differing values drawn "
               f"(grey explained, red unexplained). {note}")
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
            f"role='img' aria-label='{_e(col.name)} differences'>{axis}{dots}</svg>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _sample(points: list[tuple]) -> list[tuple]:
    bad = [p for p in points if p[2] == UNEXPLAINED][:MAX_POINTS]
    rest = [p for p in points if p[2] != UNEXPLAINED]
    room = MAX_POINTS - len(bad)
    if len(rest) > room:
        rest = [rest[int(k * len(rest) / room)] for k in range(room)]
    return rest + bad


def _example(col: ColumnStats, m: Mismatch) -> str:
    values = (f"<table><tr><th></th><th>batch</th><th>stream</th></tr>"
              f"<tr><td>engine</td><td>{_v(m.batch)}</td><td>{_v(m.stream)}</td></tr>"
              f"<tr><td>reference</td><td>{_v(m.batch_reference)}</td><td>{_v(m.stream_reference)}</td></tr></table>")
    window = ""
    if m.window:
        events, omitted = shown_window(m)
        rows = "".join(f"<tr class='{'late' if e.late else ''}'><td><code>{_e(e.event_id)}</code></td>"
                       f"<td>{_e(_time(e.event_time))}</td><td>{_v(e.value)}</td><td>{'late' if e.late else ''}</td></tr>"
                       for e in events)
        more = f" ({omitted:,} earlier on-time events not listed)" if omitted else ""
        window = (f"<details open><summary>{len(m.window):,} events in its window "
                  f"[t − {format_duration(col.window_ms)}, t] of {_e(m.key)}{more}</summary>"
                  f"<table><tr><th>event</th><th>event time</th><th>value</th><th></th></tr>{rows}</table></details>")
    when = _time(m.event_time) if m.event_time is not None else "?"
    return (f"<div><p><code>{_e(m.event_id)}</code> at {_e(when)}"
            + (f", key <code>{_e(m.key)}</code>" if m.key is not None else "")
            + f": {_e(m.why)}</p>{values}{window}</div>")


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _v(value) -> str:
    return "<i>no row</i>" if value is None else f"<code>{_e(repr(value))}</code>"


def _e(value) -> str:
    return html.escape(str(value), quote=True)

