"""The table of differentiable ops: one description per op, from which every check is made.

Each entry (an ``OpSpec``) says how to call the op, how to make inputs for it away from its
kinks and ties, its parameters, its readable reference, its PyTorch equivalent and its
tolerances. From the table come

* the test suite's op checks (``tests/test_optable.py``): op x dtype x implementation (loops,
  numba, the CUDA kernels through the host harness, the GPU when present) x contiguous /
  non-contiguous input, value and float64 gradient checks, and PyTorch parity;
* the grader (``cnnlite assignment check``), which runs the same checks against a student's
  implementation and reports each function as passed, wrong values or wrong gradient.

>>> from cnnlite import optable
>>> result = optable.check_op("max_pool2d", "loops")
>>> result.status
'passed'
"""
from __future__ import annotations

from cnnlite.optable import (table_activation, table_conv, table_loss, table_math,
                             table_norm, table_pool)
from cnnlite.optable.checks import LAYOUTS, CheckResult, run_check
from cnnlite.optable.implementations import IMPLEMENTATIONS, available
from cnnlite.optable.spec import OpSpec

#: Every op of the table by name, in the order of its topics.
OPS: dict[str, OpSpec] = {spec.name: spec for module in (table_math, table_conv, table_pool,
                                                         table_norm, table_activation, table_loss)
                          for spec in module.OPS}

CHECKS = ("value", "gradient", "torch")


def checks_for(entry: OpSpec, dtype: str = "float64", layout: str = "contiguous",
               torch: bool = True) -> tuple:
    """The checks that apply to ``entry`` in ``dtype`` and ``layout``: value and gradient
    always; PyTorch parity (when ``torch`` and the spec names an equivalent) in float64 on
    contiguous inputs only, since the parity check itself runs in float64, contiguous."""
    parity = torch and entry.torch is not None and (dtype, layout) == ("float64", "contiguous")
    return CHECKS if parity else CHECKS[:2]


def spec(name: str) -> OpSpec:
    """The table's entry for op ``name`` (a KeyError lists the names)."""
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"optable: no op {name!r}; the table has {', '.join(OPS)}") from None


def check_op(name: str, implementation: str, dtype: str = "float64",
             layout: str = "contiguous", seed: int = 0, params: dict | None = None,
             torch: bool = False) -> CheckResult:
    """Run the value and gradient checks (and PyTorch parity when ``torch``, see
    ``checks_for``) of one op for every example of its spec (or the given ``params``); the
    first failure, else a pass."""
    entry = spec(name)
    result = None
    for example in ([params] if params is not None else entry.examples):
        for check in checks_for(entry, dtype, layout, torch):
            result = run_check(entry, check, implementation, example, dtype, layout, seed)
            if not result.passed:
                return result
    return result


def cases(implementations=None, dtypes=None, layouts=LAYOUTS):
    """Every (op, implementation, dtype, layout, example index) the table describes, for the
    test suite's parametrisation; implementations that cannot run here are kept (the tests
    skip them, saying why)."""
    for name, entry in OPS.items():
        for implementation in entry.implementations:
            if implementations is not None and implementation not in implementations:
                continue
            for dtype in entry.dtypes:
                if dtypes is not None and dtype not in dtypes:
                    continue
                for layout in layouts:
                    for index in range(len(entry.examples)):
                        yield name, implementation, dtype, layout, index


__all__ = ["OPS", "OpSpec", "CheckResult", "IMPLEMENTATIONS", "LAYOUTS", "CHECKS", "available",
           "cases", "check_op", "checks_for", "run_check", "spec"]
