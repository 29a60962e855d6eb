"""Convolution as plain loops: im2col, col2im, and the direct convolution forward and backward.

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

The direct convolution (``conv2d_forward``, ``conv2d_backward`` at the end) needs no column
matrix: it loops over the outputs and multiplies each filter with its receptive field, which is
the formula above read literally. It is the ground truth the im2col convolution is tested
against, and the classic exercise: the student version of this file has the bodies of the two
functions, between the ``BEGIN SOLUTION`` and ``END SOLUTION`` markers, replaced by a
``NotImplementedError``.

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


# --- the direct convolution, forward and backward ---------------------------------------------
#
# The classic exercise: loop over the outputs y[n, o, oh, ow] and work on each one's receptive
# field, the (C/G, kh, kw) block of the padded input that filter w[o] meets there. The padding is
# made explicit (x_pad), so that every receptive field is a plain slice of x_pad.

def pad(x, padding):
    """x_pad: x with ph rows of zeros above and below and pw columns left and right.

    x: (N, C, H, W) -> x_pad: (N, C, H + 2*ph, W + 2*pw).
    """
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def receptive_field(oh, ow, kernel_size, stride, dilation):
    """(rows, columns) of x_pad under output position (oh, ow), as slices::

        rows     oh*sh,  oh*sh + dh,  ...,  oh*sh + (kh - 1)*dh
        columns  ow*sw,  ow*sw + dw,  ...,  ow*sw + (kw - 1)*dw

    so that ``x_pad[n, channels, rows, columns]`` has the shape (C/G, kh, kw) of one filter.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    rows = slice(oh * sh, oh * sh + (kh - 1) * dh + 1, dh)
    columns = slice(ow * sw, ow * sw + (kw - 1) * dw + 1, dw)
    return rows, columns


def group_channels(o, out_channels, channels_per_group, groups):
    """The input channels output channel o sees, as a slice: those of its group g = o // (O/G),
    channels g*C/G .. (g + 1)*C/G - 1."""
    g = o // (out_channels // groups)
    return slice(g * channels_per_group, (g + 1) * channels_per_group)


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """The convolution straight from its definition, one output at a time:

        y[n, o, oh, ow] = b[o] + sum_{c, i, j} w[o, c, i, j] * x_pad[n, g*C/G + c, oh*sh + i*dh,
                                                                        ow*sw + j*dw]

    with g = o // (O/G) the group of output channel o (G = groups). The sum over (c, i, j) is
    filter w[o] times its receptive field, element by element, summed.

    x: (N, C, H, W), w: (O, C/G, kh, kw), b: (O,) or None -> y: (N, O, OH, OW) with
    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1, OW likewise. Stride, padding and dilation are
    pairs (vertical, horizontal).
    """
    # BEGIN SOLUTION
    N, _, H, W = x.shape
    O, C_per_group, kh, kw = w.shape
    OH = output_size(H, kh, stride[0], padding[0], dilation[0])
    OW = output_size(W, kw, stride[1], padding[1], dilation[1])
    x_pad = pad(x, padding)
    y = np.zeros((N, O, OH, OW), dtype=np.result_type(*(a for a in (x, w, b) if a is not None)))
    bias = np.zeros(O, dtype=y.dtype) if b is None else b
    for n in range(N):
        for o in range(O):
            channels = group_channels(o, O, C_per_group, groups)
            for oh in range(OH):
                for ow in range(OW):
                    rows, columns = receptive_field(oh, ow, (kh, kw), stride, dilation)
                    field = x_pad[n, channels, rows, columns]  # (C/G, kh, kw), as w[o]
                    y[n, o, oh, ow] = (w[o] * field).sum() + bias[o]
    return y
    # END SOLUTION


def conv2d_backward(x, w, gy, stride, padding, dilation, groups):
    """dL/dx, dL/dw and dL/db of ``y = conv2d_forward(x, w, b, ...)``, given gy = dL/dy.

    Each output y[n, o, oh, ow] is b[o] plus products w[o, c, i, j] * x_pad[n, g*C/G + c,
    oh*sh + i*dh, ow*sw + j*dw]; the chain rule sends gy[n, o, oh, ow] to each factor of each
    product, times the other factor, and to b[o]. Summed over every output that used them::

        db[o]          = sum_{n, oh, ow} gy[n, o, oh, ow]
        dw[o, c, i, j] = sum_{n, oh, ow} gy[n, o, oh, ow] * x_pad[n, g*C/G + c, oh*sh + i*dh,
                                                                  ow*sw + j*dw]
        dx_pad[n, g*C/G + c, oh*sh + i*dh, ow*sw + j*dw] += w[o, c, i, j] * gy[n, o, oh, ow]
                                                           for every (o, oh, ow, c, i, j)
        dx = dx_pad with the padding cut off (the padding is zeros, not inputs)

    Per output that is: dw[o] += gy * (its receptive field), and gy * w[o] is scattered back
    onto the receptive field of dx_pad. Overlapping receptive fields (stride < kernel) add up.

    x: (N, C, H, W), w: (O, C/G, kh, kw), gy: (N, O, OH, OW)
    -> dx: (N, C, H, W), dw: (O, C/G, kh, kw), db: (O,).
    """
    # BEGIN SOLUTION
    N, O, OH, OW = gy.shape
    C_per_group, kh, kw = w.shape[1:]
    H, W = x.shape[2:]
    ph, pw = padding
    x_pad = pad(x, padding)
    dx_pad = np.zeros(x_pad.shape, dtype=np.result_type(w, gy))
    dw = np.zeros(w.shape, dtype=np.result_type(x, gy))
    db = np.zeros(O, dtype=gy.dtype)
    for n in range(N):
        for o in range(O):
            channels = group_channels(o, O, C_per_group, groups)
            for oh in range(OH):
                for ow in range(OW):
                    rows, columns = receptive_field(oh, ow, (kh, kw), stride, dilation)
                    field = x_pad[n, channels, rows, columns]  # (C/G, kh, kw), as w[o]
                    dw[o] += gy[n, o, oh, ow] * field
                    dx_pad[n, channels, rows, columns] += gy[n, o, oh, ow] * w[o]
                    db[o] += gy[n, o, oh, ow]
    # A copy, not a view: a view would keep the whole of dx_pad alive.
    dx = dx_pad[:, :, ph:ph + H, pw:pw + W].copy()
    return dx, dw, db
    # END SOLUTION


#: The name the Winograd and CUDA tests know the direct convolution by.
conv2d_direct = conv2d_forward


KERNELS = {"im2col": im2col, "col2im": col2im}
