"""The table's arithmetic, reductions, shape ops and matmul (``cnnlite/functional/math.py``,
``reduction.py``, ``shape.py``), and ``walk``: a small graph that exercises the backward walk.

Binary ops broadcast: their examples pair shapes such as (2, 3) with (3,) and (2, 1) with
(1, 3), so the gradient of an input must be summed over the axes it was broadcast along.
Hypothesis strategies draw the rest: any broadcastable pair, batched matmuls and vectors,
reduction axes (one, several, none) with and without keepdims, permutations, basic and
integer-array indices, boolean masks, the pieces of concat and split.
"""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F
from cnnlite.optable.inputs import away_from, away_from_zero, distinct, positive, uniform
from cnnlite.optable.lazy_torch import torch
from cnnlite.optable.spec import OpSpec

BROADCAST_EXAMPLES = ({"shape_a": (2, 3), "shape_b": (2, 3)},
                      {"shape_a": (2, 3), "shape_b": (3,)},
                      {"shape_a": (2, 1, 4), "shape_b": (3, 1)},
                      {"shape_a": (), "shape_b": (2, 2)})
UNARY_EXAMPLES = ({"shape": (2, 3)}, {"shape": (4,)}, {"shape": (2, 1, 3)}, {"shape": ()})


def broadcast_params():
    from cnnlite.testing import broadcastable_pairs
    return broadcastable_pairs(max_dims=3, max_side=4).map(
        lambda pair: {"shape_a": pair[0], "shape_b": pair[1]})


def unary_params(min_dims=0):
    """A strategy maker for one input of any shape with at least ``min_dims`` axes."""
    def params():
        from cnnlite.testing import shapes
        return shapes(min_dims=min_dims, max_dims=3, max_side=4).map(
            lambda shape: {"shape": shape})
    return params


def pair(make_a, make_b=None):
    """inputs() for a binary op: ``make_a`` for a, ``make_b`` (default the same) for b."""
    make_b = make_b or make_a
    return lambda rng, shape_a, shape_b: (make_a(rng, shape_a), make_b(rng, shape_b))


def one(make):
    return lambda rng, shape: (make(rng, shape),)


def binary(name, call, numpy, torch_fn, inputs=None, avoid=""):
    return OpSpec(name, call, inputs or pair(uniform), BROADCAST_EXAMPLES, broadcast_params,
                  numpy=numpy, torch=torch_fn, avoid=avoid, topic="math")


def unary(name, call, numpy, torch_fn, make=uniform, avoid="", examples=UNARY_EXAMPLES):
    return OpSpec(name, call, one(make), examples, unary_params(0), numpy=numpy,
                  torch=torch_fn, avoid=avoid, topic="math")


def _distinct_pair(rng, shape_a, shape_b):
    """a on the grid 0.1 k, b on the grid 0.1 k + 0.05: wherever they meet, |a - b| >= 0.05
    (a tie of maximum is a kink)."""
    return (rng.integers(-20, 20, size=shape_a) * 0.1,
            rng.integers(-20, 20, size=shape_b) * 0.1 + 0.05)


# --- matmul ------------------------------------------------------------------------------------

def _matmul_params():
    """Matrices with broadcast batch axes, and 1-d operands on either side (a row on the left,
    a column on the right, dropped from the result)."""
    from hypothesis import strategies as st

    from cnnlite.testing import broadcastable_pairs
    side = st.integers(1, 4)

    @st.composite
    def draw(draw):
        n, k, m = draw(side), draw(side), draw(side)
        batch_a, batch_b = draw(broadcastable_pairs(max_dims=2, max_side=3))
        vector = draw(st.sampled_from(["none", "none", "left", "right", "both"]))
        shape_a = (k,) if vector in ("left", "both") else batch_a + (n, k)
        shape_b = (k,) if vector in ("right", "both") else batch_b + (k, m)
        return {"shape_a": shape_a, "shape_b": shape_b}
    return draw()


# --- reductions --------------------------------------------------------------------------------

def _reduction_params(with_ddof=False):
    def params():
        from hypothesis import strategies as st

        from cnnlite.testing import shapes

        @st.composite
        def draw(draw):
            shape = draw(shapes(min_dims=1, max_dims=3, max_side=4,
                                min_side=2 if with_ddof else 1))
            ndim = len(shape)
            axis = draw(st.none() | st.integers(-ndim, ndim - 1)
                        | st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                   unique=True).map(tuple))
            params = {"shape": shape, "axis": axis, "keepdims": draw(st.booleans())}
            if with_ddof:
                params["ddof"] = draw(st.sampled_from([0, 1]))
            return params
        return draw()
    return params


REDUCTION_EXAMPLES = ({"shape": (2, 3), "axis": None, "keepdims": False},
                      {"shape": (2, 3, 4), "axis": 1, "keepdims": True},
                      {"shape": (3, 4), "axis": (0, 1), "keepdims": False},
                      {"shape": (5,), "axis": -1, "keepdims": False})


def reduction(name, call, numpy, torch_fn, make=uniform, avoid="", examples=REDUCTION_EXAMPLES,
              with_ddof=False):
    return OpSpec(name, call, lambda rng, shape: (make(rng, shape),), examples,
                  _reduction_params(with_ddof), numpy=numpy, torch=torch_fn, avoid=avoid,
                  topic="reduction")


def _dims(x, axis):
    return tuple(range(x.dim())) if axis is None else axis


def _numpy_reduction(fn):
    return lambda x, axis=None, keepdims=False, **k: fn(x, axis=axis, keepdims=keepdims, **k)


# --- shape ops ---------------------------------------------------------------------------------

def _permutation_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes
    return shapes(min_dims=1, max_dims=4, max_side=3).flatmap(
        lambda shape: st.permutations(range(len(shape))).map(
            lambda axes: {"shape": shape, "axes": tuple(axes)}))


def _broadcast_to_params():
    from cnnlite.testing import broadcastable_pairs
    return broadcastable_pairs(max_dims=3, max_side=4).map(
        lambda pair: {"shape": pair[1], "target": np.broadcast_shapes(*pair)})


def _positive_slices(size):
    """Slices of an axis of ``size``, empty ones included; steps >= 1 (PyTorch has no negative
    steps)."""
    from hypothesis import strategies as st
    ends = st.none() | st.integers(-size - 1, size + 1)
    return st.builds(slice, ends, ends, st.none() | st.integers(1, 3))


def _index_params():
    """Basic indices (integers and slices for leading axes, or after an Ellipsis for trailing
    ones) and integer-array indices (which broadcast together, repeat and may be negative)."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    from cnnlite.testing import shapes

    @st.composite
    def basic(draw, shape):
        count = draw(st.integers(0, len(shape)))
        from_the_end = draw(st.booleans())
        axes = shape[len(shape) - count:] if from_the_end else shape[:count]
        index = tuple(draw(st.integers(-size, size - 1) | _positive_slices(size))
                      for size in axes)
        return (Ellipsis,) + index if from_the_end else index

    @st.composite
    def integer_arrays(draw, shape):
        start = draw(st.integers(0, len(shape) - 1))
        count = draw(st.integers(1, len(shape) - start))
        leading = tuple(draw(_positive_slices(size)) for size in shape[:start])
        arrays = draw(hnp.integer_array_indices(
            shape[start:start + count], result_shape=shapes(min_dims=1, max_dims=2, max_side=4)))
        rest = shape[start + count:]
        trailing = (draw(_positive_slices(rest[0])),) if rest and draw(st.booleans()) else ()
        return leading + tuple(np.asarray(a) for a in arrays) + trailing

    @st.composite
    def mask(draw, shape):
        return (draw(hnp.arrays(np.bool_, shape[:draw(st.integers(1, len(shape)))])),)

    @st.composite
    def draw(draw):
        shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
        kind = draw(st.sampled_from([basic, integer_arrays, mask]))
        return {"shape": shape, "index": draw(kind(shape))}
    return draw()


def _torch_index(index):
    return tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in index)


def _pieces_params(same_shape):
    """``count`` inputs that agree on every axis but ``axis`` (all axes for stack)."""
    def params():
        from hypothesis import strategies as st

        from cnnlite.testing import shapes

        @st.composite
        def draw(draw):
            base = draw(shapes(min_dims=1, max_dims=3, max_side=3))
            axis = draw(st.integers(-len(base), len(base) - 1))
            pieces = []
            for _ in range(draw(st.integers(1, 3))):
                shape = list(base)
                if not same_shape:
                    shape[axis] = draw(st.integers(1, 3))
                pieces.append(tuple(shape))
            return {"shape_pieces": tuple(pieces), "axis": axis}
        return draw()
    return params


def _pieces(rng, shape_pieces):
    return tuple(uniform(rng, shape) for shape in shape_pieces)


def _split_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes

    @st.composite
    def draw(draw):
        shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        size = shape[axis]
        cuts = draw(st.sampled_from([n for n in range(1, size + 1) if size % n == 0])
                    | st.lists(st.integers(0, size), min_size=1, max_size=3).map(
                        lambda c: tuple(sorted(c))))
        return {"shape": shape, "cuts": cuts, "axis": axis}
    return draw()


def _split_weighted(x, cuts, axis):
    """The pieces of split, weighed 1, 2, 3, ... and put back together: a gradient sent to the
    wrong piece shows."""
    pieces = F.split(x, cuts, axis=axis)
    return F.concat([p * float(w) for w, p in enumerate(pieces, 1)], axis=axis)


def _split_weighted_numpy(x, cuts, axis):
    pieces = np.split(x, cuts, axis=axis)
    return np.concatenate([p * float(w) for w, p in enumerate(pieces, 1)], axis=axis)


def _pad_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes
    return shapes(min_dims=1, max_dims=3, max_side=3).flatmap(
        lambda shape: st.tuples(*[st.tuples(st.integers(0, 2), st.integers(0, 2))
                                  for _ in shape]).map(
            lambda widths: {"shape": shape, "widths": widths}))


def _torch_pad(x, widths):
    flat = [w for pair in reversed(widths) for w in pair]
    return torch.nn.functional.pad(x, flat, value=0.5)


def _where_params():
    from hypothesis import strategies as st

    from cnnlite.testing import broadcastable_pairs
    return broadcastable_pairs(max_dims=3, max_side=3).flatmap(
        lambda pair: st.fixed_dictionaries({
            "shape_a": st.just(pair[1]), "shape_b": st.sampled_from([(), pair[1]]),
            "condition_seed": st.integers(0, 99), "condition_shape": st.just(pair[0])}))


def _where_inputs(rng, shape_a, shape_b, condition_shape=(2, 3), condition_seed=0):
    return uniform(rng, shape_a), uniform(rng, shape_b)


def _condition(condition_seed, condition_shape):
    return np.random.default_rng(condition_seed).uniform(-1, 1, condition_shape) > 0


# --- the backward walk -------------------------------------------------------------------------

def _walk(x, y):
    """A graph with a diamond (a feeds b and c, which meet again), a shared input (x in three
    places), a value used twice by one op (b * b) and an output of split nobody uses."""
    a = x * y
    b = F.exp(a * 0.5)
    c = a - x
    d = b * b + c * F.sum(x)
    used, _unused = F.split(d, 2, axis=1)
    return used * 2.0 + F.sum(c)


def _walk_on_arrays(exp, x, y):
    """The same graph on NumPy arrays or torch tensors (``exp`` of either), for the value and
    PyTorch's gradients."""
    a = x * y
    b = exp(a * 0.5)
    c = a - x
    d = b * b + c * x.sum()
    return d[:, :2] * 2.0 + c.sum()


def _powers(x, exponent):
    """Numbers on either side: 2 - x/3 + 1.5 x - 4/x + x**exponent."""
    return 2.0 - x / 3.0 + 1.5 * x - 4.0 / x + x ** exponent


OPS = [
    binary("add", lambda a, b: a + b, np.add, lambda a, b: torch.add(a, b)),
    binary("sub", lambda a, b: a - b, np.subtract, lambda a, b: torch.sub(a, b)),
    binary("mul", lambda a, b: a * b, np.multiply, lambda a, b: torch.mul(a, b)),
    binary("div", lambda a, b: a / b, np.divide, lambda a, b: torch.div(a, b),
           pair(uniform, lambda rng, shape: away_from_zero(rng, shape, 0.5)),
           avoid="b near 0 (a singularity): |b| >= 0.5"),
    binary("pow", lambda a, b: a ** b, np.power, lambda a, b: torch.pow(a, b),
           pair(positive, uniform), avoid="a <= 0 (a ** b is not real, log a undefined)"),
    binary("maximum", F.maximum, np.maximum, lambda a, b: torch.maximum(a, b), _distinct_pair,
           avoid="a == b (a tie: the derivative jumps)"),
    OpSpec("where", lambda a, b, condition_seed, condition_shape: F.where(
               _condition(condition_seed, condition_shape), a, b), _where_inputs,
           ({"shape_a": (2, 3), "shape_b": (2, 3), "condition_shape": (2, 3),
             "condition_seed": 0},
            {"shape_a": (3,), "shape_b": (), "condition_shape": (2, 3), "condition_seed": 1}),
           _where_params,
           numpy=lambda a, b, condition_seed, condition_shape: np.where(
               _condition(condition_seed, condition_shape), a, b),
           torch=lambda a, b, condition_seed, condition_shape: torch.where(
               torch.tensor(_condition(condition_seed, condition_shape)), a, b), topic="math"),
    unary("neg", lambda x: -x, np.negative, lambda x: torch.neg(x)),
    unary("exp", F.exp, np.exp, lambda x: torch.exp(x)),
    unary("log", F.log, np.log, lambda x: torch.log(x), positive, "x <= 0"),
    unary("sqrt", F.sqrt, np.sqrt, lambda x: torch.sqrt(x), positive, "x <= 0"),
    unary("abs", F.abs, np.abs, lambda x: torch.abs(x), away_from_zero, "x = 0 (a kink)"),
    OpSpec("pow_scalar", _powers, lambda rng, shape: (positive(rng, shape),),
           tuple({"shape": (2, 3), "exponent": e} for e in (2, 3, 0.5, -1.5)),
           numpy=_powers, torch=_powers, avoid="x <= 0 (x ** 0.5, 4 / x)", topic="math"),
    unary("clip", lambda x: F.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5),
          lambda x: torch.clamp(x, -0.5, 0.5),
          lambda rng, shape: away_from(rng, shape, [-0.5, 0.5], 0.05, -2.0, 2.0),
          "x = +-0.5 (the bounds are kinks)"),
    OpSpec("matmul", F.matmul, pair(uniform),
           ({"shape_a": (2, 3), "shape_b": (3, 4)}, {"shape_a": (2, 2, 3), "shape_b": (3, 2)},
            {"shape_a": (3,), "shape_b": (3,)}, {"shape_a": (3,), "shape_b": (2, 3, 2)},
            {"shape_a": (2, 1, 2, 3), "shape_b": (3, 3)}),
           _matmul_params, numpy=np.matmul, torch=lambda a, b: torch.matmul(a, b),
           topic="math"),
    reduction("sum", F.sum, _numpy_reduction(np.sum),
              lambda x, axis=None, keepdims=False: torch.sum(x, dim=_dims(x, axis),
                                                             keepdim=keepdims)),
    reduction("mean", F.mean, _numpy_reduction(np.mean),
              lambda x, axis=None, keepdims=False: torch.mean(x, dim=_dims(x, axis),
                                                              keepdim=keepdims)),
    reduction("max", F.max, _numpy_reduction(np.max),
              lambda x, axis=None, keepdims=False: torch.amax(x, dim=_dims(x, axis),
                                                              keepdim=keepdims),
              distinct, "ties (two equal maxima share the gradient): distinct values"),
    reduction("min", F.min, _numpy_reduction(np.min),
              lambda x, axis=None, keepdims=False: torch.amin(x, dim=_dims(x, axis),
                                                              keepdim=keepdims),
              distinct, "ties: distinct values"),
    reduction("var", F.var, _numpy_reduction(np.var),
              lambda x, axis=None, keepdims=False, ddof=0: torch.var(
                  x, dim=_dims(x, axis), keepdim=keepdims, correction=ddof),
              examples=REDUCTION_EXAMPLES + ({"shape": (3, 4), "axis": 0, "keepdims": False,
                                              "ddof": 1},), with_ddof=True),
    OpSpec("reshape", lambda x: F.reshape(x, -1, 1), one(uniform), UNARY_EXAMPLES[:3],
           unary_params(1), numpy=lambda x: x.reshape(-1, 1),
           torch=lambda x: x.reshape(-1, 1), topic="shape"),
    OpSpec("flatten", F.flatten, one(uniform), ({"shape": (2, 3, 2)}, {"shape": (4,)}),
           unary_params(1), numpy=lambda x: x.reshape(-1), torch=lambda x: x.flatten(),
           topic="shape"),
    OpSpec("transpose", lambda x, axes: F.transpose(x, *axes), one(uniform),
           ({"shape": (2, 3), "axes": (1, 0)}, {"shape": (2, 3, 4), "axes": (2, 0, 1)}),
           _permutation_params, numpy=lambda x, axes: x.transpose(axes),
           torch=lambda x, axes: x.permute(axes), topic="shape"),
    OpSpec("broadcast_to", lambda x, target: F.broadcast_to(x, target), one(uniform),
           ({"shape": (2, 1), "target": (3, 2, 4)}, {"shape": (4,), "target": (2, 4)}),
           _broadcast_to_params, numpy=lambda x, target: np.broadcast_to(x, target),
           torch=lambda x, target: x.expand(target), topic="shape"),
    OpSpec("expand", lambda x, target: F.expand(x, target), one(uniform),
           ({"shape": (1, 3), "target": (2, 3)},),
           _broadcast_to_params, numpy=lambda x, target: np.broadcast_to(x, target),
           torch=lambda x, target: x.expand(target), topic="shape"),
    OpSpec("squeeze", F.squeeze, one(uniform), ({"shape": (2, 1, 3)}, {"shape": (1, 1)}),
           numpy=np.squeeze, torch=lambda x: x.squeeze(), topic="shape"),
    OpSpec("unsqueeze", lambda x: F.unsqueeze(x, 0), one(uniform), ({"shape": (2, 3)},),
           numpy=lambda x: x[None], torch=lambda x: x.unsqueeze(0), topic="shape"),
    OpSpec("getitem", lambda x, index: x[index], one(uniform),
           ({"shape": (3, 4), "index": (slice(None, None, 2), 1)},
            {"shape": (3, 4), "index": (np.array([0, 2, 0, 0]),)},
            {"shape": (2, 3, 4), "index": (Ellipsis, slice(1, 3))},
            {"shape": (2, 3), "index": (np.array([[True, False, True], [False, True, True]]),)}),
           _index_params, numpy=lambda x, index: x[index],
           torch=lambda x, index: x[_torch_index(index)],
           avoid="nothing; a repeated index adds its gradients up", topic="shape"),
    OpSpec("concat", lambda *xs, axis: F.concat(xs, axis=axis), _pieces,
           ({"shape_pieces": ((2, 3), (2, 1)), "axis": 1},
            {"shape_pieces": ((1, 2), (2, 2), (1, 2)), "axis": 0}),
           _pieces_params(False), numpy=lambda *xs, axis: np.concatenate(xs, axis=axis),
           torch=lambda *xs, axis: torch.cat(xs, dim=axis), topic="shape"),
    OpSpec("stack", lambda *xs, axis: F.stack(xs, axis=axis), _pieces,
           ({"shape_pieces": ((2, 3), (2, 3)), "axis": 1},), _pieces_params(True),
           numpy=lambda *xs, axis: np.stack(xs, axis=axis),
           torch=lambda *xs, axis: torch.stack(xs, dim=axis), topic="shape"),
    OpSpec("split", _split_weighted, one(uniform),
           ({"shape": (6, 2), "cuts": 3, "axis": 0}, {"shape": (2, 5), "cuts": (1, 3),
                                                       "axis": -1}),
           _split_params, numpy=_split_weighted_numpy, topic="shape"),
    OpSpec("pad", lambda x, widths: F.pad(x, widths, value=0.5), one(uniform),
           ({"shape": (2, 3), "widths": ((1, 0), (2, 1))},), _pad_params,
           numpy=lambda x, widths: np.pad(x, widths, constant_values=0.5), torch=_torch_pad,
           topic="shape"),
    OpSpec("walk", _walk, pair(uniform), ({"shape_a": (3, 4), "shape_b": (3, 4)},
                                         {"shape_a": (3, 4), "shape_b": (4,)}),
           numpy=lambda x, y: _walk_on_arrays(np.exp, x, y),
           torch=lambda x, y: _walk_on_arrays(torch.exp, x, y), topic="autograd",
           avoid="nothing: every op of the graph is smooth"),
]
