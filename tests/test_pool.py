"""Pooling: what is special about it. The generic checks (values against the NumPy formulas,
float64 gradients by central differences, float32 and non-contiguous gradients, PyTorch parity,
on the loops, numba, the CUDA kernels through the host harness and the GPU, over drawn kernels,
strides, paddings, ceil mode and count_include_pad) live in the op table
(``cnnlite/optable/table_pool.py``, run by tests/test_optable.py).

Here: output sizes and ceil mode (Caffe's shapes, every small geometry against PyTorch), NaN
and inf, strided inputs and broadcast gradients, adaptive bins, stochastic pooling's sampling,
seeds and all-zero windows, bad input, and the table's checks catching planted bugs.

Inputs are a random permutation of distinct values 0.1 apart, so no window ever holds a tie.
"""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlite as cl
from cnnlite import backend, optable
from cnnlite import functional as F
from cnnlite.cpu import KERNELS as CPU_KERNELS
from cnnlite.cpu import pool as fast_pool
from cnnlite.functional import pool as functional_pool
from cnnlite.functional.pool import adaptive_bins, pool_output_size
from cnnlite.optable import checks, implementations
from cnnlite.reference import pool as reference_pool
from helpers import every_family, running_as


@pytest.fixture(autouse=True)
def torch_on_one_thread():
    """torch runs even a 2x2 pooling on all its threads; on a busy machine each call then
    waits milliseconds for a descheduled thread. Its results do not depend on the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def distinct_values(shape, seed, low=None, dtype=np.float64):
    """A permutation of 0.1, 0.2, ... (shifted to start at ``low``; default: centred on 0)."""
    size = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(size) * 0.1
    values += -0.05 * size if low is None else low
    return values.reshape(shape).astype(dtype)


# --- output sizes -----------------------------------------------------------------------------

def test_ceil_mode_gives_caffenet_shapes():
    """CaffeNet128's pool1/pool2/pool5 (3x3, stride 2): 30 -> 15 -> 7 -> 3 only in ceil mode."""
    sizes = {True: [30], False: [30]}
    for ceil_mode, chain in sizes.items():
        for _ in range(3):
            chain.append(pool_output_size(chain[-1], 3, 2, 0, ceil_mode))
    assert sizes == {True: [30, 15, 7, 3], False: [30, 14, 6, 2]}


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    # H=5, k=2, s=2, p=1: ceil((5+2-2)/2)+1 = 4 windows, but the 4th would start at 6 - 1 = 5,
    # past the input: 3 windows remain.
    assert pool_output_size(5, 2, 2, 1, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2, 1, ceil_mode=False) == 3
    assert pool_output_size(6, 2, 2, 0, ceil_mode=True) == 3


def small_geometries():
    """Every H <= 6 (W = H + 1), kernel <= 4, stride <= 3, legal padding and ceil mode."""
    for size, kernel, stride, ceil_mode in itertools.product(range(1, 7), range(1, 5),
                                                             range(1, 4), (False, True)):
        for padding in range(kernel // 2 + 1):
            if kernel <= size + 2 * padding:
                yield {"shape": (1, 2, size, size + 1), "kernel_size": kernel, "stride": stride,
                       "padding": padding, "ceil_mode": ceil_mode}


def test_every_small_geometry_matches_torch():
    """Shapes, values and gradients of max and average pooling (count_include_pad either way)
    equal PyTorch's for every small geometry: the table's PyTorch check, swept where the
    table draws at random."""
    cases = [("max_pool2d", {})] + [("avg_pool2d", {"count_include_pad": include})
                                    for include in (False, True)]
    for params, (name, extra) in itertools.product(small_geometries(), cases):
        result = optable.run_check(optable.spec(name), "torch", "numba", {**params, **extra})
        assert result.passed, str(result)


# --- NaN, inf, strided inputs -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_nan_propagates_and_inf_is_a_number(dtype):
    """A NaN wins its windows (the first NaN, in both implementations); +inf and -inf in one
    window are ordinary numbers, although their sum is NaN."""
    x = distinct_values((2, 3, 9, 8), seed=2, dtype=dtype)
    x[0, 0, 2, 3] = x[0, 0, 2, 4] = x[1, 2, 8, 7] = np.nan
    x[0, 1, 4, 4], x[0, 1, 4, 5], x[1, 0, 0, 0] = np.inf, -np.inf, -np.inf
    args = (x, (3, 3), (2, 2), (1, 1), (5, 4))
    (y_ref, argmax_ref), (y, argmax) = (implementation.KERNELS["max_pool2d_forward"](*args)
                                        for implementation in (reference_pool, fast_pool))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    expected = TF.max_pool2d(torch.tensor(x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(y, expected)  # NaN where torch has NaN, equal numbers elsewhere
    assert np.isinf(y).any() and np.isnan(y).sum() == 3


def test_fast_path_takes_strided_inputs_and_broadcast_gradients():
    """A transposed input and the stride-0 gradient of .sum() go through the numba kernels."""
    x = distinct_values((2, 3, 7, 6), seed=1).transpose(0, 1, 3, 2)
    for pool in (lambda a: F.max_pool2d(a, 3, 2, 1, True),
                 lambda a: F.avg_pool2d(a, 3, 2, 1, True, False)):
        grads = []
        for family in ("loops", "numba"):
            t = cl.tensor(x, requires_grad=True)
            with implementations.running(family):
                pool(t).sum().backward()
            grads.append(t.grad)
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


# --- spatial pyramid pooling ------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 7, 13])
def test_spatial_pyramid_has_n_by_n_bins_covering_the_map(size):
    for n in (1, 2, 4, 6):
        bins = adaptive_bins(size, n)
        assert len(bins) == n and bins[0][0] == 0 and bins[-1][1] == size
        assert all(start < stop for start, stop in bins)
        assert all(b[0] <= a[1] for a, b in zip(bins, bins[1:]))  # no gap between bins
    x = distinct_values((2, 3, size, size + 2), seed=size)
    y = F.spatial_pyramid_pool2d(cl.tensor(x), levels=(1, 2, 4), mode="max")
    expected = np.concatenate([TF.adaptive_max_pool2d(torch.tensor(x), n).numpy().reshape(2, -1)
                               for n in (1, 2, 4)], axis=1)
    assert y.shape == (2, 3 * (1 + 4 + 16))
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)


# --- stochastic pooling -----------------------------------------------------------------------

@every_family
def test_stochastic_pool2d_eval_is_the_expected_value(family):
    x = distinct_values((2, 3, 6, 7), seed=3, low=0.0)  # the value 0 appears once
    x[0, 0, :2, :2] = 0.0  # an all-zero window
    with running_as(family):
        y = F.stochastic_pool2d(cl.tensor(x), 2, training=False, ceil_mode=True).data
    expected = np.zeros((2, 3, 3, 4))
    for n, c, i, j in np.ndindex(expected.shape):
        a = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        if a.sum() > 0:
            probabilities = a / a.sum()
            expected[n, c, i, j] = (probabilities * a).sum()
    assert y[0, 0, 0, 0] == 0.0
    np.testing.assert_allclose(y, expected, rtol=1e-12)


@every_family
def test_stochastic_pool2d_samples_follow_the_probabilities(family):
    """2000 windows holding (0, 1, 2, 5): picked 0, 1/8, 2/8, 5/8 of the time (chi-square)."""
    windows = 2000
    x = np.broadcast_to(np.array([[0.0, 1.0], [2.0, 5.0]]), (1, windows, 2, 2)).copy()
    with running_as(family):
        y = F.stochastic_pool2d(cl.tensor(x), 2, rng=np.random.default_rng(42)).data
    counts = np.array([(y == v).sum() for v in (0.0, 1.0, 2.0, 5.0)])
    expected = windows * np.array([1, 2, 5]) / 8
    chi_square = ((counts[1:] - expected) ** 2 / expected).sum()
    assert counts[0] == 0 and counts.sum() == windows
    assert chi_square < 20, f"counts {counts}, chi-square {chi_square:.1f} (2 degrees of freedom)"


@every_family
def test_stochastic_pool2d_gradient_goes_to_the_sampled_element(family):
    x = distinct_values((2, 3, 6, 6), seed=5, low=0.1)
    t = cl.tensor(x, requires_grad=True)
    with running_as(family):
        y = F.stochastic_pool2d(t, 3, rng=np.random.default_rng(0))
        upstream = np.random.default_rng(1).standard_normal(y.shape)
        (y * cl.tensor(upstream)).sum().backward()
    for n, c, i, j in np.ndindex(y.shape):
        window, grad = (a[n, c, 3 * i:3 * i + 3, 3 * j:3 * j + 3] for a in (x, t.grad))
        expected = np.where(window == y.data[n, c, i, j], upstream[n, c, i, j], 0.0)
        np.testing.assert_array_equal(grad, expected)


@every_family
def test_stochastic_pool2d_all_zero_window_gives_zero(family):
    t = cl.tensor(np.zeros((1, 2, 4, 4)), requires_grad=True)
    with running_as(family):
        for training in (True, False):
            t.grad = None
            y = F.stochastic_pool2d(t, 2, training=training, rng=np.random.default_rng(0))
            y.sum().backward()
            assert np.all(y.data == 0) and np.all(np.isfinite(t.grad))


def test_stochastic_pool2d_same_seed_same_samples():
    x = cl.tensor(distinct_values((2, 3, 8, 8), seed=0, low=0.1))
    draw = lambda seed: F.stochastic_pool2d(x, 2, rng=np.random.default_rng(seed)).data  # noqa
    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


# --- bad input --------------------------------------------------------------------------------

x4 = cl.tensor(np.ones((1, 3, 4, 4)))
BAD_CALLS = [
    ("max_pool2d", lambda: F.max_pool2d(cl.tensor(np.ones((3, 4, 4))), 2), r"\(3, 4, 4\)"),
    ("avg_pool2d", lambda: F.avg_pool2d(cl.tensor(np.ones((1, 1, 3, 4, 4))), 2),
     r"\(1, 1, 3, 4, 4\)"),
    ("adaptive_avg_pool2d", lambda: F.adaptive_avg_pool2d(cl.tensor(np.ones((4, 4))), 2),
     r"\(4, 4\)"),
    ("adaptive_max_pool2d", lambda: F.adaptive_max_pool2d(cl.tensor(np.ones((3, 4, 4))), 2),
     r"\(3, 4, 4\)"),
    ("global_avg_pool2d", lambda: F.global_avg_pool2d(cl.tensor(np.ones((3, 4, 4)))),
     r"\(3, 4, 4\)"),
    ("stochastic_pool2d", lambda: F.stochastic_pool2d(cl.tensor(np.ones((3, 4, 4))), 2),
     r"\(3, 4, 4\)"),
    ("max_pool2d", lambda: F.max_pool2d(x4, 2, stride=0), r"stride\[0\] must be >= 1, got 0"),
    ("avg_pool2d", lambda: F.avg_pool2d(x4, 2, stride=(1, -1)),
     r"stride\[1\] must be >= 1, got -1"),
    ("stochastic_pool2d", lambda: F.stochastic_pool2d(x4, 2, stride=0), r"stride\[0\]"),
    ("max_pool2d", lambda: F.max_pool2d(x4, 3, padding=2),
     r"padding \(2, 2\) for kernel_size \(3, 3\)"),
    ("avg_pool2d", lambda: F.avg_pool2d(x4, 2, padding=(0, 2)), r"padding \(0, 2\)"),
    ("max_pool2d", lambda: F.max_pool2d(x4, 7, padding=1), r"\(7, 7\).*\(6, 6\).*\(1, 3, 4, 4\)"),
    ("avg_pool2d", lambda: F.avg_pool2d(x4, (5, 2)), r"\(5, 2\).*\(1, 3, 4, 4\)"),
    ("stochastic_pool2d", lambda: F.stochastic_pool2d(x4, 5, training=False), r"\(1, 3, 4, 4\)"),
    ("stochastic_pool2d", lambda: F.stochastic_pool2d(-x4, 2), r"non-negative.*\(1, 3, 4, 4\)"),
    ("stochastic_pool2d", lambda: F.stochastic_pool2d(x4 - 2, 2, training=False),
     r"non-negative.*\(1, 3, 4, 4\)"),
    ("adaptive_avg_pool2d", lambda: F.adaptive_avg_pool2d(x4, 0), r"output_size\[0\] must be"),
    ("max_pool2d", lambda: F.max_pool2d(x4, 2.5), r"kernel_size must be an int"),
    ("spatial_pyramid_pool2d", lambda: F.spatial_pyramid_pool2d(x4, mode="sum"),
     r"mode must be 'max' or 'avg', got 'sum'"),
    ("spatial_pyramid_pool2d", lambda: F.spatial_pyramid_pool2d(cl.tensor(np.ones((3, 4, 4)))),
     r"\(3, 4, 4\)"),
    ("spatial_pyramid_pool2d", lambda: F.spatial_pyramid_pool2d(x4, levels=(1, 0)),
     r"levels\[1\] must be >= 1, got 0"),
    ("spatial_pyramid_pool2d", lambda: F.spatial_pyramid_pool2d(x4, levels=()),
     r"levels must be a non-empty sequence"),
    ("spatial_pyramid_pool2d", lambda: F.spatial_pyramid_pool2d(x4, levels=4),
     r"levels must be a non-empty sequence of ints, got int 4"),
    ("max_avg_pool2d", lambda: F.max_avg_pool2d(cl.tensor(np.ones((3, 4, 4))), 2), r"\(3, 4, 4\)"),
    ("max_avg_pool2d", lambda: F.max_avg_pool2d(x4, 2, stride=0), r"stride\[0\] must be >= 1"),
    ("max_avg_pool2d", lambda: F.max_avg_pool2d(x4, 5), r"\(5, 5\).*\(1, 3, 4, 4\)"),
]


@pytest.mark.parametrize("op, call, fragment", BAD_CALLS,
                         ids=[f"{op}-{i}" for i, (op, _, _) in enumerate(BAD_CALLS)])
def test_bad_input_raises_op_error_naming_op_and_shapes_or_argument(op, call, fragment):
    """A bad input names the op and the shapes; a bad argument the op, the argument and its
    value (the same words as the layer's: tests/test_bad_input_ops.py)."""
    with pytest.raises(cl.OpError, match=f"^{op}: .*{fragment}"):
        call()


# --- the table's checks catch planted bugs ----------------------------------------------------

def test_the_table_catches_a_max_pooling_backward_with_a_wrong_index(monkeypatch):
    """Each window's gradient sent to the pixel after its maximum instead of the maximum."""
    real = backend.kernel("max_pool2d_backward", np.ones(1))

    def one_pixel_off(gy, argmax, input_size):
        return real(gy, (argmax + 1) % (input_size[0] * input_size[1]), input_size)

    monkeypatch.setitem(CPU_KERNELS, "max_pool2d_backward", one_pixel_off)
    spec = optable.spec("max_pool2d")
    result = optable.run_check(spec, "gradient", "numba", spec.examples[1])
    assert result.status == checks.WRONG_GRADIENT and "input 0" in result.detail


def test_the_table_catches_adaptive_bins_one_element_too_long(monkeypatch):
    """Every bin but the last ends one element late in the vectorised code: the table's value
    check fails for each op built on adaptive bins."""
    real = functional_pool.adaptive_bins
    monkeypatch.setattr(functional_pool, "adaptive_bins", lambda size, count: [
        (start, min(stop + 1, size)) for start, stop in real(size, count)])
    params = {"shape": (2, 2, 7, 5), "output_size": (3, 2)}
    for name, extra in [("adaptive_avg_pool2d", {}), ("adaptive_max_pool2d", {}),
                        ("spatial_pyramid_pool2d", {"mode": "max"}),
                        ("spatial_pyramid_pool2d", {"mode": "avg"})]:
        case = {"shape": params["shape"], "levels": (1, 2, 3), **extra} if extra else params
        # The vectorised code runs in every implementation: on the loops (or NumPy) the
        # table compares it with PyTorch, not with another run of itself.
        implementation = "loops" if "loops" in optable.spec(name).implementations else "numpy"
        result = optable.run_check(optable.spec(name), "value", implementation, case)
        assert result.status == checks.WRONG_VALUES, (name, extra, str(result))
