"""The serving fallback snapshot: each feature view's latest offline row per entity, one Parquet file per view.

``tandem materialize`` (and the orchestrator's online asset, which runs the
same code) writes it; ``tandem serve`` reads it while Redis cannot be reached
(its circuit breaker is open), serving each value with status ``fallback``.
It lives in the lake, beside the tables it is cut from::

    <lake>/_tandem/serving_snapshot/<view>.parquet

Why this shape:

* one file per view, written whole to a temporary name in the same folder,
  flushed to disk, then ``os.replace``d over the old one: a reader sees the old
  snapshot or the new one, never a half-written file, and a killed writer
  leaves only a ``.tmp`` file behind (removed by the next write);
* Parquet through pyarrow, no JVM: the server loads it in milliseconds per
  hundred thousand entities, and a new snapshot is noticed by its file's
  identity (inode, size, mtime) changing;
* the columns are the view's key columns (the catalog's types), the event time
  as UTC epoch milliseconds (named as the catalog's event time) and the
  features (their types); the file's metadata names the view, its source, its
  key and event-time columns and when it was written.

The rows are the latest per entity over *every* event date of the view's
feature table (greatest event time, ties by greatest event id): what Redis
serves after a materialisation of every date, so a materialisation of a few
dates (an orchestrator partition) never shrinks the snapshot to those dates'
entities.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Keys of the Parquet file's metadata.
META = b"tandem.serving_snapshot"


def snapshot_dir(lake_root: str | Path) -> Path:
    return Path(lake_root) / "_tandem" / "serving_snapshot"


def snapshot_path(lake_root: str | Path, view: str) -> Path:
    return snapshot_dir(lake_root) / f"{view}.parquet"


def write_snapshot(lake_root: str | Path, view: str, source: str, key: tuple[str, ...], event_time: str,
                   table: pa.Table, written_at_ms: int | None = None) -> Path:
    """Replace the snapshot of ``view`` with ``table`` (one row per entity: key columns, ``event_time`` as
    epoch ms, the features), atomically. Returns its path."""
    path = snapshot_path(lake_root, view)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"view": view, "source": source, "key": list(key), "event_time": event_time,
            "written_at_ms": written_at_ms if written_at_ms is not None else time.time_ns() // 1_000_000,
            "rows": table.num_rows}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META: json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_meta(schema: pa.Schema) -> dict | None:
    """The snapshot metadata of a file's schema (None: not a snapshot Tandem wrote)."""
    raw = (schema.metadata or {}).get(META)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
