"""The table's pooling (``cnnlite/functional/pool.py``, ``generalized_pool.py``), and the window
helpers that the NumPy references of convolution and pooling share.

Max, average and max+avg pooling, adaptive max, spatial pyramid, stochastic, gated max-average
and tree pooling dispatch kernels: each runs as the reference loops, the numba kernels, the CUDA
kernels through the host harness and, with a GPU, on the GPU. Their NumPy formulas below
(windows through ``sliding_window_view``) are a second, independent reference: the grader needs
no PyTorch, and the loops are checked against something other than themselves. Ops written once
with array slices (adaptive average and global pooling, the per-channel affine map) run as
called; these, adaptive max and pyramid pooling also run as their readable loops ("direct").

Pooled inputs are distinct values 0.1 apart, so no window or bin holds a tie (where the max
has no derivative); stochastic pooling's are positive, so no window is all zeros. The examples
and strategies reach asymmetric kernels and strides, padding, ceil mode (windows past the padded
input), count_include_pad, adaptive sizes past the input, pyramid levels, and generalized
pooling's clipped ceil-mode windows.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlite import functional as F
from cnnlite.optable.implementations import HOT
from cnnlite.optable.inputs import distinct, positive, uniform
from cnnlite.optable.lazy_torch import TF, torch
from cnnlite.optable.loops import Loops
from cnnlite.optable.spec import OpSpec
from cnnlite.reference import generalized_pool as generalized_loops
from cnnlite.reference import pool as pool_loops


# --- windows (the receptive fields of convolution and pooling) ---------------------------------

def as_pair(v):
    """A size per axis (H, W): a tuple or list as it is, one int for both axes."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def as_written(pair):
    """A square (k, k) as the plain int k, the way it is usually written; None stays None."""
    return pair[0] if pair is not None and pair[0] == pair[1] else pair


def windows(x, kernel, stride, padding, dilation=(1, 1), fill=0.0):
    """The receptive fields of x: (N, C, OH, OW, kh, kw), padded with ``fill``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(as_pair, (kernel, stride, padding, dilation))
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    view = sliding_window_view(padded, (span_h, span_w), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


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
    kernel, padding = as_pair(kernel_size), as_pair(padding)
    stride = as_pair(stride) if stride is not None else kernel
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
                  "kernel_size": as_written(kernel), "stride": as_written(stride),
                  "ceil_mode": draw(st.booleans())}
        if padding:
            params["padding"] = as_written(pad)
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
    return tuple(n if s is None else s for s, n in zip(as_pair(output_size), x.shape[2:]))


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
                "stride": as_written((draw(st.integers(1, 3)), draw(st.integers(1, 3))))}
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


OPS = [
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
]
