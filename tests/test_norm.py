"""Batch normalisation and local response normalisation.

Specification: float64 gradients pass the central-difference check (fast kernels and the
reference loops), the numba kernels equal the loops, values and gradients equal PyTorch's
(running statistics included, over several steps), and bad input is refused with a message
that names the op and the shapes.
"""
import contextlib
import functools
import inspect
import textwrap

import numba
import numpy as np
import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend
from cnnlite import functional as F
from cnnlite.cpu import norm as fast_norm
from cnnlite.reference import norm as reference_norm
from helpers import cnnlite_grads

IMPLEMENTATIONS = {"fast": contextlib.nullcontext, "reference": backend.use_reference}


def standard_normal(seed, shape, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@st.composite
def bn_inputs(draw):
    """(x, weight, bias) for batch norm: (N, C) or (N, C, H, W), at least 2 values per channel,
    every channel spread out (a near-constant channel has a huge 1/std and a stiff gradient)."""
    C = draw(st.integers(1, 3))
    if draw(st.booleans()):
        shape = (draw(st.integers(2, 4)), C)
    else:
        shape = (draw(st.integers(1, 2)), C, draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    seed = draw(st.integers(0, 2**16))
    x = standard_normal(seed, shape) * 2 + 0.5
    assume(x.reshape(shape[0], C, -1).var(axis=(0, 2)).min() > 0.1)
    weight, bias = standard_normal(seed + 1, (2, C))
    return x, weight, bias


# --- batch norm: gradients --------------------------------------------------------------------

@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(inputs=bn_inputs())
def test_batch_norm_gradcheck(implementation, training, inputs):
    x, weight, bias = inputs
    C = x.shape[1]
    running_mean, running_var = np.linspace(-0.5, 0.5, C), np.linspace(0.5, 2.0, C)
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda x, w, b: F.batch_norm(x, running_mean, running_var, w, b,
                                                  training=training),
                     [cl.tensor(a, requires_grad=True) for a in (x, weight, bias)])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_batch_norm_gradcheck_without_affine_or_running_statistics(implementation):
    x = standard_normal(3, (2, 3, 2, 3))
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda x: F.batch_norm(x, None, None), [cl.tensor(x, requires_grad=True)])


# --- batch norm: fast kernels == reference loops ------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@given(inputs=bn_inputs())
def test_batch_norm_kernels_equal_the_loops(dtype, rtol, inputs):
    x, weight, bias = (a.astype(dtype) for a in inputs)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    gy = standard_normal(9, x3.shape, dtype)
    results = {}
    for name, kernels in (("fast", fast_norm.KERNELS), ("reference", reference_norm.KERNELS)):
        mean, var = kernels["batch_norm_statistics"](x3)
        inv_std = (1 / np.sqrt(var + 1e-5)).astype(dtype)
        y = kernels["batch_norm_forward"](x3, mean, inv_std, weight, bias)
        grad_bias, grad_weight = kernels["batch_norm_grad_statistics"](gy, x3, mean, inv_std)
        gx = kernels["batch_norm_backward"](gy, x3, mean, inv_std, weight, grad_weight,
                                            grad_bias)
        results[name] = (mean, var, y, grad_bias, grad_weight, gx)
    for fast, reference in zip(results["fast"], results["reference"]):
        assert fast.dtype == reference.dtype == dtype
        np.testing.assert_allclose(fast, reference, rtol=rtol, atol=rtol)


def test_batch_norm_statistics_survive_a_large_mean():
    """The fast kernel's one-pass variance must not cancel when |mean| >> std: with mean 1e7,
    sum(x^2) / M - mean^2 would lose all but a few digits of a variance of 1, even in float64."""
    x = 1e7 + standard_normal(5, (64, 2, 8))
    mean, var = fast_norm.batch_norm_statistics(x)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_allclose(var, x.var(axis=(0, 2)), rtol=1e-7)


# --- batch norm: against PyTorch ----------------------------------------------------------------

def torch_batch_norm_step(x, running, weight, bias, training, momentum, eps, upstream):
    """PyTorch's value and gradients from one forward pass (one running-statistics update)."""
    ts = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    y = torch.nn.functional.batch_norm(ts[0], *running, ts[1], ts[2], training=training,
                                       momentum=momentum, eps=eps)
    (y * torch.tensor(upstream)).sum().backward()
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


@st.composite
def bn_shapes(draw):
    """(N, C) or (N, C, H, W) with at least 2 values per channel (training needs them)."""
    C = draw(st.integers(1, 4))
    if draw(st.booleans()):
        return draw(st.integers(2, 6)), C
    N, H, W = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    assume(N * H * W >= 2)
    return N, C, H, W


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("running_kind", ["tensor", "array"])
@given(shape=bn_shapes(), momentum=st.floats(0.0, 1.0),
       eps=st.floats(-8.0, -0.5).map(lambda e: 10.0 ** e), seed=st.integers(0, 2**16))
def test_batch_norm_equals_torch_over_several_steps(implementation, running_kind, shape,
                                                    momentum, eps, seed):
    C = shape[1]
    ours = [np.zeros(C), np.ones(C)]
    if running_kind == "tensor":
        ours = [cl.tensor(a) for a in ours]
    theirs = [torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)]
    weight, bias = standard_normal(seed, (2, C))
    # Training steps move the running statistics (batches of different means and spreads);
    # the final evaluation step normalises with them.
    for step, training in enumerate([True, True, True, False]):
        x = standard_normal(seed + 10 + step, shape) * (1 + step) + step
        upstream = standard_normal(seed + 20 + step, shape)

        def step_of_ours(x, w, b):
            return F.batch_norm(x, *ours, w, b, training=training, momentum=momentum, eps=eps)

        with IMPLEMENTATIONS[implementation]():
            y, grads = cnnlite_grads(step_of_ours, [x, weight, bias], upstream)
        y_torch, grads_torch = torch_batch_norm_step(x, theirs, weight, bias, training,
                                                     momentum, eps, upstream)
        np.testing.assert_allclose(y.data, y_torch, rtol=1e-6, atol=1e-10)
        for mine, reference in zip(grads, grads_torch):
            np.testing.assert_allclose(mine, reference, rtol=1e-6, atol=1e-10)
        for mine, reference in zip(ours, theirs):
            np.testing.assert_allclose(np.asarray(getattr(mine, "data", mine)),
                                       reference.numpy(), rtol=1e-6, atol=1e-12)


def test_running_statistics_use_the_unbiased_variance():
    x = standard_normal(2, (5, 2, 3, 3))
    running_mean, running_var = np.full(2, 0.5), np.full(2, 2.0)
    F.batch_norm(cl.tensor(x), running_mean, running_var, training=True, momentum=0.25)
    M = 5 * 3 * 3
    batch_mean = x.mean(axis=(0, 2, 3))
    batch_var = x.var(axis=(0, 2, 3)) * M / (M - 1)
    np.testing.assert_allclose(running_mean, 0.75 * 0.5 + 0.25 * batch_mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.75 * 2.0 + 0.25 * batch_var, rtol=1e-12)


def test_running_statistics_are_updated_in_place_and_only_in_training():
    running_mean, running_var = cl.tensor(np.zeros(3)), cl.tensor(np.ones(3))
    arrays = running_mean.data, running_var.data
    x = cl.tensor(standard_normal(4, (4, 3)) + 2)
    F.batch_norm(x, running_mean, running_var, training=False)
    np.testing.assert_array_equal(running_mean.data, 0)
    version = running_mean._version
    F.batch_norm(x, running_mean, running_var, training=True)
    assert running_mean.data is arrays[0] and running_var.data is arrays[1]  # changed in place
    assert running_mean._version == version + 1
    assert running_mean.data.min() > 0.1


def test_eval_mode_normalises_with_the_running_statistics():
    x = standard_normal(6, (3, 2, 2, 2))
    running_mean, running_var = np.array([0.5, -1.0]), np.array([4.0, 0.25])
    weight, bias = np.array([2.0, 3.0]), np.array([0.1, -0.2])
    y = F.batch_norm(cl.tensor(x), running_mean, running_var, weight, bias, eps=1e-5)
    shape = (1, 2, 1, 1)
    expected = ((x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + 1e-5)
                * weight.reshape(shape) + bias.reshape(shape))
    np.testing.assert_allclose(y.data, expected, rtol=1e-12)


def test_without_running_statistics_batch_statistics_are_used_in_eval_too():
    x = standard_normal(7, (4, 3, 2, 2))
    expected = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True)
    y = F.batch_norm(cl.tensor(x), None, None, training=False)
    np.testing.assert_allclose(y.data, expected.numpy(), rtol=1e-6, atol=1e-12)


def test_batch_norm_keeps_float32():
    x = cl.tensor(standard_normal(8, (2, 3, 4, 4), np.float32), requires_grad=True)
    running = [np.zeros(3, np.float32), np.ones(3, np.float32)]
    y = F.batch_norm(x, *running, training=True)
    y.backward(np.ones(y.shape, np.float32))
    assert y.dtype == x.grad.dtype == running[1].dtype == np.float32


# --- local response norm ------------------------------------------------------------------------

@st.composite
def lrn_inputs(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 3)),
             draw(st.integers(1, 3)))
    return standard_normal(draw(st.integers(0, 2**16)), shape), draw(st.integers(1, 7))


# (alpha, beta, k). alpha up to 1 makes the window term as large as the direct one, so a window
# that is off by a channel, or a backward that forgets to mirror it, shows. beta = 0.75 is the
# kernels' shortcut (two square roots), any other beta the general power.
lrn_constants = st.tuples(st.floats(1e-4, 1.0), st.one_of(st.just(0.75), st.floats(0.05, 2.0)),
                          st.floats(0.5, 2.0))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(inputs=lrn_inputs(), constants=lrn_constants)
@example(inputs=(standard_normal(11, (2, 5, 2, 2)), 4), constants=(0.9, 0.75, 1.0))
@example(inputs=(standard_normal(11, (2, 5, 2, 2)), 3), constants=(1.2, 1.3, 0.5))
def test_lrn_gradcheck(implementation, inputs, constants):
    x, size = inputs
    alpha, beta, k = constants
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda x: F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k),
                     [cl.tensor(x, requires_grad=True)])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("beta", [0.75, 0.6])
@given(inputs=lrn_inputs())
def test_lrn_kernels_equal_the_loops(dtype, rtol, beta, inputs):
    x, size = inputs
    x3 = x.reshape(x.shape[0], x.shape[1], -1).astype(dtype)
    gy = standard_normal(3, x3.shape, dtype)
    args = (size, 0.9 / size, beta, 1.0)
    fast = fast_norm.lrn_forward(x3, *args)
    reference = reference_norm.lrn_forward(x3, *args)
    for a, b in zip(fast, reference):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    grads = [module.lrn_backward(gy, x3, *reference[1:], size, 0.9 / size, beta)
             for module in (fast_norm, reference_norm)]
    assert grads[0].dtype == dtype
    np.testing.assert_allclose(grads[0], grads[1], rtol=rtol, atol=rtol)


def lrn_parity_inputs(size, shape):
    """The input and upstream gradient on which LRN of ``size`` is compared with PyTorch."""
    return standard_normal(size, shape) * 1.5, standard_normal(size + 1, shape)


def assert_lrn_equals_torch(implementation, x, upstream, size, alpha, beta, k,
                            alpha_over_size=True):
    """Value and gradient (float64, rtol 1e-6) equal PyTorch's. PyTorch divides alpha by size,
    so without ``alpha_over_size`` it is given alpha * size."""
    def fn(x):
        return F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k,
                                     alpha_over_size=alpha_over_size)

    def torch_fn(x):
        return torch.nn.functional.local_response_norm(
            x, size, alpha=alpha if alpha_over_size else alpha * size, beta=beta, k=k)

    with IMPLEMENTATIONS[implementation]():
        y, (grad,) = cnnlite_grads(fn, [x], upstream)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = torch_fn(x_torch)
    (y_torch * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(y.data, y_torch.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad, x_torch.grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
@given(shape=st.sampled_from([(2, 6, 3, 3), (2, 5, 4)]), constants=lrn_constants)
@example(shape=(2, 6, 3, 3), constants=(0.9, 0.75, 1.0))
@example(shape=(2, 5, 4), constants=(0.9, 1.3, 0.5))
def test_lrn_equals_torch(implementation, size, shape, constants):
    x, upstream = lrn_parity_inputs(size, shape)
    assert_lrn_equals_torch(implementation, x, upstream, size, *constants)


# --- local response norm: the parity check catches a window off by one channel ---------------

def shifted_window(shift):
    """reference_norm.lrn_window moved by ``shift`` channels (clipped the same way)."""
    def window(c, size, channels):
        return range(max(c - size // 2 + shift, 0),
                     min(c + (size - 1) // 2 + shift, channels - 1) + 1)
    return window


@functools.cache
def kernel_copy(name, old="", new=""):
    """A numba-compiled copy of fast_norm's ``name`` with ``old`` replaced by ``new`` in its
    source (exactly once), compiled without the parallel and cache options (once per session:
    a compilation takes a good part of a second)."""
    source = inspect.getsource(getattr(fast_norm, name).__wrapped__.py_func)
    assert source.startswith("@_kernel\n")
    if old:
        assert source.count(old) == 1, f"{old!r} is no longer in {name}: update this test"
        source = source.replace(old, new)
    namespace = dict(vars(fast_norm))
    exec(textwrap.dedent(source.removeprefix("@_kernel\n")), namespace)
    return numba.njit(namespace[name])


# The fast kernels' windows: lrn_forward sums channels entering..entering - size + 1 with
# entering = c + ahead; lrn_backward gathers, for input j, the outputs of the mirrored window.
FAST_WINDOWS = {"_lrn_forward_into": "ahead = (size - 1) // 2",
                "_lrn_backward_into": "ahead = size // 2"}


@pytest.mark.parametrize("size", [3, 4, 5])
@pytest.mark.parametrize("shift", [-1, 1])
@pytest.mark.parametrize("planted", ["reference window", *FAST_WINDOWS])
def test_lrn_parity_check_fails_for_a_window_shifted_by_one(monkeypatch, planted, shift,
                                                            size):
    """test_lrn_equals_torch's comparison, on its inputs, fails when a window is moved by one
    channel: in the loops' lrn_window (forward and backward), or in a copy of a numba kernel
    (the forward window alone, caught by the values; the backward window alone, caught by the
    gradient). alpha = 0.9 makes the window term as large as the direct one."""
    shape = (2, 6, 3, 3)
    x, upstream = lrn_parity_inputs(size, shape)
    if planted == "reference window":
        implementation = "reference"
        monkeypatch.setattr(reference_norm, "lrn_window", shifted_window(shift))
    else:
        implementation = "fast"
        window = FAST_WINDOWS[planted]
        faithful, shifted = (kernel_copy(planted), kernel_copy(planted, window,
                                                               f"{window} + ({shift})"))
        # The unchanged copy passes: the copying is faithful, so the failure below is the shift.
        monkeypatch.setattr(fast_norm, planted, faithful)
        assert_lrn_equals_torch(implementation, x, upstream, size, 0.9, 0.75, 1.0)
        monkeypatch.setattr(fast_norm, planted, shifted)
    with pytest.raises(AssertionError):
        assert_lrn_equals_torch(implementation, x, upstream, size, 0.9, 0.75, 1.0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_alexnet_convention_is_torch_with_alpha_times_size(implementation):
    """AlexNet's k=2, size=5, alpha=1e-4, beta=0.75 with alpha times the sum of the squares:
    values and gradients equal PyTorch's with alpha * size, and differ from the default."""
    x = standard_normal(5, (2, 7, 3, 3)) * 10
    upstream = standard_normal(6, x.shape)
    assert_lrn_equals_torch(implementation, x, upstream, 5, 1e-4, 0.75, 2.0,
                            alpha_over_size=False)
    with IMPLEMENTATIONS[implementation]():
        ours = F.local_response_norm(cl.tensor(x), 5, alpha=1e-4, beta=0.75, k=2.0,
                                     alpha_over_size=False).data
        default = F.local_response_norm(cl.tensor(x), 5, alpha=1e-4, beta=0.75, k=2.0).data
    theirs = torch.nn.functional.local_response_norm(torch.tensor(x), 5, alpha=5e-4, beta=0.75,
                                                     k=2.0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert not np.allclose(ours, default, rtol=1e-6)


def test_lrn_keeps_float32():
    x = cl.tensor(standard_normal(6, (2, 8, 3, 3), np.float32), requires_grad=True)
    y = F.local_response_norm(x, 5)
    y.backward(np.ones(y.shape, np.float32))
    assert y.dtype == x.grad.dtype == np.float32


# --- bad input ----------------------------------------------------------------------------------

def test_batch_norm_rejects_a_vector():
    with pytest.raises(cl.OpError, match=r"batch_norm: expected x of shape \(N, C\).*got \(5,\)"):
        F.batch_norm(cl.tensor(np.ones(5)), None, None, training=True)


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_batch_norm_rejects_channel_vectors_of_the_wrong_length(name):
    arguments = dict(running_mean=np.zeros(4), running_var=np.ones(4), weight=np.ones(4),
                     bias=np.zeros(4))
    arguments[name] = np.ones(3)
    with pytest.raises(cl.OpError, match=rf"batch_norm: expected {name} of shape \(C,\) = "
                                         rf"\(4,\) for x \(2, 4, 5, 5\), got {name} \(3,\)"):
        F.batch_norm(cl.tensor(np.ones((2, 4, 5, 5))), **arguments)


def test_batch_norm_needs_both_running_statistics_or_neither():
    with pytest.raises(cl.OpError, match=r"batch_norm: give both.*\(2, 3\)"):
        F.batch_norm(cl.tensor(np.ones((2, 3))), np.zeros(3), None)


def test_batch_norm_training_needs_two_values_per_channel():
    with pytest.raises(cl.OpError, match=r"batch_norm: .*more than 1 value per channel.*"
                                         r"\(1, 3, 1, 1\)"):
        F.batch_norm(cl.tensor(np.ones((1, 3, 1, 1))), np.zeros(3), np.ones(3), training=True)


def test_lrn_rejects_inputs_without_positions():
    with pytest.raises(cl.OpError, match=r"local_response_norm: expected x .* got \(4, 5\)"):
        F.local_response_norm(cl.tensor(np.ones((4, 5))), 3)


@pytest.mark.parametrize("size, message", [(0, "must be >= 1, got 0"),
                                           (-2, "must be >= 1, got -2"),
                                           (2.5, "must be an int, got float 2.5"),
                                           (True, "must be an int, got bool True")])
def test_lrn_rejects_a_bad_size(size, message):
    with pytest.raises(cl.OpError, match=rf"local_response_norm: size {message}"):
        F.local_response_norm(cl.tensor(np.ones((1, 3, 2, 2))), size)
