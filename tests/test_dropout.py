"""Inverted dropout: drops a fraction p of the elements while training and scales the rest by
1 / (1 - p); the identity in evaluation; its gradient is the same mask.

The generic checks (float64 gradients by central differences with a fixed mask, for drawn
shapes, p and seeds; one seeded generator giving one mask on the loops, numba, the CUDA kernels
through the host harness and the GPU) live in the op table (``cnnlite/optable/table_norm.py``,
run by tests/test_optable.py). Here: the statistics of the mask, its scale, the seeds, p = 0
and p = 1, evaluation, dtypes and bad p.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import functional as F
from cnnlite.testing import arrays, shapes


def ones(shape, dtype=np.float64):
    return cl.tensor(np.ones(shape, dtype), requires_grad=True)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_dropped_fraction_is_p(p):
    n = 200_000
    y = F.dropout(ones(n), p, rng=np.random.default_rng(0))
    dropped = float((y.data == 0).mean())
    # Binomial: the fraction's standard deviation is sqrt(p (1 - p) / n) <= 0.0012.
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)


@given(shape=shapes(min_dims=1, max_dims=4), p=st.floats(0.05, 0.95), data=st.data())
def test_kept_elements_are_scaled_by_one_over_one_minus_p(shape, p, data):
    x = data.draw(arrays(shape, min_magnitude=0.1))
    y = F.dropout(cl.tensor(x), p, rng=np.random.default_rng(1)).data
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
    assert y.shape == x.shape


@given(p=st.floats(0.0, 1.0))
def test_evaluation_is_the_identity(p):
    x = ones((3, 4))
    assert F.dropout(x, p, training=False) is x


def test_p_zero_keeps_everything_and_p_one_drops_everything():
    x = ones((4, 5))
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    y.backward(np.ones(y.shape))
    np.testing.assert_array_equal(y.data, 0)
    np.testing.assert_array_equal(x.grad, 0)


def test_the_gradient_goes_through_the_kept_elements_only():
    x = ones((50, 40))
    y = F.dropout(x, 0.4, rng=np.random.default_rng(4))
    upstream = np.random.default_rng(5).standard_normal(y.shape)
    y.backward(upstream)
    np.testing.assert_allclose(x.grad, upstream * (y.data != 0) / 0.6, rtol=1e-12)


def test_a_seed_fixes_the_mask_and_the_default_generator_varies():
    x = ones((30, 30))
    first, second = (F.dropout(x, 0.5, rng=np.random.default_rng(6)).data for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(F.dropout(x, 0.5).data, F.dropout(x, 0.5).data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x = ones((8, 8), dtype)
    y = F.dropout(x, 0.3)
    y.backward(np.ones(y.shape, dtype))
    assert y.dtype == x.grad.dtype == dtype


@pytest.mark.parametrize("p, message", [(-0.1, "must be >= 0.0, got -0.1"),
                                        (1.5, "must be <= 1.0, got 1.5"),
                                        (float("nan"), "must be finite, got nan"),
                                        ("0.5", "must be a real number, got str '0.5'")])
def test_p_outside_zero_one_is_refused(p, message):
    with pytest.raises(cl.OpError, match=rf"dropout: p {message}"):
        F.dropout(ones((2, 3)), p)
