"""Fast CPU dropout mask: a numba kernel, one pass over x, parallel over its elements.

Same name, arguments and results as the loop in ``cnnlite.reference.dropout`` (read it first):
``dropout_forward(x, p, seed) -> y, mask`` with mask_t = [u_t >= p] / (1 - p), where u_t is
the counter-based uniform number of element t (a hash of the seed and t). Because u_t depends
on nothing else, the elements can be split over the cores in any way and the mask is still
the one the loops and kernels/dropout.cu give for the same seed.
"""
import numba
import numpy as np

from cnnlite.cpu.parallel import serial_when_small
from cnnlite.reference import contracts
from cnnlite.reference.dropout import GOLDEN_GAMMA, MIX1, MIX2

_GOLDEN_GAMMA = np.uint64(GOLDEN_GAMMA)
_MIX1 = np.uint64(MIX1)
_MIX2 = np.uint64(MIX2)


@serial_when_small
@numba.njit(parallel=True, cache=True)
def _dropout_into(x, p, seed, scale, y, mask):
    """x, y, mask: flat (count,). Every operand of the hash is a uint64, so that numba keeps
    the arithmetic in wrapping 64-bit integers (a uint64 mixed with a signed int would become a
    float64)."""
    for t in numba.prange(x.size):
        z = seed + (np.uint64(t) + np.uint64(1)) * _GOLDEN_GAMMA
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
        u = np.float64(z >> np.uint64(40)) / 16777216.0
        mask[t] = scale if u >= p else 0
        y[t] = x[t] * mask[t]


def dropout_forward(x, p, seed):
    """x: any shape -> y, mask: x's shape and dtype."""
    contracts.dropout_forward(x, p, seed)
    y = np.empty(x.shape, dtype=x.dtype)
    mask = np.empty(x.shape, dtype=x.dtype)
    scale = x.dtype.type(1 / (1 - p) if p < 1 else 0)
    _dropout_into(np.ascontiguousarray(x).reshape(-1), np.float64(p),
                  np.uint64(int(seed) % 2**64), scale, y.reshape(-1), mask.reshape(-1))
    return y, mask


KERNELS = {"dropout_forward": dropout_forward}
