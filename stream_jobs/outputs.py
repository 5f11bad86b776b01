"""The stream job's file outputs: how its feature log and dead letters are written (JSON Lines part files),
and reading them back.

Only committed part files count: Flink writes in-progress files as hidden
(``.part-...``) and makes them visible on a checkpoint or at the end of a
bounded input, so a reader never sees rows a restart could take back.
Flink's JSON writes a non-finite double (an overflowed sum) as the string
``"Infinity"``; the catalog's types turn it back into a float.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transforms import Catalog, FieldType


def file_sink_options(folder: Path, roll_interval_ms: int) -> dict[str, str]:
    """A JSON Lines part-file sink whose rows become visible within ``roll_interval_ms`` plus a checkpoint.

    Flink commits a part file on the checkpoint after it is closed, and closes
    a JSON (row format) file only by size (128 MB) or age (30 min by default),
    not on checkpoints: left alone, a long-running job's log would stay hidden
    for half an hour. A shorter interval makes more, smaller files.
    """
    return {"connector": "filesystem", "path": str(folder), "format": "json",
            "sink.rolling-policy.rollover-interval": f"{roll_interval_ms} ms",
            "sink.rolling-policy.check-interval": f"{min(roll_interval_ms, 60_000)} ms"}


def committed_files(folder: Path) -> list[Path]:
    """The committed part files under ``folder`` (in-progress ones are hidden), in name order."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def committed_rows(folder: Path) -> list[dict[str, Any]]:
    return rows_of(committed_files(folder))


def rows_of(files: list[Path]) -> list[dict[str, Any]]:
    """The rows of JSON Lines part files."""
    rows: list[dict[str, Any]] = []
    for part in files:
        with part.open(encoding="utf-8") as fh:
            rows.extend(json.loads(line) for line in fh if line.strip())
    return rows


def feature_rows(out_dir: Path, catalog: Catalog) -> list[dict[str, Any]]:
    floats = [name for name, t in catalog.feature_row_columns() if t is FieldType.FLOAT64]
    rows = committed_rows(Path(out_dir) / "features")
    for row in rows:
        for name in floats:
            if isinstance(row[name], str):
                row[name] = float(row[name])
    return rows


def dead_letters(out_dir: Path) -> list[dict[str, Any]]:
    return committed_rows(Path(out_dir) / "dead_letters")
