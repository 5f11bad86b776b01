"""Benchmark: transforms.portable (correctly rounded, the same bits on every CPU) vs numpy's ufuncs.

Run from the repository root (after ``./dev setup``)::

    .venv/bin/python benchmarks/portable_math.py                  # 100,000 values
    .venv/bin/python benchmarks/portable_math.py --values 20000   # quick run

The engines call a row function on whole columns (Arrow batches), so what
matters is the cost per value of ``amount_log1p``'s ``portable.log1p`` against
``np.log1p``, its CPU-dependent baseline, in the same run:

1. ``--values`` lognormal amounts, unrounded: every value distinct, nothing
   remembered (the worst case);
2. as many generated amounts (``StreamSpec``: rounded to cents, so they repeat),
   in batches of ``--batch`` rows (Spark's Arrow default, 10,000) as the pandas
   UDFs see them, starting with nothing remembered (a job's first column);
3. the same again, remembering what case 2 computed (a long-running stream);

then the other functions on distinct values, nothing remembered. Each figure
is the median of ``--rounds`` runs. It prints µs per value and the ratio to
numpy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from examples.transactions.features.generate import StreamSpec, generate
from transforms import portable


def timed(fn, x: np.ndarray, rounds: int, batch: int | None = None, cold: bool = True) -> float:
    """Median seconds of ``fn`` over ``x`` (in slices of ``batch`` rows when given), from an empty cache if ``cold``."""
    parts = [x] if batch is None else [x[i:i + batch] for i in range(0, len(x), batch)]
    runs = []
    for _ in range(rounds):
        if cold:
            portable._caches.clear()  # what transforms.portable remembers of earlier calls
        start = time.perf_counter()
        for part in parts:
            fn(part)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def generated_amounts(n: int) -> np.ndarray:
    spec = StreamSpec(rate_per_s=100.0, duration=f"{n // 95}s", invalid=0.0, duplicates=0.0)
    return np.array([r["amount"] for r in generate(spec)][:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per batch in case 3 (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    lognormal = rng.lognormal(3.0, 1.2, args.values)
    cents = generated_amounts(args.values)
    print(f"{args.values:,} values; {len(np.unique(cents)):,} distinct generated amounts; "
          f"median of {args.rounds} rounds\n")
    print(f"| {'case':<44} | {'np.log1p µs/value':>17} | {'portable µs/value':>17} | {'ratio':>6} |")
    print(f"|{'-' * 46}|{'-' * 18}:|{'-' * 18}:|{'-' * 7}:|")
    cases = [("lognormal amounts, all distinct", lognormal, None, True),
             (f"generated amounts, batches of {args.batch:,}", cents, args.batch, True),
             ("the same, remembering earlier batches", cents, args.batch, False)]
    for label, x, batch, cold in cases:
        base, port = (timed(f, x, args.rounds, batch, cold) / len(x) * 1e6 for f in (np.log1p, portable.log1p))
        print(f"| {label:<44} | {base:>17.3f} | {port:>17.2f} | {port / base:>6.0f} |")

    print(f"\nOther functions, {args.values // 5:,} distinct values each:\n")
    print(f"| {'function':<8} | {'numpy µs/value':>14} | {'portable µs/value':>17} | {'ratio':>6} |")
    print(f"|{'-' * 10}|{'-' * 15}:|{'-' * 18}:|{'-' * 7}:|")
    x = lognormal[: args.values // 5] / 10
    others = [("exp", np.exp), ("expm1", np.expm1), ("log", np.log), ("log2", np.log2), ("log10", np.log10),
              ("sin", np.sin), ("cos", np.cos), ("tan", np.tan), ("arctan", np.arctan), ("tanh", np.tanh)]
    for name, ufunc in others:
        base, port = (timed(f, x, args.rounds) / len(x) * 1e6 for f in (ufunc, getattr(portable, name)))
        print(f"| {name:<8} | {base:>14.3f} | {port:>17.2f} | {port / base:>6.0f} |")
    base, port = (timed(lambda v: f(v, 1.5), x, args.rounds) / len(x) * 1e6 for f in (np.power, portable.power))
    print(f"| {'power':<8} | {base:>14.3f} | {port:>17.2f} | {port / base:>6.0f} |")


if __name__ == "__main__":
    main()
