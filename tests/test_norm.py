"""Batch normalisation and local response normalisation.

Specification: float64 gradients pass the central-difference check (fast kernels and the
reference loops), the numba kernels equal the loops, values and gradients equal PyTorch's
(running statistics included, over several steps), and bad input is refused with a message
that names the op and the shapes.
"""
import contextlib

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend
from cnnlite import functional as F
from cnnlite.cpu import norm as fast_norm
from cnnlite.reference import norm as reference_norm
from helpers import cnnlite_grads, torch_grads

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

def torch_batch_norm_step(x, running, weight, bias, training, upstream):
    """PyTorch's value and gradients from one forward pass (one running-statistics update)."""
    ts = [torch.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    y = torch.nn.functional.batch_norm(ts[0], *running, ts[1], ts[2], training=training)
    (y * torch.tensor(upstream)).sum().backward()
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 4, 5)])
@pytest.mark.parametrize("running_kind", ["tensor", "array"])
def test_batch_norm_equals_torch_over_several_steps(implementation, shape, running_kind):
    C = shape[1]
    ours = [np.zeros(C), np.ones(C)]
    if running_kind == "tensor":
        ours = [cl.tensor(a) for a in ours]
    theirs = [torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)]
    weight, bias = standard_normal(1, (2, C))
    # Training steps move the running statistics (batches of different means and spreads);
    # the final evaluation step normalises with them.
    for step, training in enumerate([True, True, True, False]):
        x = standard_normal(10 + step, shape) * (1 + step) + step
        upstream = standard_normal(20 + step, shape)

        def step_of_ours(x, w, b):
            return F.batch_norm(x, *ours, w, b, training=training, momentum=0.1, eps=1e-5)

        with IMPLEMENTATIONS[implementation]():
            y, grads = cnnlite_grads(step_of_ours, [x, weight, bias], upstream)
        y_torch, grads_torch = torch_batch_norm_step(x, theirs, weight, bias, training,
                                                     upstream)
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


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(inputs=lrn_inputs())
def test_lrn_gradcheck(implementation, inputs):
    # alpha near 1 makes the window term as large as the direct one, so a window that is off
    # by a channel, or a backward that forgets to mirror it, shows.
    x, size = inputs
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda x: F.local_response_norm(x, size, alpha=0.9, beta=0.75, k=1.0),
                     [cl.tensor(x, requires_grad=True)])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_lrn_gradcheck_general_beta(implementation):
    x = standard_normal(11, (2, 5, 2, 2))
    with IMPLEMENTATIONS[implementation]():
        cl.gradcheck(lambda x: F.local_response_norm(x, 4, alpha=1.2, beta=1.3, k=0.5),
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


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("shape", [(2, 6, 3, 3), (2, 5, 4)], ids=["NCHW", "NCL"])
def test_lrn_equals_torch(implementation, size, shape):
    x = standard_normal(size, shape) * 1.5
    upstream = standard_normal(size + 1, shape)
    fn = lambda x: F.local_response_norm(x, size, alpha=0.9, beta=0.75, k=1.0)  # noqa: E731
    torch_fn = lambda x: torch.nn.functional.local_response_norm(  # noqa: E731
        x, size, alpha=0.9, beta=0.75, k=1.0)
    with IMPLEMENTATIONS[implementation]():
        y, (grad,) = cnnlite_grads(fn, [x], upstream)
    np.testing.assert_allclose(y.data, torch_fn(torch.tensor(x)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(grad, torch_grads(torch_fn, [x], upstream)[0], rtol=1e-6,
                               atol=1e-12)


def test_lrn_parity_inputs_would_catch_a_window_shifted_by_one(monkeypatch):
    """For even sizes the window is not centred (size 4: c-2 .. c+1). The same window turned
    the other way (c-1 .. c+2) must change the values that the PyTorch test compares."""
    x = standard_normal(4, (2, 6, 3, 3)) * 1.5
    expected = torch.nn.functional.local_response_norm(torch.tensor(x), 4, alpha=0.9).numpy()

    def turned_window(c, size, channels):
        return range(max(c - (size - 1) // 2, 0), min(c + size // 2, channels - 1) + 1)

    monkeypatch.setattr(reference_norm, "lrn_window", turned_window)
    with backend.use_reference():
        shifted = F.local_response_norm(cl.tensor(x), 4, alpha=0.9).data
    assert not np.allclose(shifted, expected, rtol=1e-6)


def test_alexnet_convention_is_torch_with_alpha_times_size():
    x = standard_normal(5, (2, 7, 3, 3)) * 10
    ours = F.local_response_norm(cl.tensor(x), 5, alpha=1e-4, beta=0.75, k=2.0,
                                 alpha_over_size=False).data
    theirs = torch.nn.functional.local_response_norm(torch.tensor(x), 5, alpha=5e-4, beta=0.75,
                                                     k=2.0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    default = F.local_response_norm(cl.tensor(x), 5, alpha=1e-4, beta=0.75, k=2.0).data
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


@pytest.mark.parametrize("size", [0, -2, 2.5, True])
def test_lrn_rejects_a_bad_size(size):
    with pytest.raises(cl.OpError, match=r"local_response_norm: size must be an integer >= 1, "
                                         rf"got {size!r} for x \(1, 3, 2, 2\)"):
        F.local_response_norm(cl.tensor(np.ones((1, 3, 2, 2))), size)
