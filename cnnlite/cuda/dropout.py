"""Launcher of kernels/dropout.cu: dropout masks drawn on the GPU from a seed.

``dropout_forward(x, p, seed) -> y, mask`` with ``mask = [u >= p] / (1 - p)`` (0 when p = 1)
and ``y = x * mask``; backward is ``gy * mask``. The uniform numbers u come from a
counter-based generator (a hash of the seed and the element's index, see kernels/dropout.cu),
so no random numbers are copied to the GPU and one seed gives one mask anywhere.
``counter_uniforms`` (from ``cnnlite.reference.dropout``) computes the same numbers with NumPy.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch
from cnnlite.reference import contracts


@reports_out_of_memory
def dropout_forward(x, p, seed):
    """x: any shape -> y, mask: x's shape; one thread per element, each drawing its own u."""
    xp = backend.array_module(x)
    dtype = float_dtype("dropout_forward", x)
    contracts.dropout_forward(x, p, seed)
    # The outputs take x's shape before ascontiguousarray, which makes a 0-d array 1-d.
    y = xp.empty(x.shape, dtype=dtype)
    mask = xp.empty(x.shape, dtype=dtype)
    x = xp.ascontiguousarray(x)
    scale = 1 / (1 - p) if p < 1 else 0.0
    launch(kernel_function("dropout", "dropout_forward", dtype, x), x.size,
           (x, y, mask, *int64s(x.size), np.float64(p), np.uint64(seed % 2**64),
            dtype.type(scale)))
    return y, mask


KERNELS = {"dropout_forward": dropout_forward}
