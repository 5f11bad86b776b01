"""A new user, through the CLI only, in a fresh folder: init, add a feature, backfill, Feast, stream, parity, serve.

Every step is the ``tandem`` command as a user types it, found from the
project folder (no ``--project``, no ``$TANDEM_PROJECT``); the only thing
the test knows beyond the commands is a real redis-server's address. The
added feature's served value is checked against the reference evaluator.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from runtime.events_io import read_events
from runtime.project import load_project
from tandem.reference import evaluate
from tests.shell import shell_env

TANDEM = str(Path(sys.executable).parent / "tandem")
NEW_FEATURE = 'Feature("user_amount_min_1h", Agg.MIN, "1h", of="amount"),'


def test_a_new_user_builds_and_serves_a_feature_of_their_own(tmp_path, redis_server):
    redis = f"{redis_server.host}:{redis_server.port},db=12"
    env = {k: v for k, v in shell_env(TANDEM_REDIS=redis).items() if k not in ("TANDEM_PROJECT", "TANDEM_LAKE")}

    def tandem(*args, cwd):
        done = subprocess.run([TANDEM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"tandem {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    tandem("init", "shop", cwd=tmp_path)
    shop = tmp_path / "shop"
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
    stream = tandem("stream", "--source", "file:data/events.jsonl", "--out", "out/stream", "--redis", redis, cwd=shop)
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
