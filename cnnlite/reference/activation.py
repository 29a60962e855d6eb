"""Reference activations: one element at a time, written exactly as the scalar formula reads.

Every activation has a forward and a backward kernel:

* ``<name>_forward(x, ...) -> y``
* ``<name>_backward(x_or_y, gy, ...) -> gx`` with ``gx = gy * dy/dx`` element by element.

A backward takes whichever of ``x`` and ``y`` its derivative is written in: ReLU, leaky ReLU
and ELU ask for ``x``; sigmoid (``y (1 - y)``) and tanh (``1 - y^2``) ask for ``y``. Arrays
are NumPy arrays of any shape; outputs have the dtype of the input. Slow on purpose: these
loops are the ground truth that ``cnnlite.cpu.activation`` is tested against.

PReLU, RReLU in training, maxout and APL follow at the end: loops for ops that have no kernel
(they are not in ``KERNELS``; see the comment above them).
"""
import math

import numpy as np

from cnnlite.reference import contracts


def relu_forward(x):
    """y = x if x > 0 else 0"""
    contracts.relu_forward(x)
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] if x[i] > 0 else 0
    return y


def relu_backward(x, gy):
    """dy/dx = 1 if x > 0 else 0"""
    contracts.relu_backward(x, gy)
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] > 0 else 0
    return gx


def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope * x"""
    contracts.leaky_relu_forward(x, negative_slope)
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] if x[i] > 0 else negative_slope * x[i]
    return y


def leaky_relu_backward(x, gy, negative_slope):
    """dy/dx = 1 if x > 0 else negative_slope"""
    contracts.leaky_relu_backward(x, gy, negative_slope)
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] > 0 else negative_slope * gy[i]
    return gx


def elu_forward(x, alpha):
    """y = x if x > 0 else alpha * (e^x - 1)

    ``expm1(x)`` is e^x - 1 computed without the cancellation that ``exp(x) - 1`` suffers
    for x near 0.
    """
    contracts.elu_forward(x, alpha)
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] if x[i] > 0 else alpha * math.expm1(x[i])
    return y


def elu_backward(x, gy, alpha):
    """dy/dx = 1 if x > 0 else alpha * e^x"""
    contracts.elu_backward(x, gy, alpha)
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * alpha * math.exp(x[i])
    return gx


def sigmoid_forward(x):
    """y = 1 / (1 + e^-x)

    For x < 0 the same value is written e^x / (1 + e^x), so that the exponential never
    overflows (e^-x for x = -1000 would).
    """
    contracts.sigmoid_forward(x)
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        if x[i] >= 0:
            y[i] = 1 / (1 + math.exp(-x[i]))
        else:
            e = math.exp(x[i])
            y[i] = e / (1 + e)
    return y


def sigmoid_backward(y, gy):
    """dy/dx = y (1 - y), written in the forward's output y"""
    contracts.sigmoid_backward(y, gy)
    gx = np.empty_like(gy)
    for i in np.ndindex(y.shape):
        gx[i] = gy[i] * y[i] * (1 - y[i])
    return gx


def tanh_forward(x):
    """y = (e^x - e^-x) / (e^x + e^-x)"""
    contracts.tanh_forward(x)
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = math.tanh(x[i])
    return y


def tanh_backward(y, gy):
    """dy/dx = 1 - y^2, written in the forward's output y"""
    contracts.tanh_backward(y, gy)
    gx = np.empty_like(gy)
    for i in np.ndindex(y.shape):
        gx[i] = gy[i] * (1 - y[i] * y[i])
    return gx


# --- the ops without a kernel: PReLU, RReLU in training, maxout, APL -----------------------------
#
# These are NOT in KERNELS, and backend.use_reference() does not reach them: the ops of
# cnnlite.functional.activation run their one vectorised NumPy version (cupy on a GPU) on every
# device. The loops below are the ground truth that tests/test_activation.py compares those
# ops with, values and gradients.
#
# A backward takes the forward's inputs, then gy, then the op's settings, and returns the
# gradient of every input that has one. Sums over many elements (the gradient of a slope shared
# by a channel) are accumulated in Python floats (double) and rounded to the dtype once.

def _slope_index(index, weight):
    """Which entry of ``weight`` element ``index`` of x uses: its channel (axis 1), or 0 for
    one slope shared by all elements."""
    return index[1] if weight.shape[0] > 1 else 0


def prelu_forward(x, weight):
    """y = x if x > 0 else w_c x, with c the channel (axis 1) of the element.

    x: (N, C, ...) with weight (C,), or x of any shape with one shared slope weight (1,)
    -> y: x.shape
    """
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        w = weight[_slope_index(i, weight)]
        y[i] = x[i] if x[i] > 0 else w * x[i]
    return y


def prelu_backward(x, weight, gy):
    """gx = gy dy/dx and gweight_c = sum over the elements of channel c of gy dy/dw_c.

    x: (N, C, ...), weight: (C,) or (1,), gy: x.shape -> gx: x.shape, gweight: weight.shape
    """
    gx = np.empty_like(gy)
    gweight = [0.0] * weight.shape[0]
    for i in np.ndindex(x.shape):
        c = _slope_index(i, weight)
        if x[i] > 0:
            gx[i] = gy[i]                               # y = x:        dy/dx = 1, dy/dw = 0
        else:
            gx[i] = weight[c] * gy[i]                   # y = w_c x:    dy/dx = w_c
            gweight[c] += float(x[i]) * float(gy[i])    #               dy/dw_c = x
    return gx, np.array(gweight, dtype=weight.dtype)


def rrelu_training_forward(x, slopes):
    """y = x if x >= 0 else r x, with r = slopes[i] the slope this element drew.

    x: any shape, slopes: x.shape (drawn from U(lower, upper) by the op) -> y: x.shape
    """
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        # The slopes are drawn in float64; the op multiplies by them in x's dtype.
        y[i] = x[i] if x[i] >= 0 else x.dtype.type(slopes[i]) * x[i]
    return y


def rrelu_training_backward(x, gy, slopes):
    """dy/dx = 1 if x >= 0 else r, with r = slopes[i].   x, gy, slopes: one shape"""
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] >= 0 else x.dtype.type(slopes[i]) * gy[i]
    return gx


def _maxout_winner(x, index, pieces):
    """The index into x of the largest of the ``pieces`` channels that output ``index`` =
    (n, k, ...) takes the maximum of: channels k*pieces .. k*pieces + pieces - 1. The first of
    equal values wins."""
    n, k, position = index[0], index[1], index[2:]
    best = (n, k * pieces) + position
    for p in range(1, pieces):
        candidate = (n, k * pieces + p) + position
        if x[candidate] > x[best]:
            best = candidate
    return best


def maxout_forward(x, pieces):
    """y[n, k, ...] = max over p < pieces of x[n, k*pieces + p, ...].

    x: (N, K * pieces, ...) -> y: (N, K, ...)
    """
    y = np.empty((x.shape[0], x.shape[1] // pieces) + x.shape[2:], dtype=x.dtype)
    for i in np.ndindex(y.shape):
        y[i] = x[_maxout_winner(x, i, pieces)]
    return y


def maxout_backward(x, gy, pieces):
    """dy[n, k, ...]/dx[n, c, ...] = 1 for the channel c that won the maximum, 0 for the
    other channels of the group.   x: (N, K * pieces, ...), gy: (N, K, ...) -> gx: x.shape
    """
    gx = np.zeros(x.shape, dtype=gy.dtype)
    for i in np.ndindex(gy.shape):
        gx[_maxout_winner(x, i, pieces)] = gy[i]
    return gx


def _hinges(a, index):
    """(s, c) or (s,) for each hinge s of the element at ``index``: per-channel hinges a, b:
    (S, C) use the element's channel (axis 1); shared ones, (S,), are the same everywhere."""
    if a.ndim == 2:
        return [(s, index[1]) for s in range(a.shape[0])]
    return [(s,) for s in range(a.shape[0])]


def apl_forward(x, a, b):
    """Adaptive piecewise linear unit: y = max(0, x) + sum_s a_s max(0, b_s - x).

    x: (N, C, ...) with a, b: (S, C), or x of any shape with a, b: (S,) -> y: x.shape
    """
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        value = max(0.0, float(x[i]))
        for h in _hinges(a, i):
            value += float(a[h]) * max(0.0, float(b[h]) - float(x[i]))
        y[i] = value
    return y


def apl_backward(x, a, b, gy):
    """gx = gy dy/dx;  ga_s, gb_s = the sums of gy dy/da_s and gy dy/db_s over the elements
    that share hinge s.   x, gy: one shape; a, b: (S, C) or (S,) -> gx: x.shape, ga, gb: a.shape
    """
    gx = np.empty_like(gy)
    ga = {h: 0.0 for h in np.ndindex(a.shape)}
    gb = {h: 0.0 for h in np.ndindex(a.shape)}
    for i in np.ndindex(x.shape):
        g = float(gy[i])
        slope = 1.0 if x[i] > 0 else 0.0                # max(0, x):    d/dx = [x > 0]
        for h in _hinges(a, i):
            hinge = float(b[h]) - float(x[i])
            if hinge > 0:                               # a_s (b_s - x):
                slope -= float(a[h])                    #               d/dx   = -a_s
                ga[h] += g * hinge                      #               d/da_s = b_s - x
                gb[h] += g * float(a[h])                #               d/db_s = a_s
        gx[i] = g * slope
    return gx, _as_array(ga, a), _as_array(gb, a)


def _as_array(sums, like):
    """The sums kept per hinge index as an array of the shape and dtype of ``like``."""
    return np.array([sums[h] for h in np.ndindex(like.shape)],
                    dtype=like.dtype).reshape(like.shape)


KERNELS = {
    "relu_forward": relu_forward,
    "relu_backward": relu_backward,
    "leaky_relu_forward": leaky_relu_forward,
    "leaky_relu_backward": leaky_relu_backward,
    "elu_forward": elu_forward,
    "elu_backward": elu_backward,
    "sigmoid_forward": sigmoid_forward,
    "sigmoid_backward": sigmoid_backward,
    "tanh_forward": tanh_forward,
    "tanh_backward": tanh_backward,
}
