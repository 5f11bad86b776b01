"""Correctly rounded math for row functions: the same bits on every machine.

numpy runs transcendental ufuncs in CPU-specific SIMD code (np.tanh on AVX2,
np.log1p and np.exp on AVX-512), and glibc picks FMA variants of exp, log,
sin... when it loads, so ``np.log1p`` or ``math.log1p`` can differ in the last
bit from one machine to the next. A correctly rounded result, the exact value
rounded to the nearest double (ties to even), has one right answer, so every
machine gives the same bits.

Each function here computes that answer with mpmath (pure Python integer
arithmetic) by Ziv's strategy: evaluate with ``p`` bits, keep the double the
value rounds to only if every number within the value's error bound rounds to
it too, else double ``p``. mpmath works with 10 to 30 guard bits plus the bits
a cancellation costs, so its ``p``-bit result is within about one unit in the
``p``-th bit; the bound assumed here is ``2**_MARGIN`` units, a wide margin
that costs nothing (tests/test_portable_math.py checks the results against an
independent oracle).

The functions are numpy-like: scalars or arrays in (converted to float64 as
numpy converts them), float64 out, elementwise, broadcasting. nan, ±inf, ±0
and domain edges give what C99 Annex F specifies. Python is slow: a value
costs about 10 microseconds (BENCHMARKS.md), so each function remembers the
results of up to 65,536 distinct arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
from mpmath.libmp import (fone, from_float, mpf_add, mpf_atan, mpf_cos, mpf_div, mpf_exp, mpf_ln2, mpf_ln10, mpf_log,
                          mpf_mul, mpf_sin, mpf_sub, mpf_tan, mpf_tanh, round_nearest)

__all__ = ["arctan", "cos", "exp", "expm1", "log", "log1p", "log2", "log10", "power", "sin", "sqrt", "tan", "tanh"]

_MARGIN = 8  # assumed error of an mpmath result at p bits: 2**_MARGIN units in its p-th bit
_START_PREC = 80  # so about one value in 2**18 needs a second pass
_MAX_PREC = 1 << 14  # the hardest known cases (pow's) need about 53 + 160 bits: more means a bug, not a hard case

Mpf = tuple  # mpmath's raw float: (sign, mantissa, exponent, bit count)


def _rounded(n: int, k: int) -> float:
    """``n * 2**k`` rounded to the nearest double, ties to even (Python's int division rounds so, subnormals too)."""
    size = n.bit_length() + k  # 2**(size-1) <= |n * 2**k| < 2**size
    if size > 1024:
        return math.copysign(math.inf, n)
    if size < -1074:  # below 2**-1075, half the least subnormal
        return math.copysign(0.0, n)
    try:
        return float(n << k) if k >= 0 else n / (1 << -k)
    except OverflowError:  # rounds up to 2**1024
        return math.copysign(math.inf, n)


def _nearest(f: Callable[[int], Mpf]) -> float:
    """The double nearest ``f``'s exact value, where ``f(p)`` is that value to ``p`` bits (Ziv's loop)."""
    prec = _START_PREC
    while prec <= _MAX_PREC:
        sign, man, exp, bc = f(prec)
        if not man:  # mpmath's zeros are exact: log(1), log2(1)...
            return 0.0
        err = exp + bc - prec + _MARGIN  # |error| <= 2**err
        k = min(exp, err)
        mid, half_width = man << (exp - k), 1 << (err - k)
        lo, hi = _rounded(mid - half_width, k), _rounded(mid + half_width, k)
        if lo == hi:
            return -lo if sign else lo
        prec *= 2
    raise ArithmeticError(f"no correctly rounded result within {_MAX_PREC} bits")


_CACHE_SIZE = 1 << 16  # results remembered per function, keyed by bit patterns (-0.0 is not 0.0)
_caches: dict[Callable[..., float], dict[tuple[int, ...], float]] = {}


def _elementwise(one: Callable[..., float], *args) -> np.ndarray | np.float64:
    """Apply ``one`` (floats -> float, defined once: it keys a cache) to broadcast float64 arrays, elementwise.

    Columns repeat values (amounts in cents), and a value costs microseconds, so
    results are remembered across calls; the cache starts afresh when full.
    """
    broadcast = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in args))
    arrays = [a.ravel() for a in broadcast]
    keys = zip(*(a.view(np.int64).tolist() for a in arrays))  # bit patterns: -0.0 is not 0.0
    cache = _caches.setdefault(one, {})
    values = []
    for key, xs in zip(keys, zip(*(a.tolist() for a in arrays))):
        value = cache.get(key)
        if value is None:
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            value = cache[key] = one(*xs)
        values.append(value)
    out = np.array(values, dtype=np.float64).reshape(broadcast[0].shape)
    return out if out.ndim else out[()]


def _finite_nonzero(x: float) -> bool:
    return x != 0 and math.isfinite(x)


# One-argument functions: the C99 edge cases, then Ziv's loop on mpmath. ------


def _log_of(scale: Callable[[int], Mpf] | None, x: float) -> float:
    """log(x), or log(x) / scale(p) for log2 and log10."""
    if x < 0 or math.isnan(x):
        return math.nan
    if x == 0:
        return -math.inf
    if x == math.inf:
        return x
    t = from_float(x)
    if scale is None:
        return _nearest(lambda p: mpf_log(t, p, round_nearest))
    return _nearest(lambda p: mpf_div(mpf_log(t, p + 10), scale(p + 10), p, round_nearest))


_log, _log2, _log10 = partial(_log_of, None), partial(_log_of, mpf_ln2), partial(_log_of, mpf_ln10)


def log(x):
    """Natural logarithm, correctly rounded: -inf at ±0, nan below."""
    return _elementwise(_log, x)


def log2(x):
    """Base-2 logarithm, correctly rounded (exact at powers of two): -inf at ±0, nan below."""
    return _elementwise(_log2, x)


def log10(x):
    """Base-10 logarithm, correctly rounded (exact at powers of ten): -inf at ±0, nan below."""
    return _elementwise(_log10, x)


def _log1p(x: float) -> float:
    if x < -1:
        return math.nan
    if x == -1:
        return -math.inf
    if not _finite_nonzero(x):  # ±0, inf, nan
        return x
    one_plus_x = mpf_add(fone, from_float(x), 0)  # exact
    return _nearest(lambda p: mpf_log(one_plus_x, p, round_nearest))


def log1p(x):
    """ln(1 + x) without rounding 1 + x first, correctly rounded: ±0 at ±0, -inf at -1, nan below."""
    return _elementwise(_log1p, x)


def _exp(x: float) -> float:
    if x == -math.inf:
        return 0.0
    if not _finite_nonzero(x):  # inf, nan; exp(±0) = 1
        return x if x != 0 else 1.0
    t = from_float(x)
    return _nearest(lambda p: mpf_exp(t, p, round_nearest))


def exp(x):
    """e**x, correctly rounded: inf above about 709.78, 0 below about -745.13."""
    return _elementwise(_exp, x)


def _expm1(x: float) -> float:
    if x == -math.inf:
        return -1.0
    if not _finite_nonzero(x):  # ±0, inf, nan
        return x
    t = from_float(x)
    lost = max(0, -(t[2] + t[3]))  # exp(x) - 1 ~ x cancels the bits by which |x| < 1
    return _nearest(lambda p: mpf_sub(mpf_exp(t, p + lost + 10), fone, p, round_nearest))


def expm1(x):
    """e**x - 1 without rounding e**x first, correctly rounded: ±0 at ±0, -1 at -inf."""
    return _elementwise(_expm1, x)


def _odd(f: Callable[..., Mpf], at_inf: float) -> Callable[[float], float]:
    """A one-argument function with f(±0) = ±0 and f(±inf) = ±at_inf."""

    def one(x: float) -> float:
        if x == 0 or math.isnan(x):
            return x
        if math.isinf(x):
            return math.copysign(at_inf, x)
        t = from_float(x)
        return _nearest(lambda p: f(t, p, round_nearest))

    return one


_sin, _tan = _odd(mpf_sin, math.nan), _odd(mpf_tan, math.nan)
_arctan = _odd(mpf_atan, math.pi / 2)  # math.pi is pi correctly rounded, and halving is exact
_tanh = _odd(mpf_tanh, 1.0)


def _cos(x: float) -> float:
    if x == 0:
        return 1.0
    if not math.isfinite(x):
        return math.nan
    t = from_float(x)
    return _nearest(lambda p: mpf_cos(t, p, round_nearest))


def sin(x):
    """Sine (radians), correctly rounded, whatever the argument's size: nan at ±inf."""
    return _elementwise(_sin, x)


def cos(x):
    """Cosine (radians), correctly rounded, whatever the argument's size: nan at ±inf."""
    return _elementwise(_cos, x)


def tan(x):
    """Tangent (radians), correctly rounded, whatever the argument's size: nan at ±inf."""
    return _elementwise(_tan, x)


def arctan(x):
    """Arc tangent in (-pi/2, pi/2), correctly rounded: ±pi/2 (rounded) at ±inf."""
    return _elementwise(_arctan, x)


def tanh(x):
    """Hyperbolic tangent, correctly rounded: ±1 at ±inf."""
    return _elementwise(_tanh, x)


def sqrt(x):
    """Square root: IEEE 754 requires it correctly rounded, so numpy's is already the same everywhere."""
    with np.errstate(invalid="ignore"):  # nan below 0, silently, like the other functions here
        return np.sqrt(np.asarray(x, dtype=np.float64))


# power ------------------------------------------------------------------------


def _is_odd_integer(y: float) -> bool:
    return abs(y) % 2 == 1


def _power_edges(x: float, y: float) -> float | None:
    """C99 F.9.4.4: pow's results where an argument is 0, ±1, ±inf or nan, or x < 0 with y not an integer."""
    if y == 0 or x == 1:
        return 1.0  # even for a nan other argument
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if math.isinf(y):
        if x == -1:
            return 1.0
        return math.inf if (abs(x) > 1) == (y > 0) else 0.0
    odd = _is_odd_integer(y)
    if x == 0:
        return (math.copysign(math.inf, x) if odd else math.inf) if y < 0 else (x if odd else 0.0)
    if math.isinf(x):
        magnitude = math.inf if y > 0 else 0.0
        return -magnitude if x < 0 and odd else magnitude
    if x < 0 and not y.is_integer():
        return math.nan
    return None


def _dyadic_power(x: float, y: float) -> float | None:
    """``x**y`` (x > 0) rounded, when it is m * 2**k with an odd m of at most 54 bits, else None.

    Those are the only powers that can be a double or a midpoint between two, and
    Ziv's loop never ends on a midpoint: they are computed exactly instead.
    """
    n, d = y.as_integer_ratio()  # y = n / d, d a power of two
    num, den = x.as_integer_ratio()
    twos = (num & -num).bit_length() - 1
    m, e = num >> twos, twos - (den.bit_length() - 1)  # x = m * 2**e, m odd
    if m > 1:  # the d-th root of m, by repeated square roots; m < 2**53, so a few at most
        for _ in range(d.bit_length() - 1):
            r = math.isqrt(m)
            if r * r != m:
                return None
            m = r
    if e % d or (n < 0 and m > 1) or (m.bit_length() - 1) * abs(n) > 54:
        return None  # irrational, not dyadic, or more than 54 bits
    odd = m ** abs(n) if m > 1 else 1
    return None if odd.bit_length() > 54 else _rounded(odd, e // d * n)


def _pow_mpf(x: Mpf, y: Mpf, p: int) -> Mpf:
    # exp(y log x): with 20 more bits, y log x is within 2**-(p+9) while |y log x| < 2**11;
    # beyond that x**y is far outside the doubles' range either way.
    return mpf_exp(mpf_mul(y, mpf_log(x, p + 20), p + 20), p, round_nearest)


def _power(x: float, y: float) -> float:
    edge = _power_edges(x, y)
    if edge is not None:
        return edge
    magnitude = _dyadic_power(abs(x), y)
    if magnitude is None:
        ax, ty = from_float(abs(x)), from_float(y)
        magnitude = _nearest(lambda p: _pow_mpf(ax, ty, p))
    return -magnitude if x < 0 and _is_odd_integer(y) else magnitude


def power(x, y):
    """x**y, correctly rounded (exact whenever x**y is a double), with C99's edge cases; broadcasts."""
    return _elementwise(_power, x, y)
