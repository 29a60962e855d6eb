"""The direct 3x3 convolution with stride 1: numba kernels for layers with up to 128 channels.

The convolution of ``cnnlite.reference.conv`` with a 3x3 kernel, stride 1 and one group::

    y[n, o, oh, ow] = b[o] + sum_{c, i, j} w[o, c, i, j] * x_pad[n, c, oh + i*dh, ow + j*dw]

im2col + GEMM copies every input pixel nine times into a column matrix (37 MB for a batch of 64
in CIFAR ResNet-20's first stage, far more than the caches) and hands BLAS products with 16
rows, or a sum over 16 channels, too small for its blocking to pay. These kernels compute the
sums from the input where it lies, one sample at a time: a sample's padded planes (74 KiB at 16
channels of 32x32) stay in the cache while every output channel is made from them.

**The flat grid.** A sample's padded planes are copied into a scratch array X, each plane laid
out flat, row after row, Wp = W + 2*pw values a row, zeros in the padding::

    X[c, h*Wp + w] = x_pad[n, c, h, w]            X: (C, Hp*Wp + 2*dw), Hp = H + 2*ph

Output (oh, ow) gets the position p = oh*Wp + ow on the same grid. Its input for tap (i, j) is
then X[c, p + i*dh*Wp + j*dw]: one offset for all outputs. So the inputs of a tap for every
output are one slice of X (the tap's *view*), and the convolution is a sum of long
multiply-adds of slices, loops over p that LLVM turns into vector instructions::

    acc[o, p] = b[o] + sum_c sum_{i,j} w[o, c, i, j] * X[c, p + i*dh*Wp + j*dw]   p < OH*Wp

The grid is wider than the output: the positions with ow >= OW (2*dw of every Wp) wrap into the
next row; they are computed and dropped when acc is copied into y (6% of the work at 32x32, 11%
at 16x16). The 2*dw zeros after the last row are read by such positions only.

The loops over p also run on past OH*Wp to a multiple of ``LANES`` positions, into more zeros
at the end of X, and drop those sums too: LLVM's vector loop takes 32 floats a turn and would
leave up to 31 positions to a loop of single values. On DenseNet's 7x7 planes (OH*Wp = 63) that
tail was half the work: 128 -> 32 channels at batch 8, forward 0.56 -> 0.36 ms, at 56x56
13.4 -> 11.5 ms (2 cores, min of 25).

**Small planes: samples stacked.** An 8x8 plane gives a loop of 96 positions (80 rounded up),
too short to pay for setting up its 24 weights and 6 views. So a task may stack several samples
on one grid, sample s's padded planes Hp rows below sample s - 1's::

    X[c, (s*Hp + h)*Wp + w] = x_pad[first + s, c, h, w]

and the same formula serves all of them: output (s, oh, ow) sits at p = (s*Hp + oh)*Wp + ow and
reads its taps inside its own sample's rows; the Hp - OH rows between two samples' outputs are
computed and dropped like the wrapped positions. ``samples_per_task`` stacks samples until a
grid holds ``TASK_POSITIONS`` positions, keeping ``TASKS_PER_THREAD`` tasks for each of numba's
threads (a machine with more cores stacks less). An output is the same sum in the same order
either way (a test compares the bits); dL/dw adds its tasks' parts in other groups, which
changes its rounding only. ResNet-20's 64 channels of 8x8 at batch 64 (8 samples a task),
forward 5.6 -> 4.0 ms, weight gradient 6.5 -> 4.2 ms; 32 channels of 16x16 (4 a task) 3.4 -> 3.1
and 3.5 -> 3.1 ms.

**The loop over p** is bound by its loads (one per input and tap, most of them across a 64-byte
line, as the taps are one element apart) more than by its multiply-adds. So each load serves
several sums: a pass over p takes two input channels, one kernel row (three taps of each) and
four output channels, 6 loads of X and 4 reads and writes of acc for 24 multiply-adds, with the
24 weights in registers. On the 16- and 32-channel ResNet-20 layers one input channel and four
output channels a pass (12 multiply-adds for 3 loads and the same 4 reads and writes of acc)
ran 1.4-1.8x faster (one thread) than one output channel and all nine taps; the second input
channel halves the traffic to acc per multiply-add: 8-28% faster again on two cores (DenseNet's
128 -> 32 layers at batch 8: 56x56 10.7 -> 9.9 ms, 14x14 1.21 -> 0.95 ms, 7x7 0.61 -> 0.44 ms;
ResNet-20's 32 channels at 16x16 2.33 -> 2.02 ms; min of 21 interleaved runs). Four input
channels (48 weights, more than the 32 vector registers) were 1.3x slower. ``conv_small`` pads
w with zero filters to a multiple of 4 output channels and with a zero input channel to an even
number (a 3-channel image layer then does a third more work: 0.60 -> 0.64 ms at batch 64).

**The backward pass** takes the same loops. dL/dx is a convolution of dL/dy by the filters
flipped and transposed, padded by 2*d - p: ``conv_small`` again (``Conv2dSmall`` says why).
dL/dw is a sum over samples and positions of dL/dy times the tap views::

    dL/dw[o, c, i, j] = sum_n sum_p G[o, p] * X[c, p + i*dh*Wp + j*dw]

with G a task's dL/dy on the flat grid, zero at the dropped positions. The nine sums of two
output channels are taken in one pass over p: the nine inputs and two gradients loaded for p
serve 18 multiply-adds, into sums that stay in registers.

**Parallel.** ``prange`` runs over the tasks (a sample each, or a stack). A task writes its own
samples of y (or dL/dx), or its own samples' part of dL/dw into ``gw_tasks[task]``; the parts
are summed afterwards (one addition per weight and task, against OH*OW multiply-adds per sample
to make each part). No two tasks write the same memory. Small inputs run on the calling thread
(``cnnlite.cpu.parallel``).
"""
import numba
import numpy as np
from numba import njit, prange

from cnnlite import memory, validate
from cnnlite.cpu.parallel import serial_when_small
from cnnlite.errors import OpError
from cnnlite.reference import contracts


#: The loops over positions run to a multiple of this many (see the module).
LANES = 32


@njit(cache=True, inline="always")
def _padded_length(count, Hp, OH, Wp):
    """The positions of the output rows of ``count`` stacked samples on the flat grid,
    ((count - 1)*Hp + OH)*Wp, rounded up to LANES."""
    return (((count - 1) * Hp + OH) * Wp + LANES - 1) // LANES * LANES


@njit(cache=True)
def _on_flat_grid(a, first, count, top, left, Hp, Wp, columns, planes):
    """Samples first, ..., first + count - 1 of a: (N, C, H, W) stacked on one flat grid:
    (planes, columns), planes >= C, with a[first + s, c, h, w] at (s*Hp + top + h)*Wp + left + w
    and zeros everywhere else (planes C and on are all zeros)."""
    C, H, W = a.shape[1], a.shape[2], a.shape[3]
    grid = np.zeros((planes, columns), dtype=a.dtype)
    for s in range(count):
        for c in range(C):
            for h in range(H):
                # counted with unsigned integers, which lets LLVM vectorise the copy
                # (see ``cnnlite.cpu.im2col``)
                start = np.uint64((s * Hp + top + h) * Wp + left)
                for k in range(np.uint64(W)):
                    grid[c, start + k] = a[first + s, c, h, k]
    return grid


@njit(cache=True, inline="always")
def _row_views(X, c, i, length, Wp, dh, dw):
    """The views of kernel row i: X[c, off:off + length] for off = i*dh*Wp + j*dw, j = 0, 1, 2."""
    r = i * dh * Wp
    return X[c, r:r + length], X[c, r + dw:r + dw + length], X[c, r + 2 * dw:r + 2 * dw + length]


@njit(cache=True, inline="always")
def _row_weights(w, o, c, i):
    """(w[o, c, i, 0], w[o, c, i, 1], w[o, c, i, 2])."""
    return w[o, c, i, 0], w[o, c, i, 1], w[o, c, i, 2]


@njit(cache=True, inline="always")
def _dot3(a, b):
    """a[0]*b[0] + a[1]*b[1] + a[2]*b[2]."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True, inline="always")
def _axpy9(s, a, b):
    """s + a * b for 9-tuples s and b and a number a."""
    return (s[0] + a * b[0], s[1] + a * b[1], s[2] + a * b[2], s[3] + a * b[3],
            s[4] + a * b[4], s[5] + a * b[5], s[6] + a * b[6], s[7] + a * b[7],
            s[8] + a * b[8])


# "contract" lets LLVM fuse each multiply and add into one FMA instruction; the order of the sums
# stays as written, so the results do not depend on the vector width.
@njit(cache=True, fastmath={"contract"})
def _correlate_samples(x, w, bias, y, first, count, ph, pw, dh, dw):
    """y[first:first + count] = the 3x3 correlation of those samples of x with w, plus bias
    (see the module); w and bias have a multiple of 4 output channels, y the first y.shape[1]
    of them; w has an even number of input channels, x the first x.shape[1] of them."""
    O, C = w.shape[0], w.shape[1]
    OH, OW = y.shape[2], y.shape[3]
    Hp, Wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    length = _padded_length(count, Hp, OH, Wp)
    X = _on_flat_grid(x, first, count, ph, pw, Hp, Wp, length + 2 * dh * Wp + 2 * dw, C)
    acc = np.empty((O, length), dtype=y.dtype)
    for o in range(O):
        acc[o] = bias[o]
    for c in range(0, C, 2):
        for o in range(0, O, 4):  # 2 input and 4 output channels, 1 kernel row a pass
            a0, a1, a2, a3 = acc[o], acc[o + 1], acc[o + 2], acc[o + 3]
            for i in range(3):
                t0, t1, t2 = _row_views(X, c, i, length, Wp, dh, dw)
                u0, u1, u2 = _row_views(X, c + 1, i, length, Wp, dh, dw)
                k0, k1 = _row_weights(w, o, c, i), _row_weights(w, o + 1, c, i)
                k2, k3 = _row_weights(w, o + 2, c, i), _row_weights(w, o + 3, c, i)
                m0, m1 = _row_weights(w, o, c + 1, i), _row_weights(w, o + 1, c + 1, i)
                m2, m3 = _row_weights(w, o + 2, c + 1, i), _row_weights(w, o + 3, c + 1, i)
                for p in range(length):
                    e = (t0[p], t1[p], t2[p])  # channel c's three taps at p
                    f = (u0[p], u1[p], u2[p])  # channel c + 1's
                    a0[p] += _dot3(k0, e) + _dot3(m0, f)
                    a1[p] += _dot3(k1, e) + _dot3(m1, f)
                    a2[p] += _dot3(k2, e) + _dot3(m2, f)
                    a3[p] += _dot3(k3, e) + _dot3(m3, f)
    for s in range(count):
        for o in range(y.shape[1]):
            for oh in range(OH):
                start = np.uint64((s * Hp + oh) * Wp)
                for ow in range(np.uint64(OW)):  # the wrapped positions of the row are dropped
                    y[first + s, o, oh, ow] = acc[o, start + ow]


# "reassoc" lets LLVM split each sum over p into vector lanes (summed at the end); a reordered
# sum differs from the loops' only in rounding.
@njit(cache=True, fastmath={"reassoc", "contract"})
def _weight_grad_samples(x, gy, gw_tasks, task, first, count, ph, pw, dh, dw):
    """gw_tasks[task] = the part of dL/dw of samples first, ..., first + count - 1, as
    (O, C, 9) (see the module)."""
    O, C, OH = gy.shape[1], x.shape[1], gy.shape[2]
    Hp, Wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    length = _padded_length(count, Hp, OH, Wp)
    X = _on_flat_grid(x, first, count, ph, pw, Hp, Wp, length + 2 * dh * Wp + 2 * dw, C)
    G = _on_flat_grid(gy, first, count, 0, 0, Hp, Wp, length, O)  # 0 at the dropped positions
    z = gy.dtype.type(0)
    zero = (z, z, z, z, z, z, z, z, z)
    for c in range(C):
        views = (_row_views(X, c, 0, length, Wp, dh, dw) + _row_views(X, c, 1, length, Wp, dh, dw)
                 + _row_views(X, c, 2, length, Wp, dh, dw))  # the nine taps, in the order of w
        for o in range(0, O, 2):
            o2 = min(o + 1, O - 1)  # an odd last channel is paired with itself
            g, g2 = G[o], G[o2]
            s, s2 = zero, zero
            for p in range(length):
                taps = (views[0][p], views[1][p], views[2][p], views[3][p], views[4][p],
                        views[5][p], views[6][p], views[7][p], views[8][p])
                s = _axpy9(s, g[p], taps)
                s2 = _axpy9(s2, g2[p], taps)
            for k in range(9):
                gw_tasks[task, o, c, k] = s[k]
                gw_tasks[task, o2, c, k] = s2[k]


@njit(parallel=True, cache=True)
def _correlate_kernel(x, w, bias, y, stack, ph, pw, dh, dw):
    N = x.shape[0]
    for task in prange((N + stack - 1) // stack):  # ``stack`` samples a task, fewer in the last
        first = task * stack
        _correlate_samples(x, w, bias, y, first, min(stack, N - first), ph, pw, dh, dw)


@njit(parallel=True, cache=True)
def _weight_grad_kernel(x, gy, gw_tasks, stack, ph, pw, dh, dw):
    N = x.shape[0]
    for task in prange(gw_tasks.shape[0]):
        first = task * stack
        _weight_grad_samples(x, gy, gw_tasks, task, first, min(stack, N - first), ph, pw, dh, dw)


#: A task stacks samples on its flat grid until it holds at least this many positions
#: (padded planes), ...
TASK_POSITIONS = 1024
#: ... as long as the batch still makes this many tasks for each of numba's threads (8 tasks on
#: 2 threads: ResNet-20's batch of 64 stacks 8 samples of 8x8 a task).
TASKS_PER_THREAD = 4


def samples_per_task(N, Hp, Wp, threads):
    """How many samples of a batch of N with padded planes Hp x Wp one task stacks, with
    ``threads`` threads to share the tasks (see the module): 1 for planes of TASK_POSITIONS or
    more, or for a batch of less than 2 * TASKS_PER_THREAD * threads."""
    wanted = -(-TASK_POSITIONS // (Hp * Wp))
    return max(1, min(wanted, N // (TASKS_PER_THREAD * threads)))


def _stack(x, geometry):
    """``samples_per_task`` for x: (N, C, H, W) padded by geometry's (ph, pw), on numba's
    threads."""
    ph, pw = geometry[:2]
    return samples_per_task(x.shape[0], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw,
                            numba.get_num_threads())


#: The kernels' work for ``serial_when_small``: this many multiply-adds count as one array
#: element of a memory-bound kernel. Counting elements alone, a layer of 128 -> 32 channels at
#: 28x28 (1e6 elements, 3-8 ms at batch 8) ran beside OpenBLAS's spinning workers. The number
#: was measured in DenseNet-121's inference (batch 8, 2 cores, interleaved runs of 7): with 16,
#: its 7x7 layers (14e6 multiply-adds each) did not park and took 18-20 ms, with 4 they park and
#: take 11.5-13 ms; the whole inference's user CPU time 1059-1333 -> 1010-1213 ms.
MULTIPLY_ADDS_PER_ELEMENT = 4


def _correlate_work(x, w, bias, y, *geometry):
    return y.size * w.shape[1] * 9 // MULTIPLY_ADDS_PER_ELEMENT


def _weight_grad_work(x, gy, gw_tasks, *geometry):
    return gy.size * x.shape[1] * 9 // MULTIPLY_ADDS_PER_ELEMENT


_correlate = serial_when_small(_correlate_kernel, work=_correlate_work)
_weight_grad = serial_when_small(_weight_grad_kernel, work=_weight_grad_work)


def _geometry(op, x, padding, dilation):
    """(ph, pw, dh, dw) as Python ints, checked, and the output size (OH, OW) >= (1, 1)."""
    ph, pw = validate.pair(op, "padding", padding, minimum=0)
    dh, dw = validate.pair(op, "dilation", dilation, minimum=1)
    out = (x.shape[2] + 2 * ph - 2 * dh, x.shape[3] + 2 * pw - 2 * dw)
    if min(out) < 1:
        raise OpError(f"{op}: a 3x3 kernel with dilation {(dh, dw)} does not fit x "
                      f"{tuple(x.shape)} with padding {(ph, pw)}")
    return (ph, pw, dh, dw), out


def _same_dtype(op, reference, **arrays):
    for name, array in arrays.items():
        if array.dtype != reference.dtype:
            raise OpError(f"{op}: {name} must have the dtype of x ({reference.dtype}), got "
                          f"{array.dtype} {name} {tuple(array.shape)}")


def conv_small(x, w, bias, padding, dilation):
    """y = the 3x3, stride-1 correlation of x with w, plus bias (the module says how).

    x: (N, C, H, W), w: (O, C, 3, 3), bias: (O,) or None (no bias), padding and dilation:
    pairs -> y: (N, O, H + 2*ph - 2*dh, W + 2*pw - 2*dw), in the dtype of x, which w and bias
    share.
    """
    N, C = contracts.floats("conv_small", "x", x, "N, C, H, W")[:2]
    O = contracts.floats("conv_small", "w", w, "O, C, 3, 3")[0]
    if tuple(w.shape[1:]) != (C, 3, 3):
        raise OpError(f"conv_small: expected w of shape (O, {C}, 3, 3) for x "
                      f"{tuple(x.shape)}, got w {tuple(w.shape)}")
    if bias is None:
        bias = np.zeros(O, dtype=x.dtype)
    if contracts.floats("conv_small", "bias", bias) != (O,):
        raise OpError(f"conv_small: expected bias of shape ({O},) for w {tuple(w.shape)}, got "
                      f"bias {tuple(bias.shape)}")
    _same_dtype("conv_small", x, w=w, bias=bias)
    geometry, (OH, OW) = _geometry("conv_small", x, padding, dilation)
    memory.check_allocation("conv_small", "output", (N, O, OH, OW), x.dtype)
    y = np.empty((N, O, OH, OW), dtype=x.dtype)
    # The kernel takes two input and four output channels per pass (see the module): zero
    # filters fill up the last four output channels, a zero input channel an odd count (against
    # zero planes of X), and y takes the first O channels.
    O4, C2 = -(-O // 4) * 4, -(-C // 2) * 2
    w4, bias4 = np.zeros((O4, C2, 3, 3), dtype=x.dtype), np.zeros(O4, dtype=x.dtype)
    w4[:O, :C], bias4[:O] = w, bias
    _correlate(x, w4, bias4, y, _stack(x, geometry), *geometry)
    return y


def conv_small_weight_grad(x, gy, padding, dilation):
    """dL/dw: (O, C, 3, 3) of y = conv_small(x, w, ...) from x: (N, C, H, W) and gy = dL/dy:
    (N, O, OH, OW), both of one dtype."""
    N, C = contracts.floats("conv_small_weight_grad", "x", x, "N, C, H, W")[:2]
    O = contracts.floats("conv_small_weight_grad", "gy", gy, "N, O, OH, OW")[1]
    _same_dtype("conv_small_weight_grad", x, gy=gy)
    geometry, out = _geometry("conv_small_weight_grad", x, padding, dilation)
    if tuple(gy.shape) != (N, O) + out:
        raise OpError(f"conv_small_weight_grad: expected gy of shape (N, O, OH, OW) = "
                      f"{(N, O) + out} for x {tuple(x.shape)}, padding {geometry[:2]} and "
                      f"dilation {geometry[2:]}, got gy {tuple(gy.shape)}")
    stack = _stack(x, geometry)
    tasks = -(-N // stack)
    memory.check_allocation("conv_small_weight_grad", "weight gradient of every task",
                            (tasks, O, C, 9), x.dtype)
    gw_tasks = np.empty((tasks, O, C, 9), dtype=x.dtype)
    _weight_grad(x, gy, gw_tasks, stack, *geometry)
    return gw_tasks.sum(axis=0).reshape(O, C, 3, 3)


KERNELS = {"conv_small": conv_small, "conv_small_weight_grad": conv_small_weight_grad}
