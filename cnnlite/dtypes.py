"""The dtype policy: which dtypes each op computes in, and what happens to the others.

Every ``Function`` says what it takes in its class attribute ``dtypes``; ``Function.apply``
calls ``prepare`` on the way in, so the policy lives here and nowhere else:

============  =====================================================================
``FLOAT``     The differentiable numerics (convolution, pooling, normalisation,
              activations, exp/log/sqrt, losses, dropout). They compute in float32 or
              float64. Bool and integer inputs are promoted, as PyTorch promotes them for
              its floating ops: to the widest floating dtype among the op's inputs, or to
              float32 (cnnlite's default) when none is floating. Without this a bool
              convolution would be computed in bool (every sum "True") and the sigmoid of
              uint8 in float16.
``NUMERIC``   Arithmetic, comparisons, reductions, shape and indexing ops: bool, integers
              and floats of any width, computed as NumPy computes them.
============  =====================================================================

Refused everywhere, with the op's name, the dtype and what is accepted: complex numbers (their
derivatives are not those of real functions; cnnlite computes real gradients) and anything
that is not a number. float16 is refused by the ``FLOAT`` ops: their kernels exist for float32
and float64 only, and a silent conversion would hide that the result has another precision;
convert with ``x.float()``. The ``NUMERIC`` ops take it.
"""
from __future__ import annotations

import numpy as np

from cnnlite.errors import ArgumentTypeError

FLOAT = "float"
NUMERIC = "numeric"

_COMPUTED = {np.dtype(np.float32), np.dtype(np.float64)}


def _refusal(op: str, position: int, dtype, accepted: str) -> ArgumentTypeError:
    return ArgumentTypeError(f"{op}: input {position} has dtype {dtype}, which {op} does not "
                             f"take; it takes {accepted}")


def prepare(op: str, policy: str, arrays: list) -> list:
    """The arrays an op of ``policy`` computes on: checked, and promoted where the policy says.

    Cheap on the common path (all float32 or float64): one dtype test per input.
    """
    if policy == NUMERIC:
        for position, a in enumerate(arrays):
            if a.dtype.kind not in "biuf":
                raise _refusal(op, position, a.dtype, "bool, integers and floats")
        return arrays
    if all(a.dtype in _COMPUTED for a in arrays):
        return arrays
    floats = [a.dtype for a in arrays if a.dtype in _COMPUTED]
    target = np.result_type(*floats) if floats else np.dtype(np.float32)
    prepared = []
    for position, a in enumerate(arrays):
        if a.dtype.kind in "biu":
            a = a.astype(target)
        elif a.dtype not in _COMPUTED:
            hint = "; convert with x.float()" if a.dtype == np.float16 else ""
            raise _refusal(op, position, a.dtype,
                           f"float32 and float64 (bool and integers are promoted){hint}")
        prepared.append(a)
    return prepared
