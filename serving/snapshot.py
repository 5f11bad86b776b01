"""The fallback snapshot as ``tandem serve`` reads it: per view, each entity's latest offline row, in memory.

The files are ``runtime.serving_snapshot``'s (written by ``tandem
materialize``). A view's file is loaded on first use (``tandem serve`` warms
every view at start, so the first lookup of an outage does not pay for it)
and reloaded when a newer one appears: the file's identity (inode, size,
mtime; the writer replaces it by rename) is checked at most once a second per
view, on use. A view whose file is missing, unreadable or not a snapshot of
that view raises :class:`SnapshotMissing` with one line saying what to run;
the lookup serves that view's values as absent and names it in ``errors``,
so one view's snapshot never fails the others. A file that vanishes after it
was loaded keeps the loaded rows (the newest known).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from runtime.errors import one_line
from runtime.serving_snapshot import read_meta, snapshot_path

RECHECK_S = 1.0


class SnapshotMissing(Exception):
    """A view has no usable fallback snapshot; the message says why and what to run."""


@dataclass(frozen=True)
class ViewSnapshot:
    view: str
    path: str
    written_at_ms: int
    key: tuple[str, ...]
    index: dict  # key values (a tuple, in the view's key order) -> row number
    event_ms: list  # per row: the event time, UTC epoch ms
    columns: dict  # feature -> per row: its value

    def __len__(self) -> int:
        return len(self.event_ms)


class FallbackSnapshot:
    """The snapshots under ``lake_root`` (``<lake>/_tandem/serving_snapshot/<view>.parquet``)."""

    def __init__(self, lake_root: str | Path, *, recheck_s: float = RECHECK_S):
        self.lake_root = Path(lake_root)
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._views: dict[str, tuple[ViewSnapshot, tuple]] = {}  # view -> (loaded, file identity)
        self._checked: dict[str, float] = {}  # view -> monotonic time of the last stat

    def view(self, name: str, key: tuple[str, ...]) -> ViewSnapshot:
        """The snapshot of view ``name`` (key columns ``key``), loaded or reloaded as needed."""
        now = time.monotonic()
        cached = self._views.get(name)
        if cached is not None and now - self._checked.get(name, 0.0) < self.recheck_s:
            return cached[0]
        with self._lock:
            cached = self._views.get(name)
            path = snapshot_path(self.lake_root, name)
            try:
                st = os.stat(path)
            except OSError:
                self._checked[name] = now
                if cached is not None:
                    return cached[0]
                raise SnapshotMissing(f"no fallback snapshot of view {name!r} at {path}: run `tandem materialize` "
                                      "(it writes one per feature view)") from None
            identity = (st.st_ino, st.st_size, st.st_mtime_ns)
            if cached is None or cached[1] != identity:
                cached = (self._load(name, key, path), identity)
                self._views[name] = cached
            self._checked[name] = now
            return cached[0]

    def warm(self, views: dict[str, tuple[str, ...]]) -> dict[str, ViewSnapshot | str]:
        """Load every view (name -> key columns) now; per view its snapshot, or why there is none."""
        out: dict[str, ViewSnapshot | str] = {}
        for name, key in views.items():
            try:
                out[name] = self.view(name, key)
            except SnapshotMissing as e:
                out[name] = str(e)
        return out

    def _load(self, name: str, key: tuple[str, ...], path: Path) -> ViewSnapshot:
        try:
            table = pq.read_table(path)
        except Exception as e:  # any unreadable file: this view alone has no fallback
            raise SnapshotMissing(f"the fallback snapshot of view {name!r} at {path} is unreadable "
                                  f"({one_line(e)}): run `tandem materialize` to rewrite it") from None
        meta = read_meta(table.schema)
        if meta is None or meta.get("view") != name or tuple(meta.get("key", ())) != tuple(key) \
                or meta.get("event_time") not in table.column_names \
                or any(k not in table.column_names for k in key):
            raise SnapshotMissing(f"{path} is not a fallback snapshot of view {name!r} keyed by {', '.join(key)}: "
                                  "run `tandem materialize` to rewrite it")
        parts = [table.column(k).to_pylist() for k in key]
        index = {values: i for i, values in enumerate(zip(*parts))}
        skip = {*key, meta["event_time"]}
        columns = {c: table.column(c).to_pylist() for c in table.column_names if c not in skip}
        return ViewSnapshot(name, str(path), int(meta.get("written_at_ms", 0)), tuple(key), index,
                            table.column(meta["event_time"]).to_pylist(), columns)
