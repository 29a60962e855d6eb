"""Convolution (im2col + GEMM) and the fully connected layer (one GEMM).

conv2d turns the convolution into matrix products. im2col copies every receptive field of the
input into a column of ``col`` (layout and formulas: ``cnnlite.reference.conv``)::

    x: (N, C, H, W)  --im2col-->  col: (C*kh*kw, N*OH*OW)
    y = W @ col      W: (O, C*kh*kw), the weights flattened;  y: (O, N*OH*OW) -> (N, O, OH, OW)

With G groups the rows of col and the rows of W split into G blocks that multiply block by
block: (G, O/G, C/G*kh*kw) @ (G, C/G*kh*kw, N*OH*OW), a batched GEMM; depthwise convolution
is the case G = C. The backward pass is two more products and the adjoint of im2col::

    dL/dW   = dL/dy @ col^T                          (O, N*OH*OW) @ (N*OH*OW, C*kh*kw)
    dL/dcol = W^T @ dL/dy,   dL/dx = col2im(dL/dcol)  (C*kh*kw, O) @ (O, N*OH*OW)
    dL/db   = dL/dy summed over N, OH and OW

Memory: ``col`` is kh*kw*C/O times larger than the output (VGG's first 3x3 layers at batch 64:
7 GB), so the products run over chunks of samples whose column matrix fits in
``IM2COL_BUDGET_BYTES``; ``ColumnChunks`` cuts the batch and says why and how.

Some layers run faster algorithms on the CPU (1x1 layers as plain products, Winograd's for large
3x3 layers, ...): ``conv2d`` chooses, by the table of ``cnnlite.functional.conv_algorithms``.
"""
from __future__ import annotations

from cnnlite import backend, memory, validate
from cnnlite.autograd import Function
from cnnlite.errors import OpError
from cnnlite.reference.conv import output_size
from cnnlite.tensor import Tensor

__all__ = ["conv2d", "linear"]

#: The largest column matrix one conv2d call builds at once, in bytes. A batch whose col would be
#: larger is processed in chunks of samples (at least one sample per chunk, however large).
IM2COL_BUDGET_BYTES = 256 * 2**20


def _shape(a):
    return tuple(a.shape)


def batch_chunks(samples, bytes_per_sample, budget):
    """Slices of a batch of ``samples`` whose work arrays fit in ``budget`` bytes (at least one
    sample per slice, however large)."""
    size = max(1, budget // max(1, bytes_per_sample))
    return [slice(start, min(start + size, samples)) for start in range(0, samples, size)]


def conv_arguments(where, stride, padding, dilation, groups):
    """stride, padding, dilation (as pairs of ints) and groups, checked: the same rules for
    ``F.conv2d`` and ``nn.Conv2d`` (``True`` and ``1.5`` are not sizes; a stride of ``2**63``
    would overflow the kernels' index arithmetic)."""
    return (validate.pair(where, "stride", stride, minimum=1),
            validate.pair(where, "padding", padding, minimum=0),
            validate.pair(where, "dilation", dilation, minimum=1),
            validate.integer(where, "groups", groups, minimum=1))


def matmul_transposed(a, b):
    """a @ b^T for stacks of matrices: (G, m, k), (G, n, k) -> (G, m, n).

    Computed as (b @ a^T)^T: the same numbers, but when k is long (dL/dW sums over all N*OH*OW
    output positions) BLAS runs this orientation of the product faster.
    """
    return (b @ a.transpose(0, 2, 1)).transpose(0, 2, 1)


def checked_layer(function, x, w, stride, padding, dilation, groups):
    """``function(stride, padding, dilation, groups)`` when x and w make a convolution its
    ``check`` accepts, else None. The fast paths' rules ask this first: a malformed layer is left
    to the im2col Function, which reports the error."""
    if getattr(x, "ndim", 0) != 4 or getattr(w, "ndim", 0) != 4:
        return None
    try:
        op = function(stride, padding, dilation, groups)
        op.check(x, w, None)
    except OpError:
        return None
    return op


class ColumnChunks:
    """The batch of one convolution cut into chunks of samples, and each chunk's column matrix.

    Why chunks: ``col`` holds every receptive field, kh*kw*C/O times the size of the output;
    for VGG's first 3x3 layers at batch 64 that is 7 GB, more memory than many machines have.
    Each sample's columns are its own, so the products can run chunk by chunk: y and dL/dx come
    out a chunk of samples at a time, and dL/dW is the sum of the chunks' products. A chunk
    holds as many samples as fit in ``IM2COL_BUDGET_BYTES`` (at least one, however large).

    Two savings make the chunks cheap in time too:

    * keeping col (``keep``): when the whole batch is one chunk, the forward pass keeps its col
      for dL/dW, and the backward pass runs no im2col at all. With several chunks, keeping them
      all would take the memory that chunking saves: the backward pass builds each one again.
    * reusing col (``gcol_buffer``): dL/dcol = W^T @ dL/dy has the shape of col, and col is not
      needed once dL/dW is done with it, so dL/dcol is written over it instead of into a second
      column matrix (an allocation and its page faults, as large as col, saved).

    A conv2d call thus holds about one budget of column matrices at a time, whatever the batch.
    """

    def __init__(self, x_shape, itemsize, kernel_size, stride, padding, dilation, output_size):
        N, C, _, _ = x_shape
        (kh, kw), (OH, OW) = kernel_size, output_size
        self.geometry = (kh, kw, stride, padding, dilation)
        self.rows = C * kh * kw
        self.batches = batch_chunks(N, self.rows * OH * OW * itemsize, IM2COL_BUDGET_BYTES)

    def im2col(self, x, batch, kept=None):
        """col of the samples ``x[batch]``: (C*kh*kw, n*OH*OW) for a chunk of n samples.
        ``kept``: the col the forward pass kept (see ``keep``), returned instead of a new one."""
        if kept is not None:
            return kept
        return backend.kernel("im2col", x)(x[batch], *self.geometry)

    def col2im(self, gcol, x, batch):
        """dL/dx of the samples ``x[batch]`` from their dL/dcol: (n, C, H, W)."""
        return backend.kernel("col2im", x)(gcol.reshape(self.rows, -1), x[batch].shape,
                                           *self.geometry)

    def keep(self, col):
        """``col`` when it is the column matrix of the whole batch (one chunk), else None."""
        return col if len(self.batches) == 1 else None

    def gcol_buffer(self, col, dtype):
        """Where dL/dcol of ``dtype`` may be written: over ``col`` when there is one of that
        dtype (dL/dW is done with it), else None (a new array)."""
        return col if col is not None and col.dtype == dtype else None

    def join(self, gx_chunks, x, dtype):
        """dL/dx of the whole batch from the chunks' dL/dx (no copy for a single chunk)."""
        xp = backend.array_module(x)
        if not gx_chunks:  # an empty batch (N = 0)
            return xp.zeros(x.shape, dtype=dtype)
        return gx_chunks[0] if len(gx_chunks) == 1 else xp.concatenate(gx_chunks)


class Conv2d(Function):
    """y = conv2d(x, w) + b, by im2col and GEMM.

    x: (N, C, H, W), w: (O, C/groups, kh, kw), b: (O,) or none -> y: (N, O, OH, OW)
    y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n, g*C/G + c, oh*sh + i*dh, ow*sw + j*dw]
    with g = o // (O/G) the group of output channel o (G = groups) and
    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1, OW likewise.

    forward:   col = im2col(x);  y = W @ col + b
    backward:  dW = dy @ col^T;  dcol = W^T @ dy;  dx = col2im(dcol);  db = sum of dy

    The products run over chunks of samples (``ColumnChunks``: memory). This Function is
    im2col for every layer; on the CPU ``conv2d`` runs faster Functions for the layers they suit
    (``cnnlite.functional.conv_algorithms``).
    """

    def __init__(self, stride=1, padding=0, dilation=1, groups=1):
        self.stride, self.padding, self.dilation, self.groups = conv_arguments(
            "conv2d", stride, padding, dilation, groups)

    def check(self, x, w, b):
        """Raise OpError, naming the shapes, for inputs that do not make a convolution."""
        shapes = f"x {_shape(x)} and w {_shape(w)}"
        if x.ndim != 4 or w.ndim != 4:
            raise OpError(f"conv2d: expected x of shape (N, C, H, W) and w of shape "
                          f"(O, C/groups, kh, kw), got {shapes}")
        if min(x.shape[1:] + w.shape) < 1:
            raise OpError(f"conv2d: every size but the batch size N must be >= 1 in x (N, C, "
                          f"H, W) and w (O, C/groups, kh, kw), got {shapes}")
        hyper = (f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                 f"groups={self.groups}")
        G, C, O = self.groups, x.shape[1], w.shape[0]
        if C % G or O % G:
            raise OpError(f"conv2d: groups={G} must divide both the input channels C={C} and "
                          f"the output channels O={O}; got {shapes}")
        if C != w.shape[1] * G:
            raise OpError(f"conv2d: expected x of shape (N, C, H, W) with C={w.shape[1] * G} = "
                          f"w.shape[1]*groups, got {shapes} (groups={G})")
        for axis, name in ((0, "height"), (1, "width")):
            reach = self.dilation[axis] * (w.shape[2 + axis] - 1) + 1
            padded = x.shape[2 + axis] + 2 * self.padding[axis]
            if reach > padded:
                raise OpError(f"conv2d: the kernel spans {reach} pixels in {name} (dilation "
                              f"included) but the padded input has only {padded}; got {shapes} "
                              f"with {hyper}")
        if b is not None and _shape(b) != (O,):
            raise OpError(f"conv2d: expected bias of shape ({O},) for {shapes}, got bias "
                          f"{_shape(b)}")

    def column_chunks(self, x, w):
        """The ``ColumnChunks`` of this convolution of x by w."""
        return ColumnChunks(x.shape, x.itemsize, w.shape[2:], self.stride, self.padding,
                            self.dilation, (self.out_h, self.out_w))

    def forward(self, x, w, b=None):
        self.check(x, w, b)
        xp = backend.array_module(x)
        N, _, H, W = x.shape
        O, C_group, kh, kw = w.shape
        G, rows = self.groups, C_group * kh * kw
        self.out_h = output_size(H, kh, self.stride[0], self.padding[0], self.dilation[0])
        self.out_w = output_size(W, kw, self.stride[1], self.padding[1], self.dilation[1])
        L = self.out_h * self.out_w
        dtype = xp.result_type(*(a for a in (x, w, b) if a is not None))
        memory.check_allocation("conv2d", "output", (N, O, self.out_h, self.out_w), dtype, xp=xp)

        w_groups = w.reshape(G, O // G, rows)                        # W: (G, O/G, C/G*kh*kw)
        y = xp.empty((N, O, L), dtype=dtype)
        chunks = self.column_chunks(x, w)
        col = None
        for batch in chunks.batches:                                  # n samples each
            col = chunks.im2col(x, batch)                             # col: (C*kh*kw, n*L)
            y_groups = w_groups @ col.reshape(G, rows, -1)            # y = W @ col: (G, O/G, n*L)
            # (O, n, L) -> (n, O, L): the one transpose the column layout costs; the bias is
            # added in the same pass.
            y_batch = y_groups.reshape(O, -1, L).transpose(1, 0, 2)
            if b is None:
                y[batch] = y_batch
            else:
                xp.add(y_batch, b[:, None], out=y[batch])
        kept_col = chunks.keep(col) if self.needs_input_grad[1] else None  # for dL/dW
        self.save_for_backward(x, w, kept_col)
        return y.reshape(N, O, self.out_h, self.out_w)

    def backward(self, gy):
        x, w, kept_col = self.saved
        if kept_col is not None:
            # The kept col is used up here (dL/dcol is written over it); a second backward pass
            # through this graph (retain_graph=True) builds it again.
            self.saved = (x, w, None)
        xp = backend.array_module(gy)
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        N = x.shape[0]
        O, C_group, kh, kw = w.shape
        G, rows = self.groups, C_group * kh * kw
        L = self.out_h * self.out_w
        gcol_dtype = xp.result_type(w, gy)

        w_groups = w.reshape(G, O // G, rows)                        # W: (G, O/G, C/G*kh*kw)
        gy_by_group = gy.reshape(N, G, O // G, L)
        gw_groups = xp.zeros((G, O // G, rows), dtype=gy.dtype) if need_w else None
        gx_chunks = []
        chunks = self.column_chunks(x, w)
        for batch in chunks.batches:                                  # n samples each
            # dy in the layout of the forward product: (n, G, O/G, L) -> (G, O/G, n*L)
            gy_groups = gy_by_group[batch].transpose(1, 2, 0, 3).reshape(G, O // G, -1)
            col = None
            if need_w:
                col = chunks.im2col(x, batch, kept_col).reshape(G, rows, -1)  # (G, C/G*kh*kw, n*L)
                gw_groups += matmul_transposed(gy_groups, col)        # dW = dy @ col^T
            if need_x:
                # dcol = W^T @ dy: (G, C/G*kh*kw, O/G) @ (G, O/G, n*L) -> (G, C/G*kh*kw, n*L)
                gcol = xp.matmul(w_groups.transpose(0, 2, 1), gy_groups,
                                 out=chunks.gcol_buffer(col, gcol_dtype))
                gx_chunks.append(chunks.col2im(gcol, x, batch))      # dx = col2im(dcol)
        gx = chunks.join(gx_chunks, x, gcol_dtype) if need_x else None
        gw = gw_groups.reshape(w.shape) if need_w else None
        if len(self.needs_input_grad) == 2:
            return gx, gw
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None               # db = sum of dy
        return gx, gw, gb


class Linear(Function):
    """y = x @ w^T + b, the fully connected layer.

    x: (..., in), w: (out, in), b: (out,) or none -> y: (..., out)
    dL/dx = dL/dy @ w;  dL/dw = dL/dy^T @ x and dL/db = sum of dL/dy, both summed over the
    leading axes of x (every sample contributes to the shared weights).
    """

    def forward(self, x, w, b=None):
        if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise OpError(f"linear: expected x of shape (..., in) and w of shape (out, in) with "
                          f"the same in, got x {_shape(x)} and w {_shape(w)}")
        if b is not None and _shape(b) != (w.shape[0],):
            raise OpError(f"linear: expected bias of shape ({w.shape[0]},) for w {_shape(w)}, "
                          f"got bias {_shape(b)}")
        self.save_for_backward(x, w)
        y = x @ w.T
        return y if b is None else y + b

    def backward(self, gy):
        x, w = self.saved
        gy_rows = gy.reshape(-1, w.shape[0])  # (samples, out), leading axes flattened
        gx = gy @ w if self.needs_input_grad[0] else None
        gw = gy_rows.T @ x.reshape(-1, w.shape[1]) if self.needs_input_grad[1] else None
        if len(self.needs_input_grad) == 2:
            return gx, gw
        gb = gy_rows.sum(axis=0) if self.needs_input_grad[2] else None
        return gx, gw, gb


def conv2d(x: Tensor, w: Tensor, b: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1,
           groups: int = 1) -> Tensor:
    """2-d convolution (cross-correlation) of a batch of images.

    Parameters
    ----------
    x : Tensor, (N, C, H, W)
    w : Tensor, (O, C/groups, kh, kw)
    b : Tensor, (O,), optional
    stride, padding, dilation : int or pair of ints (vertical, horizontal)
        Step between receptive fields, zeros added on each side, spacing of the kernel taps.
    groups : int
        Split the channels into ``groups`` independent convolutions; ``groups == C`` (with
        ``O`` a multiple of ``C``) is the depthwise convolution.

    Returns
    -------
    Tensor, (N, O, OH, OW) with OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1, OW likewise.

    Notes
    -----
    Several algorithms, the same numbers up to rounding: im2col + GEMM (``Conv2d``) for every
    layer, and on the CPU faster ones for the layers they suit (1x1 layers as plain matrix
    products, Winograd's F(2x2, 3x3) for large 3x3 layers, ...). The table and the rules are in
    ``cnnlite.functional.conv_algorithms``, the one place where the choice is made. To run
    im2col everywhere::

        with cl.backend.conv_algorithm("im2col"):
            y = F.conv2d(x, w, padding=1)
    """
    # Imported here: the other algorithms' Functions build on Conv2d of this module.
    from cnnlite.functional.conv_algorithms import conv_function

    hyper_parameters = (stride, padding, dilation, groups)
    function = Conv2d
    if isinstance(x, Tensor) and isinstance(w, Tensor):
        function = conv_function(x.data, w.data, *hyper_parameters)
    op = function(*hyper_parameters)
    return op(x, w) if b is None else op(x, w, b)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """Fully connected layer ``y = x @ w^T + b``.

    Parameters
    ----------
    x : Tensor, (..., in)
    w : Tensor, (out, in)
    b : Tensor, (out,), optional

    Returns
    -------
    Tensor, (..., out)
    """
    return Linear()(x, w) if b is None else Linear()(x, w, b)
