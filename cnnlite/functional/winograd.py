"""conv2d by Winograd's F(2x2, 3x3): the CPU fast path of 3x3, stride-1 convolutions.

The algorithm and the layouts are explained in ``cnnlite.cpu.winograd``, which holds the
kernels. ``cnnlite.functional.conv.conv2d`` chooses this Function where it applies (see
``winograd_applies``) and the im2col Function everywhere else; both give the same numbers up
to rounding, and both are gradient-checked against the direct convolution.
"""
from __future__ import annotations

from cnnlite import backend, memory
from cnnlite.functional.conv import Conv2d, batch_chunks, checked_layer

__all__ = ["Conv2dWinograd", "winograd_applies"]

#: The transformed input V of one chunk of samples, in bytes. V is 4x the input, and it and the
#: products M = U @ V are read and written several times per pass: on a machine whose memory
#: bandwidth is short of its arithmetic, keeping them in the processor's cache matters more
#: than the length of the products (``benchmarks/results_conv.md``: 4 MiB chunks run the first
#: layer there 1.4x faster than the whole batch at once).
WINOGRAD_CHUNK_BYTES = 4 * 2**20

#: ``"auto"`` takes Winograd for layers with at least ``WINOGRAD_MIN_CHANNELS`` input and
#: output channels, outputs at least ``WINOGRAD_MIN_SIDE`` pixels high and wide, and at least
#: ``WINOGRAD_MIN_TILES_PER_CHANNEL`` times as many 2x2 output tiles in the batch as the larger
#: channel count. Below, the 16 products (O, C) @ (C, P) are too short in P for BLAS to pay for
#: the transforms, and im2col's one product is as fast or faster. Measured forward + backward
#: (2-core AMD EPYC, 2026-12-03): ResNet-20's 64-channel 8x8 layer at batch 64 (P = 1024 =
#: 16 x 64) 13.6 ms by Winograd, 18 ms by im2col; VGG-16's 512-channel 14x14 layer at batch 4
#: (P = 196) 140 ms by Winograd, 106 ms by im2col; ResNet-18's 256-channel 14x14 layer at
#: batch 8 (P = 392 = 1.53 x 256) about even (42 and 49 ms).
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_MIN_SIDE = 8
WINOGRAD_MIN_TILES_PER_CHANNEL = 1.5


def tiles_per_sample(out_h, out_w) -> int:
    """How many 2x2 output tiles cover one sample's (out_h, out_w) outputs (partial ones count)."""
    return ((out_h + 1) // 2) * ((out_w + 1) // 2)


def winograd_applies(x, w, stride, padding, dilation, groups) -> bool:
    """True when conv2d(x, w, ...) should run as ``Conv2dWinograd``.

    It must be a 3x3 kernel with stride 1, dilation 1 and one group on a backend that has the
    Winograd kernels (the numba CPU backend, outside ``backend.use_reference()``), and either
    ``backend.conv_algorithm("winograd")`` asks for it or the layer is large enough to gain
    (``WINOGRAD_MIN_CHANNELS``, ``WINOGRAD_MIN_SIDE``, ``WINOGRAD_MIN_TILES_PER_CHANNEL``).
    Anything malformed returns False: the im2col Function then reports the error.
    """
    choice = backend.preferred_conv_algorithm()
    if choice == "im2col" or not backend.has_kernel("winograd_input", x):
        return False
    op = checked_layer(Conv2d, x, w, stride, padding, dilation, groups)
    if op is None or tuple(w.shape[2:]) != (3, 3):
        return False
    if op.stride != (1, 1) or op.dilation != (1, 1) or op.groups != 1:
        return False
    out_sides = (x.shape[2] + 2 * op.padding[0] - 2, x.shape[3] + 2 * op.padding[1] - 2)
    tiles = x.shape[0] * tiles_per_sample(*out_sides)
    return choice == "winograd" or (
        min(w.shape[:2]) >= WINOGRAD_MIN_CHANNELS and min(out_sides) >= WINOGRAD_MIN_SIDE
        and tiles >= WINOGRAD_MIN_TILES_PER_CHANNEL * max(w.shape[:2]))


class Conv2dWinograd(Conv2d):
    """y = conv2d(x, w) + b for 3x3 kernels, stride 1: Winograd F(2x2, 3x3) and 16 GEMMs.

    x: (N, C, H, W), w: (O, C, 3, 3), b: (O,) or none -> y: (N, O, H + 2*ph - 2, W + 2*pw - 2)

    forward:   U = G w G^T (16, O, C);  V = B^T x B (16, C, P);  M = U @ V;  y = A^T M A + b
    backward:  dM = A dy A^T;  dU = dM @ V^T, dL/dw = G^T dU G;  dV = U^T @ dM, dL/dx = B dV B^T

    The batch runs in chunks of samples whose V fits in ``WINOGRAD_CHUNK_BYTES``, small enough
    to stay in the cache from one step to the next; with a single chunk the forward pass keeps V
    for dL/dw, otherwise the backward pass transforms each chunk of x again.
    """

    def chunks(self, x_shape, itemsize):
        """Slices of the batch axis whose transformed input V fits in WINOGRAD_CHUNK_BYTES."""
        v_bytes_per_sample = 16 * x_shape[1] * tiles_per_sample(self.out_h, self.out_w) * itemsize
        return batch_chunks(x_shape[0], v_bytes_per_sample, WINOGRAD_CHUNK_BYTES)

    def forward(self, x, w, b=None):
        self.check(x, w, b)
        xp = backend.array_module(x)
        N, C, H, W = x.shape
        O = w.shape[0]
        self.out_h, self.out_w = H + 2 * self.padding[0] - 2, W + 2 * self.padding[1] - 2
        dtype = xp.result_type(*(a for a in (x, w, b) if a is not None))
        bias = xp.zeros(O, dtype=dtype) if b is None else b.astype(dtype, copy=False)
        U = backend.kernel("winograd_filter", x)(w.astype(dtype, copy=False))
        input_transform = backend.kernel("winograd_input", x)
        output_transform = backend.kernel("winograd_output", x)

        batches = self.chunks(x.shape, x.itemsize)
        memory.check_allocation("conv2d", "output", (N, O, self.out_h, self.out_w), dtype, xp=xp)
        y = xp.empty((N, O, self.out_h, self.out_w), dtype=dtype)
        for batch in batches:
            V = input_transform(x[batch].astype(dtype, copy=False), self.padding)
            M = U @ V  # (16, O, C) @ (16, C, P): one GEMM per tile position
            output_transform(M, bias, y[batch])  # written straight into the batch's rows of y
        keep_V = len(batches) == 1 and self.needs_input_grad[1]
        # x itself, not a converted copy: the engine watches the saved arrays for in-place
        # changes; U carries the computing dtype.
        self.save_for_backward(x, U, V if keep_V else None)
        return y

    def backward(self, gy):
        x, U, kept_V = self.saved
        if kept_V is not None:
            # The kept V is used up here (its memory takes dV below); a second backward pass
            # through this graph (retain_graph=True) recomputes it.
            self.saved = (x, U, None)
        xp = backend.array_module(gy)
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) == 3 and self.needs_input_grad[2]
        gy = gy.astype(U.dtype, copy=False)
        input_transform = backend.kernel("winograd_input", x)
        input_transform_grad = backend.kernel("winograd_input_grad", x)
        output_transform_grad = backend.kernel("winograd_output_grad", x)

        gx = xp.empty(x.shape, dtype=U.dtype) if need_x else None
        dU = xp.zeros_like(U) if need_w else None
        for batch in self.chunks(x.shape, x.itemsize):
            dM = output_transform_grad(gy[batch])  # (16, O, P)
            V = None
            if need_w:
                V = kept_V if kept_V is not None else input_transform(
                    x[batch].astype(U.dtype, copy=False), self.padding)
                # dU = dM @ V^T, computed as (V @ dM^T)^T: the same numbers, in the orientation
                # of the long product (over the P tiles) that BLAS runs faster.
                dU += (V @ dM.transpose(0, 2, 1)).transpose(0, 2, 1)
            if need_x:
                # dV has the shape of V, which is not needed any more: write it there.
                dV = xp.matmul(U.transpose(0, 2, 1), dM, out=V)
                input_transform_grad(dV, gx[batch], self.padding)
        gw = backend.kernel("winograd_filter_grad", x)(dU) if need_w else None
        if len(self.needs_input_grad) == 2:
            return gx, gw
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb
