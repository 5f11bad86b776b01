"""Hand-made adversarial events, shared by the engine tests (batch, stream, parity).

Each group targets one way an engine can be subtly wrong: window edges, peers,
catastrophic float sums, huge values, night-hour edges, retries with another
payload, unicode keys. Times are epoch ms around 2024-05-01/02 (UTC).
"""

from tests.factories import HOUR, MIN, T0, tx

DAY = 24 * HOUR


def adversarial_events() -> list[dict]:
    e = []
    # exact window edges: 10 min, 1 h, 24 h, 7 d after one another, and one more ms
    for i, gap in enumerate([10 * MIN, 10 * MIN + 1, HOUR, HOUR + 1, DAY, DAY + 1]):
        e += [tx(f"edge-{i}-a", user=f"edge{i}", t=T0 + 2 * HOUR), tx(f"edge-{i}-b", user=f"edge{i}", t=T0 + 2 * HOUR + gap)]
    # peers: five events of one user and merchant in the same millisecond
    e += [tx(f"peer-{i}", user="peers", merchant="m-peer", t=T0 + 3 * HOUR, amount=float(i)) for i in range(5)]
    # catastrophic cancellation for running double sums (Spark's order-dependent and Flink's retracting sums)
    e += [tx("big-1", user="sum", t=T0 + 5 * HOUR, amount=1e16), tx("big-2", user="sum", t=T0 + 5 * HOUR + 1),
          tx("big-3", user="sum", t=T0 + 5 * HOUR + 2),
          tx("big-4", user="sum", t=T0 + 6 * HOUR + 3, amount=0.1), tx("big-5", user="sum", t=T0 + 6 * HOUR + 4, amount=0.2)]
    # huge amounts: the 1 h sum overflows to inf, max stays finite
    e += [tx("huge-1", user="huge", t=T0 + 7 * HOUR, amount=1e308), tx("huge-2", user="huge", t=T0 + 7 * HOUR + 1, amount=1e308),
          tx("zero", user="huge", t=T0 + 7 * HOUR + 2, amount=0)]
    # night-hour edges (UTC), and an offset timestamp
    e += [tx("night-0", user="night", t=T0 + DAY - 1), tx("night-1", user="night", t=T0 + DAY),
          tx("night-2", user="night", t=T0 + DAY + 6 * HOUR - 1), tx("night-3", user="night", t=T0 + DAY + 6 * HOUR),
          tx("night-4", user="night", t="2024-05-02T07:30:00.000+02:00")]
    # a retry with another payload (the first wins), and a retry of an invalid record
    e += [tx("retry", user="retry", t=T0 + 8 * HOUR, amount=5.0), tx("retry", user="retry", t=T0 + 8 * HOUR, amount=500.0),
          tx("bad-then-good", user="retry", amount=-1.0, t=T0 + 9 * HOUR),
          tx("bad-then-good", user="retry", amount=2.0, t=T0 + 9 * HOUR)]
    # unicode keys and ids, including characters above the BMP
    e += [tx("ü-1", user="üser-☃", merchant="mérchant-𝄞", t=T0 + 10 * HOUR),
          tx("𝄞-2", user="üser-☃", merchant="mérchant-𝄞", t=T0 + 10 * HOUR),
          tx("ﬀ-3", user="üser-☃", merchant="m-ﬀ", t=T0 + 10 * HOUR)]
    # keys that collide when concatenated with something else
    e += [tx("c-1", user="1", merchant="23", t=T0 + 11 * HOUR), tx("c-2", user="12", merchant="3", t=T0 + 11 * HOUR)]
    # invalid records of every kind
    e += [tx("inv-amount", amount="12"), tx("inv-neg", amount=-0.5), tx("inv-cur", currency="usd"),
          tx("inv-time", t="2024-05-01T00:00:00"), {"transaction_id": "inv-missing"}, tx("inv-extra", extra=1)]
    return e


def quiet_key_events(start_ms: int) -> list[dict]:
    """Keys quiet for the widest window (7 d) and back exactly at its edge and 1 ms past it, while
    other keys' rows wait for the watermark (the stream drops a quiet key's window state), from
    ``start_ms`` on, in time order; each group starts after the last, so none is late."""
    e = []
    for i, gap in enumerate([7 * DAY, 7 * DAY + 1]):
        q = start_ms + i * 8 * DAY
        e += [tx(f"quiet-{i}-a", user=f"quiet{i}", merchant=f"m-quiet{i}", t=q),
              tx(f"quiet-{i}-b", user=f"quiet{i}", merchant=f"m-quiet{i}", t=q + gap)]
        e += [tx(f"quiet-{i}-busy-{j}", user=f"busy{j % 3}", merchant="m-busy", t=q + gap + 1 + 700 * j) for j in range(12)]
        e += [tx(f"quiet-{i}-c", user=f"quiet{i}", merchant=f"m-quiet{i}", t=q + gap + 9_000)]
    return e
