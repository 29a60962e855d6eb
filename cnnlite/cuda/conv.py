"""Launchers of kernels/im2col.cu: im2col and col2im on the GPU.

Same arguments and results as ``cnnlite.reference.conv.im2col`` / ``col2im`` (read those first:
they define the column layout col: (C*kh*kw, N*OH*OW)). The matrix products around them go
through cupy's cuBLAS in ``cnnlite.functional.conv``.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch
from cnnlite.reference import contracts
from cnnlite.reference.conv import output_size


def _geometry(x_shape, kh, kw, stride, padding, dilation):
    """The kernels' integer arguments after the arrays: N, C, H, W, kh, kw, sh, sw, ph, pw,
    dh, dw, OH, OW."""
    N, C, H, W = x_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = output_size(H, kh, sh, ph, dh)
    OW = output_size(W, kw, sw, pw, dw)
    return int64s(N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)


@reports_out_of_memory
def im2col(x, kh, kw, stride, padding, dilation):
    """x: (N, C, H, W) -> col: (C*kh*kw, N*OH*OW); one thread per entry of col."""
    xp = backend.array_module(x)
    dtype = float_dtype("im2col", x)
    contracts.im2col(x, kh, kw, stride, padding, dilation)
    x = xp.ascontiguousarray(x)
    geometry = _geometry(x.shape, kh, kw, stride, padding, dilation)
    N, C, OH, OW = x.shape[0], x.shape[1], int(geometry[-2]), int(geometry[-1])
    col = xp.empty((C * kh * kw, N * OH * OW), dtype=dtype)
    launch(kernel_function("im2col", "im2col", dtype, x), col.size, (x, col, *geometry))
    return col


@reports_out_of_memory
def col2im(col, x_shape, kh, kw, stride, padding, dilation):
    """col: (C*kh*kw, N*OH*OW) -> x: x_shape; one thread per pixel of x, gathering its sum."""
    xp = backend.array_module(col)
    dtype = float_dtype("col2im", col)
    # A col of another shape than x_shape and the window give would be read past its end.
    contracts.col2im(col, x_shape, kh, kw, stride, padding, dilation)
    col = xp.ascontiguousarray(col)
    geometry = _geometry(x_shape, kh, kw, stride, padding, dilation)
    x = xp.empty(tuple(x_shape), dtype=dtype)  # every pixel is written, so no zeros needed
    launch(kernel_function("im2col", "col2im", dtype, col), x.size, (col, x, *geometry))
    return x


KERNELS = {"im2col": im2col, "col2im": col2im}
