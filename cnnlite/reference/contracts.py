"""What every implementation of a kernel may assume about its arguments, checked in one place.

A kernel takes raw arrays and the numbers that say how to walk them: im2col takes x and the
kernel size, stride, padding and dilation, and fills a column matrix whose shape follows from
them. The numba kernels (``cnnlite.cpu``) and the CUDA kernels (kernels/*.cu) trust those
numbers and index raw memory, which neither numba nor CUDA checks. A column matrix one column
short, an argmax of another shape, a stride of 0, a gradient of another size than its
parameter: each makes a kernel read or write outside its arrays, which is a segfault, or worse,
wrong numbers without a word.

The ops of ``cnnlite.functional`` always pass consistent arguments, but the kernels are public
(``cnnlite.cpu.KERNELS``, the launchers of ``cnnlite.cuda``, the loops of this package). So
every implementation of a kernel first calls the function of this module that has the kernel's
name and arguments: ``contracts.col2im(col, x_shape, kh, kw, stride, padding, dilation)`` at
the top of each col2im. The loops, the numba kernels and the CUDA launchers thus refuse the
same arguments, with an ``OpError`` that names the kernel and the shapes.

Checked: ranks; shapes against each other and against the geometry; dtypes (float32 or float64
for the data, the two types the CUDA kernels are compiled for; int32 for the argmax of max
pooling, as every forward makes it; integers for class targets); that arrays updated in place
are contiguous and writeable; that sizes, strides, paddings and hyper-parameters are exact ints
or finite reals in range (``cnnlite.validate``). A call costs a few microseconds: shapes and a
handful of numbers, no pass over the data. Index arrays whose *values* a kernel follows are the
exception. The class targets of cross-entropy are checked here (a pass over the target, which
is 1/K of the logits); each implementation of ``max_pool2d_backward`` checks its argmax where it
reads it, at no extra cost, and reports with ``index_out_of_range``.
"""
from __future__ import annotations

import numpy as np

from cnnlite import validate
from cnnlite.errors import ArgumentTypeError, OpError

#: The data types every kernel computes in.
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: The largest plane (H * W) a pooling kernel can index: the picked element is an int32.
MAX_PLANE = 2**31 - 1


# ---------------------------------------------------------------------------------------------
# The pieces: arrays, shapes, geometry.

def _shape(array) -> tuple:
    return tuple(array.shape)


def _is_array(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "ndim")


def _array(kernel, name, array, layout, dtype_ok, dtype_words) -> tuple:
    """``array``'s shape, after checking that it is an array whose dtype passes ``dtype_ok``
    with as many axes as ``layout`` names (``"N, C, H, W"``; None: any number)."""
    if not _is_array(array):
        raise ArgumentTypeError(f"{kernel}: {name} must be an array, got "
                                f"{type(array).__name__}")
    if not dtype_ok(array.dtype):
        raise OpError(f"{kernel}: {name} must be {dtype_words}, got {array.dtype} {name} "
                      f"{_shape(array)}")
    if layout is not None and array.ndim != layout.count(",") + 1:
        raise OpError(f"{kernel}: {name} must be a ({layout}) array, got {name} "
                      f"{_shape(array)}")
    return _shape(array)


def floats(kernel, name, array, layout=None) -> tuple:
    """A float32 or float64 array (with the axes of ``layout``); returns its shape."""
    return _array(kernel, name, array, layout, lambda d: d in FLOATS,
                  "a float32 or float64 array")


def reals(kernel, name, array, layout=None) -> tuple:
    """An array of real numbers, any width (a gradient the kernel converts)."""
    return _array(kernel, name, array, layout, lambda d: d.kind in "biuf",
                  "an array of real numbers")


def indices(kernel, name, array, layout=None, dtype=None) -> tuple:
    """An array of integers (of exactly ``dtype`` when given): indices a kernel follows."""
    if dtype is None:
        return _array(kernel, name, array, layout, lambda d: d.kind in "iu",
                      "an array of integers")
    return _array(kernel, name, array, layout, lambda d: d == dtype,
                  f"an array of dtype {np.dtype(dtype)}")


def same_shape(kernel, reference_name, reference_shape, **arrays):
    """Every array of ``arrays`` has ``reference_shape``, the shape of ``reference_name``."""
    for name, array in arrays.items():
        if _shape(array) != tuple(reference_shape):
            raise OpError(f"{kernel}: {name} must have the shape of {reference_name} "
                          f"{tuple(reference_shape)}, got {name} {_shape(array)}")


def updated_in_place(kernel, name, array, like_name, like):
    """``array`` is written through its memory: a contiguous, writeable array of ``like``'s
    shape and dtype."""
    contiguous = array.flags.c_contiguous
    if _shape(array) != _shape(like) or array.dtype != like.dtype or not contiguous:
        raise OpError(f"{kernel}: {name} must be a contiguous {like.dtype} array of "
                      f"{like_name}'s shape {_shape(like)} (it is updated in place), got "
                      f"{_shape(array)} {array.dtype}{'' if contiguous else ', not contiguous'}")
    if not getattr(array.flags, "writeable", True):
        raise OpError(f"{kernel}: {name} {_shape(array)} is read-only, but it is updated in "
                      f"place")


def _channel_vectors(kernel, x_shape, **vectors):
    """Per-channel vectors of shape (C,) for x: (N, C, L)."""
    channels = (x_shape[1],)
    for name, vector in vectors.items():
        if floats(kernel, name, vector) != channels:
            raise OpError(f"{kernel}: {name} must have shape (C,) = {channels} for x "
                          f"{tuple(x_shape)}, got {name} {_shape(vector)}")


def _pair(kernel, name, value, minimum) -> tuple:
    """A (rows, columns) pair of ints >= minimum: the kernels index it, so a lone int, which
    the functional ops accept, is not one here."""
    if not isinstance(value, (tuple, list)):
        raise ArgumentTypeError(f"{kernel}: {name} must be a pair of ints (rows, columns), got "
                                f"{type(value).__name__} {value!r}")
    return validate.pair(kernel, name, value, minimum=minimum)


def _sizes_argument(kernel, name, value, length) -> tuple:
    """A shape given as an argument (``x_shape``): ``length`` ints >= 0."""
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise ArgumentTypeError(f"{kernel}: {name} must be a tuple of {length} ints, got "
                                f"{type(value).__name__} {value!r}")
    return tuple(validate.integer(kernel, f"{name}[{i}]", v, minimum=0)
                 for i, v in enumerate(value))


def _pool_windows(kernel, input_size, kernel_size, stride, padding, output_size, shapes):
    """Pooling windows that the kernels can walk: a kernel and stride of at least 1, padding
    between 0 and half the kernel (so every window holds an input element, which the kernels
    start their maximum with), and no window starting beyond the input."""
    kernel_size = _pair(kernel, "kernel_size", kernel_size, minimum=1)
    stride = _pair(kernel, "stride", stride, minimum=1)
    padding = _pair(kernel, "padding", padding, minimum=0)
    geometry = f"kernel_size {kernel_size}, stride {stride}, padding {padding}"
    if any(2 * p > k for p, k in zip(padding, kernel_size)):
        raise OpError(f"{kernel}: padding must be at most half the kernel_size, got "
                      f"{geometry} ({shapes})")
    for count, size, s, p in zip(output_size, input_size, stride, padding):
        if count > 0 and size == 0:
            raise OpError(f"{kernel}: an output of {tuple(output_size)} windows over an input "
                          f"of {tuple(input_size)} (an axis of size 0) with {geometry}: its "
                          f"windows hold only padding, no element to pool ({shapes})")
        if count > 0 and (count - 1) * s - p >= size:
            raise OpError(f"{kernel}: an output of {tuple(output_size)} windows does not fit "
                          f"an input of {tuple(input_size)} with {geometry}: its last window "
                          f"lies beyond the input ({shapes})")


def _plane_fits_int32(kernel, input_size):
    if input_size[0] * input_size[1] > MAX_PLANE:
        raise OpError(f"{kernel}: planes of {input_size[0]} x {input_size[1]} elements are too "
                      f"large: the index of the picked element is an int32 (at most "
                      f"{MAX_PLANE} elements per plane)")


def _conv_geometry(kernel, x_shape, kh, kw, stride, padding, dilation, shapes) -> tuple:
    """(OH, OW) of a convolution window over x_shape, after checking the geometry."""
    kh = validate.integer(kernel, "kh", kh, minimum=1)
    kw = validate.integer(kernel, "kw", kw, minimum=1)
    stride = _pair(kernel, "stride", stride, minimum=1)
    padding = _pair(kernel, "padding", padding, minimum=0)
    dilation = _pair(kernel, "dilation", dilation, minimum=1)
    output = []
    for axis, (k, s, p, d) in enumerate(zip((kh, kw), stride, padding, dilation)):
        reach, padded = d * (k - 1) + 1, x_shape[2 + axis] + 2 * p
        if reach > padded:
            raise OpError(f"{kernel}: the kernel ({kh}, {kw}) spans {reach} pixels in "
                          f"{('height', 'width')[axis]} (dilation {dilation} included) but the "
                          f"padded input has only {padded} ({shapes}, padding {padding})")
        output.append((padded - reach) // s + 1)
    return tuple(output)


def index_out_of_range(kernel, name, shape, count, bound, where) -> OpError:
    """The error for an index array of ``shape`` holding ``count`` values outside [0, bound):
    raised by the implementations, which find them while they read the array."""
    return OpError(f"{kernel}: {name} {tuple(shape)} holds {count} "
                   f"ind{'ex' if count == 1 else 'ices'} outside {where} (valid: 0 to "
                   f"{bound - 1}); a kernel would write outside its output")


# ---------------------------------------------------------------------------------------------
# im2col / col2im: col: (C*kh*kw, N*OH*OW), see cnnlite.reference.conv.

def im2col(x, kh, kw, stride, padding, dilation):
    x_shape = floats("im2col", "x", x, "N, C, H, W")
    _conv_geometry("im2col", x_shape, kh, kw, stride, padding, dilation, f"x {x_shape}")


def col2im(col, x_shape, kh, kw, stride, padding, dilation):
    col_shape = floats("col2im", "col", col, "C*kh*kw, N*OH*OW")
    N, C, H, W = x_shape = _sizes_argument("col2im", "x_shape", x_shape, 4)
    OH, OW = _conv_geometry("col2im", x_shape, kh, kw, stride, padding, dilation,
                            f"x_shape {x_shape}")
    expected = (C * kh * kw, N * OH * OW)
    if col_shape != expected:
        raise OpError(f"col2im: expected col of shape (C*kh*kw, N*OH*OW) = {expected} for x "
                      f"{x_shape} and kernel ({kh}, {kw}), got col {col_shape}")


# ---------------------------------------------------------------------------------------------
# Pooling: x: (N, C, H, W) -> y: (N, C, OH, OW), see cnnlite.reference.pool.

def max_pool2d_forward(x, kernel_size, stride, padding, output_size):
    N, C, H, W = shape = floats("max_pool2d_forward", "x", x, "N, C, H, W")
    output_size = _pair("max_pool2d_forward", "output_size", output_size, minimum=0)
    _pool_windows("max_pool2d_forward", (H, W), kernel_size, stride, padding, output_size,
                  f"x {shape}")
    _plane_fits_int32("max_pool2d_forward", (H, W))


def max_pool2d_backward(gy, argmax, input_size):
    """The values of argmax are checked by each implementation, as it reads them."""
    gy_shape = floats("max_pool2d_backward", "gy", gy, "N, C, OH, OW")
    indices("max_pool2d_backward", "argmax", argmax, dtype=np.int32)
    if _shape(argmax) != gy_shape:
        raise OpError(f"max_pool2d_backward: expected argmax of gy's shape {gy_shape}, got "
                      f"{_shape(argmax)}")
    input_size = _pair("max_pool2d_backward", "input_size", input_size, minimum=0)
    _plane_fits_int32("max_pool2d_backward", input_size)


def avg_pool2d_forward(x, kernel_size, stride, padding, output_size, count_include_pad):
    N, C, H, W = shape = floats("avg_pool2d_forward", "x", x, "N, C, H, W")
    output_size = _pair("avg_pool2d_forward", "output_size", output_size, minimum=0)
    _pool_windows("avg_pool2d_forward", (H, W), kernel_size, stride, padding, output_size,
                  f"x {shape}")
    validate.boolean("avg_pool2d_forward", "count_include_pad", count_include_pad)


def avg_pool2d_backward(gy, input_size, kernel_size, stride, padding, count_include_pad):
    gy_shape = floats("avg_pool2d_backward", "gy", gy, "N, C, OH, OW")
    input_size = _pair("avg_pool2d_backward", "input_size", input_size, minimum=0)
    _pool_windows("avg_pool2d_backward", input_size, kernel_size, stride, padding,
                  gy_shape[2:], f"gy {gy_shape}, input_size {input_size}")
    validate.boolean("avg_pool2d_backward", "count_include_pad", count_include_pad)


def stochastic_pool2d_sample(x, kernel_size, stride, output_size, uniforms):
    N, C, H, W = shape = floats("stochastic_pool2d_sample", "x", x, "N, C, H, W")
    OH, OW = _pair("stochastic_pool2d_sample", "output_size", output_size, minimum=0)
    _pool_windows("stochastic_pool2d_sample", (H, W), kernel_size, stride, (0, 0), (OH, OW),
                  f"x {shape}")
    _plane_fits_int32("stochastic_pool2d_sample", (H, W))
    if floats("stochastic_pool2d_sample", "uniforms", uniforms) != (N, C, OH, OW):
        raise OpError(f"stochastic_pool2d_sample: expected uniforms of shape {(N, C, OH, OW)} "
                      f"for x {shape}, got {_shape(uniforms)}")


def probability_weighted_pool2d_forward(x, kernel_size, stride, output_size):
    kernel = "probability_weighted_pool2d_forward"
    N, C, H, W = shape = floats(kernel, "x", x, "N, C, H, W")
    output_size = _pair(kernel, "output_size", output_size, minimum=0)
    _pool_windows(kernel, (H, W), kernel_size, stride, (0, 0), output_size, f"x {shape}")


def probability_weighted_pool2d_backward(gy, x, kernel_size, stride):
    kernel = "probability_weighted_pool2d_backward"
    x_shape = floats(kernel, "x", x, "N, C, H, W")
    gy_shape = floats(kernel, "gy", gy, "N, C, OH, OW")
    if gy_shape[:2] != x_shape[:2]:
        raise OpError(f"{kernel}: gy and x must have the same (N, C), got gy {gy_shape} and x "
                      f"{x_shape}")
    _pool_windows(kernel, x_shape[2:], kernel_size, stride, (0, 0), gy_shape[2:],
                  f"gy {gy_shape}, x {x_shape}")


# ---------------------------------------------------------------------------------------------
# Batch norm and LRN on the (N, C, L) view, see cnnlite.reference.norm.

def batch_norm_statistics(x):
    floats("batch_norm_statistics", "x", x, "N, C, L")


def batch_norm_forward(x, mean, inv_std, weight, bias):
    shape = floats("batch_norm_forward", "x", x, "N, C, L")
    _channel_vectors("batch_norm_forward", shape, mean=mean, inv_std=inv_std, weight=weight,
                     bias=bias)


def batch_norm_grad_statistics(gy, x, mean, inv_std):
    shape = floats("batch_norm_grad_statistics", "x", x, "N, C, L")
    floats("batch_norm_grad_statistics", "gy", gy)
    same_shape("batch_norm_grad_statistics", "x", shape, gy=gy)
    _channel_vectors("batch_norm_grad_statistics", shape, mean=mean, inv_std=inv_std)


def batch_norm_backward(gy, x, mean, inv_std, weight, grad_weight, grad_bias):
    shape = floats("batch_norm_backward", "x", x, "N, C, L")
    floats("batch_norm_backward", "gy", gy)
    same_shape("batch_norm_backward", "x", shape, gy=gy)
    _channel_vectors("batch_norm_backward", shape, mean=mean, inv_std=inv_std, weight=weight,
                     grad_weight=grad_weight, grad_bias=grad_bias)


def _lrn_parameters(kernel, size, **numbers):
    validate.integer(kernel, "size", size, minimum=1)
    for name, value in numbers.items():
        validate.real(kernel, name, value)


def lrn_forward(x, size, coefficient, beta, k):
    floats("lrn_forward", "x", x, "N, C, L")
    _lrn_parameters("lrn_forward", size, coefficient=coefficient, beta=beta, k=k)


def lrn_backward(gy, x, denom, factor, size, coefficient, beta):
    shape = floats("lrn_backward", "x", x, "N, C, L")
    for name, array in (("gy", gy), ("denom", denom), ("factor", factor)):
        floats("lrn_backward", name, array)
    same_shape("lrn_backward", "x", shape, gy=gy, denom=denom, factor=factor)
    _lrn_parameters("lrn_backward", size, coefficient=coefficient, beta=beta)


# ---------------------------------------------------------------------------------------------
# Element-wise activations, see cnnlite.reference.activation.

def _activation(kernel, x, **parameters):
    floats(kernel, "x", x)
    for name, value in parameters.items():
        validate.real(kernel, name, value)


def _activation_backward(kernel, input_name, x_or_y, gy, **parameters):
    shape = floats(kernel, input_name, x_or_y)
    floats(kernel, "gy", gy)
    same_shape(kernel, input_name, shape, gy=gy)
    for name, value in parameters.items():
        validate.real(kernel, name, value)


def relu_forward(x):
    _activation("relu_forward", x)


def relu_backward(x, gy):
    _activation_backward("relu_backward", "x", x, gy)


def leaky_relu_forward(x, negative_slope):
    _activation("leaky_relu_forward", x, negative_slope=negative_slope)


def leaky_relu_backward(x, gy, negative_slope):
    _activation_backward("leaky_relu_backward", "x", x, gy, negative_slope=negative_slope)


def elu_forward(x, alpha):
    _activation("elu_forward", x, alpha=alpha)


def elu_backward(x, gy, alpha):
    _activation_backward("elu_backward", "x", x, gy, alpha=alpha)


def sigmoid_forward(x):
    _activation("sigmoid_forward", x)


def sigmoid_backward(y, gy):
    _activation_backward("sigmoid_backward", "y", y, gy)


def tanh_forward(x):
    _activation("tanh_forward", x)


def tanh_backward(y, gy):
    _activation_backward("tanh_backward", "y", y, gy)


# ---------------------------------------------------------------------------------------------
# Dropout, see cnnlite.reference.dropout.

def dropout_forward(x, p, seed):
    floats("dropout_forward", "x", x)
    validate.probability("dropout_forward", "p", p)
    validate.integer("dropout_forward", "seed", seed, maximum=None)


# ---------------------------------------------------------------------------------------------
# Softmax and cross-entropy, see cnnlite.reference.softmax. The axis's range is checked where
# the implementations cut the array into rows (``rows``); here only that it is an int.

def _along_axis(kernel, axis, *arrays):
    names = ("x",) if len(arrays) == 1 else ("y", "gy")
    shape = floats(kernel, names[0], arrays[0])
    for name, array in zip(names[1:], arrays[1:]):
        floats(kernel, name, array)
        same_shape(kernel, names[0], shape, **{name: array})
    validate.integer(kernel, "axis", axis, maximum=None)


def softmax_forward(x, axis):
    _along_axis("softmax_forward", axis, x)


def log_softmax_forward(x, axis):
    _along_axis("log_softmax_forward", axis, x)


def softmax_backward(y, gy, axis):
    _along_axis("softmax_backward", axis, y, gy)


def log_softmax_backward(y, gy, axis):
    _along_axis("log_softmax_backward", axis, y, gy)


def _class_targets(op, logits_name, logits, target, label_smoothing):
    """Logits (N, K, ...) (or one sample (K,)) and integer targets in [0, K) of the logits'
    shape without the class axis."""
    shape = floats(op, logits_name, logits)
    if not shape:
        raise OpError(f"{op}: {logits_name} must have a class axis, got a 0-d array")
    indices(op, "target", target)
    axis = 1 if len(shape) >= 2 else 0
    expected = shape[:axis] + shape[axis + 1:]
    if _shape(target) != expected:
        raise OpError(f"{op}: expected target of shape {expected} for {logits_name} {shape}, "
                      f"got {_shape(target)}")
    classes = shape[axis]
    if target.size and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise OpError(f"{op}: target holds class indices in [0, {classes}) for "
                      f"{logits_name} {shape}, got values from {int(target.min())} to "
                      f"{int(target.max())}")
    validate.probability(op, "label_smoothing", label_smoothing)


def cross_entropy_forward(logits, target, label_smoothing=0.0):
    _class_targets("cross_entropy", "logits", logits, target, label_smoothing)


def cross_entropy_backward(log_probs, target, gloss, label_smoothing=0.0):
    _class_targets("cross_entropy_backward", "log_probs", log_probs, target, label_smoothing)
    gloss_shape = _shape(gloss) if _is_array(gloss) else ()
    if _is_array(gloss):
        reals("cross_entropy_backward", "gloss", gloss)
    else:
        validate.real("cross_entropy_backward", "gloss", gloss)
    try:
        broadcast = np.broadcast_shapes(gloss_shape, _shape(target))
    except ValueError:
        broadcast = None
    if broadcast != _shape(target):
        raise OpError(f"cross_entropy_backward: gloss {gloss_shape} must broadcast to target's "
                      f"shape {_shape(target)}")


# ---------------------------------------------------------------------------------------------
# Optimiser updates, in place, see cnnlite.reference.optim.

def _update(kernel, param, grad, **state):
    """param and the state arrays are written in place; grad must have param's shape (the
    kernels read it flat, element for element)."""
    floats(kernel, "param", param)
    updated_in_place(kernel, "param", param, "param", param)
    for name, array in state.items():
        if not _is_array(array):
            raise ArgumentTypeError(f"{kernel}: {name} must be an array, got "
                                    f"{type(array).__name__}")
        updated_in_place(kernel, name, array, "param", param)
    reals(kernel, "grad", grad)
    same_shape(kernel, "param", _shape(param), grad=grad)


def sgd_momentum_update(param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                        weight_decay=0.0, nesterov=False, first_step=False):
    kernel = "sgd_momentum_update"
    _update(kernel, param, grad, momentum_buffer=momentum_buffer)
    for name, value in (("lr", lr), ("momentum", momentum), ("dampening", dampening),
                        ("weight_decay", weight_decay)):
        validate.real(kernel, name, value)
    validate.boolean(kernel, "nesterov", nesterov)
    validate.boolean(kernel, "first_step", first_step)


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0):
    kernel = "adam_update"
    _update(kernel, param, grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    validate.integer(kernel, "step", step, minimum=1, maximum=None)
    for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
        validate.real(kernel, name, value)
    # 1 - beta^step divides: a beta of 1 would divide by zero.
    validate.real(kernel, "beta1", beta1, minimum=0.0, below=1.0)
    validate.real(kernel, "beta2", beta2, minimum=0.0, below=1.0)


# ---------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3), the numba backend's own kernels, see cnnlite.cpu.winograd.

def _tiles(out_h, out_w):
    return (out_h + 1) // 2, (out_w + 1) // 2


def _winograd_outputs(kernel, x_shape, padding) -> tuple:
    """(OH, OW) of a 3x3 stride-1 convolution of x_shape with ``padding``, at least 1 x 1."""
    ph, pw = _pair(kernel, "padding", padding, minimum=0)
    out = (x_shape[2] + 2 * ph - 2, x_shape[3] + 2 * pw - 2)
    if min(out) < 1:
        raise OpError(f"{kernel}: a 3x3 kernel does not fit x {tuple(x_shape)} with padding "
                      f"{(ph, pw)}")
    return out


def winograd_filter(w):
    if floats("winograd_filter", "w", w, "O, C, 3, 3")[2:] != (3, 3):
        raise OpError(f"winograd_filter: w must be (O, C, 3, 3), got w {_shape(w)}")


def winograd_filter_grad(dU):
    if floats("winograd_filter_grad", "dU", dU, "16, O, C")[0] != 16:
        raise OpError(f"winograd_filter_grad: dU must be (16, O, C), got dU {_shape(dU)}")


def winograd_input(x, padding):
    _winograd_outputs("winograd_input", floats("winograd_input", "x", x, "N, C, H, W"), padding)


def winograd_input_grad(dV, gx, padding):
    N, C, H, W = shape = floats("winograd_input_grad", "gx", gx, "N, C, H, W")
    if not getattr(gx.flags, "writeable", True):
        raise OpError(f"winograd_input_grad: gx {shape} is read-only, but it is written in "
                      f"place")
    TH, TW = _tiles(*_winograd_outputs("winograd_input_grad", shape, padding))
    expected = (16, C, N * TH * TW)
    if floats("winograd_input_grad", "dV", dV, "16, C, P") != expected:
        raise OpError(f"winograd_input_grad: expected dV of shape (16, C, N*TH*TW) = "
                      f"{expected} for gx {shape} and padding {tuple(padding)}, got dV "
                      f"{_shape(dV)}")


def winograd_output(M, bias, y):
    N, O, OH, OW = shape = floats("winograd_output", "y", y, "N, O, OH, OW")
    if not getattr(y.flags, "writeable", True):
        raise OpError(f"winograd_output: y {shape} is read-only, but it is written in place")
    TH, TW = _tiles(OH, OW)
    expected = (16, O, N * TH * TW)
    if floats("winograd_output", "M", M, "16, O, P") != expected:
        raise OpError(f"winograd_output: expected M of shape (16, O, N*TH*TW) = {expected} "
                      f"for y {shape}, got M {_shape(M)}")
    if floats("winograd_output", "bias", bias) != (O,):
        raise OpError(f"winograd_output: expected bias of shape ({O},) for y {shape}, got "
                      f"bias {_shape(bias)}")


def winograd_output_grad(gy):
    floats("winograd_output_grad", "gy", gy, "N, O, OH, OW")
