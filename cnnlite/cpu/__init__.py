"""Fast CPU implementations: numba kernels (parallel where it pays) and NumPy/BLAS.

``KERNELS`` maps each hot op's name to its fast CPU version, with the same signature as the
loop version of the same name in ``cnnlite.reference``. The Winograd, depthwise and small-convolution kernels are the
exception: an optional fast path of conv2d that only this backend has, checked against the
reference convolution (``cnnlite.cpu.winograd``).
"""
from cnnlite import tbb

tbb.status()  # warns once if numba's parallel loops cannot run on TBB

from cnnlite.cpu import (activation, conv_small, depthwise, dropout,  # noqa: E402
                         generalized_pool, im2col, norm, optim, pool, softmax, winograd)

KERNELS = {**im2col.KERNELS, **pool.KERNELS, **norm.KERNELS, **activation.KERNELS,
           **dropout.KERNELS, **softmax.KERNELS, **optim.KERNELS, **winograd.KERNELS,
           **generalized_pool.KERNELS, **depthwise.KERNELS, **conv_small.KERNELS}
