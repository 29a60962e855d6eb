"""Batch normalisation and local response normalisation: numba kernels.

Same names, arguments and results as the loops in ``cnnlite.reference.norm`` (read those first
for the formulas); every kernel takes the ``(N, C, L)`` view of its input. What makes these
fast:

* the batch statistics take one pass over memory where the loops take two (shifted sums,
  below); the LRN window sum is a running sum down the channels, two additions per value
  whatever the window size;
* ``prange`` spreads channels, (sample, channel) planes or samples over the cores;
* sums are kept in float64 whatever the input dtype, so that float32 results are as accurate
  as the reference's;
* outputs are allocated by NumPy and filled by numba (the ``..._into`` functions). NumPy asks
  the OS for transparent huge pages for big arrays, so the first write to a fresh 100 MB
  output costs about 50 page faults instead of 25,000, which more than halves the time of
  these memory-bound kernels.
"""
from __future__ import annotations

import numba
import numpy as np

from cnnlite import memory
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.reference import contracts


def _kernel(function):
    """Compile ``function`` with numba, its ``prange`` loops spread over the cores for large
    inputs (see ``cnnlite.cpu.parallel``).

    "reassoc" lets LLVM reorder the additions of a sum so that it can use SIMD lanes; the
    float64 accumulators keep the reordering from costing accuracy.
    """
    return serial_when_small(numba.njit(parallel=True, cache=True,
                                        fastmath={"reassoc", "contract"})(function))


# ---------------------------------------------------------------------------------------------
# Batch normalisation.


def batch_norm_statistics(x):
    """Mean and biased variance of every channel.  x: (N, C, L) -> mean (C,), var (C,); NaN
    for an empty batch (M = 0), which has no statistics."""
    contracts.batch_norm_statistics(x)
    N, C, L = x.shape
    if N * L == 0:
        return np.full(C, np.nan, dtype=x.dtype), np.full(C, np.nan, dtype=x.dtype)
    return _batch_norm_statistics(x)


@_kernel
def _batch_norm_statistics(x):
    """Mean and biased variance of every channel, M = N * L >= 1 values each.

    One pass: sum(d) and sum(d^2) with d = x - shift give mean = shift + sum(d) / M and
    var = sum(d^2) / M - (sum(d) / M)^2. The shift is one of the channel's own values, so d is
    of the order of the spread and the subtraction does not cancel away the variance (as it
    would with sum(x^2) / M - mean^2 when |mean| >> std).
    """
    N, C, L = x.shape
    count = N * L
    mean = np.empty(C, dtype=x.dtype)
    var = np.empty(C, dtype=x.dtype)
    for c in numba.prange(C):
        shift = np.float64(x[0, c, 0])
        total = 0.0
        total_sq = 0.0
        for n in range(N):
            for l in range(L):
                d = np.float64(x[n, c, l]) - shift
                total += d
                total_sq += d * d
        centred_mean = total / count
        mean[c] = shift + centred_mean
        var[c] = max(total_sq / count - centred_mean * centred_mean, 0.0)
    return mean, var


def batch_norm_forward(x, mean, inv_std, weight, bias):
    """y[n, c, l] = (x[n, c, l] - mean[c]) * inv_std[c] * weight[c] + bias[c]."""
    contracts.batch_norm_forward(x, mean, inv_std, weight, bias)
    memory.check_allocation("batch_norm_forward", "output", x.shape, x.dtype)
    y = np.empty_like(x)
    _batch_norm_forward_into(x, mean, inv_std, weight, bias, y)
    return y


@_kernel
def _batch_norm_forward_into(x, mean, inv_std, weight, bias, y):
    N, C, L = x.shape
    for plane in numba.prange(N * C):
        n, c = plane // C, plane % C
        channel_mean = mean[c]
        scale = inv_std[c] * weight[c]
        shift = bias[c]
        for l in range(L):
            y[n, c, l] = (x[n, c, l] - channel_mean) * scale + shift


def batch_norm_grad_statistics(gy, x, mean, inv_std):
    """grad_bias = sum(gy) and grad_weight = sum(gy * x_hat) per channel: (C,) each."""
    contracts.batch_norm_grad_statistics(gy, x, mean, inv_std)
    return _batch_norm_grad_statistics(gy, x, mean, inv_std)


@_kernel
def _batch_norm_grad_statistics(gy, x, mean, inv_std):
    """grad_bias = sum(gy) and grad_weight = sum(gy * x_hat) per channel, in one pass."""
    N, C, L = x.shape
    grad_bias = np.empty(C, dtype=gy.dtype)
    grad_weight = np.empty(C, dtype=gy.dtype)
    for c in numba.prange(C):
        channel_mean = np.float64(mean[c])
        sum_gy = 0.0
        sum_gy_centred = 0.0
        for n in range(N):
            for l in range(L):
                g = np.float64(gy[n, c, l])
                sum_gy += g
                sum_gy_centred += g * (np.float64(x[n, c, l]) - channel_mean)
        grad_bias[c] = sum_gy
        grad_weight[c] = sum_gy_centred * inv_std[c]
    return grad_bias, grad_weight


def batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias):
    """gx = weight * inv_std / M * (M * gy - grad_bias - x_hat * grad_weight), per channel
    folded into gx = a * gy - b * (x - mean) - d with three constants."""
    contracts.batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias)
    gx = np.empty_like(gy)
    if gx.size:  # the constants divide by M = N * L
        _batch_norm_backward_into(gy, x, mean, inv_std, weight, grad_weight, grad_bias, gx)
    return gx


@_kernel
def _batch_norm_backward_into(gy, x, mean, inv_std, weight, grad_weight, grad_bias, gx):
    N, C, L = x.shape
    count = N * L
    for plane in numba.prange(N * C):
        n, c = plane // C, plane % C
        a = weight[c] * inv_std[c]
        b = a * inv_std[c] * grad_weight[c] / count
        d = a * grad_bias[c] / count
        channel_mean = mean[c]
        for l in range(L):
            gx[n, c, l] = a * gy[n, c, l] - b * (x[n, c, l] - channel_mean) - d


# ---------------------------------------------------------------------------------------------
# Local response normalisation. For each sample the window sum runs down the channels: moving
# from channel c-1 to c, one channel enters the window and one leaves it. A ring of ``size``
# rows remembers what each channel in the window contributed, so the one leaving is subtracted
# exactly as it was added; slots of channels outside 0..C-1 stay zero (the zero padding).


@numba.njit(inline="always")
def _negative_power(d, beta):
    """d^(-beta). beta = 0.75 (AlexNet, CaffeNet, GoogLeNet; Caffe's default) is the common
    case, and two square roots are about four times faster than the general power."""
    if beta == 0.75:
        root = np.sqrt(d)
        return 1.0 / (root * np.sqrt(root))
    return d ** -beta


def lrn_forward(x, size, coefficient, beta, k):
    """y, denom, factor = LRN of x across channels (see the reference for the formula)."""
    contracts.lrn_forward(x, size, coefficient, beta, k)
    memory.check_allocation("lrn_forward", "output, denominator and factor", x.shape, x.dtype,
                            x.dtype, x.dtype)
    y, denom, factor = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    _lrn_forward_into(x, size, coefficient, beta, k, y, denom, factor)
    return y, denom, factor


@_kernel
def _lrn_forward_into(x, size, coefficient, beta, k, y, denom, factor):
    """The window of output channel c is c - size//2 .. c + (size-1)//2: channel c + (size-1)//2
    enters it and channel c - size//2 - 1 leaves it."""
    N, C, L = x.shape
    ahead = (size - 1) // 2
    for n in numba.prange(N):
        ring = np.zeros((size, L))
        window = np.zeros(L)
        for entering in range(min(ahead, C)):
            for l in range(L):
                square = np.float64(x[n, entering, l]) ** 2
                ring[entering % size, l] = square
                window[l] += square
        for c in range(C):
            entering = c + ahead
            slot = entering % size
            for l in range(L):
                square = np.float64(x[n, entering, l]) ** 2 if entering < C else 0.0
                window[l] += square - ring[slot, l]
                ring[slot, l] = square
                d = k + coefficient * window[l]
                f = _negative_power(d, beta)
                denom[n, c, l] = d
                factor[n, c, l] = f
                y[n, c, l] = x[n, c, l] * f


def lrn_backward(gy, x, denom, factor, size, coefficient, beta):
    """gx[j] = gy[j] * factor[j] - 2 beta coefficient x[j] * sum_c gy[c] x[c] factor[c] / denom[c]

    where the sum runs over the output channels c whose window holds j: c = j - (size-1)//2 ..
    j + size//2, the forward window mirrored (the same one when size is odd).
    """
    contracts.lrn_backward(gy, x, denom, factor, size, coefficient, beta)
    gx = np.empty_like(gy)
    _lrn_backward_into(gy, x, denom, factor, size, coefficient, beta, gx)
    return gx


@_kernel
def _lrn_backward_into(gy, x, denom, factor, size, coefficient, beta, gx):
    N, C, L = x.shape
    ahead = size // 2
    for n in numba.prange(N):
        ring = np.zeros((size, L))
        window = np.zeros(L)
        for entering in range(min(ahead, C)):
            for l in range(L):
                through_denom = (np.float64(gy[n, entering, l]) * x[n, entering, l]
                                 * factor[n, entering, l] / denom[n, entering, l])
                ring[entering % size, l] = through_denom
                window[l] += through_denom
        for j in range(C):
            entering = j + ahead
            slot = entering % size
            for l in range(L):
                through_denom = 0.0
                if entering < C:
                    through_denom = (np.float64(gy[n, entering, l]) * x[n, entering, l]
                                     * factor[n, entering, l] / denom[n, entering, l])
                window[l] += through_denom - ring[slot, l]
                ring[slot, l] = through_denom
                gx[n, j, l] = (gy[n, j, l] * factor[n, j, l]
                               - 2.0 * beta * coefficient * x[n, j, l] * window[l])


KERNELS = {
    "batch_norm_statistics": batch_norm_statistics,
    "batch_norm_forward": batch_norm_forward,
    "batch_norm_grad_statistics": batch_norm_grad_statistics,
    "batch_norm_backward": batch_norm_backward,
    "lrn_forward": lrn_forward,
    "lrn_backward": lrn_backward,
}
