"""transforms.portable is correctly rounded: every result is the exact value rounded to the nearest double, ties to even.

The oracle never calls transforms.portable. Exact values come from Python's
decimal at 100 digits (ln, log10 and exp are correctly rounded there; log2,
log1p, expm1, tanh and power are built from them with the cancellation paid
for) or, for sin, cos, tan and arctan, which decimal lacks, from mpmath at 1,000
bits, about twelve times the precision transforms.portable starts with. The
rounding to a double is IEEE 754's rule written out below, and each oracle value
must be far enough from a rounding boundary for its own error not to matter.
"""

from __future__ import annotations

import decimal
import math
import random
import struct
from decimal import Decimal
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from transforms import portable

inf, nan = math.inf, math.nan
H = float.fromhex


# The rule: IEEE 754 roundTiesToEven to binary64 ------------------------------


def round_ties_to_even(v: Fraction) -> float:
    """The double nearest ``v``; of two equally near, the one whose last bit is 0. Subnormals and overflow included."""
    if v == 0:
        return 0.0
    a = abs(v)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**(e-1) < a < 2**(e+1)
    if a >= Fraction(2) ** e:
        e += 1  # now 2**(e-1) <= a < 2**e
    step = max(e - 53, -1074)  # the spacing of doubles around a (fixed below the normal range)
    scaled = a / Fraction(2) ** step
    n = math.floor(scaled)
    if scaled - n > Fraction(1, 2) or (scaled - n == Fraction(1, 2) and n % 2 == 1):
        n += 1
    magnitude = inf if n * Fraction(2) ** step >= 2**1024 else math.ldexp(n, step)  # n <= 2**53: exact
    return magnitude if v > 0 else -magnitude


def test_the_rule_itself():
    assert round_ties_to_even(Fraction(1) + Fraction(1, 2**53)) == 1.0  # tie: 1 is even
    assert round_ties_to_even(Fraction(1) + Fraction(3, 2**53)) == 1 + 2**-51  # tie: 1 + 2**-51 is even
    assert round_ties_to_even(Fraction(1, 2**1075)) == 0.0  # tie between 0 and the least subnormal
    assert round_ties_to_even(Fraction(3, 2**1076)) == 5e-324
    assert round_ties_to_even(-Fraction(1, 2**1080)) == 0.0 and math.copysign(1, round_ties_to_even(-Fraction(1, 2**1080))) == -1
    assert round_ties_to_even(Fraction(2**1024 - 2**970)) == inf  # tie with an odd largest double
    assert round_ties_to_even(Fraction(2**1024 - 2**970 - 1)) == 1.7976931348623157e308


def decided(v: Fraction, rel: Fraction) -> float:
    """The double of an oracle value known within a relative error ``rel``: it must round the same at both ends."""
    lo, hi = round_ties_to_even(v * (1 - rel)), round_ties_to_even(v * (1 + rel))
    assert bits(lo) == bits(hi), f"oracle too close to a rounding boundary: {float(v)!r}"
    return lo


def bits(x: float) -> bytes:
    return b"nan" if math.isnan(x) else struct.pack("<d", x)


# The oracle ------------------------------------------------------------------

DIGITS = 100
DEC_REL = Fraction(1, 10 ** (DIGITS - 5))  # a few units in the last of 100 digits
MP_BITS = 1000


def dec(prec: int) -> decimal.Context:
    return decimal.Context(prec=prec, Emin=-10**6, Emax=10**6, rounding=decimal.ROUND_HALF_EVEN, traps=[])


def exact_sum_one(x: float) -> Decimal:
    """1 + x with no rounding (Decimal(x) is exact; 1,200 digits hold any double plus one)."""
    ctx = dec(1200)
    ctx.traps[decimal.Inexact] = True
    return ctx.add(Decimal(1), Decimal(x))


def exp_m1(d: Decimal) -> Decimal:
    """e**d - 1, with as many more digits as the cancellation (e**d - 1 ~ d) costs."""
    ctx = dec(DIGITS + max(0, -d.adjusted()))
    return ctx.subtract(ctx.exp(d), Decimal(1))


def tanh(x: float) -> Fraction:
    """tanh |x| = (1 - e**-2|x|) / (1 + e**-2|x|), with the sign of x: no overflow, no cancellation."""
    t = Fraction(exp_m1(dec(1200).multiply(Decimal(-2), Decimal(abs(x)))))  # exact product
    return (1 if x > 0 else -1) * -t / (2 + t)


def exact_power(x: float, y: float) -> Fraction | None:
    """x**y when y is an integer, or half one with x a perfect square (|y| not huge), else None."""
    p, q = y.as_integer_ratio()
    if q > 2 or abs(p) > 5000:
        return None
    if q == 1:
        return Fraction(x) ** p
    num, den = x.as_integer_ratio()
    if math.isqrt(num) ** 2 != num or math.isqrt(den) ** 2 != den:
        return None
    return Fraction(math.isqrt(num), math.isqrt(den)) ** p


def oracle_power(x: float, y: float) -> float:
    if x < 0 and not y.is_integer():
        return nan
    exact = exact_power(x, y)
    if exact is not None:
        return round_ties_to_even(exact)
    ctx = dec(DIGITS)
    magnitude = ctx.exp(ctx.multiply(Decimal(y), ctx.ln(Decimal(abs(x)))))
    sign = -1 if x < 0 and y % 2 else 1
    return decided(sign * Fraction(magnitude), DEC_REL * 1000)  # |y ln x| < 1000 here


def mp(f):
    def exact(x: float) -> float:
        with mpmath.workprec(MP_BITS):
            v = f(mpmath.mpf(x))
        sign, man, exp, _ = v._mpf_  # v = (-1)**sign * man * 2**exp
        return decided((-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp), Fraction(1, 2 ** (MP_BITS - 10)))
    return exact


ORACLES = {
    "log": lambda x: decided(Fraction(dec(DIGITS).ln(Decimal(x))), DEC_REL),
    "log2": lambda x: decided(Fraction(dec(DIGITS).divide(dec(DIGITS).ln(Decimal(x)), dec(DIGITS).ln(Decimal(2)))),
                              DEC_REL),
    "log10": lambda x: decided(Fraction(dec(DIGITS).log10(Decimal(x))), DEC_REL),
    "log1p": lambda x: decided(Fraction(dec(DIGITS).ln(exact_sum_one(x))), DEC_REL),
    "exp": lambda x: decided(Fraction(dec(DIGITS).exp(Decimal(x))), DEC_REL),
    "expm1": lambda x: decided(Fraction(exp_m1(Decimal(x))), DEC_REL),
    "tanh": lambda x: decided(tanh(x), DEC_REL * 3),
    "sin": mp(mpmath.sin),
    "cos": mp(mpmath.cos),
    "tan": mp(mpmath.tan),
    "arctan": mp(mpmath.atan),
}


# Inputs: random doubles across magnitudes, and hard ones ---------------------

rng = random.Random(20260512)


def spread(low: int, high: int, n: int = 400, signs=(1, -1)) -> list[float]:
    """``n`` doubles s * m * 2**e: e uniform in [low, high], m uniform in [1, 2), s from ``signs``."""
    return [rng.choice(signs) * math.ldexp(1 + rng.random(), rng.randint(low, high)) for _ in range(n)]


TINY = [5e-324, 1e-320, 2.225073858507201e-308, 2.2250738585072014e-308, 2**-600, 1e-20, 2**-53, 2**-54]
NEAR_ONE = [1 + k * 2**-52 for k in range(1, 5)] + [1 - k * 2**-53 for k in range(1, 5)]
NEAR_HALF_PI = [math.ldexp(6381956970095103, 797)] + [k * (math.pi / 2) for k in (1, 2, 3, 4, 5, 100, 10**6, 10**12)]

# Hard-to-round cases (the exact result within about 2**-100 relative of a
# rounding boundary) from the published worst-case lists of Lefèvre and
# Zimmermann, as the CORE-MATH project ships them; plus series cases such as
# exp(2**-53) = 1 + 2**-53 + 2**-107 + ..., just above a midpoint.
HARD = {
    "exp": [H("0x1.0122ef37212ebp-1"), H("0x1.0303c5638675fp-1"), H("0x1.5a90a81b28a81p-1"), H("0x1.fedc746ddf8fap-1"),
            H("0x1.008eb56314daap+0"), H("0x1.2f670c4302212p+0"), H("0x1.6fbce05407de8p+0"), 2**-53, -2**-54,
            3 * 2**-55],
    "expm1": [H("0x1.00091a4a0dae5p+2"), H("0x1.94c583ada5b9p-51"), H("-0x1.6a09e667f3bf6p-53"),
              H("0x1.f5fb0bdc5390ep-24"), H("0x1.363d7c311a7a6p+1"), H("0x1.9864580d84b36p-43"),
              H("-0x1.a164335b47c44p-1"), H("-0x1.6dc1072c40e2p-39")],
    "log": [H("0x1.a6ae5142326b5p+0"), H("0x1.63d0a00313baap-356"), H("0x1.b0c7e2cf1be55p-534"),
            H("0x1.34a8af8f8c7fep+49"), H("0x1.fe0270135e3b4p+230"), H("0x1.b1362dc5dbb85p+760"),
            H("0x1.aaa6e4472edap-104")],
    "log1p": [H("0x1.94d915fa88734p-51"), H("0x1.010634736a28p+14"), H("-0x0.1bc6879ea14c5p-1022"),
              H("0x0.02efe618534fbp-1022"), H("0x1.0000ffff82ab3p-37"), H("0x1.00921288e72f3p-26"),
              H("0x1.1e3779b97f4a3p-50"), H("0x1.0f876ccdf6cd9p-49"), H("0x1.039d33161ce58p+77"),
              H("0x1.07d21ef062608p+0")],
    "log2": [H("0x1.1d28e5348414p-512"), H("0x1.c0358d9c58243p-256"), H("0x1.4ec629cae1bcfp-65"),
             H("0x1.8a2d5dfe0e524p-16"), H("0x1.a3b9c7016703p-3"), H("0x1.50d8826c1f823p+1"),
             H("0x1.15e2e51b4be26p+511")],
    "log10": [H("0x1.127ed722a5b8p-1028"), H("0x1.61f9de5bc09a2p-847"), H("0x1.b7905adf4eb62p-340"),
              H("0x1.f579b2bd8f2d6p+116"), H("0x1.cd49ff925734cp+363"), H("0x1.5c6f79d14d21fp+786")],
    "sin": [H("0x1.005023d32fee5p+1"), H("0x1.4f747439b345p-25"), H("0x1.7c77b4fbb84edp-18"),
            H("0x1.bac75a647203p-11"), H("0x1.f7a3da2c53eabp-4"), H("0x1.b7ef0fbc7155ep+3"),
            H("0x1.bf3c7bb09db8fp+7"), H("0x1.0b378b4b8c4adp+0")],
    "cos": [H("0x1.0009effd4bedap-12"), H("0x1.1e3779b97f499p-25"), H("0x1.0c7934d48c50dp-18"),
            H("0x1.2c36a1d4c9644p-11"), H("0x1.28cbdc39fdac5p-4"), H("0x1.9a7d71c951dcfp-1"),
            H("0x1.d2eaf9e4acca5p+3"), H("0x1.096f204d3f181p+9"), math.sqrt(2**-53)],
    "tan": [H("0x1.0004b89dcb553p-11"), H("0x1.a6a58d55e3033p-26"), H("0x1.de20d60fb25a8p-18"),
            H("0x1.78e45fd34fc91p-12"), H("0x1.15e03bd066f1dp-6"), H("0x1.c8bef6e379ca6p-1"),
            H("0x1.3be1104ab1146p+4")],
    "arctan": [H("0x1.000321dec01a8p-10"), H("0x1.1f9944b334321p-8"), H("0x1.3e76ea597726ap+5"),
               H("0x1.60ae752b04cp+0"), H("0x1.800000000001dp-25"), H("0x1.aacd24cd6e8b9p+45"),
               H("0x1.78742ea75aabfp+12")],
    "tanh": [H("0x1.000b47bdb383fp-9"), H("0x1.7137449123eb3p-26"), H("0x1.6f94b9397a4b3p-15"),
             H("0x1.e05c46ecbbdedp-12"), H("0x1.4573d6df61042p-5"), H("0x1.c2eed830558a8p-2"),
             H("0x1.b1a67c26df3cep+2")],
}

INPUTS = {
    "log": spread(-1074, 1023, signs=(1,)) + [rng.uniform(0.5, 2) for _ in range(200)] + NEAR_ONE + TINY
    + [2.0**k for k in range(-1074, 1024, 97)] + [1.7976931348623157e308],
    "log1p": [x for x in spread(-1074, 1023) if x > -1] + [-1 + k * 2**-53 for k in range(1, 5)]
    + [rng.uniform(-1, 1) for _ in range(200)] + TINY + [-t for t in TINY] + [1.7976931348623157e308],
    "exp": [rng.uniform(-746, 710) for _ in range(400)] + spread(-1074, 0, 200) + TINY + [-t for t in TINY]
    + [709.782712893384, 709.7827128933841, -708.3964185322641, -745.1332191019411, -745.1332191019412],
    "expm1": [rng.uniform(-40, 710) for _ in range(400)] + spread(-1074, 2, 200) + TINY + [-t for t in TINY]
    + [709.782712893384, 709.7827128933841],
    "sin": spread(-1074, 1023) + [rng.uniform(-10, 10) for _ in range(200)] + NEAR_HALF_PI + TINY,
    "cos": spread(-1074, 1023) + [rng.uniform(-10, 10) for _ in range(200)] + NEAR_HALF_PI + TINY,
    "tan": spread(-1074, 1023) + [rng.uniform(-10, 10) for _ in range(200)] + NEAR_HALF_PI + TINY,
    "arctan": spread(-1074, 1023) + [rng.uniform(-20, 20) for _ in range(200)] + TINY + [1.7976931348623157e308],
    "tanh": spread(-1074, 1023) + [rng.uniform(-20, 20) for _ in range(200)] + TINY + [19.06, 19.07, 22.0],
}
INPUTS["log2"] = INPUTS["log10"] = INPUTS["log"] + [10.0**k for k in range(23)]


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_correctly_rounded(name):
    xs = INPUTS[name] + HARD[name] + [-x for x in HARD[name] if name not in ("log", "log2", "log10", "log1p")]
    got = getattr(portable, name)(np.array(xs))
    wrong = [(x, g, e) for x, g in zip(xs, got.tolist()) if bits(g) != bits(e := ORACLES[name](x))]
    assert not wrong, f"{len(wrong)} of {len(xs)} not correctly rounded, e.g. (x, got, expected) {wrong[:3]}"


def test_power_correctly_rounded():
    xs = spread(-30, 30, 600)
    ys = [rng.uniform(-30, 30) for _ in range(300)] + [float(rng.randint(-64, 64)) for _ in range(300)]
    pairs = list(zip(xs, ys)) + [
        # worst cases (more than 100 bits to decide) from CORE-MATH's list
        (H("0x1.ffffffffffffcp-1"), H("0x1.fffffffffffffp-2")), (H("0x1.ffffffffffffcp-1"), H("-0x1.ffffffffffffdp-2")),
        (H("0x1.ffffffffffffp-1"), H("-0x1.ffffffffffff6p-3")), (H("0x1.ffffffffffff8p-1"), H("-0x1.ffffffffffffbp-3")),
        # exact results, midpoints between two doubles among them
        (134217727.0, 2.0), (2.0**-1, 1075.0), (2.0, -1074.0), (68718952449.0, 1.5), (68718952449.0, 0.5),
        (-3.0, 3.0), (-2.0, -3.0), (0.25, -0.5), (4.0, 1.5), (2.0, 1023.0), (2.0, 1024.0), (10.0, 22.0),
        (10.0, 400.0), (10.0, -400.0), (1 + 2**-52, 2.0**60), (1 - 2**-53, -(2.0**62)),
    ]
    x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    got = portable.power(x, y).tolist()
    wrong = [(p, g) for p, g in zip(pairs, got) if bits(g) != bits(oracle_power(*p))]
    assert not wrong, f"{len(wrong)} of {len(pairs)} not correctly rounded, e.g. ((x, y), got) {wrong[:3]}"


def test_exact_midpoint_powers_round_to_even():
    # 134217727**2 = 2**54 - 2**28 + 1, odd with 54 bits: halfway between two doubles
    assert portable.power(134217727.0, 2.0) == 18014398241046528.0  # the even neighbour, not ...530
    assert portable.power(68718952449.0, 1.5) == round_ties_to_even(Fraction(262143) ** 3)
    assert portable.power(0.5, 1075.0) == 0.0 and portable.power(0.5, 1074.0) == 5e-324


# C99 Annex F: the results fixed by the standard ------------------------------

PI_2 = H("0x1.921fb54442d18p+0")  # pi/2 rounded to nearest

EDGES = {  # name: [(x, result)]: pairs, since 0.0 and -0.0 are one dict key
    "log": [(0.0, -inf), (-0.0, -inf), (-1.0, nan), (-inf, nan), (inf, inf), (1.0, 0.0), (nan, nan)],
    "log2": [(0.0, -inf), (-0.0, -inf), (-1.0, nan), (-inf, nan), (inf, inf), (1.0, 0.0), (8.0, 3.0), (2.0**-1074, -1074.0)],
    "log10": [(0.0, -inf), (-0.0, -inf), (-5e-324, nan), (inf, inf), (1.0, 0.0), (1e22, 22.0), (nan, nan)],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -inf), (-1.5, nan), (-inf, nan), (inf, inf), (nan, nan), (5e-324, 5e-324)],
    "exp": [(0.0, 1.0), (-0.0, 1.0), (inf, inf), (-inf, 0.0), (710.0, inf), (-746.0, 0.0), (nan, nan)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (inf, inf), (-inf, -1.0), (-40.0, -1.0), (710.0, inf), (nan, nan)],
    "sin": [(0.0, 0.0), (-0.0, -0.0), (inf, nan), (-inf, nan), (nan, nan)],
    "cos": [(0.0, 1.0), (-0.0, 1.0), (inf, nan), (-inf, nan), (nan, nan)],
    "tan": [(0.0, 0.0), (-0.0, -0.0), (inf, nan), (-inf, nan), (nan, nan)],
    "arctan": [(0.0, 0.0), (-0.0, -0.0), (inf, PI_2), (-inf, -PI_2), (nan, nan)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (inf, 1.0), (-inf, -1.0), (20.0, 1.0), (-20.0, -1.0), (nan, nan)],
    "sqrt": [(0.0, 0.0), (-0.0, -0.0), (-1.0, nan), (inf, inf), (4.0, 2.0), (nan, nan)],
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_c99_edge_cases(name):
    xs, expected = zip(*EDGES[name])
    got = getattr(portable, name)(np.array(xs)).tolist()
    assert [bits(g) for g in got] == [bits(e) for e in expected]


POWER_EDGES = [  # (x, y, C99 F.9.4.4's result)
    (nan, 0.0, 1.0), (nan, -0.0, 1.0), (1.0, nan, 1.0), (1.0, inf, 1.0), (-1.0, inf, 1.0), (-1.0, -inf, 1.0),
    (0.0, -3.0, inf), (-0.0, -3.0, -inf), (0.0, -2.0, inf), (-0.0, -2.0, inf), (-0.0, -0.5, inf), (-0.0, -inf, inf),
    (0.0, 3.0, 0.0), (-0.0, 3.0, -0.0), (-0.0, 2.0, 0.0), (-0.0, 0.5, 0.0), (-0.0, inf, 0.0),
    (0.5, -inf, inf), (2.0, -inf, 0.0), (0.5, inf, 0.0), (2.0, inf, inf),
    (-inf, -3.0, -0.0), (-inf, -2.0, 0.0), (-inf, -0.5, 0.0), (-inf, 3.0, -inf), (-inf, 2.0, inf), (-inf, 0.5, inf),
    (inf, -1.0, 0.0), (inf, 0.5, inf), (-2.0, 0.5, nan), (-2.0, -1.5, nan), (nan, 1.0, nan), (2.0, nan, nan),
    (-8.0, 1.0 / 3, nan), (-2.0, 2.0**60, inf), (-0.5, 2.0**60 + 2**8, 0.0), (-2.0, -1075.0, -0.0), (-1.0, 2.0**60, 1.0),
]


def test_power_c99_edge_cases():
    x, y, expected = (np.array(c) for c in zip(*POWER_EDGES))
    assert [bits(g) for g in portable.power(x, y).tolist()] == [bits(e) for e in expected]


# numpy-like ------------------------------------------------------------------


def test_numpy_like_shapes_and_types():
    assert isinstance(portable.log1p(3.0), np.float64) and portable.log1p(3) == portable.log1p(3.0)
    assert portable.exp(np.zeros((2, 3))).shape == (2, 3)
    assert portable.power(np.array([[1.0], [2.0]]), np.array([1.0, 2.0, 3.0])).tolist() == [[1, 1, 1], [2, 4, 8]]
    assert portable.sin(np.array([], dtype=np.float64)).shape == (0,)
    assert portable.log(np.array([1, 2, 4], dtype=np.int64)).dtype == np.float64
    both_zeros = portable.log1p(np.array([0.0, -0.0, 0.0]))  # distinct bit patterns, evaluated apart
    assert [bits(v) for v in both_zeros.tolist()] == [bits(0.0), bits(-0.0), bits(0.0)]
    strided = np.arange(10, dtype=np.float64)[::3]
    assert portable.log1p(strided).tolist() == portable.log1p(strided.copy()).tolist()


def test_results_remembered_across_calls_are_keyed_by_bits():
    assert bits(portable.log1p(0.0)) == bits(0.0) and bits(portable.log1p(-0.0)) == bits(-0.0)
    for _ in range(3):
        portable.log2(np.array([8.0, 0.5]))
        portable.power(2.0, np.array([3.0, -1.0]))
    assert len(portable._caches) <= len(portable.__all__)  # one cache per function, not one per call
