"""Reference fully connected layer: every output a sum written out term by term.

    y[r, o] = b[o] + sum_i x[r, i] w[o, i]          (y = x @ w^T + b)

for each row r of x (every index of its leading axes) and each output o. Going back, with
gy = dL/dy:

    dy[r, o]/dx[r, i] = w[o, i]   ->  gx[r, i] = sum_o gy[r, o] w[o, i]
    dy[r, o]/dw[o, i] = x[r, i]   ->  gw[o, i] = sum_r gy[r, o] x[r, i]
    dy[r, o]/db[o]    = 1         ->  gb[o]    = sum_r gy[r, o]

The weights are shared by every row, so their gradients sum over the rows.

These loops are NOT dispatched by ``backend.use_reference()`` (they are in no ``KERNELS``):
``cnnlite.functional.conv.Linear`` runs its one vectorised version (a NumPy or cupy matrix
product) on every device. They are the ground truth that tests/test_linear_reference.py compares
it with. Sums are accumulated in Python floats (double) and rounded to the dtype once.
"""
import numpy as np


def linear_forward(x, w, b=None):
    """y = x @ w^T + b.   x: (..., in), w: (out, in), b: (out,) or None -> y: (..., out)"""
    rows, (out, inputs) = x.shape[:-1], w.shape
    y = np.empty(rows + (out,), dtype=x.dtype)
    for r in np.ndindex(rows):
        for o in range(out):
            total = 0.0 if b is None else float(b[o])
            for i in range(inputs):
                total += float(x[r + (i,)]) * float(w[o, i])
            y[r + (o,)] = total
    return y


def linear_backward(x, w, gy):
    """The gradients of x, w and b (the last whether or not the layer has a bias).

    x: (..., in), w: (out, in), gy: (..., out) -> gx: x.shape, gw: w.shape, gb: (out,)
    """
    rows, (out, inputs) = x.shape[:-1], w.shape
    gx = np.empty(x.shape, dtype=gy.dtype)
    for r in np.ndindex(rows):
        for i in range(inputs):
            total = 0.0
            for o in range(out):
                total += float(gy[r + (o,)]) * float(w[o, i])    # dy[r, o]/dx[r, i] = w[o, i]
            gx[r + (i,)] = total
    gw = np.empty(w.shape, dtype=gy.dtype)
    gb = np.empty(out, dtype=gy.dtype)
    for o in range(out):
        for i in range(inputs):
            total = 0.0
            for r in np.ndindex(rows):
                total += float(gy[r + (o,)]) * float(x[r + (i,)])    # dy[r, o]/dw[o, i] = x[r, i]
            gw[o, i] = total
        total = 0.0
        for r in np.ndindex(rows):
            total += float(gy[r + (o,)])                            # dy[r, o]/db[o] = 1
        gb[o] = total
    return gx, gw, gb
