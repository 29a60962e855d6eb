"""Fast CPU activations: whole-array NumPy expressions.

Same names, signatures and results as the loops in ``cnnlite.reference.activation`` (read
those first). Element-wise activations are limited by memory traffic, not arithmetic, so
vectorised NumPy is already close to what a compiled loop reaches; numba would add a
compilation pause on first use for little gain.
"""
import numpy as np

from cnnlite.reference import contracts


def relu_forward(x):
    """y = max(0, x)"""
    contracts.relu_forward(x)
    return np.maximum(x, 0)


def relu_backward(x, gy):
    """dy/dx = [x > 0]"""
    contracts.relu_backward(x, gy)
    return np.where(x > 0, gy, 0)


def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope * x"""
    contracts.leaky_relu_forward(x, negative_slope)
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_backward(x, gy, negative_slope):
    """dy/dx = 1 if x > 0 else negative_slope"""
    contracts.leaky_relu_backward(x, gy, negative_slope)
    return np.where(x > 0, gy, negative_slope * gy)


def elu_forward(x, alpha):
    """y = x if x > 0 else alpha * (e^x - 1)"""
    contracts.elu_forward(x, alpha)
    # Clamping at 0 keeps expm1 of large positive x (unused by the where) from overflowing.
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_backward(x, gy, alpha):
    """dy/dx = 1 if x > 0 else alpha * e^x"""
    contracts.elu_backward(x, gy, alpha)
    return np.where(x > 0, gy, gy * alpha * np.exp(np.minimum(x, 0)))


def sigmoid_forward(x):
    """y = 1 / (1 + e^-x), as e^x / (1 + e^x) for x < 0 so that no exponential overflows.

    With e = e^-|x| both branches share one exponential: 1 / (1 + e) for x >= 0 and
    e / (1 + e) for x < 0.
    """
    contracts.sigmoid_forward(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def sigmoid_backward(y, gy):
    """dy/dx = y (1 - y)"""
    contracts.sigmoid_backward(y, gy)
    return gy * y * (1 - y)


def tanh_forward(x):
    """y = tanh(x)"""
    contracts.tanh_forward(x)
    return np.tanh(x)


def tanh_backward(y, gy):
    """dy/dx = 1 - y^2"""
    contracts.tanh_backward(y, gy)
    return gy * (1 - y * y)


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
