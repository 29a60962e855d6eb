"""Pooling layers: each wraps one op of ``cnnlite.functional.pool``. None has weights.

All take x: (N, C, H, W). Caffe rounds pooled sizes up, PyTorch down: ``ceil_mode=True``
gives Caffe's sizes (CaffeNet's pool5 is 3x3 with it, 2x2 without).

Each layer checks its arguments when it is built, with the functions its op uses
(``cnnlite.functional.pool``), so a layer refuses exactly what its op refuses.
"""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F, validate
from cnnlite.functional.pool import (adaptive_output_size, pool_arguments, pyramid_arguments,
                                     stochastic_arguments)
from cnnlite.nn.module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
           "GlobalAvgPool2d", "StochasticPool2d", "MaxAvgPool2d", "SpatialPyramidPool2d"]


class _Pool2d(Module):
    """Shared by the windowed poolings: kernel, stride (default: the kernel), padding."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        pool_arguments(type(self).__name__, kernel_size, stride, padding, ceil_mode)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def check(self, x):
        x = self.as_input(x)
        if x.ndim != 4:
            raise self.input_error("(N, C, H, W)", x)

    def describe(self):
        return f"{type(self).__name__}(k={self.kernel_size}, s={self.stride})"

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return text + (", ceil_mode=True" if self.ceil_mode else "")


class MaxPool2d(_Pool2d):
    """Maximum of each window; padding counts as -inf."""

    def forward(self, x):
        self.check(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class AvgPool2d(_Pool2d):
    """Mean of each window; ``count_include_pad`` counts padded zeros in the divisor."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = validate.boolean("AvgPool2d", "count_include_pad",
                                                  count_include_pad)

    def forward(self, x):
        self.check(x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self):
        extra = "" if self.count_include_pad else ", count_include_pad=False"
        return super().extra_repr() + extra


class MaxAvgPool2d(_Pool2d):
    """Max pooling plus average pooling of the same windows (Mishkin et al.'s "max+avg")."""

    def forward(self, x):
        self.check(x)
        return F.max_avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class StochasticPool2d(_Pool2d):
    """Stochastic pooling (Zeiler and Fergus) of non-negative inputs: while training each
    window outputs one element drawn with probability proportional to its value (from
    ``rng``); in evaluation the probability-weighted mean. No padding."""

    def __init__(self, kernel_size, stride=None, ceil_mode: bool = False,
                 rng: np.random.Generator | None = None):
        super().__init__(kernel_size, stride, 0, ceil_mode)
        _, self.rng = stochastic_arguments("StochasticPool2d", True, rng)

    def forward(self, x):
        self.check(x)
        return F.stochastic_pool2d(x, self.kernel_size, self.stride, training=self.training,
                                   rng=self.rng, ceil_mode=self.ceil_mode)


class _AdaptivePool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        adaptive_output_size(type(self).__name__, output_size)
        self.output_size = output_size

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim != 4:
            raise self.input_error("(N, C, H, W)", x)
        return self.pool(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Mean over an ``output_size`` grid of bins that cover the input, whatever its size."""

    pool = staticmethod(F.adaptive_avg_pool2d)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Maximum over an ``output_size`` grid of bins that cover the input."""

    pool = staticmethod(F.adaptive_max_pool2d)


class GlobalAvgPool2d(Module):
    """Mean of each whole feature map: (N, C, H, W) -> (N, C, 1, 1) (Network in Network)."""

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim != 4:
            raise self.input_error("(N, C, H, W)", x)
        return F.global_avg_pool2d(x)


class SpatialPyramidPool2d(Module):
    """Spatial pyramid pooling (He et al.): pool into n x n bins for each n in ``levels`` and
    concatenate, so any map size gives (N, C * sum(n^2))."""

    def __init__(self, levels=(1, 2, 4), mode: str = "max"):
        super().__init__()
        self.levels, self.mode = pyramid_arguments("SpatialPyramidPool2d", levels, mode)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim != 4:
            raise self.input_error("(N, C, H, W)", x)
        return F.spatial_pyramid_pool2d(x, self.levels, self.mode)

    def extra_repr(self):
        return f"levels={self.levels}, mode={self.mode!r}"
