"""The basic ops: what the op table (``cnnlite.optable``, run by tests/test_optable.py) does
not say.

The table checks every arithmetic, reduction, shape and indexing op for values against NumPy,
float64 gradients against central differences and values and gradients against PyTorch, with
shapes, axes, permutations and indices drawn by hypothesis. Here: the semantics around them
(ties, repeated indices, unused pieces, masks given as tensors, comparisons).
"""
import numpy as np

import cnnlite as cl
from cnnlite import functional as F


def test_max_shares_the_gradient_among_ties():
    x = cl.tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5, 0.0])


def test_gradients_of_a_repeated_index_add_up():
    x = cl.tensor(np.zeros(3), requires_grad=True)
    x[np.array([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])


def test_a_boolean_mask_may_be_a_cnnlite_tensor(rng):
    x = cl.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    mask = rng.standard_normal((3, 4)) > 0
    x[cl.tensor(mask)].sum().backward()
    np.testing.assert_array_equal(x.grad, mask.astype(float))


def test_split_into_equal_sections(rng):
    x = rng.standard_normal((6, 2))
    parts = cl.split(cl.tensor(x), 3)
    assert [p.shape for p in parts] == [(2, 2)] * 3
    np.testing.assert_array_equal(parts[2].data, x[4:])


def test_unused_split_piece_gets_zero_gradient(rng):
    x = cl.tensor(rng.standard_normal((4,)), requires_grad=True)
    first, _ = cl.split(x, 2)
    first.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 0.0, 0.0])


def test_squeeze_takes_an_axis(rng):
    x = cl.tensor(rng.standard_normal((2, 1, 3, 1)))
    assert F.squeeze(x, 1).shape == (2, 3, 1)
    assert F.squeeze(x).shape == (2, 3)


def test_comparisons_return_boolean_tensors_without_gradients(rng):
    x = cl.tensor(rng.standard_normal((3,)), requires_grad=True)
    for result in (x > 0, x >= 0, x < 0, x <= 0, x == x, x != 0):
        assert result.dtype == np.bool_
        assert not result.requires_grad and result.creator is None
    np.testing.assert_array_equal((x > 0).data, x.data > 0)
