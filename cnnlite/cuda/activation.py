"""Launchers of kernels/activation.cu: element-wise activations, forward and backward.

Same names, signatures and results as ``cnnlite.reference.activation``: ``<name>_forward(x,
...) -> y`` and ``<name>_backward(x_or_y, gy, ...) -> gx``, for arrays of any shape (the kernels
see them flattened). One thread per element.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch
from cnnlite.reference import contracts


def _forward(name, x, *parameters):
    """y = kernel(x) element by element; ``parameters`` are passed as the kernel's type T."""
    xp = backend.array_module(x)
    dtype = float_dtype(name, x)
    getattr(contracts, name)(x, *parameters)
    y = xp.empty(x.shape, dtype=dtype)  # before ascontiguousarray, which makes a 0-d array 1-d
    x = xp.ascontiguousarray(x)
    launch(kernel_function("activation", name, dtype, x), x.size,
           (x, y, *int64s(x.size), *(dtype.type(p) for p in parameters)))
    return y


def _backward(name, x_or_y, gy, *parameters):
    """gx = gy * dy/dx element by element, the derivative written in x or y."""
    xp = backend.array_module(gy)
    dtype = float_dtype(name, gy)
    getattr(contracts, name)(x_or_y, gy, *parameters)
    gx = xp.empty(gy.shape, dtype=dtype)  # before ascontiguousarray, which makes 0-d 1-d
    gy = xp.ascontiguousarray(gy)
    x_or_y = xp.ascontiguousarray(x_or_y, dtype=dtype)
    launch(kernel_function("activation", name, dtype, gy), gy.size,
           (x_or_y, gy, gx, *int64s(gy.size), *(dtype.type(p) for p in parameters)))
    return gx


@reports_out_of_memory
def relu_forward(x):
    """y = max(0, x)"""
    return _forward("relu_forward", x)


@reports_out_of_memory
def relu_backward(x, gy):
    """dy/dx = [x > 0]"""
    return _backward("relu_backward", x, gy)


@reports_out_of_memory
def leaky_relu_forward(x, negative_slope):
    """y = x if x > 0 else negative_slope * x"""
    return _forward("leaky_relu_forward", x, negative_slope)


@reports_out_of_memory
def leaky_relu_backward(x, gy, negative_slope):
    """dy/dx = 1 if x > 0 else negative_slope"""
    return _backward("leaky_relu_backward", x, gy, negative_slope)


@reports_out_of_memory
def elu_forward(x, alpha):
    """y = x if x > 0 else alpha * (e^x - 1)"""
    return _forward("elu_forward", x, alpha)


@reports_out_of_memory
def elu_backward(x, gy, alpha):
    """dy/dx = 1 if x > 0 else alpha * e^x"""
    return _backward("elu_backward", x, gy, alpha)


@reports_out_of_memory
def sigmoid_forward(x):
    """y = 1 / (1 + e^-x)"""
    return _forward("sigmoid_forward", x)


@reports_out_of_memory
def sigmoid_backward(y, gy):
    """dy/dx = y (1 - y)"""
    return _backward("sigmoid_backward", y, gy)


@reports_out_of_memory
def tanh_forward(x):
    """y = tanh(x)"""
    return _forward("tanh_forward", x)


@reports_out_of_memory
def tanh_backward(y, gy):
    """dy/dx = 1 - y^2"""
    return _backward("tanh_backward", y, gy)


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
