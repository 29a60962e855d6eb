"""Fast CPU softmax, log-softmax and cross-entropy: whole-array NumPy on the (outer, K, inner)
view of the input.

Same names, arguments and results as the loops in ``cnnlite.reference.softmax`` (read those
first for the formulas and the row layout). Each row's reduction (its maximum, its sum of
exponentials) is one NumPy reduction over axis 1 of the view, which is a reshape and costs no
copy. The sums are accumulated in float64 whatever the input dtype, as in the loops and the
CUDA kernels, and rounded to the input's dtype once.
"""
import numpy as np

from cnnlite.reference import contracts
from cnnlite.reference.softmax import class_rows, rows


def _log_softmax_rows(x3):
    """log softmax along axis 1 of x3: (outer, K, inner)."""
    if x3.size == 0:  # no rows, or rows of no classes: NumPy's max has nothing to start from
        return np.empty_like(x3)
    shifted = x3 - x3.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True, dtype=np.float64))
    shifted -= log_sum.astype(x3.dtype)
    return shifted


def log_softmax_forward(x, axis):
    """y_k = (x_k - m) - log(sum_j e^(x_j - m)) along ``axis``."""
    contracts.log_softmax_forward(x, axis)
    return _log_softmax_rows(x.reshape(rows("log_softmax", x.shape, axis))).reshape(x.shape)


def softmax_forward(x, axis):
    """y_k = e^(x_k - m) / sum_j e^(x_j - m) along ``axis``."""
    contracts.softmax_forward(x, axis)
    y = _log_softmax_rows(x.reshape(rows("softmax", x.shape, axis)))
    return np.exp(y, out=y).reshape(x.shape)


def softmax_backward(y, gy, axis):
    """gx_k = y_k (gy_k - sum_j gy_j y_j) along ``axis``."""
    contracts.softmax_backward(y, gy, axis)
    shape = rows("softmax_backward", y.shape, axis)
    y3, gy3 = y.reshape(shape), gy.reshape(shape)
    dot = (gy3 * y3).sum(axis=1, keepdims=True, dtype=np.float64).astype(gy.dtype)
    return (y3 * (gy3 - dot)).reshape(y.shape)


def log_softmax_backward(y, gy, axis):
    """gx_k = gy_k - e^(y_k) sum_j gy_j along ``axis``."""
    contracts.log_softmax_backward(y, gy, axis)
    shape = rows("log_softmax_backward", y.shape, axis)
    y3, gy3 = y.reshape(shape), gy.reshape(shape)
    total = gy3.sum(axis=1, keepdims=True, dtype=np.float64).astype(gy.dtype)
    return (gy3 - np.exp(y3) * total).reshape(y.shape)


def cross_entropy_forward(logits, target, label_smoothing=0.0):
    """loss = -(1 - eps) log p_target - eps / K sum_k log p_k per row.
    logits: (N, K, ...), target: (N, ...) -> loss: (N, ...), log_probs: logits' shape."""
    contracts.cross_entropy_forward(logits, target, label_smoothing)
    N, K, inner = class_rows("cross_entropy", logits.shape, target)
    log_probs = _log_softmax_rows(logits.reshape(N, K, inner))
    picked = np.take_along_axis(log_probs, target.reshape(N, 1, inner), axis=1)
    loss = -(1 - label_smoothing) * picked[:, 0, :].astype(np.float64)
    if label_smoothing and K:  # K = 0 leaves no rows (no target fits): nothing to smooth
        loss -= label_smoothing / K * log_probs.sum(axis=1, dtype=np.float64)
    return loss.astype(logits.dtype).reshape(target.shape), log_probs.reshape(logits.shape)


def cross_entropy_backward(log_probs, target, gloss, label_smoothing=0.0):
    """glogits = (p - q) * gloss, p = e^(log_probs), q = (1 - eps) one_hot(target) + eps / K;
    ``gloss`` broadcasts to target's shape."""
    contracts.cross_entropy_backward(log_probs, target, gloss, label_smoothing)
    N, K, inner = class_rows("cross_entropy_backward", log_probs.shape, target)
    dtype = log_probs.dtype
    glogits = np.exp(log_probs.reshape(N, K, inner))
    if K:  # K = 0 leaves no rows (no target fits): nothing to smooth
        glogits -= dtype.type(label_smoothing / K)
    targets = target.reshape(N, 1, inner)
    at_target = np.take_along_axis(glogits, targets, axis=1)
    np.put_along_axis(glogits, targets, at_target - dtype.type(1 - label_smoothing), axis=1)
    glogits *= np.broadcast_to(np.asarray(gloss, dtype=dtype), target.shape).reshape(N, 1, inner)
    return glogits.reshape(log_probs.shape)


KERNELS = {
    "softmax_forward": softmax_forward,
    "log_softmax_forward": log_softmax_forward,
    "softmax_backward": softmax_backward,
    "log_softmax_backward": log_softmax_backward,
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
}
