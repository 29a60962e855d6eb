"""Launchers of kernels/softmax.cu: softmax, log-softmax and cross-entropy along one axis.

The kernels view an array as (outer, K, inner) with the K classes on the middle axis; a row
is the K values of one (outer, inner) position. ``_launch_along_rows`` picks the kernel: one
block per row when a row is contiguous (inner == 1), one thread per row (the ``_strided``
kernels) when its values lie ``inner`` apart, so that neighbouring threads read neighbouring
addresses (kernels/softmax.cu says why). Empty inputs launch nothing. The formulas are those
of ``cnnlite.functional.loss``:

* ``softmax_forward(x, axis) -> y``,
  ``softmax_backward(y, gy, axis) -> gx = y (gy - sum(gy y))``
* ``log_softmax_forward(x, axis) -> y``,
  ``log_softmax_backward(y, gy, axis) -> gx = gy - e^y sum(gy)``
* ``cross_entropy_forward(logits, target, label_smoothing) -> loss, log_probs`` with the
  classes on axis 1 of (N, K, ...) (axis 0 of a single sample (K,)) and integer targets of the
  shape without that axis, in [0, K) (``cnnlite.functional.cross_entropy`` checks them);
  ``cross_entropy_backward(log_probs, target, gloss, label_smoothing) -> glogits``.
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import (float_dtype, int64s, kernel_function, launch,
                                 launch_per_row)
from cnnlite.errors import OpError
from cnnlite.reference import contracts


def _rows(op, shape, axis):
    """(axis, outer, K, inner) for an array of ``shape`` reduced along ``axis``."""
    if not len(shape) or not -len(shape) <= axis < len(shape):
        raise OpError(f"{op}: axis {axis} is out of range for an array of shape {tuple(shape)}")
    axis %= len(shape)
    return axis, math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def one_thread_per_row(rows, K, inner) -> bool:
    """True when the thread-per-row ``_strided`` kernels should run: the rows' values lie
    ``inner`` apart (so neighbouring threads read neighbouring addresses only if each takes a
    row), and there are at least as many rows as values in a row. Few long rows ((1, 10**6, 2)
    along axis 1: 2 threads walking 10**6 values each) go to one block per row, whose reads
    are strided but whose threads share the row."""
    return inner > 1 and rows >= K


def _launch_along_rows(kernel_name, dtype, like, outer, K, inner, arrays, *scalars):
    """Run ``kernel_name`` of kernels/softmax.cu over the outer*inner rows of K values, with
    the arguments ``arrays``, rows, K, inner, ``scalars``: its thread-per-row twin
    ``<kernel_name>_strided`` where ``one_thread_per_row``, else the block-per-row kernel.
    Nothing is launched for no rows or rows of no values: there is nothing to compute, and
    cupy gives an empty array a null pointer."""
    rows = outer * inner
    if rows == 0 or K == 0:
        return
    args = (*arrays, *int64s(rows, K, inner), *scalars)
    if one_thread_per_row(rows, K, inner):
        launch(kernel_function("softmax", f"{kernel_name}_strided", dtype, like), rows, args)
    else:
        launch_per_row(kernel_function("softmax", kernel_name, dtype, like), rows, K, args)


def _along_rows(op, kernel_name, inputs, axis):
    """Run a softmax kernel of kernels/softmax.cu on ``inputs`` (same shape), returning one
    new array of that shape."""
    xp = backend.array_module(*inputs)
    dtype = float_dtype(kernel_name, inputs[-1])
    getattr(contracts, kernel_name)(*inputs, axis)
    inputs = [xp.ascontiguousarray(a, dtype=dtype) for a in inputs]
    _, outer, K, inner = _rows(op, inputs[0].shape, axis)
    out = xp.empty(inputs[0].shape, dtype=dtype)
    _launch_along_rows(kernel_name, dtype, inputs[0], outer, K, inner, (*inputs, out))
    return out


@reports_out_of_memory
def softmax_forward(x, axis):
    """y = e^x / sum(e^x) along ``axis``."""
    return _along_rows("softmax", "softmax_forward", [x], axis)


@reports_out_of_memory
def log_softmax_forward(x, axis):
    """y = x - log(sum(e^x)) along ``axis``."""
    return _along_rows("log_softmax", "log_softmax_forward", [x], axis)


@reports_out_of_memory
def softmax_backward(y, gy, axis):
    """gx = y * (gy - sum(gy * y)) along ``axis``, from softmax's output y."""
    return _along_rows("softmax_backward", "softmax_backward", [y, gy], axis)


@reports_out_of_memory
def log_softmax_backward(y, gy, axis):
    """gx = gy - e^y * sum(gy) along ``axis``, from log-softmax's output y."""
    return _along_rows("log_softmax_backward", "log_softmax_backward", [y, gy], axis)


def _class_rows(op, logits_shape, target):
    """(N, K, inner) of logits with the classes on axis 1 ((K,) is one sample)."""
    axis = 1 if len(logits_shape) >= 2 else 0
    expected = tuple(logits_shape[:axis]) + tuple(logits_shape[axis + 1:])
    if tuple(target.shape) != expected:
        raise OpError(f"{op}: expected target of shape {expected} for logits "
                      f"{tuple(logits_shape)}, got {tuple(target.shape)}")
    return _rows(op, logits_shape, axis)[1:]


@reports_out_of_memory
def cross_entropy_forward(logits, target, label_smoothing=0.0):
    """logits: (N, K, ...), target: (N, ...) -> loss: (N, ...), log_probs: logits' shape."""
    xp = backend.array_module(logits)
    dtype = float_dtype("cross_entropy", logits)
    contracts.cross_entropy_forward(logits, target, label_smoothing)
    logits = xp.ascontiguousarray(logits)
    N, K, inner = _class_rows("cross_entropy", logits.shape, target)
    target = xp.ascontiguousarray(target, dtype=np.int64).reshape(target.shape)
    log_probs = xp.empty(logits.shape, dtype=dtype)
    loss = xp.empty(target.shape, dtype=dtype)
    _launch_along_rows("cross_entropy_forward", dtype, logits, N, K, inner,
                       (logits, target, log_probs, loss), np.float64(label_smoothing))
    return loss, log_probs


@reports_out_of_memory
def cross_entropy_backward(log_probs, target, gloss, label_smoothing=0.0):
    """glogits = (softmax - q) * gloss, q the smoothed one-hot target; gloss broadcasts to
    target's shape. One thread per element of the logits, whatever the class axis (no
    reduction: neighbouring threads take neighbouring elements); none for an empty input."""
    xp = backend.array_module(log_probs)
    dtype = float_dtype("cross_entropy_backward", log_probs)
    contracts.cross_entropy_backward(log_probs, target, gloss, label_smoothing)
    log_probs = xp.ascontiguousarray(log_probs)
    N, K, inner = _class_rows("cross_entropy_backward", log_probs.shape, target)
    target = xp.ascontiguousarray(target, dtype=np.int64).reshape(target.shape)
    gloss = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(gloss, dtype=dtype), target.shape))
    glogits = xp.empty(log_probs.shape, dtype=dtype)
    launch(kernel_function("softmax", "cross_entropy_backward", dtype, log_probs), glogits.size,
           (log_probs, target, gloss, glogits, *int64s(N, K, inner),
            np.float64(label_smoothing)))
    return glogits


KERNELS = {
    "softmax_forward": softmax_forward,
    "log_softmax_forward": log_softmax_forward,
    "softmax_backward": softmax_backward,
    "log_softmax_backward": log_softmax_backward,
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
}
