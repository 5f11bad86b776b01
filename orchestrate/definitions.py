"""The project's pipelines as Dagster definitions, generated from its catalogs and ``tandem.yaml``.

Per catalog (event source S), on daily partitions (UTC) from ``orchestration.start`` to today:

- asset ``S/events``: ingests the files in ``<landing>/S/`` (a file ingested before is skipped by its
  content, so a run ingests what is new); it also reports each event date the new events touched;
- asset ``S/<group>`` for each feature group: the group's Delta feature table, from one backfill of the
  partitions' dates (one Spark job computes every group of the catalog: a multi-asset);
- asset ``S/online`` (when the project has an online store): each entity's latest row of those dates
  into Redis, timestamp-guarded (a same-or-newer row replaces the served one);
- the catalog's quality gates as asset checks of the asset whose write they guard, blocking where the
  gate blocks; Tandem's own gate refuses the write before its commit, so a blocked gate fails its asset
  and nothing downstream runs;
- job ``S_pipeline`` (all of them, in one process: one Spark session per run), a daily schedule (the
  day before), an hourly one (today), each also re-running the partitions late data left stale
  (``orchestrate.late_data``), and a sensor that starts a run when a new file lands; all three are on
  from the start (stop them in the UI);

and for each stream under ``orchestration.streams``, a job that runs it and a sensor that keeps it alive
(``orchestrate.stream_keeper``).

Every step is the same code as the CLI (``batch_jobs.ingest``, ``batch_jobs.backfill``,
``feature_repo.materialize``), so every run is one run log row with its trigger (``schedule``,
``sensor``, ``backfill``, ``retry`` for a re-execution, ``manual``), whose id the step's Dagster
metadata gives (``run log row``). A transient failure (a connection
refused, a lost executor) is retried with exponential backoff (``orchestration.retries``, ``backoff``)
and alerts only when the retries are spent; a permanent one (a user's mistake, a schema change, a
blocked gate) fails at once and alerts.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import dagster as dg

from orchestrate.late_data import ranges, reach_days, stale_dates
from orchestrate.stream_keeper import stream_definitions
from runtime.errors import UserError, one_line, transient
from runtime.events_io import visible_files
from runtime.lake import Lake
from runtime.operations import OrchestrationSettings
from runtime.project import Project
from runtime.run_log import GateResult, RunLog, RunRecord
from runtime.runs import Trigger
from transforms import Catalog
from transforms.quality import Completeness, Freshness, Gate, Range

# Backfill policies are beta in Dagster 1.13; their one-run-per-range behaviour is what Tandem relies on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
_RANGE_START, _RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def definitions(project: Project) -> dg.Definitions:
    """Every source's assets, checks, job, schedules and landing sensor (see the module docstring)."""
    settings = orchestration(project)
    partitions = dg.DailyPartitionsDefinition(start_date=settings.start.isoformat(), timezone="UTC", end_offset=1)
    assets, jobs, schedules, sensors = [], [], [], []
    for catalog in project.catalogs().values():
        source = SourcePipeline(project, catalog, partitions, settings)
        assets += source.assets
        jobs.append(source.job)
        schedules += source.schedules()
        sensors += [source.landing_sensor(), source.schedule_watch()]
    for name, options in settings.streams.items():
        if name not in project.catalogs():
            raise UserError(f"{project.config_path}: orchestration.streams: {name!r} is no source of the project "
                            f"(its sources: {', '.join(project.catalogs())})")
        job, keeper = stream_definitions(project, name, options, settings.stall_after_ms)
        jobs.append(job)
        sensors.append(keeper)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, sensors=sensors)


def orchestration(project: Project) -> OrchestrationSettings:
    """The project's orchestration settings, checked: each source's landing folder exists, the crons parse."""
    from dagster._utils.schedules import is_valid_cron_string

    ops = project.operations
    settings = ops.orchestration if ops and ops.orchestration else None
    if settings is None:
        raise UserError(f"{project.config_path}: no orchestration settings")
    where = f"{project.config_path}: orchestration"
    for key in ("daily", "hourly"):
        if not is_valid_cron_string(getattr(settings, key)):
            raise UserError(f"{where}.{key}: {getattr(settings, key)!r} is not a cron schedule "
                            "(five fields, e.g. \"0 2 * * *\")")
    for source in project.catalogs():
        folder = settings.landing / source
        if not folder.is_dir():
            raise UserError(f"{where}.landing: no folder {folder} for source {source!r}: create it "
                            f"(mkdir -p {folder}) or point orchestration.landing elsewhere")
    return settings


def _spark():
    from batch_jobs.spark_session import build_spark

    return build_spark("tandem-orchestrate")


def check_name(gate_name: str) -> str:
    """A gate's name as Dagster allows a check's: ``completeness(tip)`` -> ``completeness_tip``."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", gate_name).strip("_") or "gate"


class SourcePipeline:
    """One catalog's assets, checks, job, schedules and sensor."""

    def __init__(self, project: Project, catalog: Catalog, partitions: dg.DailyPartitionsDefinition,
                 settings: OrchestrationSettings):
        self.project, self.catalog, self.partitions, self.settings = project, catalog, partitions, settings
        self.source = catalog.schema.name
        self.lake = Lake.at(project.lake_root)
        self.landing = settings.landing / self.source
        self.retry = dg.RetryPolicy(max_retries=settings.retries, delay=settings.backoff_ms / 1000,
                                    backoff=dg.Backoff.EXPONENTIAL)
        self.events_key = dg.AssetKey([self.source, "events"])
        self.group_keys = {g.entity: dg.AssetKey([self.source, g.entity]) for g in catalog.groups}
        self.online_key = dg.AssetKey([self.source, "online"])
        self.assets = [self._events_asset(), self._features_asset()]
        if project.online_store:
            self.assets.append(self._online_asset())
        self.job = dg.define_asset_job(f"{self.source}_pipeline", selection=dg.AssetSelection.groups(self.source),
                                       executor_def=dg.in_process_executor,
                                       description=f"Ingest, backfill and materialise {self.source}, in one process")

    # --- the gates as checks -----------------------------------------------------------------

    def _checks(self, key: dg.AssetKey, gates: list[Gate]) -> dict[str, Gate]:
        out: dict[str, Gate] = {}
        for gate in gates:
            name = check_name(gate.name)
            while name in out:
                name += "_"
            out[name] = gate
        return out

    def _specs(self, key: dg.AssetKey, checks: dict[str, Gate]) -> list[dg.AssetCheckSpec]:
        return [dg.AssetCheckSpec(name, asset=key, blocking=gate.action == "block",
                                  description=f"Tandem gate {gate.name} ({gate.action})")
                for name, gate in checks.items()]

    def _results(self, key: dg.AssetKey, checks: dict[str, Gate], row: RunRecord | None) -> Iterator:
        """Each check's result from the run's row: its gate's verdict and figures (not judged: passes)."""
        verdicts: dict[str, GateResult] = {g.gate: g for g in row.gates} if row else {}
        for name, gate in checks.items():
            g = verdicts.get(gate.name)
            meta = ({"verdict": g.verdict, "why": g.why, "figure": g.figure, "threshold": g.threshold}
                    if g else {"verdict": "not judged", "why": "nothing to measure in this run"})
            yield dg.AssetCheckResult(
                asset_key=key, check_name=name, passed=g is None or g.verdict == "pass",
                severity=dg.AssetCheckSeverity.ERROR if gate.action == "block" else dg.AssetCheckSeverity.WARN,
                metadata={k: v for k, v in meta.items() if v is not None})

    def _events_gates(self) -> list[Gate]:
        fields = self.catalog.schema.field_names
        return [g for g in self.catalog.quality_gates if g.column is None or g.column in fields]

    def _group_gates(self, entity: str) -> list[Gate]:
        group = self.catalog.group(entity)
        s = self.catalog.schema
        columns = {*group.key, s.event_time, s.event_id, *(f.name for f in group.features)}
        return [g for g in self.catalog.quality_gates
                if not isinstance(g, Freshness) and (g.column is None or g.column in columns)]

    def _online_gates(self) -> list[Gate]:
        s = self.catalog.schema
        columns = {s.event_time, *(k for g in self.catalog.groups for k in g.key),
                   *(f.name for _, f in self.catalog.features)}
        return [g for g in self.catalog.quality_gates if isinstance(g, (Completeness, Range)) and g.column in columns]

    # --- running a step ----------------------------------------------------------------------

    def _trigger(self, context: dg.AssetExecutionContext, run_id: str) -> Trigger:
        tags = context.run.tags
        name = ("schedule" if "dagster/schedule_name" in tags else "sensor" if "dagster/sensor_name" in tags
                else "backfill" if "dagster/backfill" in tags else "retry" if "dagster/parent_run_id" in tags
                else "manual")
        attempt = context.retry_number
        return Trigger(name, run_id=run_id, retries=attempt, retries_left=self.settings.retries - attempt)

    def _row(self, run_id: str) -> RunRecord | None:
        return next((r for r in reversed(RunLog(self.lake.root).read()) if r.run_id == run_id), None)

    def _step(self, context: dg.AssetExecutionContext, pipeline: str, run_id: str, work):
        """Run ``work(trigger)`` (one recorded run, row ``run_id``); a failure before the run began is recorded
        too. Raises what Dagster should do: a permanent failure as ``Failure(allow_retries=False)``, a transient
        one as it is (Dagster's retry policy takes it)."""
        from runtime.runs import recorded_run

        trigger = self._trigger(context, run_id)
        context.log.info(f"{pipeline}: run log row {run_id} ({trigger.name}, attempt {trigger.retries + 1})")
        try:
            return work(trigger)
        except Exception as e:  # an interruption (the run terminated) goes up as it is
            if self._row(run_id) is None:  # it failed before its run began (Spark did not start, say)
                try:
                    with recorded_run(self.lake.root, pipeline, trigger, self.project.operations):
                        raise e
                except Exception:
                    pass
            if transient(e):
                raise
            raise dg.Failure(description=f"{pipeline}: {one_line(e)}", allow_retries=False,
                             metadata={"run log row": run_id}) from e

    def _has_events(self, start: date, end: date) -> bool:
        from batch_jobs.delta_tables import date_range_predicate, table_exists

        spark, path = _spark(), self.lake.tables(self.catalog).events
        return table_exists(spark, path) and bool(
            spark.read.format("delta").load(path).where(date_range_predicate(start, end)).limit(1).count())

    def _dates(self, context: dg.AssetExecutionContext) -> tuple[date, date]:
        window = context.partition_time_window
        return window.start.date(), (window.end - timedelta(days=1)).date()

    # --- the assets ----------------------------------------------------------------------------

    def _events_asset(self):
        checks = self._checks(self.events_key, self._events_gates())
        pipeline = f"ingest:{self.source}"

        @dg.asset(key=self.events_key, group_name=self.source, partitions_def=self.partitions,
                  retry_policy=self.retry, check_specs=self._specs(self.events_key, checks),
                  description=f"{self.source} events, ingested from {self.landing}",
                  backfill_policy=dg.BackfillPolicy.single_run())
        def events(context):
            from batch_jobs.ingest import ingest

            if not visible_files(self.landing):
                yield dg.MaterializeResult(metadata={"new files": 0, "landing": str(self.landing)})
                yield from self._results(self.events_key, checks, None)
                return

            def work(trigger):
                return ingest(_spark(), self.landing, self.lake, self.catalog, self.project.max_future_ms,
                              trigger=trigger, operations=self.project.operations)
            run_id = uuid.uuid4().hex
            try:
                result = self._step(context, pipeline, run_id, work)
            except BaseException:
                yield from self._results(self.events_key, checks, self._row(run_id))
                raise
            row = self._row(run_id)
            touched = row.partitions if row else []
            for d in touched:  # the event dates the new events touched: their downstream partitions are stale
                if d in self.partitions.get_partition_keys() and d not in context.partition_keys:
                    context.log_event(dg.AssetMaterialization(self.events_key, partition=d,
                                                              metadata={"run log row": run_id}))
            yield dg.MaterializeResult(metadata={
                "run log row": run_id, "new files": len(result.files), "events": result.accepted,
                "rejected": json.dumps(result.rejected, sort_keys=True), "event dates touched": ", ".join(touched)})
            yield from self._results(self.events_key, checks, row)

        return events

    def _features_asset(self):
        per_group = {e: self._checks(k, self._group_gates(e)) for e, k in self.group_keys.items()}
        specs = [dg.AssetSpec(key, deps=[self.events_key], description=f"Feature table of group {e}")
                 for e, key in self.group_keys.items()]
        check_specs = [s for e, k in self.group_keys.items() for s in self._specs(k, per_group[e])]
        pipeline = f"backfill:{self.source}"

        @dg.multi_asset(name=f"{self.source}_features", specs=specs, group_name=self.source,
                        partitions_def=self.partitions, retry_policy=self.retry, check_specs=check_specs,
                        backfill_policy=dg.BackfillPolicy.single_run())
        def features(context):
            from batch_jobs.backfill import backfill

            start, end = self._dates(context)
            if not self._has_events(start, end):  # today before its first event, say: nothing to compute
                for key in self.group_keys.values():
                    yield dg.MaterializeResult(asset_key=key, metadata={"feature rows": 0, "dates": f"{start} .. {end}",
                                                                        "why": "no events dated these days"})
                for e, key in self.group_keys.items():
                    yield from self._results(key, per_group[e], None)
                return

            def work(trigger):
                return backfill(_spark(), self.lake, start, end, self.catalog, trigger=trigger,
                                operations=self.project.operations)
            run_id = uuid.uuid4().hex
            try:
                result = self._step(context, pipeline, run_id, work)
            except BaseException:
                row = self._row(run_id)
                for e, key in self.group_keys.items():
                    yield from self._results(key, per_group[e], row)
                raise
            row = self._row(run_id)
            for e, key in self.group_keys.items():
                yield dg.MaterializeResult(asset_key=key, metadata={
                    "run log row": run_id, "feature rows": result.rows, "table": result.tables[e],
                    "dates": f"{start} .. {end}"})
            for e, key in self.group_keys.items():
                yield from self._results(key, per_group[e], row)

        return features

    def _online_asset(self):
        checks = self._checks(self.online_key, self._online_gates())
        pipeline = f"materialize:{self.source}"

        @dg.asset(key=self.online_key, group_name=self.source, partitions_def=self.partitions,
                  deps=list(self.group_keys.values()), retry_policy=self.retry,
                  check_specs=self._specs(self.online_key, checks), backfill_policy=dg.BackfillPolicy.single_run(),
                  description="Each entity's latest feature row of the partitions' dates, in the online store")
        def online(context):
            from feature_repo.materialize import materialize

            start, end = self._dates(context)

            def work(trigger):
                return materialize(_spark(), self.lake, [self.catalog], self.project.online_store, self.project.name,
                                   start, end, trigger=trigger, operations=self.project.operations)
            run_id = uuid.uuid4().hex
            try:
                done = self._step(context, pipeline, run_id, work)
            except BaseException:
                yield from self._results(self.online_key, checks, self._row(run_id))
                raise
            yield dg.MaterializeResult(metadata={
                "run log row": run_id, "dates": f"{start} .. {end}",
                **{f"{m.group} written": m.written for m in done}, **{f"{m.group} kept newer": m.stale for m in done}})
            yield from self._results(self.online_key, checks, self._row(run_id))

        return online

    # --- schedules and the landing sensor ------------------------------------------------------

    def stale(self, today: date) -> list[tuple[date, date]]:
        """The ranges of partitions late data left stale, up to ``today``."""
        from batch_jobs.backfill import longest_window_ms

        history = RunLog(self.lake.root).read()
        return ranges(stale_dates(history, self.source, reach_days(longest_window_ms(self.catalog)),
                                  self.settings.start, today))

    def requests(self, day: date, tick: str) -> list[dg.RunRequest]:
        """A run for ``day``'s partition, and one per range of stale partitions (late data)."""
        out = [dg.RunRequest(run_key=f"{tick}:{day}", partition_key=day.isoformat())]
        for first, last in self.stale(day):
            if first == last == day:
                continue
            out.append(dg.RunRequest(run_key=f"{tick}:late:{first}:{last}", tags={
                _RANGE_START: first.isoformat(), _RANGE_END: last.isoformat(), "tandem/late_data": "true"}))
        return out

    def schedules(self) -> list[dg.ScheduleDefinition]:
        def build(name: str, cron: str, days_back: int, what: str):
            @dg.schedule(name=f"{self.source}_{name}", cron_schedule=cron, job=self.job, execution_timezone="UTC",
                         description=f"{what}, and the partitions late data left stale",
                         default_status=dg.DefaultScheduleStatus.RUNNING)
            def schedule(context):
                now = context.scheduled_execution_time or datetime.now(timezone.utc)
                day = now.astimezone(timezone.utc).date() - timedelta(days=days_back)
                return self.requests(day, f"{name}:{now.isoformat()}")
            return schedule

        return [build("daily", self.settings.daily, 1, "The day before, complete"),
                build("hourly", self.settings.hourly, 0, "Today so far")]

    def landing_sensor(self) -> dg.SensorDefinition:
        @dg.sensor(name=f"{self.source}_landing", job=self.job, minimum_interval_seconds=30,
                   default_status=dg.DefaultSensorStatus.RUNNING,
                   description=f"A run for today's partition when a new file lands in {self.landing}")
        def landing(context):
            seen = json.loads(context.cursor) if context.cursor else {}
            files = {p.name: f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in visible_files(self.landing)}
            new = sorted(name for name, stamp in files.items() if seen.get(name) != stamp)
            if not new:
                return dg.SkipReason(f"no new file in {self.landing}")
            context.update_cursor(json.dumps(files, sort_keys=True))
            today = datetime.now(timezone.utc).date().isoformat()
            return dg.RunRequest(run_key=f"landing:{':'.join(new)}:{files[new[-1]]}", partition_key=today,
                                 tags={"tandem/new_files": ", ".join(new)[:200]})
        return landing

    def schedule_watch(self) -> dg.SensorDefinition:
        """Alerts ``schedule_missed`` when the daily run has not started ``missed_after`` past its tick (the
        daemon was down, the schedule stopped, its run stuck in a queue): no scheduled backfill row since."""
        pipeline = f"backfill:{self.source}"

        @dg.sensor(name=f"{self.source}_schedule_watch", minimum_interval_seconds=60,
                   default_status=dg.DefaultSensorStatus.RUNNING,
                   description=f"Alerts when {self.source}_daily has not run {self.settings.missed_after_ms // 60_000} "
                               "min after its tick")
        def watch(context):
            from dagster._utils.schedules import get_latest_completed_cron_tick

            now = datetime.now(timezone.utc)
            due = get_latest_completed_cron_tick(self.settings.daily, now, "UTC").astimezone(timezone.utc)
            if (now - due).total_seconds() * 1000 < self.settings.missed_after_ms:
                return dg.SkipReason(f"the daily run due at {due:%Y-%m-%d %H:%M}Z may still start")
            if any(r.trigger == "schedule" and r.started_at >= due
                   for r in RunLog(self.lake.root).read(pipeline=pipeline, since=due)):
                return dg.SkipReason(f"the daily run due at {due:%Y-%m-%d %H:%M}Z ran")
            self._alert_missed(pipeline, due, now)
            return dg.SkipReason(f"the daily run due at {due:%Y-%m-%d %H:%M}Z did not start: alerted")

        return watch

    def _alert_missed(self, pipeline: str, due: datetime, now: datetime) -> None:
        from runtime.alerts import Alert, send

        ops = self.project.operations
        minutes = (now - due).total_seconds() / 60
        send(Alert("schedule_missed", pipeline, ops.pipeline(pipeline).owner,
                   f"{self.source}_daily, due at {due:%Y-%m-%d %H:%M}Z, has not started {minutes:.0f} min later",
                   {"due": due.isoformat()}, subject=f"{self.source}_daily {due:%Y-%m-%dT%H:%M}Z"), ops.alerts)

