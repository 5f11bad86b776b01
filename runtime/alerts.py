"""Alerts: tell a pipeline's owner that it failed, missed its SLA, or was blocked, once per failure.

An :class:`Alert` goes to two channels, set in ``tandem.yaml`` ``alerts:``
(:class:`runtime.operations.AlertSettings`):

* the **alerts file**, append-only JSON Lines, always. It is the record a
  down webhook cannot erase, and it is also the dedupe state, so that every
  process (an orchestrator, a stream job, a CLI run) agrees on what was
  alerted without any other store;
* the **webhook**, if one is set: a JSON POST whose ``text`` is one readable
  line (what Slack shows) and whose ``tandem`` object carries the fields for
  a machine.

One ongoing failure is one ``(pipeline, kind, subject)``: while it lasts it
reaches the webhook once per ``repeat_after``, so that a stream degraded for
a night pages once an hour, not once a minute. Its repeats are still written
to the file (``suppressed: true``). :func:`resolve` ends a pipeline's ongoing
failures when it succeeds, so the next failure pages at once.

Delivery never raises: a refused connection, a timeout, a non-2xx answer or a
bad URL becomes a line in :attr:`Delivery.failed`, the alert is still written
to the file, and :meth:`Delivery.line` goes into the run log's ``alerts``
column. A channel that is down must never hide the failure it was reporting.

A webhook URL is a secret (Slack's carries its token in the path; others put
a key in the query or a password before the host): nothing here writes more
of it than ``scheme://host:port``.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from runtime.errors import one_line
from runtime.operations import AlertSettings

ALERT_KINDS = ("pipeline_failed", "sla_breach", "gate_blocked", "distribution_anomaly", "stream_degraded",
               "schedule_missed")

# The RUNBOOK.md section an on-call engineer opens for each kind (GitHub's heading anchors).
RUNBOOK = {
    "pipeline_failed": "RUNBOOK.md#a-pipeline-run-failed",
    "sla_breach": "RUNBOOK.md#a-pipeline-missed-its-sla",
    "gate_blocked": "RUNBOOK.md#a-quality-gate-blocked-a-write",
    "distribution_anomaly": "RUNBOOK.md#a-feature-distribution-moved",
    "stream_degraded": "RUNBOOK.md#a-stream-is-degraded",
    "schedule_missed": "RUNBOOK.md#a-scheduled-run-did-not-start",
}

TIMEOUT_S = 5.0
RETRY_PAUSE_S = 0.5  # one retry, after a pause long enough for a restarting receiver, short enough for a run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One thing an owner must hear about, with the figures that show it."""

    kind: str  # one of ALERT_KINDS
    pipeline: str  # "<kind>:<source>", e.g. "backfill:rides"
    owner: str
    summary: str  # one line, with the figures
    figures: dict[str, Any] = field(default_factory=dict)  # JSON-able numbers and strings
    run_id: str | None = None
    subject: str | None = None  # what within the pipeline (a gate's name): one ongoing failure per subject

    def __post_init__(self):
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {', '.join(ALERT_KINDS)}")
        # A summary is often built from an exception's message: fold it to the one line a chat shows.
        object.__setattr__(self, "summary", " ".join(str(self.summary).split()))

    @property
    def runbook(self) -> str:
        return RUNBOOK[self.kind]

    @property
    def text(self) -> str:
        """The line a person reads in the chat channel."""
        return f"[{self.kind}] {self.pipeline} ({self.owner}): {self.summary} — {self.runbook}"

    def fields(self) -> dict[str, Any]:
        """The structured fields, as the file and the webhook's ``tandem`` object carry them."""
        return {"kind": self.kind, "pipeline": self.pipeline, "owner": self.owner, "summary": self.summary,
                "figures": _jsonable(self.figures), "run_id": self.run_id, "subject": self.subject,
                "runbook": self.runbook}


@dataclass
class Delivery:
    """What became of one :func:`send`: the channels reached, the ones not, or a suppressed repeat."""

    alert: Alert
    sent: list[str]  # channels reached: "file", "webhook"
    failed: list[str]  # one line each, e.g. "webhook not delivered: Connection refused (http://127.0.0.1:5)"
    suppressed: bool  # a repeat within repeat_after: written to the file, not sent to the webhook

    def line(self) -> str:
        """One line for the run log's ``alerts`` column."""
        head = self.alert.kind + (f" {self.alert.subject}" if self.alert.subject else "")
        parts = []
        if self.suppressed:
            parts.append("repeat, suppressed")
        elif self.sent:
            parts.append("sent " + ", ".join(self.sent))
        parts += self.failed
        return f"{head}: {'; '.join(parts) or 'not recorded'}"


def send(alert: Alert, settings: AlertSettings, now: datetime | None = None) -> Delivery:
    """Alert: the webhook (unless this is a repeat of an ongoing failure), then the file. Never raises
    for a channel's failure; the returned :class:`Delivery` says what was reached."""
    now = _utc(now)
    suppressed = _ongoing(alert, settings, now)
    sent, failed = [], []
    if settings.webhook and not suppressed:
        error = _post(settings.webhook, {"text": alert.text, "tandem": {**alert.fields(), "at": now.isoformat()}})
        if error is None:
            sent.append("webhook")
        else:
            failed.append(f"webhook not delivered: {error} ({redact(settings.webhook)})")
    record = {"type": "alert", "at": now.isoformat(), **alert.fields(),
              "sent": ["file", *sent], "failed": failed, "suppressed": suppressed}
    try:
        _append(settings.file, record)
        sent.insert(0, "file")
    except OSError as e:
        failed.append(f"file not written: {one_line(e)}")
    delivery = Delivery(alert, sent, failed, suppressed)
    if failed:
        log.warning("alert %s %s", alert.pipeline, delivery.line())
    return delivery


def resolve(pipeline: str, settings: AlertSettings, now: datetime | None = None) -> None:
    """``pipeline`` succeeded: its ongoing failures end, so its next failure alerts at once.

    Writes a ``resolved`` line only when something was ongoing, so that a pipeline which succeeds
    every minute does not grow the file every minute. Never raises for the file's failure (a
    success must not fail its run for want of a log line); it is logged.
    """
    now = _utc(now)
    try:
        records = _records(settings.file)
        last_alert = max((i for i, r in enumerate(records)
                          if r.get("type") == "alert" and r.get("pipeline") == pipeline), default=None)
        last_resolve = max((i for i, r in enumerate(records)
                            if r.get("type") == "resolved" and r.get("pipeline") == pipeline), default=-1)
        if last_alert is not None and last_alert > last_resolve:
            _append(settings.file, {"type": "resolved", "at": now.isoformat(), "pipeline": pipeline})
    except OSError as e:
        log.warning("alerts: %s resolved, not recorded in %s: %s", pipeline, settings.file, one_line(e))


def redact(url: str) -> str:
    """``url`` as ``scheme://host:port``: what may be shown of a webhook (path, query and user are secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "a URL without a valid host:port"
    if not parts.scheme or not host:
        return "a URL without scheme://host"
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{host}:{port or default}" if (port or default) else f"{parts.scheme}://{host}"


def _ongoing(alert: Alert, settings: AlertSettings, now: datetime) -> bool:
    """Whether ``alert`` repeats an ongoing failure: the same (pipeline, kind, subject) reached every
    channel less than ``repeat_after`` ago, with no ``resolved`` for the pipeline since.

    An alert the webhook did not take does not start a quiet period: the next one tries again.
    An unreadable file suppresses nothing (a duplicate page beats a lost one); two processes
    alerting the same failure at the same instant may both send, for the same reason.
    """
    try:
        records = _records(settings.file)
    except OSError:
        return False
    window = timedelta(milliseconds=settings.repeat_after_ms)
    for r in reversed(records):
        if r.get("pipeline") != alert.pipeline:
            continue
        if r.get("type") == "resolved":
            return False
        if (r.get("type") == "alert" and (r.get("kind"), r.get("subject")) == (alert.kind, alert.subject)
                and r.get("suppressed") is False and not r.get("failed")):
            try:
                at = datetime.fromisoformat(r["at"])
            except (KeyError, TypeError, ValueError):
                continue
            return now - at < window
    return False


def _post(url: str, body: dict[str, Any]) -> str | None:
    """POST ``body`` as JSON to ``url``, retrying once on a connection error or a 5xx; None when a
    2xx came back, else why not, in words that hold no part of the URL but its host."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        parts.port  # raises ValueError on a port that is no number
        headers = {"Content-Type": "application/json", "User-Agent": "tandem-alerts"}
        if parts.username is not None:
            # Sent as a header, not left in the URL: urllib would read "user:pass@host" as a host
            # and a port, and put the password in its error message.
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        request = urllib.request.Request(bare, method="POST", headers=headers,
                                         data=json.dumps(body, ensure_ascii=False).encode())
    except ValueError:
        return "not a valid URL"
    error, retry = _attempt(request)
    if error is not None and retry:
        time.sleep(RETRY_PAUSE_S)
        error, _ = _attempt(request)
    return None if error is None else _scrub(error, _secrets(url))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not delivery: urllib would follow it with a GET and no body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _attempt(request: urllib.request.Request) -> tuple[str | None, bool]:
    """One POST: (None, _) on a 2xx, else (why, whether a retry may help)."""
    try:
        with _OPENER.open(request, timeout=TIMEOUT_S) as response:
            response.read()
            return None, False
    except urllib.error.HTTPError as e:  # before URLError, its base class
        e.close()
        return f"HTTP {e.code} {e.reason}", e.code >= 500
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            # Not retried: the 5 s were spent, and a receiver that slow may yet have posted it.
            return f"no answer within {TIMEOUT_S:g} s", False
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else one_line(reason)
        return text, True
    except TimeoutError:
        return f"no answer within {TIMEOUT_S:g} s", False
    except (OSError, ValueError, http.client.HTTPException) as e:  # a reset mid-answer, a garbled answer
        return f"{type(e).__name__}: {one_line(e)}", True
    except Exception as e:  # noqa: BLE001 (a channel's failure must never fail the run it reports)
        return f"{type(e).__name__}: {one_line(e)}", False


def _secrets(url: str) -> list[str]:
    """The parts of ``url`` that may never be shown, longest first (so a part of one does not stay)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    try:
        user, password = parts.username, parts.password
    except ValueError:
        user = password = None
    path = parts.path if parts.path != "/" else ""
    found = {url, userinfo, path, parts.query, parts.fragment, user, password}
    found |= {unquote(s) for s in found if s}
    return sorted((s for s in found if s), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _append(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with one ``write`` on an ``O_APPEND`` descriptor, flushed to disk, so that
    two processes appending at once interleave whole lines, never parts of them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = line.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _records(path: Path) -> list[dict[str, Any]]:
    """The file's records in order; a line that is not a JSON object (a torn write) is skipped."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict):
                out.append(r)
    return out


def _jsonable(value: Any) -> Any:
    """``value`` as strict JSON holds it: NaN and infinities as text, anything else unknown as its str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.utcoffset() is None:
        raise ValueError(f"now={now!r} has no time zone")
    return now.astimezone(timezone.utc)
