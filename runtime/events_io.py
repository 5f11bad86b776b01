"""Reading and writing transaction files: JSON Lines or Parquet, chosen by suffix.

Readers keep every record in file order and never drop one: a line that is
not a JSON object comes back as :class:`~transforms.schema.Undecodable`, so
it reaches the dead letters with its line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runtime.dead_letters import dead_letter_columns
from runtime.errors import UserError
from transforms import Catalog, FieldType
from transforms.schema import Undecodable, parse_iso_timestamp_ms

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise UserError(f"{path}: unknown file type {suffix or '(none)'!r}; use .jsonl or .parquet")


def events_files(path: str | Path) -> list[Path]:
    """The events files a path names, in the order they are read: the one rule of ingest and the stream.

    A file is itself (a ``.jsonl``/``.parquet``, whatever its name). A
    directory gives its visible files (not named ``.x`` or ``_x``: files
    being written, by convention and as Flink's file source skips them)
    sorted by name; any other visible file there is an error, never
    silently left out.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        _format_of(path)
        return [path]
    files = sorted(visible_files(path))
    other = [p for p in files if p.suffix.lower() not in JSONL_SUFFIXES + PARQUET_SUFFIXES]
    if other:
        raise UserError(f"{other[0]}: not a .jsonl or .parquet file; a directory of events must hold only "
                        "events files (name a file .x or _x to have it skipped)")
    if not files:
        raise UserError(f"{path}: no .jsonl or .parquet files in this directory")
    return files


def visible_files(folder: Path) -> list[Path]:
    """The files of ``folder`` not named ``.x`` or ``_x``."""
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup!r}")
    return dict(pairs)


def read_events(path: str | Path) -> Iterator[dict[str, Any] | Undecodable]:
    """The records of a JSON Lines or Parquet file in file order (path problems raise at once)."""
    path = Path(path)
    kind = _format_of(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a .jsonl or .parquet file")
    return _read_jsonl(path) if kind == "jsonl" else _read_parquet(path)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any] | Undecodable]:
    for lineno, text in jsonl_lines(path):
        yield decode_json_line(text, lineno)


def jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line; lines end at ``\\n`` only."""
    try:
        handle = path.open("r", encoding="utf-8", errors="strict", newline="\n")
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror})") from e
    with handle:
        lineno = 0
        while True:
            try:
                line = handle.readline()
            except UnicodeDecodeError as e:
                # Not text at all: say so once rather than emitting garbage records.
                raise UserError(f"{path}: near line {lineno + 1}: not UTF-8 text; is this a JSON Lines file?") from e
            if not line:
                return
            lineno += 1
            if line.strip():
                yield lineno, line.removesuffix("\n")


def decode_json_line(text: str, lineno: int | None = None) -> Any:
    """The JSON value of one line, or an :class:`Undecodable` carrying the whole line and why."""
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except (ValueError, RecursionError) as e:
        where = f"line {lineno}: " if lineno is not None else ""
        return Undecodable(text, f"{where}not valid JSON ({e})")


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({e})") from e
    for batch in pf.iter_batches(batch_size=65_536):
        yield from batch.to_pylist()


def write_events(records: Iterable[dict[str, Any]], path: str | Path, catalog: Catalog) -> int:
    """Write raw records; Parquet gets the schema's types (event time as UTC ms timestamps)."""
    path = Path(path)
    kind = _format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(records)
    if kind == "jsonl":
        with path.open("w", encoding="utf-8") as out:
            for rec in records:
                out.write(json.dumps(rec, ensure_ascii=False, allow_nan=True) + "\n")
        return len(records)
    schema = catalog.schema
    arrow_fields = [pa.field(f.name, _ARROW_TYPES[f.type]) for f in schema.fields]
    columns = {f.name: [r.get(f.name) for r in records] for f in schema.fields}
    extra = {k for r in records for k in r} - set(columns)
    if extra:
        raise UserError(f"{path}: Parquet cannot carry fields outside schema {schema.name}: {sorted(extra)}")
    try:
        table = pa.table({f.name: pa.array(columns[f.name], type=_ARROW_TYPES[f.type]) if f.type is not FieldType.TIMESTAMP_MS
                          else _timestamps(columns[f.name]) for f in schema.fields}, schema=pa.schema(arrow_fields))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise UserError(f"{path}: records do not fit the typed Parquet schema ({e}); write .jsonl instead") from e
    pq.write_table(table, path)
    return len(records)


_ARROW_TYPES = {
    FieldType.STRING: pa.string(),
    FieldType.FLOAT64: pa.float64(),
    FieldType.INT64: pa.int64(),
    FieldType.TIMESTAMP_MS: pa.timestamp("ms", tz="UTC"),
    FieldType.BOOL: pa.bool_(),
}


def _timestamps(values: list[Any]) -> pa.Array:
    ms = []
    for v in values:
        if isinstance(v, str):
            parsed = parse_iso_timestamp_ms(v)
            if isinstance(parsed, str):
                raise ValueError(parsed)
            v = parsed
        ms.append(v)
    return pa.array(ms, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def write_feature_rows(rows: list[dict[str, Any]], path: str | Path, catalog: Catalog) -> None:
    """Feature rows as Parquet, typed by the catalog (event time as a UTC ms timestamp)."""
    cols = catalog.feature_row_columns()
    schema = pa.schema([pa.field(name, _ARROW_TYPES[t]) for name, t in cols])
    arrays = [
        pa.array([r[name] for r in rows], type=pa.int64()).cast(_ARROW_TYPES[t]) if t is FieldType.TIMESTAMP_MS
        else pa.array([r[name] for r in rows], type=_ARROW_TYPES[t])
        for name, t in cols
    ]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def raw_text(raw: Any) -> str:
    """The rejected record as it arrived, as text, so a dead letter can be replayed or inspected."""
    if isinstance(raw, Undecodable):
        return raw.text
    return json.dumps(raw, ensure_ascii=False, default=str)


def write_rejections(rejected: list[Any], path: str | Path, catalog: Catalog) -> None:
    """Dead letters of the reference evaluator: every rejected record with its reason, position and raw text
    (``runtime.dead_letters``' columns, the id named as in the schema)."""
    id_column = catalog.schema.event_id
    schema = pa.schema([(name, _ARROW_TYPES[t]) for name, t in dead_letter_columns(catalog)]
                       + [("position", pa.int64())])
    table = pa.Table.from_pylist(
        [{id_column: r.event_id, "reason": r.reason, "kind": r.kind, "detail": r.detail, "raw": raw_text(r.raw),
          "position": r.position} for r in rejected],
        schema=schema,
    )
    pq.write_table(table, path)
