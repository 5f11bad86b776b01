"""Pure row functions: one value per event, computed from that event alone.

A row function is a plain, typed function in the Hamilton style: its name is
the output column and its parameter names are the input columns. It is written
with numpy ufuncs so that one definition runs on a single value (the reference
evaluator, tests) and on a whole column at once (the engines' vectorised Arrow
path) with the same arithmetic.

A row function over int64 columns can instead be declared with
:func:`row_expression`: its body then builds an engine-neutral integer
expression (``transforms/expressions.py``) that numpy evaluates here and each
engine compiles to a native expression, with no Python on the engine's path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms.expressions import Expr, col, evaluate
from transforms.schema import FieldType

@dataclass(frozen=True)
class RowFunction:
    """A named column computed element-wise from other columns of the same event."""

    name: str
    inputs: tuple[str, ...]
    dtype: FieldType
    fn: Callable[..., np.ndarray]
    doc: str
    #: The same function as an integer expression the engines compile natively (None: numpy only).
    expr: Expr | None = None

    def __call__(self, *columns):
        return self.fn(*columns)

    def apply(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Evaluate over whole columns (arrays of equal length), returning an array."""
        out = np.asarray(self.fn(*(columns[i] for i in self.inputs)))
        return out.astype(_NUMPY_DTYPE[self.dtype], copy=False)

    def on_series(self, *columns: pd.Series) -> pd.Series:
        """The engines' vectorised entry point: pandas Series (Arrow batches) in input order."""
        return pd.Series(self.apply({name: col.to_numpy() for name, col in zip(self.inputs, columns)}))


_NUMPY_DTYPE = {FieldType.FLOAT64: np.float64, FieldType.INT64: np.int64}


def row_function(dtype: FieldType) -> Callable[[Callable], RowFunction]:
    """Declare ``fn`` a row function producing ``dtype``; inputs are read from its signature."""
    if dtype not in _NUMPY_DTYPE:
        raise ValueError(f"row functions produce FLOAT64 or INT64, not {dtype}")

    def declare(fn: Callable) -> RowFunction:
        params = tuple(inspect.signature(fn).parameters)
        return RowFunction(fn.__name__, params, dtype, fn, inspect.getdoc(fn) or "")

    return declare


def row_expression(fn: Callable[..., Expr]) -> RowFunction:
    """Declare ``fn`` an int64 row function whose body is an integer expression of its parameters.

    ``fn`` is called once, with one :func:`~transforms.expressions.col` per
    parameter, to build the expression; numpy evaluates that expression (so the
    reference and the engines read the same tree).
    """
    params = tuple(inspect.signature(fn).parameters)
    expr = fn(*(col(p) for p in params))
    if not isinstance(expr, Expr):
        raise TypeError(f"row expression {fn.__name__} must return an integer expression, not {expr!r}")

    def run(*columns):
        return evaluate(expr, dict(zip(params, columns)))

    run.__name__ = fn.__name__
    return RowFunction(fn.__name__, params, FieldType.INT64, run, inspect.getdoc(fn) or "", expr)
