"""The table's activations (``cnnlite/functional/activation.py``, ``mobile_activation.py``).

relu, leaky_relu, elu, sigmoid and tanh dispatch kernels (loops, numba, CUDA); the others are
NumPy expressions. Inputs keep 0.1 away from every kink: 0 for the ReLU family, 0 and 6 for
relu6, -3 and 3 for the hard sigmoid and swish, the hinges of APL, ties inside a maxout group.
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import functional as F
from cnnlite.optable.implementations import HOT
from cnnlite.optable.inputs import away_from, away_from_zero, distinct, uniform
from cnnlite.optable.lazy_torch import TF, torch
from cnnlite.optable.loops import Loops
from cnnlite.reference import activation as loops
from cnnlite.optable.spec import DEFAULT_TOLERANCE, OpSpec
from cnnlite.optable.table_math import UNARY_EXAMPLES, unary_params

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))


def _softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


#: PyTorch computes the hard sigmoid's slope 1/6 in another order: 3e-8 apart in float64.
HARD_TOLERANCE = {"float64": (1e-7, 1e-10), "float32": DEFAULT_TOLERANCE["float32"]}


def activation(name, call, numpy, torch_fn, make=uniform, examples=UNARY_EXAMPLES,
               implementations=("numpy",), avoid="", tolerance=DEFAULT_TOLERANCE):
    def inputs(rng, shape, **_):
        return (make(rng, shape),)
    return OpSpec(name, call, inputs, examples, unary_params(0), implementations, numpy=numpy,
                  torch=torch_fn, avoid=avoid, tolerance=dict(tolerance), topic="activation")


KINK_AT_ZERO = "x = 0 (a kink): |x| >= 0.1"


def _softplus_inputs(rng, shape, beta=1.0, threshold=20.0):
    """Away from the switch to y = x at beta x = threshold."""
    return (away_from(rng, shape, [threshold / beta], 0.1, -3.0, 3.0),)


def _prelu_inputs(rng, shape, shape_weight="channels"):
    """One slope per channel (axis 1), or one shared slope (1,)."""
    slopes = shape[1:2] if shape_weight == "channels" else (1,)
    return away_from_zero(rng, shape), uniform(rng, slopes, 0.0, 0.5)


def _prelu_numpy(x, w):
    view = (1, -1) + (1,) * (x.ndim - 2) if w.size > 1 else (1,) * x.ndim
    return np.where(x > 0, x, w.reshape(view) * x)


def _prelu_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes
    return st.fixed_dictionaries({"shape": shapes(min_dims=2, max_dims=4, max_side=3),
                                  "shape_weight": st.sampled_from(["channels", "shared"])})


def _maxout_inputs(rng, shape, pieces):
    return (distinct(rng, shape),)


def _maxout_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes

    @st.composite
    def draw(draw):
        pieces = draw(st.integers(1, 3))
        rest = draw(shapes(min_dims=0, max_dims=2, max_side=3))
        shape = (draw(st.integers(1, 2)), pieces * draw(st.integers(1, 3))) + rest
        return {"shape": shape, "pieces": pieces}
    return draw()


def _maxout_numpy(x, pieces):
    n, c = x.shape[:2]
    return x.reshape(n, c // pieces, pieces, *x.shape[2:]).max(axis=2)


def _maxout_torch(x, pieces):
    n, c = x.shape[:2]
    return x.reshape(n, c // pieces, pieces, *x.shape[2:]).amax(dim=2)


def _apl_inputs(rng, shape, shape_hinges, shape_slopes="channels"):
    """Hinges b on the grid 0.2 j, inputs on the grid 0.2 k + 0.1: every input 0.1 away from
    every hinge and from 0."""
    per_channel = shape_slopes == "channels"
    hinge_shape = (shape_hinges, shape[1]) if per_channel else (shape_hinges,)
    x = (rng.integers(-10, 10, size=shape) + 0.5) * 0.2
    b = rng.integers(-8, 8, size=hinge_shape) * 0.2
    return x, uniform(rng, hinge_shape, -1.0, 1.0), b


def _apl_numpy(x, a, b):
    """y = max(0, x) + sum_s a_s max(0, -x + b_s); works on NumPy arrays and torch tensors."""
    relu = (lambda v: v.clamp(min=0)) if hasattr(x, "clamp") else (lambda v: np.maximum(v, 0))
    y = relu(x)
    for s in range(a.shape[0]):
        view = (1, -1) + (1,) * (x.ndim - 2) if a.ndim == 2 else (1,) * x.ndim
        y = y + a[s].reshape(view) * relu(-x + b[s].reshape(view))
    return y


def _apl_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes
    return st.fixed_dictionaries({"shape": shapes(min_dims=2, max_dims=4, max_side=3),
                                  "shape_hinges": st.integers(1, 3),
                                  "shape_slopes": st.sampled_from(["channels", "shared"])})


OPS = [
    activation("relu", F.relu, lambda x: np.maximum(x, 0), lambda x: torch.relu(x),
               away_from_zero, implementations=HOT, avoid=KINK_AT_ZERO),
    activation("leaky_relu", F.leaky_relu,
               lambda x, negative_slope=0.01: np.where(x > 0, x, negative_slope * x),
               lambda x, **k: TF.leaky_relu(x, **k), away_from_zero,
               examples=({"shape": (2, 3)}, {"shape": (2, 3, 2), "negative_slope": 0.2}),
               implementations=HOT, avoid=KINK_AT_ZERO),
    activation("elu", F.elu, lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(x)),
               lambda x, **k: TF.elu(x, **k), away_from_zero,
               examples=({"shape": (2, 3)}, {"shape": (4, 2), "alpha": 1.7}),
               implementations=HOT, avoid=KINK_AT_ZERO),
    activation("sigmoid", F.sigmoid, _sigmoid, lambda x: torch.sigmoid(x),
               implementations=HOT),
    activation("tanh", F.tanh, np.tanh, lambda x: torch.tanh(x), implementations=HOT),
    activation("rrelu_eval", F.rrelu,
               lambda x, lower=1 / 8, upper=1 / 3: np.where(x > 0, x, (lower + upper) / 2 * x),
               lambda x, **k: TF.rrelu(x, **k), away_from_zero,
               examples=({"shape": (2, 3)}, {"shape": (3, 2), "lower": 0.1, "upper": 0.3}),
               avoid=KINK_AT_ZERO),
    activation("selu", F.selu,
               lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
               lambda x: torch.selu(x), away_from_zero, avoid=KINK_AT_ZERO),
    activation("scaled_tanh", F.scaled_tanh, lambda x: 1.7159 * np.tanh(2 * x / 3),
               lambda x: 1.7159 * torch.tanh(2 * x / 3)),
    OpSpec("softplus", F.softplus, _softplus_inputs,
           ({"shape": (2, 3)}, {"shape": (3, 2), "beta": 2.0, "threshold": 1.0},
            {"shape": (4,), "beta": 0.5, "threshold": 0.5}),
           numpy=_softplus, torch=lambda x, **k: TF.softplus(x, **k),
           avoid="beta x = threshold (the switch to y = x)", topic="activation"),
    activation("shifted_softplus", F.shifted_softplus, lambda x: _softplus(x) - math.log(2.0),
               lambda x: TF.softplus(x) - math.log(2.0)),
    activation("relu6", F.relu6, lambda x: np.clip(x, 0, 6), lambda x: TF.relu6(x),
               lambda rng, shape: away_from(rng, shape, [0.0, 6.0], 0.1, -2.0, 8.0),
               avoid="x = 0 and x = 6 (kinks)"),
    activation("hardsigmoid", F.hardsigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1),
               lambda x: TF.hardsigmoid(x),
               lambda rng, shape: away_from(rng, shape, [-3.0, 3.0], 0.1, -5.0, 5.0),
               avoid="x = -3 and x = 3 (kinks)", tolerance=HARD_TOLERANCE),
    activation("hardswish", F.hardswish, lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
               lambda x: TF.hardswish(x),
               lambda rng, shape: away_from(rng, shape, [-3.0, 3.0], 0.1, -5.0, 5.0),
               avoid="x = -3 and x = 3 (kinks)", tolerance=HARD_TOLERANCE),
    activation("silu", F.silu, lambda x: x * _sigmoid(x), lambda x: TF.silu(x)),
    OpSpec("prelu", F.prelu, _prelu_inputs,
           ({"shape": (2, 3, 2, 2), "shape_weight": "channels"}, {"shape": (4, 2),
                                                                  "shape_weight": "channels"},
            {"shape": (2, 3, 2), "shape_weight": "shared"}),
           _prelu_params, ("numpy", "direct"), numpy=_prelu_numpy,
           torch=lambda x, w: TF.prelu(x, w),
           direct=lambda: Loops(loops.prelu_forward, loops.prelu_backward),
           avoid=KINK_AT_ZERO, topic="activation"),
    OpSpec("maxout", F.maxout, _maxout_inputs,
           ({"shape": (2, 6, 2, 2), "pieces": 3}, {"shape": (3, 4), "pieces": 2},
            {"shape": (2, 3), "pieces": 1}), _maxout_params, ("numpy", "direct"),
           numpy=_maxout_numpy, torch=_maxout_torch,
           direct=lambda pieces: Loops(loops.maxout_forward, loops.maxout_backward, pieces),
           avoid="ties inside a group of channels", topic="activation"),
    OpSpec("apl", F.apl, _apl_inputs,
           ({"shape": (2, 3, 2, 2), "shape_hinges": 2}, {"shape": (3, 4), "shape_hinges": 1},
            {"shape": (2, 3, 2), "shape_hinges": 2, "shape_slopes": "shared"}),
           _apl_params, ("numpy", "direct"), numpy=_apl_numpy, torch=_apl_numpy,
           direct=lambda: Loops(loops.apl_forward, loops.apl_backward),
           avoid="x at 0 or at a hinge b_s", topic="activation"),
]
