"""Reference implementations: plain loops that read like the textbook formula.

Slow on purpose. They are the ground truth the fast paths are tested against and the first
thing to read to understand an op. ``KERNELS`` maps each hot op's name to its loop version;
``cnnlite.backend.kernel`` hands them out inside ``cnnlite.backend.use_reference()``.
``contracts`` checks the arguments of every kernel, for the loops here and for the numba and
CUDA kernels, which would otherwise read or write outside their arrays.
"""
from cnnlite.reference import (activation, conv, dropout, generalized_pool, norm, optim, pool,
                               softmax)

KERNELS = {**conv.KERNELS, **pool.KERNELS, **norm.KERNELS, **activation.KERNELS,
           **dropout.KERNELS, **softmax.KERNELS, **optim.KERNELS, **generalized_pool.KERNELS}
