"""Engine-neutral integer expressions: row functions every engine can run natively.

A row function written as numpy code can only run where Python runs: the
engines must ship every row to a Python worker and back (an Arrow pandas UDF),
which costs more than the rest of a window pass for a cheap function like
``is_night``. A row function written as an :class:`Expr` instead is a small
tree of exact int64 operations (``+ - *``, floor division and floor modulo by a
positive constant, comparisons) whose meaning does not depend on the engine:
numpy evaluates it here (the reference), and each engine compiles the same tree
to its own native expression (``batch_jobs/compile_catalog.py``,
``stream_jobs/compile_catalog.py``). Floats are left out on purpose: the JVM's
``log1p``/``exp`` differ from numpy's in the last bit, so float row functions
stay numpy code on the vectorised path.

Operands must stay within int64 (Spark's ANSI mode raises on overflow where
numpy wraps). A comparison yields 1 or 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Expr:
    """A node of an integer expression; build trees with Python operators on :func:`col`."""

    def __add__(self, other):
        return BinOp("+", self, _lift(other))

    def __radd__(self, other):
        return BinOp("+", _lift(other), self)

    def __sub__(self, other):
        return BinOp("-", self, _lift(other))

    def __rsub__(self, other):
        return BinOp("-", _lift(other), self)

    def __mul__(self, other):
        return BinOp("*", self, _lift(other))

    def __rmul__(self, other):
        return BinOp("*", _lift(other), self)

    def __floordiv__(self, other):
        return BinOp("//", self, _positive_constant(other, "//"))

    def __mod__(self, other):
        return BinOp("%", self, _positive_constant(other, "%"))

    def __lt__(self, other):
        return BinOp("<", self, _lift(other))

    def __le__(self, other):
        return BinOp("<=", self, _lift(other))

    def __gt__(self, other):
        return BinOp(">", self, _lift(other))

    def __ge__(self, other):
        return BinOp(">=", self, _lift(other))

    def __bool__(self):
        raise TypeError("an Expr has no truth value: use it as a row function's result, not in `if`/`and`")

    def columns(self) -> tuple[str, ...]:
        """Input column names, in first-use order."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Col(Expr):
    name: str

    def columns(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True, eq=False)
class Lit(Expr):
    value: int

    def columns(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, eq=False)
class BinOp(Expr):
    """``left op right``. ``//`` and ``%`` round toward negative infinity (Python's rule)."""

    op: str
    left: Expr
    right: Expr

    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.left.columns() + self.right.columns()))


COMPARISONS = ("<", "<=", ">", ">=")


def col(name: str) -> Col:
    return Col(name)


def _lift(value) -> Expr:
    if isinstance(value, Expr):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Lit(int(value))
    raise TypeError(f"integer expressions take int64 constants, not {type(value).__name__} {value!r}")


def _positive_constant(value, op: str) -> Lit:
    lit = _lift(value)
    if not isinstance(lit, Lit) or lit.value <= 0:
        raise TypeError(f"`{op}` takes a positive integer constant (engines agree on its rounding only then)")
    return lit


_NUMPY_OPS = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "//": np.floor_divide, "%": np.mod,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
}


def evaluate(expr: Expr, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The reference meaning of ``expr``: int64 numpy arithmetic; comparisons give 0/1."""
    if isinstance(expr, Col):
        return np.asarray(columns[expr.name], dtype=np.int64)
    if isinstance(expr, Lit):
        return np.int64(expr.value)
    left, right = evaluate(expr.left, columns), evaluate(expr.right, columns)
    out = _NUMPY_OPS[expr.op](left, right)
    return out.astype(np.int64) if expr.op in COMPARISONS else out
