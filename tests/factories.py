"""Small builders for hand-written test events (no logic under test lives here)."""

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a midnight: hour 0 (night)
NOON = T0 + 12 * 3_600_000
MIN = 60_000
HOUR = 3_600_000


def tx(tid, user="u1", t=NOON, amount=1.0, merchant="m1", currency="USD", **extra):
    rec = {"transaction_id": tid, "user_id": user, "merchant_id": merchant, "amount": amount,
           "currency": currency, "event_time": t}
    rec.update(extra)
    return rec


def by_id(rows):
    return {r["transaction_id"]: r for r in rows}
