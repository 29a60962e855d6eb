"""Reference activations: one element at a time, written exactly as the scalar formula reads.

Every activation has a forward and a backward kernel:

* ``<name>_forward(x, ...) -> y``
* ``<name>_backward(x_or_y, gy, ...) -> gx`` with ``gx = gy * dy/dx`` element by element.

A backward takes whichever of ``x`` and ``y`` its derivative is written in: ReLU, leaky ReLU
and ELU ask for ``x``; sigmoid (``y (1 - y)``) and tanh (``1 - y^2``) ask for ``y``. Arrays
are NumPy arrays of any shape; outputs have the dtype of the input. Slow on purpose: these
loops are the ground truth that ``cnnlite.cpu.activation`` is tested against.
"""
import math

import numpy as np


def relu_forward(x):
    """y = x if x > 0 else 0"""
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] if x[i] > 0 else 0
    return y


def relu_backward(x, gy):
    """dy/dx = 1 if x > 0 else 0"""
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] > 0 else 0
    return gx


def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope * x"""
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] if x[i] > 0 else negative_slope * x[i]
    return y


def leaky_relu_backward(x, gy, negative_slope):
    """dy/dx = 1 if x > 0 else negative_slope"""
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] > 0 else negative_slope * gy[i]
    return gx


def elu_forward(x, alpha):
    """y = x if x > 0 else alpha * (e^x - 1)

    ``expm1(x)`` is e^x - 1 computed without the cancellation that ``exp(x) - 1`` suffers
    for x near 0.
    """
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = x[i] if x[i] > 0 else alpha * math.expm1(x[i])
    return y


def elu_backward(x, gy, alpha):
    """dy/dx = 1 if x > 0 else alpha * e^x"""
    gx = np.empty_like(gy)
    for i in np.ndindex(x.shape):
        gx[i] = gy[i] if x[i] > 0 else gy[i] * alpha * math.exp(x[i])
    return gx


def sigmoid_forward(x):
    """y = 1 / (1 + e^-x)

    For x < 0 the same value is written e^x / (1 + e^x), so that the exponential never
    overflows (e^-x for x = -1000 would).
    """
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        if x[i] >= 0:
            y[i] = 1 / (1 + math.exp(-x[i]))
        else:
            e = math.exp(x[i])
            y[i] = e / (1 + e)
    return y


def sigmoid_backward(y, gy):
    """dy/dx = y (1 - y), written in the forward's output y"""
    gx = np.empty_like(gy)
    for i in np.ndindex(y.shape):
        gx[i] = gy[i] * y[i] * (1 - y[i])
    return gx


def tanh_forward(x):
    """y = (e^x - e^-x) / (e^x + e^-x)"""
    y = np.empty_like(x)
    for i in np.ndindex(x.shape):
        y[i] = math.tanh(x[i])
    return y


def tanh_backward(y, gy):
    """dy/dx = 1 - y^2, written in the forward's output y"""
    gx = np.empty_like(gy)
    for i in np.ndindex(y.shape):
        gx[i] = gy[i] * (1 - y[i] * y[i])
    return gx


KERNELS = {
    "relu_forward": relu_forward,
    "relu_backward": relu_backward,
    "leaky_relu_forward": leaky_relu_forward,
    "leaky_relu_backward": leaky_relu_backward,
    "elu_forward": elu_forward,
    "elu_backward": elu_backward,
    "sigmoid_forward": sigmoid_forward,
    "sigmoid_backward": sigmoid_backward,
    "tanh_forward": tanh_forward,
    "tanh_backward": tanh_backward,
}
