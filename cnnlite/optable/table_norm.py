"""The table's normalisation and dropout (``cnnlite/functional/norm.py``, ``dropout.py``).

Batch norm (training and evaluation, with and without the affine map), local response
normalisation and dropout dispatch kernels: each runs as the reference loops, the numba kernels,
the CUDA kernels through the host harness and, with a GPU, on the GPU. The NumPy formulas below
(LRN's channel windows through ``sliding_window_view``) are a second, independent reference.

These ops have no kinks; their inputs keep away from what would blur a check instead. Batch
norm's x has a mean far from 0 (a one-pass variance would cancel) and, in training, at least 3
values per channel (with 2 close together, 1 / std and the gradient's curvature are huge); its
evaluation-mode variances are positive. Dropout draws its mask from a fixed seed, so every call
and every implementation drops the same elements, and y = mask * x / (1 - p) is differentiable.
The examples and strategies reach batch norm on 2-d, 3-d and 4-d inputs with long channels,
LRN windows odd, even and wider than the channels (both alpha conventions, beta = 0.75 and other
powers), and dropout on scalars up to 4-d tensors.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlite import functional as F
from cnnlite.optable.implementations import HOT
from cnnlite.optable.inputs import positive, uniform
from cnnlite.optable.lazy_torch import TF
from cnnlite.optable.spec import OpSpec


# --- normalisation -----------------------------------------------------------------------------

def batch_norm_numpy(x, weight=None, bias=None, eps=1e-5):
    """Training mode: x_hat = (x - mean) / sqrt(var + eps) per channel over (N, H, W), the
    biased variance; y = weight * x_hat + bias."""
    axes = (0,) + tuple(range(2, x.ndim))
    view = (1, -1) + (1,) * (x.ndim - 2)
    x_hat = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    if weight is None:
        return x_hat
    return weight.reshape(view) * x_hat + bias.reshape(view)


def batch_norm_eval_numpy(x, mean, var, weight, bias, eps=1e-5):
    view = (1, -1) + (1,) * (x.ndim - 2)
    return (weight.reshape(view) * (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + eps)
            + bias.reshape(view))


def _batch_norm_inputs(affine):
    """x with a mean far from 0 (a one-pass variance would cancel) and a spread of about 1."""
    def inputs(rng, shape, **_):
        x = uniform(rng, shape, 3.0, 7.0)
        c = shape[1]
        return (x, uniform(rng, (c,), 0.5, 1.5), uniform(rng, (c,))) if affine else (x,)
    return inputs


def _batch_norm_eval_inputs(rng, shape, **_):
    c = shape[1]
    return (uniform(rng, shape), uniform(rng, (c,), -0.5, 0.5), positive(rng, (c,)),
            uniform(rng, (c,), 0.5, 1.5), uniform(rng, (c,)))


def _batch_norm_params(training=True):
    """(N, C), (N, C, L) or (N, C, H, W); in training at least 3 values per channel (2 values
    1e-2 apart would make 1 / std, and the gradient's curvature, huge)."""
    from hypothesis import strategies as st

    @st.composite
    def draw(draw):
        c = draw(st.integers(1, 3))
        spatial = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
        n = draw(st.integers(1, 4))
        if training and n * int(np.prod(spatial)) < 3:
            n = 3
        params = {"shape": (n, c) + spatial}
        if training:
            params["eps"] = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
        return params
    return draw()


# (2, 2, 20): 40 values per channel, more than the harness's 32 threads of a block, so some
# threads sum several values before the block sum.
BATCH_NORM_EXAMPLES = ({"shape": (4, 3, 2, 2)}, {"shape": (5, 2)}, {"shape": (2, 3, 4)},
                       {"shape": (2, 2, 20), "eps": 1e-3})


def lrn_numpy(x, size, alpha=1e-4, beta=0.75, k=1.0, alpha_over_size=True):
    """y[c] = x[c] / (k + a * sum of x[j]^2 over the channels c - size//2 ..
    c + (size - 1)//2)^beta, a = alpha / size (or alpha, the AlexNet convention)."""
    pad = ((0, 0), (size // 2, (size - 1) // 2)) + ((0, 0),) * (x.ndim - 2)
    sums = sliding_window_view(np.pad(x ** 2, pad), size, axis=1).sum(-1)
    return x / (k + (alpha / size if alpha_over_size else alpha) * sums) ** beta


def _lrn_torch(x, size, alpha=1e-4, beta=0.75, k=1.0, alpha_over_size=True):
    """PyTorch divides alpha by size: the AlexNet convention is its alpha * size."""
    return TF.local_response_norm(x, size, alpha=alpha if alpha_over_size else alpha * size,
                                  beta=beta, k=k)


def _lrn_params():
    """Window sizes odd, even and wider than the channels; alpha up to 1, so that the window
    term is as large as the direct one; beta = 0.75 (the kernels' shortcut, two square roots)
    or any other power."""
    from hypothesis import strategies as st
    return st.fixed_dictionaries({
        "shape": st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 3)).flatmap(
            lambda s: st.just(s) | st.tuples(*map(st.just, s), st.integers(1, 3))),
        "size": st.integers(1, 9), "alpha": st.floats(1e-4, 1.0),
        "beta": st.just(0.75) | st.floats(0.05, 2.0), "k": st.floats(0.5, 2.0),
        "alpha_over_size": st.booleans()})


LRN_EXAMPLES = (
    {"shape": (2, 5, 2, 2), "size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.0},
    {"shape": (1, 4, 3, 2), "size": 4, "alpha": 1.0, "beta": 0.5, "k": 2.0},
    {"shape": (2, 5, 4), "size": 8, "alpha": 0.9, "beta": 1.3, "k": 0.5},
    {"shape": (1, 6, 2, 2), "size": 5, "alpha": 0.2, "beta": 0.75, "k": 2.0,
     "alpha_over_size": False},
)


# --- dropout -----------------------------------------------------------------------------------

def _dropout(x, p, seed=0):
    """Dropout with a fixed seed, so every call (and every implementation) draws one mask."""
    return F.dropout(x, p, rng=np.random.default_rng(seed))


def _dropout_params():
    from hypothesis import strategies as st
    return st.fixed_dictionaries({
        "shape": st.lists(st.integers(1, 4), max_size=4).map(tuple),
        "p": st.floats(0.01, 0.99), "seed": st.integers(0, 2**16)})


DROPOUT_EXAMPLES = ({"shape": (3, 4), "p": 0.5}, {"shape": (2, 2, 3, 3), "p": 0.25},
                    {"shape": (), "p": 0.1}, {"shape": (40,), "p": 0.9, "seed": 3})


OPS = [
    OpSpec("batch_norm", lambda x, w, b, **k: F.batch_norm(x, None, None, w, b, training=True,
                                                          **k),
           _batch_norm_inputs(affine=True), BATCH_NORM_EXAMPLES, _batch_norm_params, HOT,
           numpy=batch_norm_numpy,
           torch=lambda x, w, b, **k: TF.batch_norm(x, None, None, w, b, training=True, **k),
           topic="norm"),
    OpSpec("batch_norm_without_affine",
           lambda x, **k: F.batch_norm(x, None, None, training=True, **k),
           _batch_norm_inputs(affine=False), BATCH_NORM_EXAMPLES[:2], _batch_norm_params, HOT,
           numpy=batch_norm_numpy,
           torch=lambda x, **k: TF.batch_norm(x, None, None, training=True, **k), topic="norm"),
    OpSpec("batch_norm_eval", lambda x, m, v, w, b: F.batch_norm(x, m, v, w, b, training=False),
           _batch_norm_eval_inputs, ({"shape": (2, 3, 2, 2)}, {"shape": (3, 4)},
                                     {"shape": (1, 2, 5)}),
           lambda: _batch_norm_params(training=False), HOT, numpy=batch_norm_eval_numpy,
           torch=lambda x, m, v, w, b: TF.batch_norm(x, m, v, w, b, training=False),
           grad_inputs=(0, 3, 4), topic="norm"),
    OpSpec("local_response_norm", F.local_response_norm,
           lambda rng, shape, **_: (uniform(rng, shape),), LRN_EXAMPLES, _lrn_params, HOT,
           numpy=lrn_numpy, torch=_lrn_torch, topic="norm"),
    OpSpec("dropout", _dropout, lambda rng, shape, **_: (uniform(rng, shape),),
           DROPOUT_EXAMPLES, _dropout_params, HOT, topic="dropout"),
]
