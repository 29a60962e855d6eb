"""The GPU side: CUDA C kernels from ``kernels/*.cu``, launched on cupy arrays.

``KERNELS`` maps each hot op's name to its launcher, with the same signature as the CPU
version of the same name (``cnnlite.reference`` / ``cnnlite.cpu``), taking and returning cupy
arrays instead of NumPy ones; ``cnnlite.backend.kernel`` hands them out for cupy arrays. It
also holds the kernels of dropout masks, softmax and cross-entropy, and the optimiser updates.
Matrix products are not here: on cupy arrays ``@`` already runs cuBLAS.

Importing this package does not import cupy: a launcher asks for it (through
``cnnlite.cuda.module``) when it first runs. ``cnnlite.cuda.host`` runs the same kernels on
the CPU, for tests and for stepping through a kernel without a GPU.
"""
from cnnlite import backend
from cnnlite.cuda import (activation, conv, dropout, generalized_pool, norm, optim, pool,
                          softmax)


def is_available() -> bool:
    """True when cupy is installed and a CUDA GPU is visible."""
    return backend.cuda_available()


KERNELS = {**conv.KERNELS, **pool.KERNELS, **norm.KERNELS, **activation.KERNELS,
           **dropout.KERNELS, **softmax.KERNELS, **optim.KERNELS, **generalized_pool.KERNELS}
