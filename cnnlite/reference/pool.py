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
"""
import numpy as np


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
    The first maximum in row-major order wins a tie; a NaN beats every number (it propagates).
    """
    n, c, h, w = x.shape
    oh, ow = output_size
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int32)
    for i in range(oh):
        h0, h1 = input_window(i, stride[0], padding[0], kernel_size[0], h)
        for j in range(ow):
            w0, w1 = input_window(j, stride[1], padding[1], kernel_size[1], w)
            patch = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            k = patch.argmax(axis=2)
            y[:, :, i, j] = np.take_along_axis(patch, k[..., None], axis=2)[..., 0]
            argmax[:, :, i, j] = (h0 + k // (w1 - w0)) * w + (w0 + k % (w1 - w0))
    return y, argmax


def max_pool2d_backward(gy, argmax, input_size):
    """dL/dx: each dL/dy[n, c, i, j] is added to x[n, c] at argmax[n, c, i, j].

    gy, argmax: (N, C, OH, OW); input_size: (H, W) -> gx: (N, C, H, W).
    Also the backward of every pooling that picks one element per window (stochastic pooling
    in training, adaptive max pooling). Overlapping windows may pick the same element; their
    gradients add up.
    """
    n, c, oh, ow = gy.shape
    h, w = input_size
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    planes = np.arange(n * c)
    for i in range(oh):
        for j in range(ow):
            # One output position picks one element per plane: no two writes here collide.
            gx[planes, argmax[:, :, i, j].reshape(-1)] += gy[:, :, i, j].reshape(-1)
    return gx.reshape(n, c, h, w)


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
