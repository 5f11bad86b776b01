"""Pure row functions: one value per event, computed from that event alone.

A row function is a plain, typed function in the Hamilton style: its name is
the output column and its parameter names are the input columns. It is written
with numpy ufuncs so that one definition runs on a single value (the reference
evaluator, tests) and on a whole column at once (the engines' vectorised Arrow
path) with the same arithmetic.

Its results must be the same bits on every machine, so its arithmetic is
basic IEEE operations (+ - * /, sqrt, comparisons, np.maximum...: correctly
rounded by the standard) or ``transforms.portable`` (correctly rounded
transcendental functions); :func:`row_function` refuses numpy's and
``math``'s transcendental functions, whose last bit depends on the CPU.

A row function over int64 columns can instead be declared with
:func:`row_expression`: its body then builds an engine-neutral integer
expression (``transforms/expressions.py``) that numpy evaluates here and each
engine compiles to a native expression, with no Python on the engine's path.
"""

from __future__ import annotations

import builtins
import dis
import inspect
import math
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms import portable
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
        _refuse_machine_dependent(fn)
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


#: numpy ufuncs and math functions whose last bit depends on the CPU: numpy runs
#: them in SIMD code chosen per CPU, glibc in FMA or non-FMA variants.
_DISPATCHED = {
    **{getattr(np, n): "numpy" for n in (
        "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "logaddexp", "logaddexp2", "power", "float_power",
        "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
        "arctanh", "hypot", "cbrt")},
    **{getattr(math, n): "math" for n in (
        "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "pow", "sin", "cos", "tan", "asin", "acos", "atan",
        "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "hypot", "cbrt", "erf", "erfc", "gamma", "lgamma")},
}
_WHY = {
    "numpy": "numpy dispatches it to CPU-specific SIMD code",
    "math": "the C library dispatches it to CPU-specific (FMA or not) code",
}
#: numpy computes ``x ** c`` for these exponents as 1, x, x*x, 1/x, sqrt(x): correctly rounded. Others call pow.
_EXACT_EXPONENTS = (0, 1, 2, -1, 0.5)


def _refuse_machine_dependent(fn: Callable) -> None:
    """Refuse a row function whose code calls a transcendental function whose last bit depends on the CPU.

    A Spark cluster and a Flink cluster on different CPUs would then disagree in
    the last bit while every test on one machine passes. This is a guard, not a
    proof: it reads the globals (and attributes of them: ``np.log1p``) that the
    function's code loads, nested code and same-module helpers included, and
    each ``**``. ``getattr(np, "log1p")``, a local import or a helper from
    another module pass unseen; a catalog that does that on purpose gives up
    machine independence, which parity on one machine cannot detect.
    """
    for name, value in _loads(fn, {fn}):
        if name == "**":
            if value not in _EXACT_EXPONENTS:
                raise ValueError(
                    f"row function {fn.__name__} computes x ** {'y' if value is None else value}, which calls pow, "
                    "whose last bit differs between machines (numpy SIMD, C library variants); "
                    "use transforms.portable.power, which is correctly rounded")
        elif isinstance(value, (np.ufunc, types.BuiltinFunctionType)) and value in _DISPATCHED:
            kind = _DISPATCHED[value]
            call = name if "." in name else f"{name} ({kind}.{value.__name__})"
            fix = {"atan": "arctan", "pow": "power"}.get(value.__name__, value.__name__)
            fix = (f"use transforms.portable.{fix}, which is correctly rounded" if fix in portable.__all__
                   else f"add a correctly rounded {fix} to transforms.portable")
            raise ValueError(f"row function {fn.__name__} calls {call}: {_WHY[kind]}, so results differ in the "
                             f"last bit between machines; {fix}")


def _loads(fn: Callable, seen: set) -> Iterator[tuple[str, object]]:
    """(dotted name, value) of each global or attribute chain on one that fn's code loads; ("**", exponent) per power.

    Nested code (lambdas, comprehensions) is read too, and so are the functions
    of fn's own module that it loads. The exponent is None unless a constant.
    """
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        name, previous = None, None
        for ins in dis.get_instructions(code):
            if ins.opname == "LOAD_GLOBAL":
                name = ins.argval
                value = fn.__globals__[name] if name in fn.__globals__ else getattr(builtins, name, None)
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and name:
                name, value = f"{name}.{ins.argval}", getattr(value, ins.argval, None)
            elif ins.opname == "BINARY_OP" and ins.argrepr in ("**", "**="):
                name = None
                yield "**", (previous.argval if previous.opname == "LOAD_CONST" else None)
            else:
                name = None
            if name:
                yield name, value
                if isinstance(value, types.FunctionType) and value.__module__ == fn.__module__ and value not in seen:
                    seen.add(value)
                    yield from _loads(value, seen)
            previous = ins
