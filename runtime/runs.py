"""A recorded run: every pipeline run ends as one run log row, its gates judged, its failures alerted.

``with recorded_run(...) as run:`` around a job's work: stages are timed
(``with run.stage("write")``), counts set on ``run.record``, and
:meth:`Run.gate` judges the gates on the figures the job measured before it
writes; a blocking failure raises :class:`GateBlocked`, so the job never
reaches its commit. On the way out, whatever happened (success, a blocked
gate, any error), the row is appended to the run log, its metrics are written
(``runtime.metrics``), and the project's alert channels hear about a failure, a blocked gate or a warning gate, and about a
success ending an ongoing failure. A channel that is down is recorded in the
row, never hides the failure, and never fails the run. One run of a pipeline
writes at a time (``runtime.locks``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import UserError, one_line, transient
from runtime.gates import Figures, judge
from runtime.operations import Operations, PipelineSettings
from runtime.run_log import RunLog, RunRecord, utc_now
from transforms.quality import Gate

log = logging.getLogger(__name__)


class GateBlocked(UserError):
    """A blocking quality gate failed: nothing was published."""

    def __init__(self, message: str, results):
        super().__init__(message)
        self.results = results


@dataclass
class Run:
    record: RunRecord
    log: RunLog
    operations: Operations | None
    _history: list[RunRecord] | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.record.stages[name] = self.record.stages.get(name, 0.0) + time.monotonic() - began

    def history(self) -> list[RunRecord]:
        """This pipeline's earlier runs, oldest first (read once)."""
        if self._history is None:
            self._history = self.log.read(pipeline=self.record.pipeline)
        return self._history

    def gate(self, gates: tuple[Gate, ...], figures: Figures) -> None:
        """Judge ``gates`` on ``figures`` into the record; raise :class:`GateBlocked` when one blocks."""
        settings = self.operations.pipeline(self.record.pipeline) if self.operations else None
        sla = (settings or PipelineSettings()).freshness_for(self.record.pipeline)
        results = judge(gates, figures, self.history(), utc_now(), sla)
        self.record.gates += results
        self.record.null_rates.update(figures.null_rates())
        self.record.distributions.update(figures.distributions())
        if figures.newest_event is not None:
            self.record.newest_event = figures.newest_event
        blocking = [r for r in results if r.blocks]
        if blocking:
            more = f" (and {len(blocking) - 1} more gate(s))" if len(blocking) > 1 else ""
            raise GateBlocked(f"quality gate {blocking[0].gate} blocked {self.record.pipeline}, nothing was written: "
                              f"{blocking[0].why}{more}", blocking)


@dataclass(frozen=True)
class Trigger:
    """What started a run: ``name`` (``cli``, or the orchestrator's ``schedule``, ``sensor``, ``backfill``,
    ``retry``, ``manual``), and from an orchestrator the run log row's id and the retries before this attempt."""

    name: str = "cli"
    run_id: str | None = None  # one per pipeline run
    retries: int = 0
    retries_left: int = 0  # a transient failure with retries left alerts nobody: the next attempt may pass


@contextlib.contextmanager
def recorded_run(lake_root: str | Path, pipeline: str, trigger: str | Trigger = "cli",
                 operations: Operations | None = None) -> Iterator[Run]:
    """Run the body as ``pipeline``'s run; append its row to the lake's run log however it ends.

    The body holds the pipeline's lock (``runtime.locks``): a second run of the same pipeline on this lake
    waits for the first (``orchestration.lock_wait``), then is refused, recorded as failed."""
    from runtime.locks import pipeline_lock

    t = trigger if isinstance(trigger, Trigger) else Trigger(trigger)
    record = RunRecord(pipeline, t.name, utc_now(), retries=t.retries)
    if t.run_id is not None:
        record.run_id = t.run_id
    run = Run(record, RunLog(lake_root), operations)
    rec = run.record
    wait_ms = operations.orchestration.lock_wait_ms if operations and operations.orchestration else 600_000
    try:
        with pipeline_lock(lake_root, pipeline, wait_ms):
            yield run
    except GateBlocked:
        rec.status = "blocked"
        raise
    except BaseException as e:
        rec.status, rec.error = "failed", one_line(e) if str(e) else type(e).__name__
        raise
    finally:
        rec.ended_at = max(utc_now(), rec.started_at)
        if rec.status == "failed" and t.retries_left > 0 and transient(sys.exc_info()[1]):
            rec.alerts.append(f"no alert: a transient failure, {t.retries_left} retr(ies) left")
        else:
            alert_record(rec, operations)
        if operations is not None:
            from runtime.metrics import export

            export(rec, operations.metrics)  # problems are logged; a metrics sink never fails the run
        try:
            run.log.append(rec)
        except Exception as e:  # never hide the run's own outcome behind a run-log failure
            log.error("could not append run %s of %s to the run log at %s: %s", rec.run_id, rec.pipeline,
                      run.log.path, one_line(e))
            if rec.status == "success":
                raise


def alert_record(rec: RunRecord, ops: Operations | None, degraded: dict[str, list[str]] | None = None) -> None:
    """Tell the project's channels about ``rec``; what was sent, suppressed or not delivered goes into it.

    A failed run, a blocking gate that failed (``gate_blocked``; on the stream, which cannot block,
    ``stream_degraded``, naming the groups ``degraded`` lists per gate) and a ``warn`` gate that failed
    (``distribution_anomaly``) alert; a clean success ends the pipeline's ongoing failures.
    """
    if ops is None:
        return
    from runtime.alerts import Alert, resolve, send

    owner = ops.pipeline(rec.pipeline).owner
    alerts = []
    if rec.status == "failed":
        alerts.append(Alert("pipeline_failed", rec.pipeline, owner, f"{rec.pipeline} failed: {rec.error}",
                            {"duration_s": rec.duration_s}, rec.run_id))
    for g in rec.gates:
        if g.verdict == "pass":
            continue
        if not g.blocks:
            kind, outcome = "distribution_anomaly", "written anyway (warn)"
        elif degraded is None:
            kind, outcome = "gate_blocked", "the write was blocked"
        else:
            groups = ", ".join(degraded.get(g.gate, [])) or "none"
            kind, outcome = "stream_degraded", f"already served; feature group(s) {groups} marked degraded"
        alerts.append(Alert(kind, rec.pipeline, owner, f"{g.gate}: {g.why}; {outcome}",
                            {"figure": g.figure, "threshold": g.threshold}, rec.run_id, subject=g.gate))
    try:
        if rec.status == "success" and not alerts:
            resolve(rec.pipeline, ops.alerts)
        for a in alerts:
            rec.alerts.append(send(a, ops.alerts).line())
    except Exception as e:  # alerting must never fail the run or hide its outcome
        rec.alerts.append(f"alerting failed: {one_line(e)}")
