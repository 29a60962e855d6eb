"""Every differentiable op, checked from its entry in the op table (``cnnlite.optable``).

One description per op gives all of its cases: op x implementation (NumPy, the reference
loops, numba, the CUDA kernels through the host harness, the GPU when present, the direct
loops) x dtype (float64, float32) x layout (contiguous, non-contiguous). Each case checks, for
every fixed example of the op's parameters:

* the value against the readable reference (the spec's NumPy formula, else the loops, else
  PyTorch);
* the gradient: in float64 on contiguous inputs against central differences with a random
  upstream gradient; otherwise equal to the float64 contiguous gradient;
* in float64 on contiguous inputs, values and gradients equal PyTorch's.

The property tests draw the parameters (shapes, strides, paddings, groups, axes) with
hypothesis from each spec's strategy: float64 values and gradients for each op x implementation.
The ``thorough`` profile draws 300 per op and implementation.

The last tests make sure the checks can fail: a planted wrong gradient, a planted wrong value
and a stub are each reported with the right status, at the right element.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from cnnlite import optable
from cnnlite.autograd import Function
from cnnlite.optable import checks
from cnnlite.optable.spec import OpSpec

CASES = list(optable.cases())


def _skip_unavailable(implementation):
    ok, why = optable.available(implementation)
    if not ok:
        pytest.skip(why)


@pytest.mark.parametrize("name, implementation, dtype, layout, example", CASES,
                         ids=["-".join(map(str, case)) for case in CASES])
def test_op(name, implementation, dtype, layout, example):
    _skip_unavailable(implementation)
    spec = optable.spec(name)
    params = spec.examples[example]
    for check in optable.CHECKS:
        if check == "torch" and (spec.torch is None or dtype != "float64"
                                 or layout != "contiguous"):
            continue
        result = optable.run_check(spec, check, implementation, params, dtype, layout)
        assert result.passed, str(result)


PROPERTY_CASES = [(name, implementation) for name, spec in optable.OPS.items()
                  if spec.params is not None for implementation in spec.implementations]


@pytest.mark.parametrize("name, implementation", PROPERTY_CASES,
                         ids=[f"{n}-{i}" for n, i in PROPERTY_CASES])
@given(data=st.data())
def test_op_property(name, implementation, data):
    _skip_unavailable(implementation)
    spec = optable.spec(name)
    params = data.draw(spec.params(), label="params")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    for check in ("value", "gradient"):
        result = optable.run_check(spec, check, implementation, params, seed=seed)
        assert result.passed, str(result)


def test_the_table_covers_every_hot_kernel_family_and_implementation():
    implementations = {i for spec in optable.OPS.values() for i in spec.implementations}
    assert implementations == set(optable.IMPLEMENTATIONS)
    assert len(optable.OPS) >= 60
    for spec in optable.OPS.values():
        assert spec.examples and (spec.numpy or spec.torch or "loops" in spec.implementations
                                  or "numba" in spec.implementations), spec.name


# --- the checks can fail ---------------------------------------------------------------------

class _Square(Function):
    """y = x^2 with a backward that can be made wrong."""

    def __init__(self, bug=None):
        self.bug = bug

    def forward(self, x):
        self.save_for_backward(x)
        return x * x if self.bug != "value" else x * x + (x > 1.5)

    def backward(self, gy):
        (x,) = self.saved
        if self.bug == "stub":
            raise NotImplementedError("implement Square.backward")
        g = 2 * x * gy
        if self.bug == "gradient":
            g = g.copy()
            g.flat[-1] *= 1.01
        return g


def _square_spec(bug):
    return OpSpec("square", lambda x: _Square(bug)(x), lambda rng, shape: (rng.uniform(
        -2, 2, shape),), ({"shape": (2, 3)},), numpy=lambda x: x * x)


def test_a_correct_op_passes():
    assert optable.run_check(_square_spec(None), "gradient", "numpy").status == checks.PASSED


def test_a_planted_wrong_gradient_is_reported_at_its_element():
    result = optable.run_check(_square_spec("gradient"), "gradient", "numpy")
    assert result.status == checks.WRONG_GRADIENT
    assert result.index == (1, 2) and "input 0, element (1, 2)" in result.detail


def test_a_planted_wrong_value_is_reported():
    result = optable.run_check(_square_spec("value"), "value", "numpy")
    assert result.status == checks.WRONG_VALUES and result.index is not None


def test_a_stub_is_reported_as_not_implemented():
    result = optable.run_check(_square_spec("stub"), "gradient", "numpy")
    assert result.status == checks.NOT_IMPLEMENTED
    assert "implement Square.backward" in result.detail


def test_a_wrong_float32_gradient_is_caught_against_float64(monkeypatch):
    """The float32 check compares with the float64 gradient of the same implementation."""
    spec = _square_spec(None)
    result = optable.run_check(spec, "gradient", "numpy", dtype="float32",
                               layout="non-contiguous")
    assert result.passed
    original = _Square.backward
    monkeypatch.setattr(_Square, "backward", lambda self, gy: original(self, gy) * (
        1.01 if self.saved[0].dtype == np.float32 else 1.0))
    result = optable.run_check(spec, "gradient", "numpy", dtype="float32")
    assert result.status == checks.WRONG_GRADIENT
