"""The shared stream generator: deterministic, realistic, and adversarial where asked."""

from collections import Counter

import pytest

from examples.transactions.features.generate import INVALID_KINDS, StreamSpec, generate
from tandem.reference import evaluate
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS, TRANSACTIONS_V1
from transforms.schema import Invalid, parse_iso_timestamp_ms


def _time(rec):
    t = rec["event_time"]
    return parse_iso_timestamp_ms(t) if isinstance(t, str) else t


def test_same_seed_same_stream_other_seed_other_stream():
    spec = StreamSpec(users=50, merchants=10, rate_per_s=5, duration="10m", seed=3)
    assert generate(spec) == generate(spec)
    assert generate(spec) != generate(StreamSpec(users=50, merchants=10, rate_per_s=5, duration="10m", seed=4))


def test_rate_and_duration_set_the_volume():
    records = generate(StreamSpec(rate_per_s=20, duration="10m", duplicates=0, invalid=0))
    assert 11_000 < len(records) < 13_000  # Poisson around 12,000


def test_default_stream_has_disorder_ties_duplicates_and_invalid_records():
    records = generate(StreamSpec(rate_per_s=20, duration="30m", seed=1))
    times = [_time(r) for r in records if isinstance(TRANSACTIONS_V1.validate(r), dict)]
    assert sum(b < a for a, b in zip(times, times[1:])) > 100  # out of order
    assert sum(b == a for a, b in zip(times, times[1:])) > 100  # same-millisecond ties
    ids = Counter(r["transaction_id"] for r in records)
    assert sum(n > 1 for n in ids.values()) > 100  # retries
    result = evaluate(records, TRANSACTIONS)
    n = len(records)
    assert 0.005 * n < result.counts["invalid"] < 0.02 * n
    assert 0.005 * n < result.counts["duplicate"] < 0.02 * n


def test_every_invalid_kind_is_rejected_as_that_kind():
    spec = StreamSpec(rate_per_s=20, duration="10m", invalid=0.2, duplicates=0, seed=2)
    seen = Counter()
    for rec in generate(spec):
        result = TRANSACTIONS_V1.validate(rec)
        if isinstance(result, Invalid):
            seen[result.kind.value] += 1
    assert set(seen) == set(INVALID_KINDS.values())


def test_skew_makes_hot_keys():
    flat = Counter(r["user_id"] for r in generate(StreamSpec(users=100, skew=0.0, duration="30m", seed=5)))
    hot = Counter(r["user_id"] for r in generate(StreamSpec(users=100, skew=1.5, duration="30m", seed=5)))
    total = sum(hot.values())
    assert hot.most_common(1)[0][1] > 0.25 * total
    assert flat.most_common(1)[0][1] < 0.05 * sum(flat.values())


def test_out_of_order_stays_within_max_delay():
    records = generate(StreamSpec(duration="30m", out_of_order=0.5, max_delay="10s", invalid=0, duplicates=0))
    times = [_time(r) for r in records]
    running_max = 0
    for t in times:
        running_max = max(running_max, t)
        assert running_max - t <= 10_000


def test_epoch_ms_time_format():
    records = generate(StreamSpec(duration="1m", time_format="epoch_ms", invalid=0))
    assert all(isinstance(r["event_time"], int) for r in records)


@pytest.mark.parametrize("kwargs, message", [({"users": 0}, "users"), ({"invalid": 1.5}, "invalid"),
                                             ({"duration": "1 hour"}, "invalid duration"),
                                             ({"invalid_kinds": ("typo",)}, "unknown invalid kinds")])
def test_bad_spec_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamSpec(**kwargs)
