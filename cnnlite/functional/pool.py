"""Pooling: max, average, adaptive, global, stochastic, max+average and spatial pyramid.

Every pooling slides a window over each (H, W) plane of ``x: (N, C, H, W)`` and reduces it to
one number: ``y: (N, C, OH, OW)``. Along one axis, with kernel k, stride s, padding p::

    OH = floor((H + 2p - k) / s) + 1            (floor mode, the default)
    OH = ceil((H + 2p - k) / s) + 1             (ceil mode, as Caffe)

In ceil mode the last window may hang over the end of the padded input; it is dropped if it
would *start* beyond the input and the left padding, i.e. when (OH - 1) s >= H + p. Caffe's
CaffeNet needs ceil mode: 30 -> 15 -> 7 -> 3 through its pool1/2/5 (floor: 30 -> 14 -> 6 -> 2).

Max and average pooling run the hot loops through the kernel registry (reference loops in
``cnnlite/reference/pool.py``, numba in ``cnnlite/cpu/pool.py``); adaptive pooling, with its
few large bins, is written here with array slices over all images and channels at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cnnlite import backend
from cnnlite.autograd import Function
from cnnlite.errors import OpError
from cnnlite.functional.shape import concat, reshape

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
           "global_avg_pool2d", "stochastic_pool2d", "max_avg_pool2d",
           "spatial_pyramid_pool2d"]

_default_rng = np.random.default_rng()


# --- window geometry and argument checks ----------------------------------------------------

def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """The number of windows along one axis (see the module docstring)."""
    span = size + 2 * padding - kernel
    count = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1
    return count


@dataclass(frozen=True)
class PoolWindow:
    """Checked pooling geometry: (rows, columns) pairs of plain ints."""

    kernel_size: tuple
    stride: tuple
    padding: tuple
    output_size: tuple


def _pair(value, what, op, x_shape):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) for v in value)):
        return int(value[0]), int(value[1])
    raise OpError(f"{op}: {what} must be an int or a pair of ints, got {value!r} "
                  f"(x {tuple(x_shape)})")


def _check_input(op, x_shape):
    if len(x_shape) != 4 or min(x_shape[2:]) < 1:
        raise OpError(f"{op}: expected x of shape (N, C, H, W) with H, W >= 1, "
                      f"got {tuple(x_shape)}")


def _check_floating(op, x):
    """Averages of integers would be cut to integers: the averaging poolings want floats."""
    if x.dtype.kind != "f":
        raise OpError(f"{op}: expected a floating-point x, got {x.dtype} x {tuple(x.shape)}")


def pool_window(op, x_shape, kernel_size, stride, padding, ceil_mode) -> PoolWindow:
    """Check the arguments of a sliding-window pooling of ``x_shape``; return its geometry."""
    _check_input(op, x_shape)
    kernel = _pair(kernel_size, "kernel_size", op, x_shape)
    stride = kernel if stride is None else _pair(stride, "stride", op, x_shape)
    padding = _pair(padding, "padding", op, x_shape)
    shape = tuple(x_shape)
    if min(kernel) < 1 or min(stride) < 1:
        raise OpError(f"{op}: kernel_size and stride must be positive, got kernel_size "
                      f"{kernel}, stride {stride} for x {shape}")
    if min(padding) < 0 or any(2 * p > k for p, k in zip(padding, kernel)):
        raise OpError(f"{op}: padding must be between 0 and half the kernel_size, got "
                      f"padding {padding} for kernel_size {kernel} (x {shape})")
    padded = tuple(n + 2 * p for n, p in zip(shape[2:], padding))
    if any(k > n for k, n in zip(kernel, padded)):
        raise OpError(f"{op}: kernel_size {kernel} is larger than the padded input {padded} "
                      f"(x {shape}, padding {padding})")
    output_size = tuple(pool_output_size(n, k, s, p, ceil_mode)
                        for n, k, s, p in zip(shape[2:], kernel, stride, padding))
    return PoolWindow(kernel, stride, padding, output_size)


def adaptive_bins(size: int, count: int):
    """(start, stop) of the ``count`` bins that adaptive pooling cuts an axis of ``size`` into.

    Bin i covers floor(i * size / count) .. ceil((i + 1) * size / count) - 1: the bins cover
    the axis exactly, neighbours overlap by at most one element, and there are always exactly
    ``count`` of them (bins repeat elements when count > size).
    """
    return [(i * size // count, -(-(i + 1) * size // count)) for i in range(count)]


def _adaptive_output_size(op, x_shape, output_size):
    _check_input(op, x_shape)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size, output_size)
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2):
        raise OpError(f"{op}: output_size must be an int or a pair, got {output_size!r} "
                      f"(x {tuple(x_shape)})")
    # None keeps that axis's input size.
    sizes = tuple(n if s is None else s for s, n in zip(output_size, x_shape[2:]))
    if not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
        raise OpError(f"{op}: output_size must be positive, got {output_size!r} "
                      f"(x {tuple(x_shape)})")
    return tuple(int(s) for s in sizes)


# --- the Functions --------------------------------------------------------------------------

class MaxPool2d(Function):
    """y[n, c, i, j] = max of x[n, c] over window (i, j) (padding counts as -inf).

    dL/dx: dL/dy[n, c, i, j] goes to the maximum of its window (the argmax, saved by
    forward); an element that is the maximum of several windows collects all their gradients.
    x: (N, C, H, W) -> y: (N, C, OH, OW)
    """

    def __init__(self, kernel_size, stride, padding, ceil_mode):
        self.args = (kernel_size, stride, padding, ceil_mode)

    def forward(self, x):
        g = pool_window("max_pool2d", x.shape, *self.args)
        y, argmax = backend.kernel("max_pool2d_forward", x)(
            x, g.kernel_size, g.stride, g.padding, g.output_size)
        self.input_size = x.shape[2:]
        self.save_for_backward(argmax)
        return y

    def backward(self, gy):
        (argmax,) = self.saved
        return backend.kernel("max_pool2d_backward", gy)(gy, argmax, self.input_size)


class AvgPool2d(Function):
    """y[n, c, i, j] = sum of x[n, c] over window (i, j) / d(i, j);  dy/dx = 1 / d(i, j).

    The divisor d is the window's area as far as it lies on the padded input (the padding
    counts as zeros) when ``count_include_pad``, else the number of input elements in it.
    x: (N, C, H, W) -> y: (N, C, OH, OW)
    """

    def __init__(self, kernel_size, stride, padding, ceil_mode, count_include_pad):
        self.args = (kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        self.window = g = pool_window("avg_pool2d", x.shape, *self.args)
        _check_floating("avg_pool2d", x)
        self.input_size = x.shape[2:]
        return backend.kernel("avg_pool2d_forward", x)(
            x, g.kernel_size, g.stride, g.padding, g.output_size, self.count_include_pad)

    def backward(self, gy):
        g = self.window
        return backend.kernel("avg_pool2d_backward", gy)(
            gy, self.input_size, g.kernel_size, g.stride, g.padding, self.count_include_pad)


class AdaptiveAvgPool2d(Function):
    """y[n, c, i, j] = mean of x[n, c] over bin (i, j) (see ``adaptive_bins``).

    dL/dx: each dL/dy[n, c, i, j] / (bin area) is added to every element of its bin.
    x: (N, C, H, W) -> y: (N, C, OH, OW)
    """

    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        oh, ow = _adaptive_output_size("adaptive_avg_pool2d", x.shape, self.output_size)
        _check_floating("adaptive_avg_pool2d", x)
        self.bins = adaptive_bins(x.shape[2], oh), adaptive_bins(x.shape[3], ow)
        self.x_shape = x.shape
        y = backend.array_module(x).empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for i, (h0, h1) in enumerate(self.bins[0]):
            for j, (w0, w1) in enumerate(self.bins[1]):
                y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
        return y

    def backward(self, gy):
        gx = backend.array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        for i, (h0, h1) in enumerate(self.bins[0]):
            for j, (w0, w1) in enumerate(self.bins[1]):
                gx[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None] / ((h1 - h0) * (w1 - w0))
        return gx


class AdaptiveMaxPool2d(Function):
    """y[n, c, i, j] = max of x[n, c] over bin (i, j) (see ``adaptive_bins``).

    dL/dx: dL/dy[n, c, i, j] goes to the maximum of its bin (first one on a tie).
    x: (N, C, H, W) -> y: (N, C, OH, OW)
    """

    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        oh, ow = _adaptive_output_size("adaptive_max_pool2d", x.shape, self.output_size)
        xp = backend.array_module(x)
        n, c, h, w = x.shape
        y = xp.empty((n, c, oh, ow), dtype=x.dtype)
        argmax = xp.empty((n, c, oh, ow), dtype=np.int32)
        for i, (h0, h1) in enumerate(adaptive_bins(h, oh)):
            for j, (w0, w1) in enumerate(adaptive_bins(w, ow)):
                patch = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
                k = patch.argmax(axis=2)
                y[:, :, i, j] = xp.take_along_axis(patch, k[..., None], axis=2)[..., 0]
                argmax[:, :, i, j] = (h0 + k // (w1 - w0)) * w + (w0 + k % (w1 - w0))
        self.input_size = (h, w)
        self.save_for_backward(argmax)
        return y

    def backward(self, gy):
        (argmax,) = self.saved
        return backend.kernel("max_pool2d_backward", gy)(gy, argmax, self.input_size)


class GlobalAvgPool2d(Function):
    """y[n, c] = mean of the whole plane x[n, c];  dy/dx = 1 / (H W).

    x: (N, C, H, W) -> y: (N, C, 1, 1)
    """

    def forward(self, x):
        _check_input("global_avg_pool2d", x.shape)
        _check_floating("global_avg_pool2d", x)
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, gy):
        n, c, h, w = self.x_shape
        return backend.array_module(gy).broadcast_to(gy / (h * w), self.x_shape)


def _check_non_negative(op, x):
    if x.size and float(x.min()) < 0:
        raise OpError(f"{op}: x must be non-negative (the sampling probabilities are the "
                      f"activations a_k / sum(a), e.g. after a ReLU); got a minimum of "
                      f"{float(x.min()):.4g} in x {tuple(x.shape)}")


class StochasticPool2d(Function):
    """Training form: y = a_k, element k of each window drawn with probability a_k / sum(a).

    dL/dx: dL/dy goes to the drawn element (y is a copy of it).
    x: (N, C, H, W), non-negative -> y: (N, C, OH, OW)
    """

    def __init__(self, kernel_size, stride, ceil_mode, rng):
        self.args = (kernel_size, stride, 0, ceil_mode)
        self.rng = rng

    def forward(self, x):
        g = pool_window("stochastic_pool2d", x.shape, *self.args)
        _check_non_negative("stochastic_pool2d", x)
        xp = backend.array_module(x)
        uniforms = xp.asarray(self.rng.random(x.shape[:2] + g.output_size))
        y, chosen = backend.kernel("stochastic_pool2d_sample", x)(
            x, g.kernel_size, g.stride, g.output_size, uniforms)
        self.input_size = x.shape[2:]
        self.save_for_backward(chosen)
        return y

    def backward(self, gy):
        (chosen,) = self.saved
        return backend.kernel("max_pool2d_backward", gy)(gy, chosen, self.input_size)


class ProbabilityWeightedPool2d(Function):
    """Test-time form of stochastic pooling: its expected value,

        y = sum_k p_k a_k = S2 / S1,  S1 = sum(a), S2 = sum(a^2);  dy/da_k = (2 a_k - y) / S1

    (y = 0 and no gradient for an all-zero window). x: (N, C, H, W) -> y: (N, C, OH, OW)
    """

    def __init__(self, kernel_size, stride, ceil_mode):
        self.args = (kernel_size, stride, 0, ceil_mode)

    def forward(self, x):
        self.window = g = pool_window("stochastic_pool2d", x.shape, *self.args)
        _check_floating("stochastic_pool2d", x)
        _check_non_negative("stochastic_pool2d", x)
        self.save_for_backward(x)
        return backend.kernel("probability_weighted_pool2d_forward", x)(
            x, g.kernel_size, g.stride, g.output_size)

    def backward(self, gy):
        (x,) = self.saved
        return backend.kernel("probability_weighted_pool2d_backward", gy)(
            gy, x, self.window.kernel_size, self.window.stride)


# --- the functional API ---------------------------------------------------------------------

def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
    """Max pooling. ``kernel_size``, ``stride`` (default: ``kernel_size``) and ``padding`` are
    ints or (rows, columns) pairs; padding is at most half the kernel and counts as -inf.

    x: (N, C, H, W) -> (N, C, OH, OW), OH as in the module docstring.
    """
    return MaxPool2d(kernel_size, stride, padding, ceil_mode)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """Average pooling; arguments as ``max_pool2d``. Padding counts as zeros; with
    ``count_include_pad`` the divisor includes the padded elements a window covers (but not the
    part of a ceil-mode window beyond the padding), otherwise only the input elements.
    """
    return AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad)(x)


def adaptive_avg_pool2d(x, output_size):
    """Mean over ``output_size`` (int, pair; None in a pair keeps that axis) bins per axis,
    bin i spanning floor(i H / OH) .. ceil((i + 1) H / OH). x: (N, C, H, W) -> (N, C, OH, OW)."""
    return AdaptiveAvgPool2d(output_size)(x)


def adaptive_max_pool2d(x, output_size):
    """Maximum over the bins of ``adaptive_avg_pool2d``. x: (N, C, H, W) -> (N, C, OH, OW)."""
    return AdaptiveMaxPool2d(output_size)(x)


def global_avg_pool2d(x):
    """Mean over each whole (H, W) plane. x: (N, C, H, W) -> (N, C, 1, 1)."""
    return GlobalAvgPool2d()(x)


def stochastic_pool2d(x, kernel_size, stride=None, training: bool = True, rng=None,
                      ceil_mode: bool = False):
    """Stochastic pooling (Zeiler and Fergus) of a non-negative ``x``, no padding.

    Training: each window outputs one of its elements, drawn with probability a_k / sum(a)
    from ``rng`` (a NumPy Generator; default: a module-level one); the gradient goes to that
    element. Evaluation: the expected value sum(a^2) / sum(a), differentiable. An all-zero
    window gives 0 either way. ``ceil_mode`` clips the last windows to the input, as Caffe.
    x: (N, C, H, W) -> (N, C, OH, OW)
    """
    if training:
        rng = _default_rng if rng is None else rng
        return StochasticPool2d(kernel_size, stride, ceil_mode, rng)(x)
    return ProbabilityWeightedPool2d(kernel_size, stride, ceil_mode)(x)


def max_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
    """Max pooling plus average pooling of the same windows (Mishkin et al.'s "max+avg").

    The average counts the padding (``count_include_pad=True``), as Caffe's AVE pooling.
    x: (N, C, H, W) -> (N, C, OH, OW)
    """
    # Checked here too, so that a bad call names this op, not the max_pool2d inside it.
    pool_window("max_avg_pool2d", x.shape, kernel_size, stride, padding, ceil_mode)
    _check_floating("max_avg_pool2d", x)
    return (max_pool2d(x, kernel_size, stride, padding, ceil_mode)
            + avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad=True))


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode: str = "max"):
    """Spatial pyramid pooling (He et al.): a fixed-length vector from a map of any size.

    For each level n the map is pooled into n x n bins and flattened to (N, C n^2); the levels
    are concatenated: x: (N, C, H, W) -> (N, C * sum(n^2)). The bins are those of adaptive
    pooling (bin i spans floor(i H / n) .. ceil((i + 1) H / n)), which always gives exactly
    n x n bins covering the whole map. The paper's window ceil(H / n) with stride floor(H / n)
    does not: for H = 7, n = 4 it gives 6 windows.
    """
    # Checked here, so that a bad call names this op, not the adaptive pooling inside it.
    _check_input("spatial_pyramid_pool2d", x.shape)
    if mode not in ("max", "avg"):
        raise OpError(f"spatial_pyramid_pool2d: mode must be 'max' or 'avg', got {mode!r} "
                      f"(x {tuple(x.shape)})")
    sizes = tuple(levels) if hasattr(levels, "__iter__") else ()
    if not sizes or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in sizes):
        raise OpError(f"spatial_pyramid_pool2d: levels must be positive ints, got {levels!r} "
                      f"(x {tuple(x.shape)})")
    if mode == "avg":
        _check_floating("spatial_pyramid_pool2d", x)
    pool = adaptive_max_pool2d if mode == "max" else adaptive_avg_pool2d
    pooled = [pool(x, int(n)) for n in sizes]
    return concat([reshape(p, (p.shape[0], math.prod(p.shape[1:]))) for p in pooled], axis=1)
