"""Softmax, log-softmax and the losses: what the op table (``cnnlite.optable``, run by
tests/test_optable.py) does not say.

The table checks softmax, log_softmax, cross_entropy (label smoothing, every reduction),
nll_loss and mse_loss through every implementation: values against NumPy formulas, float64
gradients against central differences, PyTorch parity, and the readable loops of nll_loss and
mse_loss as Functions of their own. Here: softmax is a distribution, stability at huge logits,
the gradient's closed form, targets as tensors and lists, and bad targets reported with the
op's name and the shapes.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import optable
from cnnlite import functional as F
from cnnlite.functional import loss
from cnnlite.testing import arrays, shapes


@st.composite
def array_and_axis(draw, max_side=4, low=-3.0, high=3.0):
    x = draw(arrays(draw(shapes(min_dims=1, max_dims=3, max_side=max_side)), low=low, high=high))
    return x, draw(st.integers(-x.ndim, x.ndim - 1))


# --- softmax and log-softmax ---------------------------------------------------------------------

@given(inputs=array_and_axis())
def test_softmax_is_a_distribution_along_its_axis(inputs):
    x, axis = inputs
    y = F.softmax(cl.tensor(x), axis=axis).data
    assert np.all(y >= 0)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_at_logits_of_1000(dtype):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]], dtype=dtype)
    small = np.array([[0.0, 1.0, 2.0], [-2000.0, -1000.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = F.softmax(cl.tensor(x), axis=1).data
        log_y = F.log_softmax(cl.tensor(x), axis=1).data
    assert y.dtype == log_y.dtype == dtype
    # Shifting every logit of a row by the same amount changes nothing.
    np.testing.assert_allclose(y, torch.softmax(torch.tensor(small), 1).numpy(),
                               rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(log_y, torch.log_softmax(torch.tensor(small), 1).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax], ids=lambda op: op.__name__)
def test_softmax_rejects_an_axis_out_of_range(op):
    with pytest.raises(cl.OpError, match=rf"{op.__name__}: axis 2 is out of range .* 2 dim"):
        op(cl.tensor(np.ones((2, 3))), axis=2)


# --- cross-entropy and nll_loss ------------------------------------------------------------------

def test_cross_entropy_gradient_is_softmax_minus_one_hot_over_n(rng):
    logits = cl.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    target = np.array([0, 3, 4, 3])
    F.cross_entropy(logits, target).backward()
    probs = np.exp(logits.data) / np.exp(logits.data).sum(1, keepdims=True)
    np.testing.assert_allclose(logits.grad, (probs - np.eye(5)[target]) / 4, rtol=1e-12)


def test_cross_entropy_equals_nll_loss_of_log_softmax(rng):
    x, target = cl.tensor(rng.standard_normal((3, 4, 2))), rng.integers(0, 4, size=(3, 2))
    np.testing.assert_allclose(F.cross_entropy(x, target).data,
                               F.nll_loss(F.log_softmax(x, axis=1), target).data, rtol=1e-12)


def test_cross_entropy_takes_int_tensors_and_lists_as_targets(rng):
    x = cl.tensor(rng.standard_normal((3, 4)))
    expected = F.cross_entropy(x, np.array([1, 0, 3])).data
    assert F.cross_entropy(x, cl.tensor(np.array([1, 0, 3]))).data == expected
    assert F.cross_entropy(x, [1, 0, 3]).data == expected


def test_cross_entropy_is_stable_at_logits_of_1000():
    x = cl.tensor(np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 1000.0]]), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss_value = F.cross_entropy(x, np.array([0, 2]), label_smoothing=0.1)
        loss_value.backward()
    expected = TF.cross_entropy(torch.tensor(x.data), torch.tensor([0, 2]), label_smoothing=0.1)
    np.testing.assert_allclose(loss_value.data, expected.item(), rtol=1e-12)
    assert np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("op", [F.cross_entropy, F.nll_loss], ids=lambda op: op.__name__)
@pytest.mark.parametrize("target, message", [
    (np.array([0, 4, 1]), r"target holds class indices in \[0, 4\) for \w+ \(3, 4\), got "
                          r"values from 0 to 4 \(target \(3,\)\)"),
    (np.array([0, -1, 1]), r"class indices in \[0, 4\) .* got values from -1 to 1"),
    (np.array([0, 1]), r"expected target of shape \(3,\) .*\(3, 4\).* got target \(2,\)"),
    (np.array([[0], [1], [2]]), r"expected target of shape \(3,\) .* got target \(3, 1\)"),
    (np.array([0.0, 1.0, 2.0]), r"expected a target of integer class indices, got dtype "
                                r"float64 \(shape \(3,\)\)"),
])
def test_class_losses_reject_bad_targets(op, target, message):
    with pytest.raises(cl.OpError, match=rf"{op.__name__}: .*{message}"):
        op(cl.tensor(np.zeros((3, 4))), target)


@pytest.mark.parametrize("op", [F.cross_entropy, F.nll_loss], ids=lambda op: op.__name__)
def test_class_losses_reject_0d_scores(op):
    with pytest.raises(cl.OpError, match=rf"{op.__name__}: .*got a 0-d array"):
        op(cl.tensor(np.float64(1.0)), np.int64(0))


def test_cross_entropy_rejects_label_smoothing_outside_0_1():
    with pytest.raises(cl.OpError, match=r"cross_entropy: label_smoothing must be <= 1\.0"):
        F.cross_entropy(cl.tensor(np.zeros((2, 3))), [0, 1], label_smoothing=1.5)


@pytest.mark.parametrize("call", [
    lambda: F.cross_entropy(cl.tensor(np.zeros((2, 3))), [0, 1], reduction="avg"),
    lambda: F.nll_loss(cl.tensor(np.zeros((2, 3))), [0, 1], reduction="avg"),
    lambda: F.mse_loss(cl.tensor(np.zeros(2)), cl.tensor(np.zeros(2)), reduction="avg"),
], ids=["cross_entropy", "nll_loss", "mse_loss"])
def test_losses_reject_an_unknown_reduction(call):
    with pytest.raises(cl.OpError, match=r"\w+: reduction must be one of .*'mean'.* got 'avg'"):
        call()


# --- mean squared error --------------------------------------------------------------------------

def test_mse_loss_rejects_shapes_that_would_broadcast():
    with pytest.raises(cl.OpError, match=r"mse_loss: .*got input \(4, 1\) and target \(4,\)"):
        F.mse_loss(cl.tensor(np.zeros((4, 1))), cl.tensor(np.zeros(4)))


# --- a planted bug is caught --------------------------------------------------------------------

def test_an_mse_gradient_without_its_factor_2_is_caught(monkeypatch):
    assert optable.check_op("mse_loss", "numpy").passed
    correct_backward = loss.SquaredError.backward

    def backward_without_the_factor_2(self, gy):
        return tuple(g / 2 for g in correct_backward(self, gy))

    monkeypatch.setattr(loss.SquaredError, "backward", backward_without_the_factor_2)
    assert optable.check_op("mse_loss", "numpy").status == "wrong gradient"


def test_all_losses_are_exported():
    assert set(loss.__all__) == {"softmax", "log_softmax", "cross_entropy", "nll_loss",
                                 "mse_loss"}
    assert all(getattr(F, name) is getattr(loss, name) for name in loss.__all__)
