"""Normalisation layers as ops: batch normalisation and local response normalisation.

Both work channel by channel on inputs ``(N, C, *spatial)`` (channels on axis 1, as PyTorch),
through the ``(N, C, L)`` view that the kernels in ``cnnlite.reference.norm`` (loops) and
``cnnlite.cpu.norm`` (numba) take.
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import backend, validate
from cnnlite.autograd import Function, no_grad
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.functional.math import add, mul
from cnnlite.functional.shape import reshape
from cnnlite.tensor import Tensor, as_tensor

__all__ = ["batch_norm", "local_response_norm"]


def _channel_view(x):
    """The (N, C, L) view the kernels take: L = product of the spatial sizes (1 for (N, C)),
    spelled out because -1 cannot be solved for in an empty batch."""
    xp = backend.array_module(x)
    return xp.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))


def _raw(a):
    return a.data if isinstance(a, Tensor) else a


# ---------------------------------------------------------------------------------------------
# Batch normalisation.


class BatchNorm(Function):
    """Batch normalisation of x: (N, C, L) per channel c, over the M = N * L values of c.

    Training (batch statistics; ``var`` is the biased variance, divided by M)::

        mean = (1/M) sum x,   var = (1/M) sum (x - mean)^2,   inv_std = 1 / sqrt(var + eps)
        x_hat = (x - mean) * inv_std,   y = weight * x_hat + bias

    Evaluation: the same with ``mean, var`` fixed (the running statistics, given to __init__).

    Backward, with ``gx_hat = gy * weight``::

        grad_bias = sum(gy),   grad_weight = sum(gy * x_hat)
        evaluation:  gx = gx_hat * inv_std
        training:    gx = (1/M) * inv_std
                          * (M * gx_hat - sum(gx_hat) - x_hat * sum(gx_hat * x_hat))

    The training formula is the evaluation one minus two corrections: every x moves the mean
    (shifting all x_hat of its channel by the same amount, hence ``- sum(gx_hat)``) and the
    variance (scaling them, hence ``- x_hat * sum(gx_hat * x_hat)``). After the forward pass
    ``self.batch_mean`` and ``self.batch_var`` hold the batch statistics (training only;
    ``batch_norm`` updates the running statistics from them).
    """

    def __init__(self, use_batch_statistics: bool, eps: float, running_mean=None,
                 running_var=None):
        self.use_batch_statistics = use_batch_statistics
        self.eps = eps
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, x, weight, bias):
        xp = backend.array_module(x)
        x3 = _channel_view(x)
        if self.use_batch_statistics:
            mean, var = backend.kernel("batch_norm_statistics", x3)(x3)
            self.batch_mean, self.batch_var = mean, var
        else:
            # Copies: the running statistics may change before backward runs.
            mean = xp.array(self.running_mean, dtype=x.dtype)
            var = xp.array(self.running_var, dtype=x.dtype)
        inv_std = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        y = backend.kernel("batch_norm_forward", x3)(x3, mean, inv_std, weight, bias)
        self.save_for_backward(x, weight, mean, inv_std)
        return y.reshape(x.shape)

    def backward(self, gy):
        x, weight, mean, inv_std = self.saved
        x3, gy3 = _channel_view(x), _channel_view(gy)
        grad_bias, grad_weight = backend.kernel("batch_norm_grad_statistics", gy3)(
            gy3, x3, mean, inv_std)
        if not self.needs_input_grad[0]:
            gx = None
        elif self.use_batch_statistics:
            gx = backend.kernel("batch_norm_backward", gy3)(
                gy3, x3, mean, inv_std, weight, grad_weight, grad_bias).reshape(x.shape)
        else:
            gx = (gy3 * (weight * inv_std)[:, None]).reshape(x.shape)
        return (gx,
                grad_weight if self.needs_input_grad[1] else None,
                grad_bias if self.needs_input_grad[2] else None)


def _check_channel_vector(name, value, x_shape):
    if value is not None and tuple(np.shape(_raw(value))) != (x_shape[1],):
        raise OpError(f"batch_norm: expected {name} of shape (C,) = ({x_shape[1]},) for x "
                      f"{x_shape}, got {name} {tuple(np.shape(_raw(value)))}")


def _check_running(name, value):
    """A running statistic must be a float32 or float64 array or Tensor: it is averaged in
    place, and an integer or bool array would truncate every update (a running_var of ones
    becomes 0 after one step), a complex or object one would not hold a real average. A list
    is refused too, not converted: training could not update it in place, and a statistic
    that silently stays as it was is worse than an error."""
    if value is None:
        return
    raw = _raw(value)
    dtype = getattr(raw, "dtype", None)
    if dtype is None:
        raise ArgumentTypeError(f"batch_norm: {name} must be a float32 or float64 array or "
                                f"Tensor (it is updated in place), got {type(value).__name__}")
    if dtype not in (np.float32, np.float64):
        raise ArgumentTypeError(f"batch_norm: {name} has dtype {dtype}; running statistics "
                                f"must be float32 or float64 (they are averaged in place)")


def _update_running(running, batch_value, momentum):
    """running <- (1 - momentum) * running + momentum * batch_value, in place."""
    if running is None:
        return
    xp = backend.array_module(_raw(running))
    new = (1 - momentum) * _raw(running) + momentum * xp.asarray(batch_value, dtype=np.float64)
    if isinstance(running, Tensor):
        with no_grad():
            running.copy_(new)  # copy_ bumps the tensor's version, as any in-place change does
    else:
        running[...] = new


def batch_norm_arguments(where, momentum, eps):
    """The checked ``momentum`` (in [0, 1]) and ``eps`` (> 0: with 0, a constant channel
    divides by zero) of batch normalisation."""
    return (validate.probability(where, "momentum", momentum),
            validate.real(where, "eps", eps, above=0.0))


def _empty_batch(x, weight, bias):
    """Batch normalisation of an empty x (N = 0, or a spatial size 0): no statistics to take,
    so, as in PyTorch, ``y = x * weight + bias`` (empty), weight and bias get zero gradients,
    and the running statistics stay as they are."""
    view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    y = x if weight is None else mul(x, reshape(weight, view))
    y = y if bias is None else add(y, reshape(bias, view))
    return y.clone() if y is x else y


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over the batch and spatial axes, per channel (axis 1).

    Parameters
    ----------
    x : Tensor, (N, C), (N, C, L) or (N, C, H, W)
    running_mean, running_var : Tensor, ndarray or None, (C,)
        The running statistics. In training they are updated in place::

            running_mean <- (1 - momentum) * running_mean + momentum * batch_mean
            running_var  <- (1 - momentum) * running_var  + momentum * batch_var * M / (M - 1)

        (the running variance takes the *unbiased* batch variance, while the output is
        normalised with the biased one; M = N * H * W values per channel). In evaluation the
        output is normalised with them. When both are None the batch statistics are used even
        in evaluation, and nothing is updated.
    weight, bias : Tensor or None, (C,)
        The affine map ``y = weight * x_hat + bias`` (gamma and beta); None means 1 and 0.
    training : bool
        Normalise with the batch statistics (and update the running ones) or with the running
        statistics.
    momentum, eps : float
        Weight of the new batch in the running averages; added to the variance under the root.

    Returns
    -------
    Tensor of x's shape. See ``BatchNorm`` for the gradient.
    """
    x = as_tensor(x, op_name="batch_norm")
    training = validate.boolean("batch_norm", "training", training)
    momentum, eps = batch_norm_arguments("batch_norm", momentum, eps)
    shape = x.shape
    if x.ndim < 2:
        raise OpError(f"batch_norm: expected x of shape (N, C) or (N, C, H, W), got {shape}")
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        _check_channel_vector(name, value, shape)
    _check_running("running_mean", running_mean)
    _check_running("running_var", running_var)
    if (running_mean is None) != (running_var is None):
        raise OpError(f"batch_norm: give both running_mean and running_var or neither, for x "
                      f"{shape}")
    if x.size == 0:
        return _empty_batch(x, weight, bias)
    use_batch_statistics = training or running_mean is None
    values_per_channel = x.size // shape[1]
    if use_batch_statistics and values_per_channel < 2:
        raise OpError(f"batch_norm: batch statistics need more than 1 value per channel, got x "
                      f"{shape}")

    xp = backend.array_module(x.data)
    C = shape[1]
    weight = Tensor(xp.ones(C, dtype=x.dtype)) if weight is None else weight
    bias = Tensor(xp.zeros(C, dtype=x.dtype)) if bias is None else bias
    function = BatchNorm(use_batch_statistics, eps, _raw(running_mean), _raw(running_var))
    y = function(x, weight, bias)
    if training:
        unbiased = values_per_channel / (values_per_channel - 1)
        _update_running(running_mean, function.batch_mean, momentum)
        _update_running(running_var, function.batch_var * unbiased, momentum)
    return y


# ---------------------------------------------------------------------------------------------
# Local response normalisation.


class LocalResponseNorm(Function):
    """Local response normalisation across channels.  x: (N, C, L) -> y: (N, C, L)::

        denom[c] = k + coefficient * sum_{j = c - size//2}^{c + (size-1)//2} x[j]^2   (zero padded)
        y[c] = x[c] * denom[c]^(-beta)

    Backward: y[c] depends on x[c] directly and on every x[j] of its window through denom[c]::

        gx[j] = gy[j] denom[j]^(-beta)
                - 2 beta coefficient x[j] sum_{c : j in window(c)} gy[c] x[c] denom[c]^(-beta-1)
    """

    def __init__(self, size: int, coefficient: float, beta: float, k: float):
        self.size, self.coefficient, self.beta, self.k = size, coefficient, beta, k

    def forward(self, x):
        x3 = _channel_view(x)
        y, denom, factor = backend.kernel("lrn_forward", x3)(
            x3, self.size, self.coefficient, self.beta, self.k)
        self.save_for_backward(x, denom, factor)
        return y.reshape(x.shape)

    def backward(self, gy):
        x, denom, factor = self.saved
        gy3 = _channel_view(gy)
        gx = backend.kernel("lrn_backward", gy3)(
            gy3, _channel_view(x), denom, factor, self.size, self.coefficient, self.beta)
        return gx.reshape(x.shape)


def local_response_norm(x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                        alpha_over_size: bool = True) -> Tensor:
    """Local response normalisation: each value divided by the energy of nearby channels.

    ``y[n, c] = x[n, c] * (k + a * sum_{j = c - size//2}^{c + (size-1)//2} x[n, j]^2)^(-beta)``

    with channels outside 0..C-1 counting as zero. For odd ``size`` the window is centred on c;
    for even ``size`` it reaches one channel further back than forward (size 4: c-2 .. c+1), as
    in PyTorch.

    Two conventions for the coefficient ``a`` are in use:

    * ``alpha_over_size=True`` (the default): ``a = alpha / size``, alpha times the *mean* of
      the squares. PyTorch's ``local_response_norm`` and Caffe's LRN layer (ACROSS_CHANNELS)
      do this.
    * ``alpha_over_size=False``: ``a = alpha``, alpha times the *sum* of the squares, as written
      in the AlexNet paper (k=2, size=5, alpha=1e-4, beta=0.75) and in TensorFlow. It equals the
      default convention with ``alpha * size`` in place of ``alpha``.

    Parameters
    ----------
    x : Tensor, (N, C, L) or (N, C, H, W) (any rank >= 3; channels on axis 1)
    size : int >= 1
        Number of channels in the window.
    alpha, beta, k : float
    alpha_over_size : bool
        Divide alpha by size (PyTorch, Caffe) or not (AlexNet paper, TensorFlow).
    """
    x = as_tensor(x, op_name="local_response_norm")
    if x.ndim < 3:
        raise OpError(f"local_response_norm: expected x of shape (N, C, H, W) or (N, C, L), "
                      f"got {x.shape}")
    size, alpha, beta, k, alpha_over_size = lrn_arguments(
        "local_response_norm", size, alpha, beta, k, alpha_over_size)
    coefficient = alpha / size if alpha_over_size else alpha
    return LocalResponseNorm(size, coefficient, beta, k)(x)


def lrn_arguments(where, size, alpha, beta, k, alpha_over_size):
    """The checked arguments of local response normalisation: ``size`` an int >= 1, ``alpha``,
    ``beta`` and ``k`` finite real numbers, ``alpha_over_size`` a bool."""
    return (validate.integer(where, "size", size, minimum=1),
            validate.real(where, "alpha", alpha), validate.real(where, "beta", beta),
            validate.real(where, "k", k), validate.boolean(where, "alpha_over_size",
                                                           alpha_over_size))
