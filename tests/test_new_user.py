"""A new user, through the CLI only, in a fresh folder: init, add a feature, backfill, Feast, stream, parity, serve.

Every step is the ``tandem`` command as a user types it, found from the
project folder (no ``--project``, no ``$TANDEM_PROJECT``); the only thing
the test knows beyond the commands is a real redis-server's address. The
added feature's served value is checked against the reference evaluator.

The Redis needs a password, which ``tandem.yaml`` reads from the
environment (``${SHOP_REDIS_PASSWORD}``); a run with a wrong one fails. Neither
password may appear in any output: every command's stdout and stderr, every
file under the test's folder (the lake, the logs, the reports, the alerts),
the run log's rows and the serving endpoint's answers.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from local_services import free_port
from local_services.redis_server import RedisServer
from runtime.events_io import read_events
from runtime.project import load_project
from runtime.run_log import RunLog
from tandem.reference import evaluate
from tests.shell import assert_no_secret, flink_logs_since, shell_env

TANDEM = str(Path(sys.executable).parent / "tandem")
NEW_FEATURE = 'Feature("user_amount_min_1h", Agg.MIN, "1h", of="amount"),'
PASSWORD = "pw-Zq8#shop-7d1e"  # distinctive: found nowhere unless leaked
WRONG = "pw-wrong-k3v9x"


def get(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_a_new_user_builds_and_serves_a_feature_of_their_own_and_no_password_leaks(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_REDIS_PASSWORD", PASSWORD)  # this process reads the project too
    server = RedisServer(password=PASSWORD).start()
    env = {k: v for k, v in shell_env(SHOP_REDIS_PASSWORD=PASSWORD).items()
           if k not in ("TANDEM_PROJECT", "TANDEM_LAKE", "TANDEM_REDIS")}
    outputs: list[str] = []

    def tandem(*args, cwd, code=0, **extra):
        began, wall = time.monotonic(), time.time()
        done = subprocess.run([TANDEM, *args], cwd=cwd, env={**env, **extra}, capture_output=True, text=True,
                              timeout=600)
        print(f"tandem {' '.join(args[:2])}: {time.monotonic() - began:.1f} s")  # where the test's time goes
        outputs.extend((done.stdout, done.stderr, *flink_logs_since(wall)))  # Flink's log: the env is logged
        assert done.returncode == code, f"tandem {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    try:
        _journey(tandem, tmp_path, server, env, outputs)
    finally:
        server.stop()
    run_log = [repr(r) for r in RunLog(tmp_path / "shop" / "lake").read()]
    assert len(run_log) >= 4  # ingest, backfill, materialize, the stream's checkpoints, the failed one
    assert_no_secret((PASSWORD, WRONG), outputs + run_log, tmp_path)


def _journey(tandem, tmp_path, server, env, outputs):
    tandem("init", "shop", cwd=tmp_path)
    shop = tmp_path / "shop"
    config = shop / "tandem.yaml"
    config.write_text(config.read_text().replace(
        "online_store: localhost:6379", f'online_store: "127.0.0.1:{server.port},password=${{SHOP_REDIS_PASSWORD}}"'))
    catalog_file = shop / "features" / "transactions.py"
    text = catalog_file.read_text()
    anchor = 'Feature("user_amount_max_24h", Agg.MAX, "24h", of="amount"),'
    catalog_file.write_text(text.replace(anchor, anchor + "\n        " + NEW_FEATURE))

    tandem("generate", "--out", "data/events.jsonl", "--duration", "20m", "--users", "30", "--merchants", "8",
           "--seed", "3", cwd=shop)
    tandem("ingest", "--events", "data/events.jsonl", cwd=shop)
    backfill = tandem("backfill", "--start", "2024-05-01", "--end", "2024-05-01", cwd=shop / "features")  # below it
    assert str(shop / "lake" / "transactions" / "features" / "user") in " ".join(backfill.stdout.split())
    tandem("feast", "apply", cwd=shop)
    tandem("materialize", cwd=shop)
    stream = tandem("stream", "--source", "file:data/events.jsonl", "--out", "out/stream", "--online", cwd=shop)
    assert "feature rows" in stream.stdout
    tandem("parity", "--events", "data/events.jsonl", "--out", "out/parity", cwd=shop)
    report = json.loads((shop / "out" / "parity" / "report.json").read_text())
    assert report["verdict"] == "pass"
    assert "user_amount_min_1h" in pq.read_table(shop / "out" / "parity" / "batch.parquet").column_names

    # Redis keeps the newer of the materialised batch row and the stream's row (the stream's on a tie).
    project = load_project(shop / "tandem.yaml")
    catalog = project.catalog()
    records = list(read_events(shop / "data" / "events.jsonl"))
    batch_rows = evaluate(records, catalog).rows
    stream_rows = evaluate(records, catalog, allowed_lateness_ms=project.allowed_lateness_ms).rows
    users = [r["user_id"] for r in stream_rows]
    user = max(set(users), key=users.count)

    def newest(rows):
        return max((r for r in rows if r["user_id"] == user), key=lambda r: r["event_time"])

    latest = newest(stream_rows)
    if newest(batch_rows)["event_time"] > latest["event_time"]:
        latest = newest(batch_rows)
    served = tandem("feast", "get-online-features", "-f", "user:user_amount_min_1h", "-e", f"user_id={user}", cwd=shop)
    values = json.loads(re.search(r"\{.*\}", served.stdout, re.S).group(0))
    assert values["user_amount_min_1h"] == [latest["user_amount_min_1h"]]

    # tandem serve reads the same value, fresh by the wall clock or not: the catalog declares no budget
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as sink:
        serve = subprocess.Popen([TANDEM, "serve", "--port", str(port)], cwd=shop, env=env, stdout=sink,
                                 stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240  # it imports Feast and FastAPI: slow on a loaded machine
        while True:
            try:
                code, _ = get(port, "GET", "/health")
                break
            except OSError:
                assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert code == 200
        code, body = get(port, "POST", "/features", {"features": ["user:user_amount_min_1h"],
                                                      "entities": {"user_id": [user]}})
        outputs.append(body)
        assert code == 200, body
        answer = dict(zip(json.loads(body)["metadata"]["feature_names"], json.loads(body)["results"]))
        assert answer["user_amount_min_1h"]["values"] == [latest["user_amount_min_1h"]]
        assert answer["user_amount_min_1h"]["statuses"] == ["fresh"]
        outputs.append(get(port, "GET", "/metrics")[1])
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(30)
    outputs.append(log.read_text())
    tandem("status", cwd=shop)

    # a wrong password: one line, naming neither password, before Spark starts
    failed = tandem("materialize", cwd=shop, code=1, SHOP_REDIS_PASSWORD=WRONG)
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "refused the credentials in its address" in failed.stderr and "Spark" not in failed.stderr
