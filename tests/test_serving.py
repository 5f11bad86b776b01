"""Training = serving through the real stack: Delta + Feast offline, Redis online (batch materialised,
then the Flink stream writing into the same Redis), checked against the reference evaluator.

The oracle is written here from docs/semantics.md's rule, not taken from ``tandem.serving``:
training at a moment after every event = the batch reference's row of the
entity's latest event; serving = the newer of that materialised row and the
stream reference's latest row (the stream's on a tie: it writes last).
"""

import pytest

from runtime.events_io import write_events
from examples.transactions.features.generate import StreamSpec, generate
from tandem.parity.compare import same
from tandem.parity.run import run_parity
from tandem.reference import LATE, evaluate
from tandem.serving import compare_training_serving
from tests.adversarial import adversarial_events
from transforms import Catalog
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS, USER_FEATURES
from tests.factories import TEST_PROJECT, online_writer

LATENESS_MS = 2_000


def latest(rows, key):
    out = {}
    for r in rows:
        if r[key] not in out or r["event_time"] >= out[r[key]]["event_time"]:
            out[r[key]] = r
    return out


@pytest.fixture(scope="module")
def served(spark, redis_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    records = generate(StreamSpec(users=12, merchants=4, rate_per_s=0.2, duration="1h", out_of_order=0.2,
                                  seed=3)) + adversarial_events()
    write_events(records, root / "events.jsonl", TRANSACTIONS)
    address = f"{redis_server.host}:{redis_server.port},db=9"
    result = run_parity(root / "events.jsonl", root / "out", LATENESS_MS, TRANSACTIONS, spark=spark,
                        serving_redis=address, serving_sample=1_000, serving_project=TEST_PROJECT)
    return result, records, address


def test_every_sampled_entity_is_checked_and_nothing_is_unexplained(served):
    result, records, _ = served
    s = result.serving
    batch = evaluate(records, TRANSACTIONS)
    for group in TRANSACTIONS.groups:
        assert s.entities[group.entity] == len({group.key_of(r) for r in batch.rows})  # all of them, here
    assert s.values == sum(s.entities[g.entity] * len(g.features) for g in TRANSACTIONS.groups)
    assert s.unexplained == 0, [d for d in s.differences if d.status == "unexplained"][:5]
    assert result.passed


def test_training_and_serving_values_are_the_oracles(served):
    result, records, _ = served
    batch, stream = evaluate(records, TRANSACTIONS), evaluate(records, TRANSACTIONS, allowed_lateness_ms=LATENESS_MS)
    late = {r.event_id for r in stream.rejected if r.reason == LATE}
    assert late, "the stream must hold late events for this test to mean anything"
    differing = {(d.entity, d.key, d.feature): d for d in result.serving.differences}
    expected_differences = 0
    for group in TRANSACTIONS.groups:
        (key_column,) = group.key  # the example catalog: one key per group
        trained, streamed = latest(batch.rows, key_column), latest(stream.rows, key_column)
        for key, t_row in trained.items():
            s_row = streamed.get(key)
            if s_row is None or s_row["event_time"] < t_row["event_time"]:
                s_row = t_row
            for f in group.features:
                d = differing.get((group.entity, key, f.name))
                if same(t_row[f.name], s_row[f.name]):
                    assert d is None
                else:
                    expected_differences += 1
                    assert d is not None and d.status == "explained", (key, f.name)
                    assert same(d.training, t_row[f.name]) and same(d.serving, s_row[f.name])
    assert expected_differences == result.serving.explained
    assert expected_differences > 0, "late events must change some served values for this test to bite"


def test_a_wrong_online_value_is_unexplained(served):
    result, records, address = served
    from feature_repo.store import open_store

    batch = evaluate(records, TRANSACTIONS)
    user, row = sorted(latest(batch.rows, "user_id").items())[0]
    tampered = {**row, "user_txn_count_24h": row["user_txn_count_24h"] + 1, "event_time": row["event_time"] + 1}
    users_only = Catalog(TRANSACTIONS.schema, TRANSACTIONS.row_functions, (USER_FEATURES,))
    with online_writer(address, catalog=users_only) as writer:  # the merchant's served row stays as it was
        writer.write([tampered])
    store = open_store(TEST_PROJECT, result.out_dir / "work" / "lake", address)
    stream = evaluate(records, TRANSACTIONS, allowed_lateness_ms=LATENESS_MS)
    again = compare_training_serving(store, TRANSACTIONS, batch, stream,
                                     {r.event_id for r in stream.rejected if r.reason == LATE}, sample=1_000)
    bad = [d for d in again.differences if d.status == "unexplained"]
    assert [(d.key, d.feature) for d in bad] == [(user, "user_txn_count_24h")]
    assert not again.passed
