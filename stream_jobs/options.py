"""The stream job's options, defined once: ``tandem stream`` and ``python -m stream_jobs.job`` (``flink run``)
take exactly these, with these defaults and help texts, and turn them into a job spec the same way
(:func:`job_arguments`).

``--project`` and ``--catalog`` come first (the project's catalog is what the
job runs); an option whose default is None and that the project defines
(allowed lateness, max future) takes the project's value. ``tandem stream`` also gives the project's lake
when ``--lake`` is not given, so every run it starts is in the project's run log; ``python -m stream_jobs.job``
writes run log rows only where ``--lake`` says.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import UserError
from transforms import parse_duration


@dataclass(frozen=True)
class Option:
    name: str  # the argument's name: --name-with-dashes on the command line
    help: str
    default: Any = None
    kind: str = "text"  # text | duration | int | flag | path
    required: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("source", "file:PATH (JSON Lines or Parquet, or a directory of them, replayed in order) or "
                     "kafka:BROKERS/TOPIC.", required=True),
    Option("out", "Folder for the feature log, the dead letters and the checkpoints.", kind="path", required=True),
    Option("project", "The project folder (default: the nearest tandem.yaml at or above the current directory).",
           kind="path"),
    Option("catalog", "The catalog to run: a source name of the project, or MODULE_OR_FILE[:ATTR] "
                      "(default: the project's only catalog)."),
    Option("allowed_lateness", "How late an event may be, e.g. 500ms, 5s, 2m (default: the project's).",
           kind="duration"),
    Option("redis", "Online store host:port; each entity's latest row goes there (omit: no online writes)."),
    Option("online", "Write each entity's latest row to the project's online_store (tandem.yaml or $TANDEM_REDIS; "
                     "its password stays off the command line).", False, "flag"),
    Option("follow", "file:DIR: keep reading the new files written there (never ends).", False, "flag"),
    Option("follow_interval", "How often --follow looks for new files.", "1s", "duration"),
    Option("kafka_group", "Kafka consumer group.", "tandem-stream"),
    Option("kafka_start", "Kafka start: group-offsets (committed; earliest for a new group), earliest, latest, "
                          "or timestamp:T (ISO-8601 UTC or epoch ms).", "group-offsets"),
    Option("until_latest", "Kafka: stop at the offsets that are latest at start.", False, "flag"),
    Option("dead_letters", "files (OUT/dead_letters) or kafka:BROKERS/TOPIC.", "files"),
    Option("max_future", "An event time further ahead of the clock is invalid (default: the project's).",
           kind="duration"),
    Option("state_backend", "Where the job keeps its windows and seen event ids: hashmap (the JVM heap: fastest; "
                            "memory grows with the rows inside the longest window) or rocksdb (local disk: the "
                            "heap stays flat, for long windows at high rates; incremental checkpoints) "
                            "(default: the project's, else hashmap)."),
    Option("checkpoint_interval", "How often the job checkpoints, e.g. 500ms, 2s; 0ms turns checkpoints off.",
           "2s", "duration"),
    Option("rest_port", "Port of Flink's REST API and web UI (metrics); default: a random one.", kind="int"),
    Option("roll_interval", "Longest a row waits before its part file is closed (then committed on the next "
                            "checkpoint).", "1m", "duration"),
    Option("restarts", "Restarts from the last checkpoint after a failure (e.g. Redis unreachable through every "
                       "retry) before the job fails.", 3, "int"),
    Option("lake", "Lake whose run log gets a row per checkpoint and per failure (tandem stream: the project's "
                   "lake unless given; the Flink main: none unless given).", kind="path"),
    Option("metrics_port", "Serve the job's live metrics for Prometheus at http://HOST:PORT/metrics "
                           "(omit: none).", kind="int"),
)


def argument_parser(prog: str = "stream") -> argparse.ArgumentParser:
    """The options as an argparse parser (``python -m stream_jobs.job``, ``flink run -py stream_jobs/job.py``)."""
    parser = argparse.ArgumentParser(prog=prog, description="Tandem's Flink stream job")
    for o in OPTIONS:
        if o.kind == "flag":
            parser.add_argument(o.flag, dest=o.name, action="store_true", help=o.help)
        else:
            parser.add_argument(o.flag, dest=o.name, required=o.required, default=o.default,
                                type=int if o.kind == "int" else str,
                                help=o.help + (f" (default {o.default})" if o.default is not None else ""))
    return parser


def job_arguments(values: Mapping[str, Any], project_lake: bool = False) -> dict[str, Any]:
    """The :class:`~stream_jobs.job.StreamJobSpec` arguments of parsed option values (by name); bad values are
    UserErrors. ``project_lake``: no ``--lake`` means the project's lake (``tandem stream``), else none."""
    from runtime.project import checked_state_backend, find_project

    project = find_project(values.get("project"))
    catalog = project.catalog(values.get("catalog"))

    def duration(name: str, fallback: int | None = None) -> int | None:
        text = values.get(name)
        if text is None:
            return fallback
        try:
            return parse_duration(str(text))
        except ValueError as e:
            raise UserError(f"--{name.replace('_', '-')}: {e}") from None

    state_backend = checked_state_backend(values.get("state_backend") or project.state_backend, "--state-backend")
    redis = values.get("redis")
    if values.get("online"):
        if redis:
            raise UserError("give --online (the project's online_store) or --redis ADDRESS, not both")
        redis = project.online_store
        if not redis:
            raise UserError(f"--online: {project.config_path} sets no online_store (nor $TANDEM_REDIS)")
    return dict(
        source=values["source"], out_dir=Path(values["out"]),
        allowed_lateness_ms=duration("allowed_lateness", project.allowed_lateness_ms), catalog=catalog,
        project=project.name, redis=redis,
        kafka_group=values["kafka_group"], kafka_start=values["kafka_start"],
        kafka_until_latest=bool(values["until_latest"]), kafka_properties=project.kafka_properties,
        follow_ms=duration("follow_interval") if values["follow"] else None,
        dead_letters=values["dead_letters"], max_future_ms=duration("max_future", project.max_future_ms),
        checkpoint_interval_ms=duration("checkpoint_interval"), state_backend=state_backend, rest_port=values.get("rest_port"),
        roll_interval_ms=duration("roll_interval"), restart_attempts=values["restarts"],
        lake=Path(values["lake"]) if values.get("lake") is not None else project.lake_root if project_lake else None,
        metrics_port=values.get("metrics_port"), operations=project.operations)
