"""The gradient check itself: it passes correct gradients and catches wrong ones."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite.autograd import Function
from cnnlite.testing import arrays, broadcastable_pairs, shapes


class Cube(Function):
    """y = x^3 with a selectable (wrong) derivative, to see that gradcheck notices."""

    def __init__(self, derivative):
        self.derivative = derivative

    def forward(self, x):
        self.save_for_backward(x)
        return x ** 3

    def backward(self, gy):
        (x,) = self.saved
        return gy * self.derivative(x)


def test_a_correct_gradient_passes(rng):
    x = cl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert cl.gradcheck(lambda t: Cube(lambda v: 3 * v ** 2)(t), [x])


@pytest.mark.parametrize("wrong", [
    lambda v: 2 * v ** 2,                              # wrong factor
    lambda v: 3 * v ** 2 + (np.arange(v.size).reshape(v.shape) == 5),   # one element off
    lambda v: (3 * v ** 2)[::-1],                      # gradients sent to the wrong rows
], ids=["factor", "one-element", "permuted"])
def test_a_wrong_gradient_is_caught(wrong, rng):
    x = cl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    with pytest.raises(cl.GradcheckError, match=r"input 0, element \(\d+, \d+\): analytic"):
        cl.gradcheck(lambda t: Cube(wrong)(t), [x])


def test_the_report_names_the_worst_element(rng):
    x = cl.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    off = np.zeros((2, 3))
    off[1, 2] = 1.0
    with pytest.raises(cl.GradcheckError, match=r"element \(1, 2\).*1 of 6 elements off"):
        cl.gradcheck(lambda t: Cube(lambda v: 3 * v ** 2 + off)(t), [x])


def test_a_random_upstream_gradient_catches_errors_a_plain_sum_hides(rng):
    """A gradient that is right on average but wrong per element passes a check with an
    all-ones upstream gradient of a sum-type op; the random upstream gradient exposes it."""
    x = cl.tensor(rng.standard_normal(4), requires_grad=True)

    class SumWithWrongSpread(Function):
        def forward(self, v):
            return np.cumsum(v)

        def backward(self, gy):
            return np.full_like(gy, gy.sum() / gy.size) * np.arange(gy.size, 0, -1).mean()

    with pytest.raises(cl.GradcheckError):
        cl.gradcheck(lambda t: SumWithWrongSpread()(t), [x])


def test_returns_false_instead_of_raising_when_asked(rng):
    x = cl.tensor(rng.standard_normal(3), requires_grad=True)
    assert cl.gradcheck(lambda t: Cube(lambda v: v)(t), [x], raise_exception=False) is False


def test_needs_float64_inputs():
    with pytest.raises(ValueError, match="float64"):
        cl.gradcheck(lambda t: t * 2, [cl.tensor([1.0, 2.0], requires_grad=True)])


def test_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="requires_grad"):
        cl.gradcheck(lambda t: t * 2, [cl.tensor(np.ones(2))])


def test_checks_several_inputs_and_outputs(rng):
    a = cl.tensor(rng.standard_normal(3), requires_grad=True)
    b = cl.tensor(rng.standard_normal(3), requires_grad=True)
    assert cl.gradcheck(lambda x, y: (x * y, x - y), [a, b])


def test_is_importable_from_testing_too():
    from cnnlite import testing
    assert testing.gradcheck is cl.gradcheck


@given(pair=broadcastable_pairs())
def test_broadcastable_pairs_broadcast(pair):
    np.broadcast_shapes(*pair)


@given(data=st.data())
def test_arrays_strategy_respects_bounds(data):
    values = data.draw(arrays(data.draw(shapes()), low=-1.0, high=1.0, min_magnitude=0.25))
    assert values.dtype == np.float64
    assert np.all(np.abs(values) <= 1.0) and np.all(np.abs(values) >= 0.25)


def test_a_nan_in_the_gradient_fails_the_check(rng):
    """np.argmax picks a NaN, and NaN > tolerance is False: a NaN must still fail."""

    class NaNAtTheStart(Function):
        def forward(self, x):
            return 2 * x

        def backward(self, gy):
            g = 2 * gy
            g.flat[0] = np.nan
            return g

    x = cl.tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.raises(cl.GradcheckError, match=r"element \(0,\)"):
        cl.gradcheck(lambda t: NaNAtTheStart()(t), [x])


def test_a_non_contiguous_input_is_nudged_for_real(rng):
    """Central differences nudge x in place; on a transposed array that needs a copy."""
    x = cl.tensor(rng.standard_normal((4, 3)).T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert cl.gradcheck(lambda t: (t * t * t).sum(), [x])
    assert not x.data.flags.c_contiguous          # the caller's array is given back
