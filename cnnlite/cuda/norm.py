"""Launchers of kernels/batchnorm.cu and kernels/lrn.cu.

Same names, arguments and results as ``cnnlite.reference.norm`` (read that first for the
formulas). Every kernel takes the (N, C, L) view of its input. The per-channel vectors (mean,
inv_std, weight, ...) are converted to the data's type, because a kernel is compiled for one
element type T.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import (MAX_BLOCK_THREADS, MAX_BLOCKS, float_dtype, int64s,
                                 kernel_function, launch, launch_per_row)
from cnnlite.reference import contracts


def _channel_vectors(xp, dtype, *vectors):
    return [xp.ascontiguousarray(v, dtype=dtype) for v in vectors]


# ---------------------------------------------------------------------------------------------
# Batch normalisation. The statistics and the backward's two sums take two passes (see
# kernels/batchnorm.cu): pass 1 reduces pieces of every channel on many blocks into a buffer of
# partial results, pass 2 combines each channel's partials.

#: Pass 1 cuts every channel into pieces, one block each, until channels x pieces fill a large
#: GPU twice over (an H100's 132 multiprocessors hold 8 blocks of 256 threads each: 1056) ...
REDUCTION_BLOCKS = 2048
#: ... but leaves a block at least this many values (with fewer, the partials and pass 2 become
#: a large share of the work) ...
MIN_BLOCK_VALUES = 4096
#: ... and at most this many, 256 per thread, however long the channel: a thread accumulates
#: its values in the kernel's type T, whose rounding error grows with their number.
MAX_BLOCK_VALUES = 65536
#: Rows of fewer values than a warp are read by columns (PieceReader in kernels/batchnorm.cu).
SHORT_ROW = 32


class ReductionPlan(NamedTuple):
    """Pass 1 over an (N, C, L) input: every channel cut into ``pieces`` pieces, ``parts``
    partial results per channel and piece, ``blocks`` blocks; ``by_columns`` for short rows."""
    by_columns: bool
    pieces: int
    parts: int
    blocks: int


def reduction_plan(shape) -> ReductionPlan:
    """The pass-1 plan for an (N, C, L) input with N*C*L > 0.

    Rows of L >= SHORT_ROW values: a block reads a piece of one channel's M = N*L values (C
    blocks per piece). Shorter rows are read by columns: a block reads min(C*L,
    MAX_BLOCK_THREADS) neighbouring columns (a tile; ceil(C*L / that) tiles per piece) down a
    piece of the N rows.
    """
    N, C, L = shape
    by_columns = L < SHORT_ROW
    if by_columns:
        lanes = min(C * L, MAX_BLOCK_THREADS)
        parts, rows, blocks_per_piece, block_values = L, N, -(-C * L // lanes), lanes * N
    else:
        parts, rows, blocks_per_piece, block_values = 1, N * L, C, N * L
    pieces = max(-(-REDUCTION_BLOCKS // blocks_per_piece), -(-block_values // MAX_BLOCK_VALUES))
    pieces = max(1, min(pieces, block_values // MIN_BLOCK_VALUES, rows))
    return ReductionPlan(by_columns, pieces, parts, blocks_per_piece * pieces)


def _first_pass(kernel, fields, *arrays):
    """Pass 1: ``kernel`` on ``arrays``, the first of them (N, C, L), as reduction_plan says.
    Returns the partials, float64 (pieces, C, parts, ``fields``): the fields of the kernel's
    Moments or GradientSums; and the plan."""
    xp = backend.array_module(arrays[0])
    N, C, L = arrays[0].shape
    plan = reduction_plan(arrays[0].shape)
    partial = xp.empty((plan.pieces, C, plan.parts, fields), dtype=np.float64)
    function = kernel_function("batchnorm", kernel, arrays[0].dtype, arrays[0])
    function((min(plan.blocks, MAX_BLOCKS),), (MAX_BLOCK_THREADS,),
             (*arrays, partial, *int64s(N, C, L, plan.pieces, plan.by_columns)))
    return partial, plan


@reports_out_of_memory
def batch_norm_statistics(x):
    """x: (N, C, L) -> mean, var: (C,) (biased), in two passes. NaN for an empty batch (M = 0),
    which has no statistics (and no value to read); empty for C = 0."""
    xp = backend.array_module(x)
    dtype = float_dtype("batch_norm_statistics", x)
    contracts.batch_norm_statistics(x)
    x = xp.ascontiguousarray(x)
    N, C, L = x.shape
    if x.size == 0:
        return xp.full(C, np.nan, dtype=dtype), xp.full(C, np.nan, dtype=dtype)
    partial, plan = _first_pass("batch_norm_partial_statistics", 3, x)  # count, mean, M2
    mean = xp.empty(C, dtype=dtype)
    var = xp.empty(C, dtype=dtype)
    launch_per_row(kernel_function("batchnorm", "batch_norm_statistics", dtype, x), C,
                   plan.pieces * plan.parts,
                   (partial, mean, var, *int64s(C, plan.parts, plan.pieces)))
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
    """gy, x: (N, C, L) -> grad_bias = sum(gy), grad_weight = sum(gy * x_hat): (C,) each, in
    two passes. For no values, what the CPU's sums give: 0 and 0 * inv_std."""
    xp = backend.array_module(gy)
    dtype = float_dtype("batch_norm_grad_statistics", gy)
    contracts.batch_norm_grad_statistics(gy, x, mean, inv_std)
    gy = xp.ascontiguousarray(gy)
    x = xp.ascontiguousarray(x, dtype=dtype)
    N, C, L = x.shape
    mean, inv_std = _channel_vectors(xp, dtype, mean, inv_std)
    if x.size == 0:
        return xp.zeros(C, dtype=dtype), xp.zeros(C, dtype=dtype) * inv_std
    partial, plan = _first_pass("batch_norm_partial_sums", 2, gy, x, mean)
    grad_bias = xp.empty(C, dtype=dtype)
    grad_weight = xp.empty(C, dtype=dtype)
    launch_per_row(kernel_function("batchnorm", "batch_norm_grad_statistics", dtype, gy), C,
                   plan.pieces * plan.parts,
                   (partial, inv_std, grad_bias, grad_weight,
                    *int64s(C, plan.parts, plan.pieces)))
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
