"""im2col and col2im as parallel numba kernels.

Same arrays in and out as the loops in ``cnnlite.reference.conv`` (read that module first: it
defines the column layout col: (C*kh*kw, N*OH*OW), row (c*kh + i)*kw + j, column
(n*OH + oh)*OW + ow). What changes here is only how the loops run:

* The outer loop runs over the N*C (sample, channel) pairs in parallel (``prange``). im2col
  task (n, c) writes its own kh*kw row segments of ``col``; col2im task (n, c) adds into its own
  plane x[n, c]. No two tasks touch the same memory, so no locks and no atomic adds are needed.
* The innermost loop runs along a row of ``col`` (over ow), so writes (im2col) and reads
  (col2im) of the big matrix are contiguous.
* Small inputs run on the calling thread alone (``cnnlite.cpu.parallel``, the rule all the
  numba kernels share): waking the workers would cost more than the copy.
* The padding test is taken out of the loops: for a kernel offset (i, j) the output positions
  whose input pixel lies inside the image form one rectangle [oh_lo, oh_hi) x [ow_lo, ow_hi),
  computed once (``_inside_range``). im2col copies only that rectangle into a ``col`` that
  starts as zeros (fresh zeroed pages cost no more than uninitialised ones), and col2im adds
  only that rectangle back: the two kernels are mirror images.
* The innermost loop counts with unsigned integers. With signed ones numba must test every
  index for a negative value (NumPy's "count from the end"), which stops LLVM from
  vectorising the copy; unsigned indices make both kernels 1.5-3.5x faster.
"""
import numpy as np
from numba import njit, prange

from cnnlite import memory
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.reference import contracts
from cnnlite.reference.conv import output_size


@njit(cache=True)
def _inside_range(first, step, size, count):
    """The range [lo, hi) of k in [0, count) with 0 <= first + k*step < size (step > 0)."""
    lo = 0 if first >= 0 else (-first + step - 1) // step
    hi = 0 if first >= size else (size - 1 - first) // step + 1
    hi = min(hi, count)
    return lo, max(lo, hi)


@njit(cache=True)
def _im2col_plane(x, col, n, c, geometry):
    """Copy the plane x[n, c] into its kh*kw rows of ``col`` (entries in the padding stay 0)."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    H, W = x.shape[2], x.shape[3]
    for i in range(kh):
        for j in range(kw):
            row = (c * kh + i) * kw + j
            first_h, first_w = i * dh - ph, j * dw - pw
            oh_lo, oh_hi = _inside_range(first_h, sh, H, OH)
            ow_lo, ow_hi = _inside_range(first_w, sw, W, OW)
            for oh in range(oh_lo, oh_hi):
                h = first_h + oh * sh
                # col[row, start + ow] = x[n, c, h, first_w + ow*sw] for ow in [ow_lo, ow_hi),
                # counted from ow_lo with unsigned indices (see the module docstring).
                start = np.uint64((n * OH + oh) * OW + ow_lo)
                first = np.uint64(first_w + ow_lo * sw)
                step = np.uint64(sw)
                for k in range(np.uint64(ow_hi - ow_lo)):
                    col[row, start + k] = x[n, c, h, first + k * step]


@njit(cache=True)
def _col2im_plane(col, x, n, c, geometry):
    """Add the kh*kw rows of ``col`` that came from the plane x[n, c] back into it."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    H, W = x.shape[2], x.shape[3]
    for i in range(kh):
        for j in range(kw):
            row = (c * kh + i) * kw + j
            first_h, first_w = i * dh - ph, j * dw - pw
            oh_lo, oh_hi = _inside_range(first_h, sh, H, OH)
            ow_lo, ow_hi = _inside_range(first_w, sw, W, OW)
            for oh in range(oh_lo, oh_hi):
                h = first_h + oh * sh
                # x[n, c, h, first_w + ow*sw] += col[row, start + ow], the mirror image of
                # the copy in _im2col_plane.
                start = np.uint64((n * OH + oh) * OW + ow_lo)
                first = np.uint64(first_w + ow_lo * sw)
                step = np.uint64(sw)
                for k in range(np.uint64(ow_hi - ow_lo)):
                    x[n, c, h, first + k * step] += col[row, start + k]


@njit(parallel=True, cache=True)
def _im2col_kernel(x, col, geometry):
    N, C = x.shape[0], x.shape[1]
    for task in prange(N * C):
        _im2col_plane(x, col, task // C, task % C, geometry)


@njit(parallel=True, cache=True)
def _col2im_kernel(col, x, geometry):
    N, C = x.shape[0], x.shape[1]
    for task in prange(N * C):
        _col2im_plane(col, x, task // C, task % C, geometry)


_im2col = serial_when_small(_im2col_kernel)
_col2im = serial_when_small(_col2im_kernel)


def _geometry(x_shape, kh, kw, stride, padding, dilation):
    """(kh, kw, sh, sw, ph, pw, dh, dw, OH, OW) as Python ints: one tuple type for numba."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = output_size(x_shape[2], kh, sh, ph, dh)
    OW = output_size(x_shape[3], kw, sw, pw, dw)
    return tuple(int(v) for v in (kh, kw, sh, sw, ph, pw, dh, dw, OH, OW))


def im2col(x, kh, kw, stride, padding, dilation):
    """x: (N, C, H, W) -> col: (C*kh*kw, N*OH*OW); see ``cnnlite.reference.conv.im2col``."""
    contracts.im2col(x, kh, kw, stride, padding, dilation)
    N, C = x.shape[:2]
    geometry = _geometry(x.shape, kh, kw, stride, padding, dilation)
    OH, OW = geometry[-2:]
    shape = (C * kh * kw, N * OH * OW)
    memory.check_allocation("im2col", "column matrix", shape, x.dtype)
    # The kernel copies only the entries inside the input; the padding entries stay 0.
    col = np.zeros(shape, dtype=x.dtype)
    _im2col(x, col, geometry)
    return col


def col2im(col, x_shape, kh, kw, stride, padding, dilation):
    """col: (C*kh*kw, N*OH*OW) -> x: x_shape; see ``cnnlite.reference.conv.col2im``."""
    contracts.col2im(col, x_shape, kh, kw, stride, padding, dilation)
    geometry = _geometry(x_shape, kh, kw, stride, padding, dilation)
    x = np.zeros(tuple(x_shape), dtype=col.dtype)
    _col2im(col, x, geometry)
    return x


KERNELS = {"im2col": im2col, "col2im": col2im}
