"""Learned poolings of Lee, Gallagher and Tu ("Generalizing Pooling Functions in Convolutional
Neural Networks: Mixed, Gated, and Tree", AISTATS 2016), and the per-channel affine map.

Both poolings weigh each window x_R of x: (N, C, H, W) with masks of the window's shape
(kh, kw), learned and shared by all images and channels. The gate

    s = sigmoid(gate . x_R)              (the sum over the window of gate * x_R)

makes them *responsive*: how the window is pooled depends on what is in it.

* Gated max-average pooling (the paper's section 2.2):
  ``y = s max(x_R) + (1 - s) mean(x_R)``. A gate of large positive weights on a positive
  input gives max pooling, of large negative weights average pooling.
* Tree pooling of depth 2 (section 2.3): two learned pooling filters at the leaves, combined by
  the gate at the root: ``y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R)``. With both leaves
  1 / (kh kw) it is average pooling.

Windows follow the authors' Caffe layers: no padding, Caffe's ceil mode (the last window of a
row or column may be clipped by the input's edge; a clipped window uses the top-left part of
each mask, and its mean divides by the elements it holds). The output size along an axis is
ceil((H - k) / s) + 1, as ``pool_output_size(H, k, s, 0, ceil_mode=True)``.

The loops are in ``cnnlite/reference/generalized_pool.py``, the numba kernels in
``cnnlite/cpu/generalized_pool.py``. ``eltwise_affine``, a broadcast, runs here on every device.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.autograd import Function
from cnnlite.errors import OpError
from cnnlite.functional.math import sum_to
from cnnlite.functional.pool import pool_window
from cnnlite.tensor import Tensor

__all__ = ["gated_max_ave_pool2d", "tree_pool2d", "eltwise_affine"]


def _window_and_masks(op, x, masks, stride):
    """Check x: (N, C, H, W) and the masks (all 2-d, of one shape: the window); return the
    window geometry and the arrays in one dtype (the widest of them)."""
    shapes = {name: tuple(mask.shape) for name, mask in masks.items()}
    if any(len(shape) != 2 for shape in shapes.values()) or len(set(shapes.values())) != 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise OpError(f"{op}: expected {' and '.join(masks)} of one shape (kh, kw), the window "
                      f"(shared by all channels), got {listing} for x {tuple(x.shape)}")
    window = pool_window(op, x.shape, next(iter(shapes.values())), stride, 0, True)
    xp = backend.array_module(x)
    dtype = xp.result_type(x, *masks.values())
    return window, [a.astype(dtype, copy=False) for a in (x, *masks.values())]


class GatedMaxAvePool2d(Function):
    """y = s max(x_R) + (1 - s) mean(x_R), s = sigmoid(gate . x_R), for every window R.

    x: (N, C, H, W), gate: (kh, kw) -> y: (N, C, OH, OW). With m = max(x_R), a = mean(x_R),
    |R| the window's number of elements and (p, q) the position of x[u, v] in the window:

        dy/dx[u, v]    = s [x[u, v] is the maximum] + (1 - s) / |R| + s (1 - s) (m - a) gate[p, q]
        dy/dgate[p, q] = s (1 - s) (m - a) x[u, v]      (summed over images, channels, windows)

    The maximum's gradient goes to the first maximum of the window (saved by forward).
    """

    def __init__(self, stride):
        self.stride = stride

    def forward(self, x, gate):
        window, (x, gate) = _window_and_masks("gated_max_ave_pool2d", x, {"gate": gate},
                                              self.stride)
        self.window = window
        y, argmax = backend.kernel("gated_max_ave_pool2d_forward", x)(
            x, gate, window.kernel_size, window.stride, window.output_size)
        self.save_for_backward(x, gate, argmax)
        return y

    def backward(self, gy):
        x, gate, argmax = self.saved
        return backend.kernel("gated_max_ave_pool2d_backward", gy)(
            gy, x, gate, argmax, self.window.kernel_size, self.window.stride)


class TreePool2d(Function):
    """y = s l + (1 - s) r with l = leaf1 . x_R, r = leaf2 . x_R, s = sigmoid(gate . x_R).

    x: (N, C, H, W); leaf1, leaf2, gate: (kh, kw) -> y: (N, C, OH, OW). With (p, q) the
    position of x[u, v] in the window (the mask gradients summed over images, channels and
    windows):

        dy/dx[u, v]     = s leaf1[p, q] + (1 - s) leaf2[p, q] + s (1 - s) (l - r) gate[p, q]
        dy/dleaf1[p, q] = s x[u, v]
        dy/dleaf2[p, q] = (1 - s) x[u, v]
        dy/dgate[p, q]  = s (1 - s) (l - r) x[u, v]
    """

    def __init__(self, stride):
        self.stride = stride

    def forward(self, x, leaf1, leaf2, gate):
        window, arrays = _window_and_masks(
            "tree_pool2d", x, {"leaf1": leaf1, "leaf2": leaf2, "gate": gate}, self.stride)
        self.window = window
        self.save_for_backward(*arrays)
        return backend.kernel("tree_pool2d_forward", x)(
            *arrays, window.kernel_size, window.stride, window.output_size)

    def backward(self, gy):
        x, leaf1, leaf2, gate = self.saved
        return backend.kernel("tree_pool2d_backward", gy)(
            gy, x, leaf1, leaf2, gate, self.window.kernel_size, self.window.stride)


class EltwiseAffine(Function):
    """y[n, c, ...] = slope[c] x[n, c, ...] + bias[c]: a learned scale and shift per channel.

    x: (N, C, ...) with at least 2 axes; slope, bias: (C,), or (1,) for one pair shared by all
    channels -> y: x's shape.

        dL/dx = slope[c] dL/dy;  dL/dslope[c] = sum of dL/dy * x and dL/dbias[c] = sum of dL/dy,
        both over every position of channel c (of all channels when shared).
    """

    def forward(self, x, slope, bias):
        channels = x.shape[1] if x.ndim >= 2 else None
        for name, vector in (("slope", slope), ("bias", bias)):
            if channels is None or vector.ndim != 1 or vector.shape[0] not in (1, channels):
                raise OpError(f"eltwise_affine: expected x of shape (N, C, ...) and slope and "
                              f"bias of shape (C,) or (1,), got x {tuple(x.shape)} and {name} "
                              f"{tuple(vector.shape)}")
        if slope.shape != bias.shape:
            raise OpError(f"eltwise_affine: slope and bias must have one shape, got slope "
                          f"{tuple(slope.shape)} and bias {tuple(bias.shape)} for x "
                          f"{tuple(x.shape)}")
        self.view = (1, slope.shape[0]) + (1,) * (x.ndim - 2)
        self.save_for_backward(x, slope)
        return x * slope.reshape(self.view) + bias.reshape(self.view)

    def backward(self, gy):
        x, slope = self.saved
        gx = gy * slope.reshape(self.view) if self.needs_input_grad[0] else None
        gslope = sum_to(gy * x, self.view).reshape(-1) if self.needs_input_grad[1] else None
        gbias = sum_to(gy, self.view).reshape(-1) if self.needs_input_grad[2] else None
        return gx, gslope, gbias


# --- the functional API ---------------------------------------------------------------------

def gated_max_ave_pool2d(x: Tensor, gate: Tensor, stride=None) -> Tensor:
    """Gated max-average pooling (Lee et al. 2016, section 2.2):
    ``y = s max(x_R) + (1 - s) mean(x_R)`` with ``s = sigmoid(gate . x_R)``.

    Parameters
    ----------
    x : Tensor, (N, C, H, W)
    gate : Tensor, (kh, kw)
        The gating mask; its shape is the window's. Shared by all channels.
    stride : int or (rows, columns), optional
        Default: the window's size.

    Returns
    -------
    Tensor, (N, C, OH, OW), OH = ceil((H - kh) / stride) + 1 (Caffe's ceil mode, no padding).
    """
    return GatedMaxAvePool2d(stride)(x, gate)


def tree_pool2d(x: Tensor, leaf1: Tensor, leaf2: Tensor, gate: Tensor, stride=None) -> Tensor:
    """Tree pooling of depth 2 (Lee et al. 2016, section 2.3):
    ``y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R)`` with ``s = sigmoid(gate . x_R)``.

    Parameters
    ----------
    x : Tensor, (N, C, H, W)
    leaf1, leaf2 : Tensor, (kh, kw)
        The learned pooling filters at the leaves; shared by all channels.
    gate : Tensor, (kh, kw)
        The gating mask at the root. The three masks have one shape: the window's.
    stride : int or (rows, columns), optional
        Default: the window's size.

    Returns
    -------
    Tensor, (N, C, OH, OW), OH = ceil((H - kh) / stride) + 1 (Caffe's ceil mode, no padding).
    """
    return TreePool2d(stride)(x, leaf1, leaf2, gate)


def eltwise_affine(x: Tensor, slope: Tensor, bias: Tensor) -> Tensor:
    """A learned scale and shift per channel: ``y[:, c] = slope[c] * x[:, c] + bias[c]``.

    Parameters
    ----------
    x : Tensor, (N, C, ...)
    slope, bias : Tensor, (C,), or (1,) for one pair shared by all channels.

    Returns
    -------
    Tensor of x's shape.
    """
    return EltwiseAffine()(x, slope, bias)
