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

from cnnlite import backend, memory, validate
from cnnlite.autograd import Function
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.functional.dropout import random_generator
from cnnlite.functional.shape import concat, reshape
from cnnlite.tensor import as_tensor

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


def _check_input(op, x_shape):
    """x: (N, C, H, W); an empty batch (N = 0) is fine, an empty image or no channels is not
    (PyTorch refuses them too)."""
    if len(x_shape) != 4 or min(x_shape[1:]) < 1:
        raise OpError(f"{op}: expected x of shape (N, C, H, W) with C, H, W >= 1, "
                      f"got {tuple(x_shape)}")


def pool_arguments(where, kernel_size, stride, padding, ceil_mode):
    """The checked arguments of a sliding-window pooling: kernel, stride, padding as (rows,
    columns) pairs of ints, and ceil_mode. The functional ops and the layers (``nn.MaxPool2d``,
    ...) both call it, so both refuse the same things: ``True`` or ``1.5`` as a size, a stride
    of ``2**63``, ``ceil_mode="no"``, padding beyond half the kernel."""
    kernel = validate.pair(where, "kernel_size", kernel_size, minimum=1)
    stride = kernel if stride is None else validate.pair(where, "stride", stride, minimum=1)
    padding = validate.pair(where, "padding", padding, minimum=0)
    ceil_mode = validate.boolean(where, "ceil_mode", ceil_mode)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise OpError(f"{where}: padding must be at most half the kernel_size, got padding "
                      f"{padding} for kernel_size {kernel}")
    return kernel, stride, padding, ceil_mode


def pool_window(op, x_shape, kernel_size, stride, padding, ceil_mode) -> PoolWindow:
    """Check the arguments of a sliding-window pooling of ``x_shape``; return its geometry."""
    _check_input(op, x_shape)
    kernel, stride, padding, ceil_mode = pool_arguments(op, kernel_size, stride, padding,
                                                        ceil_mode)
    shape = tuple(x_shape)
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


def adaptive_output_size(where, output_size):
    """The checked ``output_size`` of an adaptive pooling: a pair of ints >= 1 or None (None
    keeps that axis's input size), from an int, a pair or None."""
    if output_size is None or validate.is_integer(output_size):
        output_size = (output_size, output_size)
    if not (isinstance(output_size, (tuple, list)) and len(output_size) == 2):
        raise ArgumentTypeError(f"{where}: output_size must be an int or a pair of ints (or "
                                f"None), got {type(output_size).__name__} {output_size!r}")
    return tuple(None if s is None else validate.integer(where, f"output_size[{i}]", s,
                                                         minimum=1)
                 for i, s in enumerate(output_size))


def _adaptive_output_size(op, x_shape, output_size):
    _check_input(op, x_shape)
    sizes = adaptive_output_size(op, output_size)
    return tuple(n if s is None else s for s, n in zip(sizes, x_shape[2:]))


def pyramid_arguments(where, levels, mode):
    """The checked ``levels`` (a non-empty sequence of ints >= 1) and ``mode`` of spatial
    pyramid pooling."""
    if mode not in ("max", "avg"):
        raise OpError(f"{where}: mode must be 'max' or 'avg', got {mode!r}")
    sizes = tuple(levels) if hasattr(levels, "__iter__") and not isinstance(levels, str) else ()
    if not sizes:
        raise ArgumentTypeError(f"{where}: levels must be a non-empty sequence of ints, got "
                                f"{type(levels).__name__} {levels!r}")
    return tuple(validate.integer(where, f"levels[{i}]", n, minimum=1)
                 for i, n in enumerate(sizes)), mode


def stochastic_arguments(where, training, rng):
    """The checked ``training`` switch and ``rng`` (None or a NumPy Generator) of stochastic
    pooling."""
    return validate.boolean(where, "training", training), random_generator(where, rng)


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
        self.count_include_pad = validate.boolean("avg_pool2d", "count_include_pad",
                                                  count_include_pad)

    def forward(self, x):
        self.window = g = pool_window("avg_pool2d", x.shape, *self.args)
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
        op = self.op_name or "adaptive_avg_pool2d"  # spatial_pyramid_pool2d names itself
        oh, ow = _adaptive_output_size(op, x.shape, self.output_size)
        self.bins = adaptive_bins(x.shape[2], oh), adaptive_bins(x.shape[3], ow)
        self.x_shape = x.shape
        xp = backend.array_module(x)
        memory.check_allocation(op, "output", x.shape[:2] + (oh, ow),
                                x.dtype, xp=xp)
        y = xp.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
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
        op = self.op_name or "adaptive_max_pool2d"  # spatial_pyramid_pool2d names itself
        oh, ow = _adaptive_output_size(op, x.shape, self.output_size)
        xp = backend.array_module(x)
        n, c, h, w = x.shape
        memory.check_allocation(op, "output and argmax", (n, c, oh, ow),
                                x.dtype, np.int32, xp=xp)
        y = xp.empty((n, c, oh, ow), dtype=x.dtype)
        argmax = xp.empty((n, c, oh, ow), dtype=np.int32)
        for i, (h0, h1) in enumerate(adaptive_bins(h, oh)):
            for j, (w0, w1) in enumerate(adaptive_bins(w, ow)):
                patch = x[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
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
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True)

    def backward(self, gy):
        n, c, h, w = self.x_shape
        return backend.array_module(gy).broadcast_to(gy / (h * w), self.x_shape)


def _check_non_negative(op, x):
    """The sampling probabilities are a_k / sum(a): no negative value and no NaN (whose
    minimum is NaN, so ``not >= 0``)."""
    if x.size and not float(x.min()) >= 0:
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
    training, rng = stochastic_arguments("stochastic_pool2d", training, rng)
    if training:
        rng = _default_rng if rng is None else rng
        return StochasticPool2d(kernel_size, stride, ceil_mode, rng)(x)
    expected = ProbabilityWeightedPool2d(kernel_size, stride, ceil_mode)
    return expected.named("stochastic_pool2d")(x)


def max_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
    """Max pooling plus average pooling of the same windows (Mishkin et al.'s "max+avg").

    The average counts the padding (``count_include_pad=True``), as Caffe's AVE pooling.
    x: (N, C, H, W) -> (N, C, OH, OW)
    """
    # Checked here too, so that a bad call names this op, not the max_pool2d inside it.
    x = as_tensor(x, op_name="max_avg_pool2d")
    pool_window("max_avg_pool2d", x.shape, kernel_size, stride, padding, ceil_mode)
    largest = MaxPool2d(kernel_size, stride, padding, ceil_mode).named("max_avg_pool2d")(x)
    mean = AvgPool2d(kernel_size, stride, padding, ceil_mode, True).named("max_avg_pool2d")(x)
    return largest + mean


def spatial_pyramid_pool2d(x, levels=(1, 2, 4), mode: str = "max"):
    """Spatial pyramid pooling (He et al.): a fixed-length vector from a map of any size.

    For each level n the map is pooled into n x n bins and flattened to (N, C n^2); the levels
    are concatenated: x: (N, C, H, W) -> (N, C * sum(n^2)). The bins are those of adaptive
    pooling (bin i spans floor(i H / n) .. ceil((i + 1) H / n)), which always gives exactly
    n x n bins covering the whole map. The paper's window ceil(H / n) with stride floor(H / n)
    does not: for H = 7, n = 4 it gives 6 windows.
    """
    # Checked here, so that a bad call names this op, not the adaptive pooling inside it.
    x = as_tensor(x, op_name="spatial_pyramid_pool2d")
    _check_input("spatial_pyramid_pool2d", x.shape)
    sizes, mode = pyramid_arguments("spatial_pyramid_pool2d", levels, mode)
    pool = AdaptiveMaxPool2d if mode == "max" else AdaptiveAvgPool2d
    pooled = [pool(n).named("spatial_pyramid_pool2d")(x) for n in sizes]
    return concat([reshape(p, (p.shape[0], math.prod(p.shape[1:]))) for p in pooled], axis=1)
