"""Gated max-average pooling and tree pooling in numba: the loops of
``cnnlite.reference.generalized_pool``, compiled.

Same names, arguments and results as the reference loops (read those first: they give the
formulas). Every (image, channel) plane is independent work, so the outer loop runs over the
N*C planes in parallel (``prange``) and each thread walks its plane's windows element by
element. Each window's gate response, leaf responses, maximum and sum are accumulated in
float64 whatever the input's dtype; results are stored in it.

The masks are shared by all planes, so their gradients would be written by every thread at
once. Instead each plane adds into its own (kh, kw) slice of a (N*C, kh, kw) buffer, and the
slices are summed once at the end: no two threads touch the same element.
"""
import math

import numpy as np
from numba import njit, prange

from cnnlite import memory
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.cpu.pool import input_window  # no padding here: the windows start at i * stride
from cnnlite.reference import contracts
from cnnlite.reference.generalized_pool import (check_gradient, check_masks,
                                                check_pool_arguments)


@njit(cache=True, inline="always")
def sigmoid(z):
    """(1 + tanh(z / 2)) / 2: 1 / (1 + e^-z) without overflow, as the reference loops."""
    return 0.5 * (1.0 + math.tanh(0.5 * z))


@njit(cache=True, inline="always")
def masked_sum(x, b, ch, h0, h1, w0, w1, mask):
    """sum of mask[r - h0, s - w0] * x[b, ch, r, s] over the window, in float64."""
    total = 0.0
    for r in range(h0, h1):
        for s in range(w0, w1):
            total += mask[r - h0, s - w0] * x[b, ch, r, s]
    return total


@njit(cache=True, inline="always")
def window_max_and_sum(x, b, ch, h0, h1, w0, w1):
    """(maximum, where it is as h * W + w, sum) of the window; the first maximum wins a tie."""
    w = x.shape[3]
    best, best_index, total = x[b, ch, h0, w0], h0 * w + w0, 0.0
    for r in range(h0, h1):
        for s in range(w0, w1):
            value = x[b, ch, r, s]
            total += value
            if value > best:
                best, best_index = value, r * w + s
    return best, best_index, total


# --- gated max-average pooling --------------------------------------------------------------

@njit(parallel=True, cache=True)
def _gated_max_ave_pool2d_forward_kernel(x, gate, kernel_size, stride, output_size):
    """y = s max + (1 - s) mean, s = sigmoid(gate . x_R); argmax (h * W + w) of each window."""
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                s = sigmoid(masked_sum(x, b, ch, h0, h1, w0, w1, gate))
                largest, where, total = window_max_and_sum(x, b, ch, h0, h1, w0, w1)
                y[b, ch, i, j] = s * largest + (1 - s) * total / ((h1 - h0) * (w1 - w0))
                argmax[b, ch, i, j] = where
    return y, argmax


@njit(parallel=True, cache=True)
def _gated_max_ave_pool2d_backward_kernel(gy, x, gate, argmax, kernel_size, stride):
    """gx, each plane's gate gradient (N*C, kh, kw), and the number of argmax values outside
    the plane, which are skipped (the wrapper raises if there is one). See the reference loops
    for the formulas."""
    n, c, h, w = x.shape
    oh, ow = gy.shape[2], gy.shape[3]
    kh, kw = kernel_size
    gx = np.zeros((n, c, h, w), dtype=x.dtype)
    ggate_per_plane = np.zeros((n * c, kh, kw), dtype=np.float64)
    outside = 0
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                where = argmax[b, ch, i, j]
                if not 0 <= where < h * w:
                    outside += 1
                    continue
                s = sigmoid(masked_sum(x, b, ch, h0, h1, w0, w1, gate))
                area = (h1 - h0) * (w1 - w0)
                _, _, total = window_max_and_sum(x, b, ch, h0, h1, w0, w1)
                g = gy[b, ch, i, j]
                through_gate = g * s * (1 - s) * (x[b, ch, where // w, where % w] - total / area)
                to_mean = g * (1 - s) / area
                for r in range(h0, h1):
                    for t in range(w0, w1):
                        gx[b, ch, r, t] += to_mean + through_gate * gate[r - h0, t - w0]
                        ggate_per_plane[plane, r - h0, t - w0] += through_gate * x[b, ch, r, t]
                gx[b, ch, where // w, where % w] += g * s
    return gx, ggate_per_plane, outside


# --- tree pooling ---------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _tree_pool2d_forward_kernel(x, leaf1, leaf2, gate, kernel_size, stride, output_size):
    """y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R), s = sigmoid(gate . x_R)."""
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                s = sigmoid(masked_sum(x, b, ch, h0, h1, w0, w1, gate))
                left = masked_sum(x, b, ch, h0, h1, w0, w1, leaf1)
                right = masked_sum(x, b, ch, h0, h1, w0, w1, leaf2)
                y[b, ch, i, j] = s * left + (1 - s) * right
    return y


@njit(parallel=True, cache=True)
def _tree_pool2d_backward_kernel(gy, x, leaf1, leaf2, gate, kernel_size, stride):
    """gx and each plane's gradients of leaf1, leaf2 and gate, (N*C, 3, kh, kw) in that order
    (see the reference loops for the formulas)."""
    n, c, h, w = x.shape
    oh, ow = gy.shape[2], gy.shape[3]
    kh, kw = kernel_size
    gx = np.zeros((n, c, h, w), dtype=x.dtype)
    gmasks_per_plane = np.zeros((n * c, 3, kh, kw), dtype=np.float64)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                s = sigmoid(masked_sum(x, b, ch, h0, h1, w0, w1, gate))
                left = masked_sum(x, b, ch, h0, h1, w0, w1, leaf1)
                right = masked_sum(x, b, ch, h0, h1, w0, w1, leaf2)
                g = gy[b, ch, i, j]
                to_left, to_right = g * s, g * (1 - s)
                through_gate = g * s * (1 - s) * (left - right)
                for r in range(h0, h1):
                    for t in range(w0, w1):
                        p, q, value = r - h0, t - w0, x[b, ch, r, t]
                        gx[b, ch, r, t] += (to_left * leaf1[p, q] + to_right * leaf2[p, q]
                                            + through_gate * gate[p, q])
                        gmasks_per_plane[plane, 0, p, q] += to_left * value
                        gmasks_per_plane[plane, 1, p, q] += to_right * value
                        gmasks_per_plane[plane, 2, p, q] += through_gate * value
    return gx, gmasks_per_plane


# --- the wrappers: arguments checked, memory checked, then the compiled kernels -------------

_compiled = {name: serial_when_small(kernel) for name, kernel in {
    "gated_max_ave_pool2d_forward": _gated_max_ave_pool2d_forward_kernel,
    "gated_max_ave_pool2d_backward": _gated_max_ave_pool2d_backward_kernel,
    "tree_pool2d_forward": _tree_pool2d_forward_kernel,
    "tree_pool2d_backward": _tree_pool2d_backward_kernel,
}.items()}


def gated_max_ave_pool2d_forward(x, gate, kernel_size, stride, output_size):
    """x: (N, C, H, W), gate: (kh, kw) -> y, argmax: (N, C, OH, OW) (argmax int32)."""
    kernel = "gated_max_ave_pool2d_forward"
    kernel_size, stride, output_size = check_pool_arguments(kernel, x, kernel_size, stride,
                                                            output_size)
    check_masks(kernel, x, kernel_size, gate=gate)
    memory.check_allocation(kernel, "output and argmax", x.shape[:2] + output_size, x.dtype,
                            np.int32)
    return _compiled[kernel](x, gate, kernel_size, stride, output_size)


def gated_max_ave_pool2d_backward(gy, x, gate, argmax, kernel_size, stride):
    """gy, argmax: (N, C, OH, OW), x: (N, C, H, W) -> gx: (N, C, H, W), ggate: (kh, kw)."""
    kernel = "gated_max_ave_pool2d_backward"
    contracts.floats(kernel, "x", x, "N, C, H, W")
    output_size = check_gradient(kernel, gy, x)
    kernel_size, stride, _ = check_pool_arguments(kernel, x, kernel_size, stride, output_size)
    check_masks(kernel, x, kernel_size, gate=gate)
    contracts.indices(kernel, "argmax", argmax, dtype=np.int32)
    contracts.same_shape(kernel, "gy", gy.shape, argmax=argmax)
    memory.check_allocation(kernel, "gradient", x.shape, x.dtype)
    gx, ggate_per_plane, outside = _compiled[kernel](gy, x, gate, argmax, kernel_size, stride)
    if outside:
        h, w = x.shape[2:]
        raise contracts.index_out_of_range(kernel, "argmax", argmax.shape, outside, h * w,
                                           f"a plane of {h} x {w}")
    return gx, ggate_per_plane.sum(axis=0).astype(x.dtype)


def tree_pool2d_forward(x, leaf1, leaf2, gate, kernel_size, stride, output_size):
    """x: (N, C, H, W); leaf1, leaf2, gate: (kh, kw) -> y: (N, C, OH, OW)."""
    kernel = "tree_pool2d_forward"
    kernel_size, stride, output_size = check_pool_arguments(kernel, x, kernel_size, stride,
                                                            output_size)
    check_masks(kernel, x, kernel_size, leaf1=leaf1, leaf2=leaf2, gate=gate)
    memory.check_allocation(kernel, "output", x.shape[:2] + output_size, x.dtype)
    return _compiled[kernel](x, leaf1, leaf2, gate, kernel_size, stride, output_size)


def tree_pool2d_backward(gy, x, leaf1, leaf2, gate, kernel_size, stride):
    """gy: (N, C, OH, OW), x: (N, C, H, W) -> gx, gleaf1, gleaf2, ggate."""
    kernel = "tree_pool2d_backward"
    contracts.floats(kernel, "x", x, "N, C, H, W")
    output_size = check_gradient(kernel, gy, x)
    kernel_size, stride, _ = check_pool_arguments(kernel, x, kernel_size, stride, output_size)
    check_masks(kernel, x, kernel_size, leaf1=leaf1, leaf2=leaf2, gate=gate)
    memory.check_allocation(kernel, "gradient", x.shape, x.dtype)
    gx, gmasks_per_plane = _compiled[kernel](gy, x, leaf1, leaf2, gate, kernel_size, stride)
    gleaf1, gleaf2, ggate = gmasks_per_plane.sum(axis=0).astype(x.dtype)
    return gx, gleaf1, gleaf2, ggate


KERNELS = {
    "gated_max_ave_pool2d_forward": gated_max_ave_pool2d_forward,
    "gated_max_ave_pool2d_backward": gated_max_ave_pool2d_backward,
    "tree_pool2d_forward": tree_pool2d_forward,
    "tree_pool2d_backward": tree_pool2d_backward,
}
