"""The dead letters: every record that became no feature row, and why, with one layout on every path.

A dead letter has the event id (the column named as the catalog's schema
names it; null when an invalid record has no string id), ``reason``
(``invalid``, ``duplicate`` or ``late``), ``kind`` (for ``invalid``: the
:class:`~transforms.InvalidKind`), a one-line ``detail`` and ``raw`` (the
record as it arrived). The reference evaluator, the batch ingest and the
stream job all write this layout and these detail texts; each engine builds
the texts from the parts below, so they read the same everywhere.
"""

from __future__ import annotations

from transforms import Catalog, FieldType

INVALID, DUPLICATE, LATE = "invalid", "duplicate", "late"
REASONS = (INVALID, DUPLICATE, LATE)

#: ``event id <id> was seen before``: the text before and after the id.
DUPLICATE_DETAIL = ("event id ", " was seen before")
#: ``<n> ms behind the latest event, allowed lateness <w> ms``: the text after n, and after w.
LATE_DETAIL = (" ms behind the latest event, allowed lateness ", " ms")


def duplicate_detail(event_id: str) -> str:
    return f"{DUPLICATE_DETAIL[0]}{event_id}{DUPLICATE_DETAIL[1]}"


def late_detail(behind_ms: int, allowed_lateness_ms: int) -> str:
    return f"{behind_ms}{LATE_DETAIL[0]}{allowed_lateness_ms}{LATE_DETAIL[1]}"


def dead_letter_columns(catalog: Catalog) -> list[tuple[str, FieldType]]:
    """The columns of a dead letter, in order; the id column carries the schema's event id name."""
    return [(catalog.schema.event_id, FieldType.STRING)] + [
        (name, FieldType.STRING) for name in ("reason", "kind", "detail", "raw")]
