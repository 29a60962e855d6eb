"""Convolution as plain loops: im2col, col2im and the direct seven-loop convolution.

A 2-d convolution (cross-correlation, as in every deep-learning framework) of an input
x: (N, C, H, W) with weights w: (O, C/G, kh, kw) in G groups is

    y[n, o, oh, ow] = b[o] + sum_{c, i, j} w[o, c, i, j] * x_pad[n, g*C/G + c, oh*sh + i*dh,
                                                                    ow*sw + j*dw]

where g = o // (O/G) is the group of output channel o, x_pad is x with ph rows and pw columns
of zeros on each side, (sh, sw) the stride and (dh, dw) the dilation. The output has

    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1      (and OW likewise).

im2col turns the convolution into one matrix product. It copies every receptive field into a
column of a matrix ``col``; then ``y = W @ col`` with W the weights flattened to (O, C*kh*kw).

The column layout (the one every im2col/col2im kernel in cnnlite uses)::

    col: (C*kh*kw, N*OH*OW)
    row    r = (c*kh + i)*kw + j          channel c, kernel offset (i, j)
    column q = (n*OH + oh)*OW + ow        sample n, output position (oh, ow)

Why this layout: the whole batch is a single GEMM ``W (O, C*kh*kw) @ col``, which BLAS runs
faster than N small ones, and the backward products (``W^T @ gy``, ``gy @ col^T``) are single
GEMMs as well. Groups need no copy, because the rows of one group are contiguous:
``col.reshape(G, C/G*kh*kw, N*OH*OW)`` and ``W.reshape(G, O/G, C/G*kh*kw)`` multiply group by
group. The product comes out as (O, N, OH*OW), one transpose away from (N, O, OH, OW).

col2im is the adjoint (transpose) of im2col: every entry of ``col`` is added back to the input
pixel it was copied from. Pixels that sit in several receptive fields collect several terms,
which is why col2im *adds* where im2col *copies*. Padding entries belong to no pixel and are
dropped. That sum is exactly dL/dx when ``col`` holds dL/dcol.

Stride, padding and dilation are pairs (vertical, horizontal) here; ``cnnlite.functional.conv2d``
also accepts plain ints and turns them into pairs.
"""
import numpy as np

from cnnlite.reference import contracts


def output_size(size, kernel, stride, padding, dilation):
    """Output length of a convolution along one axis: (size + 2p - d(k-1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kh, kw, stride, padding, dilation):
    """Copy every receptive field of ``x`` into a column.

    x: (N, C, H, W) -> col: (C*kh*kw, N*OH*OW) with
    col[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw],
    or 0 where that position lies in the zero padding.
    """
    contracts.im2col(x, kh, kw, stride, padding, dilation)
    N, C, H, W = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = output_size(H, kh, sh, ph, dh)
    OW = output_size(W, kw, sw, pw, dw)
    col = np.zeros((C * kh * kw, N * OH * OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    for oh in range(OH):
                        for ow in range(OW):
                            h = oh * sh - ph + i * dh
                            w = ow * sw - pw + j * dw
                            if 0 <= h < H and 0 <= w < W:
                                col[row, (n * OH + oh) * OW + ow] = x[n, c, h, w]
    return col


def col2im(col, x_shape, kh, kw, stride, padding, dilation):
    """Add every column entry back onto the pixel it came from (the adjoint of im2col).

    col: (C*kh*kw, N*OH*OW) -> x: (N, C, H, W) = x_shape with
    x[n, c, h, w] = sum of col[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow]
                    over all (i, j, oh, ow) with oh*sh - ph + i*dh = h and ow*sw - pw + j*dw = w.
    """
    contracts.col2im(col, x_shape, kh, kw, stride, padding, dilation)
    N, C, H, W = x_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = output_size(H, kh, sh, ph, dh)
    OW = output_size(W, kw, sw, pw, dw)
    x = np.zeros(x_shape, dtype=col.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    for oh in range(OH):
                        for ow in range(OW):
                            h = oh * sh - ph + i * dh
                            w = ow * sw - pw + j * dw
                            if 0 <= h < H and 0 <= w < W:
                                x[n, c, h, w] += col[row, (n * OH + oh) * OW + ow]
    return x


def conv2d_direct(x, w, b, stride, padding, dilation, groups):
    """The convolution straight from its definition: seven nested loops, no im2col.

    x: (N, C, H, W), w: (O, C/groups, kh, kw), b: (O,) or None -> y: (N, O, OH, OW)
    y[n, o, oh, ow] = b[o] + sum_{c, i, j} w[o, c, i, j] * x[n, g*C/groups + c, h, w]
    with g = o // (O/groups), h = oh*sh - ph + i*dh, w = ow*sw - pw + j*dw; terms whose (h, w)
    falls in the zero padding contribute nothing. (Inside the loops h and w are called h_in and
    w_in, because w is the weight.)
    """
    N, C, H, W = x.shape
    O, C_per_group, kh, kw = w.shape
    O_per_group = O // groups
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = output_size(H, kh, sh, ph, dh)
    OW = output_size(W, kw, sw, pw, dw)
    y = np.zeros((N, O, OH, OW), dtype=np.result_type(x, w))
    for n in range(N):
        for o in range(O):
            first_channel = (o // O_per_group) * C_per_group
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0 if b is None else b[o]
                    for c in range(C_per_group):
                        for i in range(kh):
                            for j in range(kw):
                                h_in = oh * sh - ph + i * dh
                                w_in = ow * sw - pw + j * dw
                                if 0 <= h_in < H and 0 <= w_in < W:
                                    total += w[o, c, i, j] * x[n, first_channel + c, h_in, w_in]
                    y[n, o, oh, ow] = total
    return y


KERNELS = {"im2col": im2col, "col2im": col2im}
