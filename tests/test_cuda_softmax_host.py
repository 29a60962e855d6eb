"""The softmax, log-softmax and cross-entropy kernels of kernels/softmax.cu on the CPU harness
(kernels/host): which kernel a launcher picks, what it computes along any axis, how precise a
float kernel is, and empty inputs.

A launcher (cnnlite/cuda/softmax.py) runs the block-per-row kernels when a row's K classes are
contiguous (inner == 1) and the thread-per-row ``_strided`` kernels when they lie ``inner``
apart in at least as many rows as classes; both equal the numba kernels (``cnnlite.cpu``). The
float kernels accumulate in float: their error against float64 is held to 3 times what was
measured (and kernels/softmax.cu quotes). An empty input launches nothing and gives an empty
result, and no softmax kernel reads a value of an empty row (the harness passes an empty array
as a null pointer, as cupy does: a read there crashes).
"""
import math

import numpy as np
import pytest

from cnnlite import cpu, cuda, reference
from cnnlite.cuda import softmax as cuda_softmax
from helpers import run_forked

DTYPES = [np.float32, np.float64]
both_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
C_TYPES = {np.float32: "float", np.float64: "double"}


@pytest.fixture
def kernels(on_harness):
    """The session's harness (conftest.py), with a record of this test's launches alone."""
    return on_harness


def tolerance(dtype):
    """The kernels and numba both round to the dtype; float32 sums differ in their roundings."""
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def kernel_for(name, shape, axis, dtype):
    """The kernel a launcher should pick: ``name_strided<T>`` for classes ``inner`` apart in
    at least as many rows as classes, else ``name<T>`` (one block per row)."""
    axis %= len(shape)
    inner, K = math.prod(shape[axis + 1:]), shape[axis]
    strided = inner > 1 and math.prod(shape) // K >= K
    return f"{name}{'_strided' if strided else ''}<{C_TYPES[dtype]}>"


# ---------------------------------------------------------------------------------------------
# Along any axis: the launcher's pick, and the numba kernels' result.

SHAPES_AND_AXES = [
    ((5, 7), 1),        # classes last: the block-per-row kernels
    ((2, 3, 1), 1),     # classes before an axis of 1: still contiguous rows
    ((5, 7), 0),        # axis 0: the rows' values lie 7 apart
    ((3, 4, 5), 1),     # a middle axis
    ((4, 3, 2), 0),
    ((2, 70, 3), 1),    # more classes than the harness's 32 threads, and than rows: blocks
    ((2, 7, 9), 1),     # more rows (18) than classes: one thread per row
    ((6, 1, 4), 1),     # one class
    ((2, 5, 7, 8), 1),  # segmentation logits: 112 rows, more than the 96 threads of the grid
]
SOFTMAX_OPS = ["softmax_forward", "log_softmax_forward", "softmax_backward",
               "log_softmax_backward"]


def softmax_arguments(op, shape, axis, dtype):
    """The launcher's arguments: (x, axis) for a forward, (y, gy, axis) for a backward, with y
    the numba forward's output."""
    rng = np.random.default_rng(len(shape) * 10 + axis)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if op.endswith("_forward"):
        return x, axis
    gy = rng.standard_normal(shape).astype(dtype)
    return cpu.KERNELS[op.replace("_backward", "_forward")](x, axis), gy, axis


@both_dtypes
@pytest.mark.parametrize("family", ["numba", "loops"])
@pytest.mark.parametrize("shape, axis", SHAPES_AND_AXES)
@pytest.mark.parametrize("op", SOFTMAX_OPS)
def test_softmax_kernels_equal_numba_and_the_loops_along_any_axis(kernels, op, shape, axis,
                                                                  family, dtype):
    arguments = softmax_arguments(op, shape, axis, dtype)
    got = cuda.KERNELS[op](*arguments)
    assert kernels.launched == {kernel_for(op, shape, axis, dtype)}
    assert got.dtype == dtype
    expected = {"numba": cpu.KERNELS, "loops": reference.KERNELS}[family][op](*arguments)
    np.testing.assert_allclose(got, expected, **tolerance(dtype))


@both_dtypes
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(4, 7), (6,), (2, 3, 1), (3, 70, 2), (2, 5, 7, 8)])
def test_cross_entropy_kernels_equal_numba(kernels, shape, label_smoothing, dtype):
    """Classes on axis 1 of (N, K, ...), axis 0 of one sample (K,); the backward is one kernel
    for either layout (one thread per element)."""
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    axis = 1 if len(shape) > 1 else 0
    target = rng.integers(0, shape[axis], size=shape[:axis] + shape[axis + 1:])
    gloss = rng.standard_normal(target.shape).astype(dtype)
    loss, log_probs = cuda.KERNELS["cross_entropy_forward"](logits, target, label_smoothing)
    glogits = cuda.KERNELS["cross_entropy_backward"](log_probs, target, gloss, label_smoothing)
    assert kernels.launched == {kernel_for("cross_entropy_forward", shape, axis, dtype),
                                f"cross_entropy_backward<{C_TYPES[dtype]}>"}
    expected_loss, expected_log_probs = cpu.KERNELS["cross_entropy_forward"](logits, target,
                                                                             label_smoothing)
    expected_glogits = cpu.KERNELS["cross_entropy_backward"](log_probs, target, gloss,
                                                             label_smoothing)
    for got, expected in [(loss, expected_loss), (log_probs, expected_log_probs),
                          (glogits, expected_glogits)]:
        assert got.shape == expected.shape and got.dtype == dtype
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@both_dtypes
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(4, 7), (3, 5, 4)], ids=["block", "strided"])
def test_a_logit_of_minus_infinity_gives_the_numba_loss(kernels, shape, label_smoothing, dtype):
    """A class with logit -inf has log p = -inf: without smoothing the loss ignores it (0 *
    -inf would be NaN), with smoothing it is +inf; a compensated sum must not turn it NaN."""
    logits = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    logits[:, 2] = -np.inf
    target = np.zeros(shape[:1] + shape[2:], dtype=np.int64)
    loss, _ = cuda.KERNELS["cross_entropy_forward"](logits, target, label_smoothing)
    expected, _ = cpu.KERNELS["cross_entropy_forward"](logits, target, label_smoothing)
    assert np.isfinite(expected).all() == (label_smoothing == 0)
    np.testing.assert_allclose(loss, expected, **tolerance(dtype))


# ---------------------------------------------------------------------------------------------
# Precision: the kernels accumulate in their own type.

#: The largest relative error of softmax (and absolute error of log-softmax, the same thing:
#: d log y = dy / y) of logits N(0, 3^2) against the float64 result, measured through the
#: harness on the inputs below, per dtype and number of classes K (either kernel).
MEASURED_ERROR = {np.float32: {10: 1.0e-6, 1000: 1.9e-6, 30000: 2.3e-6},
                  np.float64: {10: 1.9e-15, 1000: 3.8e-15, 30000: 3.8e-15}}


def exact_log_softmax(x, axis):
    """log softmax in float64, with the classes moved last: NumPy sums a contiguous axis
    pairwise, a few roundings of float64 for any K, where along a strided axis it adds one
    value after another, as a plain sum in a strided kernel would."""
    last = np.ascontiguousarray(np.moveaxis(x.astype(np.float64), axis, -1))
    shifted = last - last.max(axis=-1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return np.moveaxis(log_y, -1, axis)


@both_dtypes
@pytest.mark.parametrize("classes_last", [True, False], ids=["block", "strided"])
@pytest.mark.parametrize("K", [10, 1000, 30000])
def test_softmax_error_is_within_three_times_the_measured_one(kernels, K, classes_last, dtype,
                                                              monkeypatch):
    # 32 rows of up to 30000 classes would go to one block per row: the strided kernels' sum
    # is the one to measure here.
    monkeypatch.setattr(cuda_softmax, "one_thread_per_row", lambda rows, K, inner: inner > 1)
    rng = np.random.default_rng(K)
    shape, axis = ((8, K), 1) if classes_last else ((1, K, 32), 1)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    exact = exact_log_softmax(x, axis)
    bound = 3 * MEASURED_ERROR[dtype][K]
    y = cuda.KERNELS["softmax_forward"](x, axis)
    assert np.max(np.abs(y - np.exp(exact)) / np.exp(exact)) <= bound
    assert np.max(np.abs(cuda.KERNELS["log_softmax_forward"](x, axis) - exact)) <= bound
    kind = "" if classes_last else "_strided"
    assert kernels.launched == {f"{name}{kind}<{C_TYPES[dtype]}>"
                                for name in ("softmax_forward", "log_softmax_forward")}


# ---------------------------------------------------------------------------------------------
# Empty inputs.

def empty(*shape):
    return lambda dtype: np.zeros(shape, dtype=dtype)


def no_targets(*shape):
    return lambda dtype: np.zeros(shape, dtype=np.int64)


#: (kernel, arguments as functions of the dtype, the shapes of the results): no rows (a 0 before
#: or after the class axis) and rows of no classes, for every launcher. Class targets lie in
#: [0, K): with K = 0 only an empty target is a valid one.
EMPTY_CASES = [
    *[(f"{kind}_forward", (empty(*shape), axis), [shape])
      for kind in ("softmax", "log_softmax")
      for shape, axis in [((0, 5), 1), ((4, 0), 1), ((0,), 0), ((2, 0, 3), 1), ((2, 3, 0), 1)]],
    *[(f"{kind}_backward", (empty(*shape), empty(*shape), axis), [shape])
      for kind in ("softmax", "log_softmax")
      for shape, axis in [((0, 5), 1), ((4, 0), 1), ((2, 0, 3), 1)]],
    *[("cross_entropy_forward", (empty(*logits), no_targets(*target), 0.1), [target, logits])
      for logits, target in [((0, 5), (0,)), ((4, 0, 0), (4, 0)), ((2, 3, 0), (2, 0))]],
    *[("cross_entropy_backward", (empty(*logits), no_targets(*target), empty(*target), 0.1),
       [logits])
      for logits, target in [((0, 5), (0,)), ((4, 0, 0), (4, 0)), ((2, 3, 0), (2, 0))]],
]


@both_dtypes
@pytest.mark.parametrize("name, arguments, shapes", EMPTY_CASES,
                         ids=[f"{n}-{'x'.join(map(str, s[-1]))}" for n, _, s in EMPTY_CASES])
def test_an_empty_input_launches_nothing_and_gives_empty_results(kernels, name, arguments,
                                                                  shapes, dtype):
    """The results numba gives for no rows, and F.softmax for rows of no classes (where the
    numba kernels' maximum over no values fails)."""
    got = cuda.KERNELS[name](*[a(dtype) if callable(a) else a for a in arguments])
    got = got if isinstance(got, tuple) else (got,)
    assert [(g.shape, g.dtype) for g in got] == [(s, np.dtype(dtype)) for s in shapes]
    assert not kernels.launched


@both_dtypes
@pytest.mark.parametrize("inner", [1, 3], ids=["block", "strided"])
@pytest.mark.parametrize("op", SOFTMAX_OPS)
def test_a_softmax_kernel_reads_no_value_of_an_empty_row(kernels, op, inner, dtype):
    """The kernel itself, launched on 3 rows of K = 0 classes (which the launchers never do):
    its arrays are null pointers here, as they would be on a GPU, and a read crashes."""
    name = f"{op}{'_strided' if inner > 1 else ''}"
    kernel = kernels.function(name, C_TYPES[dtype])
    arrays = [np.zeros(0, dtype=dtype)] * (2 if op.endswith("_forward") else 3)
    rows_of_no_classes = (*arrays, np.int64(3), np.int64(0), np.int64(inner))
    outcome = run_forked({op: lambda: ("returned", kernel((1,), (32,), rows_of_no_classes))})[op]
    assert outcome[0] == "returned", outcome

