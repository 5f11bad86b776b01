"""Exactly once: the stream job killed part-way, restarted from its last checkpoint, loses and repeats nothing."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from runtime.errors import UserError
from stream_jobs.job import latest_checkpoint
from stream_jobs.outputs import dead_letters, feature_rows
from runtime.events_io import write_events
from examples.transactions.features.generate import StreamSpec, generate
from tandem.reference import evaluate
from tests.factories import HOUR, T0, jobs_project_dir, stream_spec, tx
from tests.shell import shell_env
from tests.test_stream_sources import assert_equals_reference_but_held, drop_file, wait_for
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

COLUMNS = [c for c, _ in TRANSACTIONS.feature_row_columns()]


def start_job(source: Path, out: Path, log: Path, *options: str) -> subprocess.Popen:
    """``python -m stream_jobs.job`` on ``file:source`` (checkpoints every 300 ms), its output appended to ``log``."""
    env = shell_env()  # as from a shell, not with what PyFlink left in this process's environment
    with log.open("a") as sink:  # a file, not a pipe: an unread pipe would stall the job
        return subprocess.Popen(
            [sys.executable, "-m", "stream_jobs.job", "--source", f"file:{source}", "--out", str(out),
             "--project", str(jobs_project_dir()),
             "--allowed-lateness", "5s", "--checkpoint-interval", "300ms", *options],
            cwd=Path(__file__).resolve().parent.parent, stdout=sink, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)


def test_the_restart_budget_reaches_flink(tmp_path):
    from stream_jobs.flink_env import build_table_env
    from stream_jobs.job import configure_checkpoints

    t_env = build_table_env(parallelism=1)
    configure_checkpoints(t_env, stream_spec("file:unused", tmp_path, restart_attempts=5))
    assert t_env.get_config().get("restart-strategy.fixed-delay.attempts", None) == "5"


def test_a_checkpoint_of_the_other_state_backend_is_refused_in_one_line(tmp_path):
    from stream_jobs.flink_env import build_table_env
    from stream_jobs.job import configure_checkpoints

    t_env = build_table_env(parallelism=1)
    configure_checkpoints(t_env, stream_spec("file:unused", tmp_path, state_backend="rocksdb"))
    assert t_env.get_config().get("state.backend.type", None) == "rocksdb"
    assert t_env.get_config().get("execution.checkpointing.incremental", None) == "true"
    chk = tmp_path / "_checkpoints" / "job" / "chk-3"
    chk.mkdir(parents=True)
    (chk / "_metadata").write_bytes(b"written by a rocksdb run")
    with pytest.raises(UserError) as refused:
        configure_checkpoints(build_table_env(parallelism=1), stream_spec("file:unused", tmp_path))
    assert str(refused.value) == (f"--state-backend hashmap: {tmp_path.resolve() / '_checkpoints'} holds checkpoints "
                                  "of the rocksdb backend, which only it restores; run with --state-backend rocksdb, "
                                  "or use a new --out")
    t_env = build_table_env(parallelism=1)
    configure_checkpoints(t_env, stream_spec("file:unused", tmp_path, state_backend="rocksdb"))
    assert t_env.get_config().get("execution.state-recovery.path", None) == chk.resolve().as_uri()


def test_killed_then_restarted_from_a_checkpoint_equals_the_reference(tmp_path):
    """On RocksDB (the other restarts in the suite run on the heap): its incremental checkpoints restore."""
    records = generate(StreamSpec(users=200, merchants=20, rate_per_s=40, duration="25m", seed=23))
    events = tmp_path / "events.jsonl"
    write_events(records, events, TRANSACTIONS)
    out = tmp_path / "out"

    log = tmp_path / "job.log"
    job = start_job(events, out, log, "--state-backend", "rocksdb")
    deadline = time.monotonic() + 240
    while job.poll() is None and time.monotonic() < deadline and latest_checkpoint(out / "_checkpoints") is None:
        time.sleep(0.05)
    assert job.poll() is None, f"the job ended before its first checkpoint:\n{log.read_text()[-3000:]}"
    time.sleep(0.4)  # past the checkpoint: work the restart must neither lose nor repeat
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    partial = feature_rows(out, TRANSACTIONS)
    expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000)
    assert len(partial) < len(expected.rows), "the kill came after the job had finished"

    job = start_job(events, out, log, "--state-backend", "rocksdb")
    assert job.wait(timeout=300) == 0, log.read_text()[-3000:]

    got = feature_rows(out, TRANSACTIONS)
    ids = Counter(r["transaction_id"] for r in got)
    assert [i for i, n in ids.items() if n > 1] == []  # nothing emitted twice
    assert len(got) == len(expected.rows)  # nothing lost
    by_id = {r["transaction_id"]: r for r in got}
    assert all(by_id[r["transaction_id"]][c] == r[c] for r in expected.rows for c in COLUMNS)
    assert Counter((d["transaction_id"], d["reason"]) for d in dead_letters(out)) == Counter(
        (r.event_id, r.reason) for r in expected.rejected)


def test_the_seen_ids_and_the_latest_event_time_survive_a_restart(tmp_path):
    """After a restart from a checkpoint, a retry of an event from before it is still a duplicate, and an
    event far behind the latest one from before it is still late: dedup and lateness state are restored."""
    inbox, out, log = tmp_path / "inbox", tmp_path / "out", tmp_path / "job.log"
    inbox.mkdir()
    before = [tx("a", t=T0 + HOUR), tx("b", t=T0 + 2 * HOUR), tx("late-1", t=T0)]
    after = [tx("late-2", t=T0 + HOUR),  # first after the restart: late only against b, read before it
             tx("a", t=T0 + HOUR),  # a retry of a, read before it
             tx("c", t=T0 + 3 * HOUR), tx("last", t=T0 + 4 * HOUR)]  # last moves the watermark past c
    drop_file(inbox, "part-1.jsonl", before)
    follow = ("--follow", "--follow-interval", "200ms", "--roll-interval", "500ms")
    job = start_job(inbox, out, log, *follow)
    try:
        # late-1's dead letter is committed by a checkpoint taken after the whole first file went through
        wait_for(lambda: job.poll() is not None or any(d["transaction_id"] == "late-1" for d in dead_letters(out)),
                 180, "the first file's dead letter")
        assert job.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    job = start_job(inbox, out, log, *follow)
    try:
        drop_file(inbox, "part-2.jsonl", after)
        # c's row comes after the verdicts on late-2 and a (read before it), and with them or in a later commit
        wait_for(lambda: job.poll() is not None or "c" in {r["transaction_id"]
                                                           for r in feature_rows(out, TRANSACTIONS)},
                 180, "the second file's rows")
        assert job.poll() is None, log.read_text()[-3000:]
        time.sleep(1)  # more checkpoints: anything extra would be committed by now
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    assert_equals_reference_but_held(before + after, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000,
                                     "last")
