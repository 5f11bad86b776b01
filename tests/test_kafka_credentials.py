"""A Kafka that needs credentials: ``kafka_properties`` in a user's tandem.yaml (SASL, with the password from
the environment) reach every Kafka client of ``tandem stream`` -- the topic check before Flink starts, the
source, the dead-letter sink and the dead-letter count -- and the password appears in no output, file or
run log row, nor in Flink's own log of each run (where the Kafka clients print their configuration). A wrong password is one line naming the failure, not the password.

The broker is the test's own: a real KRaft broker with a SASL_PLAINTEXT (PLAIN) listener beside its plain
one, which the test uses to create topics and produce. The catalog is the user's rides (tests/catalogs)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import pytest

from local_services.kafka_broker import KafkaBroker
from runtime.events_io import write_events
from runtime.project import load_project
from runtime.run_log import RunLog
from stream_jobs.outputs import feature_rows
from tandem.parity.compare import same
from tandem.reference import evaluate
from tests.catalogs.rides import rides
from tests.factories import T0
from tests.shell import assert_no_secret, flink_logs_since, shell_env
from tests.test_cli import TANDEM
from tests.test_orchestrate import make_project
from tests.test_stream_sources import new_topic, produce

PASSWORD = "kafka-Secret-4711"
WRONG = "not-the-Secret-0815"
JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="rider" password="${RIDES_KAFKA_PASSWORD}";'


@pytest.fixture(scope="module")
def sasl_kafka():
    with KafkaBroker(sasl_users={"rider": PASSWORD}) as broker:
        yield broker


def test_stream_reads_and_writes_a_sasl_kafka_with_the_projects_credentials_and_never_shows_them(
        sasl_kafka, tmp_path, monkeypatch):
    began = time.time()
    monkeypatch.setenv("RIDES_KAFKA_PASSWORD", PASSWORD)  # this process reads the project too
    config = make_project(tmp_path / "project", None, "sasl", ["features.rides"])
    doc = json.loads(config.read_text())
    doc["kafka_properties"] = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                               "sasl.jaas.config": JAAS}
    config.write_text(json.dumps(doc))
    catalog = load_project(config).catalog("rides")

    source, dead = new_topic(sasl_kafka), new_topic(sasl_kafka)  # over the plain listener
    records = rides(150, seed=47, start_ms=T0)
    events = tmp_path / "events.jsonl"
    write_events(records, events, catalog)
    produce(sasl_kafka.bootstrap_servers, source, events.read_text().splitlines())
    sasl = sasl_kafka.sasl_bootstrap_servers
    outputs: list[str] = []

    def stream(password: str, out: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [TANDEM, "stream", "--project", str(config.parent), "--source", f"kafka:{sasl}/{source}", "--kafka-start", "earliest", "--until-latest",
             "--kafka-group", f"g-{out}", "--dead-letters", f"kafka:{sasl}/{dead}", "--out", out],
            cwd=config.parent, env=shell_env(RIDES_KAFKA_PASSWORD=password), capture_output=True, text=True,
            timeout=300)
        outputs.extend((done.stdout, done.stderr))
        logs = flink_logs_since(began)  # the Kafka clients print their configuration there
        assert any("sasl.jaas.config = [hidden]" in text for text in logs)
        outputs.extend(logs)
        return done

    done = stream(PASSWORD, "out")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    expected = evaluate(records, catalog, allowed_lateness_ms=5_000)
    rows = {r["ride_id"]: r for r in feature_rows(config.parent / "out", catalog)}
    want = {r["ride_id"]: r for r in expected.rows}
    assert sorted(rows) == sorted(want)
    bad = [(i, c) for i in want for c, _ in catalog.feature_row_columns() if not same(rows[i][c], want[i][c])]
    assert not bad, bad[:5]
    counts = Counter(r.reason for r in expected.rejected)
    assert min(counts[r] for r in ("invalid", "duplicate")) > 0
    summary = ", ".join(f"{reason} {counts[reason]:,}" for reason in sorted(counts))
    assert f"{len(expected.rows):,} feature rows, dead letters: {summary}" in done.stdout, done.stdout  # read back

    failed = stream(WRONG, "out-wrong")
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-3000:]
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert lines[0] == (f"error: --dead-letters: Kafka at {sasl} would not list its topics: "  # checked first
                        "SaslAuthenticationException: Authentication failed: Invalid username or password"), lines[0]

    run_log = [repr(r) for r in RunLog(config.parent / "lake").read()]
    assert run_log  # the good run's checkpoints
    assert_no_secret((PASSWORD, WRONG), outputs + run_log, tmp_path)
