"""Activations: what the op table (``cnnlite.optable``, run by tests/test_optable.py) does
not say.

The table checks every activation (relu and its family, sigmoid, tanh, softplus, the mobile
ones, PReLU, maxout, APL) through every implementation: values against NumPy formulas, float64
gradients against central differences, PyTorch parity, float32 and non-contiguous inputs, and
the readable loops of PReLU, maxout and APL as Functions of their own. Here: stability at huge
inputs, dtypes, routing through the kernel registry, RReLU in training (random slopes), the
gradients at kinks, bad input, the layers.
"""
import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnlite as cl
from cnnlite import optable
from cnnlite import backend, cpu, reference
from cnnlite import functional as F
from cnnlite.functional import activation
from cnnlite.reference import activation as activation_loops
from cnnlite.testing import arrays, shapes
from helpers import (assert_equal_to_loops, assert_matches_torch, cnnlite_grads, loops_function,
                     random_upstream, tensors_from)

IMPLEMENTATIONS = ["fast", "reference"]


def implementation(name):
    """The context in which the ops run: the fast kernels, or the reference loops."""
    return backend.use_reference() if name == "reference" else contextlib.nullcontext()


ELEMENTWISE = {
    "relu": (F.relu, torch.relu, st.just({})),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu,
                   st.sampled_from([{}, {"negative_slope": 1 / 3}, {"negative_slope": 0.5}])),
    "rrelu_eval": (F.rrelu, TF.rrelu, st.sampled_from([{}, {"lower": 0.1, "upper": 0.3}])),
    "elu": (F.elu, TF.elu, st.sampled_from([{}, {"alpha": 0.5}, {"alpha": 2.0}])),
    "selu": (F.selu, torch.selu, st.just({})),
    "sigmoid": (F.sigmoid, torch.sigmoid, st.just({})),
    "tanh": (F.tanh, torch.tanh, st.just({})),
    "scaled_tanh": (F.scaled_tanh, lambda x: 1.7159 * torch.tanh(2 * x / 3), st.just({})),
    "softplus": (F.softplus, TF.softplus,
                 st.sampled_from([{}, {"beta": 2.0, "threshold": 1.0},
                                  {"beta": 0.5, "threshold": 0.5}])),
    "shifted_softplus": (F.shifted_softplus, lambda x: TF.softplus(x) - math.log(2.0),
                         st.just({})),
}


def away_from_softplus_switch(x, params):
    """Softplus switches to y = x at beta x = threshold, a kink for a central difference."""
    if "threshold" not in params:
        return True
    return bool(np.all(np.abs(params["beta"] * x - params["threshold"]) > 0.05))


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "shifted_softplus", "elu", "selu",
                                  "tanh", "scaled_tanh"])
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_at_large_inputs(name, impl, dtype):
    op, torch_op, _ = ELEMENTWISE[name]
    x = cl.tensor(np.array([-1000.0, -100.0, 100.0, 1000.0], dtype=dtype), requires_grad=True)
    # Underflow to 0 (e^-1000) is fine; an overflow or an inf - inf would not be.
    with implementation(impl), np.errstate(over="raise", invalid="raise", divide="raise"):
        y = op(x)
        y.sum().backward()
    expected = torch_op(torch.tensor(x.data, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(y.data, expected, rtol=1e-6, atol=1e-30)
    assert np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("op", [F.relu, F.leaky_relu, F.rrelu, F.elu, F.selu, F.sigmoid,
                                F.tanh, F.scaled_tanh, F.softplus, F.shifted_softplus],
                         ids=lambda op: op.__name__)
def test_float32_stays_float32(op, rng):
    x = cl.tensor(rng.standard_normal((2, 3)).astype(np.float32), requires_grad=True)
    y = op(x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


# --- the kernels: fast == reference --------------------------------------------------------------

KERNEL_HYPERPARAMETERS = {"leaky_relu": (0.2,), "elu": (1.7,)}
KERNEL_OPS = ["relu", "leaky_relu", "elu", "sigmoid", "tanh"]


def test_both_families_register_the_same_activation_kernels():
    names = {f"{op}_{d}" for op in KERNEL_OPS for d in ("forward", "backward")}
    assert names <= set(reference.KERNELS) and names <= set(cpu.KERNELS)
    assert set(reference.activation.KERNELS) == set(cpu.activation.KERNELS)


def test_ops_run_through_the_kernel_registry(monkeypatch, rng):
    calls = []
    loops = reference.KERNELS["elu_forward"]

    def recording_elu_forward(x, alpha):
        calls.append(alpha)
        return loops(x, alpha)

    monkeypatch.setitem(reference.KERNELS, "elu_forward", recording_elu_forward)
    x = cl.tensor(rng.standard_normal(4))
    F.elu(x, alpha=0.5)
    assert calls == []
    with backend.use_reference():
        F.elu(x, alpha=0.5)
        F.selu(x)
    assert calls == [0.5, activation.SELU_ALPHA]


# --- a wrong derivative does not go unnoticed ----------------------------------------------------

class ELUWithoutAlphaInItsDerivative(activation.ELU):
    """A classic slip: dy/dx = e^x for x <= 0, forgetting the factor alpha."""

    def backward(self, gy):
        (x,) = self.saved
        return np.where(x > 0, gy, gy * np.exp(x))


def test_gradcheck_catches_a_wrong_elu_derivative(rng):
    x = cl.tensor(rng.uniform(-2, -0.1, size=(2, 3)), requires_grad=True)
    cl.gradcheck(lambda t: activation.ELU(2.0)(t), [x])
    with pytest.raises(cl.GradcheckError, match="input 0"):
        cl.gradcheck(lambda t: ELUWithoutAlphaInItsDerivative(2.0)(t), [x])


# --- RReLU in training ---------------------------------------------------------------------------

def test_rrelu_training_slopes_lie_in_lower_upper(rng):
    x = rng.uniform(-3, 3, size=(4, 500))
    y = F.rrelu(cl.tensor(x), lower=0.1, upper=0.4, training=True,
                rng=np.random.default_rng(0)).data
    negative = x < 0
    slopes = y[negative] / x[negative]
    assert np.all((slopes >= 0.1) & (slopes <= 0.4))
    assert slopes.min() < 0.11 and slopes.max() > 0.39       # the whole range is used
    assert abs(slopes.mean() - 0.25) < 0.01                   # uniform: mean (lower+upper)/2
    np.testing.assert_array_equal(y[~negative], x[~negative])


def test_rrelu_training_is_reproducible_with_a_seeded_rng(rng):
    x = cl.tensor(rng.uniform(-3, -0.1, size=(3, 7)))
    first = F.rrelu(x, training=True, rng=np.random.default_rng(42)).data
    again = F.rrelu(x, training=True, rng=np.random.default_rng(42)).data
    other = F.rrelu(x, training=True, rng=np.random.default_rng(43)).data
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_rrelu_training_draws_new_slopes_without_an_rng(rng):
    x = cl.tensor(rng.uniform(-3, -0.1, size=100))
    assert not np.allclose(F.rrelu(x, training=True).data, F.rrelu(x, training=True).data)


@given(x=arrays(shapes(max_dims=3, max_side=4), min_magnitude=0.1))
def test_rrelu_training_gradcheck(x):
    # The same seed on every call: the central differences see the same slopes as backward.
    cl.gradcheck(lambda t: F.rrelu(t, training=True, rng=np.random.default_rng(3)),
                 tensors_from([x]))


def test_rrelu_rejects_lower_above_upper():
    with pytest.raises(cl.OpError, match=r"rrelu: .*lower=0\.5, upper=0\.2"):
        F.rrelu(cl.tensor([1.0]), lower=0.5, upper=0.2)


# --- PReLU ---------------------------------------------------------------------------------------

@st.composite
def prelu_inputs(draw, low=-2.0, high=2.0, min_magnitude=0.1):
    shape = draw(shapes(min_dims=2, max_dims=4, max_side=3))
    channels = draw(st.sampled_from([1, shape[1]]))
    x = draw(arrays(shape, low=low, high=high, min_magnitude=min_magnitude))
    weight = draw(arrays((channels,), low=-0.5, high=0.5))
    return x, weight


def test_prelu_with_a_shared_slope_takes_any_shape():
    x = cl.tensor(np.array([-2.0, 3.0]))
    np.testing.assert_allclose(F.prelu(x, cl.tensor(np.array([0.25]))).data, [-0.5, 3.0])


@pytest.mark.parametrize("weight_shape", [(4,), (3, 1), ()])
def test_prelu_rejects_a_weight_that_is_not_one_slope_per_channel(weight_shape):
    x = cl.tensor(np.ones((2, 3, 5)))
    with pytest.raises(cl.OpError, match=rf"prelu: .*C = x.shape\[1\] = 3, got weight "
                                         rf"{re_shape(weight_shape)} for x \(2, 3, 5\)"):
        F.prelu(x, cl.tensor(np.ones(weight_shape)))


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# --- maxout --------------------------------------------------------------------------------------

def test_maxout_groups_consecutive_channels():
    x = np.array([1.0, 5.0, 3.0, 2.0, -1.0, -4.0]).reshape(1, 6, 1, 1)
    np.testing.assert_array_equal(F.maxout(cl.tensor(x), 2).data.ravel(), [5.0, 3.0, -1.0])
    np.testing.assert_array_equal(F.maxout(cl.tensor(x), 3).data.ravel(), [5.0, 2.0])


@st.composite
def maxout_inputs(draw, max_side=3):
    pieces = draw(st.integers(1, 3))
    n, groups = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spatial = draw(shapes(min_dims=0, max_dims=2, max_side=max_side))
    shape = (n, groups * pieces) + spatial
    x = draw(hnp.arrays(np.float64, shape, unique=True,
                        elements=st.floats(-2, 2, allow_nan=False, width=64)))
    # A tie inside a group is a kink: keep the members of every group 1e-3 apart.
    grouped = np.sort(x.reshape(n, groups, pieces, -1), axis=2)
    assume(np.diff(grouped, axis=2).min(initial=1.0) > 1e-3)
    return x, pieces


@pytest.mark.parametrize("shape, pieces, message", [
    ((2, 5, 3, 3), 2, r"maxout: .*C divisible by pieces=2, got x \(2, 5, 3, 3\)"),
    ((6,), 2, r"maxout: expected x of shape \(N, C, \.\.\.\).*got x \(6,\)"),
    ((2, 4), 0, "maxout: pieces must be >= 1, got 0"),
    ((2, 4), 1.5, "maxout: pieces must be an int, got float 1.5"),
])
def test_maxout_rejects_bad_input(shape, pieces, message):
    with pytest.raises(cl.OpError, match=message):
        F.maxout(cl.tensor(np.ones(shape)), pieces)


# --- APL -----------------------------------------------------------------------------------------

@st.composite
def apl_inputs(draw, per_channel, step=0.2):
    """Hinges on multiples of ``step`` (0, the kink of max(0, x), among them), inputs on the odd
    multiples of step / 2 (+- step / 4): every input at least step / 4 away from every kink."""
    shape = draw(shapes(min_dims=2 if per_channel else 0, max_dims=4, max_side=3))
    hinges = draw(st.integers(1, 3))
    param_shape = (hinges, shape[1]) if per_channel else (hinges,)
    steps = draw(hnp.arrays(np.int64, shape, elements=st.integers(-10, 9)))
    x = np.asarray(step * steps + step / 2 + draw(arrays(shape, low=-step / 4, high=step / 4)))
    a = draw(arrays(param_shape, low=-1.0, high=1.0))
    b = step * draw(hnp.arrays(np.int64, param_shape, elements=st.integers(-10, 10)))
    return x, a, b


def torch_apl(x, a, b):
    view = (a.shape[0],) + (1,) * x.ndim
    if a.ndim == 2:
        view = (a.shape[0], 1, a.shape[1]) + (1,) * (x.ndim - 2)
    return torch.relu(x) + (a.reshape(view) * torch.relu(b.reshape(view) - x)).sum(dim=0)


def test_apl_with_zero_slopes_is_relu(rng):
    x = rng.standard_normal((2, 3, 4))
    y = F.apl(cl.tensor(x), cl.tensor(np.zeros((2, 3))), cl.tensor(np.ones((2, 3))))
    np.testing.assert_array_equal(y.data, np.maximum(x, 0))


@pytest.mark.parametrize("a_shape, b_shape, x_shape", [
    ((2, 3), (2, 4), (1, 4, 5)),
    ((2, 3), (2, 3), (1, 4, 5)),
    ((2, 3), (2, 3), (5,)),
    ((2, 3, 1), (2, 3, 1), (1, 3, 5)),
])
def test_apl_rejects_hinges_that_do_not_fit_x(a_shape, b_shape, x_shape):
    message = (rf"apl: .*got a {re_shape(a_shape)}, b {re_shape(b_shape)} "
               rf"for x {re_shape(x_shape)}")
    with pytest.raises(cl.OpError, match=message):
        F.apl(cl.tensor(np.ones(x_shape)), cl.tensor(np.ones(a_shape)),
              cl.tensor(np.ones(b_shape)))


# --- RReLU in training equals its loops; a planted wrong gradient is caught ----------------------

DTYPES = [np.float64, np.float32]


def test_a_wrong_sign_in_the_prelu_weight_gradient_is_caught(monkeypatch):
    """The table's gradient check of prelu fails at the weight (input 1) when its gradient
    has the wrong sign."""
    assert optable.check_op("prelu", "numpy").passed
    correct_backward = activation.PReLU.backward

    def backward_with_the_weight_gradient_negated(self, gy):
        gx, gweight = correct_backward(self, gy)
        return gx, -gweight

    monkeypatch.setattr(activation.PReLU, "backward", backward_with_the_weight_gradient_negated)
    result = optable.check_op("prelu", "numpy")
    assert result.status == "wrong gradient" and result.detail.startswith("input 1")


def assert_rrelu_training_equals_loops(x):
    upstream = random_upstream(x.shape, x.dtype)
    y, (gx,) = cnnlite_grads(lambda t: F.rrelu(t, training=True, rng=np.random.default_rng(5)),
                             [x], upstream)
    slopes = y.creator.slopes                   # the slopes this call drew, one per element
    assert_equal_to_loops(y.data, activation_loops.rrelu_training_forward(x, slopes))
    assert_equal_to_loops(gx, activation_loops.rrelu_training_backward(x, upstream, slopes))


@pytest.mark.parametrize("dtype", DTYPES)
@given(x=arrays(shapes(max_dims=4, max_side=3), min_magnitude=0.1))
def test_rrelu_training_equals_its_loops(dtype, x):
    assert_rrelu_training_equals_loops(x.astype(dtype))


@given(x=arrays(shapes(max_dims=3, max_side=3), min_magnitude=0.1))
def test_rrelu_training_loops_gradcheck(x):
    slopes = np.random.default_rng(5).uniform(1 / 8, 1 / 3, size=x.shape)
    cl.gradcheck(loops_function(activation_loops.rrelu_training_forward,
                                activation_loops.rrelu_training_backward, slopes),
                 tensors_from([x]))


# --- the module ----------------------------------------------------------------------------------

def test_all_activations_are_exported():
    assert set(activation.__all__) == {
        "relu", "leaky_relu", "rrelu", "prelu", "elu", "selu", "sigmoid", "tanh",
        "scaled_tanh", "softplus", "shifted_softplus", "maxout", "apl"}
    assert all(getattr(F, name) is getattr(activation, name) for name in activation.__all__)


def test_softplus_rejects_a_non_positive_beta():
    with pytest.raises(cl.OpError, match=r"softplus: beta must be > 0\.0, got 0"):
        F.softplus(cl.tensor([1.0]), beta=0)


# The mobile networks' activations: piecewise linear with kinks away from zero, so they are
# checked over [-8, 8] (every piece) with the inputs kept away from each kink.
MOBILE = {
    "relu6": (F.relu6, TF.relu6, (0.0, 6.0)),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid, (-3.0, 3.0)),
    "hardswish": (F.hardswish, TF.hardswish, (-3.0, 3.0)),
    "silu": (F.silu, TF.silu, ()),
}


def mobile_input(data, kinks):
    x = data.draw(arrays(data.draw(shapes(max_dims=4, max_side=4)), low=-8.0, high=8.0))
    assume(all(np.all(np.abs(x - kink) > 0.05) for kink in kinks))
    return x


@pytest.mark.parametrize("name", ["relu6", "hardsigmoid", "hardswish"])
def test_mobile_activation_gradient_at_kinks_is_torchs(name):
    """At the kinks the derivative is one-sided; the side chosen is PyTorch's."""
    op, torch_op, kinks = MOBILE[name]
    x = np.array(kinks + tuple(k + d for k in kinks for d in (-1e-3, 1e-3)))
    assert_matches_torch(op, torch_op, [x])


@pytest.mark.parametrize("layer, name", [(cl.nn.ReLU6, "relu6"), (cl.nn.Hardsigmoid,
                                         "hardsigmoid"), (cl.nn.Hardswish, "hardswish"),
                                         (cl.nn.SiLU, "silu")])
def test_mobile_activation_layers_call_their_op(layer, name):
    x = np.linspace(-7, 7, 15)
    np.testing.assert_array_equal(layer()(cl.tensor(x)).data, MOBILE[name][0](cl.tensor(x)).data)
