"""conv2d of a depthwise layer (groups == C == O) by direct loops: the CPU fast path.

Each channel is filtered by a kernel of its own, w: (C, 1, kh, kw). im2col would copy the input
kh*kw times into a column matrix and multiply it channel by channel in products one row high;
the numba kernels of ``cnnlite.cpu.depthwise`` (the formulas and the split of the work are
explained there) sum the kh*kw shifted input rows directly, reading the input from the cache
instead. MobileNet's and EfficientNet's 3x3 (and 5x5) layers between their 1x1 layers are
depthwise.
"""
from __future__ import annotations

from cnnlite import backend, memory
from cnnlite.errors import OpError
from cnnlite.functional.conv import Conv2d, checked_layer
from cnnlite.reference.conv import output_size

__all__ = ["Conv2dDepthwise", "depthwise_applies"]


def depthwise_applies(x, w, stride, padding, dilation, groups) -> bool:
    """True when conv2d(x, w, ...) should run as ``Conv2dDepthwise``: one filter per channel
    (groups == C == O, w: (C, 1, kh, kw)) on arrays the numba CPU backend serves (not inside
    ``backend.use_reference()``, not cupy arrays), unless ``backend.conv_algorithm("im2col")``
    asks for im2col. Any kernel size, stride, padding and dilation. Anything malformed returns
    False: the im2col Function then reports the error."""
    if backend.preferred_conv_algorithm() == "im2col":
        return False
    if not backend.has_kernel("depthwise_forward", x):
        return False
    op = checked_layer(Conv2d, x, w, stride, padding, dilation, groups)
    return op is not None and op.groups == x.shape[1] == w.shape[0] and w.shape[1] == 1


class Conv2dDepthwise(Conv2d):
    """y = conv2d(x, w) + b with groups == C == O: every channel filtered on its own.

    x: (N, C, H, W), w: (C, 1, kh, kw), b: (C,) or none -> y: (N, C, OH, OW) with
    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1, OW likewise, and

        y[n, c, oh, ow] = b[c] + sum_{i, j} w[c, 0, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]

    forward:   y = depthwise_forward(x, w) + b
    backward:  dL/dx = depthwise_backward_input(dy, w)    (w * dy scattered onto the windows)
               dL/dw = depthwise_backward_weight(x, dy)   (dy times each tap's inputs, summed)
               dL/db = dy summed over N, OH and OW
    """

    def geometry(self):
        """(stride, padding, dilation), the pairs the kernels take."""
        return self.stride, self.padding, self.dilation

    def forward(self, x, w, b=None):
        self.check(x, w, b)
        if not (self.groups == x.shape[1] == w.shape[0] and w.shape[1] == 1):
            raise OpError(f"conv2d (depthwise): expected groups == C == O, one filter per "
                          f"channel: w of shape (C, 1, kh, kw) = ({x.shape[1]}, 1, kh, kw) for "
                          f"x {tuple(x.shape)}, got w {tuple(w.shape)} and groups={self.groups}")
        xp = backend.array_module(x)
        N, C, H, W = x.shape
        kh, kw = w.shape[2:]
        self.out_h = output_size(H, kh, self.stride[0], self.padding[0], self.dilation[0])
        self.out_w = output_size(W, kw, self.stride[1], self.padding[1], self.dilation[1])
        dtype = self.compute_dtype = xp.result_type(*(a for a in (x, w, b) if a is not None))
        memory.check_allocation("conv2d", "output", (N, C, self.out_h, self.out_w), dtype, xp=xp)
        y = backend.kernel("depthwise_forward", x)(x.astype(dtype, copy=False),
                                                   w.astype(dtype, copy=False), *self.geometry())
        if b is not None:
            y += b[:, None, None]
        # x and w themselves, not converted copies: the engine watches the saved arrays for
        # in-place changes.
        self.save_for_backward(x, w)
        return y

    def backward(self, gy):
        x, w = self.saved
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        dtype = self.compute_dtype
        gy = gy.astype(dtype, copy=False)
        gx = gw = None
        if need_x:
            gx = backend.kernel("depthwise_backward_input", x)(
                gy, w.astype(dtype, copy=False), x.shape, *self.geometry())
        if need_w:
            gw = backend.kernel("depthwise_backward_weight", x)(
                x.astype(dtype, copy=False), gy, w.shape, *self.geometry())
        if len(self.needs_input_grad) == 2:
            return gx, gw
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb
