"""Launchers of kernels/batchnorm.cu and kernels/lrn.cu.

Same names, arguments and results as ``cnnlite.reference.norm`` (read that first for the
formulas). Every kernel takes the (N, C, L) view of its input. The per-channel vectors (mean,
inv_std, weight, ...) are converted to the data's type, because a kernel is compiled for one
element type T.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch, launch_per_row
from cnnlite.reference import contracts


def _channel_vectors(xp, dtype, *vectors):
    return [xp.ascontiguousarray(v, dtype=dtype) for v in vectors]


# ---------------------------------------------------------------------------------------------
# Batch normalisation.


@reports_out_of_memory
def batch_norm_statistics(x):
    """x: (N, C, L) -> mean, var: (C,) (biased); one block per channel, summing in shared
    memory. NaN for an empty batch (M = 0), which has no statistics (and no value to read)."""
    xp = backend.array_module(x)
    dtype = float_dtype("batch_norm_statistics", x)
    contracts.batch_norm_statistics(x)
    x = xp.ascontiguousarray(x)
    N, C, L = x.shape
    if N * L == 0:
        return xp.full(C, np.nan, dtype=dtype), xp.full(C, np.nan, dtype=dtype)
    mean = xp.empty(C, dtype=dtype)
    var = xp.empty(C, dtype=dtype)
    launch_per_row(kernel_function("batchnorm", "batch_norm_statistics", dtype, x), C, N * L,
                   (x, mean, var, *int64s(N, C, L)))
    return mean, var


@reports_out_of_memory
def batch_norm_forward(x, mean, inv_std, weight, bias):
    """y = (x - mean) * inv_std * weight + bias per channel.  x: (N, C, L); the rest (C,)."""
    xp = backend.array_module(x)
    dtype = float_dtype("batch_norm_forward", x)
    contracts.batch_norm_forward(x, mean, inv_std, weight, bias)
    x = xp.ascontiguousarray(x)
    N, C, L = x.shape
    mean, inv_std, weight, bias = _channel_vectors(xp, dtype, mean, inv_std, weight, bias)
    y = xp.empty((N, C, L), dtype=dtype)
    launch(kernel_function("batchnorm", "batch_norm_forward", dtype, x), y.size,
           (x, mean, inv_std, weight, bias, y, *int64s(N, C, L)))
    return y


@reports_out_of_memory
def batch_norm_grad_statistics(gy, x, mean, inv_std):
    """gy, x: (N, C, L) -> grad_bias = sum(gy), grad_weight = sum(gy * x_hat): (C,) each; one
    block per channel."""
    xp = backend.array_module(gy)
    dtype = float_dtype("batch_norm_grad_statistics", gy)
    contracts.batch_norm_grad_statistics(gy, x, mean, inv_std)
    gy = xp.ascontiguousarray(gy)
    x = xp.ascontiguousarray(x, dtype=dtype)
    N, C, L = x.shape
    mean, inv_std = _channel_vectors(xp, dtype, mean, inv_std)
    grad_bias = xp.empty(C, dtype=dtype)
    grad_weight = xp.empty(C, dtype=dtype)
    launch_per_row(kernel_function("batchnorm", "batch_norm_grad_statistics", dtype, gy), C,
                   N * L, (gy, x, mean, inv_std, grad_bias, grad_weight, *int64s(N, C, L)))
    return grad_bias, grad_weight


@reports_out_of_memory
def batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias):
    """dL/dx of batch norm with batch statistics.  gy, x: (N, C, L); the rest (C,)."""
    xp = backend.array_module(gy)
    dtype = float_dtype("batch_norm_backward", gy)
    contracts.batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias)
    gy = xp.ascontiguousarray(gy)
    x = xp.ascontiguousarray(x, dtype=dtype)
    N, C, L = x.shape
    vectors = _channel_vectors(xp, dtype, mean, inv_std, weight, grad_weight, grad_bias)
    gx = xp.empty((N, C, L), dtype=dtype)
    launch(kernel_function("batchnorm", "batch_norm_backward", dtype, gy), gx.size,
           (gy, x, *vectors, gx, *int64s(N, C, L)))
    return gx


# ---------------------------------------------------------------------------------------------
# Local response normalisation.


@reports_out_of_memory
def lrn_forward(x, size, coefficient, beta, k):
    """x: (N, C, L) -> y, denom, factor: (N, C, L); one thread per element."""
    xp = backend.array_module(x)
    dtype = float_dtype("lrn_forward", x)
    contracts.lrn_forward(x, size, coefficient, beta, k)
    x = xp.ascontiguousarray(x)
    N, C, L = x.shape
    y, denom, factor = (xp.empty((N, C, L), dtype=dtype) for _ in range(3))
    real = dtype.type
    launch(kernel_function("lrn", "lrn_forward", dtype, x), x.size,
           (x, y, denom, factor, *int64s(N, C, L, size), real(coefficient), real(beta), real(k)))
    return y, denom, factor


@reports_out_of_memory
def lrn_backward(gy, x, denom, factor, size, coefficient, beta):
    """gy, x, denom, factor: (N, C, L) -> gx: (N, C, L); one thread per element, gathering."""
    xp = backend.array_module(gy)
    dtype = float_dtype("lrn_backward", gy)
    contracts.lrn_backward(gy, x, denom, factor, size, coefficient, beta)
    gy = xp.ascontiguousarray(gy)
    x, denom, factor = (xp.ascontiguousarray(a, dtype=dtype) for a in (x, denom, factor))
    N, C, L = x.shape
    gx = xp.empty((N, C, L), dtype=dtype)
    real = dtype.type
    launch(kernel_function("lrn", "lrn_backward", dtype, gy), gx.size,
           (gy, x, denom, factor, gx, *int64s(N, C, L, size), real(coefficient), real(beta)))
    return gx


KERNELS = {
    "batch_norm_statistics": batch_norm_statistics,
    "batch_norm_forward": batch_norm_forward,
    "batch_norm_grad_statistics": batch_norm_grad_statistics,
    "batch_norm_backward": batch_norm_backward,
    "lrn_forward": lrn_forward,
    "lrn_backward": lrn_backward,
}
