"""``tandem shadow``: a changed catalog beside the current one, on the same events, compared per feature.

A change to a transform is reviewed by its effect before it ships: both
catalogs run through the real batch path (``batch_jobs`` on Spark, the path
that produces training data), each into its own lake, and every feature row
is compared by event id. Per feature the report says whether it was added,
removed, or kept, and for kept ones how many values changed (bit for bit, no
tolerance), the largest difference and the first examples. Events accepted by
one catalog and not the other (a schema change) are reported too.

The current catalog is the project's; the candidate is a module
(``pkg.module`` or ``path/to/file.py``, optionally ``:ATTRIBUTE``) holding a
:class:`~transforms.Catalog` (``runtime.project.load_catalog``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import UserError
from runtime.project import load_catalog
from runtime.events_io import read_events
from tandem.parity.compare import difference, same
from tandem.parity.run import _run_batch, check_out_dir, write_json_atomically
from transforms import Catalog, FieldType

REPORT_JSON = "shadow.json"
EXAMPLES = 5
Step = Callable[[str], AbstractContextManager]


@contextlib.contextmanager
def _quiet_step(_: str) -> Iterator[None]:
    yield


@dataclass
class FeatureChange:
    name: str
    status: str  # "kept", "added", "removed"
    rows: int = 0  # rows compared (kept) or holding the feature (added/removed)
    changed: int = 0
    largest_difference: float = 0.0  # relative for floats, absolute for integers
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ShadowResult:
    events: Path
    out_dir: Path
    candidate: str
    features: list[FeatureChange]
    only_current: list[str]  # event ids with a feature row from the current catalog only
    only_candidate: list[str]
    rejected: dict[str, dict[str, int]]  # catalog -> reason -> count

    @property
    def changed(self) -> bool:
        return bool(self.only_current or self.only_candidate
                    or any(f.status != "kept" or f.changed for f in self.features))


def run_shadow(events: Path, candidate_spec: str, out_dir: Path, current: Catalog,
               spark=None, step: Step = _quiet_step) -> ShadowResult:
    """Run ``current`` and the candidate through the batch path on ``events``; compare; write ``shadow.json``."""
    events, out_dir = Path(events), Path(out_dir)
    candidate = load_catalog(candidate_spec, Path.cwd(), where="--candidate")
    check_out_dir(out_dir)
    if not events.exists():
        raise UserError(f"{events}: no such file or directory")
    with step("reading events"):
        if not any(True for _ in read_events(events)):
            raise UserError(f"{events}: holds no records")
    outputs = {}
    for label, catalog in (("current", current), ("candidate", candidate)):
        with step(f"batch path (Spark) with the {label} catalog"):
            outputs[label] = _run_batch(spark, events, out_dir / "work" / label / "lake", catalog)
    (cur_rows, cur_rejected), (cand_rows, cand_rejected) = outputs["current"], outputs["candidate"]
    with step("comparing"):
        result = compare_catalogs(current, cur_rows, candidate, cand_rows)
    result = ShadowResult(events, out_dir, candidate_spec, *result,
                          rejected={"current": _reasons(cur_rejected), "candidate": _reasons(cand_rejected)})
    write_json_atomically(to_json(result), out_dir / REPORT_JSON)
    return result


def compare_catalogs(current: Catalog, current_rows: list[dict], candidate: Catalog,
                     candidate_rows: list[dict]) -> tuple[list[FeatureChange], list[str], list[str]]:
    """Per column of the candidate's and the current's feature rows: kept (compared by event id), added, removed."""
    eid_cur, eid_cand = current.schema.event_id, candidate.schema.event_id
    cur = {r[eid_cur]: r for r in current_rows}
    cand = {r[eid_cand]: r for r in candidate_rows}
    both = [i for i in cur if i in cand]
    cur_types, cand_types = dict(current.feature_row_columns()), dict(candidate.feature_row_columns())
    changes = []
    for name, ftype in cand_types.items():
        if name not in cur_types:
            changes.append(FeatureChange(name, "added", rows=len(cand)))
            continue
        change = FeatureChange(name, "kept", rows=len(both))
        is_float = ftype is FieldType.FLOAT64 or cur_types[name] is FieldType.FLOAT64
        for i in both:
            old, new = cur[i][name], cand[i][name]
            if not same(old, new):
                change.changed += 1
                d = difference(old, new, is_float)
                change.largest_difference = max(change.largest_difference, d)
                if len(change.examples) < EXAMPLES:
                    change.examples.append({"event_id": i, "current": old, "candidate": new})
        changes.append(change)
    changes += [FeatureChange(name, "removed", rows=len(cur)) for name in cur_types if name not in cand_types]
    return changes, sorted(i for i in cur if i not in cand), sorted(i for i in cand if i not in cur)


def _reasons(rejected: list[tuple]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, reason, _ in rejected:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def to_json(result: ShadowResult) -> dict[str, Any]:
    return {
        "events": str(result.events),
        "candidate": result.candidate,
        "changed": result.changed,
        "features": [{"name": f.name, "status": f.status, "rows": f.rows, "changed": f.changed,
                      "largest_difference": _number(f.largest_difference),
                      "examples": [{k: _number(v) for k, v in e.items()} for e in f.examples]}
                     for f in result.features],
        "events_only_current": {"count": len(result.only_current), "first": result.only_current[:EXAMPLES]},
        "events_only_candidate": {"count": len(result.only_candidate), "first": result.only_candidate[:EXAMPLES]},
        "rejected": result.rejected,
    }


def _number(value: Any) -> Any:
    """JSON has no inf/nan: write them as strings, like the parity report."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def print_report(result: ShadowResult, console) -> None:
    from rich.table import Table

    table = Table(title=f"shadow: {result.candidate} vs the current catalog")
    for column in ("feature", "status", "rows", "changed", "largest difference", "first example"):
        table.add_column(column, justify="right" if column in ("rows", "changed", "largest difference") else "left")
    for f in result.features:
        example = f.examples[0] if f.examples else None
        shown = f"{example['event_id']}: {example['current']!r} -> {example['candidate']!r}" if example else ""
        style = {"added": "green", "removed": "red"}.get(f.status) or ("yellow" if f.changed else None)
        table.add_row(f.name, f.status, f"{f.rows:,}", f"{f.changed:,}" if f.status == "kept" else "",
                      f"{f.largest_difference:.3g}" if f.changed else "", shown, style=style)
    console.print(table)
    for label, ids in (("current", result.only_current), ("candidate", result.only_candidate)):
        if ids:
            console.print(f"{len(ids):,} events have a feature row with the {label} catalog only "
                          f"(first: {', '.join(ids[:EXAMPLES])})", highlight=False)
    console.print(f"rejected: current {result.rejected['current'] or 'none'}, "
                  f"candidate {result.rejected['candidate'] or 'none'}", highlight=False)
