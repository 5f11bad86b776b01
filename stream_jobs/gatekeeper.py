"""The stream's quality gates in action: each interval of output judged, recorded, alerted, and its feature
groups marked degraded or healthy again.

The monitor (``stream_jobs.monitor``) hands :meth:`Gatekeeper.judge` the run log row of each completed
checkpoint with the feature rows committed since the previous row; the figures are measured in
``stream_jobs.quality`` and judged in ``runtime.gates``. A failing blocking gate marks every group it
guards degraded in Redis (``runtime.degraded``) and alerts ``stream_degraded``; a failing ``warn`` gate
alerts ``distribution_anomaly`` only; an interval whose gates on a group all pass clears that group's
mark. Nothing here ever stops the job: a Redis or channel failure is logged and said in the row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.degraded import clear_degraded, mark, mark_degraded
from runtime.errors import one_line
from runtime.gates import judge, reference_edges
from runtime.operations import Operations, PipelineSettings
from runtime.run_log import RunLog, RunRecord
from runtime.runs import alert_record
from stream_jobs.quality import guarded_groups, measure, reference_keys, stream_gates
from transforms import Catalog
from transforms.quality import Drift

log = logging.getLogger(__name__)

#: Earlier rows kept in memory: more than any gate looks back at (runtime.gates.REFERENCE_RUNS, Volume.runs).
_KEPT_RUNS = 50


class Gatekeeper:
    """Judges one stream job's intervals (see the module docstring).

    ``lake``: where the references gates' tables are and whose run log holds the pipeline's history (the
    drift reference); ``redis``: the online store whose metadata gets the degraded marks (None: no marks);
    ``operations``: the project's SLAs and alert channels (None: no alerts).
    """

    def __init__(self, *, catalog: Catalog, pipeline: str, project: str, lake: Path | None = None,
                 redis: str | None = None, operations: Operations | None = None):
        self.catalog, self.pipeline, self.project, self.operations = catalog, pipeline, project, operations
        self.gates = stream_gates(catalog)
        self.references = reference_keys(lake, self.gates) if lake is not None else {}  # a bad table fails here
        self.history: list[RunRecord] = RunLog(lake).read(pipeline=pipeline) if lake is not None else []
        self.degraded: set[str] = set()  # the groups this job marked and has not cleared
        self._reference: dict[str, list[float] | None] = {}  # drift column -> its reference decile edges
        self._client = None
        if redis is not None:
            from stream_jobs.online_sink import connect_redis

            self._client, _ = connect_redis(redis, socket_timeout=5.0, connect_timeout=2.0)

    def judge(self, record: RunRecord, rows: Sequence[Mapping[str, Any]]) -> None:
        """Judge the interval's ``rows`` into ``record``, mark or clear groups, and alert; call it before the
        row is appended (its alerts are said in it)."""
        if record.status == "success" and rows:
            figures = measure(rows, self.catalog, self.gates, self._edges(), self.references)
            settings = self.operations.pipeline(self.pipeline) if self.operations else PipelineSettings()
            sla = settings.freshness_for(self.pipeline)
            record.gates += judge(self.gates, figures, self.history, record.ended_at, sla)
            record.null_rates.update(figures.null_rates())
            record.distributions.update(figures.distributions())
        degraded = self._mark(record) if record.gates else {}
        alert_record(record, self.operations, degraded=degraded)
        self._edges()  # the reference edges, before the history that holds them is trimmed
        self.history = [*self.history, record][-_KEPT_RUNS:]

    def _edges(self) -> dict[str, list[float] | None]:
        for g in self.gates:
            if isinstance(g, Drift) and self._reference.get(g.column) is None:
                self._reference[g.column] = reference_edges(self.history, g.column)
        return dict(self._reference)

    def _mark(self, record: RunRecord) -> dict[str, list[str]]:
        """Mark the groups of the failing blocking gates degraded, clear the judged groups that passed;
        returns the groups each failing gate marked."""
        by_gate = {g.name: g for g in self.gates}
        failed: dict[str, list] = {}  # group -> its failing results
        judged: set[str] = set()
        for result in record.gates:
            groups = guarded_groups(self.catalog, by_gate[result.gate])
            judged.update(groups)
            if result.blocks:
                for group in groups:
                    failed.setdefault(group, []).append(result)
        healthy = sorted(judged - set(failed))
        if self._client is not None:
            try:
                mark_degraded(self._client, self.project,
                              {g: mark(self.pipeline, record.run_id, record.ended_at, rs) for g, rs in failed.items()})
                cleared = clear_degraded(self._client, self.project, healthy)
                if cleared:
                    log.info("%s: feature group(s) %s healthy again", self.pipeline, ", ".join(cleared))
            except Exception as e:  # the job goes on; the row and the alert still say what failed
                record.alerts.append(f"degraded marks not written to Redis: {one_line(e)}")
                log.error("%s: could not write the degraded marks to Redis: %s", self.pipeline, one_line(e))
        self.degraded = (self.degraded | set(failed)) - set(healthy)
        return {r.gate: sorted(g for g, rs in failed.items() if r in rs) for rs in failed.values() for r in rs}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
