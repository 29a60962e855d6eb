"""The table's convolution and linear layers (``cnnlite/functional/conv.py``).

conv2d dispatches kernels: it runs as the reference loops, the numba kernels, the CUDA kernels
through the host harness and, with a GPU, on the GPU. Its NumPy formula below (the receptive
fields through ``sliding_window_view``, then one einsum) is a second, independent reference: the
grader needs no PyTorch, and the loops are checked against something other than themselves.
linear is a NumPy expression. Both also run as their readable loops ("direct"):
``conv2d_forward`` and ``conv2d_backward``, the classic exercise, and the linear pair.

Both are smooth everywhere, so their inputs are plainly uniform. The examples and strategies
reach dense, grouped and depthwise convolutions, asymmetric kernels and strides, padding and
dilation, the convolution without bias, and linear inputs with zero to three leading axes.
"""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F
from cnnlite.optable.implementations import HOT
from cnnlite.optable.inputs import uniform
from cnnlite.optable.lazy_torch import TF
from cnnlite.optable.loops import Loops
from cnnlite.optable.spec import OpSpec
from cnnlite.optable.table_pool import as_pair, as_written, windows
from cnnlite.reference import conv as conv_loops
from cnnlite.reference import linear as linear_loops

# --- convolution -------------------------------------------------------------------------------

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
        settings = (*map(as_pair, (stride, padding, dilation)), groups)
        if bias:
            super().__init__(conv_loops.conv2d_forward,
                             lambda x, w, b, gy, *s: conv_loops.conv2d_backward(x, w, gy, *s),
                             *settings)
        else:
            super().__init__(lambda x, w, *s: conv_loops.conv2d_forward(x, w, None, *s),
                             lambda x, w, gy, *s: conv_loops.conv2d_backward(x, w, gy, *s)[:2],
                             *settings)


def _weighted_inputs(bias):
    """inputs() for x, w and, with ``bias``, b: one bias per output (w's first axis), for
    conv2d and linear alike."""
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
                "shape_w": (o, c // groups) + kernel, "stride": as_written(stride),
                "padding": as_written(padding), "dilation": as_written(dilation),
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
    # A strided 1x1 layer, which the CPU computes as plain matrix products (Conv2dPointwise).
    {"shape_x": (2, 3, 5, 4), "shape_w": (2, 3, 1, 1), "stride": (2, 1), "padding": 0,
     "dilation": 1, "groups": 1},
)


# --- linear ------------------------------------------------------------------------------------

def _linear_params():
    """x (..., in) with zero to three leading axes, w (out, in)."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        leading = tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
        inputs, out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        return {"shape_x": leading + (inputs,), "shape_w": (out, inputs)}
    return draw()


def _linear_without_bias_loops():
    """linear_backward gives the bias gradient in any case; without a bias there is none."""
    return Loops(linear_loops.linear_forward,
                 lambda x, w, gy: linear_loops.linear_backward(x, w, gy)[:2])


LINEAR_EXAMPLES = ({"shape_x": (3, 4), "shape_w": (2, 4)},
                   {"shape_x": (2, 3, 4), "shape_w": (5, 4)}, {"shape_x": (3,), "shape_w": (2, 3)})


OPS = [
    OpSpec("conv2d", F.conv2d, _weighted_inputs(bias=True), CONV_EXAMPLES, _conv_params,
           HOT + ("direct",), numpy=conv2d_numpy, torch=lambda *a, **k: TF.conv2d(*a, **k),
           direct=lambda **params: Conv2dLoops(**params), topic="conv"),
    OpSpec("conv2d_without_bias", F.conv2d, _weighted_inputs(bias=False), CONV_EXAMPLES[1:3],
           _conv_params, HOT + ("direct",), numpy=conv2d_numpy,
           torch=lambda *a, **k: TF.conv2d(*a, **k),
           direct=lambda **params: Conv2dLoops(bias=False, **params), topic="conv"),
    OpSpec("linear", F.linear, _weighted_inputs(bias=True), LINEAR_EXAMPLES, _linear_params,
           ("numpy", "direct"), numpy=lambda x, w, b: x @ w.T + b,
           torch=lambda x, w, b: TF.linear(x, w, b),
           direct=lambda: Loops(linear_loops.linear_forward,
                                lambda x, w, b, gy: linear_loops.linear_backward(x, w, gy)),
           topic="conv"),
    OpSpec("linear_without_bias", F.linear, _weighted_inputs(bias=False), LINEAR_EXAMPLES,
           _linear_params, ("numpy", "direct"), numpy=lambda x, w: x @ w.T,
           torch=lambda x, w: TF.linear(x, w), direct=_linear_without_bias_loops, topic="conv"),
]
