"""The activations of the mobile networks: relu6, hardsigmoid, hardswish and silu.

MobileNet v2 clips its ReLU at 6 so that activations stay in a range that low-precision
arithmetic represents well. MobileNet v3 replaces the sigmoid and the swish x * sigmoid(x) by
piecewise-linear "hard" versions that need no exponential. EfficientNet keeps the smooth swish,
called SiLU (sigmoid-weighted linear unit). Each derivative sits next to its formula; at the
kinks (x = 0, 6 for relu6 and x = -3, 3 for the hard ones) the derivative is the one-sided value
PyTorch uses, given in each docstring.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.autograd import Function
from cnnlite.tensor import Tensor

__all__ = ["relu6", "hardsigmoid", "hardswish", "silu"]


class ReLU6(Function):
    """y = min(max(0, x), 6);  dy/dx = 1 if 0 < x < 6 else 0.   x: any shape"""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.array_module(x).clip(x, 0, 6)

    def backward(self, gy):
        (x,) = self.saved
        return gy * ((x > 0) & (x < 6))


class Hardsigmoid(Function):
    """y = relu6(x + 3) / 6, a piecewise-linear sigmoid: 0 below -3, 1 above 3;
    dy/dx = 1/6 if -3 < x < 3 else 0.   x: any shape"""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.array_module(x).clip(x + 3, 0, 6) / 6

    def backward(self, gy):
        (x,) = self.saved
        return gy * ((x > -3) & (x < 3)) / 6


class Hardswish(Function):
    """y = x * relu6(x + 3) / 6: 0 below -3, x above 3, x (x + 3) / 6 between;
    dy/dx = 0 if x <= -3, (2x + 3) / 6 if -3 < x < 3, 1 if x >= 3.   x: any shape"""

    def forward(self, x):
        self.save_for_backward(x)
        return x * backend.array_module(x).clip(x + 3, 0, 6) / 6

    def backward(self, gy):
        (x,) = self.saved
        xp = backend.array_module(x)
        slope = xp.where(x <= -3, 0, xp.where(x >= 3, 1, (2 * x + 3) / 6))
        return gy * slope.astype(gy.dtype, copy=False)


class SiLU(Function):
    """y = x * sigmoid(x) (the swish);  dy/dx = s + x s (1 - s) with s = sigmoid(x).
    x: any shape"""

    def forward(self, x):
        s = backend.kernel("sigmoid_forward", x)(x)
        self.save_for_backward(x, s)
        return x * s

    def backward(self, gy):
        x, s = self.saved
        return gy * (s * (1 + x * (1 - s)))


def relu6(x: Tensor) -> Tensor:
    """ReLU clipped at 6, y = min(max(0, x), 6) (MobileNet v2)."""
    return ReLU6()(x)


def hardsigmoid(x: Tensor) -> Tensor:
    """Piecewise-linear sigmoid, y = relu6(x + 3) / 6 (MobileNet v3)."""
    return Hardsigmoid()(x)


def hardswish(x: Tensor) -> Tensor:
    """Piecewise-linear swish, y = x * relu6(x + 3) / 6 (MobileNet v3)."""
    return Hardswish()(x)


def silu(x: Tensor) -> Tensor:
    """Sigmoid-weighted linear unit (swish), y = x * sigmoid(x) (EfficientNet)."""
    return SiLU()(x)
