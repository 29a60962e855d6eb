"""Empty arrays reach the CUDA launchers safely: every launcher of ``cnnlite.cuda.KERNELS``,
called with each axis that can be 0 set to 0, returns what the numba kernels
(``cnnlite.cpu.KERNELS``) return, in float32 and float64, or refuses the same call with the
same error.

On a GPU, cupy gives an array of 0 bytes a null data pointer: a kernel that reads or writes
an element of an empty array crashes the process (an illegal address), and a launch of 0
blocks is an error. The harness of kernels/host does the same (``cnnlite.cuda.host`` passes a
null pointer for every empty array and refuses an empty grid), so a crash here is a crash
there. The launcher calls run in forked child processes, so that a crash fails its own case
and hides none of the others.
"""
from typing import Callable, NamedTuple

import numpy as np
import pytest

from cnnlite import cpu, cuda
from cnnlite.cuda import host
from helpers import run_forked

DTYPES = [np.float32, np.float64]


class Case(NamedTuple):
    kernel: str
    arguments: Callable   # dtype -> the launcher's arguments (new arrays on every call)
    name: str = ""        # the kernel and the shapes, the test's id


def data(*shape):
    """A function of the dtype: random values of ``shape`` (positive, for the poolings that
    need them)."""
    return lambda dtype: np.random.default_rng(sum(shape) + 1).uniform(
        0.5, 1.5, shape).astype(dtype)


def ints(*shape):
    """A function of the dtype: an int32 argmax of zeros."""
    return lambda dtype: np.zeros(shape, dtype=np.int32)


def case(kernel, *arguments):
    """A Case whose arguments are given as functions of the dtype (``data``) or values."""
    return Case(kernel, lambda dtype: [a(dtype) if callable(a) else a for a in arguments])


def conv_cases():
    """Each axis of x: (N, C, H, W) at 0. A 2x2 kernel with padding 1 still has one window
    along an axis of size 0 (all padding): im2col writes col's zeros and must not read x."""
    window = (2, 2, (1, 1), (1, 1), (1, 1))
    for shape in [(0, 2, 4, 4), (2, 0, 4, 4), (2, 2, 0, 4), (2, 2, 4, 0)]:
        N, C, H, W = shape
        columns = N * (H + 1) * (W + 1)
        yield f"x{shape}", case("im2col", data(*shape), *window)
        yield f"x{shape}", case("col2im", data(C * 4, columns), shape, *window)


def pool_cases():
    """The batch, the channels, an input axis and an output axis at 0. Windows over an input
    axis of 0 exist only with padding (max and average pooling)."""
    square = ((2, 2), (2, 2))
    for shape, out in [((0, 2, 4, 4), (2, 2)), ((2, 0, 4, 4), (2, 2)), ((2, 2, 4, 4), (0, 2)),
                       ((2, 2, 0, 4), (0, 2))]:
        N, C, H, W = shape
        gy, argmax, uniforms = data(N, C, *out), ints(N, C, *out), data(N, C, *out)
        name = f"x{shape}-out{out}"
        yield name, case("max_pool2d_forward", data(*shape), *square, (0, 0), out)
        yield name, case("max_pool2d_backward", gy, argmax, (H, W))
        yield name, case("avg_pool2d_forward", data(*shape), *square, (0, 0), out, True)
        yield name, case("avg_pool2d_backward", gy, (H, W), *square, (0, 0), True)
        yield name, case("stochastic_pool2d_sample", data(*shape), *square, out, uniforms)
        yield name, case("probability_weighted_pool2d_forward", data(*shape), *square, out)
        yield name, case("probability_weighted_pool2d_backward", gy, data(*shape), *square)
        mask = data(*square[0])
        yield name, case("gated_max_ave_pool2d_forward", data(*shape), mask, *square, out)
        yield name, case("gated_max_ave_pool2d_backward", gy, data(*shape), mask, argmax,
                         *square)
        yield name, case("tree_pool2d_forward", data(*shape), mask, mask, mask, *square, out)
        yield name, case("tree_pool2d_backward", gy, data(*shape), mask, mask, mask, *square)
    # An input plane of 0 rows, whose one row of windows lies in the padding. Max pooling has
    # no maximum of nothing (PyTorch refuses such input); average pooling's windows hold zeros.
    shape, out, padded = (2, 2, 0, 4), (1, 3), ((2, 2), (2, 2), (1, 1))
    yield f"x{shape}-out{out}-padded", case("max_pool2d_forward", data(*shape), *padded, out)
    for include_pad in (True, False):
        yield (f"x{shape}-out{out}-padded-{include_pad}",
               case("avg_pool2d_forward", data(*shape), *padded, out, include_pad))
    gy, argmax = data(2, 2, *out), ints(2, 2, *out)
    yield f"x{shape}-out{out}-padded", case("max_pool2d_backward", gy, argmax, (0, 4))
    yield (f"x{shape}-out{out}-padded",
           case("avg_pool2d_backward", gy, (0, 4), *padded, True))


def norm_cases():
    """Each axis of the (N, C, L) view at 0, with per-channel vectors of C elements."""
    for shape in [(0, 3, 5), (2, 0, 5), (2, 3, 0)]:
        x, vector = data(*shape), data(shape[1])
        name = f"x{shape}"
        yield name, case("batch_norm_statistics", x)
        yield name, case("batch_norm_forward", x, vector, vector, vector, vector)
        yield name, case("batch_norm_grad_statistics", x, x, vector, vector)
        yield name, case("batch_norm_backward", x, x, *[vector] * 5)
        yield name, case("lrn_forward", x, 3, 1e-4, 0.75, 1.0)
        yield name, case("lrn_backward", x, x, x, x, 3, 1e-4, 0.75)


ACTIVATIONS = {"relu": (), "leaky_relu": (0.1,), "elu": (1.0,), "sigmoid": (), "tanh": ()}


def elementwise_cases():
    for shape in [(0,), (2, 0, 3)]:
        name = f"x{shape}"
        for activation, parameters in ACTIVATIONS.items():
            yield name, case(f"{activation}_forward", data(*shape), *parameters)
            yield name, case(f"{activation}_backward", data(*shape), data(*shape), *parameters)
        yield name, case("dropout_forward", data(*shape), 0.5, 7)
        yield name, case("sgd_momentum_update", data(*shape), data(*shape), data(*shape), 0.1,
                         0.9)
        yield name, case("adam_update", data(*shape), data(*shape), data(*shape),
                         data(*shape), 1, 0.1)


def softmax_cases():
    """Rows of K = 0 classes, and no rows at all."""
    for shape, axis in [((0, 3), -1), ((0, 3), 0), ((2, 0), -1), ((2, 0), 0), ((2, 3, 0), 1)]:
        name = f"x{shape}-axis{axis}"
        for kernel in ("softmax", "log_softmax"):
            yield name, case(f"{kernel}_forward", data(*shape), axis)
            yield name, case(f"{kernel}_backward", data(*shape), data(*shape), axis)
    # Class targets must lie in [0, K): with K = 0 only an empty target is a valid one.
    for logits, target in [((0, 3), (0,)), ((0, 0), (0,)), ((2, 3, 0), (2, 0))]:
        name = f"logits{logits}"
        target_of = lambda dtype, target=target: np.zeros(target, dtype=np.int64)  # noqa: E731
        yield name, case("cross_entropy_forward", data(*logits), target_of, 0.1)
        yield name, case("cross_entropy_backward", data(*logits), target_of, data(*target), 0.1)


CASES = [c._replace(name=f"{c.kernel}-{shapes}")
         for cases in (conv_cases, pool_cases, norm_cases, elementwise_cases, softmax_cases)
         for shapes, c in cases()]


def outcome_of(launcher, arguments):
    """("returned", (what ``launcher(*arguments)`` returned, its array arguments after the
    call: the optimiser updates write into theirs)), or ("raised", "ErrorType: message")."""
    try:
        return "returned", (launcher(*arguments), [a for a in arguments
                                                   if isinstance(a, np.ndarray)])
    except Exception as error:
        return "raised", f"{type(error).__name__}: {error}"


def assert_same_values(got, expected, where="result"):
    if isinstance(expected, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_values(g, e, f"{where}[{i}]")
    elif isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), f"{where}: {type(got).__name__}, not an array"
        assert (got.shape, got.dtype) == (expected.shape, expected.dtype), where
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True, err_msg=where)
    else:
        assert got == expected, where


def on_the_harness(harness, launcher, arguments):
    """A call of ``launcher(*arguments)`` through the harness, for ``run_forked``."""
    def call():
        with host.run_on_cpu(harness):
            return outcome_of(launcher, arguments)
    return call


@pytest.fixture(scope="module")
def launcher_outcomes(harness):
    """The outcome of every case of the table on the harness, by (case id, dtype)."""
    return run_forked({(case.name, dtype): on_the_harness(harness, cuda.KERNELS[case.kernel],
                                                          case.arguments(dtype))
                       for case in CASES for dtype in DTYPES})


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("empty_case", CASES, ids=[c.name for c in CASES])
def test_empty_input_gives_the_numba_kernels_result(launcher_outcomes, empty_case, dtype):
    expected = outcome_of(cpu.KERNELS[empty_case.kernel], empty_case.arguments(dtype))
    kind, got = launcher_outcomes[empty_case.name, dtype]
    assert kind != "crashed", f"the launcher crashed the process ({got})"
    if expected[0] == "raised":
        assert (kind, got) == expected, f"numba: {expected[1]}"
    else:
        assert kind == "returned", f"the launcher raised {got}"
        assert_same_values(got, expected[1])


def test_every_launcher_has_empty_cases():
    assert {c.kernel for c in CASES} == set(cuda.KERNELS)


def test_a_padded_window_over_an_empty_plane_has_no_maximum(harness):
    """There is no maximum of no element (PyTorch refuses an input plane of 0 rows): max
    pooling must refuse this call rather than read x's first element, which does not exist."""
    arguments = [np.ones((2, 2, 0, 4)), (2, 2), (2, 2), (1, 1), (1, 3)]
    outcomes = run_forked({family: on_the_harness(harness, kernels["max_pool2d_forward"],
                                                  arguments)
                           for family, kernels in (("numba", cpu.KERNELS),
                                                   ("cuda", cuda.KERNELS))})
    for family, (kind, got) in outcomes.items():
        assert kind == "raised" and got.startswith("OpError: max_pool2d_forward"), (
            f"{family}: {kind} {got if kind != 'returned' else ''}")


# ---------------------------------------------------------------------------------------------
# The harness's null pointers: a kernel that touches an element of an empty array crashes.

@pytest.mark.parametrize("empty", ["input", "output"])
def test_a_kernel_touching_an_element_of_an_empty_array_crashes_the_harness(harness, empty):
    """relu_forward<double> told that x and y hold one element, while one of them is empty:
    on the GPU the kernel would touch address 0 (cupy's pointer for 0 bytes), and so it does
    here, where NumPy's own few bytes would have hidden it."""
    x, y = (np.zeros(0), np.zeros(1)) if empty == "input" else (np.zeros(1), np.zeros(0))
    relu = harness.function("relu_forward", "double")
    outcome = run_forked({"relu": lambda: relu((1,), (1,), (x, y, np.int64(1)))})["relu"]
    assert outcome == ("crashed", "SIGSEGV"), f"the kernel ran on the empty {empty}: {outcome}"
