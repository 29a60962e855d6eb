"""Winograd's minimal filtering F(2x2, 3x3): the fast CPU path of 3x3, stride-1 convolutions.

A 3x3 convolution computes each 2x2 block of outputs from a 4x4 patch of the (padded) input.
Done directly that costs 2*2*3*3 = 36 multiplications per channel pair; Winograd's algorithm
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) needs 16::

    Y = A^T [ (G g G^T) * (B^T d B) ] A        d: 4x4 input patch, g: 3x3 filter, Y: 2x2,
                                                 * the element-wise product

    B^T = [[1,  0, -1,  0],      G = [[1,    0,   0  ],      A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],           [1/2,  1/2, 1/2],             [0, 1, -1, -1]]
           [0, -1,  1,  0],           [1/2, -1/2, 1/2],
           [0,  1,  0, -1]]           [0,    0,   1  ]]

Summed over the input channels, the element-wise products become 16 matrix products, one per
position (a, b) of the 4x4 transformed tile, which BLAS runs::

    U[ab] = (G g G^T)[a, b]   for every (o, c):     U: (16, O, C)      the filter transform
    V[ab] = (B^T d B)[a, b]   for every (c, tile):  V: (16, C, P)      the input transform
    M[ab] = U[ab] @ V[ab]                           M: (16, O, P)
    y tile = A^T M A          for every (o, tile)                      the output transform

with P = N*TH*TW tiles of 2x2 outputs, tile p = (n*TH + th)*TW + tw covering outputs
(2*th .. 2*th+1, 2*tw .. 2*tw+1) and reading x_pad[n, :, 2*th .. 2*th+3, 2*tw .. 2*tw+3].

The backward pass runs the adjoint (transpose) of each linear step, in reverse order::

    dM[ab]   = (A dY A^T)[a, b]          the adjoint of the output transform
    dU[ab]   = dM[ab] @ V[ab]^T           dL/dw = G^T dU G
    dV[ab]   = U[ab]^T @ dM[ab]
    dx_pad  += B dV B^T                   on every tile (neighbouring tiles overlap by 2 pixels)

The three products are 2.25x smaller than im2col's (16 against 36 multiply-adds per output and
channel pair) and V is 4x the input where im2col's column matrix is 9x.

This module holds the four per-tile transforms as numba kernels, each a loop over the
(sample, channel) planes in parallel: a task owns its plane, so the overlapping tiles of
``input_transform_grad`` add up without locks. Each task copies its plane into a small
zero-padded scratch plane (a few KiB, in the cache) so that the tile loops need no bounds
tests, and writes its result plane whole. The transforms of one 4-vector are written out
(``_bt``, ``_at``, ``_a``, ``_b``) and applied to the columns and then the rows of a tile, so
every kernel reads like the matrix formula above. The ground truth is the direct convolution
of ``cnnlite.reference.conv``; the tests prove both equal.
"""
import numpy as np
from numba import njit, prange

from cnnlite import memory
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.reference import contracts

#: The matrices of F(2x2, 3x3). The tile kernels below have B and A written out as sums
#: (``_bt`` ...); the filter transforms, small enough for NumPy, multiply by G.
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


@njit(inline="always")
def _bt(d0, d1, d2, d3):
    """B^T @ (d0, d1, d2, d3)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _b(v0, v1, v2, v3):
    """B @ (v0, v1, v2, v3): the transpose of ``_bt``."""
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


@njit(inline="always")
def _at(m0, m1, m2, m3):
    """A^T @ (m0, m1, m2, m3)."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _a(g0, g1):
    """A @ (g0, g1): the transpose of ``_at``."""
    return g0, g0 + g1, g0 - g1, -g1


@njit(cache=True)
def _input_transform_plane(x, V, n, c, ph, pw, TH, TW):
    """V[4a + b, c, p] = (B^T d B)[a, b] for every tile p of the plane x[n, c] (padded)."""
    H, W = x.shape[2], x.shape[3]
    # The plane with its zero padding, as many zeros below and to the right as whole tiles
    # need: a few KiB that stay in the cache, and no bounds tests in the loops below.
    d = np.zeros((2 * TH + 2, 2 * TW + 2), dtype=x.dtype)
    d[ph:ph + H, pw:pw + W] = x[n, c]
    for th in range(TH):
        for tw in range(TW):
            h, w = 2 * th, 2 * tw
            # tj = B^T d[:, j], column j of B^T d for the patch d[h:h+4, w:w+4]
            t0 = _bt(d[h, w], d[h + 1, w], d[h + 2, w], d[h + 3, w])
            t1 = _bt(d[h, w + 1], d[h + 1, w + 1], d[h + 2, w + 1], d[h + 3, w + 1])
            t2 = _bt(d[h, w + 2], d[h + 1, w + 2], d[h + 2, w + 2], d[h + 3, w + 2])
            t3 = _bt(d[h, w + 3], d[h + 1, w + 3], d[h + 2, w + 3], d[h + 3, w + 3])
            p = (n * TH + th) * TW + tw
            for a in range(4):
                # row a of (B^T d) B is B^T applied to row a of B^T d
                v = _bt(t0[a], t1[a], t2[a], t3[a])
                for b in range(4):
                    V[4 * a + b, c, p] = v[b]


@njit(cache=True)
def _output_transform_plane(M, bias, y, n, o, TH, TW):
    """y[n, o, 2*th + i, 2*tw + j] = (A^T m A)[i, j] + bias[o], m the 4x4 tile of M."""
    OH, OW = y.shape[2], y.shape[3]
    plane = np.empty((2 * TH, 2 * TW), dtype=y.dtype)  # whole tiles; cut to (OH, OW) below
    for th in range(TH):
        for tw in range(TW):
            p = (n * TH + th) * TW + tw
            # sb = A^T m[:, b], column b of A^T m (2 values)
            s0 = _at(M[0, o, p], M[4, o, p], M[8, o, p], M[12, o, p])
            s1 = _at(M[1, o, p], M[5, o, p], M[9, o, p], M[13, o, p])
            s2 = _at(M[2, o, p], M[6, o, p], M[10, o, p], M[14, o, p])
            s3 = _at(M[3, o, p], M[7, o, p], M[11, o, p], M[15, o, p])
            for i in range(2):
                row = _at(s0[i], s1[i], s2[i], s3[i])  # row i of (A^T m) A
                plane[2 * th + i, 2 * tw] = row[0] + bias[o]
                plane[2 * th + i, 2 * tw + 1] = row[1] + bias[o]
    y[n, o] = plane[:OH, :OW]


@njit(cache=True)
def _output_transform_grad_plane(gy, dM, n, o, TH, TW):
    """dM[4a + b, o, p] = (A dY A^T)[a, b], dY the 2x2 tile p of gy[n, o]."""
    OH, OW = gy.shape[2], gy.shape[3]
    g = np.zeros((2 * TH, 2 * TW), dtype=gy.dtype)  # outputs cut away had gradient 0
    g[:OH, :OW] = gy[n, o]
    for th in range(TH):
        for tw in range(TW):
            h, w = 2 * th, 2 * tw
            # columns 0 and 1 of A dY (4 values each)
            left = _a(g[h, w], g[h + 1, w])
            right = _a(g[h, w + 1], g[h + 1, w + 1])
            p = (n * TH + th) * TW + tw
            for a in range(4):
                m = _a(left[a], right[a])  # row a of (A dY) A^T
                for b in range(4):
                    dM[4 * a + b, o, p] = m[b]


@njit(cache=True)
def _input_transform_grad_plane(dV, gx, n, c, ph, pw, TH, TW):
    """gx[n, c] = the sum over tiles of (B dv B^T), dv the 4x4 tile p of dV, cut to the plane."""
    H, W = gx.shape[2], gx.shape[3]
    g = np.zeros((2 * TH + 2, 2 * TW + 2), dtype=gx.dtype)  # the padded plane, as in the forward
    for th in range(TH):
        for tw in range(TW):
            p = (n * TH + th) * TW + tw
            # tb = B dv[:, b], column b of B dv
            t0 = _b(dV[0, c, p], dV[4, c, p], dV[8, c, p], dV[12, c, p])
            t1 = _b(dV[1, c, p], dV[5, c, p], dV[9, c, p], dV[13, c, p])
            t2 = _b(dV[2, c, p], dV[6, c, p], dV[10, c, p], dV[14, c, p])
            t3 = _b(dV[3, c, p], dV[7, c, p], dV[11, c, p], dV[15, c, p])
            h, w = 2 * th, 2 * tw
            for i in range(4):
                row = _b(t0[i], t1[i], t2[i], t3[i])  # row i of (B dv) B^T
                for j in range(4):
                    g[h + i, w + j] += row[j]
    gx[n, c] = g[ph:ph + H, pw:pw + W]  # the gradient that fell on padding goes nowhere


@njit(parallel=True, cache=True)
def _input_transform_kernel(x, V, ph, pw, TH, TW):
    N, C = x.shape[0], x.shape[1]
    for task in prange(N * C):
        _input_transform_plane(x, V, task // C, task % C, ph, pw, TH, TW)


@njit(parallel=True, cache=True)
def _output_transform_kernel(M, bias, y, TH, TW):
    N, O = y.shape[0], y.shape[1]
    for task in prange(N * O):
        _output_transform_plane(M, bias, y, task // O, task % O, TH, TW)


@njit(parallel=True, cache=True)
def _output_transform_grad_kernel(gy, dM, TH, TW):
    N, O = gy.shape[0], gy.shape[1]
    for task in prange(N * O):
        _output_transform_grad_plane(gy, dM, task // O, task % O, TH, TW)


@njit(parallel=True, cache=True)
def _input_transform_grad_kernel(dV, gx, ph, pw, TH, TW):
    N, C = gx.shape[0], gx.shape[1]
    for task in prange(N * C):
        _input_transform_grad_plane(dV, gx, task // C, task % C, ph, pw, TH, TW)


# The (16, ., P) arrays keep the layout ``_sixteen_planes`` gave them: no copy to C order.
_input_transform = serial_when_small(_input_transform_kernel, c_order=False)
_output_transform = serial_when_small(_output_transform_kernel, c_order=False)
_output_transform_grad = serial_when_small(_output_transform_grad_kernel, c_order=False)
_input_transform_grad = serial_when_small(_input_transform_grad_kernel, c_order=False)


def _sixteen_planes(op, channels, count, dtype):
    """An empty (16, channels, count) array whose 16 planes do not start 4 KiB apart.

    The transforms write one value into each of the 16 planes per tile. Planes of a
    power-of-two size (64 channels x 8192 tiles x 4 bytes = 2 MiB) all start at the same
    offset within a 4 KiB page, and the processor then takes every later load for a possible
    reload of one of those 16 stores and waits ("4K aliasing"): the input transform of
    ``benchmarks/bench_conv.py``'s first layer ran 26 ms instead of 3.7 ms. A 64-byte gap after
    each plane moves them apart. BLAS takes such arrays as they are: each plane is an ordinary
    matrix. ``op`` names the kernel if the array would not fit in memory.
    """
    size = channels * count
    memory.check_allocation(op, "transformed tiles", (16, channels, count), dtype)
    gap = 64 // np.dtype(dtype).itemsize
    return np.empty((16, size + gap), dtype=dtype)[:, :size].reshape(16, channels, count)


def tiles(out_h, out_w):
    """(TH, TW): the number of 2x2 output tiles down and across (a partial tile counts)."""
    return (out_h + 1) // 2, (out_w + 1) // 2


def filter_transform(w):
    """w: (O, C, 3, 3) -> U: (16, O, C), U[4a + b] = (G g G^T)[a, b] for every filter g.

    Two tensordots (each one GEMM over all the filters at once): g G^T, then G (g G^T).
    """
    contracts.winograd_filter(w)
    Gw = G.astype(w.dtype)
    gGt = np.tensordot(w, Gw, axes=([3], [1]))            # (O, C, 3, 4b)
    U = np.tensordot(Gw, gGt, axes=([1], [2]))            # (4a, O, C, 4b)
    return np.ascontiguousarray(U.transpose(0, 3, 1, 2)).reshape(16, *w.shape[:2])


def filter_transform_grad(dU):
    """dU: (16, O, C) -> dL/dw: (O, C, 3, 3) = G^T dU G, the adjoint of ``filter_transform``."""
    contracts.winograd_filter_grad(dU)
    Gd = G.astype(dU.dtype)
    GtdU = np.tensordot(Gd, dU.reshape(4, 4, *dU.shape[1:]), axes=([0], [0]))  # (3i, 4b, O, C)
    dw = np.tensordot(GtdU, Gd, axes=([1], [0]))          # (3i, O, C, 3j)
    return np.ascontiguousarray(dw.transpose(1, 2, 0, 3))


def input_transform(x, padding):
    """x: (N, C, H, W) -> V: (16, C, P), the transformed 4x4 input patch of every tile.

    The patch of tile (th, tw) starts at row 2*th - ph and column 2*tw - pw of x: ``padding``
    (ph, pw) zeros on the top and left, and on the bottom and right as many as the whole
    tiles need (those beyond the convolution's own padding only feed outputs cut away).
    """
    contracts.winograd_input(x, padding)
    N, C, H, W = x.shape
    ph, pw = padding
    TH, TW = tiles(H + 2 * ph - 2, W + 2 * pw - 2)
    V = _sixteen_planes("winograd_input", C, N * TH * TW, x.dtype)
    _input_transform(np.ascontiguousarray(x), V, ph, pw, TH, TW)
    return V


def output_transform(M, bias, y):
    """M: (16, O, P) -> y: (N, O, OH, OW), written in place, adding bias: (O,)."""
    contracts.winograd_output(M, bias, y)
    TH, TW = tiles(*y.shape[2:])
    _output_transform(M, bias, y, TH, TW)
    return y


def output_transform_grad(gy):
    """gy: (N, O, OH, OW) -> dM: (16, O, P), the adjoint of ``output_transform``."""
    contracts.winograd_output_grad(gy)
    N, O, OH, OW = gy.shape
    TH, TW = tiles(OH, OW)
    dM = _sixteen_planes("winograd_output_grad", O, N * TH * TW, gy.dtype)
    # C order first: the gradient of .sum(), for one, arrives as a broadcast view
    _output_transform_grad(np.ascontiguousarray(gy), dM, TH, TW)
    return dM


def input_transform_grad(dV, gx, padding):
    """dV: (16, C, P) -> gx: (N, C, H, W), written in place: the adjoint of ``input_transform``."""
    contracts.winograd_input_grad(dV, gx, padding)
    TH, TW = tiles(gx.shape[2] + 2 * padding[0] - 2, gx.shape[3] + 2 * padding[1] - 2)
    _input_transform_grad(dV, gx, *padding, TH, TW)
    return gx


KERNELS = {
    "winograd_filter": filter_transform,
    "winograd_filter_grad": filter_transform_grad,
    "winograd_input": input_transform,
    "winograd_input_grad": input_transform_grad,
    "winograd_output": output_transform,
    "winograd_output_grad": output_transform_grad,
}
