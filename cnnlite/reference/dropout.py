"""Reference dropout mask: one element at a time, each drawing its own uniform number.

``dropout_forward(x, p, seed) -> y, mask`` with

    mask_t = [u_t >= p] / (1 - p)   (0 when p = 1),     y_t = x_t * mask_t

for the elements t = 0, 1, ... of x in C order. Inverted dropout keeps each element with
probability 1 - p and scales the kept ones by 1 / (1 - p), so that the expected value of y is
x; backward is gy * mask.

The uniform numbers u_t come from a counter-based generator: u_t is a hash of (seed, t), not
the next number of a generator's sequence. Every element can draw its own number, in any order
and on any device, and one seed gives one mask on the CPU and on a GPU (``cnnlite.cpu.dropout``
and kernels/dropout.cu compute the same hash). The hash is the finaliser of the SplitMix64
generator (Steele, Lea and Flood, 2014): three xor-shift-multiply rounds that turn consecutive
counters into unrelated bits. ``counter_uniform(seed, t)`` is the hash of one counter, as the
loop uses it; ``counter_uniforms(seed, count)`` computes all of u_0 .. u_{count-1} at once with
whole-array NumPy, the twin that the tests compare every implementation with.
"""
import numpy as np

from cnnlite.reference import contracts

#: 2^64 / golden ratio, and the two multipliers of SplitMix64's finaliser.
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

# Python integers never overflow; C's unsigned 64-bit arithmetic wraps around modulo 2^64.
_WORD = 2**64 - 1


def counter_uniform(seed: int, t: int) -> float:
    """u_t in [0, 1) for stream ``seed``: SplitMix64's finaliser applied to
    seed + (t + 1) * golden_gamma, its top 24 bits divided by 2^24 (exact in float32 too)."""
    z = (seed + (t + 1) * GOLDEN_GAMMA) & _WORD
    z = ((z ^ (z >> 30)) * MIX1) & _WORD
    z = ((z ^ (z >> 27)) * MIX2) & _WORD
    z = z ^ (z >> 31)
    return (z >> 40) / 2**24


def counter_uniforms(seed: int, count: int) -> np.ndarray:
    """u_0 .. u_{count-1} for stream ``seed``, as float64, the hash applied to whole arrays
    of counters (NumPy's uint64 arithmetic wraps around modulo 2^64, as C's does)."""
    z = np.uint64(seed % 2**64) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) \
        * np.uint64(GOLDEN_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / 2.0**24


def dropout_forward(x, p, seed):
    """x: any shape -> y, mask: x's shape and dtype."""
    contracts.dropout_forward(x, p, seed)
    seed = int(seed) % 2**64
    scale = x.dtype.type(1 / (1 - p) if p < 1 else 0)
    y = np.empty(x.shape, dtype=x.dtype)
    mask = np.empty(x.shape, dtype=x.dtype)
    for t, index in enumerate(np.ndindex(x.shape)):
        mask[index] = scale if counter_uniform(seed, t) >= p else 0
        y[index] = x[index] * mask[index]
    return y, mask


KERNELS = {"dropout_forward": dropout_forward}
