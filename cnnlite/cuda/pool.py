"""Launchers of kernels/pool.cu: max, average, stochastic and probability-weighted pooling.

Same names, arguments and results as ``cnnlite.reference.pool`` (read that first: it says what
each kernel computes, and how windows, padding and the picked index h*W + w work). The N*C
planes of x: (N, C, H, W) are independent, so the kernels see P = N*C planes.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch
from cnnlite.reference import contracts


@reports_out_of_memory
def max_pool2d_forward(x, kernel_size, stride, padding, output_size):
    """x: (N, C, H, W) -> y, argmax: (N, C, OH, OW) int32; one thread per output element."""
    xp = backend.array_module(x)
    dtype = float_dtype("max_pool2d_forward", x)
    contracts.max_pool2d_forward(x, kernel_size, stride, padding, output_size)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    y = xp.empty((N, C, OH, OW), dtype=dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=np.int32)
    launch(kernel_function("pool", "max_pool2d_forward", dtype, x), y.size,
           (x, y, argmax, *int64s(N * C, H, W, OH, OW, *kernel_size, *stride, *padding)))
    return y, argmax


def _outputs_reaching(lowest, highest, size):
    """(size, 2) long longs: for each input row r in [0, size), the first and the last output
    row i with lowest[i] <= r <= highest[i], i.e. whose picks may lie on row r (first > last
    where none may). lowest, highest: (OH,) NumPy arrays; the same for columns."""
    count = len(lowest)
    first = np.full(size, count, dtype=np.int64)
    last = np.full(size, -1, dtype=np.int64)
    for i in range(count):  # in order, so that last ends with the last output reaching a row
        span = slice(lowest[i], highest[i] + 1)
        first[span] = np.minimum(first[span], i)
        last[span] = i
    return np.stack([first, last], axis=1)


@reports_out_of_memory
def max_pool2d_backward(gy, argmax, input_size):
    """gy, argmax: (N, C, OH, OW) -> gx: (N, C, H, W); gx at argmax += gy.

    One thread per input element, gathering from the outputs that picked it (kernels/pool.cu
    says why not atomic adds). Where each thread looks comes from argmax itself, since the
    windows of the poolings that call this differ: per output row, its smallest and largest
    pick over all planes and columns (index // W grows with the index, so their rows bound the
    rows of all its picks); per output column, the smallest and largest column of its picks
    (a temporary the size of argmax). The first pair also shows any index outside the plane.
    Reading them back waits for the GPU: the price of that check. For max pooling the ranges
    are the windows' own; picks spread over whole planes (which adaptive and generalized
    poolings may make) widen them up to the whole output: still right, but then every thread
    scans up to OH*OW outputs.
    """
    xp = backend.array_module(gy)
    dtype = float_dtype("max_pool2d_backward", gy)
    contracts.max_pool2d_backward(gy, argmax, input_size)
    gy = xp.ascontiguousarray(gy)
    argmax = xp.ascontiguousarray(argmax)
    N, C, OH, OW = gy.shape
    H, W = input_size
    if gy.size == 0:
        return xp.zeros((N, C, H, W), dtype=dtype)
    planes = argmax.reshape(N * C, OH, OW)
    row_picks = backend.to_device(xp.stack([planes.min(axis=(0, 2)), planes.max(axis=(0, 2))]),
                                  "cpu")
    if row_picks[0].min() < 0 or row_picks[1].max() >= H * W:
        count = int(xp.count_nonzero((argmax < 0) | (argmax >= H * W)))
        raise contracts.index_out_of_range("max_pool2d_backward", "argmax", argmax.shape, count,
                                           H * W, f"a plane of {H} x {W}")
    columns = planes % W
    column_picks = backend.to_device(
        xp.stack([columns.min(axis=(0, 1)), columns.max(axis=(0, 1))]), "cpu")
    rows_reaching = xp.asarray(_outputs_reaching(*(row_picks // W), H))
    columns_reaching = xp.asarray(_outputs_reaching(*column_picks, W))
    gx = xp.empty((N, C, H, W), dtype=dtype)
    launch(kernel_function("pool", "max_pool2d_backward", dtype, gy), gx.size,
           (gy, argmax, rows_reaching, columns_reaching, gx, *int64s(N * C, H, W, OH, OW)))
    return gx


@reports_out_of_memory
def avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad):
    """x: (N, C, H, W) -> y: (N, C, OH, OW); one thread per output element."""
    xp = backend.array_module(x)
    dtype = float_dtype("avg_pool2d_forward", x)
    contracts.avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    y = xp.empty((N, C, OH, OW), dtype=dtype)
    launch(kernel_function("pool", "avg_pool2d_forward", dtype, x), y.size,
           (x, y, *int64s(N * C, H, W, OH, OW, *kernel_size, *stride, *padding,
                          bool(count_include_pad))))
    return y


@reports_out_of_memory
def avg_pool2d_backward(gy, input_size, kernel_size, stride, padding, count_include_pad):
    """gy: (N, C, OH, OW) -> gx: (N, C, H, W); one thread per input element, gathering."""
    xp = backend.array_module(gy)
    dtype = float_dtype("avg_pool2d_backward", gy)
    contracts.avg_pool2d_backward(gy, input_size, kernel_size, stride, padding,
                                  count_include_pad)
    gy = xp.ascontiguousarray(gy)
    N, C, OH, OW = gy.shape
    H, W = input_size
    gx = xp.empty((N, C, H, W), dtype=dtype)
    launch(kernel_function("pool", "avg_pool2d_backward", dtype, gy), gx.size,
           (gy, gx, *int64s(N * C, H, W, OH, OW, *kernel_size, *stride, *padding,
                            bool(count_include_pad))))
    return gx


@reports_out_of_memory
def stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms):
    """x: (N, C, H, W) >= 0, uniforms: (N, C, OH, OW) in [0, 1) -> y, chosen: (N, C, OH, OW)
    (chosen int32, as max pooling's argmax)."""
    xp = backend.array_module(x)
    dtype = float_dtype("stochastic_pool2d_sample", x)
    contracts.stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    uniforms = xp.ascontiguousarray(uniforms, dtype=np.float64)
    y = xp.empty((N, C, OH, OW), dtype=dtype)
    chosen = xp.empty((N, C, OH, OW), dtype=np.int32)
    launch(kernel_function("pool", "stochastic_pool2d_sample", dtype, x), y.size,
           (x, uniforms, y, chosen, *int64s(N * C, H, W, OH, OW, *kernel_size, *stride)))
    return y, chosen


@reports_out_of_memory
def probability_weighted_pool2d_forward(x, kernel_size, stride, output_size):
    """x: (N, C, H, W) >= 0 -> y = sum(a^2) / sum(a) per window: (N, C, OH, OW)."""
    xp = backend.array_module(x)
    dtype = float_dtype("probability_weighted_pool2d_forward", x)
    contracts.probability_weighted_pool2d_forward(x, kernel_size, stride, output_size)
    x = xp.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH, OW = output_size
    y = xp.empty((N, C, OH, OW), dtype=dtype)
    launch(kernel_function("pool", "probability_weighted_pool2d_forward", dtype, x), y.size,
           (x, y, *int64s(N * C, H, W, OH, OW, *kernel_size, *stride)))
    return y


@reports_out_of_memory
def probability_weighted_pool2d_backward(gy, x, kernel_size, stride):
    """gy: (N, C, OH, OW), x: (N, C, H, W) -> gx: (N, C, H, W), in two launches: the windows'
    sums and means (one thread per window), then one thread per input element gathering
    gy * (2 a - mean) / sum from the windows that contain it."""
    xp = backend.array_module(gy)
    dtype = float_dtype("probability_weighted_pool2d_backward", gy)
    contracts.probability_weighted_pool2d_backward(gy, x, kernel_size, stride)
    gy = xp.ascontiguousarray(gy)
    x = xp.ascontiguousarray(x, dtype=dtype)
    N, C, H, W = x.shape
    OH, OW = gy.shape[2:]
    geometry = int64s(N * C, H, W, OH, OW, *kernel_size, *stride)
    sums = xp.empty(gy.shape, dtype=np.float64)
    means = xp.empty(gy.shape, dtype=np.float64)
    launch(kernel_function("pool", "probability_weighted_window_statistics", dtype, x), gy.size,
           (x, sums, means, *geometry))
    gx = xp.empty((N, C, H, W), dtype=dtype)
    launch(kernel_function("pool", "probability_weighted_pool2d_backward", dtype, gy), gx.size,
           (gy, x, sums, means, gx, *geometry))
    return gx


KERNELS = {
    "max_pool2d_forward": max_pool2d_forward,
    "max_pool2d_backward": max_pool2d_backward,
    "avg_pool2d_forward": avg_pool2d_forward,
    "avg_pool2d_backward": avg_pool2d_backward,
    "stochastic_pool2d_sample": stochastic_pool2d_sample,
    "probability_weighted_pool2d_forward": probability_weighted_pool2d_forward,
    "probability_weighted_pool2d_backward": probability_weighted_pool2d_backward,
}
