"""Layers with weights: ``Conv2d`` and ``Linear`` (and the learnable maxout built on them).

Default initialisation is PyTorch's, so that a freshly built model behaves like its PyTorch
twin: weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (that is ``kaiming_uniform_`` with
``a = sqrt(5)``) and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). It is a conservative scale;
models built for depth re-initialise (``nn.init``, ``nn.lsuv_init``).
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import functional as F, memory, validate
from cnnlite.errors import OpError
from cnnlite.functional.conv import conv_arguments
from cnnlite.nn import init
from cnnlite.nn.activation import Maxout
from cnnlite.nn.module import Module
from cnnlite.nn.parameter import Parameter

__all__ = ["Conv2d", "Linear", "MaxoutConv2d", "MaxoutLinear"]


def _reset_weight_and_bias(weight, bias, rng):
    """PyTorch's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    init.kaiming_uniform_(weight, a=math.sqrt(5), rng=rng)
    if bias is not None:
        fan_in, _ = init.fan_in_and_fan_out(weight.shape)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound, rng=rng)


class Conv2d(Module):
    """2-d convolution layer: ``y = conv2d(x, weight, bias)``.

    x: (N, in_channels, H, W) -> y: (N, out_channels, OH, OW), OH = (H + 2 p - d (k - 1) - 1) // s + 1

    Parameters
    ----------
    in_channels, out_channels : int >= 1
    kernel_size, stride, padding, dilation : int or (rows, columns)
        Checked as ``F.conv2d`` checks them (``conv_arguments``); kernel_size >= 1.
    groups : int
        Both channel counts must be divisible by it.
    bias : bool

    Attributes
    ----------
    weight : Parameter, (out_channels, in_channels / groups, kh, kw), float32
    bias : Parameter or None, (out_channels,)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True):
        super().__init__()
        name = "Conv2d"
        in_channels = validate.integer(name, "in_channels", in_channels, minimum=1)
        out_channels = validate.integer(name, "out_channels", out_channels, minimum=1)
        name = f"Conv2d({in_channels}->{out_channels})"
        self.kernel_size = validate.pair(name, "kernel_size", kernel_size, minimum=1)
        self.stride, self.padding, self.dilation, groups = conv_arguments(
            name, stride, padding, dilation, groups)
        if in_channels % groups or out_channels % groups:
            raise OpError(f"{name}: in_channels and out_channels must be divisible by "
                          f"groups={groups}")
        bias = validate.boolean(name, "bias", bias)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        # Checked first, so that a too large layer names itself, not NumPy's MemoryError.
        memory.check_allocation(name, "weight", shape, np.float32)
        self.weight = Parameter(np.zeros(shape, dtype=np.float32))
        self.bias = Parameter(np.zeros(out_channels, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        _reset_weight_and_bias(self.weight, self.bias, rng)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise self.input_error(f"(N, {self.in_channels}, H, W)", x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    def describe(self):
        kh, kw = self.kernel_size
        return f"Conv2d({self.in_channels}->{self.out_channels}, k={kh if kh == kw else (kh, kw)})"

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Linear(Module):
    """Fully connected layer: ``y = x @ weight^T + bias``.

    x: (..., in_features) -> y: (..., out_features)

    Attributes
    ----------
    weight : Parameter, (out_features, in_features), float32
    bias : Parameter or None, (out_features,)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = validate.integer("Linear", "in_features", in_features, minimum=1)
        self.out_features = validate.integer("Linear", "out_features", out_features, minimum=1)
        bias = validate.boolean(self.describe(), "bias", bias)
        # Checked first, so that a too large layer names itself, not NumPy's MemoryError.
        memory.check_allocation(self.describe(), "weight", (out_features, in_features),
                                np.float32)
        self.weight = Parameter(np.zeros((out_features, in_features), dtype=np.float32))
        self.bias = Parameter(np.zeros(out_features, dtype=np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        _reset_weight_and_bias(self.weight, self.bias, rng)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise self.input_error(f"(N, {self.in_features})", x)
        return F.linear(x, self.weight, self.bias)

    def describe(self):
        return f"Linear({self.in_features}->{self.out_features})"

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class MaxoutConv2d(Module):
    """Learnable maxout unit on feature maps (Goodfellow et al.): a convolution that makes
    ``pieces * out_channels`` channels, then the maximum of each group of ``pieces``.

    Mishkin et al.'s Caffe models write the same thing as ``pieces`` separate convolutions
    and an element-wise MAX; that is this layer with its filters in another order. Arguments
    after ``pieces`` are those of ``Conv2d``.

    x: (N, in_channels, H, W) -> (N, out_channels, OH, OW)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, pieces: int = 2,
                 **conv_args):
        super().__init__()
        pieces = validate.integer("MaxoutConv2d", "pieces", pieces, minimum=1)
        out_channels = validate.integer("MaxoutConv2d", "out_channels", out_channels, minimum=1)
        self.conv = Conv2d(in_channels, out_channels * pieces, kernel_size, **conv_args)
        self.maxout = Maxout(pieces)

    def forward(self, x):
        return self.maxout(self.conv(x))


class MaxoutLinear(Module):
    """Learnable maxout unit on vectors: a ``Linear`` to ``pieces * out_features`` values,
    then the maximum of each group of ``pieces``.  x: (N, in_features) -> (N, out_features)"""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2, bias: bool = True):
        super().__init__()
        pieces = validate.integer("MaxoutLinear", "pieces", pieces, minimum=1)
        out_features = validate.integer("MaxoutLinear", "out_features", out_features, minimum=1)
        self.linear = Linear(in_features, out_features * pieces, bias)
        self.maxout = Maxout(pieces)

    def forward(self, x):
        return self.maxout(self.linear(x))
