"""The stream job's sources, as the one-column (``line STRING``) table the pipeline reads.

``file:PATH`` replays a file in its order:

- a JSON Lines file is read as it is, unless its name starts with ``.`` or
  ``_``: Flink's file source skips such files silently, even when named
  alone, so it is staged (copied) under a plain name first;
- a Parquet file is first converted, row by row in file order, into JSON Lines
  under ``OUT/_input/`` (Flink 2.x's Parquet format is not on Maven Central);
  a timestamp becomes UTC epoch milliseconds, so validation sees the same
  values as the reference evaluator reading the Parquet file. (A naive or
  sub-millisecond Parquet timestamp becomes its ISO-8601 text and is still
  rejected, but as ``unparseable`` where the reference says ``out_of_domain``.);
- a directory's ``.jsonl``/``.parquet`` files are staged the same way into
  one JSON Lines file, in name order (as ``tandem ingest`` reads them), because
  Flink reads a directory's files in no defined order and arrival order
  decides which events are late.

``file:DIR`` with ``follow`` keeps watching ``DIR`` (every ``follow_ms``) and
reads each new file once, when it is first seen; the job never ends. Only JSON
Lines can be followed. Write a file under a hidden name (``.name`` or
``_name``, which Flink skips) and rename it when complete, or Flink may read
it half-written. Files found in the same scan are read in no defined order.

``kafka:BROKERS/TOPIC`` reads a topic with a consumer group from ``start``:

- ``group-offsets`` (default): the group's committed offsets, the earliest
  ones for a new group (Flink commits the offsets on each checkpoint);
- ``earliest`` / ``latest``: the partitions' first / end offsets at start;
- ``timestamp:T`` (``T`` ISO-8601 UTC or epoch ms): the first record whose
  Kafka timestamp is at or after ``T``.

A run that resumes from a checkpoint (same ``--out``) continues where the
checkpoint was, whatever the start. With several partitions the arrival order
across them (and so which events are late) is the broker's interleaving: use
one partition where replays must be deterministic.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pyflink.table import StreamTableEnvironment

from runtime.errors import UserError
from runtime.events_io import JSONL_SUFFIXES, PARQUET_SUFFIXES, events_files, raw_text, read_events, visible_files
from transforms.schema import parse_iso_timestamp_ms

SOURCE = "tandem_source"
KAFKA_STARTS = ("group-offsets", "earliest", "latest", "timestamp:T")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SourceSpec:
    uri: str  # file:PATH | kafka:BROKERS/TOPIC
    staging_dir: Path  # where converted (Parquet) and concatenated (directory) inputs go
    follow_ms: int | None = None  # file:DIR only: watch for new files at this interval; None: bounded
    kafka_group: str = "tandem-stream"
    kafka_start: str = "group-offsets"
    kafka_until_latest: bool = False  # stop at the offsets that were latest at start (replays, tests)
    kafka_properties: dict[str, str] = field(default_factory=dict, repr=False)  # credentials, TLS: secrets


def create_source(t_env: StreamTableEnvironment, spec: SourceSpec) -> None:
    """Register :data:`SOURCE` (one ``line STRING`` column) for ``spec``; raise UserError on bad input."""
    kind, _, where = spec.uri.partition(":")
    if kind == "file":
        options = _file_options(Path(where), spec)
    elif kind == "kafka":
        options = _kafka_options(where, spec)
    else:
        raise UserError(f"--source {spec.uri!r}: use file:PATH or kafka:BROKERS/TOPIC")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {SOURCE} (line STRING) WITH ({sql_options(options)})")


def sql_options(options: dict[str, str]) -> str:
    """A connector's ``WITH`` options as SQL, quotes in values escaped (a path may hold one)."""
    return ", ".join(f"'{k}' = '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in options.items())


# --- files -------------------------------------------------------------------------------------

def _file_options(path: Path, spec: SourceSpec) -> dict[str, str]:
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if spec.follow_ms is not None:
        if not path.is_dir():
            raise UserError(f"{path}: --follow watches a directory for new files; this is a file")
        if spec.follow_ms <= 0:
            raise UserError("the follow interval must be more than 0 ms")
        parquet = [p for p in visible_files(path) if p.suffix.lower() in PARQUET_SUFFIXES]
        if parquet:
            raise UserError(f"{parquet[0]}: a followed directory is read as JSON Lines; "
                            "convert Parquet files first, or replay them without --follow")
        return {"connector": "filesystem", "path": str(path.resolve()), "format": "raw",
                "source.monitor-interval": f"{spec.follow_ms} ms"}
    return {"connector": "filesystem", "path": str(stage_file_input(path, spec.staging_dir)), "format": "raw"}


def stage_file_input(path: Path, staging_dir: Path) -> Path:
    """The JSON Lines file to replay for ``path``: itself, or a staged conversion under ``staging_dir``.

    A staged file is rewritten only when its content changes, so a rerun that
    resumes from a checkpoint keeps reading the very file it had read from.
    """
    if path.is_file() and path.suffix.lower() in JSONL_SUFFIXES and not path.name.startswith((".", "_")):
        return path.resolve()
    files = events_files(path)
    staging_dir.mkdir(parents=True, exist_ok=True)
    target = staging_dir / f"replay-{path.name}.jsonl"  # a plain name: Flink reads nothing from .x or _x
    scratch = staging_dir / f".replay-{path.name}.jsonl.tmp"
    with scratch.open("wb") as out:
        for f in files:
            if f.suffix.lower() in JSONL_SUFFIXES:
                _append_lines(f, out)
            else:
                for record in read_events(f):
                    out.write((_json_line(record) + "\n").encode("utf-8"))
    if target.exists() and filecmp.cmp(scratch, target, shallow=False):
        scratch.unlink()
    else:
        os.replace(scratch, target)
    return target.resolve()


def _append_lines(source: Path, out) -> None:
    """Copy a JSON Lines file byte for byte, ending it with a newline so the next file starts a line."""
    last = b"\n"
    with source.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            out.write(chunk)
            last = chunk[-1:]
    if last != b"\n":
        out.write(b"\n")


def _json_line(record) -> str:
    """One Parquet row as a JSON object; an exact UTC timestamp becomes epoch milliseconds."""
    if isinstance(record, dict):
        record = {k: _epoch_ms(v) if isinstance(v, datetime) else v for k, v in record.items()}
        return json.dumps(record, ensure_ascii=False, allow_nan=True, default=str)
    return raw_text(record)


def _epoch_ms(value: datetime) -> int | str:
    if value.tzinfo is None or value.microsecond % 1000:
        return value.isoformat()  # rejected by validation, as the reference rejects the datetime
    return (value - _EPOCH) // timedelta(milliseconds=1)


# --- Kafka -------------------------------------------------------------------------------------

def _kafka_options(where: str, spec: SourceSpec) -> dict[str, str]:
    brokers, _, topic = where.partition("/")
    if not brokers or not topic:
        raise UserError(f"--source kafka:{where!r}: use kafka:HOST:PORT[,HOST:PORT]/TOPIC")
    options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": brokers,
               "properties.group.id": spec.kafka_group, "format": "raw",
               # records of aborted transactions never reach the job
               "properties.isolation.level": "read_committed"}
    options |= kafka_start_options(spec.kafka_start)
    if spec.kafka_until_latest:
        options["scan.bounded.mode"] = "latest-offset"
    require_kafka_topics(brokers, [topic], "--source", spec.kafka_properties)  # last: the above fail faster
    return options | kafka_client_options(spec.kafka_properties)


_SHADED_KAFKA_PACKAGE = "org.apache.flink.kafka.shaded.org.apache.kafka."  # in Flink's SQL connector jar
_KAFKA_CLASS = re.compile(r"(?<![\w.])org\.apache\.kafka\.")  # Kafka's own package, not yet shaded


def kafka_client_options(properties: dict[str, str]) -> dict[str, str]:
    """The project's Kafka client properties (``kafka_properties`` in tandem.yaml) as connector options.

    Flink's connector passes ``properties.*`` to its Kafka clients, and hides a ``sasl.jaas.config`` or a
    ``*password*`` value wherever it logs them (as Kafka's clients do)."""
    return {f"properties.{k}": v for k, v in shaded_kafka_properties(properties).items()}


def shaded_kafka_properties(properties: dict[str, str]) -> dict[str, str]:
    """``properties`` with Kafka's own classes named as the connector jar shades them.

    A user writes ``sasl.jaas.config: org.apache.kafka.common.security.plain.PlainLoginModule required ...``
    as Kafka documents it; the connector's clients only know the relocated class ("No LoginModule found")."""
    def shade(key: str, value: str) -> str:
        if key == "sasl.jaas.config" or key.endswith(".class") or key.endswith(".classes"):
            return _KAFKA_CLASS.sub(_SHADED_KAFKA_PACKAGE, value)
        return value
    return {k: shade(k, v) for k, v in properties.items()}


def require_kafka_topics(brokers: str, topics: list[str], option: str, properties: dict[str, str] | None = None,
                         timeout_ms: int = 10_000) -> None:
    """UserError unless the cluster at ``brokers`` answers and has every topic (checked before Flink starts).

    Left to Flink, a missing topic fails the job only when its producer times
    out, and an unreachable broker keeps a source waiting. Needs the Flink
    gateway (``build_table_env``): the check runs in its JVM, with the Kafka
    client of the pinned connector jar (``jvm/udf`` ``KafkaTopics``).
    """
    from py4j.protocol import Py4JJavaError
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    names = gateway.new_array(gateway.jvm.String, len(topics))
    for i, topic in enumerate(topics):
        names[i] = topic
    client = gateway.jvm.java.util.HashMap()
    for k, v in shaded_kafka_properties(properties or {}).items():
        client.put(k, v)
    try:
        missing = list(gateway.jvm.dev.tandem.udf.KafkaTopics.missing(brokers, names, timeout_ms, client))
    except Py4JJavaError as e:
        cause = e.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        kind = cause.getClass().getSimpleName()
        if kind == "TimeoutException":
            raise UserError(f"{option}: Kafka at {brokers} did not answer within {timeout_ms / 1000:g} s") from None
        text = " ".join(str(cause.getMessage()).split())
        raise UserError(f"{option}: Kafka at {brokers} would not list its topics: {kind}: {text}") from None
    if missing:
        raise UserError(f"{option}: Kafka at {brokers} has no topic {', '.join(map(repr, missing))}: create it "
                        "first (Tandem does not create topics)")


def kafka_start_options(start: str) -> dict[str, str]:
    """Flink's ``scan.startup.*`` options for a start position; UserError names the choices."""
    if start == "group-offsets":
        return {"scan.startup.mode": "group-offsets", "properties.auto.offset.reset": "earliest"}
    if start in ("earliest", "latest"):
        return {"scan.startup.mode": f"{start}-offset"}
    kind, _, when = start.partition(":")
    if kind == "timestamp" and when:
        ms = int(when) if when.isdigit() else parse_iso_timestamp_ms(when)
        if isinstance(ms, str):
            raise UserError(f"--kafka-start {start!r}: {ms}")
        return {"scan.startup.mode": "timestamp", "scan.startup.timestamp-millis": str(ms)}
    raise UserError(f"--kafka-start {start!r}: use one of {', '.join(KAFKA_STARTS)} "
                    "(T as ISO-8601 UTC, e.g. 2024-05-01T00:00:00Z, or epoch milliseconds)")
