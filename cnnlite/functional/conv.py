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
7 GB). So the batch is processed in chunks of samples whose column matrix fits in
``IM2COL_BUDGET_BYTES``. When the whole batch fits in one chunk, the forward pass keeps its col
for dL/dw (one im2col less); otherwise the backward pass recomputes col chunk by chunk. dL/dcol
is written over col once dL/dw is done with it. A conv call thus holds at most about one budget
of column matrices at any time, whatever the batch size.
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


class Conv2d(Function):
    """y = conv2d(x, w) + b, by im2col and GEMM, in chunks of samples.

    x: (N, C, H, W), w: (O, C/groups, kh, kw), b: (O,) or none -> y: (N, O, OH, OW)
    y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o,c,i,j] x_pad[n, g*C/G + c, oh*sh + i*dh, ow*sw + j*dw]
    with g = o // (O/G) the group of output channel o (G = groups) and
    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1, OW likewise.
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

    def chunks(self, x_shape, kh, kw, itemsize):
        """Slices of the batch axis whose column matrix fits in IM2COL_BUDGET_BYTES."""
        N, C, H, W = x_shape
        col_bytes_per_sample = (C * kh * kw * self.out_h * self.out_w) * itemsize
        return batch_chunks(N, col_bytes_per_sample, IM2COL_BUDGET_BYTES)

    def forward(self, x, w, b=None):
        self.check(x, w, b)
        xp = backend.array_module(x)
        N, C, H, W = x.shape
        O, C_group, kh, kw = w.shape
        G = self.groups
        self.out_h = output_size(H, kh, self.stride[0], self.padding[0], self.dilation[0])
        self.out_w = output_size(W, kw, self.stride[1], self.padding[1], self.dilation[1])
        L = self.out_h * self.out_w
        im2col = backend.kernel("im2col", x)
        w_groups = w.reshape(G, O // G, C_group * kh * kw)

        dtype = xp.result_type(*(a for a in (x, w, b) if a is not None))
        memory.check_allocation("conv2d", "output", (N, O, self.out_h, self.out_w), dtype, xp=xp)
        y = xp.empty((N, O, L), dtype=dtype)
        batches = self.chunks(x.shape, kh, kw, x.itemsize)
        for batch in batches:
            col = im2col(x[batch], kh, kw, self.stride, self.padding, self.dilation)
            y_groups = w_groups @ col.reshape(G, C_group * kh * kw, -1)  # (G, O/G, n*L)
            # (O, n, L) -> (n, O, L): the one transpose the column layout costs; the bias is
            # added in the same pass.
            y_batch = y_groups.reshape(O, -1, L).transpose(1, 0, 2)
            if b is None:
                y[batch] = y_batch
            else:
                xp.add(y_batch, b[:, None], out=y[batch])
        # dL/dw needs col again. When the whole batch fitted in one chunk, keeping it costs no
        # more memory than the budget allows and saves the backward pass an im2col.
        keep_col = len(batches) == 1 and self.needs_input_grad[1]
        self.save_for_backward(x, w, col if keep_col else None)
        return y.reshape(N, O, self.out_h, self.out_w)

    def backward(self, gy):
        x, w, kept_col = self.saved
        if kept_col is not None:
            # The kept col is used up here (its memory takes dL/dcol below); a second backward
            # pass through this graph (retain_graph=True) recomputes it.
            self.saved = (x, w, None)
        xp = backend.array_module(gy)
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        N, C, H, W = x.shape
        O, C_group, kh, kw = w.shape
        G = self.groups
        rows = C_group * kh * kw
        L = self.out_h * self.out_w
        im2col = backend.kernel("im2col", x)
        col2im = backend.kernel("col2im", x)
        w_groups = w.reshape(G, O // G, rows)
        gy = gy.reshape(N, G, O // G, L)
        gcol_dtype = xp.result_type(w, gy)

        gx_batches = []
        gw_groups = xp.zeros((G, O // G, rows), dtype=gy.dtype) if need_w else None
        for batch in self.chunks(x.shape, kh, kw, x.itemsize):
            # (n, G, O/G, L) -> (G, O/G, n*L), the layout of the forward product
            gy_groups = gy[batch].transpose(1, 2, 0, 3).reshape(G, O // G, -1)
            col = None
            if need_w:
                col = kept_col if kept_col is not None else im2col(
                    x[batch], kh, kw, self.stride, self.padding, self.dilation)
                col = col.reshape(G, rows, -1)
                # dL/dW = dL/dy @ col^T, computed as (col @ dL/dy^T)^T: the same numbers, but
                # BLAS runs this orientation of the long product (over n*OH*OW) faster.
                gw_groups += (col @ gy_groups.transpose(0, 2, 1)).transpose(0, 2, 1)
            if need_x:
                # dL/dcol has the shape of col, which is not needed any more: writing into it
                # spares the allocation (and the page faults) of another column matrix.
                reuse = col if col is not None and col.dtype == gcol_dtype else None
                gcol = xp.matmul(w_groups.transpose(0, 2, 1), gy_groups, out=reuse)
                gx_batches.append(col2im(gcol.reshape(C * kh * kw, -1), x[batch].shape, kh, kw,
                                         self.stride, self.padding, self.dilation))
        gx = None
        if need_x and not gx_batches:  # an empty batch (N = 0)
            gx = xp.zeros(x.shape, dtype=gcol_dtype)
        elif need_x:
            gx = gx_batches[0] if len(gx_batches) == 1 else xp.concatenate(gx_batches)
        gw = gw_groups.reshape(w.shape) if need_w else None
        if len(self.needs_input_grad) == 2:
            return gx, gw
        gb = gy.sum(axis=(0, 3)).reshape(O) if need_b else None
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
    On the CPU, 3x3 layers with stride 1, at least 32 channels in and out and outputs of at
    least 12x12 run Winograd's F(2x2, 3x3) (``cnnlite.functional.winograd``), all others
    im2col + GEMM;
    ``cl.backend.conv_algorithm("im2col")`` chooses im2col for every layer.
    """
    # Imported here: the Winograd Function builds on Conv2d of this module.
    from cnnlite.functional.winograd import Conv2dWinograd, winograd_applies

    hyper_parameters = (stride, padding, dilation, groups)
    winograd = isinstance(x, Tensor) and isinstance(w, Tensor) and winograd_applies(
        x.data, w.data, *hyper_parameters)
    op = (Conv2dWinograd if winograd else Conv2d)(*hyper_parameters)
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
