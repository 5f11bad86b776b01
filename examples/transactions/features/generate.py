"""Realistic card-transaction streams for the demo, the tests and the benchmarks.

Deterministic for a seed: the same :class:`StreamSpec` always yields the same
records in the same arrival order. Arrival order is what a source would see:
events arrive in event-time order except the ``out_of_order`` share, which is
delivered up to ``max_delay`` later; duplicates are exact retries delivered a
little after the original; invalid records are real events corrupted in one of
the ways a producer gets things wrong (one per :data:`INVALID_KINDS` entry).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from transforms.durations import parse_duration
from transforms.schema import format_timestamp_ms, parse_iso_timestamp_ms

#: How a record gets corrupted -> the InvalidKind the schema must report.
INVALID_KINDS: dict[str, str] = {
    "missing_amount": "missing_field",
    "null_user": "missing_field",
    "amount_as_string": "wrong_type",
    "negative_amount": "out_of_domain",
    "lowercase_currency": "out_of_domain",
    "empty_merchant": "out_of_domain",
    "bad_timestamp": "unparseable",
    "extra_field": "unknown_field",
}
#: The corruptions a typed Parquet file can carry (no wrong types, no extra columns).
PARQUET_INVALID_KINDS = ("missing_amount", "null_user", "negative_amount", "lowercase_currency", "empty_merchant")

CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "JPY", "CAD")


@dataclass(frozen=True)
class StreamSpec:
    users: int = 1_000
    merchants: int = 200
    rate_per_s: float = 10.0  # mean events per second of event time
    duration: str = "1h"
    start: str = "2024-05-01T00:00:00Z"
    skew: float = 1.0  # Zipf exponent of key popularity; 0 = uniform, higher = hotter keys
    ties: float = 0.02  # share of events in the same millisecond as the previous one
    out_of_order: float = 0.05
    max_delay: str = "30s"
    duplicates: float = 0.01
    invalid: float = 0.01
    invalid_kinds: tuple[str, ...] = tuple(INVALID_KINDS)
    time_format: str = "iso"  # "iso" strings or "epoch_ms" integers
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("users", "merchants"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.rate_per_s <= 0:
            raise ValueError("rate must be positive")
        for name in ("ties", "out_of_order", "duplicates", "invalid"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name.replace('_', '-')} must be a fraction between 0 and 1")
        if self.skew < 0:
            raise ValueError("skew must be >= 0")
        unknown = set(self.invalid_kinds) - set(INVALID_KINDS)
        if unknown:
            raise ValueError(f"unknown invalid kinds {sorted(unknown)}; choose from {sorted(INVALID_KINDS)}")
        if self.time_format not in ("iso", "epoch_ms"):
            raise ValueError("time format must be iso or epoch_ms")
        if isinstance(parse_iso_timestamp_ms(self.start), str):
            raise ValueError(f"start {self.start!r} is not an ISO-8601 UTC timestamp")
        parse_duration(self.duration), parse_duration(self.max_delay)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _zipf_weights(n: int, skew: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** skew
    return w / w.sum()


def generate(spec: StreamSpec) -> list[dict[str, Any]]:
    """Records in arrival order, as a JSON source would carry them."""
    rng = np.random.default_rng(spec.seed)
    start_ms = parse_iso_timestamp_ms(spec.start)
    duration_ms = parse_duration(spec.duration)
    n = int(rng.poisson(spec.rate_per_s * duration_ms / 1000))

    # Event times: a Poisson process in integer milliseconds, with some exact ties.
    gaps = rng.exponential(1000.0 / spec.rate_per_s, size=n).round().astype(np.int64)
    gaps[rng.random(n) < spec.ties] = 0
    times = start_ms + np.cumsum(gaps)
    users = rng.choice(spec.users, size=n, p=_zipf_weights(spec.users, spec.skew))
    merchants = rng.choice(spec.merchants, size=n, p=_zipf_weights(spec.merchants, spec.skew))
    amounts = np.round(rng.lognormal(mean=3.0, sigma=1.2, size=n), 2)
    amounts[rng.random(n) < 0.01] = 0.0
    currencies = rng.choice(len(CURRENCIES), size=n)

    # Delivery order: on time, or delayed by up to max_delay.
    delays = np.where(rng.random(n) < spec.out_of_order, rng.integers(1, parse_duration(spec.max_delay) + 1, size=n), 0)
    deliver = times + delays
    corrupt = rng.random(n) < spec.invalid
    kinds = rng.choice(len(spec.invalid_kinds), size=n) if spec.invalid_kinds else np.zeros(n, dtype=int)

    out: list[tuple[int, int, dict[str, Any]]] = []
    for i in range(n):
        rec = {
            "transaction_id": f"tx-{spec.seed}-{i:09d}",
            "user_id": f"u{users[i]:06d}",
            "merchant_id": f"m{merchants[i]:05d}",
            "amount": float(amounts[i]),
            "currency": CURRENCIES[currencies[i]],
            "event_time": format_timestamp_ms(int(times[i])) if spec.time_format == "iso" else int(times[i]),
        }
        if corrupt[i] and spec.invalid_kinds:
            _corrupt(rec, spec.invalid_kinds[kinds[i]])
        out.append((int(deliver[i]), i, rec))

    dup_idx = np.flatnonzero(rng.random(n) < spec.duplicates)
    for j, i in enumerate(dup_idx):
        retry_after = int(rng.integers(0, 60_000))
        out.append((out[i][0] + retry_after, n + j, dict(out[i][2])))
    out.sort(key=lambda x: (x[0], x[1]))
    return [rec for _, _, rec in out]


def _corrupt(rec: dict[str, Any], kind: str) -> None:
    if kind == "missing_amount":
        del rec["amount"]
    elif kind == "null_user":
        rec["user_id"] = None
    elif kind == "amount_as_string":
        rec["amount"] = str(rec["amount"])
    elif kind == "negative_amount":
        rec["amount"] = -abs(rec["amount"]) - 0.01
    elif kind == "lowercase_currency":
        rec["currency"] = rec["currency"].lower()
    elif kind == "empty_merchant":
        rec["merchant_id"] = ""
    elif kind == "bad_timestamp":
        rec["event_time"] = "yesterday at noon"
    elif kind == "extra_field":
        rec["card_number"] = "4111111111111111"
    else:
        raise AssertionError(kind)
