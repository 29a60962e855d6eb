"""The table's layers: convolution, linear, pooling, normalisation, dropout
(``cnnlite/functional/conv.py``, ``pool.py``, ``generalized_pool.py``, ``norm.py``,
``dropout.py``).

These are the hot ops: each dispatches kernels, so each runs as the reference loops, the numba
kernels, the CUDA kernels through the host harness and, with a GPU, on the GPU. Their NumPy
formulas below (windows through ``sliding_window_view``) are a second, independent reference:
the grader needs no PyTorch, and the loops are checked against something other than
themselves. Ops written once with array slices (adaptive, global and pyramid pooling, linear,
the per-channel affine map) run as called and as their readable loops ("direct").

The examples and strategies reach what each op's tests used to reach one by one: asymmetric
kernels and strides, padding, ceil mode (windows past the padded input), count_include_pad,
groups and dilation, adaptive sizes past the input, pyramid levels, LRN windows odd, even and
wider than the channels, batch norm on 2-d, 3-d and 4-d inputs with long channels.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlite import functional as F
from cnnlite.optable.inputs import distinct, positive, uniform
from cnnlite.optable.lazy_torch import TF, torch
from cnnlite.optable.loops import Loops
from cnnlite.optable.spec import OpSpec
from cnnlite.reference import conv as conv_loops
from cnnlite.reference import generalized_pool as generalized_loops
from cnnlite.reference import linear as linear_loops
from cnnlite.reference import pool as pool_loops

HOT = ("loops", "numba", "cuda-host", "gpu")


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _as_written(pair):
    """A square (k, k) as the plain int k, the way it is usually written; None stays None."""
    return pair[0] if pair is not None and pair[0] == pair[1] else pair


def windows(x, kernel, stride, padding, dilation=(1, 1), fill=0.0):
    """The receptive fields of x: (N, C, OH, OW, kh, kw), padded with ``fill``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = sliding_window_view(padded, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


# --- convolution and linear --------------------------------------------------------------------

def conv2d_numpy(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o] = b[o] + sum over the group's channels and the window of w[o] * x_window."""
    fields = windows(x, w.shape[2:], stride, padding, dilation)     # N, C, OH, OW, kh, kw
    n, c = x.shape[:2]
    o = w.shape[0]
    fields = fields.reshape(n, groups, c // groups, *fields.shape[2:])
    weights = w.reshape(groups, o // groups, *w.shape[1:])
    y = np.einsum("ngchwij,gocij->ngohw", fields, weights).reshape(n, o, *fields.shape[3:5])
    return y if b is None else y + b.reshape(1, -1, 1, 1)


class Conv2dLoops(Loops):
    """conv2d as the direct loops of ``cnnlite.reference.conv``: ``conv2d_forward`` and
    ``conv2d_backward`` (dx, dw, db), the classic exercise, as one Function of (x, w, b), or of
    (x, w) without ``bias``."""

    def __init__(self, stride=1, padding=0, dilation=1, groups=1, bias=True):
        settings = (*map(_pair, (stride, padding, dilation)), groups)
        if bias:
            super().__init__(conv_loops.conv2d_forward,
                             lambda x, w, b, gy, *s: conv_loops.conv2d_backward(x, w, gy, *s),
                             *settings)
        else:
            super().__init__(lambda x, w, *s: conv_loops.conv2d_forward(x, w, None, *s),
                             lambda x, w, gy, *s: conv_loops.conv2d_backward(x, w, gy, *s)[:2],
                             *settings)


def _conv_inputs(bias):
    def inputs(rng, shape_x, shape_w):
        arrays = (uniform(rng, shape_x), uniform(rng, shape_w))
        return arrays + (uniform(rng, shape_w[:1]),) if bias else arrays
    return inputs


def _conv_params():
    """Dense, grouped (2 groups) and depthwise (a group per channel, one or two filters each)
    convolutions; kernels, strides, paddings and dilations drawn per axis."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
        if kind == "dense":
            groups, c, o = 1, draw(st.integers(1, 3)), draw(st.integers(1, 3))
        elif kind == "grouped":
            groups = 2
            c, o = 2 * draw(st.integers(1, 2)), 2 * draw(st.integers(1, 2))
        else:
            groups = c = draw(st.integers(1, 4))
            o = c * draw(st.integers(1, 2))
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        stride, padding, dilation = (tuple(draw(st.integers(low, high)) for _ in range(2))
                                     for low, high in ((1, 3), (0, 2), (1, 2)))
        # Big enough for one output position: H + 2p >= d (k - 1) + 1.
        size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 6))
                     for k, p, d in zip(kernel, padding, dilation))
        return {"shape_x": (draw(st.integers(1, 2)), c) + size,
                "shape_w": (o, c // groups) + kernel, "stride": _as_written(stride),
                "padding": _as_written(padding), "dilation": _as_written(dilation),
                "groups": groups}
    return draw()


CONV_EXAMPLES = (
    {"shape_x": (2, 2, 5, 5), "shape_w": (3, 2, 3, 3), "stride": 1, "padding": 1,
     "dilation": 1, "groups": 1},
    {"shape_x": (1, 4, 5, 4), "shape_w": (4, 2, 3, 2), "stride": (2, 1), "padding": 1,
     "dilation": (1, 2), "groups": 2},
    {"shape_x": (1, 2, 7, 7), "shape_w": (2, 2, 3, 3), "stride": 1, "padding": 2,
     "dilation": 2, "groups": 1},
    {"shape_x": (1, 4, 5, 4), "shape_w": (8, 1, 3, 2), "stride": (1, 2), "padding": (1, 0),
     "dilation": 1, "groups": 4},
)


def _linear_params():
    """x (..., in) with zero to three leading axes, w (out, in)."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        leading = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
        inputs, out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        return {"shape_x": leading + (inputs,), "shape_w": (out, inputs)}
    return draw()


def _linear_inputs(bias):
    def inputs(rng, shape_x, shape_w):
        arrays = (uniform(rng, shape_x), uniform(rng, shape_w))
        return arrays + (uniform(rng, shape_w[:1]),) if bias else arrays
    return inputs


def _linear_without_bias_loops():
    """linear_backward gives the bias gradient in any case; without a bias there is none."""
    return Loops(linear_loops.linear_forward,
                 lambda x, w, gy: linear_loops.linear_backward(x, w, gy)[:2])


LINEAR_EXAMPLES = ({"shape_x": (3, 4), "shape_w": (2, 4)},
                   {"shape_x": (2, 3, 4), "shape_w": (5, 4)}, {"shape_x": (3,), "shape_w": (2, 3)})


# --- pooling -----------------------------------------------------------------------------------

def _windows_along(size, kernel, stride, padding, ceil_mode):
    """(count, overhang) along one axis: the number of windows, floor or ceil of
    (size + 2 padding - kernel) / stride, plus one, less a last ceil-mode window that would start
    beyond the input and its left padding; and how far the last window runs past the padded
    input."""
    span = size + 2 * padding - kernel
    count = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (count - 1) * stride >= size + padding:
        count -= 1
    return count, max(0, (count - 1) * stride + kernel - (size + 2 * padding))


def pool_windows(x, kernel_size, stride=None, padding=0, ceil_mode=False, fill=0.0,
                 overhang_fill=None):
    """The pooling windows of x: (N, C, OH, OW, kh, kw), the padding filled with ``fill`` and
    the part of a ceil-mode window past the padded input with ``overhang_fill`` (default:
    ``fill``)."""
    kernel, padding = _pair(kernel_size), _pair(padding)
    stride = _pair(stride) if stride is not None else kernel
    (oh, extra_h), (ow, extra_w) = (_windows_along(*axis, ceil_mode) for axis in
                                    zip(x.shape[2:], kernel, stride, padding))
    padded = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2),
                    constant_values=fill)
    padded = np.pad(padded, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)),
                    constant_values=fill if overhang_fill is None else overhang_fill)
    view = sliding_window_view(padded, kernel, axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    return view[:, :, :oh, :ow]


def max_pool2d_numpy(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """The largest value of each window (the padding is -inf)."""
    return pool_windows(x, kernel_size, stride, padding, ceil_mode, -np.inf).max(axis=(4, 5))


def avg_pool2d_numpy(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True):
    """The sum of each window (the padding is 0) over its divisor: the number of its elements
    on the padded input with ``count_include_pad`` (as Caffe), on the input itself without; the
    part of a ceil-mode window past the padded input never counts (as PyTorch)."""
    sums = pool_windows(x, kernel_size, stride, padding, ceil_mode).sum(axis=(4, 5))
    ones = np.ones((1, 1) + x.shape[2:])
    divisor = pool_windows(ones, kernel_size, stride, padding, ceil_mode,
                           fill=float(count_include_pad), overhang_fill=0.0).sum(axis=(4, 5))
    return sums / divisor


def probability_weighted_pool2d_numpy(x, kernel_size, stride=None, ceil_mode=False):
    """Stochastic pooling's expected value sum(a^2) / sum(a) per window; a ceil-mode window is
    clipped to the input (its overhang, zeros, adds nothing to either sum)."""
    fields = pool_windows(x, kernel_size, stride, 0, ceil_mode)
    return (fields ** 2).sum(axis=(4, 5)) / fields.sum(axis=(4, 5))


def _stochastic_pool2d(x, **params):
    """Training-mode stochastic pooling with a fixed seed: every call (and every implementation)
    draws the same uniforms, so the same elements, and y = x at them is differentiable."""
    return F.stochastic_pool2d(x, training=True, rng=np.random.default_rng(0), **params)


def _window_params(padding=True, count_include_pad=False):
    """Shape and window of a pooling: kernel and stride (None: the kernel) per axis, padding up
    to half the kernel, ceil mode, and for average pooling count_include_pad."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
        pad = tuple(draw(st.integers(0, k // 2)) for k in kernel) if padding else (0, 0)
        size = tuple(draw(st.integers(max(1, k - 2 * p), 7)) for k, p in zip(kernel, pad))
        params = {"shape": (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + size,
                  "kernel_size": _as_written(kernel), "stride": _as_written(stride),
                  "ceil_mode": draw(st.booleans())}
        if padding:
            params["padding"] = _as_written(pad)
        if count_include_pad:
            params["count_include_pad"] = draw(st.booleans())
        return params
    return draw()


MAX_POOL_EXAMPLES = (
    {"shape": (2, 2, 5, 5), "kernel_size": 2, "stride": 2, "padding": 0},
    {"shape": (1, 2, 7, 6), "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"shape": (1, 1, 4, 4), "kernel_size": 3, "stride": 1, "padding": 0},
    {"shape": (1, 2, 5, 6), "kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0)},
)
# Ceil-mode windows that run past the padded input (rows 5..7 of the padded -1..6; rows 2..4 of
# 0..3): random geometries reach them rarely.
AVG_POOL_EXAMPLES = (
    {"shape": (2, 2, 5, 5), "kernel_size": 2, "stride": 2},
    {"shape": (1, 2, 6, 4), "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"shape": (1, 2, 4, 5), "kernel_size": 3, "stride": 2, "ceil_mode": True,
     "count_include_pad": False},
    {"shape": (1, 2, 5, 6), "kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0),
     "count_include_pad": False},
)
STOCHASTIC_EXAMPLES = (
    {"shape": (1, 2, 4, 4), "kernel_size": 2, "stride": 2},
    {"shape": (2, 1, 5, 5), "kernel_size": 3, "stride": 2},
    {"shape": (1, 2, 7, 6), "kernel_size": (3, 2), "stride": (2, 3), "ceil_mode": True},
)


def _resolved(output_size, x):
    """An adaptive output size as (OH, OW): an int for both axes, None keeps that axis."""
    return tuple(n if s is None else s for s, n in zip(_pair(output_size), x.shape[2:]))


def _adaptive_avg_loops(output_size):
    return Loops(lambda x: pool_loops.adaptive_avg_pool2d_forward(x, _resolved(output_size, x)),
                 lambda x, gy: pool_loops.adaptive_avg_pool2d_backward(gy, x.shape[2:]))


def _adaptive_max_loops(output_size):
    def backward(x, gy):
        _, argmax = pool_loops.adaptive_max_pool2d_forward(x, _resolved(output_size, x))
        return pool_loops.adaptive_max_pool2d_backward(gy, argmax, x.shape[2:])
    return Loops(lambda x: pool_loops.adaptive_max_pool2d_forward(
        x, _resolved(output_size, x))[0], backward)


def _adaptive_params():
    """Output sizes past the input (bins then repeat elements) and not dividing it; None in the
    output size keeps that axis."""
    from hypothesis import strategies as st
    return st.fixed_dictionaries({
        "shape": st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6),
                           st.integers(1, 6)),
        "output_size": st.tuples(st.integers(1, 7) | st.none(), st.integers(1, 7))})


ADAPTIVE_EXAMPLES = ({"shape": (1, 2, 5, 7), "output_size": (2, 3)},
                     {"shape": (2, 1, 4, 4), "output_size": 1},
                     {"shape": (1, 1, 3, 2), "output_size": (None, 5)})


def _spatial_pyramid_torch(x, levels, mode):
    pool = TF.adaptive_max_pool2d if mode == "max" else TF.adaptive_avg_pool2d
    return torch.cat([pool(x, n).flatten(1) for n in levels], dim=1)


def _spatial_pyramid_params():
    from hypothesis import strategies as st
    return st.fixed_dictionaries({
        "shape": st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6),
                           st.integers(1, 6)),
        "levels": st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple),
        "mode": st.sampled_from(["max", "avg"])})


def _global_params():
    from hypothesis import strategies as st
    return st.fixed_dictionaries({"shape": st.tuples(
        st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))})


def _distinct_image(rng, shape, **_):
    return (distinct(rng, shape),)


# --- generalized pooling (always ceil mode, as Caffe: the last windows are clipped) ------------

def _generalized_windows(x, window, stride, fill=0.0):
    return pool_windows(x, window, stride, 0, True, fill)


def gated_max_ave_pool2d_numpy(x, gate, stride=None):
    """y = s max(x_R) + (1 - s) mean(x_R), s = sigmoid(gate . x_R) per window R (a clipped
    window meets the top-left part of the gate)."""
    fields = _generalized_windows(x, gate.shape, stride)
    count = _generalized_windows(np.ones((1, 1) + x.shape[2:]), gate.shape, stride)
    s = 1 / (1 + np.exp(-(fields * gate).sum((4, 5))))
    largest = _generalized_windows(x, gate.shape, stride, -np.inf).max((4, 5))
    return s * largest + (1 - s) * fields.sum((4, 5)) / count.sum((4, 5))


def tree_pool2d_numpy(x, leaf1, leaf2, gate, stride=None):
    """y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R), s = sigmoid(gate . x_R)."""
    fields = _generalized_windows(x, gate.shape, stride)
    s = 1 / (1 + np.exp(-(fields * gate).sum((4, 5))))
    return s * (fields * leaf1).sum((4, 5)) + (1 - s) * (fields * leaf2).sum((4, 5))


def _generalized_inputs(masks):
    def inputs(rng, shape, shape_window, **_):
        return (distinct(rng, shape),) + tuple(uniform(rng, shape_window, -1.0, 1.0)
                                               for _ in range(masks))
    return inputs


def _generalized_params():
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        window = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        size = tuple(draw(st.integers(k, 6)) for k in window)
        return {"shape": (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + size,
                "shape_window": window,
                "stride": _as_written((draw(st.integers(1, 3)), draw(st.integers(1, 3))))}
    return draw()


# 7 x 6 with a 3 x 3 window, stride 2: the last windows along W are clipped; 5 x 7 with 2 x 3,
# stride (2, 2): both axes.
GENERALIZED_EXAMPLES = ({"shape": (2, 2, 4, 4), "shape_window": (2, 2), "stride": 2},
                        {"shape": (1, 2, 7, 6), "shape_window": (3, 3), "stride": 2},
                        {"shape": (1, 2, 5, 7), "shape_window": (2, 3), "stride": (2, 2)})


def _eltwise_affine_numpy(x, slope, bias):
    view = (1, -1) + (1,) * (x.ndim - 2)
    return x * slope.reshape(view) + bias.reshape(view)


def _eltwise_affine_inputs(shared):
    def inputs(rng, shape):
        channels = (1,) if shared else shape[1:2]
        return uniform(rng, shape), uniform(rng, channels), uniform(rng, channels)
    return inputs


# --- normalisation -----------------------------------------------------------------------------

def batch_norm_numpy(x, weight=None, bias=None, eps=1e-5):
    """Training mode: x_hat = (x - mean) / sqrt(var + eps) per channel over (N, H, W), the
    biased variance; y = weight * x_hat + bias."""
    axes = (0,) + tuple(range(2, x.ndim))
    view = (1, -1) + (1,) * (x.ndim - 2)
    x_hat = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    if weight is None:
        return x_hat
    return weight.reshape(view) * x_hat + bias.reshape(view)


def batch_norm_eval_numpy(x, mean, var, weight, bias, eps=1e-5):
    view = (1, -1) + (1,) * (x.ndim - 2)
    return (weight.reshape(view) * (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + eps)
            + bias.reshape(view))


def _batch_norm_inputs(affine):
    """x with a mean far from 0 (a one-pass variance would cancel) and a spread of about 1."""
    def inputs(rng, shape, **_):
        x = uniform(rng, shape, 3.0, 7.0)
        c = shape[1]
        return (x, uniform(rng, (c,), 0.5, 1.5), uniform(rng, (c,))) if affine else (x,)
    return inputs


def _batch_norm_eval_inputs(rng, shape, **_):
    c = shape[1]
    return (uniform(rng, shape), uniform(rng, (c,), -0.5, 0.5), positive(rng, (c,)),
            uniform(rng, (c,), 0.5, 1.5), uniform(rng, (c,)))


def _batch_norm_params(training=True):
    """(N, C), (N, C, L) or (N, C, H, W); in training at least 3 values per channel (2 values
    1e-2 apart would make 1 / std, and the gradient's curvature, huge)."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        c = draw(st.integers(1, 3))
        spatial = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
        n = draw(st.integers(1, 4))
        if training and n * int(np.prod(spatial)) < 3:
            n = 3
        params = {"shape": (n, c) + spatial}
        if training:
            params["eps"] = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
        return params
    return draw()


# (2, 2, 20): 40 values per channel, more than the harness's 32 threads of a block, so some
# threads sum several values before the block sum.
BATCH_NORM_EXAMPLES = ({"shape": (4, 3, 2, 2)}, {"shape": (5, 2)}, {"shape": (2, 3, 4)},
                       {"shape": (2, 2, 20), "eps": 1e-3})


def lrn_numpy(x, size, alpha=1e-4, beta=0.75, k=1.0, alpha_over_size=True):
    """y[c] = x[c] / (k + a * sum of x[j]^2 over the channels c - size//2 ..
    c + (size - 1)//2)^beta, a = alpha / size (or alpha, the AlexNet convention)."""
    pad = ((0, 0), (size // 2, (size - 1) // 2)) + ((0, 0),) * (x.ndim - 2)
    sums = sliding_window_view(np.pad(x ** 2, pad), size, axis=1).sum(-1)
    return x / (k + (alpha / size if alpha_over_size else alpha) * sums) ** beta


def _lrn_torch(x, size, alpha=1e-4, beta=0.75, k=1.0, alpha_over_size=True):
    """PyTorch divides alpha by size: the AlexNet convention is its alpha * size."""
    return TF.local_response_norm(x, size, alpha=alpha if alpha_over_size else alpha * size,
                                  beta=beta, k=k)


def _lrn_params():
    """Window sizes odd, even and wider than the channels; alpha up to 1, so that the window
    term is as large as the direct one; beta = 0.75 (the kernels' shortcut, two square roots)
    or any other power."""
    from hypothesis import strategies as st
    return st.fixed_dictionaries({
        "shape": st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 3)).flatmap(
            lambda s: st.just(s) | st.tuples(*map(st.just, s), st.integers(1, 3))),
        "size": st.integers(1, 9), "alpha": st.floats(1e-4, 1.0),
        "beta": st.just(0.75) | st.floats(0.05, 2.0), "k": st.floats(0.5, 2.0),
        "alpha_over_size": st.booleans()})


LRN_EXAMPLES = (
    {"shape": (2, 5, 2, 2), "size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.0},
    {"shape": (1, 4, 3, 2), "size": 4, "alpha": 1.0, "beta": 0.5, "k": 2.0},
    {"shape": (2, 5, 4), "size": 8, "alpha": 0.9, "beta": 1.3, "k": 0.5},
    {"shape": (1, 6, 2, 2), "size": 5, "alpha": 0.2, "beta": 0.75, "k": 2.0,
     "alpha_over_size": False},
)


# --- dropout -----------------------------------------------------------------------------------

def _dropout(x, p, seed=0):
    """Dropout with a fixed seed, so every call (and every implementation) draws one mask."""
    return F.dropout(x, p, rng=np.random.default_rng(seed))


def _dropout_params():
    from hypothesis import strategies as st
    return st.fixed_dictionaries({
        "shape": st.lists(st.integers(1, 4), max_size=4).map(tuple),
        "p": st.floats(0.01, 0.99), "seed": st.integers(0, 2**16)})


DROPOUT_EXAMPLES = ({"shape": (3, 4), "p": 0.5}, {"shape": (2, 2, 3, 3), "p": 0.25},
                    {"shape": (), "p": 0.1}, {"shape": (40,), "p": 0.9, "seed": 3})


OPS = [
    OpSpec("conv2d", F.conv2d, _conv_inputs(bias=True), CONV_EXAMPLES, _conv_params,
           HOT + ("direct",), numpy=conv2d_numpy, torch=lambda *a, **k: TF.conv2d(*a, **k),
           direct=lambda **params: Conv2dLoops(**params), topic="conv"),
    OpSpec("conv2d_without_bias", F.conv2d, _conv_inputs(bias=False), CONV_EXAMPLES[1:3],
           _conv_params, HOT + ("direct",), numpy=conv2d_numpy,
           torch=lambda *a, **k: TF.conv2d(*a, **k),
           direct=lambda **params: Conv2dLoops(bias=False, **params), topic="conv"),
    OpSpec("linear", F.linear, _linear_inputs(bias=True), LINEAR_EXAMPLES, _linear_params,
           ("numpy", "direct"), numpy=lambda x, w, b: x @ w.T + b,
           torch=lambda x, w, b: TF.linear(x, w, b),
           direct=lambda: Loops(linear_loops.linear_forward,
                                lambda x, w, b, gy: linear_loops.linear_backward(x, w, gy)),
           topic="conv"),
    OpSpec("linear_without_bias", F.linear, _linear_inputs(bias=False), LINEAR_EXAMPLES,
           _linear_params, ("numpy", "direct"), numpy=lambda x, w: x @ w.T,
           torch=lambda x, w: TF.linear(x, w), direct=_linear_without_bias_loops, topic="conv"),
    OpSpec("max_pool2d", F.max_pool2d, _distinct_image, MAX_POOL_EXAMPLES, _window_params, HOT,
           numpy=max_pool2d_numpy, torch=lambda x, **k: TF.max_pool2d(x, **k),
           avoid="ties in a window (distinct values 0.1 apart)", topic="pool"),
    OpSpec("avg_pool2d", F.avg_pool2d, _distinct_image, AVG_POOL_EXAMPLES,
           lambda: _window_params(count_include_pad=True), HOT, numpy=avg_pool2d_numpy,
           torch=lambda x, **k: TF.avg_pool2d(x, **k), topic="pool"),
    OpSpec("max_avg_pool2d", F.max_avg_pool2d, _distinct_image, MAX_POOL_EXAMPLES,
           _window_params, HOT,
           numpy=lambda x, **k: max_pool2d_numpy(x, **k) + avg_pool2d_numpy(x, **k),
           torch=lambda x, **k: TF.max_pool2d(x, **k) + TF.avg_pool2d(x, **k),
           avoid="ties in a window", topic="pool"),
    OpSpec("adaptive_avg_pool2d", F.adaptive_avg_pool2d, _distinct_image, ADAPTIVE_EXAMPLES,
           _adaptive_params, ("numpy", "direct"),
           torch=lambda x, **k: TF.adaptive_avg_pool2d(x, **k), direct=_adaptive_avg_loops,
           topic="pool"),
    # The backward of adaptive max pooling is max pooling's kernel: it runs everywhere.
    OpSpec("adaptive_max_pool2d", F.adaptive_max_pool2d, _distinct_image, ADAPTIVE_EXAMPLES,
           _adaptive_params, HOT + ("direct",),
           torch=lambda x, **k: TF.adaptive_max_pool2d(x, **k), direct=_adaptive_max_loops,
           avoid="ties in a bin", topic="pool"),
    OpSpec("global_avg_pool2d", F.global_avg_pool2d, _distinct_image,
           ({"shape": (2, 3, 4, 5)}, {"shape": (1, 2, 1, 3)}), _global_params,
           ("numpy", "direct"), numpy=lambda x: x.mean(axis=(2, 3), keepdims=True),
           torch=lambda x: TF.adaptive_avg_pool2d(x, 1),
           direct=lambda: Loops(pool_loops.global_avg_pool2d_forward,
                                lambda x, gy: pool_loops.global_avg_pool2d_backward(
                                    gy, x.shape[2:])),
           topic="pool"),
    OpSpec("spatial_pyramid_pool2d", F.spatial_pyramid_pool2d, _distinct_image,
           ({"shape": (1, 2, 5, 6), "levels": (1, 2), "mode": "max"},
            {"shape": (2, 1, 4, 4), "levels": (1, 3), "mode": "avg"},
            {"shape": (1, 1, 3, 2), "levels": (4, 1), "mode": "max"}),
           _spatial_pyramid_params, HOT + ("direct",), torch=_spatial_pyramid_torch,
           direct=lambda levels, mode: Loops(
               lambda x: pool_loops.spatial_pyramid_pool2d_forward(x, levels, mode),
               lambda x, gy: pool_loops.spatial_pyramid_pool2d_backward(gy, x, levels, mode)),
           avoid="ties in a bin", topic="pool"),
    OpSpec("stochastic_pool2d", _stochastic_pool2d,
           lambda rng, shape, **_: (positive(rng, shape, 0.2, 2.0),), STOCHASTIC_EXAMPLES,
           lambda: _window_params(padding=False), HOT,
           avoid="all-zero windows (inputs are positive)", topic="pool"),
    OpSpec("stochastic_pool2d_eval", lambda x, **k: F.stochastic_pool2d(x, training=False, **k),
           lambda rng, shape, **_: (positive(rng, shape, 0.2, 2.0),), STOCHASTIC_EXAMPLES,
           lambda: _window_params(padding=False), HOT, numpy=probability_weighted_pool2d_numpy,
           avoid="all-zero windows (inputs are positive)", topic="pool"),
    OpSpec("gated_max_ave_pool2d", F.gated_max_ave_pool2d, _generalized_inputs(1),
           GENERALIZED_EXAMPLES, _generalized_params, HOT, numpy=gated_max_ave_pool2d_numpy,
           avoid="ties in a window", topic="generalized_pool"),
    OpSpec("tree_pool2d", F.tree_pool2d, _generalized_inputs(3), GENERALIZED_EXAMPLES,
           _generalized_params, HOT, numpy=tree_pool2d_numpy, topic="generalized_pool"),
    OpSpec("eltwise_affine", F.eltwise_affine, _eltwise_affine_inputs(shared=False),
           ({"shape": (2, 3, 2, 2)}, {"shape": (2, 4)}, {"shape": (2, 3, 4)}),
           implementations=("numpy", "direct"), numpy=_eltwise_affine_numpy,
           direct=lambda: Loops(generalized_loops.eltwise_affine_forward,
                                lambda x, slope, bias, gy:
                                generalized_loops.eltwise_affine_backward(gy, x, slope)),
           topic="generalized_pool"),
    OpSpec("eltwise_affine_channel_shared", F.eltwise_affine, _eltwise_affine_inputs(shared=True),
           ({"shape": (2, 3, 4)}, {"shape": (2, 3, 2, 2)}), numpy=_eltwise_affine_numpy,
           topic="generalized_pool"),
    OpSpec("batch_norm", lambda x, w, b, **k: F.batch_norm(x, None, None, w, b, training=True,
                                                          **k),
           _batch_norm_inputs(affine=True), BATCH_NORM_EXAMPLES, _batch_norm_params, HOT,
           numpy=batch_norm_numpy,
           torch=lambda x, w, b, **k: TF.batch_norm(x, None, None, w, b, training=True, **k),
           topic="norm"),
    OpSpec("batch_norm_without_affine",
           lambda x, **k: F.batch_norm(x, None, None, training=True, **k),
           _batch_norm_inputs(affine=False), BATCH_NORM_EXAMPLES[:2], _batch_norm_params, HOT,
           numpy=batch_norm_numpy,
           torch=lambda x, **k: TF.batch_norm(x, None, None, training=True, **k), topic="norm"),
    OpSpec("batch_norm_eval", lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False),
           _batch_norm_eval_inputs, ({"shape": (2, 3, 2, 2)}, {"shape": (3, 4)},
                                     {"shape": (1, 2, 5)}),
           lambda: _batch_norm_params(training=False), HOT, numpy=batch_norm_eval_numpy,
           torch=lambda x, m, v, w, b: TF.batch_norm(x, m, v, w, b, training=False),
           grad_inputs=(0, 3, 4), topic="norm"),
    OpSpec("local_response_norm", F.local_response_norm,
           lambda rng, shape, **_: (uniform(rng, shape),), LRN_EXAMPLES, _lrn_params, HOT,
           numpy=lrn_numpy, torch=_lrn_torch, topic="norm"),
    OpSpec("dropout", _dropout, lambda rng, shape, **_: (uniform(rng, shape),),
           DROPOUT_EXAMPLES, _dropout_params, HOT, topic="dropout"),
]
