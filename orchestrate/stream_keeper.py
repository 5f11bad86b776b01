"""Keeping the project's stream jobs alive: a Dagster job per stream, and a sensor that restarts it.

Each source under ``orchestration.streams`` (``tandem stream``'s options: ``source``, ``out`` and any
other, by name) gets the job ``S_stream``, whose one op runs ``tandem stream`` in the project's folder and
lasts as long as the stream does (a Flink job in its own process; its output goes to
``<out>/_stream.log``). The sensor ``S_stream_keeper`` looks every 30 s at the job's latest run:

- one in progress: the stream is alive (its checkpoints are its heartbeat in the run log and metrics);
- none, or one that ended (the job died: its restarts spent, the process killed, the machine rebooted):
  it starts a new run, which resumes from the last checkpoint in ``out``, so nothing is lost or counted
  twice; when an earlier run ended it also alerts ``pipeline_failed`` for ``stream:S``, naming the owner,
  with the one subject ``stream stopped``: a restart loop alerts once per ``alerts.repeat_after``.

To stop a stream for good, stop its keeper in the UI first, then terminate its run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from runtime.errors import UserError
from runtime.project import Project

_SUBJECT = "stream stopped"
_NOT_HERE = {"project", "catalog"}  # the keeper gives these


def stream_arguments(project: Project, source: str, options: dict[str, Any]) -> list[str]:
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
    return args


def out_folder(project: Project, options: dict[str, Any]) -> Path:
    out = Path(str(options["out"])).expanduser()
    return out if out.is_absolute() else project.root / out


def stream_definitions(project: Project, source: str, options: dict[str, Any]):
    """The job ``S_stream`` and its keeper sensor for one stream."""
    args = stream_arguments(project, source, options)
    log_path = out_folder(project, options) / "_stream.log"
    pipeline = f"stream:{source}"

    @dg.op(name=f"{source}_stream_job", description=f"tandem stream {' '.join(args)} (lasts as long as the stream)")
    def run_stream(context):
        command = [sys.executable, "-m", "tandem.cli", "stream", "--project", str(project.root), "--catalog", source,
                   *args]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # not PyFlink's variables of this process (a child would refuse to start its own gateway)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_") and not (k == "JAVA_HOME" and not v)}
        with log_path.open("ab") as log:
            proc = subprocess.Popen(command, cwd=project.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
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
               description=f"Starts {source}_stream when no run of it is in progress; alerts when one ended")
    def keeper(context):
        runs = context.instance.get_runs(filters=dg.RunsFilter(job_name=stream_job.name), limit=1)
        if runs and not runs[0].is_finished:
            return dg.SkipReason(f"{pipeline} is running (run {runs[0].run_id})")
        if runs:
            _alert_stopped(project, pipeline, runs[0])
        return dg.RunRequest(run_key=f"{pipeline}:after:{runs[0].run_id if runs else 'none'}",
                             tags={"tandem/stream": source})

    return stream_job, keeper


def _alert_stopped(project: Project, pipeline: str, run) -> None:
    from runtime.alerts import Alert, send

    ops = project.operations
    if ops is None:
        return
    summary = (f"{pipeline} stopped (its Dagster run {run.run_id} ended {run.status.value.lower()}); restarted from "
               "its last checkpoint")
    send(Alert("pipeline_failed", pipeline, ops.pipeline(pipeline).owner, summary, {"run": run.run_id},
               subject=_SUBJECT), ops.alerts)
