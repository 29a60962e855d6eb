"""Pooling: output sizes, gradients, fast == reference, PyTorch parity, stochastic, bad input.

Adaptive, global and spatial pyramid pooling have one vectorised version on every device and
no dispatched reference; their tests compare it directly with the loops of cnnlite/reference.

Inputs are a random permutation of distinct values 0.1 apart, so no window ever holds a tie
and no central difference (eps = 1e-6) can move a maximum from one element to another: a
failing gradient check means a bug, not a kink.
"""
import contextlib
import itertools
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend
from cnnlite import functional as F
from cnnlite.autograd import Function
from cnnlite.cpu import KERNELS as CPU_KERNELS
from cnnlite.cpu import pool as fast_pool
from cnnlite.functional import pool as functional_pool
from cnnlite.functional.pool import adaptive_bins, pool_output_size, pool_window
from cnnlite.reference import pool as reference_pool

IMPLEMENTATIONS = {"fast": contextlib.nullcontext, "reference": backend.use_reference}
both_implementations = pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))


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


@st.composite
def pool_cases(draw, padding=True, max_kernel=3):
    """Shape and window of a pooling: kernel, stride (None = kernel), padding, ceil mode."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    pad = (tuple(draw(st.integers(0, k // 2)) for k in kernel) if padding else (0, 0))
    size = tuple(draw(st.integers(max(1, k - 2 * p), 6)) for k, p in zip(kernel, pad))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + size
    # Square windows go in as plain ints, the way they are usually written.
    as_arg = lambda pair: pair[0] if pair is not None and pair[0] == pair[1] else pair  # noqa: E731
    return dict(shape=shape, kernel_size=as_arg(kernel), stride=as_arg(stride),
                padding=as_arg(pad), ceil_mode=draw(st.booleans()), seed=draw(st.integers(0, 99)))


def leaf(array):
    return cl.tensor(array.copy(), requires_grad=True)


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


def test_every_small_geometry_matches_torch():
    """Shapes, values and gradients of max/avg pooling equal torch's for every combination of
    H <= 6, kernel <= 4, stride <= 3, legal padding, ceil mode and count_include_pad."""
    rng = np.random.default_rng(0)
    for size, kernel, stride, ceil_mode in itertools.product(range(1, 7), range(1, 5), range(1, 4),
                                                             (False, True)):
        for padding in range(kernel // 2 + 1):
            if kernel > size + 2 * padding:
                continue
            x = distinct_values((1, 2, size, size + 1), seed=size)
            window = (kernel, stride, padding)
            cases = [(lambda a: F.max_pool2d(a, *window, ceil_mode),
                      lambda a: TF.max_pool2d(a, *window, ceil_mode=ceil_mode))]
            for include in (False, True):
                cases.append((lambda a, c=include: F.avg_pool2d(a, *window, ceil_mode, c),
                              lambda a, c=include: TF.avg_pool2d(a, *window, ceil_mode=ceil_mode,
                                                                 count_include_pad=c)))
            for ours, theirs in cases:
                assert_matches_torch(ours, theirs, x, rng)


def assert_matches_torch(ours, theirs, x, rng, rtol=1e-12):
    """Same value, same gradient for the same random upstream gradient."""
    x_ours, x_torch = leaf(x), torch.tensor(x, requires_grad=True)
    y_ours, y_torch = ours(x_ours), theirs(x_torch)
    assert y_ours.shape == tuple(y_torch.shape)
    upstream = rng.standard_normal(y_ours.shape)
    (y_ours * cl.tensor(upstream)).sum().backward()
    (y_torch * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(y_ours.data, y_torch.detach().numpy(), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(x_ours.grad, x_torch.grad.numpy(), rtol=rtol, atol=1e-12)


# --- gradient checks (float64, both implementations) ------------------------------------------

def window_args(case):
    return case["kernel_size"], case["stride"], case["padding"], case["ceil_mode"]


@both_implementations
@given(case=pool_cases())
def test_max_pool2d_gradcheck(implementation, case):
    x = distinct_values(case["shape"], case["seed"])
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda a: F.max_pool2d(a, *window_args(case)), [leaf(x)])


@both_implementations
@given(case=pool_cases(), count_include_pad=st.booleans())
def test_avg_pool2d_gradcheck(implementation, case, count_include_pad):
    x = distinct_values(case["shape"], case["seed"])
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda a: F.avg_pool2d(a, *window_args(case), count_include_pad), [leaf(x)])


@both_implementations
@given(case=pool_cases())
def test_max_avg_pool2d_gradcheck(implementation, case):
    x = distinct_values(case["shape"], case["seed"])
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda a: F.max_avg_pool2d(a, *window_args(case)), [leaf(x)])


@both_implementations
@pytest.mark.parametrize("pool", [F.adaptive_avg_pool2d, F.adaptive_max_pool2d],
                         ids=["avg", "max"])
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6),
                       st.integers(1, 6)),
       output_size=st.tuples(st.integers(1, 7), st.integers(1, 7)), seed=st.integers(0, 99))
def test_adaptive_pool_gradcheck(implementation, pool, shape, output_size, seed):
    x = distinct_values(shape, seed)
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda a: pool(a, output_size), [leaf(x)])


@both_implementations
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5),
                       st.integers(1, 5)), seed=st.integers(0, 99))
def test_global_avg_pool2d_gradcheck_and_torch(implementation, shape, seed):
    x = distinct_values(shape, seed)
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(F.global_avg_pool2d, [leaf(x)])
    assert F.global_avg_pool2d(cl.tensor(x)).shape == shape[:2] + (1, 1)
    assert_matches_torch(F.global_avg_pool2d, lambda a: TF.adaptive_avg_pool2d(a, 1), x,
                         np.random.default_rng(seed))


@both_implementations
@pytest.mark.parametrize("mode", ["max", "avg"])
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6),
                       st.integers(1, 6)), seed=st.integers(0, 99))
def test_spatial_pyramid_pool2d_gradcheck(implementation, mode, shape, seed):
    x = distinct_values(shape, seed)
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda a: F.spatial_pyramid_pool2d(a, (1, 2, 3), mode), [leaf(x)])


@both_implementations
@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@given(case=pool_cases(padding=False))
def test_stochastic_pool2d_gradcheck(implementation, training, case):
    x = distinct_values(case["shape"], case["seed"], low=0.1)
    kernel, stride, _, ceil_mode = window_args(case)
    # A fresh generator with one seed per call draws the same windows' choices every time.
    fn = lambda a: F.stochastic_pool2d(a, kernel, stride, training,  # noqa: E731
                                       np.random.default_rng(case["seed"]), ceil_mode)
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(fn, [leaf(x)])


# --- fast kernels == reference loops ----------------------------------------------------------

def kernel_calls(case, x, count_include_pad, rng):
    """(name, arguments) of every pooling kernel for this case, backward ones included."""
    g = pool_window("test", x.shape, *window_args(case))
    # Stochastic pooling has no padding: its windows must fit the input itself.
    kernel = tuple(min(k, n) for k, n in zip(g.kernel_size, x.shape[2:]))
    s = pool_window("test", x.shape, kernel, g.stride, 0, case["ceil_mode"])
    gy = rng.standard_normal(x.shape[:2] + g.output_size).astype(x.dtype)
    gy_s = rng.standard_normal(x.shape[:2] + s.output_size).astype(x.dtype)
    argmax = rng.integers(0, x.shape[2] * x.shape[3], gy.shape, dtype=np.int32)
    window = (g.kernel_size, g.stride, g.padding)
    return [
        ("max_pool2d_forward", (x, *window, g.output_size)),
        ("max_pool2d_backward", (gy, argmax, x.shape[2:])),
        ("avg_pool2d_forward", (x, *window, g.output_size, count_include_pad)),
        ("avg_pool2d_backward", (gy, x.shape[2:], *window, count_include_pad)),
        ("stochastic_pool2d_sample", (np.abs(x), s.kernel_size, s.stride, s.output_size,
                                      rng.random(gy_s.shape))),
        ("probability_weighted_pool2d_forward", (np.abs(x), s.kernel_size, s.stride,
                                                 s.output_size)),
        ("probability_weighted_pool2d_backward", (gy_s, np.abs(x), s.kernel_size, s.stride)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(case=pool_cases(max_kernel=4), count_include_pad=st.booleans())
def test_fast_kernels_equal_reference(dtype, case, count_include_pad):
    x = distinct_values(case["shape"], case["seed"], dtype=dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for name, args in kernel_calls(case, x, count_include_pad, np.random.default_rng(0)):
        expected, got = reference_pool.KERNELS[name](*args), fast_pool.KERNELS[name](*args)
        for e, g in zip(*(r if isinstance(r, tuple) else (r,) for r in (expected, got))):
            assert g.dtype == e.dtype and g.shape == e.shape, name
            np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol, err_msg=name)


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
        for implementation in IMPLEMENTATIONS.values():
            t = cl.tensor(x, requires_grad=True)
            with implementation():
                pool(t).sum().backward()
            grads.append(t.grad)
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12)


# --- adaptive, global and spatial pyramid pooling == their loops -----------------------------

@st.composite
def adaptive_cases(draw, max_size=7):
    """Shape, adaptive output size and pyramid levels. Output sizes and levels run past the
    input (bins then repeat elements, as PyTorch allows) and need not divide it; None in the
    output size keeps that axis."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
             draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    output_size = (draw(st.integers(1, max_size + 2) | st.none()),
                   draw(st.integers(1, max_size + 2)))
    levels = draw(st.lists(st.integers(1, max_size + 1), min_size=1, max_size=3))
    return dict(shape=shape, output_size=output_size, levels=tuple(levels),
                seed=draw(st.integers(0, 99)))


def resolved_output_size(x, case):
    return tuple(n if s is None else s for s, n in zip(case["output_size"], x.shape[2:]))


class LoopVersion(NamedTuple):
    """An op and its reference loops, each given the drawn case (output size or levels)."""

    op: Callable           # (Tensor, case) -> Tensor
    forward: Callable      # (x, case) -> y
    backward: Callable     # (gy, x, case) -> gx


def _spp_loops(mode):
    return LoopVersion(
        lambda a, case: F.spatial_pyramid_pool2d(a, case["levels"], mode),
        lambda x, case: reference_pool.spatial_pyramid_pool2d_forward(x, case["levels"], mode),
        lambda gy, x, case: reference_pool.spatial_pyramid_pool2d_backward(
            gy, x, case["levels"], mode))


LOOP_VERSIONS = {
    "adaptive_avg_pool2d": LoopVersion(
        lambda a, case: F.adaptive_avg_pool2d(a, case["output_size"]),
        lambda x, case: reference_pool.adaptive_avg_pool2d_forward(
            x, resolved_output_size(x, case)),
        lambda gy, x, case: reference_pool.adaptive_avg_pool2d_backward(gy, x.shape[2:])),
    "adaptive_max_pool2d": LoopVersion(
        lambda a, case: F.adaptive_max_pool2d(a, case["output_size"]),
        lambda x, case: reference_pool.adaptive_max_pool2d_forward(
            x, resolved_output_size(x, case))[0],
        lambda gy, x, case: reference_pool.adaptive_max_pool2d_backward(
            gy, reference_pool.adaptive_max_pool2d_forward(x, resolved_output_size(x, case))[1],
            x.shape[2:])),
    "global_avg_pool2d": LoopVersion(
        lambda a, case: F.global_avg_pool2d(a),
        lambda x, case: reference_pool.global_avg_pool2d_forward(x),
        lambda gy, x, case: reference_pool.global_avg_pool2d_backward(gy, x.shape[2:])),
    "spatial_pyramid_pool2d-max": _spp_loops("max"),
    "spatial_pyramid_pool2d-avg": _spp_loops("avg"),
}


def assert_equals_loops(version, case, dtype):
    """The op's value and input gradient (for a random upstream gradient) equal the loops'."""
    x = distinct_values(case["shape"], case["seed"], dtype=dtype)
    tolerance = 1e-12 if dtype == np.float64 else 1e-6
    t = leaf(x)
    y = version.op(t, case)
    upstream = np.random.default_rng(case["seed"]).standard_normal(y.shape).astype(dtype)
    (y * cl.tensor(upstream)).sum().backward()
    expected_y, expected_gx = version.forward(x, case), version.backward(upstream, x, case)
    assert (y.dtype, y.shape) == (expected_y.dtype, expected_y.shape)
    assert (t.grad.dtype, t.grad.shape) == (expected_gx.dtype, expected_gx.shape)
    np.testing.assert_allclose(y.data, expected_y, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(t.grad, expected_gx, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(LOOP_VERSIONS))
@given(case=adaptive_cases())
def test_adaptive_global_and_pyramid_pools_equal_their_loops(name, dtype, case):
    assert_equals_loops(LOOP_VERSIONS[name], case, dtype)


class Loops(Function):
    """A Function whose forward and backward are the reference loops, for gradcheck."""

    def __init__(self, version, case):
        self.version, self.case = version, case

    def forward(self, x):
        self.save_for_backward(x)
        return self.version.forward(x, self.case)

    def backward(self, gy):
        (x,) = self.saved
        return self.version.backward(gy, x, self.case)


@pytest.mark.parametrize("name", list(LOOP_VERSIONS))
@given(case=adaptive_cases(max_size=5))
def test_adaptive_global_and_pyramid_loops_pass_gradcheck(name, case):
    """The loops' backward is the derivative of the loops' forward (central differences)."""
    x = distinct_values(case["shape"], case["seed"])
    cl.gradcheck(lambda a: Loops(LOOP_VERSIONS[name], case)(a), [leaf(x)])


def test_loops_catch_vectorised_bins_one_element_too_long(monkeypatch):
    """Every bin but the last ends one element late in the vectorised code: the comparison
    with the loops (whose bins are their own) fails for each op built on adaptive bins."""
    real = functional_pool.adaptive_bins
    monkeypatch.setattr(functional_pool, "adaptive_bins", lambda size, count: [
        (start, min(stop + 1, size)) for start, stop in real(size, count)])
    case = dict(shape=(2, 2, 7, 5), output_size=(3, 2), levels=(1, 2, 3), seed=0)
    for name, version in LOOP_VERSIONS.items():
        if name != "global_avg_pool2d":  # one bin, the whole plane: nothing to get wrong
            with pytest.raises(AssertionError):
                assert_equals_loops(version, case, np.float64)


# --- PyTorch parity ---------------------------------------------------------------------------

@given(case=pool_cases(max_kernel=4), count_include_pad=st.booleans())
def test_max_and_avg_pool2d_equal_torch(case, count_include_pad):
    x, rng = distinct_values(case["shape"], case["seed"]), np.random.default_rng(case["seed"])
    k, s, p, ceil_mode = window_args(case)
    assert_matches_torch(lambda a: F.max_pool2d(a, k, s, p, ceil_mode),
                         lambda a: TF.max_pool2d(a, k, s, p, ceil_mode=ceil_mode), x, rng, 1e-6)
    assert_matches_torch(lambda a: F.avg_pool2d(a, k, s, p, ceil_mode, count_include_pad),
                         lambda a: TF.avg_pool2d(a, k, s, p, ceil_mode=ceil_mode,
                                                 count_include_pad=count_include_pad),
                         x, rng, 1e-6)
    assert_matches_torch(lambda a: F.max_avg_pool2d(a, k, s, p, ceil_mode),
                         lambda a: (TF.max_pool2d(a, k, s, p, ceil_mode=ceil_mode)
                                    + TF.avg_pool2d(a, k, s, p, ceil_mode=ceil_mode)), x, rng, 1e-6)


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9),
                       st.integers(1, 9)),
       output_size=st.tuples(st.integers(1, 10) | st.none(), st.integers(1, 10)),
       seed=st.integers(0, 99))
def test_adaptive_pools_equal_torch(shape, output_size, seed):
    x, rng = distinct_values(shape, seed), np.random.default_rng(seed)
    assert_matches_torch(lambda a: F.adaptive_avg_pool2d(a, output_size),
                         lambda a: TF.adaptive_avg_pool2d(a, output_size), x, rng, 1e-6)
    assert_matches_torch(lambda a: F.adaptive_max_pool2d(a, output_size),
                         lambda a: TF.adaptive_max_pool2d(a, output_size), x, rng, 1e-6)


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

@both_implementations
def test_stochastic_pool2d_eval_is_the_expected_value(implementation):
    x = distinct_values((2, 3, 6, 7), seed=3, low=0.0)  # the value 0 appears once
    x[0, 0, :2, :2] = 0.0  # an all-zero window
    with IMPLEMENTATIONS[implementation]():
        y = F.stochastic_pool2d(cl.tensor(x), 2, training=False, ceil_mode=True).data
    expected = np.zeros((2, 3, 3, 4))
    for n, c, i, j in np.ndindex(expected.shape):
        a = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
        if a.sum() > 0:
            probabilities = a / a.sum()
            expected[n, c, i, j] = (probabilities * a).sum()
    assert y[0, 0, 0, 0] == 0.0
    np.testing.assert_allclose(y, expected, rtol=1e-12)


@both_implementations
def test_stochastic_pool2d_samples_follow_the_probabilities(implementation):
    """2000 windows holding (0, 1, 2, 5): picked 0, 1/8, 2/8, 5/8 of the time (chi-square)."""
    windows = 2000
    x = np.broadcast_to(np.array([[0.0, 1.0], [2.0, 5.0]]), (1, windows, 2, 2)).copy()
    with IMPLEMENTATIONS[implementation]():
        y = F.stochastic_pool2d(cl.tensor(x), 2, rng=np.random.default_rng(42)).data
    counts = np.array([(y == v).sum() for v in (0.0, 1.0, 2.0, 5.0)])
    expected = windows * np.array([1, 2, 5]) / 8
    chi_square = ((counts[1:] - expected) ** 2 / expected).sum()
    assert counts[0] == 0 and counts.sum() == windows
    assert chi_square < 20, f"counts {counts}, chi-square {chi_square:.1f} (2 degrees of freedom)"


@both_implementations
def test_stochastic_pool2d_gradient_goes_to_the_sampled_element(implementation):
    x = distinct_values((2, 3, 6, 6), seed=5, low=0.1)
    t = cl.tensor(x, requires_grad=True)
    with IMPLEMENTATIONS[implementation]():
        y = F.stochastic_pool2d(t, 3, rng=np.random.default_rng(0))
        upstream = np.random.default_rng(1).standard_normal(y.shape)
        (y * cl.tensor(upstream)).sum().backward()
    for n, c, i, j in np.ndindex(y.shape):
        window, grad = (a[n, c, 3 * i:3 * i + 3, 3 * j:3 * j + 3] for a in (x, t.grad))
        expected = np.where(window == y.data[n, c, i, j], upstream[n, c, i, j], 0.0)
        np.testing.assert_array_equal(grad, expected)


@both_implementations
def test_stochastic_pool2d_all_zero_window_gives_zero(implementation):
    t = cl.tensor(np.zeros((1, 2, 4, 4)), requires_grad=True)
    with IMPLEMENTATIONS[implementation]():
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


def test_gradcheck_catches_a_max_pooling_backward_with_a_wrong_index(monkeypatch):
    """Each window's gradient sent to the pixel after its maximum instead of the maximum."""
    real = backend.kernel("max_pool2d_backward", np.ones(1))

    def one_pixel_off(gy, argmax, input_size):
        return real(gy, (argmax + 1) % (input_size[0] * input_size[1]), input_size)

    monkeypatch.setitem(CPU_KERNELS, "max_pool2d_backward", one_pixel_off)
    x = leaf(distinct_values((2, 2, 6, 6), seed=3))
    with pytest.raises(cl.GradcheckError, match="input 0"):
        cl.gradcheck(lambda t: F.max_pool2d(t, 3, stride=2), [x])
