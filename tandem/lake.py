"""Where Tandem's Delta tables live: one lake root, one fixed layout.

``TANDEM_LAKE`` (default ``<repo>/lake``) holds::

    events/               validated, deduplicated events, partitioned by event_date
    dead_letters/         every rejected record with its reason and raw text
    ingest_log/           one row per ingested file (path, sha256, counts)
    features/<entity>/    one feature table per feature group, partitioned by event_date

The batch jobs write this layout and the Feast repository reads it, so the
paths are spelled here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_lake_root() -> Path:
    return Path(os.environ.get("TANDEM_LAKE") or REPO_ROOT / "lake").expanduser().resolve()


@dataclass(frozen=True)
class Lake:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> "Lake":
        return cls(Path(root).expanduser().resolve() if root else default_lake_root())

    @property
    def events(self) -> str:
        return str(self.root / "events")

    @property
    def dead_letters(self) -> str:
        return str(self.root / "dead_letters")

    @property
    def ingest_log(self) -> str:
        return str(self.root / "ingest_log")

    def features(self, entity: str) -> str:
        return str(self.root / "features" / entity)
