"""Learned poolings (Lee, Gallagher and Tu, AISTATS 2016) and the per-channel affine layer, as
the custom Caffe layers of Mishkin et al.'s benchmark define them.

=====================  =======================  ===========================================
cnnlite layer          Caffe type               parameters, in the prototxt's ``param`` order
=====================  =======================  ===========================================
GatedMaxAvePool2d      GatedMaxAve              gate (kh, kw)
TreePoolMaxAve2d       TreepoolMaxAve           gate (kh, kw)
TreePool2d             TreepoolKernel1L         leaf1, leaf2, gate (each (kh, kw))
EltwiseAffine          EltwiseAffine            slope (C,), bias (C,)
=====================  =======================  ===========================================

The pooling layers take Caffe's ``convolution_param`` ``kernel_size`` and ``stride``; Caffe
keeps each mask as a (1, 1, kh, kw) blob, cnnlite as (kh, kw). ``parameters()`` yields them in
the order of the table, so a builder can hand the prototxt's ``param`` entries (and the
fillers) to them in order. The masks are shared by all channels, so the layers need no channel
count. Windows: no padding, Caffe's ceil mode (see ``cnnlite.functional.generalized_pool``).
"""
from __future__ import annotations

import numpy as np

from cnnlite import validate
from cnnlite.functional.generalized_pool import eltwise_affine, gated_max_ave_pool2d, tree_pool2d
from cnnlite.functional.pool import pool_arguments
from cnnlite.nn import init
from cnnlite.nn.module import Module
from cnnlite.nn.parameter import Parameter

__all__ = ["GatedMaxAvePool2d", "TreePoolMaxAve2d", "TreePool2d", "EltwiseAffine"]


class _LearnedPool2d(Module):
    """Shared by the learned poolings: the window (kernel_size), the stride (default: the
    kernel_size) and the check that x is (N, C, H, W)."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        name = type(self).__name__
        kernel, stride, _, _ = pool_arguments(name, kernel_size, stride, 0, True)
        self.kernel_size, self.stride = kernel, stride

    def mask(self) -> Parameter:
        """A new (kh, kw) float32 mask, to be filled by ``reset_parameters``."""
        return Parameter(np.zeros(self.kernel_size, dtype=np.float32))

    def check(self, x):
        x = self.as_input(x)
        if x.ndim != 4:
            raise self.input_error("(N, C, H, W)", x)
        return x

    def describe(self):
        kh, kw = self.kernel_size
        sh, sw = self.stride
        return (f"{type(self).__name__}(k={kh if kh == kw else (kh, kw)}, "
                f"s={sh if sh == sw else (sh, sw)})")

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class GatedMaxAvePool2d(_LearnedPool2d):
    """Gated max-average pooling (Lee et al., section 2.2; Caffe type ``GatedMaxAve``):
    ``y = s max(x_R) + (1 - s) mean(x_R)``, ``s = sigmoid(gate . x_R)``, for every window R.

    x: (N, C, H, W) -> y: (N, C, OH, OW), OH = ceil((H - kh) / stride) + 1.

    Parameters
    ----------
    kernel_size : int or (rows, columns)
    stride : int or (rows, columns), optional
        Default: kernel_size.

    Attributes
    ----------
    gate : Parameter, (kh, kw), float32
        The gating mask, shared by all channels; Caffe's only ``param``. Starts at 0.5 (the
        benchmark's filler: constant 0.5).

    The authors' GatedMaxAve CUDA kernel weighs the elements of a window that the input's edge
    clips with the mask entries in reading order (so in a window cut to 2 columns, the second
    row meets ``gate[0, 2]``); cnnlite weighs every element by the entry at its position in
    the window, as ``TreepoolMaxAve`` does. Full windows are pooled alike.
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__(kernel_size, stride)
        self.gate = self.mask()
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        """gate = 0.5 everywhere (rng is accepted for a uniform interface; nothing is drawn)."""
        init.constant_(self.gate, 0.5)

    def forward(self, x):
        return gated_max_ave_pool2d(self.check(x), self.gate, self.stride)


class TreePoolMaxAve2d(GatedMaxAvePool2d):
    """Caffe type ``TreepoolMaxAve``: gated max-average pooling again (a gate at the root of a
    tree whose two leaves are max and average pooling), ``y = s max(x_R) + (1 - s) mean(x_R)``.

    Reading: the paper combines the two ideas as "tree + max-avg" (tree pooling in the lower
    pooling layer, gated max-average pooling above it); the benchmark's ``treepool_128_*``
    networks are built that way (``TreepoolKernel1L`` at pool1, ``TreepoolMaxAve`` with a single
    ``param``, the gating mask, at pool2 and pool5), and the authors' Caffe kernel for
    ``TreepoolMaxAve`` computes exactly ``sigmoid(w . x_R) max + (1 - sigmoid(w . x_R)) mean``
    with one (kh, kw) mask. Only the initial gate differs from ``GatedMaxAvePool2d``.

    Attributes
    ----------
    gate : Parameter, (kh, kw), float32
        The gating mask, Caffe's only ``param``; drawn from N(0, 0.1^2) (the benchmark's
        filler: gaussian, std 0.1).
    """

    def reset_parameters(self, rng=None):
        init.normal_(self.gate, 0.0, 0.1, rng=rng)


class TreePool2d(_LearnedPool2d):
    """Tree pooling of depth 2 (Lee et al., section 2.3; Caffe type ``TreepoolKernel1L``): two
    learned pooling filters at the leaves, a learned gate at the root,
    ``y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R)``, ``s = sigmoid(gate . x_R)``.

    x: (N, C, H, W) -> y: (N, C, OH, OW), OH = ceil((H - kh) / stride) + 1.

    Parameters
    ----------
    kernel_size : int or (rows, columns)
    stride : int or (rows, columns), optional
        Default: kernel_size.
    std : float
        Standard deviation of the normal draw of all three masks (the benchmark's filler:
        gaussian, std 1 in ``caffenet_lsuv_treepool_l1``, 0.1 in ``treepool_128_*``).

    Attributes
    ----------
    leaf1, leaf2, gate : Parameter, (kh, kw), float32
        Caffe's three ``param`` entries, in this order (the authors' blobs v1, v2, w).
    """

    def __init__(self, kernel_size, stride=None, std: float = 1.0):
        super().__init__(kernel_size, stride)
        self.std = validate.real(type(self).__name__, "std", std, minimum=0.0)
        self.leaf1, self.leaf2, self.gate = self.mask(), self.mask(), self.mask()
        self.reset_parameters()

    def reset_parameters(self, rng=None):
        for mask in (self.leaf1, self.leaf2, self.gate):
            init.normal_(mask, 0.0, self.std, rng=rng)

    def forward(self, x):
        return tree_pool2d(self.check(x), self.leaf1, self.leaf2, self.gate, self.stride)


class EltwiseAffine(Module):
    """A learned scale and shift per channel (Caffe type ``EltwiseAffine``):
    ``y[:, c] = slope[c] * x[:, c] + bias[c]``, e.g. after a batch norm without its own affine
    part. x: (N, C, ...) -> y: x's shape.

    Parameters
    ----------
    channels : int
        C, the size of axis 1.
    channel_shared : bool
        One slope and one bias for all channels (Caffe's ``channel_shared``); then C is not
        checked.

    Attributes
    ----------
    slope : Parameter, (C,) or (1,), float32
        Caffe's first ``param``; starts at 1.
    bias : Parameter, (C,) or (1,), float32
        Caffe's second ``param``; starts at 0 (the benchmark's prototxts set 0.0001).
    """

    def __init__(self, channels: int, channel_shared: bool = False):
        super().__init__()
        self.channels = validate.integer("EltwiseAffine", "channels", channels, minimum=1)
        self.channel_shared = validate.boolean("EltwiseAffine", "channel_shared",
                                               channel_shared)
        size = 1 if self.channel_shared else self.channels
        self.slope = Parameter(np.ones(size, dtype=np.float32))
        self.bias = Parameter(np.zeros(size, dtype=np.float32))

    def reset_parameters(self, rng=None):
        """slope = 1, bias = 0 (nothing is drawn)."""
        init.ones_(self.slope)
        init.zeros_(self.bias)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim < 2 or not (self.channel_shared or x.shape[1] == self.channels):
            raise self.input_error(f"(N, {'C' if self.channel_shared else self.channels}, ...)",
                                   x)
        return eltwise_affine(x, self.slope, self.bias)

    def describe(self):
        return f"EltwiseAffine({self.channels})"

    def extra_repr(self):
        return f"{self.channels}" + (", channel_shared=True" if self.channel_shared else "")
