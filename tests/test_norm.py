"""Batch normalisation and local response normalisation: what is special about them. The
generic checks (values against the NumPy formulas, float64 gradients by central differences in
training and evaluation, with and without the affine map, on 2-d, 3-d and 4-d inputs; LRN
windows odd, even and wider than the channels, both alpha conventions; float32 and
non-contiguous gradients; PyTorch parity; on the loops, numba, the CUDA kernels through the host
harness and the GPU) live in the op table (``cnnlite/optable/table_norm.py``, run by
tests/test_optable.py).

Here: the running statistics (against PyTorch over several steps, the unbiased variance,
in-place updates, evaluation with and without them), a large mean, dtypes, the AlexNet
convention, the table's checks catching an LRN window off by one channel, and bad input.
"""
import functools
import inspect
import textwrap

import numba
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import functional as F
from cnnlite import optable
from cnnlite.cpu import norm as fast_norm
from cnnlite.optable import checks
from cnnlite.reference import norm as reference_norm
from helpers import cnnlite_grads, every_family, running_as


def standard_normal(seed, shape, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- batch norm: statistics -------------------------------------------------------------------

def test_batch_norm_statistics_survive_a_large_mean():
    """The fast kernel's one-pass variance must not cancel when |mean| >> std: with mean 1e7,
    sum(x^2) / M - mean^2 would lose all but a few digits of a variance of 1, even in float64."""
    x = 1e7 + standard_normal(5, (64, 2, 8))
    mean, var = fast_norm.batch_norm_statistics(x)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_allclose(var, x.var(axis=(0, 2)), rtol=1e-7)


# --- batch norm: running statistics, against PyTorch -----------------------------------------

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


@every_family
@pytest.mark.parametrize("running_kind", ["tensor", "array"])
@given(shape=bn_shapes(), momentum=st.floats(0.0, 1.0),
       eps=st.floats(-8.0, -0.5).map(lambda e: 10.0 ** e), seed=st.integers(0, 2**16))
def test_batch_norm_equals_torch_over_several_steps(family, running_kind, shape,
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

        with running_as(family):
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


# --- local response norm ----------------------------------------------------------------------

def test_alexnet_convention_is_torch_with_alpha_times_size():
    """AlexNet's k=2, size=5, alpha=1e-4, beta=0.75 with alpha times the sum of the squares
    (``alpha_over_size=False``) is PyTorch's LRN with alpha * size, and not the default."""
    x = standard_normal(5, (2, 7, 3, 3)) * 10
    ours = F.local_response_norm(cl.tensor(x), 5, alpha=1e-4, beta=0.75, k=2.0,
                                 alpha_over_size=False).data
    default = F.local_response_norm(cl.tensor(x), 5, alpha=1e-4, beta=0.75, k=2.0).data
    theirs = torch.nn.functional.local_response_norm(torch.tensor(x), 5, alpha=5e-4, beta=0.75,
                                                     k=2.0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert not np.allclose(ours, default, rtol=1e-6)


# --- local response norm: the table catches a window off by one channel ----------------------

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
def test_the_tables_torch_check_catches_an_lrn_window_shifted_by_one(monkeypatch, planted, shift,
                                                                    size):
    """The table's PyTorch check fails when a window is moved by one channel: in the loops'
    lrn_window (forward and backward: wrong values), or in a copy of a numba kernel (the
    forward window alone: wrong values; the backward window alone: a wrong gradient).
    alpha = 0.9 makes the window term as large as the direct one."""
    spec = optable.spec("local_response_norm")
    params = {"shape": (2, 6, 3, 3), "size": size, "alpha": 0.9, "beta": 0.75, "k": 1.0}
    if planted == "reference window":
        implementation = "loops"
        monkeypatch.setattr(reference_norm, "lrn_window", shifted_window(shift))
    else:
        implementation = "numba"
        window = FAST_WINDOWS[planted]
        faithful, shifted = (kernel_copy(planted), kernel_copy(planted, window,
                                                               f"{window} + ({shift})"))
        # The unchanged copy passes: the copying is faithful, so the failure below is the shift.
        monkeypatch.setattr(fast_norm, planted, faithful)
        assert optable.run_check(spec, "torch", implementation, params).passed
        monkeypatch.setattr(fast_norm, planted, shifted)
    result = optable.run_check(spec, "torch", implementation, params)
    expected = checks.WRONG_GRADIENT if planted == "_lrn_backward_into" else checks.WRONG_VALUES
    assert result.status == expected, str(result)


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
