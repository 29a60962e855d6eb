"""Launcher of kernels/dropout.cu: dropout masks drawn on the GPU from a seed.

``dropout_forward(x, p, seed) -> y, mask`` with ``mask = [u >= p] / (1 - p)`` (0 when p = 1)
and ``y = x * mask``; backward is ``gy * mask``. The uniform numbers u come from a
counter-based generator (a hash of the seed and the element's index, see kernels/dropout.cu),
so no random numbers are copied to the GPU and one seed gives one mask anywhere.
``counter_uniforms`` computes the same numbers with NumPy.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch
from cnnlite.errors import OpError

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def counter_uniforms(seed: int, count: int) -> np.ndarray:
    """The uniform numbers u_0 .. u_{count-1} in [0, 1) that the kernel draws for ``seed``:
    SplitMix64's finaliser applied to seed + (t + 1) * golden_gamma, top 24 bits / 2^24.
    (uint64 arithmetic in NumPy wraps around modulo 2^64, as in C.)"""
    z = np.uint64(seed % 2**64) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * _GOLDEN_GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / 2.0**24


@reports_out_of_memory
def dropout_forward(x, p, seed):
    """x: any shape -> y, mask: x's shape; one thread per element, each drawing its own u."""
    if not 0 <= p <= 1:
        raise OpError(f"dropout: p must be a probability in [0, 1], got {p!r} for x "
                      f"{tuple(x.shape)}")
    xp = backend.array_module(x)
    dtype = float_dtype("dropout", x)
    x = xp.ascontiguousarray(x)
    y = xp.empty(x.shape, dtype=dtype)
    mask = xp.empty(x.shape, dtype=dtype)
    scale = 1 / (1 - p) if p < 1 else 0.0
    launch(kernel_function("dropout", "dropout_forward", dtype, x), x.size,
           (x, y, mask, *int64s(x.size), np.float64(p), np.uint64(seed % 2**64),
            dtype.type(scale)))
    return y, mask


KERNELS = {"dropout_forward": dropout_forward}
