"""The numeric rules both engines must reproduce, in their pure-Python form.

docs/semantics.md: a float sum is the correctly rounded exact sum of the window's values
(what ``math.fsum`` returns), whatever the order; a mean is that sum divided by
the count. Native running double sums fail this (Spark's depends on row order;
Flink's bounded OVER SUM retracts and went negative on positive amounts), so engines
implement these rules with an exact accumulator of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction


def exact_sum(values: Iterable[float]) -> float:
    """Correctly rounded sum of ``values``; ``+-inf`` when the exact sum overflows a double."""
    values = list(values)
    try:
        return math.fsum(values)
    except OverflowError:
        # fsum gives up on intermediate overflow; the exact rational sum decides.
        total = sum((Fraction(v) for v in values), Fraction(0))
        try:
            return float(total)  # int / int: correctly rounded
        except OverflowError:
            return math.inf if total > 0 else -math.inf


def exact_mean(values: Iterable[float]) -> float:
    """``exact_sum(values) / count`` in float64, as docs/semantics.md defines a mean."""
    values = list(values)
    return exact_sum(values) / len(values)
