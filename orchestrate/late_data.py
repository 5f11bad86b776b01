"""Which daily partitions of a source's feature tables late data has left stale, read off the run log.

An ingest records the event dates its new events touched (its row's ``partitions``). A feature row of
date d' depends on the events of d' and of the days its longest window reaches back over, so new
events on date d can change the feature rows of d .. d + ``reach_days``. Such a date d' is *stale* when:

- some successful ingest touched a date d with d <= d' <= d + reach_days, and
- d' holds events (a successful ingest touched d' itself at some time: a date without events has no
  feature rows to recompute), and
- no successful backfill that started after that ingest ended wrote d' (its row's ``partitions``: the
  dates it wrote feature rows for).

The orchestrator's schedules re-run exactly these partitions (feature tables, then the online store), so
a late event reaches both the lake's feature tables and Redis at the next scheduled run.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

from runtime.run_log import RunRecord

DAY_MS = 86_400_000


def reach_days(longest_window_ms: int) -> int:
    """How many days after an event's date its windows reach (a window of up to one day: 1)."""
    return max(1, math.ceil(longest_window_ms / DAY_MS))


def stale_dates(history: list[RunRecord], source: str, reach: int, first: date, last: date) -> list[date]:
    """The stale dates of ``source`` within ``first`` .. ``last``, in order (the rule: module docstring)."""
    ok = [r for r in history if r.status == "success" and r.ended_at is not None]
    ingests = [r for r in ok if r.pipeline == f"ingest:{source}"]
    backfills = [r for r in ok if r.pipeline == f"backfill:{source}"]
    with_events = {date.fromisoformat(d) for r in ingests for d in r.partitions}
    touched_at: dict[date, list] = {}  # date d' -> the end of each ingest whose events can change it
    for r in ingests:
        for text in r.partitions:
            d = date.fromisoformat(text)
            for k in range(reach + 1):
                later = d + timedelta(days=k)
                if later in with_events and first <= later <= last:
                    touched_at.setdefault(later, []).append(r.ended_at)
    stale = []
    for d, ends in sorted(touched_at.items()):
        latest_ingest = max(ends)
        if not any(b.started_at > latest_ingest and d.isoformat() in b.partitions for b in backfills):
            stale.append(d)
    return stale


def ranges(dates: list[date]) -> list[tuple[date, date]]:
    """Consecutive dates as (first, last) ranges: one backfill per range."""
    out: list[tuple[date, date]] = []
    for d in sorted(dates):
        if out and d == out[-1][1] + timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out
