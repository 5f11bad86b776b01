"""The stream job when its Redis becomes unreachable mid-run: it retries with backoff, then fails
loudly (one line, non-zero exit), and nothing it acknowledged was left unwritten -- a rerun from its
last checkpoint brings Redis and the feature log to exactly the reference's values.

The outage is a network cut between the job and a real redis-server (a small TCP forwarder the test
closes and reopens), so Redis keeps its data, as it does when a network partition heals.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import redis

from feature_repo import store as fs
from stream_jobs.job import latest_checkpoint
from stream_jobs.outputs import dead_letters, feature_rows
from tandem.reference import evaluate
from local_services import free_port
from tests.factories import HOUR, T0, TEST_PROJECT, tx
from tests.test_online_sink import GROUPS, feast, latest_rows, online  # noqa: F401 (feast: a fixture)
from tests.test_stream_faults import start_job
from tests.test_stream_sources import assert_equals_reference_but_held, drop_file, wait_for
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

DB = 9  # this module's logical database on the session's Redis


class NetworkCut:
    """Forwards 127.0.0.1:``port`` to a server; ``cut()`` drops every connection and refuses new ones."""

    def __init__(self, target_port: int):
        self.port, self.target = free_port(), target_port
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> "NetworkCut":
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def cut(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(): close() alone would not
        self._server.close()
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_redis_cut_mid_run_fails_loudly_and_a_rerun_loses_nothing(feast, redis_server, tmp_path):  # noqa: F811
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=DB)
    client.flushdb()
    net = NetworkCut(redis_server.port).restore()
    address = f"127.0.0.1:{net.port},db={DB}"
    inbox, out, log = tmp_path / "inbox", tmp_path / "out", tmp_path / "job.log"
    inbox.mkdir()
    options = ("--follow", "--follow-interval", "200ms", "--redis", address, "--roll-interval", "300ms",
               "--restarts", "0")  # each restart would retry Redis again: 11 s
    first = [tx(f"a{i}", user=f"ua{i % 3}", merchant=f"ma{i % 2}", t=T0 + i * 60_000) for i in range(12)]
    second = [tx(f"b{i}", user=f"ub{i % 3}", merchant=f"mb{i % 2}", t=T0 + HOUR + i * 60_000) for i in range(12)]
    flush = [tx("flush", user="u-flush", merchant="m-flush", t=T0 + 5 * HOUR)]  # its row waits for the watermark

    drop_file(inbox, "1.jsonl", first)
    job = start_job(inbox, out, log, *options)
    try:
        wait_for(lambda: client.dbsize() > 0 and latest_checkpoint(out / "_checkpoints"), 240,
                 "the first rows in Redis and a checkpoint")
        net.cut()
        drop_file(inbox, "2.jsonl", second + flush)  # its rows cannot be written now
        began = time.monotonic()
        code = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 1, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the Flink job failed:" in errors[0] and "unreachable" in errors[0], output[-3000:]
    assert f"Redis at 127.0.0.1:{net.port}/{DB}" in errors[0], errors[0]
    assert "rows not acknowledged after 5 tries over" in output  # the writer retried with backoff first
    print(f"failed {time.monotonic() - began:.0f}s after the cut: {errors[0]}")

    net.restore()
    job = start_job(inbox, out, log, *options)  # same --out: resumes from the last checkpoint
    records = first + second + flush
    expected = evaluate(records, TRANSACTIONS, allowed_lateness_ms=5_000)
    store = fs.open_store(TEST_PROJECT, feast["lake"], f"{redis_server.host}:{redis_server.port},db={DB}")
    latest = {g.entity: latest_rows([r for r in expected.rows if r["transaction_id"] != "flush"], g) for g in GROUPS}
    pairs = [(u, m) for u, m in zip(sorted(latest["user"]), sorted(latest["merchant"]) * 3)]
    try:
        wait_for(lambda: served(store, pairs) == wanted(latest, pairs), 240, "Redis to hold every latest row")
        wait_for(lambda: len(feature_rows(out, TRANSACTIONS)) >= len(expected.rows) - 1, 120, "the log")
        time.sleep(1)  # more checkpoints: anything repeated would be committed by now
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
        net.cut()
    assert_equals_reference_but_held(records, feature_rows(out, TRANSACTIONS), dead_letters(out), 5_000, "flush")


def served(store, pairs):
    got, ts = online(store, pairs)
    return {(g.entity, key): (ts[g.entity][i], [got[f.name][i] for f in g.features])
            for i, pair in enumerate(pairs) for g, key in zip(GROUPS, pair)}


def wanted(latest, pairs):
    return {(g.entity, key): (latest[g.entity][key]["event_time"], [latest[g.entity][key][f.name] for f in g.features])
            for pair in pairs for g, key in zip(GROUPS, pair)}
