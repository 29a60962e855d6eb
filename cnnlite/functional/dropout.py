"""Dropout: zero random elements while training, so that no unit can rely on another one.

"Inverted" dropout scales the kept elements by 1 / (1 - p) during training, so the expected
value of every element is unchanged and evaluation needs no rescaling: it is the identity.

The mask comes from the kernel registry (``dropout_forward``: loops in
``cnnlite.reference.dropout``, numba in ``cnnlite.cpu.dropout``, CUDA in kernels/dropout.cu),
which hashes a seed with each element's index. The op draws only that seed from its NumPy
generator, so a seeded generator gives the same mask on the CPU and on a GPU, and no random
numbers are copied to the GPU.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend, dtypes, validate
from cnnlite.autograd import Function
from cnnlite.errors import ArgumentTypeError
from cnnlite.tensor import Tensor, as_tensor

__all__ = ["dropout"]

_default_rng = np.random.default_rng()


class Dropout(Function):
    """y = x * mask with mask[i] = 1 / (1 - p) with probability 1 - p, else 0;
    dy/dx = mask. x: any shape. p = 1 drops everything: y = 0, dy/dx = 0."""

    def __init__(self, p: float, rng: np.random.Generator):
        self.p, self.rng = p, rng

    def forward(self, x):
        seed = int(self.rng.integers(2**63))
        y, mask = backend.kernel("dropout_forward", x)(x, self.p, seed)
        self.save_for_backward(mask)
        return y

    def backward(self, gy):
        (mask,) = self.saved
        return gy * mask


def dropout(x, p: float = 0.5, training: bool = True,
            rng: np.random.Generator | None = None) -> Tensor:
    """Inverted dropout.

    Parameters
    ----------
    x : Tensor, any shape
    p : float in [0, 1]
        Probability that an element is zeroed.
    training : bool
        Drop (and scale the rest by 1 / (1 - p)) when True; return ``x`` itself when False.
    rng : numpy.random.Generator, optional
        Source of the mask's seed (one number per call); pass a seeded one for repeatable
        masks, the same on every device. By default a generator created when cnnlite is
        imported.
    """
    x = as_tensor(x, op_name="dropout")
    p, training, rng = dropout_arguments("dropout", p, training, rng)
    if not training or p == 0:
        # x is returned as it is, but only an x Dropout would take: the same dtype policy.
        dtypes.prepare("dropout", Dropout.dtypes, [x.data])
        return x
    return Dropout(p, _default_rng if rng is None else rng)(x)


def random_generator(where, rng):
    """``rng`` checked to be None or a NumPy Generator (the random ops draw from it)."""
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ArgumentTypeError(f"{where}: rng must be a numpy.random.Generator or None, got "
                                f"{type(rng).__name__}")
    return rng


def dropout_arguments(where, p, training, rng):
    """The checked ``p`` (a probability in [0, 1]), ``training`` (a bool) and ``rng`` (None or
    a NumPy Generator) of dropout."""
    return (validate.probability(where, "p", p), validate.boolean(where, "training", training),
            random_generator(where, rng))
