"""Reference softmax, log-softmax and the losses: one row of K values (or one element) at a time.

An array reduced along ``axis`` is seen as (outer, K, inner): the K values of one row lie along
``axis``, and a row is one (o, i) pair of the axes before and after it. For logits (N, K)
reduced along axis 1 that is N rows of K values; for a segmentation map (N, K, H, W) it is
N*H*W rows, one per pixel.

Every row subtracts its maximum m before exponentiating. That changes nothing (the factor
e^-m cancels) and no e^x can overflow, even for logits of 1000:

    log softmax(x)_k = (x_k - m) - log(sum_j e^(x_j - m))

The kernels (same names and arguments as in ``cnnlite.cpu.softmax`` and ``cnnlite.cuda``):

* ``softmax_forward(x, axis) -> y``;  ``softmax_backward(y, gy, axis) -> gx``
* ``log_softmax_forward(x, axis) -> y``;  ``log_softmax_backward(y, gy, axis) -> gx``
* ``cross_entropy_forward(logits, target, label_smoothing) -> loss, log_probs`` and
  ``cross_entropy_backward(log_probs, target, gloss, label_smoothing) -> glogits``, with the
  classes on axis 1 of (N, K, ...) (axis 0 of a single sample (K,)) and integer targets in
  [0, K) of the shape without the class axis.

``nll_loss`` and ``mse_loss`` follow at the end, with their reductions: loops for ops that have
no kernel (they are not in ``KERNELS``; see the comment above them).

Arithmetic is in Python floats (double), whatever the array's dtype, and each result is
rounded to that dtype once. Slow on purpose: the ground truth for the fast versions.
"""
import math

import numpy as np

from cnnlite.errors import OpError
from cnnlite.reference import contracts


def rows(op, shape, axis):
    """(outer, K, inner) of an array of ``shape`` reduced along ``axis``."""
    if not len(shape) or not -len(shape) <= axis < len(shape):
        raise OpError(f"{op}: axis {axis} is out of range for an array of shape {tuple(shape)}")
    axis %= len(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def class_rows(op, logits_shape, target):
    """(N, K, inner) of logits with the classes on axis 1 ((K,) is one sample); ``target``
    must have the logits' shape without that axis."""
    axis = 1 if len(logits_shape) >= 2 else 0
    expected = tuple(logits_shape[:axis]) + tuple(logits_shape[axis + 1:])
    if tuple(target.shape) != expected:
        raise OpError(f"{op}: expected target of shape {expected} for logits "
                      f"{tuple(logits_shape)}, got {tuple(target.shape)}")
    return rows(op, logits_shape, axis)


def _max_and_log_sum_exp(row):
    """m = max_k row_k and log(sum_k e^(row_k - m)) of one row (a list of floats); a row of
    no classes (K = 0) has nothing to normalise and gives (0, 0), which no value uses."""
    if not row:
        return 0.0, 0.0
    m = max(row)
    total = 0.0
    for value in row:
        total += math.exp(value - m)
    return m, math.log(total)


def _row(array, o, i):
    """Row (o, i) of an (outer, K, inner) array as a list of Python floats."""
    return [float(value) for value in array[o, :, i]]


def softmax_forward(x, axis):
    """y_k = e^(x_k - m) / sum_j e^(x_j - m) along ``axis``."""
    contracts.softmax_forward(x, axis)
    outer, K, inner = rows("softmax", x.shape, axis)
    x3 = x.reshape(outer, K, inner)
    y = np.empty(x3.shape, dtype=x.dtype)
    for o in range(outer):
        for i in range(inner):
            row = _row(x3, o, i)
            m, log_sum = _max_and_log_sum_exp(row)
            for k in range(K):
                y[o, k, i] = math.exp(row[k] - m - log_sum)
    return y.reshape(x.shape)


def log_softmax_forward(x, axis):
    """y_k = (x_k - m) - log(sum_j e^(x_j - m)) along ``axis``."""
    contracts.log_softmax_forward(x, axis)
    outer, K, inner = rows("log_softmax", x.shape, axis)
    x3 = x.reshape(outer, K, inner)
    y = np.empty(x3.shape, dtype=x.dtype)
    for o in range(outer):
        for i in range(inner):
            row = _row(x3, o, i)
            m, log_sum = _max_and_log_sum_exp(row)
            for k in range(K):
                y[o, k, i] = row[k] - m - log_sum
    return y.reshape(x.shape)


def softmax_backward(y, gy, axis):
    """gx_k = y_k (gy_k - sum_j gy_j y_j) along ``axis``, from softmax's output y.

    The Jacobian of softmax is dy_k/dx_j = y_k ([k = j] - y_j); the sum is the part that
    comes from every other output of the row.
    """
    contracts.softmax_backward(y, gy, axis)
    outer, K, inner = rows("softmax_backward", y.shape, axis)
    y3, gy3 = y.reshape(outer, K, inner), gy.reshape(outer, K, inner)
    gx = np.empty(y3.shape, dtype=gy.dtype)
    for o in range(outer):
        for i in range(inner):
            y_row, gy_row = _row(y3, o, i), _row(gy3, o, i)
            dot = 0.0
            for k in range(K):
                dot += gy_row[k] * y_row[k]
            for k in range(K):
                gx[o, k, i] = y_row[k] * (gy_row[k] - dot)
    return gx.reshape(y.shape)


def log_softmax_backward(y, gy, axis):
    """gx_k = gy_k - e^(y_k) sum_j gy_j along ``axis``, from log-softmax's output y.

    The Jacobian of log-softmax is dy_j/dx_k = [j = k] - softmax(x)_k, and softmax = e^y.
    """
    contracts.log_softmax_backward(y, gy, axis)
    outer, K, inner = rows("log_softmax_backward", y.shape, axis)
    y3, gy3 = y.reshape(outer, K, inner), gy.reshape(outer, K, inner)
    gx = np.empty(y3.shape, dtype=gy.dtype)
    for o in range(outer):
        for i in range(inner):
            y_row, gy_row = _row(y3, o, i), _row(gy3, o, i)
            total = 0.0
            for k in range(K):
                total += gy_row[k]
            for k in range(K):
                gx[o, k, i] = gy_row[k] - math.exp(y_row[k]) * total
    return gx.reshape(y.shape)


def cross_entropy_forward(logits, target, label_smoothing=0.0):
    """Cross-entropy of softmax(logits) with the smoothed one-hot target, per row:

        loss = -sum_k q_k log p_k,   q_k = (1 - eps) [k = target] + eps / K

    logits: (N, K, ...), target: (N, ...) -> loss: (N, ...), log_probs = log p: logits' shape
    (what the backward needs).
    """
    contracts.cross_entropy_forward(logits, target, label_smoothing)
    N, K, inner = class_rows("cross_entropy", logits.shape, target)
    logits3 = logits.reshape(N, K, inner)
    targets = target.reshape(N, inner)
    log_probs = np.empty(logits3.shape, dtype=logits.dtype)
    loss = np.empty((N, inner), dtype=logits.dtype)
    eps = label_smoothing
    for n in range(N):
        for i in range(inner):
            row = _row(logits3, n, i)
            m, log_sum = _max_and_log_sum_exp(row)
            log_p = [value - m - log_sum for value in row]
            for k in range(K):
                log_probs[n, k, i] = log_p[k]
            loss[n, i] = -(1 - eps) * log_p[targets[n, i]] - eps / K * sum(log_p)
    return loss.reshape(target.shape), log_probs.reshape(logits.shape)


def cross_entropy_backward(log_probs, target, gloss, label_smoothing=0.0):
    """glogits_k = (p_k - q_k) * gloss of the row, with p = e^(log_probs) and q the smoothed
    one-hot target; ``gloss`` broadcasts to target's shape."""
    contracts.cross_entropy_backward(log_probs, target, gloss, label_smoothing)
    N, K, inner = class_rows("cross_entropy_backward", log_probs.shape, target)
    log_probs3 = log_probs.reshape(N, K, inner)
    targets = target.reshape(N, inner)
    gloss = np.broadcast_to(gloss, target.shape).reshape(N, inner)
    glogits = np.empty(log_probs3.shape, dtype=log_probs.dtype)
    eps = label_smoothing
    for n in range(N):
        for i in range(inner):
            for k in range(K):
                q = (1 - eps if k == targets[n, i] else 0.0) + eps / K
                glogits[n, k, i] = (math.exp(log_probs3[n, k, i]) - q) * float(gloss[n, i])
    return glogits.reshape(log_probs.shape)


# --- nll_loss and mse_loss -----------------------------------------------------------------------
#
# These are NOT in KERNELS, and backend.use_reference() does not reach them: nll_loss and
# mse_loss in cnnlite.functional.loss run their one vectorised NumPy version (cupy on a GPU) on
# every device. The loops below are the ground truth that tests/test_loss.py compares those ops
# with, values and gradients, for each reduction.
#
# Both compute one loss per element first; the reduction then turns those T losses into the
# result: "none" keeps them, "sum" adds them, "mean" adds them and divides by T. Going back,
# each per-element loss t receives dL/dloss_t from the gradient gloss of the result.

def _reduce(losses, reduction):
    """The per-element losses (an array) reduced as ``reduction`` says ("none", "sum", "mean")."""
    if reduction == "none":
        return losses
    total = 0.0
    for value in losses.reshape(-1):
        total += float(value)
    if reduction == "mean":
        total /= losses.size
    return np.asarray(total, dtype=losses.dtype)


def _per_element_upstream(gloss, count, reduction):
    """dL/dloss_t for the ``count`` per-element losses t (C order), from gloss = dL/dresult:

    "none": gloss_t itself (gloss has the losses' shape);  "sum": d(sum)/dloss_t = 1, so gloss;
    "mean": d(sum / T)/dloss_t = 1 / T, so gloss / T.
    """
    if reduction == "none":
        return [float(g) for g in gloss.reshape(-1)]
    g = float(gloss)
    return [g / count if reduction == "mean" else g] * count


def nll_loss_forward(log_probs, target, reduction):
    """Negative log-likelihood of the target classes, per row: loss = -log_probs[target].

    log_probs: (N, K, ...) (or (K,)), target: (N, ...) integer classes -> loss: (N, ...) for
    reduction "none", a 0-d array for "sum" and "mean".
    """
    N, K, inner = class_rows("nll_loss", log_probs.shape, target)
    log_probs3 = log_probs.reshape(N, K, inner)
    targets = target.reshape(N, inner)
    losses = np.empty((N, inner), dtype=log_probs.dtype)
    for n in range(N):
        for i in range(inner):
            losses[n, i] = -log_probs3[n, targets[n, i], i]
    return _reduce(losses.reshape(target.shape), reduction)


def nll_loss_backward(log_probs, target, gloss, reduction):
    """glog_probs[n, k] = -[k = target_n] * dL/dloss_n.

    log_probs (only its shape and dtype: the gradient does not depend on its values): (N, K, ...),
    target: (N, ...), gloss: target's shape for "none", 0-d otherwise -> log_probs' shape.
    """
    N, K, inner = class_rows("nll_loss_backward", log_probs.shape, target)
    targets = target.reshape(N, inner)
    upstream = _per_element_upstream(gloss, N * inner, reduction)
    glog_probs = np.zeros((N, K, inner), dtype=log_probs.dtype)
    for n in range(N):
        for i in range(inner):
            # loss = -log_probs[target]: d/dlog_probs[k] = -1 for k = target, 0 for the others.
            glog_probs[n, targets[n, i], i] = -upstream[n * inner + i]
    return glog_probs.reshape(log_probs.shape)


def mse_loss_forward(prediction, target, reduction):
    """Squared error per element, loss_t = (prediction_t - target_t)^2, then reduced.

    prediction, target: one shape -> that shape for "none", a 0-d array for "sum" and "mean".
    """
    losses = np.empty(prediction.shape, dtype=prediction.dtype)
    for t in np.ndindex(prediction.shape):
        difference = float(prediction[t]) - float(target[t])
        losses[t] = difference * difference
    return _reduce(losses, reduction)


def mse_loss_backward(prediction, target, gloss, reduction):
    """gprediction_t = 2 (prediction_t - target_t) dL/dloss_t and gtarget_t = -gprediction_t.

    prediction, target: one shape; gloss: that shape for "none", 0-d otherwise
    -> gprediction, gtarget: that shape.
    """
    upstream = _per_element_upstream(gloss, prediction.size, reduction)
    gprediction = np.empty(prediction.shape, dtype=prediction.dtype)
    gtarget = np.empty(target.shape, dtype=target.dtype)
    for flat, t in enumerate(np.ndindex(prediction.shape)):
        difference = float(prediction[t]) - float(target[t])
        # loss = d^2 with d = prediction - target: dloss/dprediction = 2 d, dloss/dtarget = -2 d.
        gprediction[t] = 2 * difference * upstream[flat]
        gtarget[t] = -2 * difference * upstream[flat]
    return gprediction, gtarget


KERNELS = {
    "softmax_forward": softmax_forward,
    "log_softmax_forward": log_softmax_forward,
    "softmax_backward": softmax_backward,
    "log_softmax_backward": log_softmax_backward,
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
}
