"""Softmax, log-softmax and the losses: cross-entropy, negative log-likelihood, mean squared error.

Softmax, log-softmax and cross-entropy compute through the kernel registry
(``backend.kernel``): the loops of ``cnnlite.reference.softmax`` inside
``backend.use_reference()``, whole-array NumPy in ``cnnlite.cpu.softmax``, and
kernels/softmax.cu on a GPU. All of them subtract the maximum along the axis before
exponentiating: the result is the same (the factor e^-max cancels) and no e^x can overflow,
even for logits of 1000.

The losses are computed per element by a Function (``reduction="none"``); ``"mean"`` and
``"sum"`` then reduce those with the ordinary tensor reductions.

Class-index losses take logits (or log-probabilities) with the classes on axis 1, as in
PyTorch: (N, K) with a target (N,), or (N, K, d1, ...) with a target (N, d1, ...); a single
sample (K,) goes with a 0-d target.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend, validate
from cnnlite.autograd import Function
from cnnlite.errors import OpError
from cnnlite.functional.reduction import normalize_axes
from cnnlite.tensor import Tensor

__all__ = ["softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss"]

REDUCTIONS = ("mean", "sum", "none")


def _along_axes(kernel_name, arrays, axes):
    """Run softmax kernel ``kernel_name`` on ``arrays`` (all of one shape) along ``axes``.

    The kernels reduce along one axis. For several axes (or none, for a 0-d array) the axes
    are first moved to the end and merged into one: softmax over a (C, H*W) view is softmax
    over (C, H, W)'s last two axes.
    """
    if arrays[0].size == 0:
        # Nothing to normalise (an empty batch, or an axis of length 0): an empty result, as
        # in PyTorch, where the kernels' maximum over no values would fail.
        return backend.array_module(*arrays).zeros_like(arrays[-1])
    run = backend.kernel(kernel_name, arrays[0])
    if len(axes) == 1:
        return run(*arrays, axes[0])
    xp = backend.array_module(*arrays)
    ndim = arrays[0].ndim
    ends = tuple(range(ndim - len(axes), ndim))
    moved = [xp.moveaxis(a, axes, ends) for a in arrays]
    merged = [a.reshape(a.shape[:ndim - len(axes)] + (-1,)) for a in moved]
    return xp.moveaxis(run(*merged, -1).reshape(moved[0].shape), ends, axes)


def _softmax_axes(op_name, axis, ndim):
    """``axis`` of softmax/log_softmax as a sorted tuple: one int axis (``validate.axis``), a
    tuple of distinct axes, or None (every axis). A list (``axis=[0]``) is refused, as PyTorch
    refuses it, rather than read as a tuple; a 0-d input takes axis 0 (or -1) as "itself"."""
    if axis is not None and not isinstance(axis, tuple):
        axis = validate.axis(op_name, axis, max(ndim, 1))
    return normalize_axes(axis, ndim, op_name)


class Softmax(Function):
    """y_i = e^(x_i) / sum_j e^(x_j) along ``axis``.

    Jacobian dy_i/dx_j = y_i ([i = j] - y_j), so the vector-Jacobian product is
    dL/dx = y * (dL/dy - sum_j dL/dy_j y_j)   (the sum along ``axis``).   x: any shape

    Kernels ``softmax_forward`` / ``softmax_backward`` (cnnlite.reference.softmax for the
    loops); they subtract the maximum before exponentiating, so no e^x overflows.
    """

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.axes = _softmax_axes("softmax", self.axis, x.ndim)
        y = _along_axes("softmax_forward", [x], self.axes)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return _along_axes("softmax_backward", [y, gy], self.axes)


class LogSoftmax(Function):
    """y_i = x_i - log sum_j e^(x_j) along ``axis``.

    Jacobian dy_i/dx_j = [i = j] - softmax(x)_j, so
    dL/dx = dL/dy - softmax(x) * sum_i dL/dy_i   (the sum along ``axis``).   x: any shape

    Kernels ``log_softmax_forward`` / ``log_softmax_backward``.
    """

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.axes = _softmax_axes("log_softmax", self.axis, x.ndim)
        y = _along_axes("log_softmax_forward", [x], self.axes)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return _along_axes("log_softmax_backward", [y, gy], self.axes)


def _class_axis(ndim):
    """Classes are on axis 1 of a batch (N, K, ...), on axis 0 of a single sample (K,)."""
    return 1 if ndim >= 2 else 0


def _check_target(op_name, scores, target, what):
    """Target must hold integer class indices in [0, K), one per sample (and position)."""
    if scores.ndim == 0:
        raise OpError(f"{op_name}: expected {what} of shape (N, K, ...) or (K,), got a 0-d array")
    axis = _class_axis(scores.ndim)
    expected = scores.shape[:axis] + scores.shape[axis + 1:]
    classes = scores.shape[axis]
    if classes == 0:
        raise OpError(f"{op_name}: {what} {tuple(scores.shape)} has no classes (axis {axis} "
                      f"has length 0)")
    if target.shape != expected:
        raise OpError(f"{op_name}: expected target of shape {expected} (the shape of {what} "
                      f"{tuple(scores.shape)} without the class axis {axis}), got target "
                      f"{tuple(target.shape)}")
    if target.size and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise OpError(f"{op_name}: target holds class indices in [0, {classes}) for {what} "
                      f"{tuple(scores.shape)}, got values from {int(target.min())} to "
                      f"{int(target.max())} (target {tuple(target.shape)})")


def _one_hot(target, classes, axis, dtype):
    """[k = target] laid out along ``axis``: (N, ...) -> (N, K, ...)."""
    xp = backend.array_module(target)
    shape = [1] * (target.ndim + 1)
    shape[axis] = classes
    return (xp.arange(classes).reshape(shape) == xp.expand_dims(target, axis)).astype(dtype)


class CrossEntropy(Function):
    """Per-sample cross-entropy of softmax(logits) with a (smoothed) one-hot target q:

        loss_n = -sum_k q_nk log p_nk,   p = softmax(logits) over the class axis,
        q = (1 - eps) one_hot(target) + eps / K     (eps = label smoothing)

    dloss_n/dlogits_n = p_n - q_n.   logits: (N, K, ...), target: (N, ...) -> loss: (N, ...)

    Kernels ``cross_entropy_forward`` (which also returns log p, for the backward) and
    ``cross_entropy_backward``; q is never formed as an array.
    """

    def __init__(self, target, label_smoothing):
        self.target, self.label_smoothing = target, label_smoothing

    def forward(self, logits):
        target = backend.array_module(logits).asarray(self.target)
        _check_target("cross_entropy", logits, target, "logits")
        loss, log_probs = backend.kernel("cross_entropy_forward", logits)(
            logits, target, self.label_smoothing)
        self.save_for_backward(log_probs, target)
        return loss

    def backward(self, gy):
        log_probs, target = self.saved
        return backend.kernel("cross_entropy_backward", log_probs)(
            log_probs, target, gy, self.label_smoothing)


class NLLLoss(Function):
    """loss_n = -log_probs[n, target_n];  dloss_n/dlog_probs[n, k] = -[k = target_n].

    log_probs: (N, K, ...), target: (N, ...) -> loss: (N, ...)
    """

    def __init__(self, target):
        self.target = target

    def forward(self, log_probs):
        xp = backend.array_module(log_probs)
        target = xp.asarray(self.target)
        _check_target("nll_loss", log_probs, target, "log_probs")
        self.axis = _class_axis(log_probs.ndim)
        self.save_for_backward(_one_hot(target, log_probs.shape[self.axis], self.axis,
                                        log_probs.dtype))
        picked = xp.take_along_axis(log_probs, xp.expand_dims(target, self.axis), self.axis)
        return -picked.squeeze(self.axis)

    def backward(self, gy):
        (one_hot,) = self.saved
        return -one_hot * backend.array_module(gy).expand_dims(gy, self.axis)


class SquaredError(Function):
    """loss = (x - y)^2 element-wise;  dloss/dx = 2 (x - y), dloss/dy = -2 (x - y).

    x, y: the same shape (no broadcasting: a (N, 1) prediction against a (N,) target is almost
    always a bug, so it is reported instead of silently making an (N, N) matrix).
    """

    def forward(self, x, y):
        if x.shape != y.shape:
            raise OpError(f"mse_loss: expected input and target of the same shape, got input "
                          f"{tuple(x.shape)} and target {tuple(y.shape)}")
        difference = x - y
        self.save_for_backward(difference)
        return difference * difference

    def backward(self, gy):
        (difference,) = self.saved
        g = 2 * difference * gy
        return (g if self.needs_input_grad[0] else None,
                -g if self.needs_input_grad[1] else None)


# --- the functional API --------------------------------------------------------------------------

def check_reduction(where, reduction):
    """``reduction`` checked to be one of REDUCTIONS (the losses and the loss layers)."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise OpError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _class_indices(op_name, target):
    """The target as an integer array (from an int array, an int Tensor or a nested list)."""
    array = target.data if isinstance(target, Tensor) else target
    if not hasattr(array, "dtype"):
        array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise OpError(f"{op_name}: expected a target of integer class indices, got dtype "
                      f"{array.dtype} (shape {tuple(array.shape)})")
    return array


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``: non-negative values that sum to 1 along it."""
    return Softmax(axis)(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``, computed without forming softmax (stable)."""
    return LogSoftmax(axis)(x)


def cross_entropy(logits: Tensor, target, label_smoothing: float = 0.0,
                  reduction: str = "mean") -> Tensor:
    """Cross-entropy between softmax(logits) and class-index targets.

    Parameters
    ----------
    logits : Tensor, (N, K) or (N, K, d1, ...) or (K,): unnormalised scores, classes on axis 1.
    target : int array or int Tensor, (N,) or (N, d1, ...) or (): class indices in [0, K).
    label_smoothing : float in [0, 1]
        The target becomes (1 - eps) one_hot + eps / K.
    reduction : "mean" (over all samples and positions), "sum" or "none".
    """
    label_smoothing = validate.probability("cross_entropy", "label_smoothing", label_smoothing)
    check_reduction("cross_entropy", reduction)
    target = _class_indices("cross_entropy", target)
    return _reduce(CrossEntropy(target, label_smoothing)(logits), reduction)


def nll_loss(log_probs: Tensor, target, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class-index targets: -log_probs[n, target[n]].

    ``nll_loss(log_softmax(x, axis=1), t)`` equals ``cross_entropy(x, t)``.
    Shapes as in ``cross_entropy``.
    """
    check_reduction("nll_loss", reduction)
    target = _class_indices("nll_loss", target)
    return _reduce(NLLLoss(target)(log_probs), reduction)


def mse_loss(x: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error, mean((x - y)^2); x and y must have the same shape."""
    check_reduction("mse_loss", reduction)
    return _reduce(SquaredError().named("mse_loss")(x, y), reduction)
