"""Launchers of kernels/generalized_pool.cu: gated max-average pooling and tree pooling.

Same names, arguments and results as ``cnnlite.reference.generalized_pool`` (read that first:
it gives the formulas, the window geometry and the checks), which the launchers call before
any kernel runs. The N*C planes of x: (N, C, H, W) are independent, so the kernels see P = N*C
planes.

A backward runs three kernels (kernels/generalized_pool.cu says why): per window, the
coefficients of dy/dx, in double; per input element, gx gathered from its windows; and the
masks' gradients as block sums over the windows, in ``chunks`` partial sums that are added up
here. Gated pooling's maxima get their gradient from max pooling's backward (a gather too).
No kernel adds with atomicAdd into floats: the gradients have the same bits on every run.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import (MAX_BLOCKS, float_dtype, int64s, kernel_function, launch,
                                 launch_per_row)
from cnnlite.cuda.pool import max_pool2d_backward
from cnnlite.reference import contracts
from cnnlite.reference.generalized_pool import (check_gradient, check_masks,
                                                check_pool_arguments)

#: About this many windows per block when summing the masks' gradients: a block of 256 threads
#: then adds 16 windows per thread before its shared-memory sum.
WINDOWS_PER_BLOCK = 4096


def _geometry(x_shape, output_size, kernel_size, stride) -> tuple:
    """The kernels' trailing arguments: P, H, W, OH, OW, kh, kw, sh, sw as long longs."""
    N, C, H, W = x_shape
    return int64s(N * C, H, W, *output_size, *kernel_size, *stride)


def _mask_gradients(xp, x, coefficients, masks, kernel_size, geometry, dtype):
    """The gradients of the first ``masks`` masks, (masks, kh, kw) of ``dtype``: rows
    0 .. masks - 1 of ``coefficients`` (rows, windows) times x, summed over all windows."""
    windows = coefficients.shape[1]
    sums = masks * kernel_size[0] * kernel_size[1]
    chunks = max(1, min(-(-windows // WINDOWS_PER_BLOCK), MAX_BLOCKS // sums))
    partials = xp.empty((chunks, masks, *kernel_size), dtype=np.float64)
    launch_per_row(kernel_function("generalized_pool", "window_mask_gradients", dtype, x),
                   chunks * sums, -(-windows // chunks),
                   (x, coefficients, partials, *int64s(masks, chunks), *geometry))
    return partials.sum(axis=0).astype(dtype)


# --- gated max-average pooling --------------------------------------------------------------

@reports_out_of_memory
def gated_max_ave_pool2d_forward(x, gate, kernel_size, stride, output_size):
    """x: (N, C, H, W), gate: (kh, kw) -> y, argmax: (N, C, OH, OW) (argmax int32); one thread
    per output element."""
    kernel = "gated_max_ave_pool2d_forward"
    xp = backend.array_module(x)
    dtype = float_dtype(kernel, x)
    kernel_size, stride, output_size = check_pool_arguments(kernel, x, kernel_size, stride,
                                                            output_size)
    check_masks(kernel, x, kernel_size, gate=gate)
    x, gate = xp.ascontiguousarray(x), xp.ascontiguousarray(gate)
    y = xp.empty(x.shape[:2] + output_size, dtype=dtype)
    argmax = xp.empty(y.shape, dtype=np.int32)
    launch(kernel_function("generalized_pool", kernel, dtype, x), y.size,
           (x, gate, y, argmax, *_geometry(x.shape, output_size, kernel_size, stride)))
    return y, argmax


@reports_out_of_memory
def gated_max_ave_pool2d_backward(gy, x, gate, argmax, kernel_size, stride):
    """gy, argmax: (N, C, OH, OW), x: (N, C, H, W) -> gx: (N, C, H, W), ggate: (kh, kw).

    The first kernel skips and counts the argmax values outside the plane; reading that count
    back waits for the kernel, a synchronisation with the GPU that is the price of the check.
    The maxima's shares g s go where argmax points, anywhere in the plane, as in max pooling:
    ``max_pool2d_backward`` puts them into gx, and the second kernel adds the rest.
    """
    kernel = "gated_max_ave_pool2d_backward"
    xp = backend.array_module(gy)
    dtype = float_dtype(kernel, gy)
    contracts.floats(kernel, "x", x, "N, C, H, W")
    output_size = check_gradient(kernel, gy, x)
    kernel_size, stride, _ = check_pool_arguments(kernel, x, kernel_size, stride, output_size)
    check_masks(kernel, x, kernel_size, gate=gate)
    contracts.indices(kernel, "argmax", argmax, dtype=np.int32)
    contracts.same_shape(kernel, "gy", gy.shape, argmax=argmax)
    gy, x, gate, argmax = (xp.ascontiguousarray(a) for a in (gy, x, gate, argmax))
    geometry = _geometry(x.shape, output_size, kernel_size, stride)
    coefficients = xp.empty((2, gy.size), dtype=np.float64)  # the gate's, the mean's
    maxima = xp.empty(gy.shape, dtype=dtype)
    outside = xp.zeros(1, dtype=np.uint64)
    launch(kernel_function("generalized_pool", "gated_max_ave_window_coefficients", dtype, gy),
           gy.size, (gy, x, gate, argmax, coefficients, maxima, outside, *geometry))
    count = int(outside[0])
    if count:
        H, W = x.shape[2:]
        raise contracts.index_out_of_range(kernel, "argmax", argmax.shape, count, H * W,
                                           f"a plane of {H} x {W}")
    gx = max_pool2d_backward(maxima, argmax, x.shape[2:])
    launch(kernel_function("generalized_pool", kernel, dtype, gy), gx.size,
           (gate, coefficients, gx, *geometry))
    ggate = _mask_gradients(xp, x, coefficients, 1, kernel_size, geometry, dtype)[0]
    return gx, ggate


# --- tree pooling ---------------------------------------------------------------------------

@reports_out_of_memory
def tree_pool2d_forward(x, leaf1, leaf2, gate, kernel_size, stride, output_size):
    """x: (N, C, H, W); leaf1, leaf2, gate: (kh, kw) -> y: (N, C, OH, OW); one thread per
    output element."""
    kernel = "tree_pool2d_forward"
    xp = backend.array_module(x)
    dtype = float_dtype(kernel, x)
    kernel_size, stride, output_size = check_pool_arguments(kernel, x, kernel_size, stride,
                                                            output_size)
    check_masks(kernel, x, kernel_size, leaf1=leaf1, leaf2=leaf2, gate=gate)
    x, leaf1, leaf2, gate = (xp.ascontiguousarray(a) for a in (x, leaf1, leaf2, gate))
    y = xp.empty(x.shape[:2] + output_size, dtype=dtype)
    launch(kernel_function("generalized_pool", kernel, dtype, x), y.size,
           (x, leaf1, leaf2, gate, y, *_geometry(x.shape, output_size, kernel_size, stride)))
    return y


@reports_out_of_memory
def tree_pool2d_backward(gy, x, leaf1, leaf2, gate, kernel_size, stride):
    """gy: (N, C, OH, OW), x: (N, C, H, W) -> gx: (N, C, H, W); gleaf1, gleaf2, ggate:
    (kh, kw)."""
    kernel = "tree_pool2d_backward"
    xp = backend.array_module(gy)
    dtype = float_dtype(kernel, gy)
    contracts.floats(kernel, "x", x, "N, C, H, W")
    output_size = check_gradient(kernel, gy, x)
    kernel_size, stride, _ = check_pool_arguments(kernel, x, kernel_size, stride, output_size)
    check_masks(kernel, x, kernel_size, leaf1=leaf1, leaf2=leaf2, gate=gate)
    gy, x, leaf1, leaf2, gate = (xp.ascontiguousarray(a) for a in (gy, x, leaf1, leaf2, gate))
    geometry = _geometry(x.shape, output_size, kernel_size, stride)
    coefficients = xp.empty((3, gy.size), dtype=np.float64)  # leaf1's, leaf2's, the gate's
    launch(kernel_function("generalized_pool", "tree_window_coefficients", dtype, gy), gy.size,
           (gy, x, leaf1, leaf2, gate, coefficients, *geometry))
    gx = xp.empty(x.shape, dtype=dtype)
    launch(kernel_function("generalized_pool", kernel, dtype, gy), gx.size,
           (leaf1, leaf2, gate, coefficients, gx, *geometry))
    gleaf1, gleaf2, ggate = _mask_gradients(xp, x, coefficients, 3, kernel_size, geometry,
                                            dtype)
    return gx, gleaf1, gleaf2, ggate


KERNELS = {
    "gated_max_ave_pool2d_forward": gated_max_ave_pool2d_forward,
    "gated_max_ave_pool2d_backward": gated_max_ave_pool2d_backward,
    "tree_pool2d_forward": tree_pool2d_forward,
    "tree_pool2d_backward": tree_pool2d_backward,
}
