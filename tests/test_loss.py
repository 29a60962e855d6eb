"""Softmax, log-softmax and the losses: float64 gradient checks, values and gradients equal to
PyTorch's (label smoothing and every reduction included), stability at huge logits, and bad
targets reported with the op's name and the shapes.

Softmax, log-softmax and cross-entropy compute through kernels of the registry; these tests
run the fast ones, and tests/test_kernel_routing.py checks the same ops inside
``backend.use_reference()`` too. nll_loss and mse_loss have no kernel; they equal their loops
in cnnlite.reference.softmax, in float64 and float32, for every reduction.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnlite as cl
from cnnlite import functional as F
from cnnlite.autograd import Function
from cnnlite.functional import loss
from cnnlite.reference import softmax as softmax_loops
from cnnlite.testing import arrays, shapes
from helpers import (assert_equal_to_loops, assert_matches_torch, cnnlite_grads, loops_function,
                     random_upstream, tensors_from)


@st.composite
def array_and_axis(draw, max_side=4, low=-3.0, high=3.0):
    x = draw(arrays(draw(shapes(min_dims=1, max_dims=3, max_side=max_side)), low=low, high=high))
    return x, draw(st.integers(-x.ndim, x.ndim - 1))


# --- softmax and log-softmax ---------------------------------------------------------------------

SOFTMAXES = {"softmax": (F.softmax, torch.softmax),
             "log_softmax": (F.log_softmax, torch.log_softmax)}


@pytest.mark.parametrize("name", SOFTMAXES)
@given(inputs=array_and_axis(max_side=3))
def test_softmax_gradcheck(name, inputs):
    op = SOFTMAXES[name][0]
    x, axis = inputs
    cl.gradcheck(lambda t: op(t, axis=axis), tensors_from([x]))


@pytest.mark.parametrize("name", SOFTMAXES)
@given(inputs=array_and_axis(low=-30.0, high=30.0))
def test_softmax_matches_torch(name, inputs):
    op, torch_op = SOFTMAXES[name]
    x, axis = inputs
    assert_matches_torch(lambda t: op(t, axis=axis), lambda t: torch_op(t, dim=axis), [x])


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

@st.composite
def logits_and_target(draw, max_side=3, low=-3.0, high=3.0):
    """logits (N, K) or (N, K, d1[, d2]) or (K,), and class indices of the matching shape."""
    n, k = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    extra = draw(shapes(min_dims=0, max_dims=2, max_side=max_side))
    shape = draw(st.sampled_from([(n, k) + extra, (k,)]))
    logits = draw(arrays(shape, low=low, high=high))
    target_shape = shape[:1] + shape[2:] if len(shape) >= 2 else ()
    target = draw(hnp.arrays(np.int64, target_shape, elements=st.integers(0, k - 1)))
    return logits, np.asarray(target)


REDUCTION = st.sampled_from(loss.REDUCTIONS)
SMOOTHING = st.sampled_from([0.0, 0.1, 0.3])


@given(inputs=logits_and_target(), reduction=REDUCTION, label_smoothing=SMOOTHING)
def test_cross_entropy_gradcheck(inputs, reduction, label_smoothing):
    logits, target = inputs
    cl.gradcheck(lambda t: F.cross_entropy(t, target, label_smoothing, reduction),
                 tensors_from([logits]))


@given(inputs=logits_and_target(max_side=4, low=-20.0, high=20.0), reduction=REDUCTION,
       label_smoothing=SMOOTHING)
def test_cross_entropy_matches_torch(inputs, reduction, label_smoothing):
    assert_matches_torch(
        lambda x, t: F.cross_entropy(x, t, label_smoothing=label_smoothing, reduction=reduction),
        lambda x, t: TF.cross_entropy(x, t, label_smoothing=label_smoothing,
                                      reduction=reduction),
        list(inputs))


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


@given(inputs=logits_and_target(), reduction=REDUCTION)
def test_nll_loss_gradcheck(inputs, reduction):
    log_probs, target = inputs
    cl.gradcheck(lambda t: F.nll_loss(t, target, reduction), tensors_from([log_probs]))


@given(inputs=logits_and_target(max_side=4), reduction=REDUCTION)
def test_nll_loss_matches_torch(inputs, reduction):
    assert_matches_torch(lambda x, t: F.nll_loss(x, t, reduction=reduction),
                         lambda x, t: TF.nll_loss(x, t, reduction=reduction), list(inputs))


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

@st.composite
def prediction_and_target(draw, max_side=3):
    shape = draw(shapes(max_dims=3, max_side=max_side))
    return draw(arrays(shape)), draw(arrays(shape))


@given(inputs=prediction_and_target(), reduction=REDUCTION)
def test_mse_loss_gradcheck_for_both_inputs(inputs, reduction):
    cl.gradcheck(lambda x, y: F.mse_loss(x, y, reduction), tensors_from(inputs))


@given(inputs=prediction_and_target(max_side=5), reduction=REDUCTION)
def test_mse_loss_matches_torch(inputs, reduction):
    assert_matches_torch(lambda x, y: F.mse_loss(x, y, reduction=reduction),
                         lambda x, y: TF.mse_loss(x, y, reduction=reduction), list(inputs))


def test_mse_loss_rejects_shapes_that_would_broadcast():
    with pytest.raises(cl.OpError, match=r"mse_loss: .*got input \(4, 1\) and target \(4,\)"):
        F.mse_loss(cl.tensor(np.zeros((4, 1))), cl.tensor(np.zeros(4)))


# --- nll_loss and mse_loss equal their loops -----------------------------------------------------
#
# Neither has a kernel: each runs one vectorised version, and the loops at the end of
# cnnlite.reference.softmax are its ground truth. For every reduction, in float64 and float32,
# the loss and its gradients (for a random upstream gradient) equal the loops'; the loops
# themselves pass the float64 central-difference check.

DTYPES = [np.float64, np.float32]


def assert_nll_loss_equals_loops(log_probs, target, reduction):
    expected = softmax_loops.nll_loss_forward(log_probs, target, reduction)
    upstream = random_upstream(expected.shape, log_probs.dtype)
    value, (glog_probs, _) = cnnlite_grads(lambda x, t: F.nll_loss(x, t, reduction=reduction),
                                           [log_probs, target], upstream)
    assert_equal_to_loops(value.data, expected)
    assert_equal_to_loops(glog_probs, softmax_loops.nll_loss_backward(log_probs, target,
                                                                      upstream, reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@given(inputs=logits_and_target(), reduction=REDUCTION)
def test_nll_loss_equals_its_loops(dtype, inputs, reduction):
    log_probs, target = inputs
    assert_nll_loss_equals_loops(log_probs.astype(dtype), target, reduction)


class NLLLossLoops(Function):
    """nll_loss made of its reference loops, for cl.gradcheck."""

    def __init__(self, target, reduction):
        self.target, self.reduction = target, reduction

    def forward(self, log_probs):
        self.save_for_backward(log_probs)
        return softmax_loops.nll_loss_forward(log_probs, self.target, self.reduction)

    def backward(self, gloss):
        (log_probs,) = self.saved
        return softmax_loops.nll_loss_backward(log_probs, self.target, gloss, self.reduction)


@given(inputs=logits_and_target(), reduction=REDUCTION)
def test_nll_loss_loops_gradcheck(inputs, reduction):
    log_probs, target = inputs
    cl.gradcheck(lambda t: NLLLossLoops(target, reduction)(t), tensors_from([log_probs]))


def assert_mse_loss_equals_loops(prediction, target, reduction):
    expected = softmax_loops.mse_loss_forward(prediction, target, reduction)
    upstream = random_upstream(expected.shape, prediction.dtype)
    value, grads = cnnlite_grads(lambda x, y: F.mse_loss(x, y, reduction=reduction),
                                 [prediction, target], upstream)
    assert_equal_to_loops(value.data, expected)
    loops_grads = softmax_loops.mse_loss_backward(prediction, target, upstream, reduction)
    for got, expected_grad in zip(grads, loops_grads):
        assert_equal_to_loops(got, expected_grad)


@pytest.mark.parametrize("dtype", DTYPES)
@given(inputs=prediction_and_target(), reduction=REDUCTION)
def test_mse_loss_equals_its_loops(dtype, inputs, reduction):
    prediction, target = inputs
    assert_mse_loss_equals_loops(prediction.astype(dtype), target.astype(dtype), reduction)


@given(inputs=prediction_and_target(), reduction=REDUCTION)
def test_mse_loss_loops_gradcheck_for_both_inputs(inputs, reduction):
    cl.gradcheck(loops_function(softmax_loops.mse_loss_forward,
                                softmax_loops.mse_loss_backward, reduction),
                 tensors_from(inputs))


def test_an_mse_gradient_without_its_factor_2_is_caught(monkeypatch, rng):
    prediction, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    assert_mse_loss_equals_loops(prediction, target, "mean")
    correct_backward = loss.SquaredError.backward

    def backward_without_the_factor_2(self, gy):
        return tuple(g / 2 for g in correct_backward(self, gy))

    monkeypatch.setattr(loss.SquaredError, "backward", backward_without_the_factor_2)
    with pytest.raises(AssertionError):
        assert_mse_loss_equals_loops(prediction, target, "mean")


def test_all_losses_are_exported():
    assert set(loss.__all__) == {"softmax", "log_softmax", "cross_entropy", "nll_loss",
                                 "mse_loss"}
    assert all(getattr(F, name) is getattr(loss, name) for name in loss.__all__)
