"""Pooling by plain loops: one output position at a time, all images and channels at once.

The window of output position (i, j), for kernel (kh, kw), stride (sh, sw) and padding (ph, pw),
covers these rows and columns of the input (padding shifts it up and to the left)::

    rows     i*sh - ph  ..  i*sh - ph + kh - 1
    columns  j*sw - pw  ..  j*sw - pw + kw - 1

Rows and columns outside the input are padding: -inf for max pooling, 0 for average pooling.
Neither can change a maximum or a sum, so the loops simply clip each window to the input. Only
the *divisor* of average pooling still needs to know how much padding a window covered.

Pooling that picks one element per window (max, stochastic) remembers where it was, as a flat
index ``h * W + w`` into that image's (H, W) plane; backward sends dL/dy to that element.
The index is an int32 (it would take a 46341 x 46341 plane to overflow it): half the memory
of an int64 for what backward keeps.

Shapes: x: (N, C, H, W) -> y: (N, C, OH, OW). The output size is decided by the caller
(``cnnlite.functional.pool``), which is where floor and ceil mode differ.

Adaptive, global and spatial pyramid pooling (at the end of this file) are different: they are
*not* in ``KERNELS`` and ``backend.use_reference()`` does not dispatch to them. On every device
those ops run their one vectorised version in ``cnnlite.functional.pool`` (NumPy or cupy);
the loops here are the ground truth that the tests compare it with, and what a student reads.
"""
import numpy as np

from cnnlite.reference import contracts


def padded_window(i, stride, padding, kernel, size):
    """(start, stop) of output i's window along one axis, in input coordinates.

    The window may start in the padding before the input (start < 0); it is cut where the
    padding after the input ends (size + padding), which only ceil mode ever reaches.
    """
    start = i * stride - padding
    return start, min(start + kernel, size + padding)


def input_window(i, stride, padding, kernel, size):
    """(start, stop) of output i's window along one axis, clipped to the input 0..size."""
    start, stop = padded_window(i, stride, padding, kernel, size)
    return max(start, 0), min(stop, size)


# --- max pooling ----------------------------------------------------------------------------

def max_pool2d_forward(x, kernel_size, stride, padding, output_size):
    """y[n, c, i, j] = max of x[n, c] over window (i, j); argmax = where it is (h * W + w).

    x: (N, C, H, W) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW) int32.
    The first maximum in row-major order wins a tie, as in PyTorch; a NaN beats every number
    (it propagates).
    """
    contracts.max_pool2d_forward(x, kernel_size, stride, padding, output_size)
    # BEGIN SOLUTION
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for i in range(oh):
        h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
        for j in range(ow):
            w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
            # The window size, not -1: reshape cannot infer -1 from an empty batch (N = 0).
            patch = x[:, :, h0:h1, w0:w1].reshape(n, c, (h1 - h0) * (w1 - w0))
            k = patch.argmax(axis=2)
            y[:, :, i, j] = np.take_along_axis(patch, k[..., None], axis=2)[..., 0]
            argmax[:, :, i, j] = (h0 + k // (w1 - w0)) * w + (w0 + k % (w1 - w0))
    return y, argmax
    # END SOLUTION


def max_pool2d_backward(gy, argmax, input_size):
    """dL/dx: each dL/dy[n, c, i, j] is added to x[n, c] at argmax[n, c, i, j].

    gy, argmax: (N, C, OH, OW); input_size: (H, W) -> gx: (N, C, H, W).
    Also the backward of every pooling that picks one element per window (stochastic pooling
    in training, adaptive max pooling). Overlapping windows may pick the same element; their
    gradients add up.
    """
    contracts.max_pool2d_backward(gy, argmax, input_size)
    n, c, oh, ow = gy.shape
    h, w = input_size
    # NumPy would take a negative index from the end of the plane: refuse it instead.
    outside = (argmax < 0) | (argmax >= h * w)
    if outside.any():
        raise contracts.index_out_of_range("max_pool2d_backward", "argmax", argmax.shape,
                                           int(outside.sum()), h * w, f"a plane of {h} x {w}")
    # BEGIN SOLUTION
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    planes = np.arange(n * c)
    for i in range(oh):
        for j in range(ow):
            # One output position picks one element per plane: no two writes here collide.
            gx[planes, argmax[:, :, i, j].reshape(-1)] += gy[:, :, i, j].reshape(-1)
    return gx.reshape(n, c, h, w)
    # END SOLUTION


# --- average pooling ------------------------------------------------------------------------

def avg_divisor(rows, columns, clipped_rows, clipped_columns, count_include_pad):
    """How many elements a window's sum is divided by.

    count_include_pad: the window as far as it lies on the padded input (padding counts as
    zeros); otherwise only the elements of the input itself.
    """
    if count_include_pad:
        return (rows[1] - rows[0]) * (columns[1] - columns[0])
    return (clipped_rows[1] - clipped_rows[0]) * (clipped_columns[1] - clipped_columns[0])


def avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad):
    """y[n, c, i, j] = sum of x[n, c] over window (i, j) / divisor(i, j).

    x: (N, C, H, W) -> y: (N, C, OH, OW).
    """
    contracts.avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad)
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        rows = padded_window(i, stride[0], padding[0], kernel_size[0], h)
        h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
        for j in range(ow):
            columns = padded_window(j, stride[1], padding[1], kernel_size[1], w)
            w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
            divisor = avg_divisor(rows, columns, (h0, h1), (w0, w1), count_include_pad)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / divisor
    return y


def avg_pool2d_backward(gy, input_size, kernel_size, stride, padding, count_include_pad):
    """dL/dx: each dL/dy[n, c, i, j] / divisor(i, j) is added to every element of window (i, j).

    gy: (N, C, OH, OW); input_size: (H, W) -> gx: (N, C, H, W).
    """
    contracts.avg_pool2d_backward(gy, input_size, kernel_size, stride, padding,
                                  count_include_pad)
    n, c, oh, ow = gy.shape
    h, w = input_size
    gx = np.zeros((n, c, h, w), dtype=gy.dtype)
    for i in range(oh):
        rows = padded_window(i, stride[0], padding[0], kernel_size[0], h)
        h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
        for j in range(ow):
            columns = padded_window(j, stride[1], padding[1], kernel_size[1], w)
            w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
            divisor = avg_divisor(rows, columns, (h0, h1), (w0, w1), count_include_pad)
            gx[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None] / divisor
    return gx


# --- stochastic pooling (no padding; windows clipped to the input) --------------------------

def stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms):
    """Pick one element a_k of each window with probability p_k = a_k / sum(a); y = a_k.

    x: (N, C, H, W), non-negative; uniforms: (N, C, OH, OW) numbers in [0, 1), one per window
    -> y: (N, C, OH, OW), chosen: (N, C, OH, OW) int32 (h * W + w, as max pooling's argmax).

    Inverse-CDF sampling: walk the window in row-major order and stop at the first element
    where the running sum exceeds u * sum(a). A zero element never moves the running sum, so
    it is never picked, unless the whole window is zero: then y = 0 and the window's first
    element is the one "picked" (the one that receives the gradient).
    """
    contracts.stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms)
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    chosen = np.empty((n, c, oh, ow), dtype=np.int32)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
                for j in range(ow):
                    w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
                    window = x[b, ch, h0:h1, w0:w1].astype(np.float64).ravel()
                    threshold = uniforms[b, ch, i, j] * window.sum()
                    # Rounding can leave the running sum a hair below the threshold at the
                    # end; then the last nonzero element is the one chosen.
                    k, running = 0, 0.0
                    for m, a in enumerate(window):
                        if a > 0:
                            k, running = m, running + a
                            if running > threshold:
                                break
                    r, s = h0 + k // (w1 - w0), w0 + k % (w1 - w0)
                    y[b, ch, i, j] = x[b, ch, r, s]
                    chosen[b, ch, i, j] = r * w + s
    return y, chosen


def probability_weighted_pool2d_forward(x, kernel_size, stride, output_size):
    """The expected value of stochastic pooling (its test-time form):

        y = sum_k p_k a_k = sum(a^2) / sum(a)      (y = 0 for an all-zero window)

    x: (N, C, H, W), non-negative -> y: (N, C, OH, OW).
    """
    contracts.probability_weighted_pool2d_forward(x, kernel_size, stride, output_size)
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
        for j in range(ow):
            w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1]
            total = patch.sum(axis=(2, 3))
            squares = (patch * patch).sum(axis=(2, 3))
            y[:, :, i, j] = np.where(total > 0, squares / np.where(total > 0, total, 1), 0)
    return y


def probability_weighted_pool2d_backward(gy, x, kernel_size, stride):
    """dL/dx for y = S2 / S1 with S1 = sum(a), S2 = sum(a^2):

        dy/da_k = (2 a_k S1 - S2) / S1^2 = (2 a_k - y) / S1

    An all-zero window gets no gradient (y is not differentiable there).
    gy: (N, C, OH, OW), x: (N, C, H, W) -> gx: (N, C, H, W).
    """
    contracts.probability_weighted_pool2d_backward(gy, x, kernel_size, stride)
    n, c, h, w = x.shape
    oh, ow = gy.shape[2:]
    gx = np.zeros(x.shape, dtype=gy.dtype)
    for i in range(oh):
        h0, h1 = input_window(i, stride[0], 0, kernel_size[0], h)
        for j in range(ow):
            w0, w1 = input_window(j, stride[1], 0, kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1]
            total = patch.sum(axis=(2, 3), keepdims=True)
            y = (patch * patch).sum(axis=(2, 3), keepdims=True) / np.where(total > 0, total, 1)
            slope = np.where(total > 0, (2 * patch - y) / np.where(total > 0, total, 1), 0)
            gx[:, :, h0:h1, w0:w1] += gy[:, :, i, j, None, None] * slope
    return gx


KERNELS = {
    "max_pool2d_forward": max_pool2d_forward,
    "max_pool2d_backward": max_pool2d_backward,
    "avg_pool2d_forward": avg_pool2d_forward,
    "avg_pool2d_backward": avg_pool2d_backward,
    "stochastic_pool2d_sample": stochastic_pool2d_sample,
    "probability_weighted_pool2d_forward": probability_weighted_pool2d_forward,
    "probability_weighted_pool2d_backward": probability_weighted_pool2d_backward,
}


# --- adaptive, global and spatial pyramid pooling (ground truth only, not dispatched) -------
#
# Adaptive pooling cuts each axis into a given number of bins instead of sliding a window.
# The bins follow PyTorch: for an axis of `size` cut into `count` bins, bin i covers
#
#     start = floor(i * size / count)   ..   stop = ceil((i + 1) * size / count)   (stop excluded)
#
# so the bins cover the axis exactly, neighbours share at most one element, and count may exceed
# size (then elements repeat). Bin (i, j) is rows bin i times columns bin j.

def adaptive_bin(i, size, count):
    """(start, stop) of bin i of ``count`` along an axis of ``size``: floor and ceil as above.

    Integer arithmetic, so that no rounding of i * size / count can move a bin edge.
    """
    start = (i * size) // count
    stop = -(-((i + 1) * size) // count)  # ceil(a / b) = -floor(-a / b)
    return start, stop


def adaptive_avg_pool2d_forward(x, output_size):
    """y[n, c, i, j] = (sum of x[n, c, r, s] over bin (i, j)) / (number of elements in the bin).

    x: (N, C, H, W), output_size: (OH, OW) -> y: (N, C, OH, OW).
    """
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        h0, h1 = adaptive_bin(i, h, oh)
        for j in range(ow):
            w0, w1 = adaptive_bin(j, w, ow)
            total = np.zeros((n, c), dtype=x.dtype)
            for r in range(h0, h1):
                for s in range(w0, w1):
                    total += x[:, :, r, s]
            y[:, :, i, j] = total / ((h1 - h0) * (w1 - w0))
    return y


def adaptive_avg_pool2d_backward(gy, input_size):
    """dL/dx[n, c, r, s] = sum over the bins (i, j) that hold (r, s) of dL/dy[n, c, i, j] / area,
    area = the number of elements in bin (i, j).

    gy: (N, C, OH, OW); input_size: (H, W) -> gx: (N, C, H, W).
    """
    n, c, oh, ow = gy.shape
    h, w = input_size
    gx = np.zeros((n, c, h, w), dtype=gy.dtype)
    for i in range(oh):
        h0, h1 = adaptive_bin(i, h, oh)
        for j in range(ow):
            w0, w1 = adaptive_bin(j, w, ow)
            area = (h1 - h0) * (w1 - w0)
            for r in range(h0, h1):
                for s in range(w0, w1):
                    gx[:, :, r, s] += gy[:, :, i, j] / area
    return gx


def adaptive_max_pool2d_forward(x, output_size):
    """y[n, c, i, j] = max of x[n, c] over bin (i, j); argmax = where it is (h * W + w).

    x: (N, C, H, W), output_size: (OH, OW) -> y: (N, C, OH, OW), argmax: (N, C, OH, OW) int32.
    The bin is scanned in row-major order and only a strictly larger element replaces the
    best so far, so the first maximum wins a tie.
    """
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for i in range(oh):
        h0, h1 = adaptive_bin(i, h, oh)
        for j in range(ow):
            w0, w1 = adaptive_bin(j, w, ow)
            best = x[:, :, h0, w0].copy()
            where = np.full((n, c), h0 * w + w0, dtype=np.int32)
            for r in range(h0, h1):
                for s in range(w0, w1):
                    larger = x[:, :, r, s] > best
                    best[larger] = x[:, :, r, s][larger]
                    where[larger] = r * w + s
            y[:, :, i, j], argmax[:, :, i, j] = best, where
    return y, argmax


def adaptive_max_pool2d_backward(gy, argmax, input_size):
    """dL/dx: each dL/dy[n, c, i, j] is added to x[n, c] at argmax[n, c, i, j], the bin's first
    maximum. The same rule as max pooling, so it is ``max_pool2d_backward``.

    gy, argmax: (N, C, OH, OW); input_size: (H, W) -> gx: (N, C, H, W).
    """
    return max_pool2d_backward(gy, argmax, input_size)


def global_avg_pool2d_forward(x):
    """y[n, c, 0, 0] = mean of the whole plane x[n, c]: adaptive average pooling to (1, 1),
    whose single bin is the whole plane. x: (N, C, H, W) -> y: (N, C, 1, 1)."""
    return adaptive_avg_pool2d_forward(x, (1, 1))


def global_avg_pool2d_backward(gy, input_size):
    """dL/dx[n, c, r, s] = dL/dy[n, c, 0, 0] / (H W), adaptive average pooling's backward.

    gy: (N, C, 1, 1); input_size: (H, W) -> gx: (N, C, H, W).
    """
    return adaptive_avg_pool2d_backward(gy, input_size)


def spatial_pyramid_pool2d_forward(x, levels, mode):
    """For each level l in ``levels`` (in that order): adaptive ``mode`` ("max" or "avg")
    pooling to (l, l), flattened per image to C l^2 numbers in (c, i, j) order; the levels are
    concatenated.

    x: (N, C, H, W) -> y: (N, C * sum(l^2 for l in levels)).
    """
    n = x.shape[0]
    pieces = []
    for level in levels:
        if mode == "max":
            pooled, _ = adaptive_max_pool2d_forward(x, (level, level))
        else:
            pooled = adaptive_avg_pool2d_forward(x, (level, level))
        pieces.append(pooled.reshape(n, -1))
    return np.concatenate(pieces, axis=1)


def spatial_pyramid_pool2d_backward(gy, x, levels, mode):
    """dL/dx: cut dL/dy back into its levels, unflatten each to (N, C, l, l), run that level's
    adaptive pooling backward and add the levels' gradients up (each level saw all of x).

    gy: (N, C * sum(l^2)), x: (N, C, H, W) -> gx: (N, C, H, W). For "max" the argmaxes are
    found again by running the level's forward on x.
    """
    n, c, h, w = x.shape
    gx = np.zeros(x.shape, dtype=gy.dtype)
    offset = 0
    for level in levels:
        length = c * level * level
        g_level = gy[:, offset:offset + length].reshape(n, c, level, level)
        offset += length
        if mode == "max":
            _, argmax = adaptive_max_pool2d_forward(x, (level, level))
            gx += adaptive_max_pool2d_backward(g_level, argmax, (h, w))
        else:
            gx += adaptive_avg_pool2d_backward(g_level, (h, w))
    return gx
