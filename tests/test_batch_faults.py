"""A backfill killed mid-write leaves the Delta tables as they were; the spark-submit job completes them.

The job runs exactly as the README documents it, through ``spark-submit``, in
its own process group; the test watches the feature table's folder and kills
the whole group (driver JVM included) the moment the job's first new data file
lands, before Delta's commit.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from delta.tables import DeltaTable

from batch_jobs.backfill import backfill
from batch_jobs.ingest import ingest
from batch_jobs.spark_session import submit_conf
from runtime.events_io import write_events
from examples.transactions.features.generate import StreamSpec, generate
from runtime.lake import Lake
from tests.factories import jobs_project_dir
from tandem.reference import evaluate
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

VENV_BIN = Path(sys.executable).parent
BACKFILL = Path(__file__).resolve().parent.parent / "batch_jobs" / "backfill.py"


def spark_submit(lake: Lake, conf_file: Path, start: str, end: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.Popen(
        [str(VENV_BIN / "spark-submit"), "--properties-file", str(conf_file), str(BACKFILL),
         "--start", start, "--end", end, "--lake", str(lake.root), "--project", str(jobs_project_dir())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def data_files(table: str) -> set[str]:
    return {str(p) for p in Path(table).rglob("*.parquet") if "_delta_log" not in p.parts}


def table_rows(spark, path):
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())


@pytest.fixture(scope="module")
def lake_with_tables(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    records = generate(StreamSpec(users=30, merchants=6, rate_per_s=0.05, duration="40h", seed=5))
    write_events(records, root / "events.jsonl", TRANSACTIONS)
    lake = Lake.at(root / "lake")
    ingest(spark, root / "events.jsonl", lake, TRANSACTIONS)
    backfill(spark, lake, date(2024, 5, 1), date(2024, 5, 1), TRANSACTIONS)  # the table as it was: day 1 only
    conf = root / "tandem-spark.conf"
    conf.write_text("".join(f"{k} {v}\n" for k, v in submit_conf().items()))
    return lake, records, conf


def test_killed_mid_write_leaves_the_table_as_it_was_then_a_rerun_completes_it(spark, lake_with_tables):
    lake, records, conf = lake_with_tables
    user_table = lake.tables(TRANSACTIONS).features("user")
    before_rows = table_rows(spark, user_table)
    before_version = DeltaTable.forPath(spark, user_table).history(1).first()["version"]
    before_files = data_files(user_table)

    killed_mid_write = False
    for _attempt in range(3):
        job = spark_submit(lake, conf, "2024-05-01", "2024-05-02")
        deadline = time.monotonic() + 240
        while job.poll() is None and time.monotonic() < deadline:
            if data_files(user_table) - before_files:
                os.killpg(job.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        job.wait(timeout=60)
        after_version = DeltaTable.forPath(spark, user_table).history(1).first()["version"]
        if after_version == before_version:
            killed_mid_write = job.returncode == -signal.SIGKILL and bool(data_files(user_table) - before_files)
            # Whatever the job wrote is invisible: the table is exactly as it was.
            assert table_rows(spark, user_table) == before_rows
            if killed_mid_write:
                break
        else:  # the commit won the race: the table must then be the complete new state
            break
    assert killed_mid_write, "the job was never caught between writing data files and committing"

    job = spark_submit(lake, conf, "2024-05-01", "2024-05-02")
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-2000:]
    assert "backfilled" in stdout
    expected = {r["transaction_id"]: r for r in evaluate(records, TRANSACTIONS).rows}
    got = spark.read.format("delta").load(user_table).collect()
    assert len(got) == len(expected)
    for row in got:
        ref = expected[row["transaction_id"]]
        assert all(row[f.name] == ref[f.name] for f in TRANSACTIONS.group("user").features)


def test_spark_submit_reports_bad_input_in_one_line(lake_with_tables):
    lake, _, conf = lake_with_tables
    job = spark_submit(lake, conf, "2024-06-01", "2024-06-01")
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 1
    # spark-submit merges the Python driver's stderr into its stdout.
    assert "Traceback" not in stdout + stderr
    assert "error: no events dated 2024-06-01" in stdout
