"""cnnlite: a small, readable deep-learning framework for learning how CNNs work.

>>> import cnnlite as cl
>>> from cnnlite import functional as F
>>> x = cl.tensor([[1.0, -2.0]], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([[ 2., -4.]], dtype=float32)
"""
from cnnlite import allocator, tbb

tbb.preload()  # before anything can start numba's threads: see cnnlite/tbb.py
allocator.keep_unless_asked_not_to()  # freed arrays reused, not page-faulted in again

from cnnlite.tensor import Tensor, tensor  # noqa: E402  (it gives Tensor its operators)
from cnnlite import (backend, cuda, data, functional, io, models, nn, optim, train,  # noqa: E402
                     viz)
from cnnlite.autograd import Function, enable_grad, is_grad_enabled, no_grad
from cnnlite.backend import DeviceError
from cnnlite.errors import OpError
from cnnlite.functional import (abs, clip, concat, exp, log, matmul, maximum, pad, split,
                                sqrt, stack, where)
from cnnlite.summary import summary
from cnnlite.testing import GradcheckError, gradcheck

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled",
    "gradcheck", "GradcheckError", "OpError", "DeviceError", "summary",
    "abs", "clip", "concat", "exp", "log", "matmul", "maximum", "pad", "split", "sqrt", "stack",
    "where",
    "autograd", "backend", "cuda", "data", "functional", "io", "models", "nn", "optim", "testing",
    "train", "viz",
]
