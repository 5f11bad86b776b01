"""Hypothesis strategies for adversarial transaction streams, in arrival order (used by the parity tests).

A stream is several independent sub-streams, each with its own keys (prefixed
``s<i>·``) and its own stretch of time (``SPACING`` apart, longer than any
window), concatenated: many drawn cases share one (slow) engine run.

Every sub-stream is built to contain each hard case at least once, whatever
hypothesis draws: a tie (peer in the same millisecond), an event exactly one
window length after another (and one ms more), arrival out of order inside the
allowed lateness, an event exactly the allowed lateness behind (on time) and
one beyond it (late), a retry (duplicate, sometimes with another payload), an
invalid record, a hot key, and unicode keys and ids.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from tests.factories import T0
from examples.transactions.features.transactions import CATALOG as TRANSACTIONS

WINDOWS = sorted({f.window_ms for _, f in TRANSACTIONS.features})
DAY = 86_400_000
SPACING = 120 * DAY  # between sub-streams: more than a sub-stream's span plus the longest window

# Keys and ids: any Unicode but lone surrogates (not encodable as UTF-8), with a prefix keeping them non-empty.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=5)
AMOUNTS = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 1.0, 1e16, 1e308, 5e-324]),  # cancellation, overflow, subnormal
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
)
# How a record spells its event time: epoch ms, ISO UTC, or ISO with an offset.
OFFSETS = [None, timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]
CORRUPTIONS = {
    "negative_amount": lambda r: r.update(amount=-1.5),
    "lowercase_currency": lambda r: r.update(currency="usd"),
    "missing_user": lambda r: r.pop("user_id"),
    "amount_as_string": lambda r: r.update(amount=str(r["amount"])),
    "time_without_zone": lambda r: r.update(event_time="2024-05-01T12:00:00"),
    "extra_field": lambda r: r.update(channel="web"),
}


def spell_time(ms: int, offset: timedelta | None) -> int | str:
    if offset is None:
        return ms
    local = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms) + offset
    sign = "-" if offset < timedelta(0) else "+"
    hours, rest = divmod(abs(offset), timedelta(hours=1))
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}{sign}{hours:02d}:{rest // timedelta(minutes=1):02d}"


@st.composite
def substream(draw, index: int, lateness_ms: int) -> list[dict]:
    prefix = f"s{index}·"
    users = [prefix + u for u in draw(st.lists(TEXT, min_size=1, max_size=3, unique=True))]
    merchants = [prefix + m for m in draw(st.lists(TEXT, min_size=1, max_size=3, unique=True))]
    user = st.one_of(st.just(users[0]), st.sampled_from(users))  # users[0] is hot
    edge_gaps = [0, 1, *(w + d for w in WINDOWS for d in (-1, 0, 1))]
    gap = st.one_of(st.sampled_from(edge_gaps), st.integers(0, 120_000))
    delay = st.one_of(st.just(0), st.sampled_from(sorted({max(lateness_ms - 1, 0), lateness_ms, lateness_ms + 1})),
                      st.integers(0, 3 * lateness_ms + 10))
    seq = iter(range(10_000))

    def record(t: int, who: str | None = None) -> dict:
        return {"transaction_id": f"{prefix}{next(seq)}-{draw(TEXT)}", "user_id": who or draw(user),
                "merchant_id": draw(st.sampled_from(merchants)), "amount": draw(AMOUNTS),
                "currency": draw(st.sampled_from(["USD", "EUR", "JPY"])),
                "event_time": spell_time(t, draw(st.sampled_from(OFFSETS)))}

    t = T0 + index * SPACING
    arrivals: list[tuple[int, int, dict]] = []  # (delivery time, order, record)
    for _ in range(draw(st.integers(3, 10))):
        t += draw(gap)
        arrivals.append((t + draw(delay), len(arrivals), record(t)))
    times = [_ms(r["event_time"]) for _, _, r in arrivals]
    # forced cases, each against a drawn event
    pick = st.integers(0, len(arrivals) - 1)
    i = draw(pick)
    arrivals.append((arrivals[i][0], len(arrivals), record(times[i], arrivals[i][2]["user_id"])))  # a peer
    i = draw(pick)
    w = draw(st.sampled_from(WINDOWS))
    for extra in (0, 1):  # exactly W after, and 1 ms more
        arrivals.append((times[i] + w + extra, len(arrivals), record(times[i] + w + extra, arrivals[i][2]["user_id"])))
    last = max(d for d, _, _ in arrivals) + 1
    newest = max(times[i] + w + 1, *times)
    arrivals.append((last, len(arrivals), record(newest - lateness_ms)))  # exactly the allowed lateness behind
    arrivals.append((last, len(arrivals), record(newest - lateness_ms - 1 - draw(st.integers(0, 60_000)))))  # late
    original = draw(st.sampled_from(arrivals))[2]
    retry = dict(original, amount=draw(st.one_of(st.just(original["amount"]), AMOUNTS)))
    arrivals.append((last + draw(st.integers(0, 1)), len(arrivals), retry))  # a duplicate
    bad = record(draw(st.sampled_from(times)))
    CORRUPTIONS[draw(st.sampled_from(sorted(CORRUPTIONS)))](bad)
    arrivals.append((draw(st.sampled_from([d for d, _, _ in arrivals])), len(arrivals), bad))  # an invalid record
    arrivals.sort(key=lambda a: (a[0], a[1]))
    return [r for _, _, r in arrivals]


def streams(lateness_ms: int, max_substreams: int = 4) -> st.SearchStrategy[list[dict]]:
    """Several sub-streams, concatenated in arrival order."""
    return st.integers(1, max_substreams).flatmap(
        lambda n: st.tuples(*(substream(i, lateness_ms) for i in range(n)))).map(lambda parts: [r for p in parts for r in p])


def _ms(spelled: int | str) -> int:
    from transforms.schema import parse_iso_timestamp_ms

    return spelled if isinstance(spelled, int) else parse_iso_timestamp_ms(spelled)
