"""The stream job's monitor: a thread in the job's Python driver that watches the running job through
Flink's REST API, appends one run log row per completed checkpoint, and serves live metrics to Prometheus.

Why there and that way: the driver is the one process that knows what the job is (its catalog, its lake)
and lives as long as the job; Flink's REST API shows checkpoints and metrics the same way for the local
mini-cluster and a real cluster, so nothing is added to the job itself.

**What is read**, every poll (1 s, or half the checkpoint interval when that is shorter, so that a
checkpoint is usually seen on its own; see :class:`JobReader`):

- ``/jobs/<id>/checkpoints``: each checkpoint's status, trigger time and duration, the completed and
  failed counts;
- ``/jobs/<id>/metrics?get=numRestarts``: the job's restarts;
- ``/jobs/<id>/vertices/<v>/subtasks/metrics?get=...&agg=sum,min,max``: operator metrics over all
  subtasks -- records read (the source operator's ``numRecordsOut``), feature rows emitted (the feature
  log writer's ``numRecordsIn``), dead letters (``tandem.dead_letters_<reason>``,
  ``stream_jobs/dead_letters.py``), the online sink's ``tandem.online_*`` counters (``jvm/udf``
  ``OnlineWriter.java``) and the watermark assigner's ``currentOutputWatermark``.

**Counting.** Flink's counters live as long as a task attempt: after a restart they start again from 0.
The monitor keeps running totals (:class:`RunningTotals`): a counter read lower than before, once the job's
restarts have grown since its attempt began, belongs to a new attempt and is added on top of the old
attempt's last reading; read lower with no restart, it is a stale answer of Flink's metric fetcher (seen
under load: one such reading counted a whole run's records twice) and is ignored. Records that the new attempt reads
again from the restored checkpoint are counted again (they were read twice); what the old attempt did
after the monitor's last reading is not counted.

**Run log rows** (``runtime.run_log``), pipeline ``stream:<source>``, trigger ``checkpoint``: one per
newly completed checkpoint, from its trigger time to its completion, ``stages = {"checkpoint": seconds}``;
its counts are what the running totals grew by since the previous row (read when the checkpoint was
seen, so the rows of a run add up to the job's totals); ``retries`` the restarts since the previous row;
``newest_event`` the newest accepted event time: Tandem's watermark is ``max accepted event time -
allowed lateness - 1 ms`` (``stream_jobs/pipeline.py``), so it is the watermark + allowed lateness + 1 ms,
exact as of the watermark's last emission (every 50 ms).

**The end**, as the job client tells it. A failed job gets a ``failed`` row with the root cause and what
it did since the previous row. A cancelled job gets nothing more: what it did after its last checkpoint
was not committed, and a run resuming from that checkpoint does it again. A finished (bounded) job took a
final checkpoint that committed everything; unless a row already counts it all, one more row counts what
is left -- from the outputs, because on the local mini-cluster the counters are gone by then: PyFlink
shuts the job's cluster (REST API, metrics and all) down as soon as the job ends, measured 60-600 ms after
the last record was processed (500 ms checkpoints), often before the next poll. So a finished job's
totals are what it committed: its feature rows (this run's new part files under ``OUT/features``, whose
newest event time is the exact ``newest_event``), its dead letters by reason (``OUT/dead_letters``; when
they went to Kafka, the counters' last reading), and as records read, rows plus dead letters (or the
source's counter when that says more: blank lines are read but are no records). To read the other
figures as late as possible, the monitor polls every 50 ms once the source has reached its end (its
output watermark is the end of time).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from runtime.errors import UserError, one_line
from runtime.run_log import RunLog, RunRecord, utc_now
from stream_jobs.dead_letters import COUNTING_FUNCTION
from stream_jobs.failures import cancelled, root_cause
from stream_jobs.gatekeeper import Gatekeeper
from stream_jobs.outputs import committed_files, rows_of

log = logging.getLogger(__name__)

#: Flink's Long.MIN_VALUE / Long.MAX_VALUE watermarks (no watermark yet / the input has ended). The
#: aggregated metrics endpoint returns doubles, so they are compared by magnitude.
_NO_WATERMARK, _END_OF_TIME = -(2**62), 2**62
#: The JVM online sink's counters (jvm/udf OnlineWriter.java), which Flink reports as tandem.<name>.
ONLINE_COUNTERS = ("online_rows_written", "online_rows_stale", "online_rows_superseded", "online_write_retries",
                   "online_write_errors", "online_write_batches", "online_write_micros")
DRAIN_POLL_S = 0.05


class RunningTotals:
    """Totals of counters that start again from 0 with each task attempt (see the module docstring)."""

    def __init__(self) -> None:
        self._done: dict[str, int] = {}  # summed last readings of ended attempts
        self._last: dict[str, int] = {}  # the current attempt's last reading
        self._began: dict[str, int] = {}  # the job's restarts when the current attempt's counter began

    def see(self, name: str, value: int, restarts: int) -> None:
        """``value``: the counter as read now; ``restarts``: the job's restarts as read in the same poll."""
        last = self._last.get(name, 0)
        if value < last:
            if restarts <= self._began.get(name, 0):
                return  # no restart since this attempt began: a stale reading, not a new counter
            self._done[name] = self._done.get(name, 0) + last  # a new attempt's counter
            self._began[name] = restarts
        self._last[name] = value

    def totals(self) -> dict[str, int]:
        return {name: self._done.get(name, 0) + value for name, value in self._last.items()}


@dataclass(frozen=True)
class Reading:
    """What one poll read (counters as running totals since the job started)."""

    totals: dict[str, int] = field(default_factory=dict)  # records_in, rows_out, dead_letters_<reason>, online_*
    restarts: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # the REST history, newest first
    completed: int = 0
    failed: int = 0
    last_checkpoint_s: float | None = None
    watermark_ms: int | None = None  # the current watermark (None: none yet)
    source_ended: bool = False  # the source has read all its input (a bounded job draining)
    final: bool = False  # every counted operator is past the end of input: the counts are final


class JobReader:
    """Reads a job's figures from Flink's REST API at ``rest_url``.

    Operators are found by their metric names: the source table's scan (``Source__<table>``); the feature
    log's writer, the ``StreamingFileWriter`` outside the dead letters' vertex (the one whose plan calls
    ``stream_jobs.dead_letters.COUNTING_FUNCTION``: the plan names no sink table); any operator with
    ``tandem.*`` counters; Flink SQL's ``WatermarkAssigner``.
    """

    def __init__(self, rest_url: str, job_id: str, source_table: str, timeout_s: float = 5):
        self.base, self.job_id, self.timeout_s = rest_url.rstrip("/"), job_id, timeout_s
        self.source_operator = "Source__" + source_table  # metric names have ': ' as '__'
        self.counters = RunningTotals()
        self._vertices: dict[str, str] | None = None  # id -> plan description
        self._ids: dict[str, list[str]] = {}  # vertex id -> the metric ids worth reading
        self._ids_read_at = 0.0

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=self.timeout_s) as response:
            return json.load(response)

    def read(self, refresh_ids: bool = False) -> Reading:
        """One poll; raises OSError or ValueError when the REST API cannot answer (yet, or any more)."""
        job = f"/jobs/{self.job_id}"
        if self._vertices is None:
            self._vertices = {n["id"]: n.get("description", "") for n in self.get(f"{job}/plan")["plan"]["nodes"]}
        checkpoints = self.get(f"{job}/checkpoints")
        restarts = {m["id"]: m["value"] for m in self.get(f"{job}/metrics?get=numRestarts")}
        restart_count = int(float(restarts.get("numRestarts", 0)))
        if refresh_ids or time.monotonic() - self._ids_read_at > 3 or not self._ids:
            self._ids = {v: self._wanted(v, [m["id"] for m in self.get(f"{job}/vertices/{v}/subtasks/metrics")])
                         for v in self._vertices}
            self._ids_read_at = time.monotonic()
        watermarks, source_ended, final = [], False, True
        for vertex, ids in self._ids.items():
            if not ids:
                continue
            query = urllib.parse.quote(",".join(ids), safe=",")
            values = {m["id"]: m for m in self.get(f"{job}/vertices/{vertex}/subtasks/metrics?get={query}"
                                                   "&agg=sum,min,max")}
            for metric_id, m in values.items():
                operator, _, metric = metric_id.partition(".")
                if metric == "currentOutputWatermark":
                    if operator.startswith("WatermarkAssigner") and _NO_WATERMARK < m["max"] < _END_OF_TIME:
                        watermarks.append(int(m["max"]))
                    if operator.startswith(self.source_operator) and m["min"] >= _END_OF_TIME:
                        source_ended = True
                    final = final and m["min"] >= _END_OF_TIME
                else:
                    self.counters.see(self._counter_name(vertex, metric_id), int(m["sum"]), restart_count)
        history = checkpoints.get("history") or []
        latest = (checkpoints.get("latest") or {}).get("completed") or {}
        counts = checkpoints.get("counts") or {}
        return Reading(
            totals=self.counters.totals(), restarts=restart_count,
            checkpoints=history, completed=counts.get("completed", 0), failed=counts.get("failed", 0),
            last_checkpoint_s=latest["end_to_end_duration"] / 1000 if "end_to_end_duration" in latest else None,
            watermark_ms=max(watermarks, default=None), source_ended=source_ended, final=source_ended and final)

    def _wanted(self, vertex: str, ids: list[str]) -> list[str]:
        """The counters worth reading in ``vertex``, and the output watermark of each operator holding one."""
        counters = [i for i in ids if self._counter_name(vertex, i) is not None]
        operators = {i.partition(".")[0] for i in counters}
        operators |= {i.partition(".")[0] for i in ids if i.startswith("WatermarkAssigner")}
        return counters + [f"{op}.currentOutputWatermark" for op in sorted(operators)
                           if f"{op}.currentOutputWatermark" in ids]

    def _counter_name(self, vertex: str, metric_id: str) -> str | None:
        operator, _, metric = metric_id.partition(".")
        if operator.startswith(self.source_operator) and metric == "numRecordsOut":
            return "records_in"
        if (operator == "StreamingFileWriter" and metric == "numRecordsIn"
                and COUNTING_FUNCTION not in self._vertices.get(vertex, COUNTING_FUNCTION)):
            return "rows_out"
        if metric.startswith("tandem.dead_letters_"):
            return metric.removeprefix("tandem.")
        if metric.startswith("tandem.") and metric.removeprefix("tandem.") in ONLINE_COUNTERS:
            return metric.removeprefix("tandem.")
        return None


def _at(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


class StreamMonitor:
    """Watches one job (see the module docstring): :meth:`watch` it once submitted; it stops by itself
    when the job ends (or on :meth:`stop`)."""

    def __init__(self, *, pipeline: str, rest_url: str, allowed_lateness_ms: int, event_time: str,
                 lake: Path | None = None, metrics_port: int | None = None, out_dir: Path | None = None,
                 dead_letter_files: bool = True, checkpoint_interval_ms: int = 0, source_table: str = "tandem_source",
                 gatekeeper: Gatekeeper | None = None):
        self.pipeline, self.rest_url, self.lateness_ms = pipeline, rest_url, allowed_lateness_ms
        self.event_time = event_time  # the feature rows' event time column (epoch ms)
        self.out_dir, self.dead_letter_files = out_dir, dead_letter_files  # where a finished job's outputs are
        self._before: dict[str, set[Path]] = {}  # the part files there before the job (earlier runs')
        self.gatekeeper = gatekeeper  # judges each row's interval of feature rows (stream_jobs.gatekeeper)
        self._gated: set[Path] = set()  # the feature part files already judged
        self.run_log = RunLog(lake) if lake is not None else None
        self.poll_s = min(1.0, max(0.2, checkpoint_interval_ms / 2000)) if checkpoint_interval_ms > 0 else 1.0
        self._source_table = source_table
        self.latest = Reading()  # what the endpoint serves
        self.newest_event_ms: int | None = None
        self.rows_appended = 0
        self.answered = False  # whether Flink's REST API ever answered
        self._recorded = Reading()  # what the previous row counted up to
        self._last_id = -1  # the newest checkpoint with a row
        self._since = utc_now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = None
        if metrics_port is not None:
            self._server = _serve(metrics_port, self)  # a port in use fails here, before the job starts

    def watch(self, job_client) -> "StreamMonitor":
        """Start watching the submitted job (``TableResult.get_job_client()``) in a daemon thread."""
        self._since = utc_now()
        if self.out_dir is not None:
            self._before = {name: set(committed_files(self.out_dir / name)) for name in ("features", "dead_letters")}
        reader = JobReader(self.rest_url, str(job_client.get_job_id()), self._source_table)
        outcome = job_client.get_job_execution_result()
        self._thread = threading.Thread(target=self._run, args=(reader, outcome), daemon=True,
                                        name=f"tandem-monitor-{self.pipeline}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching now (no final row) and close the metrics endpoint."""
        self._stop.set()
        self.join()
        self.close()

    def join(self, timeout: float = 300) -> None:
        """Wait for the thread to end (its last row written), at most ``timeout`` s."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: the stream monitor is still busy after %.0f s", self.pipeline, timeout)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.gatekeeper is not None:
            self.gatekeeper.close()

    # --- the thread ----------------------------------------------------------------------------

    def _run(self, reader: JobReader, outcome) -> None:
        try:
            while not self._stop.is_set():
                ended = outcome.done()  # before the read: the last read is after the end (REST may be gone)
                try:
                    self._observe(reader.read(refresh_ids=self.latest.source_ended))
                    self.answered = True
                except (OSError, ValueError, KeyError) as e:  # not up yet, or gone with the job
                    log.debug("%s: Flink's REST API did not answer: %s", self.pipeline, one_line(e))
                if ended:
                    if not self.answered:
                        log.warning("%s: Flink's REST API at %s never answered: no checkpoint rows, no live figures",
                                    self.pipeline, self.rest_url)
                    self._end(outcome)
                    break
                self._stop.wait(DRAIN_POLL_S if self.latest.source_ended else self.poll_s)
        except Exception as e:  # the monitor never takes the job down with it
            log.error("%s: the stream monitor stopped: %s", self.pipeline, one_line(e))
        finally:
            self.close()

    def _observe(self, reading: Reading) -> None:
        if reading.watermark_ms is not None:  # watermark = newest accepted event - allowed lateness - 1 ms
            newest = reading.watermark_ms + self.lateness_ms + 1
            self.newest_event_ms = newest if self.newest_event_ms is None else max(self.newest_event_ms, newest)
        self.latest = reading
        new = sorted((c for c in reading.checkpoints if c.get("status") == "COMPLETED" and c["id"] > self._last_id),
                     key=lambda c: c["id"])
        for i, c in enumerate(new):
            counted = reading if i == len(new) - 1 else self._recorded  # the counts go to the newest one
            started = _at(c["trigger_timestamp"])
            self._append(started, started + timedelta(milliseconds=c["end_to_end_duration"]), counted,
                         stages={"checkpoint": c["end_to_end_duration"] / 1000})
            self._last_id = c["id"]

    def _end(self, outcome) -> None:
        from py4j.protocol import Py4JJavaError


        try:
            outcome.result()
        except Py4JJavaError as e:
            if cancelled(e):
                return
            self._append(self._since, utc_now(), self.latest, status="failed", error=root_cause(e))
            return
        except Exception as e:
            self._append(self._since, utc_now(), self.latest, status="failed", error=one_line(e))
            return
        final = self._committed(self.latest)
        if self.rows_appended == 0 or _counts(final) != _counts(self._recorded):
            pending = [c for c in self.latest.checkpoints  # the final checkpoint, if it was seen started
                       if c["id"] > self._last_id and c.get("status") != "FAILED"]
            started = _at(min(c["trigger_timestamp"] for c in pending)) if pending else self._since
            self._append(min(started, utc_now()), utc_now(), final)
        if not (self.dead_letter_files or self.latest.final):
            log.warning("%s: the job ended before its last dead-letter counts could be read (its REST API stops "
                        "with it): the last run log row may miss some", self.pipeline)

    def _committed(self, reading: Reading) -> Reading:
        """A finished job's totals: what it committed (see the module docstring), over ``reading``."""
        if self.out_dir is None:
            return reading
        totals = dict(reading.totals)
        rows = rows_of(self._new_files("features"))
        totals["rows_out"] = len(rows)
        times = [r[self.event_time] for r in rows if isinstance(r.get(self.event_time), int)]
        if times:
            self.newest_event_ms = max(times)
        if self.dead_letter_files:
            reasons = Counter(d["reason"] for d in rows_of(self._new_files("dead_letters")))
            totals = {k: n for k, n in totals.items() if not k.startswith("dead_letters_")}
            totals |= {f"dead_letters_{reason}": n for reason, n in reasons.items()}
        dead = sum(n for k, n in totals.items() if k.startswith("dead_letters_"))
        totals["records_in"] = max(totals.get("records_in", 0), len(rows) + dead)
        return replace(reading, totals=totals)

    def _new_files(self, name: str) -> list[Path]:
        return [f for f in committed_files(self.out_dir / name) if f not in self._before.get(name, set())]

    def _append(self, started: datetime, ended: datetime, counted: Reading, stages: dict[str, float] | None = None,
                status: str = "success", error: str | None = None) -> None:
        """One run log row: ``counted`` minus what the previous row counted."""
        now, then = counted.totals, self._recorded.totals
        # below 0 only when a finished job committed less than its counters said (records re-read after a restart)
        delta = {name: max(0, now.get(name, 0) - then.get(name, 0)) for name in now}
        rejected = {k.removeprefix("dead_letters_"): n for k, n in delta.items() if k.startswith("dead_letters_") and n}
        newest = None if self.newest_event_ms is None else _at(self.newest_event_ms)
        record = RunRecord(self.pipeline, "checkpoint", started, max(ended, started), status=status,
                           stages=stages or {}, retries=max(0, counted.restarts - self._recorded.restarts),
                           rows_in=delta.get("records_in", 0), rows_out=delta.get("rows_out", 0), rejected=rejected,
                           newest_event=newest, error=error)
        self._recorded, self._since = counted, record.ended_at
        self.rows_appended += 1
        self._gate(record)
        if self.run_log is None:
            return
        try:
            self.run_log.append(record)
        except Exception as e:  # a run log that cannot be written never stops the job
            log.error("%s: could not append a checkpoint row to the run log at %s: %s", self.pipeline,
                      self.run_log.path, one_line(e))


    def _gate(self, record: RunRecord) -> None:
        """Judge the feature rows committed since the previous row (files the sink commits just after the
        checkpoint completes go to the next row)."""
        if self.gatekeeper is None:
            return
        try:
            files = [f for f in self._new_files("features") if f not in self._gated] if self.out_dir else []
            self._gated.update(files)
            self.gatekeeper.judge(record, rows_of(files) if record.status == "success" else [])
        except Exception as e:  # the row is still appended, saying so
            record.alerts.append(f"quality gates not judged: {one_line(e)}")
            log.error("%s: the quality gates of a checkpoint were not judged: %s", self.pipeline, one_line(e))


def _counts(reading: Reading) -> tuple:
    return tuple(sorted(reading.totals.items())), reading.restarts


# --- the Prometheus endpoint ---------------------------------------------------------------------

def _serve(port: int, monitor: StreamMonitor):
    """Serve ``monitor``'s figures at ``http://HOST:port/metrics`` from a registry of their own."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(monitor))
    try:
        server, _ = start_http_server(port, registry=registry)
    except OSError as e:
        raise UserError(f"--metrics-port {port}: cannot serve metrics there: {e.strerror or e}") from None
    return server


class _Collector:
    """The monitor's latest reading as Prometheus families, labelled by pipeline (read at each scrape)."""

    def __init__(self, monitor: StreamMonitor):
        self.monitor = monitor

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        m, now_s = self.monitor, time.time()
        r, labels = m.latest, [m.pipeline]

        def counter(name: str, doc: str, value: float | None):
            family = CounterMetricFamily(name, doc, labels=["pipeline"])
            if value is not None:
                family.add_metric(labels, value)
            return family

        def gauge(name: str, doc: str, value: float | None):
            family = GaugeMetricFamily(name, doc, labels=["pipeline"])
            if value is not None:
                family.add_metric(labels, value)
            return family

        t = r.totals
        yield counter("tandem_stream_records_in", "Records the source read (Flink: the source's numRecordsOut)",
                      t.get("records_in"))
        yield counter("tandem_stream_feature_rows", "Feature rows emitted to the feature log (its writer's "
                      "numRecordsIn)", t.get("rows_out"))
        dead = CounterMetricFamily("tandem_stream_dead_letters", "Dead letters by reason "
                                   "(tandem.dead_letters_<reason>)", labels=["pipeline", "reason"])
        for name, n in sorted(t.items()):
            if name.startswith("dead_letters_"):
                dead.add_metric([m.pipeline, name.removeprefix("dead_letters_")], n)
        yield dead
        watermark_s = None if r.watermark_ms is None else r.watermark_ms / 1000
        yield gauge("tandem_stream_watermark_lag_seconds", "Wall clock minus the job's current watermark",
                    None if watermark_s is None else now_s - watermark_s)
        newest_s = None if m.newest_event_ms is None else m.newest_event_ms / 1000
        yield gauge("tandem_stream_newest_event_timestamp_seconds", "The newest accepted event time (watermark "
                    "+ allowed lateness + 1 ms)", newest_s)
        yield gauge("tandem_stream_feature_freshness_seconds", "Wall clock minus the newest accepted event time",
                    None if newest_s is None else now_s - newest_s)
        yield gauge("tandem_stream_last_checkpoint_duration_seconds", "The last completed checkpoint's duration",
                    r.last_checkpoint_s)
        checkpoints = CounterMetricFamily("tandem_stream_checkpoints", "Checkpoints by outcome",
                                          labels=["pipeline", "status"])
        checkpoints.add_metric([m.pipeline, "completed"], r.completed)
        checkpoints.add_metric([m.pipeline, "failed"], r.failed)
        yield checkpoints
        yield counter("tandem_stream_restarts", "Job restarts (Flink's numRestarts)", r.restarts)
        if m.gatekeeper is not None:
            degraded = GaugeMetricFamily("tandem_stream_group_degraded", "1 while a failing quality gate has the "
                                         "feature group marked degraded", labels=["pipeline", "group"])
            for group in m.gatekeeper.catalog.groups:
                degraded.add_metric([m.pipeline, group.entity], float(group.entity in m.gatekeeper.degraded))
            yield degraded
        if "online_write_batches" in t:  # a summary: rate(sum) / rate(count) is the mean write latency
            latency = SummaryMetricFamily("tandem_stream_online_write_seconds", "Redis write latency per batch, "
                                          "retries included (tandem.online_write_batches, online_write_micros)",
                                          labels=["pipeline"])
            latency.add_metric(labels, count_value=t["online_write_batches"],
                               sum_value=t.get("online_write_micros", 0) / 1e6)
            yield latency
        for name in ONLINE_COUNTERS:
            if name in t and name not in ("online_write_batches", "online_write_micros"):
                what = name.replace("_", " ")
                yield counter(f"tandem_stream_{name}", f"The online sink's {what} (tandem.{name})", t[name])
