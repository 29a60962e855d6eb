"""Pooling kernels in numba: the loops of ``cnnlite.reference.pool``, compiled.

Same names, same arguments, same results as the reference loops (read those first: they say
what each kernel computes). Here every (image, channel) plane is independent work, so the
outer loop runs over the N*C planes in parallel (``prange``) and each thread walks its plane's
windows element by element, which keeps one plane in the cache while it is pooled. Backward
kernels write only into their own plane, so no two threads ever touch the same element.

Sums are accumulated in float64 whatever the input's dtype; the result is stored in it.

The compiled kernels (``_..._kernel``) index their arrays without bounds checks, as numba
does. The functions named after the kernels are the public wrappers: they check the arguments
(``cnnlite.reference.contracts``) and the memory the outputs need (``cnnlite.memory``) before
running them, and the backward of max pooling checks each argmax value as it reads it.

Small inputs run on one thread: waking the other threads and waiting for them at the end of
the parallel loop costs tens of microseconds on a quiet machine, and milliseconds on a busy
one (a thread that has lost its core holds everybody up), far more than pooling a few planes.
"""

import numpy as np
from numba import njit, prange

from cnnlite import memory
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.reference import contracts


@njit(cache=True, inline="always")
def padded_window(i, stride, padding, kernel, size):
    """(start, stop) of output i's window along one axis, including the padding it covers."""
    start = i * stride - padding
    return start, min(start + kernel, size + padding)


@njit(cache=True, inline="always")
def input_window(i, stride, padding, kernel, size):
    """(start, stop) of output i's window along one axis, clipped to the input 0..size."""
    start = i * stride - padding
    return max(start, 0), min(start + kernel, size)


# --- max pooling ----------------------------------------------------------------------------

@njit(cache=True)
def first_nan(plane, h0, h1, w0, w1):
    """Flat index (h * W + w) of the first NaN of plane[h0:h1, w0:w1] in row-major order, or -1."""
    for r in range(h0, h1):
        for s in range(w0, w1):
            if plane[r, s] != plane[r, s]:
                return r * plane.shape[1] + s
    return -1


@njit(parallel=True, cache=True)
def _max_pool2d_forward_kernel(x, kernel_size, stride, padding, output_size):
    """y = max over each window, argmax = where it is (h * W + w); first maximum wins a tie.

    x: (N, C, H, W) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW) int32.
    """
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
                best = x[b, ch, h0, w0]
                best_index = h0 * w + w0
                nan_probe = 0.0
                for r in range(h0, h1):
                    for s in range(w0, w1):
                        value = x[b, ch, r, s]
                        nan_probe += value
                        if value > best:
                            best = value
                            best_index = r * w + s
                # A NaN must win (propagate), but testing every element for one halves the
                # speed; the running sum turns NaN if any element is NaN (or inf - inf).
                if nan_probe != nan_probe:
                    nan_index = first_nan(x[b, ch], h0, h1, w0, w1)
                    if nan_index >= 0:
                        best, best_index = x[b, ch, nan_index // w, nan_index % w], nan_index
                y[b, ch, i, j] = best
                argmax[b, ch, i, j] = best_index
    return y, argmax


@njit(parallel=True, cache=True)
def _max_pool2d_backward_kernel(gy, argmax, input_size):
    """gx[n, c] at argmax[n, c, i, j] += gy[n, c, i, j]; also the number of argmax values
    outside the plane, which are skipped (the wrapper raises if there is one).

    gy, argmax: (N, C, OH, OW); input_size: (H, W) -> gx: (N, C, H, W), that number.
    Testing each index costs one compare, which the branch predictor always guesses right:
    nothing measurable, where a separate pass over argmax for its minimum and maximum would
    read it twice more.
    """
    n, c, oh, ow = gy.shape
    h, w = input_size
    plane_size = h * w
    gx = np.zeros((n * c, plane_size), dtype=gy.dtype)
    outside = 0
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            for j in range(ow):
                index = argmax[b, ch, i, j]
                if 0 <= index < plane_size:
                    gx[plane, index] += gy[b, ch, i, j]
                else:
                    outside += 1
    return gx.reshape((n, c, h, w)), outside


# --- average pooling ------------------------------------------------------------------------

@njit(cache=True, inline="always")
def avg_divisor(i, j, kernel_size, stride, padding, h, w, count_include_pad):
    """The number of elements window (i, j)'s sum is divided by (see the reference loops)."""
    if count_include_pad:
        r0, r1 = padded_window(i, stride[0], padding[0], kernel_size[0], h)
        s0, s1 = padded_window(j, stride[1], padding[1], kernel_size[1], w)
    else:
        r0, r1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
        s0, s1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
    return (r1 - r0) * (s1 - s0)


@njit(parallel=True, cache=True)
def _avg_pool2d_forward_kernel(x, kernel_size, stride, padding, output_size, count_include_pad):
    """y = sum over each window / divisor.   x: (N, C, H, W) -> y: (N, C, OH, OW)."""
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
                total = 0.0
                for r in range(h0, h1):
                    for s in range(w0, w1):
                        total += x[b, ch, r, s]
                y[b, ch, i, j] = total / avg_divisor(i, j, kernel_size, stride, padding, h, w,
                                                     count_include_pad)
    return y


@njit(parallel=True, cache=True)
def _avg_pool2d_backward_kernel(gy, input_size, kernel_size, stride, padding, count_include_pad):
    """gx over window (i, j) += gy[i, j] / divisor.  gy: (N, C, OH, OW) -> gx: (N, C, H, W)."""
    n, c, oh, ow = gy.shape
    h, w = input_size
    gx = np.zeros((n, c, h, w), dtype=gy.dtype)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
                share = gy[b, ch, i, j] / avg_divisor(i, j, kernel_size, stride, padding, h, w,
                                                      count_include_pad)
                for r in range(h0, h1):
                    for s in range(w0, w1):
                        gx[b, ch, r, s] += share
    return gx


# --- stochastic pooling (no padding; windows clipped to the input) --------------------------

@njit(parallel=True, cache=True)
def _stochastic_pool2d_sample_kernel(x, kernel_size, stride, output_size, uniforms):
    """Pick element k of each window with probability a_k / sum(a) (inverse CDF with u).

    x: (N, C, H, W) non-negative, uniforms: (N, C, OH, OW) in [0, 1)
    -> y: (N, C, OH, OW), chosen: (N, C, OH, OW) int32 (h * W + w).
    """
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    chosen = np.empty((n, c, oh, ow), dtype=np.int32)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                total = 0.0
                for r in range(h0, h1):
                    for s in range(w0, w1):
                        total += x[b, ch, r, s]
                threshold = uniforms[b, ch, i, j] * total
                # The first element is the pick of an all-zero window; the last nonzero one
                # when rounding leaves the running sum just below the threshold.
                pick, running, found = h0 * w + w0, 0.0, False
                for r in range(h0, h1):
                    for s in range(w0, w1):
                        value = x[b, ch, r, s]
                        if value > 0 and not found:
                            pick, running = r * w + s, running + value
                            found = running > threshold
                y[b, ch, i, j] = x[b, ch, pick // w, pick % w]
                chosen[b, ch, i, j] = pick
    return y, chosen


@njit(cache=True, inline="always")
def window_moments(x, b, ch, h0, h1, w0, w1):
    """sum(a) and sum(a^2) over the window rows h0..h1-1, columns w0..w1-1 of plane (b, ch)."""
    total, squares = 0.0, 0.0
    for r in range(h0, h1):
        for s in range(w0, w1):
            value = x[b, ch, r, s]
            total += value
            squares += value * value
    return total, squares


@njit(parallel=True, cache=True)
def _probability_weighted_pool2d_forward_kernel(x, kernel_size, stride, output_size):
    """y = sum(a^2) / sum(a) over each window (0 for an all-zero window)."""
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                total, squares = window_moments(x, b, ch, h0, h1, w0, w1)
                y[b, ch, i, j] = squares / total if total > 0 else 0.0
    return y


@njit(parallel=True, cache=True)
def _probability_weighted_pool2d_backward_kernel(gy, x, kernel_size, stride):
    """gx over window (i, j) += gy[i, j] * (2 a_k - y) / sum(a); nothing for an all-zero one."""
    n, c, h, w = x.shape
    oh, ow = gy.shape[2], gy.shape[3]
    gx = np.zeros((n, c, h, w), dtype=gy.dtype)
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(oh):
            h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
            for j in range(ow):
                w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                total, squares = window_moments(x, b, ch, h0, h1, w0, w1)
                if total > 0:
                    y = squares / total
                    for r in range(h0, h1):
                        for s in range(w0, w1):
                            gx[b, ch, r, s] += gy[b, ch, i, j] * (2 * x[b, ch, r, s] - y) / total
    return gx


# --- the wrappers: arguments checked, memory checked, then the compiled kernels -------------

_compiled = {name: serial_when_small(kernel) for name, kernel in {
    "max_pool2d_forward": _max_pool2d_forward_kernel,
    "max_pool2d_backward": _max_pool2d_backward_kernel,
    "avg_pool2d_forward": _avg_pool2d_forward_kernel,
    "avg_pool2d_backward": _avg_pool2d_backward_kernel,
    "stochastic_pool2d_sample": _stochastic_pool2d_sample_kernel,
    "probability_weighted_pool2d_forward": _probability_weighted_pool2d_forward_kernel,
    "probability_weighted_pool2d_backward": _probability_weighted_pool2d_backward_kernel,
}.items()}


def _pair(values):
    """A pair as a tuple of Python ints: one type for numba, which compiles once per type."""
    return int(values[0]), int(values[1])


def max_pool2d_forward(x, kernel_size, stride, padding, output_size):
    """x: (N, C, H, W) -> y, argmax: (N, C, OH, OW) (argmax int32, h * W + w)."""
    contracts.max_pool2d_forward(x, kernel_size, stride, padding, output_size)
    memory.check_allocation("max_pool2d_forward", "output and argmax",
                            x.shape[:2] + tuple(output_size), x.dtype, np.int32)
    return _compiled["max_pool2d_forward"](x, _pair(kernel_size), _pair(stride),
                                           _pair(padding), _pair(output_size))


def max_pool2d_backward(gy, argmax, input_size):
    """gy, argmax: (N, C, OH, OW) -> gx: (N, C, H, W), gx at argmax += gy."""
    contracts.max_pool2d_backward(gy, argmax, input_size)
    h, w = _pair(input_size)
    memory.check_allocation("max_pool2d_backward", "gradient", gy.shape[:2] + (h, w), gy.dtype)
    gx, outside = _compiled["max_pool2d_backward"](gy, argmax, (h, w))
    if outside:
        raise contracts.index_out_of_range("max_pool2d_backward", "argmax", argmax.shape,
                                           outside, h * w, f"a plane of {h} x {w}")
    return gx


def avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad):
    """x: (N, C, H, W) -> y: (N, C, OH, OW)."""
    contracts.avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad)
    memory.check_allocation("avg_pool2d_forward", "output", x.shape[:2] + tuple(output_size),
                            x.dtype)
    return _compiled["avg_pool2d_forward"](x, _pair(kernel_size), _pair(stride), _pair(padding),
                                           _pair(output_size), bool(count_include_pad))


def avg_pool2d_backward(gy, input_size, kernel_size, stride, padding, count_include_pad):
    """gy: (N, C, OH, OW) -> gx: (N, C, H, W)."""
    contracts.avg_pool2d_backward(gy, input_size, kernel_size, stride, padding,
                                  count_include_pad)
    memory.check_allocation("avg_pool2d_backward", "gradient", gy.shape[:2] + tuple(input_size),
                            gy.dtype)
    return _compiled["avg_pool2d_backward"](gy, _pair(input_size), _pair(kernel_size),
                                            _pair(stride), _pair(padding),
                                            bool(count_include_pad))


def stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms):
    """x: (N, C, H, W), uniforms: (N, C, OH, OW) -> y, chosen: (N, C, OH, OW) (chosen int32)."""
    contracts.stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms)
    memory.check_allocation("stochastic_pool2d_sample", "output and choices",
                            x.shape[:2] + tuple(output_size), x.dtype, np.int32)
    return _compiled["stochastic_pool2d_sample"](x, _pair(kernel_size), _pair(stride),
                                                 _pair(output_size), uniforms)


def probability_weighted_pool2d_forward(x, kernel_size, stride, output_size):
    """x: (N, C, H, W) -> y: (N, C, OH, OW)."""
    contracts.probability_weighted_pool2d_forward(x, kernel_size, stride, output_size)
    memory.check_allocation("probability_weighted_pool2d_forward", "output",
                            x.shape[:2] + tuple(output_size), x.dtype)
    return _compiled["probability_weighted_pool2d_forward"](x, _pair(kernel_size),
                                                            _pair(stride), _pair(output_size))


def probability_weighted_pool2d_backward(gy, x, kernel_size, stride):
    """gy: (N, C, OH, OW), x: (N, C, H, W) -> gx: (N, C, H, W)."""
    contracts.probability_weighted_pool2d_backward(gy, x, kernel_size, stride)
    return _compiled["probability_weighted_pool2d_backward"](gy, x, _pair(kernel_size),
                                                             _pair(stride))


KERNELS = {
    "max_pool2d_forward": max_pool2d_forward,
    "max_pool2d_backward": max_pool2d_backward,
    "avg_pool2d_forward": avg_pool2d_forward,
    "avg_pool2d_backward": avg_pool2d_backward,
    "stochastic_pool2d_sample": stochastic_pool2d_sample,
    "probability_weighted_pool2d_forward": probability_weighted_pool2d_forward,
    "probability_weighted_pool2d_backward": probability_weighted_pool2d_backward,
}
