"""Reductions over axes: ``sum``, ``mean``, ``max``, ``min``, ``var`` (NumPy's axis/keepdims).

Backward of a reduction spreads ``dL/dy`` back over the reduced axes: it is reshaped to the
``keepdims`` shape and broadcast to the input's shape.
"""
from __future__ import annotations

import builtins

from cnnlite import backend, dtypes, validate
from cnnlite.autograd import Function
from cnnlite.errors import OpError


def normalize_axes(axis, ndim, op_name):
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of axes.

    A 0-d array takes axis 0 (or -1) as "itself", as in PyTorch: there is nothing to reduce.
    """
    if axis is None:
        return tuple(range(ndim))
    axes = validate.axes(op_name, axis, builtins.max(ndim, 1))
    return tuple(sorted(axes)) if ndim else ()


def keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Reduction(Function):
    """Base: holds ``axis``/``keepdims`` and knows how to spread a gradient back."""

    dtypes = dtypes.NUMERIC

    def __init__(self, axis=None, keepdims=False):
        self.axis = axis
        self.keepdims = validate.boolean(self.name.lower(), "keepdims", keepdims)

    def forward(self, x):
        self.axes = normalize_axes(self.axis, x.ndim, self.name.lower())
        self.x_shape = x.shape
        return self.reduce(x)

    def spread(self, gy):
        """dL/dy reshaped to keepdims form and broadcast to the input's shape."""
        gy = gy.reshape(keepdims_shape(self.x_shape, self.axes))
        return backend.array_module(gy).broadcast_to(gy, self.x_shape)


class Sum(Reduction):
    """y = sum of x over the axes;  dy/dx = 1 for every summed element."""

    def reduce(self, x):
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        # BEGIN SOLUTION
        return self.spread(gy)
        # END SOLUTION


class Mean(Reduction):
    """y = sum(x) / n over the axes;  dy/dx = 1 / n.

    The mean of no values (n = 0, e.g. the loss of an empty batch) is NaN, as in NumPy and
    PyTorch, without NumPy's warning; its gradient is empty, as x is.
    """

    def reduce(self, x):
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        if self.count == 0:
            return x.sum(axis=self.axes, keepdims=self.keepdims) * float("nan")
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        return self.spread(gy / builtins.max(self.count, 1))


class Max(Reduction):
    """y = max of x over the axes.

    dy/dx = 1 at the maximum; where several elements tie for the maximum, the gradient is
    shared equally among them (the same rule as ``torch.amax``).
    """

    pick = "max"

    def reduce(self, x):
        y = getattr(x, self.pick)(axis=self.axes, keepdims=True)
        self.save_for_backward(x, y)
        return y if self.keepdims else y.reshape([n for i, n in enumerate(y.shape)
                                                  if i not in self.axes])

    def backward(self, gy):
        x, y = self.saved
        winners = x == y
        share = winners / winners.sum(axis=self.axes, keepdims=True)
        return self.spread(gy) * share


class Min(Max):
    """y = min of x over the axes; gradient as for ``Max``."""

    pick = "min"


class Var(Reduction):
    """y = sum((x - mean)^2) / (n - ddof);  dy/dx = 2 (x - mean) / (n - ddof).

    ``ddof=0`` (the default, as in NumPy) is the biased variance; ``ddof=1`` the unbiased one.
    """

    def __init__(self, axis=None, keepdims=False, ddof=0):
        super().__init__(axis, keepdims)
        self.ddof = validate.integer("var", "ddof", ddof, minimum=0)

    def reduce(self, x):
        n = 1
        for a in self.axes:
            n *= x.shape[a]
        if n - self.ddof <= 0:
            raise OpError(f"var: {n} element(s) over axes {self.axes} of shape "
                          f"{tuple(x.shape)} are too few for ddof={self.ddof}")
        self.divisor = n - self.ddof
        centered = x - x.mean(axis=self.axes, keepdims=True)
        self.save_for_backward(centered)
        return (centered ** 2).sum(axis=self.axes, keepdims=self.keepdims) / self.divisor

    def backward(self, gy):
        (centered,) = self.saved
        return self.spread(gy) * (2 / self.divisor) * centered


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False):
    return Min(axis, keepdims)(x)


def var(x, axis=None, keepdims=False, ddof=0):
    return Var(axis, keepdims, ddof)(x)
