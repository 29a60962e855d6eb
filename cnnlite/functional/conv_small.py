"""conv2d by the direct 3x3 convolution: the CPU fast path of 3x3, stride-1 layers with up to
128 channels (CIFAR ResNet-20's three stages, ResNet-18's first two, DenseNet's 3x3 layers).

im2col + GEMM does badly there: the column matrix is 9x the input (37 MB at batch 64, 16
channels of 32x32), written fresh and read back from memory every call, and its products have
16 rows (too few for BLAS) or, for dL/dcol, a sum over only 16 channels. The direct convolution
computes the same sums one sample at a time from the sample's own padded planes, which stay in
the cache; the kernels and the "flat grid" they compute on are explained in
``cnnlite.cpu.conv_small``. ``conv2d`` chooses this Function where it pays (see
``small_conv_applies``); it gives the numbers of the im2col Function up to rounding, and both
are checked against the direct loops of ``cnnlite.reference.conv``.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.errors import OpError
from cnnlite.functional.conv import Conv2d, checked_layer

__all__ = ["Conv2dSmall", "small_conv_applies"]

#: ``"auto"`` takes the direct convolution for 3x3, stride-1 layers with at most this many input
#: and output channels. Measured at batch 64, float32, forward + backward on 2 cores, against
#: what conv2d took before (im2col; Winograd from 32 channels and 12 px), min of 5 rounds of
#: medians of 7: 16 channels at 32x32 4.8x faster (39.5 -> 8.2 ms), at 16x16 2.2x, at 8x8 1.9x;
#: the 3 -> 16 input layer at 32x32 4.1x; 32 channels at 32x32 3.1x, at 16x16 2.0x, at 8x8 1.5x.
#: Since the kernel takes two input channels a pass and stacks the samples of small planes, it
#: also beats Winograd and im2col from 64 to 128 channels (2 cores, min of 7 interleaved, forward
#: / forward + backward, ms): ResNet-20's 64 -> 64 at 8x8, batch 64, 3.7 / 11.5 against 6.2 /
#: 14.9; ResNet-18's 64 -> 64 at 56x56, batch 8, 13.0 / 40 against 25 / 66, its 128 -> 128 at
#: 28x28 14.3 / 44 against 17.9 / 48; VGG-16's 64 -> 128 at 112x112, batch 4, 53 / 156 against
#: 66 / 181. Its forward wins on every layer up to 128 channels measured; forward + backward is
#: up to 5% slower on three (VGG-16's 64 -> 64 at 224x224, 128 -> 128 at 112x112; 128 -> 128 at
#: 14x14, batch 8), where its weight gradient reads planes larger than the caches. At 256
#: channels (14x14, batch 8) Winograd is faster both ways (forward + backward 51 against 56 ms).
SMALL_CONV_MAX_CHANNELS = 128


def small_conv_applies(x, w, stride, padding, dilation, groups) -> bool:
    """True when conv2d(x, w, ...) should run as ``Conv2dSmall``.

    It must be a 3x3 kernel with stride 1 and one group whose padding is at most twice the
    dilation (so that dL/dx is a convolution of the same kind, see ``Conv2dSmall``), on a
    backend that has the kernel (the numba CPU backend, outside ``backend.use_reference()``),
    with no algorithm forced by ``backend.conv_algorithm`` ("im2col" turns every fast path off,
    "winograd" asks for Winograd), and few enough channels to gain (``SMALL_CONV_MAX_CHANNELS``,
    in and out). Anything malformed returns False: the im2col Function then reports the error.
    """
    if backend.preferred_conv_algorithm() != "auto" or not backend.has_kernel("conv_small", x):
        return False
    if getattr(w, "ndim", 0) != 4 or tuple(w.shape[2:]) != (3, 3):
        return False
    if checked_layer(Conv2dSmall, x, w, stride, padding, dilation, groups) is None:
        return False
    out_channels, in_channels = w.shape[:2]
    return max(out_channels, in_channels) <= SMALL_CONV_MAX_CHANNELS


class Conv2dSmall(Conv2d):
    """y = conv2d(x, w) + b for 3x3 kernels, stride 1, one group: the direct convolution.

    x: (N, C, H, W), w: (O, C, 3, 3), b: (O,) or none -> y: (N, O, OH, OW) with
    OH = H + 2*ph - 2*dh, OW likewise. Written with corr_p, the 3x3 correlation at padding p
    (and dilation d), corr_p(x, w)[n, o, oh, ow] = sum_{c,i,j} w[o, c, i, j] x_pad[n, c,
    oh + i*dh, ow + j*dw]::

        forward:   y = corr_p(x, w) + b                                     kernel conv_small
        backward:  dL/dx = corr_{2d-p}(dL/dy, w'),  w'[c, o, i, j] = w[o, c, 2 - i, 2 - j]
                   dL/dw[o, c, i, j] = sum_{n,oh,ow} dL/dy[n, o, oh, ow]    conv_small_weight_grad
                                                   * x_pad[n, c, oh + i*dh, ow + j*dw]
                   dL/db = dL/dy summed over N, OH and OW

    dL/dx is a correlation too: row h of x meets kernel row i in output row h + p - i*d, so
    dL/dx sums dL/dy[.., h + p - i*d, ..] * w[o, c, i, ..] over o and i (columns alike). With
    i' = 2 - i that output row is h + (p - 2d) + i'*d: a correlation at padding 2d - p with the
    flipped filters, input and output channels swapped (w'), whose output has H rows again. A
    padding above 2d would make 2d - p negative: ``check`` refuses such layers (conv2d runs
    them as im2col).
    """

    def check(self, x, w, b):
        """Conv2d's checks, then the layers this Function takes (3x3, stride 1, one group,
        padding <= 2 * dilation)."""
        super().check(x, w, b)
        (ph, pw), (dh, dw) = self.padding, self.dilation
        if (tuple(w.shape[2:]) != (3, 3) or self.stride != (1, 1) or self.groups != 1
                or ph > 2 * dh or pw > 2 * dw):
            raise OpError(f"Conv2dSmall: takes 3x3 kernels with stride 1, one group and padding "
                          f"<= 2*dilation, got w {tuple(w.shape)} with stride={self.stride}, "
                          f"padding={self.padding}, dilation={self.dilation}, "
                          f"groups={self.groups}")

    def forward(self, x, w, b=None):
        self.check(x, w, b)
        xp = backend.array_module(x)
        dtype = xp.result_type(*(a for a in (x, w, b) if a is not None))
        w = w.astype(dtype, copy=False)
        bias = None if b is None else b.astype(dtype, copy=False)
        y = backend.kernel("conv_small", x)(x.astype(dtype, copy=False), w, bias, self.padding,
                                            self.dilation)
        # x itself, not a converted copy: the engine watches the saved arrays for in-place
        # changes; w carries the computing dtype.
        self.save_for_backward(x, w)
        return y

    def backward(self, gy):
        x, w = self.saved
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        gy = gy.astype(w.dtype, copy=False)
        gx = gw = gb = None
        if need_x:
            (ph, pw), (dh, dw) = self.padding, self.dilation
            flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)      # w': (C, O, 3, 3)
            gx = backend.kernel("conv_small", x)(gy, flipped, None, (2 * dh - ph, 2 * dw - pw),
                                                 self.dilation)
        if need_w:
            gw = backend.kernel("conv_small_weight_grad", x)(x.astype(w.dtype, copy=False), gy,
                                                             self.padding, self.dilation)
        if len(self.needs_input_grad) == 2:
            return gx, gw
        if need_b:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gw, gb
