"""conv2d of a 1x1 kernel as plain matrix products: the CPU fast path of pointwise layers.

A 1x1 convolution mixes channels and nothing else: each output pixel is the weight matrix times
the input pixel's channel vector. Sample by sample, with the pixels of a plane as columns::

    x[n]: (C, H*W)  ->  y[n] = W @ x[n]: (O, H*W)        W: (O, C), the weights flattened

im2col would copy x into a column matrix of the same size (a 1x1 window holds one pixel) and
the product would come out as (O, N*H*W), to be transposed into (N, O, H*W). Here NumPy's
stacked matmul multiplies W by every x[n] where it lies and writes y in its own layout: no
copy in, no transpose out. ResNet-50's bottlenecks, MobileNet's expansions and projections and
DenseNet's bottlenecks are 1x1 layers.

A stride s keeps every s-th pixel: ``x[:, :, ::sh, ::sw]`` is the input that matters (ResNet's
projection shortcuts), and its gradient is scattered back into the same pixels of a zero dL/dx.
"""
from __future__ import annotations

from cnnlite import backend, memory
from cnnlite.functional.conv import Conv2d, checked_layer

__all__ = ["Conv2dPointwise", "pointwise_applies"]


def pointwise_applies(x, w, stride, padding, dilation, groups) -> bool:
    """True when conv2d(x, w, ...) should run as ``Conv2dPointwise``: a 1x1 kernel without
    padding in one group, on NumPy arrays served by the numba CPU backend (not inside
    ``backend.use_reference()``, whose loops are the point there), unless
    ``backend.conv_algorithm("im2col")`` asks for im2col. Anything malformed returns False: the
    im2col Function then reports the error."""
    if backend.preferred_conv_algorithm() == "im2col" or backend.kernel_family(x) != "cpu":
        return False
    op = checked_layer(Conv2d, x, w, stride, padding, dilation, groups)
    return op is not None and tuple(w.shape[2:]) == (1, 1) and op.padding == (0, 0) and op.groups == 1


class Conv2dPointwise(Conv2d):
    """y = conv2d(x, w) + b for 1x1 kernels without padding: one matrix product per sample.

    x: (N, C, H, W), w: (O, C, 1, 1), b: (O,) or none -> y: (N, O, OH, OW) with
    OH = (H - 1) // sh + 1, OW likewise (dilation changes nothing for a 1x1 kernel).
    With xs = x[:, :, ::sh, ::sw] as (N, C, L), L = OH*OW, and W = w as (O, C)::

        forward:   y[n] = W @ xs[n] + b                       (O, C) @ (C, L) -> (O, L)
        backward:  dL/dxs[n] = W^T @ dL/dy[n];   dL/dx = dL/dxs at the kept pixels, 0 elsewhere
                   dL/dW = sum over n of dL/dy[n] @ xs[n]^T   (O, L) @ (L, C) -> (O, C)
                   dL/db = dL/dy summed over N, OH and OW
    """

    def subsampled(self, x):
        """The pixels the kernel reads, xs: (N, C, OH*OW)."""
        sh, sw = self.stride
        xs = x if (sh, sw) == (1, 1) else x[:, :, ::sh, ::sw]
        self.out_h, self.out_w = xs.shape[2:]
        return xs.reshape(*xs.shape[:2], self.out_h * self.out_w)  # a copy only when strided

    def forward(self, x, w, b=None):
        self.check(x, w, b)
        xp = backend.array_module(x)
        N, O = x.shape[0], w.shape[0]
        xs = self.subsampled(x)
        dtype = xp.result_type(*(a for a in (x, w, b) if a is not None))
        memory.check_allocation("conv2d", "output", (N, O, self.out_h, self.out_w), dtype, xp=xp)
        y = xp.matmul(w.reshape(O, -1), xs, dtype=dtype)              # (N, O, L)
        if b is not None:
            y += b[:, None]
        self.save_for_backward(x, w, xs if self.needs_input_grad[1] else None)
        return y.reshape(N, O, self.out_h, self.out_w)

    def backward(self, gy):
        x, w, xs = self.saved
        xp = backend.array_module(gy)
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        N, O = x.shape[0], w.shape[0]
        W = w.reshape(O, -1)                                           # (O, C)
        gy_rows = gy.reshape(N, O, self.out_h * self.out_w)            # (N, O, L)
        gx = gw = gb = None
        if need_x:
            gxs = W.T @ gy_rows                                        # (N, C, L)
            if self.stride == (1, 1):
                gx = gxs.reshape(x.shape)
            else:
                gx = xp.zeros(x.shape, dtype=gxs.dtype)
                sh, sw = self.stride
                gx[:, :, ::sh, ::sw] = gxs.reshape(N, x.shape[1], self.out_h, self.out_w)
        if need_w:
            # One (O, C) product per sample, then their sum: N small matrices, not a transpose of
            # dL/dy into (O, N*L).
            gw = (gy_rows @ xs.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
        if len(self.needs_input_grad) == 2:
            return gx, gw
        if need_b:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb
