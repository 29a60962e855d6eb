"""Launchers of kernels/im2col.cu: im2col and col2im on the GPU.

Same arguments and results as ``cnnlite.reference.conv.im2col`` / ``col2im`` (read those first:
they define the column layout col: (C*kh*kw, N*OH*OW)). The matrix products around them go
through cupy's cuBLAS in ``cnnlite.functional.conv``.

The kernels are compiled twice per element type: with 32-bit and with 64-bit index arithmetic
(kernels/im2col.cu says why); ``index_type`` picks one per call.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, kernel_function, launch
from cnnlite.reference import contracts
from cnnlite.reference.conv import output_size

#: The largest value of a C ``int``.
INT32_MAX = 2**31 - 1

#: The NumPy scalar type of each index type: the harness and the GPU read each argument as the
#: bytes of the kernel's parameter type.
INDEX_SCALARS = {"int": np.int32, "long long": np.int64}


def _geometry(x_shape, kh, kw, stride, padding, dilation) -> tuple:
    """The kernels' integer arguments after the arrays: N, C, H, W, kh, kw, sh, sw, ph, pw,
    dh, dw, OH, OW (Python ints)."""
    N, C, H, W = (int(size) for size in x_shape)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = output_size(H, kh, sh, ph, dh)
    OW = output_size(W, kw, sw, pw, dw)
    return N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW


def index_type(x_shape, kh, kw, stride, padding, dilation) -> str:
    """The C type of the kernels' index arithmetic for this convolution: ``"int"`` when every
    value the kernels compute with fits in 32 bits, else ``"long long"``. Takes shapes, not
    arrays, so that the choice for a huge convolution can be checked without allocating it."""
    return _index_type(_geometry(x_shape, kh, kw, stride, padding, dilation))


def _index_type(geometry) -> str:
    """The values the kernels compute with are the arguments (sizes, kernel, stride, padding,
    dilation, output size), col's row and column counts, the flat indices into x and col (below
    their sizes), and a window position oh*sh - ph + i*dh before it is checked against the
    image, which lies in [-ph, H + ph)."""
    N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    rows, columns = C * kh * kw, N * OH * OW
    largest = max(*geometry, N * C * H * W, rows, columns, rows * columns, H + 2 * ph,
                  W + 2 * pw)
    return "int" if largest <= INT32_MAX else "long long"


def _launch_im2col(kernel_name, source, target, work_items, geometry):
    """Run im2col or col2im from ``source`` into ``target`` with the index type of the call."""
    index = _index_type(geometry)
    kernel = kernel_function("im2col", kernel_name, source.dtype, source, index)
    launch(kernel, work_items, (source, target, *map(INDEX_SCALARS[index], geometry)))


@reports_out_of_memory
def im2col(x, kh, kw, stride, padding, dilation):
    """x: (N, C, H, W) -> col: (C*kh*kw, N*OH*OW); one thread per entry of col."""
    xp = backend.array_module(x)
    dtype = float_dtype("im2col", x)
    contracts.im2col(x, kh, kw, stride, padding, dilation)
    x = xp.ascontiguousarray(x)
    geometry = _geometry(x.shape, kh, kw, stride, padding, dilation)
    N, C, *_, OH, OW = geometry
    col = xp.empty((C * kh * kw, N * OH * OW), dtype=dtype)
    _launch_im2col("im2col", x, col, col.size, geometry)
    return col


@reports_out_of_memory
def col2im(col, x_shape, kh, kw, stride, padding, dilation):
    """col: (C*kh*kw, N*OH*OW) -> x: x_shape; one thread per pixel of x, gathering its sum."""
    xp = backend.array_module(col)
    dtype = float_dtype("col2im", col)
    # A col of another shape than x_shape and the window give would be read past its end.
    contracts.col2im(col, x_shape, kh, kw, stride, padding, dilation)
    col = xp.ascontiguousarray(col)
    x = xp.empty(tuple(x_shape), dtype=dtype)  # every pixel is written, so no zeros needed
    geometry = _geometry(x_shape, kh, kw, stride, padding, dilation)
    _launch_im2col("col2im", col, x, x.size, geometry)
    return x


KERNELS = {"im2col": im2col, "col2im": col2im}
