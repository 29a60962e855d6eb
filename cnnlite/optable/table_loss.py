"""The table's softmax and losses (``cnnlite/functional/loss.py``).

softmax, log_softmax and cross_entropy dispatch kernels (loops, numba, CUDA); nll_loss and
mse_loss are NumPy expressions whose readable loops (``cnnlite.reference.softmax``) run as the
"direct" implementation. Class targets are integer inputs: they get no gradient. Logits reach
PyTorch parity from -20 to 20 in the drawn cases, where a naive softmax would overflow.
"""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F
from cnnlite.optable.implementations import HOT
from cnnlite.optable.inputs import class_targets, uniform
from cnnlite.optable.lazy_torch import TF, torch
from cnnlite.optable.loops import Loops
from cnnlite.optable.spec import OpSpec
from cnnlite.reference import softmax as loops

REDUCTIONS = ("mean", "sum", "none")


def reduce(losses, reduction):
    return {"mean": losses.mean, "sum": losses.sum, "none": lambda: losses}[reduction]()


def log_softmax_numpy(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_numpy(logits, target, label_smoothing=0.0, reduction="mean"):
    """-sum_k q_k log p_k with q = (1 - eps) one_hot + eps / K, classes on axis 1 (axis 0 for
    a single sample of shape (K,))."""
    axis = 1 if logits.ndim > 1 else 0
    log_p = log_softmax_numpy(logits, axis=axis)
    classes = logits.shape[axis]
    one_hot = np.moveaxis(np.eye(classes)[target], -1, axis)
    q = (1 - label_smoothing) * one_hot + label_smoothing / classes
    return reduce(-(q * log_p).sum(axis=axis), reduction)


def nll_loss_numpy(log_probs, target, reduction="mean"):
    axis = 1 if log_probs.ndim > 1 else 0
    picked = np.take_along_axis(log_probs, np.expand_dims(target, axis), axis)
    return reduce(-np.squeeze(picked, axis), reduction)


def _logits_and_targets(rng, shape, scale=3.0):
    """Logits (N, K, ...) or (K,) in [-scale, scale] and class indices of the matching shape."""
    classes = shape[1] if len(shape) > 1 else shape[0]
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    return uniform(rng, shape, -scale, scale), class_targets(rng, target_shape, classes)


def _class_loss_params(smoothing):
    def params():
        from hypothesis import strategies as st

        from cnnlite.testing import shapes

        @st.composite
        def draw(draw):
            n, k = draw(st.integers(1, 3)), draw(st.integers(1, 4))
            extra = draw(shapes(min_dims=0, max_dims=2, max_side=3))
            shape = draw(st.sampled_from([(n, k) + extra, (k,)]))
            params = {"shape": shape, "reduction": draw(st.sampled_from(REDUCTIONS))}
            if smoothing:
                params["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
            return params
        return draw()
    return params


def _softmax_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes
    return shapes(min_dims=1, max_dims=3, max_side=3).flatmap(
        lambda shape: st.fixed_dictionaries({
            "shape": st.just(shape), "axis": st.integers(-len(shape), len(shape) - 1)}))


def _mse_params():
    from hypothesis import strategies as st

    from cnnlite.testing import shapes
    return st.fixed_dictionaries({"shape": shapes(max_dims=3, max_side=3),
                                  "reduction": st.sampled_from(REDUCTIONS)})


SOFTMAX_EXAMPLES = ({"shape": (3, 5), "axis": -1}, {"shape": (2, 3, 4), "axis": 1},
                    {"shape": (6,), "axis": 0})
LOSS_EXAMPLES = ({"shape": (4, 5)}, {"shape": (3, 4), "reduction": "none"},
                 {"shape": (2, 3, 2), "reduction": "sum"}, {"shape": (5,)})

OPS = [
    OpSpec("softmax", F.softmax, lambda rng, shape, **_: (uniform(rng, shape, -3.0, 3.0),),
           SOFTMAX_EXAMPLES, _softmax_params, HOT,
           numpy=lambda x, axis=-1: np.exp(log_softmax_numpy(x, axis)),
           torch=lambda x, axis=-1: torch.softmax(x, dim=axis), topic="loss"),
    OpSpec("log_softmax", F.log_softmax,
           lambda rng, shape, **_: (uniform(rng, shape, -3.0, 3.0),), SOFTMAX_EXAMPLES,
           _softmax_params, HOT, numpy=log_softmax_numpy,
           torch=lambda x, axis=-1: torch.log_softmax(x, dim=axis), topic="loss"),
    OpSpec("cross_entropy", F.cross_entropy,
           lambda rng, shape, **_: _logits_and_targets(rng, shape),
           ({"shape": (4, 5)}, {"shape": (2, 3, 2, 2), "label_smoothing": 0.1},
            {"shape": (3, 4), "reduction": "sum"}, {"shape": (4,), "reduction": "none"},
            {"shape": (3, 4), "label_smoothing": 0.3, "reduction": "none"}),
           _class_loss_params(True), HOT, numpy=cross_entropy_numpy,
           torch=lambda x, t, **k: TF.cross_entropy(x, t, **k), topic="loss"),
    OpSpec("nll_loss", F.nll_loss, lambda rng, shape, **_: _logits_and_targets(rng, shape),
           LOSS_EXAMPLES, _class_loss_params(False), ("numpy", "direct"),
           numpy=nll_loss_numpy, torch=lambda x, t, **k: TF.nll_loss(x, t, **k),
           direct=lambda reduction="mean": Loops(loops.nll_loss_forward, loops.nll_loss_backward,
                                                 reduction), topic="loss"),
    OpSpec("mse_loss", F.mse_loss,
           lambda rng, shape, **_: (uniform(rng, shape), uniform(rng, shape)),
           ({"shape": (3, 4)}, {"shape": (2, 3), "reduction": "sum"},
            {"shape": (2, 2), "reduction": "none"}), _mse_params, ("numpy", "direct"),
           numpy=lambda x, y, reduction="mean": reduce((x - y) ** 2, reduction),
           torch=lambda x, y, **k: TF.mse_loss(x, y, **k),
           direct=lambda reduction="mean": Loops(loops.mse_loss_forward, loops.mse_loss_backward,
                                                 reduction), topic="loss"),
]
