"""Classification metrics: top-k accuracy, and running means over an epoch."""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.tensor import Tensor
from cnnlite.validate import integer, is_integer

__all__ = ["accuracy", "topk_correct", "RunningMean"]


def _host_array(x):
    """The NumPy array behind a Tensor, a CuPy array or anything array-like."""
    data = x.data if isinstance(x, Tensor) else x
    return np.asarray(backend.to_device(data, "cpu") if backend.is_cupy_array(data) else data)


def topk_correct(logits, target, topk=(1, 5)) -> tuple[int, ...]:
    """How many samples have their true class among the ``k`` highest scores, for each ``k``.

    logits: (N, C) scores (any monotone transform of them gives the same answer);
    target: (N,) integer class indices in [0, C).
    """
    scores, labels = _host_array(logits), _host_array(target)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise OpError(f"accuracy: expected logits (N, C) and target (N,), got logits "
                      f"{scores.shape} and target {labels.shape}")
    n_classes = scores.shape[1]
    if any(not 1 <= k <= n_classes for k in topk):
        raise OpError(f"accuracy: every k in topk={tuple(topk)} must lie in [1, C={n_classes}] "
                      f"for logits {scores.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise OpError(f"accuracy: target classes must lie in [0, {n_classes}), got "
                      f"{labels.min()}..{labels.max()}")
    # The rank of the true class: how many classes score strictly higher than it.
    true_scores = np.take_along_axis(scores, labels[:, None].astype(np.int64), axis=1)
    rank = (scores > true_scores).sum(axis=1)
    return tuple(int((rank < k).sum()) for k in topk)


def accuracy(logits, target, topk=(1, 5)):
    """Top-k accuracy as a fraction in [0, 1]: ``(top1, top5)`` for the default ``topk``.

    A sample counts as correct for ``k`` when fewer than ``k`` classes score strictly higher
    than its true class (a tie with the true class does not push it out of the top k).
    An int ``topk`` gives a single float.

    >>> accuracy(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), np.array([1, 2]), topk=(1, 2))
    (0.5, 1.0)
    """
    single = is_integer(topk)
    if not single and not isinstance(topk, (tuple, list)):
        raise ArgumentTypeError(f"accuracy: topk must be an int or a tuple of ints, got "
                                f"{type(topk).__name__} {topk!r}")
    ks = tuple(integer("accuracy", "topk", k, minimum=1) for k in ((topk,) if single else topk))
    counts = topk_correct(logits, target, ks)
    n = _host_array(target).shape[0]
    if n == 0:
        raise OpError("accuracy: no samples (target has shape (0,)); an accuracy over no "
                      "samples means nothing")
    fractions = tuple(c / n for c in counts)
    return fractions[0] if single else fractions


class RunningMean:
    """The sample-weighted mean of per-batch values, e.g. the loss over an epoch so far."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def add(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += n

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")
