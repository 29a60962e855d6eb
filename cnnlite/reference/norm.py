"""Batch normalisation and local response normalisation as plain loops: the ground truth.

Every kernel works on a 3-d view ``(N, C, L)`` of its input: N samples, C channels and L
positions per channel (``L = H * W`` for images, ``L = 1`` for a ``(N, C)`` batch of vectors).
The ops in ``cnnlite.functional.norm`` make that view; here the formulas are written out one
channel at a time, as on paper. ``cnnlite.cpu.norm`` has fast versions of the same kernels,
with the same arguments and results.

Batch normalisation (``M = N * L`` values per channel, ``x_hat = (x - mean) * inv_std``):

    forward   mean[c] = sum(x[:, c, :]) / M,   var[c] = sum((x[:, c, :] - mean[c])^2) / M
              y = x_hat * weight[c] + bias[c]
    backward  grad_bias[c] = sum(gy[:, c, :]),   grad_weight[c] = sum(gy[:, c, :] * x_hat)
              gx = weight[c] * inv_std[c] / M * (M * gy - grad_bias[c] - x_hat * grad_weight[c])

Local response normalisation across channels (window of ``size`` channels, zero padded):

    forward   denom[n, c, l] = k + coefficient * sum_{j in window(c)} x[n, j, l]^2,
              window(c) = c - size//2 .. c + (size-1)//2
              factor = denom^(-beta),   y = x * factor
    backward  each y[c] depends on x[c] directly and, through denom[c], on every x[j] of its
              window:  dy[c]/dx[j] = [c == j] factor[c]
                                     - 2 beta coefficient x[c] x[j] factor[c] / denom[c]
"""
from __future__ import annotations

import numpy as np

from cnnlite.reference import contracts


# ---------------------------------------------------------------------------------------------
# Batch normalisation.


def batch_norm_statistics(x):
    """Mean and biased variance of every channel.  x: (N, C, L) -> mean (C,), var (C,).

    An empty batch (M = 0) has no statistics: NaN, as NumPy's mean of nothing.
    """
    contracts.batch_norm_statistics(x)
    # BEGIN SOLUTION
    N, C, L = x.shape
    count = N * L
    if count == 0:
        return np.full(C, np.nan, dtype=x.dtype), np.full(C, np.nan, dtype=x.dtype)
    mean = np.empty(C, dtype=x.dtype)
    var = np.empty(C, dtype=x.dtype)
    for c in range(C):
        total = 0.0
        for n in range(N):
            for l in range(L):
                total += float(x[n, c, l])
        mean[c] = total / count
        # A second pass over the centred values: the textbook variance, without cancellation.
        total = 0.0
        for n in range(N):
            for l in range(L):
                total += (float(x[n, c, l]) - float(mean[c])) ** 2
        var[c] = total / count
    return mean, var
    # END SOLUTION


def batch_norm_forward(x, mean, inv_std, weight, bias):
    """y[n, c, l] = (x[n, c, l] - mean[c]) * inv_std[c] * weight[c] + bias[c].

    x: (N, C, L); mean, inv_std, weight, bias: (C,). Returns y: (N, C, L).
    """
    contracts.batch_norm_forward(x, mean, inv_std, weight, bias)
    # BEGIN SOLUTION
    N, C, L = x.shape
    y = np.empty_like(x)
    for n in range(N):
        for c in range(C):
            for l in range(L):
                x_hat = (x[n, c, l] - mean[c]) * inv_std[c]
                y[n, c, l] = x_hat * weight[c] + bias[c]
    return y
    # END SOLUTION


def batch_norm_grad_statistics(gy, x, mean, inv_std):
    """The per-channel sums that every gradient of batch norm needs.

    gy, x: (N, C, L); mean, inv_std: (C,). Returns (C,) arrays
    ``grad_bias = sum(gy)`` and ``grad_weight = sum(gy * x_hat)``, which are also the
    gradients of the bias and the weight.
    """
    contracts.batch_norm_grad_statistics(gy, x, mean, inv_std)
    # BEGIN SOLUTION
    N, C, L = x.shape
    grad_bias = np.empty(C, dtype=gy.dtype)
    grad_weight = np.empty(C, dtype=gy.dtype)
    for c in range(C):
        sum_gy = 0.0
        sum_gy_x_hat = 0.0
        for n in range(N):
            for l in range(L):
                x_hat = (float(x[n, c, l]) - float(mean[c])) * float(inv_std[c])
                sum_gy += float(gy[n, c, l])
                sum_gy_x_hat += float(gy[n, c, l]) * x_hat
        grad_bias[c] = sum_gy
        grad_weight[c] = sum_gy_x_hat
    return grad_bias, grad_weight
    # END SOLUTION


def batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias):
    """dL/dx of batch norm with batch statistics (training mode).

    With ``gx_hat = gy * weight`` (the gradient reaching ``x_hat``)::

        gx = inv_std / M * (M * gx_hat - sum(gx_hat) - x_hat * sum(gx_hat * x_hat))
           = weight * inv_std / M * (M * gy - grad_bias - x_hat * grad_weight)

    The last two terms are the paths through the batch mean and the batch variance: moving one
    x moves every x_hat of its channel. gy, x: (N, C, L); the rest (C,). Returns gx: (N, C, L).
    """
    contracts.batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias)
    # BEGIN SOLUTION
    N, C, L = x.shape
    count = N * L
    gx = np.empty_like(gy)
    for n in range(N):
        for c in range(C):
            for l in range(L):
                x_hat = (x[n, c, l] - mean[c]) * inv_std[c]
                gx[n, c, l] = (weight[c] * inv_std[c] / count
                               * (count * gy[n, c, l] - grad_bias[c] - x_hat * grad_weight[c]))
    return gx
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# Local response normalisation. The L positions of a channel are independent of each other,
# so each loop body below handles all of them at once (a row ``x[n, c, :]``).


def lrn_window(c, size, channels):
    """The channels whose squares normalise channel ``c``: c - size//2 .. c + (size-1)//2,
    clipped to the existing channels (the others are zero padding and add nothing)."""
    first = max(c - size // 2, 0)
    last = min(c + (size - 1) // 2, channels - 1)
    return range(first, last + 1)


def lrn_forward(x, size, coefficient, beta, k):
    """Local response normalisation across channels.

    x: (N, C, L). Returns ``y, denom, factor``, all (N, C, L)::

        denom[n, c] = k + coefficient * sum_{j in window(c)} x[n, j]^2
        factor = denom^(-beta),   y = x * factor

    ``coefficient`` is ``alpha / size`` in PyTorch's and Caffe's convention, ``alpha`` in the
    AlexNet paper's.
    """
    contracts.lrn_forward(x, size, coefficient, beta, k)
    N, C, L = x.shape
    y = np.empty_like(x)
    denom = np.empty_like(x)
    factor = np.empty_like(x)
    for n in range(N):
        for c in range(C):
            sum_of_squares = np.zeros(L)
            for j in lrn_window(c, size, C):
                sum_of_squares += x[n, j] ** 2
            denom[n, c] = k + coefficient * sum_of_squares
            factor[n, c] = denom[n, c] ** -beta
            y[n, c] = x[n, c] * factor[n, c]
    return y, denom, factor


def lrn_backward(gy, x, denom, factor, size, coefficient, beta):
    """dL/dx of local response normalisation, from what ``lrn_forward`` returned.

    Every output channel c sends gradient to its own input directly and to each input j of its
    window through ``denom[c]``::

        gx[j] += gy[c] * factor[c]                                            (j == c)
        gx[j] += gy[c] * x[c] * (-beta) * denom[c]^(-beta-1) * coefficient * 2 x[j]

    with ``denom^(-beta-1) = factor / denom``. gy, x, denom, factor: (N, C, L); returns gx.
    """
    contracts.lrn_backward(gy, x, denom, factor, size, coefficient, beta)
    N, C, L = x.shape
    gx = np.zeros_like(gy)
    for n in range(N):
        for c in range(C):
            gx[n, c] += gy[n, c] * factor[n, c]
            through_denom = gy[n, c] * x[n, c] * factor[n, c] / denom[n, c]
            for j in lrn_window(c, size, C):
                gx[n, j] -= 2 * beta * coefficient * through_denom * x[n, j]
    return gx


KERNELS = {
    "batch_norm_statistics": batch_norm_statistics,
    "batch_norm_forward": batch_norm_forward,
    "batch_norm_grad_statistics": batch_norm_grad_statistics,
    "batch_norm_backward": batch_norm_backward,
    "lrn_forward": lrn_forward,
    "lrn_backward": lrn_backward,
}
