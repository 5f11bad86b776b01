"""Where Tandem's Delta tables live: one lake root per project, one fixed layout.

The root is the project's ``lake`` (``tandem.yaml``, ``$TANDEM_LAKE``
overrides) and holds, per event source (a catalog's schema name)::

    <source>/events/               validated, deduplicated events, partitioned by event_date
    <source>/dead_letters/         every rejected record with its reason and raw text
    <source>/ingest_log/           one row per ingested file (path, sha256)
    <source>/features/<group>/     one feature table per feature group, partitioned by event_date
    _feast/registry.db             the Feast registry of every source's feature views

Sources side by side never share a table, so several catalogs live in one
lake. The batch jobs write this layout and the Feast repository reads it, so
the paths are spelled here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.errors import UserError
from transforms import Catalog

#: The partition column of every table (the UTC date of the event time): the batch jobs write it, Feast prunes by it.
EVENT_DATE = "event_date"


@dataclass(frozen=True)
class SourceTables:
    """The tables of one event source."""

    root: Path

    @property
    def events(self) -> str:
        return str(self.root / "events")

    @property
    def dead_letters(self) -> str:
        return str(self.root / "dead_letters")

    @property
    def ingest_log(self) -> str:
        return str(self.root / "ingest_log")

    def features(self, group: str) -> str:
        return str(self.root / "features" / group)


@dataclass(frozen=True)
class Lake:
    root: Path

    @classmethod
    def at(cls, root: str | Path | None) -> "Lake":
        if not root:
            raise UserError("no lake: pass --lake PATH, set TANDEM_LAKE, or run inside a project (tandem.yaml)")
        return cls(Path(root).expanduser().resolve())

    def tables(self, catalog: Catalog) -> SourceTables:
        return SourceTables(self.root / catalog.schema.name)

    @property
    def registry(self) -> Path:
        return self.root / "_feast" / "registry.db"
