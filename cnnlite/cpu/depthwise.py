"""Depthwise convolution as parallel numba kernels: the CPU fast path of groups == C == O.

A depthwise convolution filters every channel with a kernel of its own and mixes no channels
(MobileNet's 3x3 layers between two 1x1 ones)::

    y[n, c, oh, ow] = sum_{i, j} w[c, 0, i, j] * x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]

    x: (N, C, H, W), w: (C, 1, kh, kw) -> y: (N, C, OH, OW)
    OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1, OW likewise; x_pad is x with ph rows and pw
    columns of zeros on each side. It is conv2d with groups = C = O (``cnnlite.reference.conv``).

The backward pass reads the same sum the other way round::

    dL/dx_pad[n, c, oh*sh + i*dh, ow*sw + j*dw] += w[c, 0, i, j] * dL/dy[n, c, oh, ow]
    dL/dw[c, 0, i, j] = sum_{n, oh, ow} dL/dy[n, c, oh, ow] * x_pad[n, c, oh*sh + i*dh,
                                                                      ow*sw + j*dw]

im2col runs this as a batched GEMM with one row per group: it copies every input pixel kh*kw
times into a column matrix (9x the input for 3x3), then multiplies each channel's kh*kw weights
with its kh*kw rows, a product far too thin for BLAS to be quick. Here there is no column
matrix: the output is the sum of kh*kw shifted copies of the input, each scaled by one weight,
and the input is read kh*kw times from the cache rather than copied through memory.

How the work is split. A task takes one channel c and a few samples: as many planes x[n, c]
as fit in ``STACK_ELEMENTS`` (one plane of 56x56, all eight of a 7x7 batch). It copies them,
zero-padded, one below the other into a small scratch image, the *stack*, and computes the
output for the stack as if it were one tall plane (``_stack``). Then:

* the loops need no bounds tests: the padding is real zeros in the stack;
* each tap (i, j) is one loop over a run of contiguous outputs and contiguous inputs,
  ``out[k] += w[c, 0, i, j] * stack[tap + k]``, which LLVM vectorises. With stride 1 the whole
  stack is one run. With stride sw > 1 a run is one output row, and each row of the stack
  keeps its columns sorted by their remainder mod sw (for stride 2 the even columns, then the
  odd ones), so that the inputs of an output row under one tap lie side by side too;
* with stride 1 the outputs that fall between two planes or on the last (kw - 1)*dw columns of
  a row are computed and thrown away: eight 7x7 planes (padding 1) compute 8 x 9 x 9 outputs,
  1.65 times the 8 x 7 x 7 real ones, but in one loop per tap instead of 56 loops of 7, which
  are too short to vectorise.

Forward and dL/dx run the tasks in parallel (``prange``): a forward task writes its planes of
y; a dL/dx task scatters w * dL/dy into its own stack and copies that back into its planes of
dL/dx, so overlapping windows add up without locks or atomic adds. dL/dw runs one task per
channel, looping over the samples inside, so that each task owns its kh*kw weights; its sums
(N*OH*OW terms each) are kept in float64. Small inputs run on the calling thread alone
(``cnnlite.cpu.parallel``). As in ``cnnlite.cpu.im2col``, the innermost loops count with
unsigned integers: with signed ones numba tests each index for a negative value, which stops
LLVM from vectorising.
"""
import numpy as np
from numba import njit, prange

from cnnlite import memory, validate
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.errors import OpError
from cnnlite.reference import contracts
from cnnlite.reference.conv import output_size

#: How many elements a task's stack of padded input planes may hold (float32: 16 KiB, which
#: stays in the L1 cache together with the output it adds into).
STACK_ELEMENTS = 4096


def _stack(x_shape, geometry):
    """(samples, Hs, Wq, Wr, P, y_width, size) and ``taps``: how a task lays out its stack.

    A task stacks ``samples`` planes of one channel (as many as fit in ``STACK_ELEMENTS``, at
    least one), a plane every Hs rows: H + 2*ph rounded up to a multiple of sh, so that every
    plane's outputs start on a whole output row, P = Hs // sh rows of the tall output per plane
    (OH of them real). A padded row of Wp = W + 2*pw pixels is stored as sw phases of Wq =
    ceil(Wp / sw) elements each, Wr = sw*Wq in all: pixel u at (u % sw)*Wq + u // sw. Output
    rows are y_width wide: Wr with stride 1, where the rows join into a single run (``_runs``),
    else OW. ``size`` counts the stack's elements, with (kh - 1)*dh rows and (kw - 1)*dw
    elements to spare for the last plane's spare outputs to read.

    taps[i, j] is the place in the stack of the input that output (0, 0) meets under tap
    (i, j), padded pixel (i*dh, j*dw); output row r of the stack meets it r*sh*Wr further on.
    """
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    N, C, H, W = x_shape
    Hs, Wq = -(-(H + 2 * ph) // sh) * sh, -(-(W + 2 * pw) // sw)
    Wr = sw * Wq
    samples = max(1, min(N, STACK_ELEMENTS // (Hs * Wr)))
    y_width = Wr if (sh, sw) == (1, 1) else OW
    size = (samples * Hs + (kh - 1) * dh) * Wr + (kw - 1) * dw
    i, j = np.arange(kh)[:, None], np.arange(kw)[None, :]
    taps = i * dh * Wr + (j * dw % sw) * Wq + j * dw // sw
    return (samples, Hs, Wq, Wr, Hs // sh, y_width, size), taps.astype(np.int64)


@njit(cache=True)
def _runs(geometry, stack, planes):
    """(runs, length): the tall output of ``planes`` stacked planes as runs of contiguous
    outputs: one run over everything with stride 1, else one run of OW per output row."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    samples, Hs, Wq, Wr, P, y_width, size = stack
    if sh == 1 and sw == 1:
        return 1, planes * P * Wr
    return planes * P, OW


@njit(cache=True)
def _phases(pw, sw, Wq, W, pj):
    """(first, place, count) for the phase pj of a row: the input columns w = first,
    first + sw, ... (count of them) whose padded column w + pw has remainder pj mod sw, and
    the place of the first one in the stored row."""
    first = (pj - pw) % sw
    return first, pj * Wq + (first + pw) // sw, max(0, (W - first + sw - 1) // sw)


@njit(cache=True, inline="always")
def _row_into_phase(x, n, c, h, first, count, sw, xs, start):
    """xs[start + k] = x[n, c, h, first + k*sw] for k < count. Stride 1 has a loop of its own:
    LLVM vectorises the copy only where it knows that the step is 1."""
    if sw == 1:
        for k in range(np.uint64(count)):
            xs[start + k] = x[n, c, h, first + k]
    else:
        step = np.uint64(sw)
        for k in range(np.uint64(count)):
            xs[start + k] = x[n, c, h, first + k * step]


@njit(cache=True, inline="always")
def _row_from_phase(xs, start, x, n, c, h, first, count, sw):
    """x[n, c, h, first + k*sw] = xs[start + k] for k < count: ``_row_into_phase`` undone."""
    if sw == 1:
        for k in range(np.uint64(count)):
            x[n, c, h, first + k] = xs[start + k]
    else:
        step = np.uint64(sw)
        for k in range(np.uint64(count)):
            x[n, c, h, first + k * step] = xs[start + k]


@njit(cache=True)
def _stack_inputs(x, n0, planes, c, xs, geometry, stack):
    """xs = the planes x[n0 .. n0 + planes - 1, c], zero-padded, in the layout of ``_stack``."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    samples, Hs, Wq, Wr, P, y_width, size = stack
    xs[:] = 0
    for pj in range(sw):
        first, place, count = _phases(pw, sw, Wq, x.shape[3], pj)
        for t in range(planes):
            for h in range(x.shape[2]):
                start = np.uint64((t * Hs + ph + h) * Wr + place)
                _row_into_phase(x, n0 + t, c, h, np.uint64(first), count, sw, xs, start)


@njit(cache=True)
def _unstack_inputs(xs, x, n0, planes, c, geometry, stack):
    """The planes x[n0 .. n0 + planes - 1, c] = their places in xs: ``_stack_inputs`` undone,
    the padding left out."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    samples, Hs, Wq, Wr, P, y_width, size = stack
    for pj in range(sw):
        first, place, count = _phases(pw, sw, Wq, x.shape[3], pj)
        for t in range(planes):
            for h in range(x.shape[2]):
                start = np.uint64((t * Hs + ph + h) * Wr + place)
                _row_from_phase(xs, start, x, n0 + t, c, h, np.uint64(first), count, sw)


@njit(cache=True)
def _stack_outputs(gy, n0, planes, c, g, stack):
    """g = the planes gy[n0 .. n0 + planes - 1, c] at their places in the tall output, the
    spare outputs 0 (so that they add nothing where the backward pass sums or scatters)."""
    samples, Hs, Wq, Wr, P, y_width, size = stack
    g[:] = 0
    for t in range(planes):
        for oh in range(gy.shape[2]):
            row = np.uint64((t * P + oh) * y_width)
            for k in range(np.uint64(gy.shape[3])):
                g[row + k] = gy[n0 + t, c, oh, k]


@njit(cache=True)
def _forward_task(x, w, y, n0, c, geometry, stack, taps):
    """y[n0 .. n0 + planes - 1, c] = the correlation of those planes of x with w[c, 0]."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    samples, Hs, Wq, Wr, P, y_width, size = stack
    planes = min(samples, x.shape[0] - n0)
    xs = np.empty(size, x.dtype)
    _stack_inputs(x, n0, planes, c, xs, geometry, stack)
    out = np.zeros(planes * P * y_width, y.dtype)
    runs, length = _runs(geometry, stack, planes)
    for r in range(runs):
        for i in range(kh):
            for j in range(kw):
                weight = w[c, 0, i, j]
                src, dst = np.uint64(r * sh * Wr + taps[i, j]), np.uint64(r * y_width)
                for k in range(np.uint64(length)):
                    out[dst + k] += weight * xs[src + k]
    for t in range(planes):  # the spare outputs stay behind
        for oh in range(OH):
            row = np.uint64((t * P + oh) * y_width)
            for k in range(np.uint64(OW)):
                y[n0 + t, c, oh, k] = out[row + k]


@njit(cache=True)
def _backward_input_task(gy, w, gx, n0, c, geometry, stack, taps):
    """gx[n0 .. n0 + planes - 1, c] = w[c, 0] times those planes of gy, scattered back onto
    the inputs each output read."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    samples, Hs, Wq, Wr, P, y_width, size = stack
    planes = min(samples, gx.shape[0] - n0)
    g = np.empty(planes * P * y_width, gy.dtype)
    _stack_outputs(gy, n0, planes, c, g, stack)
    gxs = np.zeros(size, gx.dtype)  # dL/d(the stack)
    runs, length = _runs(geometry, stack, planes)
    for r in range(runs):
        for i in range(kh):
            for j in range(kw):
                weight = w[c, 0, i, j]
                src, dst = np.uint64(r * sh * Wr + taps[i, j]), np.uint64(r * y_width)
                for k in range(np.uint64(length)):
                    gxs[src + k] += weight * g[dst + k]
    _unstack_inputs(gxs, gx, n0, planes, c, geometry, stack)  # the padding's share goes nowhere


@njit(cache=True, fastmath={"reassoc"})
def _backward_weight_task(x, gy, gw, c, geometry, stack, taps):
    """gw[c, 0, i, j] = the sum over samples and outputs of gy[:, c] times the inputs under
    tap (i, j). "reassoc" lets LLVM split each sum over the SIMD lanes; the float64
    accumulators keep that from costing accuracy."""
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geometry
    samples, Hs, Wq, Wr, P, y_width, size = stack
    xs = np.empty(size, x.dtype)
    g = np.empty(samples * P * y_width, gy.dtype)
    total = np.zeros((kh, kw), np.float64)
    for n0 in range(0, x.shape[0], samples):
        planes = min(samples, x.shape[0] - n0)
        _stack_inputs(x, n0, planes, c, xs, geometry, stack)
        _stack_outputs(gy, n0, planes, c, g, stack)
        runs, length = _runs(geometry, stack, planes)
        for r in range(runs):
            for i in range(kh):
                for j in range(kw):
                    src, dst = np.uint64(r * sh * Wr + taps[i, j]), np.uint64(r * y_width)
                    partial = 0.0
                    for k in range(np.uint64(length)):
                        partial += g[dst + k] * xs[src + k]
                    total[i, j] += partial
    for i in range(kh):
        for j in range(kw):
            gw[c, 0, i, j] = total[i, j]


@njit(parallel=True, cache=True)
def _forward_kernel(x, w, y, geometry, stack, taps):
    C, samples = x.shape[1], stack[0]
    for task in prange(-(-x.shape[0] // samples) * C):
        _forward_task(x, w, y, task // C * samples, task % C, geometry, stack, taps)


@njit(parallel=True, cache=True)
def _backward_input_kernel(gy, w, gx, geometry, stack, taps):
    C, samples = gx.shape[1], stack[0]
    for task in prange(-(-gx.shape[0] // samples) * C):
        _backward_input_task(gy, w, gx, task // C * samples, task % C, geometry, stack, taps)


@njit(parallel=True, cache=True)
def _backward_weight_kernel(x, gy, gw, geometry, stack, taps):
    for c in prange(x.shape[1]):
        _backward_weight_task(x, gy, gw, c, geometry, stack, taps)


_forward = serial_when_small(_forward_kernel)
_backward_input = serial_when_small(_backward_input_kernel)
_backward_weight = serial_when_small(_backward_weight_kernel)


def _shapes_argument(kernel, name, value):
    """A shape passed as an argument (``x_shape``, ``w_shape``): 4 ints >= 0."""
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        raise OpError(f"{kernel}: {name} must be a tuple of 4 ints, got {value!r}")
    return tuple(validate.integer(kernel, f"{name}[{i}]", v, minimum=0)
                 for i, v in enumerate(value))


def _geometry(kernel, x_shape, w_shape, stride, padding, dilation):
    """(kh, kw, sh, sw, ph, pw, dh, dw, OH, OW) as Python ints (one tuple type for numba),
    after checking that w: (C, 1, kh, kw) is a depthwise filter bank for x: (N, C, H, W) and
    that the kernel fits the padded input: the kernels index raw memory on these numbers."""
    shapes = f"x {tuple(x_shape)} and w {tuple(w_shape)}"
    if tuple(w_shape[:2]) != (x_shape[1], 1) or min(w_shape[2:]) < 1:
        raise OpError(f"{kernel}: expected w of shape (C, 1, kh, kw) with C = {x_shape[1]}, "
                      f"one filter per channel of x (N, C, H, W); got {shapes}")
    kh, kw = w_shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = (validate.pair(kernel, name, value, minimum=minimum)
                                    for name, value, minimum in (("stride", stride, 1),
                                                                 ("padding", padding, 0),
                                                                 ("dilation", dilation, 1)))
    for axis, (k, p, d) in enumerate(((kh, ph, dh), (kw, pw, dw))):
        reach, padded = d * (k - 1) + 1, x_shape[2 + axis] + 2 * p
        if reach > padded:
            raise OpError(f"{kernel}: the kernel spans {reach} pixels in "
                          f"{('height', 'width')[axis]} (dilation {(dh, dw)} included) but the "
                          f"padded input has only {padded}; got {shapes}, padding {(ph, pw)}")
    OH = output_size(x_shape[2], kh, sh, ph, dh)
    OW = output_size(x_shape[3], kw, sw, pw, dw)
    return tuple(int(v) for v in (kh, kw, sh, sw, ph, pw, dh, dw, OH, OW))


def _same_dtype(kernel, first_name, first, second_name, second):
    """Check that two arrays share one dtype: numba would compile a kernel per mix."""
    if first.dtype != second.dtype:
        raise OpError(f"{kernel}: {first_name} and {second_name} must have one dtype, got "
                      f"{first.dtype} {first_name} {tuple(first.shape)} and {second.dtype} "
                      f"{second_name} {tuple(second.shape)}")


def _gradient_of_y(kernel, gy, x_shape, geometry):
    """Check that gy has the shape (N, C, OH, OW) of the output."""
    expected = (*x_shape[:2], *geometry[-2:])
    if tuple(gy.shape) != expected:
        raise OpError(f"{kernel}: expected gy of shape (N, C, OH, OW) = {expected} for x "
                      f"{tuple(x_shape)} and kernel {geometry[:2]}, got gy {tuple(gy.shape)}")


def depthwise_forward(x, w, stride, padding, dilation):
    """x: (N, C, H, W), w: (C, 1, kh, kw) -> y: (N, C, OH, OW), no bias.

    stride, padding, dilation: pairs (vertical, horizontal). x and w share one float dtype.
    """
    x_shape = contracts.floats("depthwise_forward", "x", x, "N, C, H, W")
    contracts.floats("depthwise_forward", "w", w, "C, 1, kh, kw")
    _same_dtype("depthwise_forward", "x", x, "w", w)
    geometry = _geometry("depthwise_forward", x_shape, w.shape, stride, padding, dilation)
    shape = (*x_shape[:2], *geometry[-2:])
    memory.check_allocation("depthwise_forward", "output", shape, x.dtype)
    y = np.empty(shape, dtype=x.dtype)
    _forward(x, w, y, geometry, *_stack(x_shape, geometry))
    return y


def depthwise_backward_input(gy, w, x_shape, stride, padding, dilation):
    """gy: (N, C, OH, OW), w: (C, 1, kh, kw) -> dL/dx: x_shape = (N, C, H, W)."""
    contracts.floats("depthwise_backward_input", "gy", gy, "N, C, OH, OW")
    contracts.floats("depthwise_backward_input", "w", w, "C, 1, kh, kw")
    _same_dtype("depthwise_backward_input", "gy", gy, "w", w)
    x_shape = _shapes_argument("depthwise_backward_input", "x_shape", x_shape)
    geometry = _geometry("depthwise_backward_input", x_shape, w.shape, stride, padding,
                         dilation)
    _gradient_of_y("depthwise_backward_input", gy, x_shape, geometry)
    memory.check_allocation("depthwise_backward_input", "input gradient", x_shape, gy.dtype)
    gx = np.empty(x_shape, dtype=gy.dtype)
    _backward_input(gy, w, gx, geometry, *_stack(x_shape, geometry))
    return gx


def depthwise_backward_weight(x, gy, w_shape, stride, padding, dilation):
    """x: (N, C, H, W), gy: (N, C, OH, OW) -> dL/dw: w_shape = (C, 1, kh, kw), in x's dtype."""
    x_shape = contracts.floats("depthwise_backward_weight", "x", x, "N, C, H, W")
    contracts.floats("depthwise_backward_weight", "gy", gy, "N, C, OH, OW")
    _same_dtype("depthwise_backward_weight", "x", x, "gy", gy)
    w_shape = _shapes_argument("depthwise_backward_weight", "w_shape", w_shape)
    geometry = _geometry("depthwise_backward_weight", x_shape, w_shape, stride, padding,
                         dilation)
    _gradient_of_y("depthwise_backward_weight", gy, x_shape, geometry)
    gw = np.empty(w_shape, dtype=x.dtype)
    _backward_weight(x, gy, gw, geometry, *_stack(x_shape, geometry))
    return gw


KERNELS = {
    "depthwise_forward": depthwise_forward,
    "depthwise_backward_input": depthwise_backward_input,
    "depthwise_backward_weight": depthwise_backward_weight,
}
