"""The stream job while the services around it crash and come back: its Redis killed (SIGKILL) and
restarted, then its Kafka broker killed and restarted, both mid-stream, while the job keeps running.
In the end Redis serves, through Feast, each entity's latest reference row, and the feature log and
the dead letters are the reference evaluator's, each once: nothing lost, nothing counted twice.

Both servers are the test's own, so the session's stay up. The Redis keeps an append-only file
(fsync always), as a production one does: what it acknowledged survives its crash. A Redis that
restarts empty is a different failure (RUNBOOK.md: re-materialise)."""

from __future__ import annotations

import json
import time

import pytest

from feature_repo import store as fs
from stream_jobs.job import latest_checkpoint, run
from stream_jobs.outputs import dead_letters, feature_rows
from examples.transactions.features.generate import StreamSpec, generate
from tandem.reference import evaluate
from local_services.kafka_broker import KafkaBroker
from local_services.redis_server import RedisServer
from tests.factories import HOUR, T0, TEST_PROJECT, stream_spec, tx
from tests.test_online_sink import GROUPS, feast, latest_rows  # noqa: F401 (feast: a fixture)
from tests.test_stream_redis_outage import served, wanted
from tests.test_stream_sources import assert_equals_reference_but_held, new_topic, produce, wait_for
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

LATENESS_MS = 5_000


@pytest.fixture
def own_kafka():
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture
def own_redis():
    server = RedisServer(persistent=True).start()
    try:
        yield server
    finally:
        server.stop()


def phase(n: int, start_ms: int) -> list[dict]:
    """Half an hour of adversarial events (ties, disorder, duplicates, invalid records), then a marker an
    hour later that moves the watermark past all of them (its own row waits for the next phase). Its users
    are its own (a row lost in Redis stays lost), its merchants everyone's (a newer row replaces one)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ms / 1000))
    records = generate(StreamSpec(users=9, merchants=4, rate_per_s=0.1, duration="30m", start=start,
                                  out_of_order=0.2, duplicates=0.05, invalid=0.05, seed=70 + n))
    records = [{**r, "user_id": f"p{n}-{r['user_id']}"} if isinstance(r.get("user_id"), str) else r
               for r in records]
    return [*records, tx(f"marker{n}", user="u-marker", merchant="m-marker", t=start_ms + HOUR)]


def test_the_stream_rides_out_a_redis_crash_and_a_kafka_broker_crash(flink_table_env, feast, own_kafka,
                                                                    own_redis, tmp_path):
    topic, brokers = new_topic(own_kafka), own_kafka.bootstrap_servers
    address = f"{own_redis.host}:{own_redis.port}"
    out = tmp_path / "out"
    phases = [phase(n, T0 + n * 2 * HOUR) for n in range(3)]
    flush = tx("flush", user="u-flush", merchant="m-flush", t=T0 + 9 * HOUR)  # the last event: held
    sent: list[dict] = []

    def send(records):
        produce(brokers, topic, [json.dumps(r) for r in records])
        sent.extend(records)

    def rows_of_all_but_the_last_sent(what: str):
        want = len(evaluate(sent, TRANSACTIONS, allowed_lateness_ms=LATENESS_MS).rows) - 1
        wait_for(lambda: len(feature_rows(out, TRANSACTIONS)) >= want, 180, what)

    send(phases[0])
    result = run(flink_table_env, stream_spec(f"kafka:{brokers}/{topic}", out, LATENESS_MS, redis=address,
                                                kafka_group=f"g-{topic}", kafka_start="earliest",
                                                checkpoint_interval_ms=500, roll_interval_ms=500), wait=False)
    try:
        rows_of_all_but_the_last_sent("the first phase's rows")
        wait_for(lambda: latest_checkpoint(out / "_checkpoints"), 60, "a checkpoint")

        own_redis.kill()  # mid-stream: the next rows cannot be written until it is back
        send(phases[1])
        time.sleep(1)
        own_redis.start()  # same port and append-only file; the writer retries, then loads its script again
        rows_of_all_but_the_last_sent("the second phase's rows, written after Redis came back")

        own_kafka.kill()
        time.sleep(3)  # the source finds no broker for a while
        own_kafka.start()  # same port and log: the source reconnects at its offsets
        send([*phases[2], flush])
        rows_of_all_but_the_last_sent("every row but the flush's, read after the broker came back")

        expected = evaluate(sent, TRANSACTIONS, allowed_lateness_ms=LATENESS_MS)
        final = [r for r in expected.rows if r["transaction_id"] != "flush"]
        latest = {g.entity: latest_rows(final, g) for g in GROUPS}
        users, merchants = sorted(latest["user"]), sorted(latest["merchant"])
        pairs = [(users[i % len(users)], merchants[i % len(merchants)])
                 for i in range(max(len(users), len(merchants)))]  # every entity of both groups
        store = fs.open_store(TEST_PROJECT, feast["lake"], address)
        wait_for(lambda: served(store, pairs) == wanted(latest, pairs), 120, "Redis to serve every latest row")
        time.sleep(1.5)  # more checkpoints: anything replayed twice would be committed by now
        status = result.get_job_client().get_job_status().result().name
    finally:
        result.get_job_client().cancel().result()
    assert_equals_reference_but_held(sent, feature_rows(out, TRANSACTIONS), dead_letters(out), LATENESS_MS, "flush")
    assert status == "RUNNING", status  # it rode both out: never failed for good
    assert min(expected.counts[r] for r in ("invalid", "duplicate")) > 0  # the streams were adversarial
