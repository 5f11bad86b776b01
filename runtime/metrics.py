"""Batch runs' metrics, in the Prometheus text format, from their run log row.

A batch run ends; its figures outlive the process as a textfile-collector file
(``<metrics.textfile>/<pipeline>.prom``, written atomically, one per pipeline:
node_exporter's textfile collector or any scraper of files reads it) and, when
``tandem.yaml`` names one, a push to a Pushgateway. Written with
``prometheus-client``; the row is the only source, so the metrics say what the
run log says.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from runtime.errors import one_line
from runtime.operations import MetricsSettings
from runtime.run_log import STATUSES, RunRecord

log = logging.getLogger(__name__)
_VERDICT = {"pass": 0, "warn": 1, "fail": 2}


def registry_of(rec: RunRecord) -> CollectorRegistry:
    """The run's gauges, labelled by pipeline."""
    reg = CollectorRegistry()
    p = {"pipeline": rec.pipeline}

    def gauge(name: str, doc: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        g = gauges.get(name) or Gauge(name, doc, ["pipeline", *labels], registry=reg)
        gauges[name] = g
        g.labels(**p, **labels).set(value)

    gauges: dict[str, Gauge] = {}
    for status in STATUSES:
        gauge("tandem_run_status", "1 for the last run's status (success, failed, blocked)",
              float(rec.status == status), status=status)
    gauge("tandem_run_end_timestamp_seconds", "When the last run ended", rec.ended_at.timestamp())
    if rec.status == "success":
        gauge("tandem_run_last_success_timestamp_seconds", "When the last successful run ended",
              rec.ended_at.timestamp())
    gauge("tandem_run_duration_seconds", "The last run's duration", rec.duration_s)
    for stage, seconds in rec.stages.items():
        gauge("tandem_run_stage_seconds", "The last run's seconds per stage", seconds, stage=stage)
    gauge("tandem_run_rows_in", "Rows the last run read", rec.rows_in)
    gauge("tandem_run_rows_out", "Rows the last run wrote", rec.rows_out)
    gauge("tandem_run_retries", "Retries of the last run", rec.retries)
    for reason, n in rec.rejected.items():
        gauge("tandem_run_rejected", "Records the last run dead-lettered, by reason", n, reason=reason)
    if rec.newest_event is not None:
        gauge("tandem_newest_event_timestamp_seconds", "The newest event time in the last run's output",
              rec.newest_event.timestamp())
    for g in rec.gates:
        gauge("tandem_gate_verdict", "The last run's gate verdicts: 0 pass, 1 warn, 2 fail", _VERDICT[g.verdict],
              gate=g.gate)
        gauge("tandem_gate_figure", "What each gate measured in the last run", g.figure, gate=g.gate)
    for column, rate in rec.null_rates.items():
        gauge("tandem_null_rate", "Share of nulls per column in the last run's output", rate, column=column)
    return reg


def export(rec: RunRecord, settings: MetricsSettings) -> list[str]:
    """Write the textfile (and push); what could not be done, as lines for the run log (never raises)."""
    problems = []
    reg = registry_of(rec)
    name = rec.pipeline.replace(":", "_")
    try:
        settings.textfile.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(settings.textfile / f"{name}.prom"), reg)
    except OSError as e:
        problems.append(f"metrics textfile not written: {one_line(e)}")
    if settings.pushgateway:
        try:
            push_to_gateway(settings.pushgateway, job=f"tandem_{name}", registry=reg, timeout=5)
        except Exception as e:  # a down gateway is recorded, never fails the run
            problems.append(f"metrics not pushed to the gateway: {type(e).__name__}")
    for p in problems:
        log.warning("%s: %s", rec.pipeline, p)
    return problems
