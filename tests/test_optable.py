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

The last tests make sure the checks can fail: a planted wrong gradient (also one as small as
0.01 %), a planted wrong value, a wrong dtype and a stub are each reported with the right
status, at the right element; a crash propagates from the suite's checks with its traceback.
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
    for check in optable.checks_for(spec, dtype, layout):
        result = optable.run_check(spec, check, implementation, params, dtype, layout,
                                   raise_errors=True)
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
        result = optable.run_check(spec, check, implementation, params, seed=seed,
                                   raise_errors=True)
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
        if self.bug == "crash":
            raise TypeError("Square.forward: planted crash")
        if self.bug == "float64 output":
            return (x * x).astype(np.float64)
        return x * x if self.bug != "value" else x * x + (x > 1.5)

    def backward(self, gy):
        (x,) = self.saved
        if self.bug == "stub":
            raise NotImplementedError("implement Square.backward")
        g = 2 * x * gy
        if self.bug == "gradient":
            g = g.copy()
            g.flat[-1] *= 1.01
        if self.bug == "small gradient":
            g = g * 1.0001
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


def test_a_gradient_off_by_a_hundredth_of_a_percent_is_caught():
    """Central differences in float64 are good to ~1e-9 here: a tolerance of 1e-3 would let
    a wrong constant factor through."""
    result = optable.run_check(_square_spec("small gradient"), "gradient", "numpy")
    assert result.status == checks.WRONG_GRADIENT


def test_a_float32_op_that_answers_in_float64_is_caught():
    result = optable.run_check(_square_spec("float64 output"), "value", "numpy", dtype="float32")
    assert result.status == checks.WRONG_VALUES
    assert "output dtype float64, expected float32" in result.detail


def test_the_gradient_is_checked_in_float64_whatever_the_inputs_maker_returns():
    """Central differences need float64 (a step of 1e-6 is lost in float32) and a contiguous
    buffer (they perturb it in place through a flat view)."""
    spec = OpSpec("square", lambda x: _Square(None)(x), lambda rng, shape: (
        rng.uniform(-2, 2, shape).astype(np.float32).T,), ({"shape": (3, 2)},))
    assert optable.run_check(spec, "gradient", "numpy").status == checks.PASSED


def test_a_crash_is_a_result_for_the_grader_and_raises_for_the_test_suite():
    result = optable.run_check(_square_spec("crash"), "value", "numpy")
    assert result.status == checks.ERROR and "planted crash" in result.detail
    with pytest.raises(TypeError, match="planted crash"):
        optable.run_check(_square_spec("crash"), "value", "numpy", raise_errors=True)


def test_an_implementation_the_spec_does_not_list_is_refused():
    """Otherwise the op would run through the default kernels and pass as "loops"."""
    with pytest.raises(ValueError, match="square has no implementation 'loops'"):
        optable.run_check(_square_spec(None), "gradient", "loops")


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


def test_pytorch_parity_applies_in_float64_on_contiguous_inputs_only():
    spec = optable.spec("elu")
    assert optable.checks_for(spec) == ("value", "gradient", "torch")
    assert optable.checks_for(spec, "float32") == ("value", "gradient")
    assert optable.checks_for(spec, "float64", "non-contiguous") == ("value", "gradient")
    assert optable.checks_for(spec, torch=False) == ("value", "gradient")
