"""The basic ops: values equal NumPy's, gradients pass the float64 check and equal PyTorch's.

Shapes (broadcasting included) and values are drawn by hypothesis; values stay away from the
points where an op has a kink or a singularity, so that a failure means a bug.
"""
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnlite as cl
from cnnlite import functional as F
from cnnlite.testing import arrays, broadcastable_pairs, shapes
from helpers import check_op


def draw_pair(data, low=-2.0, high=2.0, b_low=None, b_high=None, min_magnitude=0.0):
    shape_a, shape_b = data.draw(broadcastable_pairs(max_dims=3, max_side=4))
    a = data.draw(arrays(shape_a, low=low, high=high))
    b = data.draw(arrays(shape_b, low=b_low if b_low is not None else low,
                         high=b_high if b_high is not None else high,
                         min_magnitude=min_magnitude))
    return a, b


# --- arithmetic with broadcasting ------------------------------------------------------------

@pytest.mark.parametrize("cl_fn, np_fn, torch_fn", [
    (lambda a, b: a + b, np.add, torch.add),
    (lambda a, b: a - b, np.subtract, torch.sub),
    (lambda a, b: a * b, np.multiply, torch.mul),
], ids=["add", "sub", "mul"])
@given(data=st.data())
def test_add_sub_mul(cl_fn, np_fn, torch_fn, data):
    check_op(cl_fn, draw_pair(data), np_fn, torch_fn)


@given(data=st.data())
def test_div(data):
    check_op(lambda a, b: a / b, draw_pair(data, min_magnitude=0.5), np.divide, torch.div)


@given(data=st.data())
def test_pow_of_two_tensors(data):
    check_op(lambda a, b: a ** b, draw_pair(data, low=0.5, high=2.0), np.power, torch.pow)


@given(data=st.data(), exponent=st.sampled_from([2, 3, 0.5, -1.5]))
def test_pow_by_a_number(data, exponent):
    x = data.draw(arrays(data.draw(shapes(max_dims=3)), low=0.5, high=2.0))
    check_op(lambda a: a ** exponent, [x], lambda a: a ** exponent,
             lambda a: a ** exponent)


@given(data=st.data())
def test_numbers_on_the_left(data):
    x = data.draw(arrays(data.draw(shapes(max_dims=3)), min_magnitude=0.5))
    check_op(lambda a: 2.0 - a / 3.0 + 1.5 * a - 4.0 / a, [x],
             lambda a: 2.0 - a / 3.0 + 1.5 * a - 4.0 / a,
             lambda a: 2.0 - a / 3.0 + 1.5 * a - 4.0 / a)


@given(data=st.data())
def test_neg(data):
    x = data.draw(arrays(data.draw(shapes())))
    check_op(lambda a: -a, [x], np.negative, torch.neg)


@given(data=st.data())
def test_maximum(data):
    a, b = draw_pair(data)
    assume(np.abs(a - b).min(initial=1.0) > 1e-3)  # a tie is a kink
    check_op(cl.maximum, [a, b], np.maximum, torch.maximum)


# --- matmul ----------------------------------------------------------------------------------

@given(data=st.data())
def test_matmul_batched_and_broadcast(data):
    n, k, m = data.draw(st.tuples(*[st.integers(1, 4)] * 3))
    batch_a, batch_b = data.draw(broadcastable_pairs(max_dims=2, max_side=3))
    a = data.draw(arrays(batch_a + (n, k)))
    b = data.draw(arrays(batch_b + (k, m)))
    check_op(lambda x, y: x @ y, [a, b], np.matmul, torch.matmul)


@pytest.mark.parametrize("vector", ["both", "left", "right"])
@given(data=st.data())
def test_matmul_with_vectors(vector, data):
    """A 1-D operand is a row (on the left) or a column (on the right) that is then dropped."""
    k = data.draw(st.integers(1, 4))
    matrix = data.draw(shapes(max_dims=2, max_side=3)) + tuple(
        data.draw(st.tuples(st.integers(1, 4))))                   # (*batch, n) or (*batch, m)
    shape_a = (k,) if vector in ("both", "left") else matrix + (k,)
    shape_b = (k,) if vector in ("both", "right") else matrix[:-1] + (k, matrix[-1])
    a, b = data.draw(arrays(shape_a)), data.draw(arrays(shape_b))
    check_op(lambda x, y: x @ y, [a, b], np.matmul, torch.matmul)


# --- element-wise functions ------------------------------------------------------------------

@pytest.mark.parametrize("cl_fn, np_fn, torch_fn, low, high, min_magnitude", [
    (cl.exp, np.exp, torch.exp, -2.0, 2.0, 0.0),
    (cl.log, np.log, torch.log, 0.2, 3.0, 0.0),
    (cl.sqrt, np.sqrt, torch.sqrt, 0.2, 3.0, 0.0),
    (cl.abs, np.abs, torch.abs, -2.0, 2.0, 0.1),
], ids=["exp", "log", "sqrt", "abs"])
@given(data=st.data())
def test_unary(cl_fn, np_fn, torch_fn, low, high, min_magnitude, data):
    x = data.draw(arrays(data.draw(shapes()), low=low, high=high, min_magnitude=min_magnitude))
    check_op(cl_fn, [x], np_fn, torch_fn)


@given(data=st.data())
def test_clip(data):
    x = data.draw(arrays(data.draw(shapes())))
    assume(np.abs(np.abs(x) - 0.5).min(initial=1.0) > 1e-3)  # the bounds are kinks
    check_op(lambda a: cl.clip(a, -0.5, 0.5), [x], lambda a: np.clip(a, -0.5, 0.5),
             lambda a: torch.clamp(a, -0.5, 0.5))


@given(data=st.data())
def test_where(data):
    (shape_c, shape_a), = [data.draw(broadcastable_pairs(max_dims=3, max_side=3))]
    a = data.draw(arrays(shape_a))
    b = data.draw(arrays(data.draw(st.sampled_from([(), shape_a]))))
    condition = data.draw(arrays(shape_c)) > 0
    check_op(lambda x, y: cl.where(condition, x, y), [a, b],
             lambda x, y: np.where(condition, x, y),
             lambda x, y: torch.where(torch.tensor(condition), x, y))


# --- reductions ------------------------------------------------------------------------------

def draw_axis(data, ndim):
    if ndim == 0:
        return None
    return data.draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                               st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                        unique=True).map(tuple)))


def torch_dims(axis):
    return axis if axis is not None else None


@pytest.mark.parametrize("name", ["sum", "mean"])
@given(data=st.data(), keepdims=st.booleans())
def test_sum_mean(name, data, keepdims):
    x = data.draw(arrays(data.draw(shapes())))
    axis = draw_axis(data, x.ndim)
    tfn = {"sum": torch.sum, "mean": torch.mean}[name]
    dims = tuple(range(x.ndim)) if axis is None else axis
    check_op(lambda a: getattr(a, name)(axis=axis, keepdims=keepdims), [x],
             lambda a: getattr(np, name)(a, axis=axis, keepdims=keepdims),
             lambda a: tfn(a, dim=dims, keepdim=keepdims) if x.ndim else tfn(a))


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), keepdims=st.booleans())
def test_max_min_without_ties(name, data, keepdims):
    shape = data.draw(shapes(min_dims=1))
    # Distinct values 0.1 apart: no ties, so the gradient goes to exactly one element.
    x = np.random.default_rng(data.draw(st.integers(0, 99))).permutation(
        int(np.prod(shape))).reshape(shape) * 0.1
    axis = draw_axis(data, x.ndim)
    dims = tuple(range(x.ndim)) if axis is None else axis
    tfn = {"max": torch.amax, "min": torch.amin}[name]
    check_op(lambda a: getattr(a, name)(axis=axis, keepdims=keepdims), [x.astype(float)],
             lambda a: getattr(np, name)(a, axis=axis, keepdims=keepdims),
             lambda a: tfn(a, dim=dims, keepdim=keepdims))


def test_max_shares_the_gradient_among_ties():
    x = cl.tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5, 0.0])


@given(data=st.data(), keepdims=st.booleans(), ddof=st.sampled_from([0, 1]))
def test_var(data, keepdims, ddof):
    x = data.draw(arrays(data.draw(shapes(min_dims=1, min_side=2))))
    axis = draw_axis(data, x.ndim)
    dims = tuple(range(x.ndim)) if axis is None else axis
    check_op(lambda a: a.var(axis=axis, keepdims=keepdims, ddof=ddof), [x],
             lambda a: np.var(a, axis=axis, keepdims=keepdims, ddof=ddof),
             lambda a: torch.var(a, dim=dims, keepdim=keepdims, correction=ddof))


# --- shape ops -------------------------------------------------------------------------------

@given(data=st.data())
def test_reshape_and_flatten(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1))))
    check_op(lambda a: a.reshape(-1, 1), [x], lambda a: a.reshape(-1, 1),
             lambda a: a.reshape(-1, 1))
    check_op(lambda a: a.flatten(), [x], lambda a: a.flatten(), lambda a: a.flatten())


@given(data=st.data())
def test_transpose(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1))))
    axes = tuple(data.draw(st.permutations(range(x.ndim))))
    check_op(lambda a: a.transpose(axes), [x], lambda a: a.transpose(axes),
             lambda a: a.permute(axes))
    check_op(lambda a: a.T, [x], lambda a: a.T, lambda a: a.permute(*reversed(range(x.ndim))))


@given(data=st.data())
def test_broadcast_to_and_expand(data):
    target, small = data.draw(broadcastable_pairs(max_dims=3, max_side=4))
    target = np.broadcast_shapes(target, small)
    x = data.draw(arrays(small))
    check_op(lambda a: a.broadcast_to(target), [x], lambda a: np.broadcast_to(a, target),
             lambda a: a.expand(target))
    check_op(lambda a: F.expand(a, target), [x], lambda a: np.broadcast_to(a, target),
             lambda a: a.expand(target))


def positive_slices(size):
    """Slices of an axis of ``size``, empty ones included; steps >= 1 (PyTorch has no
    negative steps)."""
    ends = st.none() | st.integers(-size - 1, size + 1)
    return st.builds(slice, ends, ends, st.none() | st.integers(1, 3))


def draw_basic_index(data, shape):
    """Integers and slices for some leading axes, or after an Ellipsis for some trailing ones."""
    count = data.draw(st.integers(0, len(shape)))
    from_the_end = data.draw(st.booleans())
    axes = shape[len(shape) - count:] if from_the_end else shape[:count]
    index = tuple(data.draw(st.integers(-size, size - 1) | positive_slices(size))
                  for size in axes)
    return (Ellipsis,) + index if from_the_end else index


def draw_integer_array_index(data, shape):
    """Slices for the first axes, then integer arrays (which broadcast together, may repeat an
    index and may be negative) for one or more adjacent axes, then perhaps one more slice."""
    start = data.draw(st.integers(0, len(shape) - 1))
    count = data.draw(st.integers(1, len(shape) - start))
    leading = tuple(data.draw(positive_slices(size)) for size in shape[:start])
    result_shape = shapes(min_dims=1, max_dims=2, max_side=4)
    index_arrays = data.draw(hnp.integer_array_indices(shape[start:start + count],
                                                       result_shape=result_shape))
    rest = shape[start + count:]
    trailing = (data.draw(positive_slices(rest[0])),) if rest and data.draw(st.booleans()) else ()
    return leading + tuple(index_arrays) + trailing


def torch_index(index):
    return tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in index)


@pytest.mark.parametrize("draw_index", [draw_basic_index, draw_integer_array_index],
                         ids=["ints-slices-ellipsis", "integer-arrays"])
@given(data=st.data())
def test_indexing(draw_index, data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3, max_side=4))))
    index = draw_index(data, x.shape)
    check_op(lambda a: a[index], [x], lambda a: a[index], lambda a: a[torch_index(index)])


def test_gradients_of_a_repeated_index_add_up():
    x = cl.tensor(np.zeros(3), requires_grad=True)
    x[np.array([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])


@given(data=st.data())
def test_boolean_mask_indexing(data):
    """A mask over all axes, or over the leading ones, as a NumPy array or a cnnlite tensor."""
    x = data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3, max_side=4))))
    mask = data.draw(hnp.arrays(np.bool_, x.shape[:data.draw(st.integers(1, x.ndim))]))
    check_op(lambda a: a[mask], [x], lambda a: a[mask], lambda a: a[torch.tensor(mask)])
    check_op(lambda a: a[cl.tensor(mask)], [x], lambda a: a[mask])


@given(data=st.data(), count=st.integers(1, 3))
def test_concat_and_stack(data, count):
    base = data.draw(shapes(min_dims=1, max_dims=3))
    axis = data.draw(st.integers(-len(base), len(base) - 1))
    pieces = []
    for _ in range(count):
        shape = list(base)
        shape[axis] = data.draw(st.integers(1, 3))
        pieces.append(data.draw(arrays(tuple(shape))))
    check_op(lambda *xs: cl.concat(xs, axis=axis), pieces,
             lambda *xs: np.concatenate(xs, axis=axis), lambda *xs: torch.cat(xs, dim=axis))
    same = [data.draw(arrays(tuple(base))) for _ in range(count)]
    check_op(lambda *xs: cl.stack(xs, axis=axis), same,
             lambda *xs: np.stack(xs, axis=axis), lambda *xs: torch.stack(xs, dim=axis))


@given(data=st.data())
def test_split(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3))))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    size = x.shape[axis]
    cuts = data.draw(st.sampled_from([n for n in range(1, size + 1) if size % n == 0])  # equal
                     | st.lists(st.integers(0, size), min_size=1, max_size=3).map(sorted))
    pieces = cl.split(cl.tensor(x), cuts, axis=axis)
    expected = np.split(x, cuts, axis=axis)
    assert [p.shape for p in pieces] == [e.shape for e in expected]
    for piece, want in zip(pieces, expected):
        np.testing.assert_array_equal(piece.data, want)
    # Weigh the pieces differently so that gradients sent to the wrong piece would show.
    sizes = [e.shape[axis] for e in expected]
    weights = np.arange(1.0, len(sizes) + 1)
    check_op(lambda a: cl.concat([p * w for p, w in zip(cl.split(a, cuts, axis=axis),
                                                         weights)], axis=axis),
             [x], None,
             lambda a: torch.cat([p * w for p, w in zip(torch.split(a, sizes, dim=axis),
                                                        weights)], dim=axis))


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


@given(data=st.data())
def test_pad(data):
    x = data.draw(arrays(data.draw(shapes(min_dims=1, max_dims=3))))
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
                   for _ in range(x.ndim))
    flat = [w for pair in reversed(widths) for w in pair]
    check_op(lambda a: cl.pad(a, widths, value=0.5), [x],
             lambda a: np.pad(a, widths, constant_values=0.5),
             lambda a: torch.nn.functional.pad(a, flat, value=0.5))


def test_squeeze_unsqueeze(rng):
    x = rng.standard_normal((2, 1, 3))
    check_op(lambda a: F.squeeze(a), [x], lambda a: a.squeeze(), lambda a: a.squeeze())
    check_op(lambda a: a.unsqueeze(0), [x], lambda a: a[None], lambda a: a.unsqueeze(0))


# --- comparisons -----------------------------------------------------------------------------

def test_comparisons_return_boolean_tensors_without_gradients(rng):
    x = cl.tensor(rng.standard_normal((3,)), requires_grad=True)
    for result in (x > 0, x >= 0, x < 0, x <= 0, x == x, x != 0):
        assert result.dtype == np.bool_
        assert not result.requires_grad and result.creator is None
    np.testing.assert_array_equal((x > 0).data, x.data > 0)
