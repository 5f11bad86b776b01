"""The stream job submitted with Flink's own CLI, ``flink run``, as the README shows it.

Twice: to a real standalone Flink cluster (a JobManager and a TaskManager
daemon started by PyFlink's own ``bin/start-cluster.sh``, on free loopback
ports, with its own conf, log and pid folders), and with ``--target local``,
which runs a mini-cluster inside the ``flink`` client JVM.
"""

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyflink
import pytest
import yaml

from stream_jobs.outputs import dead_letters, feature_rows
from runtime.events_io import write_events
from runtime.run_log import RunLog
from examples.transactions.features.generate import StreamSpec, generate
from local_services import free_port
from tests.factories import jobs_project_dir
from tests.shell import shell_env
from tests.test_stream_path import assert_matches_reference
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

ROOT = Path(__file__).resolve().parent.parent
FLINK_BIN = Path(pyflink.__file__).parent / "bin"
FLINK = FLINK_BIN / "flink"


@pytest.fixture
def standalone_cluster(tmp_path):
    """A JobManager + TaskManager started with PyFlink's bin/start-cluster.sh; yields its REST address."""
    conf = tmp_path / "flink-conf"
    shutil.copytree(Path(pyflink.__file__).parent / "conf", conf)
    config = yaml.safe_load((conf / "config.yaml").read_text())
    rest_port = free_port()
    config["jobmanager"]["rpc"]["port"] = free_port()
    config["jobmanager"]["memory"]["process"]["size"] = "1024m"  # a shared 2-core machine
    config["rest"]["port"] = rest_port
    config["env"]["java"]["opts"]["all"] += " -Duser.timezone=UTC"
    (conf / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "flink-log").mkdir()  # the daemons cannot start without it
    env = shell_env(FLINK_CONF_DIR=str(conf), FLINK_LOG_DIR=str(tmp_path / "flink-log"),
                    FLINK_PID_DIR=str(tmp_path / "flink-pid"))
    subprocess.run([str(FLINK_BIN / "start-cluster.sh")], env=env, check=True, capture_output=True, timeout=120)
    try:
        address = f"localhost:{rest_port}"
        deadline = time.monotonic() + 120
        while rest_get(address, "/overview").get("taskmanagers", 0) < 1:
            assert time.monotonic() < deadline, "the standalone cluster did not start within 120 s\n" + log_tails(
                tmp_path / "flink-log")
            time.sleep(1)
        yield address, env
    finally:
        subprocess.run([str(FLINK_BIN / "stop-cluster.sh")], env=env, capture_output=True, timeout=120)


def log_tails(log_dir: Path, lines: int = 40) -> str:
    """The last lines of each daemon's log and stdout, to say why a cluster did not come up."""
    return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                     for log in sorted(log_dir.glob("*")) if log.is_file())


def rest_get(address: str, path: str) -> dict:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
            return json.load(response)
    except OSError:
        return {}


def small_stream(tmp_path, seed):
    records = generate(StreamSpec(users=8, merchants=3, rate_per_s=0.05, duration="2h", out_of_order=0.2, seed=seed))
    events = tmp_path / "events.jsonl"
    write_events(records, events, TRANSACTIONS)
    return records, events


def test_flink_run_on_a_standalone_cluster_equals_the_reference(standalone_cluster, tmp_path):
    address, env = standalone_cluster
    records, events = small_stream(tmp_path, 72)
    out = tmp_path / "out"
    command = [str(FLINK), "run", "-m", address, "-pyclientexec", sys.executable, "-pyexec", sys.executable,
               "-py", "stream_jobs/job.py", "--project", str(jobs_project_dir()), "--source", f"file:{events}",
               "--out", str(out), "--lake", str(tmp_path / "lake")]
    done = subprocess.run(command, cwd=ROOT, env=env | {"TZ": "UTC"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [j["state"] for j in rest_get(address, "/jobs/overview")["jobs"]] == ["FINISHED"]  # ran there
    expected = assert_matches_reference(records, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000)
    runs = RunLog(tmp_path / "lake").read("stream:transactions")  # watched through the cluster's REST API
    assert runs and (sum(r.rows_in for r in runs), sum(r.rows_out for r in runs)) == (len(records), len(expected.rows))


def test_flink_run_with_a_local_target_equals_the_reference(tmp_path):
    records, events = small_stream(tmp_path, 71)
    out = tmp_path / "out"
    env = shell_env(TZ="UTC", JVM_ARGS="-Duser.timezone=UTC", FLINK_LOG_DIR=str(tmp_path / "log"))
    command = [str(FLINK), "run", "--target", "local", "-pyclientexec", sys.executable, "-pyexec", sys.executable,
               "-py", "stream_jobs/job.py", "--project", str(jobs_project_dir()), "--source", f"file:{events}",
               "--out", str(out), "--allowed-lateness", "5s"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Job has been submitted with JobID" in done.stdout
    assert_matches_reference(records, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000)


def test_flink_run_reports_bad_input_in_one_line(tmp_path):
    env = shell_env(FLINK_LOG_DIR=str(tmp_path / "log"))
    command = [str(FLINK), "run", "--target", "local", "-pyclientexec", sys.executable, "-py", "stream_jobs/job.py",
               "--project", str(jobs_project_dir()), "--source", f"file:{tmp_path / 'missing.jsonl'}",
               "--out", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert f"error: {tmp_path / 'missing.jsonl'}: no such file or directory" in done.stdout + done.stderr
