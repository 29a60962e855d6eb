"""linear (y = x @ w^T + b) equals its loops in cnnlite.reference.linear.

The op has one vectorised version (a NumPy or cupy matrix product, the same on every device);
the loops, one sum written out term by term per output, are its ground truth. On drawn shapes,
with and without a bias, in float64 and float32, its value and the gradients of x, w and b (for
a random upstream gradient) equal the loops'; the loops themselves pass the float64
central-difference check.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import functional as F
from cnnlite.autograd import Function
from cnnlite.functional import conv
from cnnlite.reference import linear as linear_loops
from cnnlite.testing import arrays, shapes
from helpers import assert_equal_to_loops, cnnlite_grads, tensors_from

DTYPES = [np.float64, np.float32]
BIAS = ["with_bias", "without_bias"]


@st.composite
def linear_inputs(draw, bias):
    """x (..., in) with zero to three leading axes, w (out, in) and b (out,) or None."""
    leading = draw(shapes(min_dims=0, max_dims=3, max_side=3))
    inputs, out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(arrays(leading + (inputs,)))
    w = draw(arrays((out, inputs)))
    b = draw(arrays((out,))) if bias == "with_bias" else None
    return x, w, b


def assert_linear_equals_loops(x, w, b):
    expected = linear_loops.linear_forward(x, w, b)
    upstream = np.random.default_rng(7).standard_normal(expected.shape).astype(x.dtype)
    y, grads = cnnlite_grads(F.linear, [x, w] if b is None else [x, w, b], upstream)
    assert_equal_to_loops(y.data, expected)
    # The loops give the bias gradient in any case; a layer without a bias has none to compare.
    for got, expected_grad in zip(grads, linear_loops.linear_backward(x, w, upstream)):
        assert_equal_to_loops(got, expected_grad)


@pytest.mark.parametrize("bias", BIAS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_linear_equals_its_loops(bias, dtype, data):
    x, w, b = data.draw(linear_inputs(bias))
    assert_linear_equals_loops(x.astype(dtype), w.astype(dtype),
                               None if b is None else b.astype(dtype))


class LinearLoops(Function):
    """linear made of its reference loops, for cl.gradcheck."""

    def forward(self, x, w, b=None):
        self.save_for_backward(x, w)
        return linear_loops.linear_forward(x, w, b)

    def backward(self, gy):
        x, w = self.saved
        gx, gw, gb = linear_loops.linear_backward(x, w, gy)
        return (gx, gw) if len(self.needs_input_grad) == 2 else (gx, gw, gb)


@pytest.mark.parametrize("bias", BIAS)
@given(data=st.data())
def test_linear_loops_gradcheck(bias, data):
    x, w, b = data.draw(linear_inputs(bias))
    cl.gradcheck(lambda *inputs: LinearLoops()(*inputs),
                 tensors_from([x, w] if b is None else [x, w, b]))


def test_a_bias_gradient_averaged_instead_of_summed_is_caught(monkeypatch, rng):
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    assert_linear_equals_loops(x, w, b)
    correct_backward = conv.Linear.backward

    def backward_with_the_bias_gradient_averaged(self, gy):
        gx, gw, gb = correct_backward(self, gy)
        return gx, gw, gb / gy.shape[0]

    monkeypatch.setattr(conv.Linear, "backward", backward_with_the_bias_gradient_averaged)
    with pytest.raises(AssertionError):
        assert_linear_equals_loops(x, w, b)
