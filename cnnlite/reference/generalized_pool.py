"""Learned poolings (Lee, Gallagher and Tu, "Generalizing Pooling Functions in CNNs: Mixed,
Gated, and Tree", AISTATS 2016) and the per-channel affine map, by plain loops.

The poolings use Caffe's window geometry, without padding: output position (i, j) looks at::

    rows     i*sh  ..  min(i*sh + kh, H) - 1
    columns  j*sw  ..  min(j*sw + kw, W) - 1

The last window of a row or column may be clipped by the input's edge (ceil mode). Each pooling
has masks of the window's shape (kh, kw), shared by all images and channels; element (u, v) of
a window is weighted by mask entry (u - i*sh, v - j*sw), its position in the window, and a
clipped window simply uses the mask's top-left part. The loops walk the windows (i, j) and
handle all images and channels at once, as the loops of ``cnnlite.reference.pool`` do:
``patch = x[:, :, rows, columns]`` is (N, C, a, b) and ``mask[:a, :b]`` weights it.

    gate   s = sigmoid(gate . x_R)                 the responsive gate in (0, 1)
    gated  y = s max(x_R) + (1 - s) mean(x_R)      gated max-average pooling (section 2.2)
    tree   y = s leaf1 . x_R + (1 - s) leaf2 . x_R  a depth-2 tree of learned filters (2.3)

mean(x_R) divides by the number of elements of the (possibly clipped) window, as Caffe's
average pooling does without padding. Like max pooling, gated pooling remembers where each
maximum is (``h * W + w``, int32; the first one in row-major order wins a tie).

The per-channel affine map ``y = slope[c] x + bias[c]`` (``eltwise_affine_*``, at the end) is
not in ``KERNELS``: on every device its one NumPy/cupy broadcasting version in
``cnnlite.functional.generalized_pool`` runs, and the loops here are its ground truth.

Each kernel first checks its arguments (``check_pool_arguments``, ``check_masks``): the numba
kernels of ``cnnlite.cpu.generalized_pool`` call the same checks, since they index raw memory.
"""
import numpy as np

from cnnlite import validate
from cnnlite.errors import OpError
from cnnlite.reference import contracts


# --- argument contracts, shared with the numba kernels --------------------------------------

def check_pool_arguments(kernel, x, kernel_size, stride, output_size):
    """x: (N, C, H, W) float32/64; kernel_size, stride: pairs >= 1; output_size: a pair whose
    last windows start inside the input. Returns the three pairs as tuples of ints."""
    shape = contracts.floats(kernel, "x", x, "N, C, H, W")
    pairs = []
    for name, value, minimum in (("kernel_size", kernel_size, 1), ("stride", stride, 1),
                                 ("output_size", output_size, 0)):
        if not isinstance(value, (tuple, list)):
            raise OpError(f"{kernel}: {name} must be a pair of ints (rows, columns), got "
                          f"{type(value).__name__} {value!r}")
        pairs.append(validate.pair(kernel, name, value, minimum=minimum))
    kernel_size, stride, output_size = pairs
    for count, size, s in zip(output_size, shape[2:], stride):
        if count > 0 and (count - 1) * s >= size:
            raise OpError(f"{kernel}: an output of {output_size} windows does not fit x "
                          f"{shape} with stride {stride}: its last window starts beyond the "
                          f"input")
    if shape[2] * shape[3] > contracts.MAX_PLANE:
        raise OpError(f"{kernel}: planes of {shape[2]} x {shape[3]} elements are too large "
                      f"for an int32 index")
    return kernel_size, stride, output_size


def check_masks(kernel, x, kernel_size, **masks):
    """Every mask is a (kh, kw) array of x's dtype."""
    for name, mask in masks.items():
        mask_shape = contracts.floats(kernel, name, mask)
        if mask_shape != tuple(kernel_size) or mask.dtype != x.dtype:
            raise OpError(f"{kernel}: {name} must be a {x.dtype} array of the window's shape "
                          f"{tuple(kernel_size)}, got {mask.dtype} {name} {mask_shape}")


def check_gradient(kernel, gy, x):
    """gy: (N, C, OH, OW) of x's N, C and dtype; returns (OH, OW), which the caller checks
    against x's windows with ``check_pool_arguments``."""
    gy_shape = contracts.floats(kernel, "gy", gy, "N, C, OH, OW")
    if gy_shape[:2] != tuple(x.shape[:2]) or gy.dtype != x.dtype:
        raise OpError(f"{kernel}: expected gy of shape (N, C, OH, OW) = "
                      f"{tuple(x.shape[:2]) + ('OH', 'OW')} and dtype {x.dtype} for x "
                      f"{tuple(x.shape)}, got {gy.dtype} gy {gy_shape}")
    return gy_shape[2:]


def window(i, stride, kernel, size):
    """(start, stop) of output i's window along one axis, clipped to the input 0..size."""
    start = i * stride
    return start, min(start + kernel, size)


def sigmoid(z):
    """1 / (1 + e^-z), written as (1 + tanh(z / 2)) / 2: no overflow for any z, exactly 0 and
    1 at -inf and +inf."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# --- gated max-average pooling --------------------------------------------------------------

def gated_max_ave_pool2d_forward(x, gate, kernel_size, stride, output_size):
    """y = s max(x_R) + (1 - s) mean(x_R), s = sigmoid(sum over the window of gate * x_R).

    x: (N, C, H, W), gate: (kh, kw) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW) int32
    (where each window's maximum is, h * W + w).
    """
    kernel_size, stride, output_size = check_pool_arguments(
        "gated_max_ave_pool2d_forward", x, kernel_size, stride, output_size)
    check_masks("gated_max_ave_pool2d_forward", x, kernel_size, gate=gate)
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for i in range(oh):
        h0, h1 = window(i, stride[0], kernel_size[0], h)
        for j in range(ow):
            w0, w1 = window(j, stride[1], kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1]
            s = sigmoid((patch * gate[:h1 - h0, :w1 - w0]).sum(axis=(2, 3)))
            flat = patch.reshape(n, c, (h1 - h0) * (w1 - w0))
            k = flat.argmax(axis=2)
            largest = np.take_along_axis(flat, k[..., None], axis=2)[..., 0]
            y[:, :, i, j] = s * largest + (1 - s) * patch.mean(axis=(2, 3))
            argmax[:, :, i, j] = (h0 + k // (w1 - w0)) * w + (w0 + k % (w1 - w0))
    return y, argmax


def gated_max_ave_pool2d_backward(gy, x, gate, argmax, kernel_size, stride):
    """Gradients of y = s m + (1 - s) a with m = max(x_R), a = mean(x_R), s = sigmoid(z),
    z = gate . x_R. Since ds/dz = s (1 - s):

        dy/dx[u, v]    = s [x[u, v] is the maximum] + (1 - s) / |R| + s (1 - s) (m - a) gate[p, q]
        dy/dgate[p, q] = s (1 - s) (m - a) x[u, v]

    where (p, q) is the position of (u, v) in the window, |R| its number of elements. The
    gate gradient adds up over all images, channels and windows.
    gy: (N, C, OH, OW) -> gx: (N, C, H, W), ggate: (kh, kw).
    """
    kernel = "gated_max_ave_pool2d_backward"
    contracts.floats(kernel, "x", x, "N, C, H, W")
    output_size = check_gradient(kernel, gy, x)
    kernel_size, stride, _ = check_pool_arguments(kernel, x, kernel_size, stride, output_size)
    check_masks(kernel, x, kernel_size, gate=gate)
    contracts.indices(kernel, "argmax", argmax, dtype=np.int32)
    contracts.same_shape(kernel, "gy", gy.shape, argmax=argmax)
    n, c, h, w = x.shape
    oh, ow = output_size
    outside = (argmax < 0) | (argmax >= h * w)
    if outside.any():
        raise contracts.index_out_of_range(kernel, "argmax", argmax.shape, int(outside.sum()),
                                           h * w, f"a plane of {h} x {w}")
    gx = np.zeros(x.shape, dtype=x.dtype)
    gx_planes = gx.reshape(n * c, h * w)  # a view: one row per (image, channel) plane
    x_planes = x.reshape(n * c, h * w)
    planes = np.arange(n * c)
    ggate = np.zeros(kernel_size, dtype=x.dtype)
    for i in range(oh):
        h0, h1 = window(i, stride[0], kernel_size[0], h)
        for j in range(ow):
            w0, w1 = window(j, stride[1], kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1]
            mask = gate[:h1 - h0, :w1 - w0]
            s = sigmoid((patch * mask).sum(axis=(2, 3)))
            where = argmax[:, :, i, j].reshape(-1)
            largest = x_planes[planes, where].reshape(n, c)
            g = gy[:, :, i, j]
            to_mean = (g * (1 - s) / ((h1 - h0) * (w1 - w0)))[..., None, None]
            mean = patch.mean(axis=(2, 3))
            through_gate = (g * s * (1 - s) * (largest - mean))[..., None, None]
            gx[:, :, h0:h1, w0:w1] += to_mean + through_gate * mask
            # One window picks one element per plane: no two writes here collide.
            gx_planes[planes, where] += (g * s).reshape(-1)
            ggate[:h1 - h0, :w1 - w0] += (through_gate * patch).sum(axis=(0, 1))
    return gx, ggate


# --- tree pooling: a depth-2 tree of two learned leaf filters and a gate --------------------

def tree_pool2d_forward(x, leaf1, leaf2, gate, kernel_size, stride, output_size):
    """y = s (leaf1 . x_R) + (1 - s) (leaf2 . x_R), s = sigmoid(gate . x_R).

    x: (N, C, H, W); leaf1, leaf2, gate: (kh, kw) -> y: (N, C, OH, OW).
    """
    kernel_size, stride, output_size = check_pool_arguments(
        "tree_pool2d_forward", x, kernel_size, stride, output_size)
    check_masks("tree_pool2d_forward", x, kernel_size, leaf1=leaf1, leaf2=leaf2, gate=gate)
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        h0, h1 = window(i, stride[0], kernel_size[0], h)
        for j in range(ow):
            w0, w1 = window(j, stride[1], kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1]
            a, b = h1 - h0, w1 - w0
            left = (patch * leaf1[:a, :b]).sum(axis=(2, 3))
            right = (patch * leaf2[:a, :b]).sum(axis=(2, 3))
            s = sigmoid((patch * gate[:a, :b]).sum(axis=(2, 3)))
            y[:, :, i, j] = s * left + (1 - s) * right
    return y


def tree_pool2d_backward(gy, x, leaf1, leaf2, gate, kernel_size, stride):
    """Gradients of y = s l + (1 - s) r with l = leaf1 . x_R, r = leaf2 . x_R,
    s = sigmoid(gate . x_R), ds/dz = s (1 - s):

        dy/dx[u, v]     = s leaf1[p, q] + (1 - s) leaf2[p, q] + s (1 - s) (l - r) gate[p, q]
        dy/dleaf1[p, q] = s x[u, v]
        dy/dleaf2[p, q] = (1 - s) x[u, v]
        dy/dgate[p, q]  = s (1 - s) (l - r) x[u, v]

    with (p, q) the position of (u, v) in the window; the mask gradients add up over all
    images, channels and windows.
    gy: (N, C, OH, OW) -> gx: (N, C, H, W), gleaf1, gleaf2, ggate: (kh, kw).
    """
    kernel = "tree_pool2d_backward"
    contracts.floats(kernel, "x", x, "N, C, H, W")
    output_size = check_gradient(kernel, gy, x)
    kernel_size, stride, _ = check_pool_arguments(kernel, x, kernel_size, stride, output_size)
    check_masks(kernel, x, kernel_size, leaf1=leaf1, leaf2=leaf2, gate=gate)
    n, c, h, w = x.shape
    oh, ow = output_size
    gx = np.zeros(x.shape, dtype=x.dtype)
    gleaf1, gleaf2, ggate = (np.zeros(kernel_size, dtype=x.dtype) for _ in range(3))
    for i in range(oh):
        h0, h1 = window(i, stride[0], kernel_size[0], h)
        for j in range(ow):
            w0, w1 = window(j, stride[1], kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1]
            a, b = h1 - h0, w1 - w0
            v1, v2, mask = leaf1[:a, :b], leaf2[:a, :b], gate[:a, :b]
            left = (patch * v1).sum(axis=(2, 3))
            right = (patch * v2).sum(axis=(2, 3))
            s = sigmoid((patch * mask).sum(axis=(2, 3)))
            g = gy[:, :, i, j]
            to_left, to_right = (g * s)[..., None, None], (g * (1 - s))[..., None, None]
            through_gate = (g * s * (1 - s) * (left - right))[..., None, None]
            gx[:, :, h0:h1, w0:w1] += to_left * v1 + to_right * v2 + through_gate * mask
            gleaf1[:a, :b] += (to_left * patch).sum(axis=(0, 1))
            gleaf2[:a, :b] += (to_right * patch).sum(axis=(0, 1))
            ggate[:a, :b] += (through_gate * patch).sum(axis=(0, 1))
    return gx, gleaf1, gleaf2, ggate


KERNELS = {
    "gated_max_ave_pool2d_forward": gated_max_ave_pool2d_forward,
    "gated_max_ave_pool2d_backward": gated_max_ave_pool2d_backward,
    "tree_pool2d_forward": tree_pool2d_forward,
    "tree_pool2d_backward": tree_pool2d_backward,
}


# --- the per-channel affine map (ground truth only, not dispatched) -------------------------

def eltwise_affine_forward(x, slope, bias):
    """y[n, c, ...] = slope[c] * x[n, c, ...] + bias[c].

    x: (N, C, ...); slope, bias: (C,) -> y: x's shape.
    """
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        y[:, c] = slope[c] * x[:, c] + bias[c]
    return y


def eltwise_affine_backward(gy, x, slope):
    """dL/dx[n, c, ...] = slope[c] dL/dy[n, c, ...];  dL/dslope[c] = sum of dL/dy * x over all
    positions of channel c;  dL/dbias[c] = sum of dL/dy over them.

    gy, x: (N, C, ...); slope: (C,) -> gx: x's shape, gslope, gbias: (C,).
    """
    channels = x.shape[1]
    gx = np.empty_like(gy)
    gslope = np.zeros(channels, dtype=gy.dtype)
    gbias = np.zeros(channels, dtype=gy.dtype)
    for c in range(channels):
        gx[:, c] = slope[c] * gy[:, c]
        gslope[c] = (gy[:, c] * x[:, c]).sum()
        gbias[c] = gy[:, c].sum()
    return gx, gslope, gbias
