"""Keeping the project's stream jobs alive: a Dagster job per stream, and a sensor that restarts it.

Each source under ``orchestration.streams`` (``tandem stream``'s options: ``source``, ``out`` and any
other, by name) gets the job ``S_stream``, whose one op runs ``tandem stream`` in the project's folder and
lasts as long as the stream does (a Flink job in its own process; its output goes to
``<out>/_stream.log``, and ``<out>/_stream.pid`` names the run, its worker and the stream's process). The
sensor ``S_stream_keeper`` looks every 30 s at the job's latest run:

- one in progress whose stream wrote a run log row (one per checkpoint, ``stream_jobs/monitor.py``) within
  ``orchestration.stall_after``: the stream is alive. Its checkpoints are the heartbeat, not Dagster's run
  status: Dagster's default run launcher has no worker health check, so a run whose worker died (killed,
  the machine rebooted) stays "started" for ever;
- one in progress whose heartbeat stopped: the stream is dead or hung. Its process, if it still runs (an
  orphan of a dead worker, or a hung JVM), is killed first, so that two jobs never write one ``out``; a run
  whose worker is gone is marked failed in Dagster; then it is restarted as below (a live worker ends its
  run itself once its stream is killed, and the next tick restarts it);
- none, or one that ended (restarts spent, the process killed): it starts a new run, which resumes from
  the last checkpoint in ``out``, so nothing is lost or counted twice; when an earlier run ended it also
  alerts ``pipeline_failed`` for ``stream:S``, naming the owner, with the one subject ``stream stopped``:
  a restart loop alerts once per ``alerts.repeat_after``.

A kept stream must checkpoint (its heartbeat and its restart point), at least three times per
``stall_after``. To stop a stream for good, stop its keeper in the UI first, then terminate its run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import psutil

from runtime.errors import UserError
from runtime.project import Project
from transforms.durations import parse_duration

_SUBJECT = "stream stopped"
_NOT_HERE = {"project", "catalog"}  # the keeper gives these
_BEATS_PER_STALL = 3  # checkpoints a kept stream takes within stall_after, at least
_KILL_WAIT_S = 30.0  # for a killed stream's processes to exit before its restart is requested


def stream_arguments(project: Project, source: str, options: dict[str, Any], stall_after_ms: int) -> list[str]:
    """``tandem stream``'s arguments for ``options`` (checked against its option table)."""
    from stream_jobs.options import OPTIONS

    where = f"{project.config_path}: orchestration.streams.{source}"
    known = {o.name: o for o in OPTIONS if o.name not in _NOT_HERE}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(f"{where}: unknown option {unknown[0]!r}; tandem stream's are {', '.join(sorted(known))}")
    missing = [name for name in ("source", "out") if name not in options]
    if missing:
        raise UserError(f"{where}: give {missing[0]!r} (tandem stream --{missing[0]})")
    args = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if known[name].kind == "flag":
            if not isinstance(value, bool):
                raise UserError(f"{where}.{name} is a flag: true or false (got {value!r})")
            args += [flag] if value else []
        elif value is None or isinstance(value, (dict, list)):
            raise UserError(f"{where}.{name} must be one value (got {value!r})")
        else:
            args += [flag, str(value)]
    _check_heartbeat(where, str(options.get("checkpoint_interval", known["checkpoint_interval"].default)),
                     stall_after_ms)
    return args


def _check_heartbeat(where: str, interval: str, stall_after_ms: int) -> None:
    try:
        interval_ms = parse_duration(interval)
    except ValueError as e:
        raise UserError(f"{where}.checkpoint_interval: {e}") from None
    if interval_ms <= 0:
        raise UserError(f"{where}.checkpoint_interval: a kept stream must checkpoint (its checkpoints are its "
                        f"heartbeat and where a restart resumes); give a duration, e.g. 2s")
    if interval_ms * _BEATS_PER_STALL > stall_after_ms:
        raise UserError(f"{where}.checkpoint_interval {interval} is too long for orchestration.stall_after "
                        f"({stall_after_ms // 1000} s): take at least {_BEATS_PER_STALL} checkpoints per stall_after")


def out_folder(project: Project, options: dict[str, Any]) -> Path:
    out = Path(str(options["out"])).expanduser()
    return out if out.is_absolute() else project.root / out


def stream_definitions(project: Project, source: str, options: dict[str, Any], stall_after_ms: int):
    """The job ``S_stream`` and its keeper sensor for one stream."""
    args = stream_arguments(project, source, options, stall_after_ms)
    out = out_folder(project, options)
    log_path, pid_path = out / "_stream.log", out / "_stream.pid"
    pipeline = f"stream:{source}"

    @dg.op(name=f"{source}_stream_job", description=f"tandem stream {' '.join(args)} (lasts as long as the stream)")
    def run_stream(context):
        command = [sys.executable, "-m", "tandem.cli", "stream", "--project", str(project.root), "--catalog", source,
                   *args]
        out.mkdir(parents=True, exist_ok=True)
        # not PyFlink's variables of this process (a child would refuse to start its own gateway)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_") and not (k == "JAVA_HOME" and not v)}
        with log_path.open("ab") as log:
            proc = subprocess.Popen(command, cwd=project.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            _write_pids(pid_path, context.run_id, proc.pid)
            context.log.info(f"{pipeline}: pid {proc.pid}, output in {log_path}")
            try:
                code = proc.wait()
            except BaseException:  # the run was terminated: stop the stream with it
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
        if code:
            raise dg.Failure(description=f"{pipeline} exited with {code}; its output: {log_path}",
                             allow_retries=False)

    @dg.job(name=f"{source}_stream", executor_def=dg.in_process_executor,
            description=f"The {source} stream job, restarted from its last checkpoint by {source}_stream_keeper")
    def stream_job():
        run_stream()

    @dg.sensor(name=f"{source}_stream_keeper", job=stream_job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Starts {source}_stream when none runs, or its checkpoints stopped; alerts when one ended")
    def keeper(context):
        records = context.instance.get_run_records(filters=dg.RunsFilter(job_name=stream_job.name), limit=1)
        run = records[0].dagster_run if records else None
        if run is not None and not run.is_finished:
            if run.status != dg.DagsterRunStatus.STARTED:
                return dg.SkipReason(f"{pipeline}: run {run.run_id} is {run.status.value.lower()}")
            since = records[0].start_time or records[0].create_timestamp.timestamp()
            quiet_s = time.time() - _heartbeat(project, pipeline, since)
            if quiet_s * 1000 < stall_after_ms:
                return dg.SkipReason(f"{pipeline} is running (run {run.run_id}; heard from {quiet_s:.0f} s ago)")
            why = f"no checkpoint for {quiet_s:.0f} s (stall_after {stall_after_ms / 1000:g} s)"
            killed, worker_alive = _stop_stalled(pid_path, run.run_id)
            if killed and worker_alive:  # its op sees the stream end and fails the run: restarted next tick
                return dg.SkipReason(f"{pipeline} stalled ({why}): killed its stream process; restarting after "
                                     f"run {run.run_id} ends")
            context.instance.report_run_failed(run, message=f"{pipeline} stalled: {why}; marked failed by "
                                                            f"{source}_stream_keeper")
            _alert_stopped(project, pipeline, run, f"stalled: {why}")
        elif run is not None:
            _alert_stopped(project, pipeline, run, f"its Dagster run {run.run_id} ended {run.status.value.lower()}")
        return dg.RunRequest(run_key=f"{pipeline}:after:{run.run_id if run else 'none'}",
                             tags={"tandem/stream": source})

    return stream_job, keeper


def _heartbeat(project: Project, pipeline: str, since: float) -> float:
    """When the stream was last heard from: its newest run log row of this run, else the run's start."""
    from runtime.run_log import RunLog

    rows = RunLog(project.lake_root).read(pipeline=pipeline, since=datetime.fromtimestamp(since, timezone.utc))
    return max([since, *((r.ended_at or r.started_at).timestamp() for r in rows)])


def _write_pids(path: Path, run_id: str, stream_pid: int) -> None:
    """``path``: the run, its worker and its stream, each process with its start time (a pid is reused)."""
    doc = {"run_id": run_id, "worker": _process(os.getpid()), "stream": _process(stream_pid)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def _process(pid: int) -> list:
    try:
        return [pid, psutil.Process(pid).create_time()]
    except psutil.Error:
        return [pid, None]


def _running(entry) -> psutil.Process | None:
    """The process ``entry`` names, when it still runs (the same pid and start time, not a zombie)."""
    try:
        p = psutil.Process(entry[0])
        if entry[1] is None or p.create_time() != entry[1] or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except (psutil.Error, TypeError, IndexError):
        return None


def _stop_stalled(pid_path: Path, run_id: str) -> tuple[bool, bool]:
    """Kill the stalled run's stream (its whole session: the JVM with it) if it runs; -> (killed, its worker
    is alive). Without a pid file of this run, nothing is known to run."""
    try:
        doc = json.loads(pid_path.read_text())
    except (OSError, ValueError):
        return False, False
    if doc.get("run_id") != run_id:
        return False, False
    stream = _running(doc.get("stream"))
    if stream is not None:
        try:
            session = [stream, *stream.children(recursive=True)]
            os.killpg(stream.pid, signal.SIGKILL)
        except (ProcessLookupError, psutil.Error):
            stream = None
        else:  # a killed process takes a while to exit (its memory freed): the restart waits for it
            _wait_ended(session, _KILL_WAIT_S)
    return stream is not None, _running(doc.get("worker")) is not None


def _wait_ended(processes: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in processes):
        time.sleep(0.1)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _alert_stopped(project: Project, pipeline: str, run, why: str) -> None:
    from runtime.alerts import Alert, send

    ops = project.operations
    if ops is None:
        return
    summary = f"{pipeline} stopped ({why}); restarted from its last checkpoint"
    send(Alert("pipeline_failed", pipeline, ops.pipeline(pipeline).owner, summary, {"run": run.run_id},
               subject=_SUBJECT), ops.alerts)
