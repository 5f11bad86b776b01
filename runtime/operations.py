"""What a project says about running its pipelines: owners and SLAs, alert channels, metrics output.

From ``tandem.yaml`` (every key optional; the defaults hold without any)::

    pipelines:                       # per pipeline (<kind>:<source>) or per source (all its pipelines)
      defaults: {owner: data-platform, availability: 0.99}
      transactions: {owner: fraud-oncall}
      stream:transactions: {freshness: 10m}
    alerts:
      webhook: https://hooks.example.com/T0/B0   # JSON POST, Slack-compatible ($TANDEM_ALERT_WEBHOOK overrides)
      file: alerts.jsonl             # append-only (default <lake>/_tandem/alerts.jsonl)
      repeat_after: 1h               # one ongoing failure alerts again only after this
    metrics:
      textfile: metrics              # batch runs write <pipeline>.prom here (default <lake>/_tandem/metrics)
      pushgateway: localhost:9091    # also push them there (optional)
    orchestration:                   # tandem orchestrate (Dagster): see orchestrate/definitions.py
      start: 2024-05-01              # the first daily partition (default: 30 days before today)
      landing: landing               # new event files land in landing/<source>/ (default: landing)
      daily: "0 2 * * *"             # cron (UTC) of the daily run, for yesterday's partition
      hourly: "15 * * * *"           # cron of the incremental run, for today's partition
      retries: 3                     # a transient failure's retries, with exponential backoff
      backoff: 30s                   # the first retry's delay
      lock_wait: 10m                 # a second run of one pipeline waits this long, then is refused
      missed_after: 1h               # a daily run not started this long after its tick: schedule_missed
      streams:                       # stream jobs kept alive (tandem stream's options, per source)
        transactions: {source: "kafka:localhost:9092/tx", out: stream/tx, redis: "localhost:6379"}

A pipeline's settings are the first of: its own entry, its source's entry,
``defaults``, Tandem's defaults (owner ``unowned``, availability 99 %,
freshness 26 h for batch pipelines and 15 min for a stream). Paths are
relative to ``tandem.yaml``. Every mistake is one line naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from runtime.errors import UserError
from transforms import parse_duration

ENV_WEBHOOK = "TANDEM_ALERT_WEBHOOK"
_PIPELINE_KEYS = {"owner", "availability", "freshness"}
_ALERT_KEYS = {"webhook", "file", "repeat_after"}
_METRIC_KEYS = {"textfile", "pushgateway"}
_ORCHESTRATION_KEYS = {"start", "landing", "daily", "hourly", "retries", "backoff", "lock_wait", "missed_after",
                       "stall_after", "streams"}
_BATCH_FRESHNESS_MS = 26 * 3_600_000  # a daily pipeline, with two hours' slack
_STREAM_FRESHNESS_MS = 15 * 60_000


@dataclass(frozen=True)
class PipelineSettings:
    owner: str = "unowned"
    availability: float = 0.99  # target share of successful scheduled runs
    freshness_ms: int | None = None  # SLA on the newest served event's age (None: the kind's default)

    def freshness_for(self, pipeline: str) -> int:
        if self.freshness_ms is not None:
            return self.freshness_ms
        return _STREAM_FRESHNESS_MS if pipeline.startswith("stream:") else _BATCH_FRESHNESS_MS


@dataclass(frozen=True)
class AlertSettings:
    file: Path
    webhook: str | None = None
    repeat_after_ms: int = 3_600_000


@dataclass(frozen=True)
class MetricsSettings:
    textfile: Path
    pushgateway: str | None = None


@dataclass(frozen=True)
class OrchestrationSettings:
    """How ``tandem orchestrate`` runs the pipelines (the cron strings are checked there, by Dagster)."""

    start: date
    landing: Path  # new files of source S land in landing/S/
    daily: str = "0 2 * * *"
    hourly: str = "15 * * * *"
    retries: int = 3
    backoff_ms: int = 30_000
    lock_wait_ms: int = 600_000
    missed_after_ms: int = 3_600_000  # a daily run not started this long after its tick alerts schedule_missed
    stall_after_ms: int = 600_000  # a kept stream with no checkpoint row this long is dead: it is restarted
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> tandem stream's options


@dataclass(frozen=True)
class Operations:
    alerts: AlertSettings
    metrics: MetricsSettings
    pipelines: dict[str, PipelineSettings] = field(default_factory=dict)  # name or source -> overrides
    orchestration: OrchestrationSettings | None = None  # None: Tandem's defaults (see parse_operations)

    def pipeline(self, name: str) -> PipelineSettings:
        """``name``'s settings: its entry, else its source's, else ``defaults``."""
        source = name.partition(":")[2]
        for key in (name, source, "defaults"):
            if key in self.pipelines:
                return self.pipelines[key]
        return PipelineSettings()


def parse_operations(path: Path, doc: dict[str, Any], lake_root: Path) -> Operations:
    """The ``pipelines``, ``alerts`` and ``metrics`` sections of ``tandem.yaml`` at ``path``."""
    root = path.parent
    pipelines = _section(path, doc, "pipelines", None)
    defaults = _pipeline(path, "defaults", pipelines.get("defaults") or {}, PipelineSettings())
    parsed = {"defaults": defaults}
    sources = {k: v for k, v in pipelines.items() if k != "defaults" and ":" not in k}
    for name, entry in sources.items():
        parsed[name] = _pipeline(path, name, entry, defaults)
    for name, entry in pipelines.items():
        if ":" in name:
            base = parsed.get(name.partition(":")[2], defaults)
            parsed[name] = _pipeline(path, name, entry, base)
    alerts = _section(path, doc, "alerts", _ALERT_KEYS)
    metrics = _section(path, doc, "metrics", _METRIC_KEYS)
    return Operations(
        orchestration=_orchestration(path, _section(path, doc, "orchestration", _ORCHESTRATION_KEYS)),
        pipelines=parsed,
        alerts=AlertSettings(
            file=_path(root, alerts.get("file"), lake_root / "_tandem" / "alerts.jsonl", path, "alerts.file"),
            webhook=os.environ.get(ENV_WEBHOOK) or _text(path, alerts, "webhook", "alerts"),
            repeat_after_ms=duration_setting(path, alerts, "repeat_after", "1h", "alerts")),
        metrics=MetricsSettings(
            textfile=_path(root, metrics.get("textfile"), lake_root / "_tandem" / "metrics", path, "metrics.textfile"),
            pushgateway=_text(path, metrics, "pushgateway", "metrics")),
    )


def _orchestration(path: Path, section: dict) -> OrchestrationSettings:
    where = f"{path}: orchestration"
    start = section.get("start")
    if start is None:
        start = datetime.now(timezone.utc).date() - timedelta(days=30)
    elif isinstance(start, str):
        try:
            start = date.fromisoformat(start)
        except ValueError:
            raise UserError(f"{where}.start must be a date, e.g. 2024-05-01 (got {start!r})") from None
    elif isinstance(start, datetime) or not isinstance(start, date):  # YAML reads an unquoted date as a date
        raise UserError(f"{where}.start must be a date, e.g. 2024-05-01 (got {start!r})")
    retries = section.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
        raise UserError(f"{where}.retries must be a whole number from 0 to 20 (got {retries!r})")
    crons = {}
    for key in ("daily", "hourly"):
        value = section.get(key, OrchestrationSettings.__dataclass_fields__[key].default)
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{where}.{key} must be a cron string, e.g. \"0 2 * * *\" (got {value!r})")
        crons[key] = value.strip()
    streams = section.get("streams") or {}
    if not isinstance(streams, dict) or not all(isinstance(v, dict) for v in streams.values()):
        raise UserError(f"{where}.streams must map a source to tandem stream's options, e.g. "
                        "{transactions: {source: kafka:HOST:9092/TOPIC, out: stream/tx}}")
    return OrchestrationSettings(
        streams={str(k): dict(v) for k, v in streams.items()},
        start=start, landing=_path(path.parent, section.get("landing"), path.parent / "landing", path,
                                   "orchestration.landing"),
        retries=retries, backoff_ms=duration_setting(path, section, "backoff", "30s", "orchestration"),
        lock_wait_ms=duration_setting(path, section, "lock_wait", "10m", "orchestration"),
        missed_after_ms=duration_setting(path, section, "missed_after", "1h", "orchestration"),
        stall_after_ms=duration_setting(path, section, "stall_after", "10m", "orchestration"), **crons)


def _section(path: Path, doc: dict, key: str, allowed: set[str] | None) -> dict:
    section = doc.get(key) or {}
    if not isinstance(section, dict):
        raise UserError(f"{path}: {key!r} must be a mapping (got {section!r})")
    unknown = sorted(set(section) - allowed) if allowed is not None else []
    if unknown:
        raise UserError(f"{path}: {key}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(allowed))}")
    return section


def _pipeline(path: Path, name: str, entry: Any, base: PipelineSettings) -> PipelineSettings:
    where = f"{path}: pipelines.{name}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be a mapping of {', '.join(sorted(_PIPELINE_KEYS))}")
    unknown = sorted(set(entry) - _PIPELINE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_PIPELINE_KEYS))}")
    kind, colon, _ = name.partition(":")
    if colon and kind not in ("ingest", "backfill", "materialize", "stream"):
        raise UserError(f"{where}: {kind!r} is no pipeline kind (ingest, backfill, materialize, stream)")
    out = base
    if "owner" in entry:
        if not isinstance(entry["owner"], str) or not entry["owner"].strip():
            raise UserError(f"{where}.owner must be a name (got {entry['owner']!r})")
        out = replace(out, owner=entry["owner"].strip())
    if "availability" in entry:
        a = entry["availability"]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
            raise UserError(f"{where}.availability must be a share between 0 and 1, e.g. 0.99 (got {a!r})")
        out = replace(out, availability=float(a))
    if "freshness" in entry:
        out = replace(out, freshness_ms=duration_setting(path, entry, "freshness", None, f"pipelines.{name}"))
    return out


def _text(path: Path, section: dict, key: str, where: str) -> str | None:
    value = section.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise UserError(f"{path}: {where}.{key} must be a string (got {value!r})")
    return value


def duration_setting(path: Path, section: dict, key: str, default: str | None, where: str) -> int:
    """``section[key]`` (else ``default``) of ``tandem.yaml``'s ``where`` section in ms: positive, or one line."""
    try:
        ms = parse_duration(str(section.get(key, default)))
    except ValueError as e:
        raise UserError(f"{path}: {where}.{key}: {e}") from None
    if ms <= 0:
        raise UserError(f"{path}: {where}.{key} must be longer than 0")
    return ms


def _path(root: Path, value: Any, default: Path, path: Path, where: str) -> Path:
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise UserError(f"{path}: {where} must be a path (got {value!r})")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else root / p).resolve()
