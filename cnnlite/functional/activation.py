"""Activations (non-linearities), each a Function with its derivative next to its formula.

The element-wise hot ones (relu, leaky_relu, elu, sigmoid, tanh, and selu / scaled_tanh /
softplus built on them) compute through the kernel registry: ``backend.kernel(name, x)`` gives
the per-element loops of ``cnnlite.reference.activation`` inside ``backend.use_reference()``
and the vectorised ``cnnlite.cpu.activation`` otherwise.

The non-linearities compared by Mishkin et al. on ImageNet are all here: ReLU, VLReLU (leaky
ReLU with a large slope), RReLU, PReLU, ELU, SELU, sigmoid, tanh, maxout, APL and the shifted
softplus.
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import backend, validate
from cnnlite.autograd import Function
from cnnlite.errors import OpError
from cnnlite.functional.dropout import random_generator
from cnnlite.functional.math import sum_to
from cnnlite.tensor import Tensor

__all__ = ["relu", "leaky_relu", "rrelu", "prelu", "elu", "selu", "sigmoid", "tanh",
           "scaled_tanh", "softplus", "shifted_softplus", "maxout", "apl"]

# The fixed point constants of SELU (Klambauer et al.): with them, activations of zero mean and
# unit variance keep zero mean and unit variance through a layer.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# LeCun's scaled tanh: f(1) = 1 and f(-1) = -1, with the largest curvature near |x| = 1.
SCALED_TANH_A = 1.7159
SCALED_TANH_S = 2.0 / 3.0

_default_rng = np.random.default_rng()


# --- the ReLU family -----------------------------------------------------------------------------

class ReLU(Function):
    """y = max(0, x);  dy/dx = 1 if x > 0 else 0.   x: any shape"""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.kernel("relu_forward", x)(x)

    def backward(self, gy):
        (x,) = self.saved
        return backend.kernel("relu_backward", x)(x, gy)


class LeakyReLU(Function):
    """y = x if x > 0 else slope * x;  dy/dx = 1 if x > 0 else slope.   x: any shape"""

    def __init__(self, negative_slope):
        self.negative_slope = negative_slope

    def forward(self, x):
        self.save_for_backward(x)
        return backend.kernel("leaky_relu_forward", x)(x, self.negative_slope)

    def backward(self, gy):
        (x,) = self.saved
        return backend.kernel("leaky_relu_backward", x)(x, gy, self.negative_slope)


class RReLUTraining(Function):
    """y = x if x >= 0 else r * x, with one slope r ~ U(lower, upper) per element;
    dy/dx = 1 if x >= 0 else r.   x: any shape, slopes: x.shape"""

    def __init__(self, slopes):
        self.slopes = slopes

    def forward(self, x):
        xp = backend.array_module(x)
        factor = xp.where(x >= 0, 1, xp.asarray(self.slopes, dtype=x.dtype))
        self.save_for_backward(factor)
        return factor * x

    def backward(self, gy):
        (factor,) = self.saved
        return factor * gy


class PReLU(Function):
    """y = x if x > 0 else w_c * x, with a learned slope per channel (or one shared slope).

    x: (N, C, ...), weight: (C,) or (1,).  Any x (even 0-d or 1-d) with a weight of shape (1,).
    dy/dx = 1 if x > 0 else w_c;  dy/dw_c = x if x <= 0 else 0, summed over all positions of
    channel c.
    """

    def forward(self, x, weight):
        channels = x.shape[1] if x.ndim >= 2 else 1
        if weight.ndim != 1 or weight.shape[0] not in (1, channels):
            raise OpError(f"prelu: expected weight of shape (1,) or (C,) with C = x.shape[1] = "
                          f"{channels}, got weight {weight.shape} for x {x.shape}")
        self.save_for_backward(x, weight)  # the arrays themselves: in-place changes are caught
        w = weight.reshape(_channel_view_shape(x.ndim, weight.shape[0]))
        return backend.array_module(x).where(x > 0, x, w * x)

    def backward(self, gy):
        x, weight = self.saved
        w = weight.reshape(_channel_view_shape(x.ndim, weight.shape[0]))
        xp = backend.array_module(x)
        gx = xp.where(x > 0, gy, w * gy) if self.needs_input_grad[0] else None
        gw = None
        if self.needs_input_grad[1]:
            gw = sum_to(xp.where(x > 0, 0, x * gy), w.shape).reshape(-1)
        return gx, gw


def _channel_view_shape(ndim, channels):
    """(1, C, 1, ..., 1) with ``ndim`` axes, so that a (C,) array broadcasts along axis 1."""
    shape = [1] * ndim
    if channels > 1:
        shape[1] = channels
    return tuple(shape)


class ELU(Function):
    """y = x if x > 0 else alpha (e^x - 1);  dy/dx = 1 if x > 0 else alpha e^x.   x: any shape"""

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, x):
        self.save_for_backward(x)
        return backend.kernel("elu_forward", x)(x, self.alpha)

    def backward(self, gy):
        (x,) = self.saved
        return backend.kernel("elu_backward", x)(x, gy, self.alpha)


class SELU(Function):
    """y = scale elu(x, alpha);  dy/dx = scale elu'(x, alpha), scale = 1.0507, alpha = 1.6733."""

    def forward(self, x):
        self.save_for_backward(x)
        return SELU_SCALE * backend.kernel("elu_forward", x)(x, SELU_ALPHA)

    def backward(self, gy):
        (x,) = self.saved
        return SELU_SCALE * backend.kernel("elu_backward", x)(x, gy, SELU_ALPHA)


# --- the saturating ones -------------------------------------------------------------------------

class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y).   x: any shape"""

    def forward(self, x):
        y = backend.kernel("sigmoid_forward", x)(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return backend.kernel("sigmoid_backward", y)(y, gy)


class Tanh(Function):
    """y = tanh(x);  dy/dx = 1 - y^2.   x: any shape"""

    def forward(self, x):
        y = backend.kernel("tanh_forward", x)(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return backend.kernel("tanh_backward", y)(y, gy)


class ScaledTanh(Function):
    """y = A tanh(S x) with A = 1.7159, S = 2/3;  dy/dx = A S (1 - tanh^2(S x)).   x: any shape"""

    def forward(self, x):
        t = backend.kernel("tanh_forward", x)(SCALED_TANH_S * x)
        self.save_for_backward(t)
        return SCALED_TANH_A * t

    def backward(self, gy):
        (t,) = self.saved
        return (SCALED_TANH_A * SCALED_TANH_S) * backend.kernel("tanh_backward", t)(t, gy)


class Softplus(Function):
    """y = log(1 + e^(beta x)) / beta, or y = x where beta x > threshold (there the two agree
    to float precision and the linear form cannot overflow);
    dy/dx = sigmoid(beta x), or 1 where beta x > threshold.   x: any shape

    log(1 + e^z) is computed as ``logaddexp(0, z)``, which never overflows.
    """

    def __init__(self, beta, threshold):
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        self.save_for_backward(x)
        z = self.beta * x
        xp = backend.array_module(x)
        return xp.where(z > self.threshold, x, xp.logaddexp(0, z) / self.beta)

    def backward(self, gy):
        (x,) = self.saved
        z = self.beta * x
        slope = backend.kernel("sigmoid_forward", z)(z)
        return backend.array_module(x).where(z > self.threshold, gy, gy * slope)


class ShiftedSoftplus(Function):
    """y = log(1 + e^x) - log 2, so that y(0) = 0;  dy/dx = sigmoid(x).   x: any shape"""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.array_module(x).logaddexp(0, x) - math.log(2.0)

    def backward(self, gy):
        (x,) = self.saved
        return gy * backend.kernel("sigmoid_forward", x)(x)


# --- the learned piecewise-linear ones -----------------------------------------------------------

class Maxout(Function):
    """Maximum over groups of ``pieces`` consecutive channels.

    x: (N, C, ...) with C = K * pieces -> y: (N, K, ...),
    y[:, k] = max(x[:, k*pieces], ..., x[:, k*pieces + pieces - 1]).
    dy/dx = 1 for the channel that won the maximum of its group, 0 for the others.
    """

    def __init__(self, pieces):
        self.pieces = pieces

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] % self.pieces != 0:
            raise OpError(f"maxout: expected x of shape (N, C, ...) with C divisible by "
                          f"pieces={self.pieces}, got x {x.shape}")
        n, c = x.shape[:2]
        groups = x.reshape(n, c // self.pieces, self.pieces, *x.shape[2:])
        winner = groups.argmax(axis=2)
        self.save_for_backward(winner)
        self.x_shape = x.shape
        return groups.max(axis=2)

    def backward(self, gy):
        (winner,) = self.saved
        xp = backend.array_module(gy)
        piece_index = xp.arange(self.pieces).reshape((1, 1, self.pieces) + (1,) * (gy.ndim - 2))
        won = piece_index == xp.expand_dims(winner, 2)
        return (won * xp.expand_dims(gy, 2)).reshape(self.x_shape)


class APL(Function):
    """Adaptive piecewise linear unit (Agostinelli et al.), S hinges with learned a and b:

        y = max(0, x) + sum_s a_s max(0, b_s - x)

    dy/dx   = [x > 0] - sum_s a_s [b_s - x > 0]
    dy/da_s = max(0, b_s - x)
    dy/db_s = a_s [b_s - x > 0]

    x: (N, C, ...) with a, b: (S, C) (one set of hinges per channel), or x of any shape with
    a, b: (S,) (shared by all channels). Gradients of a and b are summed over the positions
    that share them.
    """

    def forward(self, x, a, b):
        self._check_shapes(x, a, b)
        xp = backend.array_module(x)
        # Hinge parameters get a leading S axis and broadcast against x: (S, 1, C, 1, ...).
        view = (a.shape[0],) + _channel_view_shape(x.ndim, a.shape[1] if a.ndim == 2 else 1)
        self.view = view
        hinge = b.reshape(view) - x                       # (S, *x.shape)
        self.save_for_backward(x, a, hinge)
        return xp.maximum(x, 0) + (a.reshape(view) * xp.maximum(hinge, 0)).sum(axis=0)

    def backward(self, gy):
        x, a, hinge = self.saved
        a_view = a.reshape(self.view)
        xp = backend.array_module(x)
        active = hinge > 0
        gx = ga = gb = None
        if self.needs_input_grad[0]:
            gx = gy * ((x > 0) - (a_view * active).sum(axis=0))
        if self.needs_input_grad[1]:
            ga = sum_to(gy * xp.maximum(hinge, 0), self.view).reshape(a.shape)
        if self.needs_input_grad[2]:
            gb = sum_to(gy * a_view * active, self.view).reshape(a.shape)
        return gx, ga, gb

    def _check_shapes(self, x, a, b):
        per_channel = a.ndim == 2 and x.ndim >= 2 and a.shape[1] == x.shape[1]
        if a.shape != b.shape or not (a.ndim == 1 or per_channel):
            channels = x.shape[1] if x.ndim >= 2 else "none"
            raise OpError(f"apl: expected a and b of one shape, (S, C) with C = x.shape[1] = "
                          f"{channels} or (S,), got a {a.shape}, b {b.shape} for x {x.shape}")


# --- the functional API --------------------------------------------------------------------------

def relu(x: Tensor) -> Tensor:
    """Rectified linear unit, y = max(0, x)."""
    return ReLU()(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """Leaky ReLU, y = x for x > 0 and ``negative_slope * x`` otherwise.

    "Very leaky" ReLU (VLReLU) is the same op with a large slope: 1/3 or 0.5.
    """
    return LeakyReLU(validate.real("leaky_relu", "negative_slope", negative_slope))(x)


def rrelu(x: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          rng: np.random.Generator | None = None) -> Tensor:
    """Randomized leaky ReLU (Xu et al.).

    In training every element draws its own negative slope from U(lower, upper) (from ``rng``,
    by default a module-level generator); in evaluation the slope is the mean,
    (lower + upper) / 2, so the op is ``leaky_relu(x, (lower + upper) / 2)``.
    """
    lower, upper = rrelu_arguments("rrelu", lower, upper)
    rng = random_generator("rrelu", rng)
    if not validate.boolean("rrelu", "training", training):
        return LeakyReLU((lower + upper) / 2).named("rrelu")(x)
    rng = _default_rng if rng is None else rng
    slopes = rng.uniform(lower, upper, size=np.shape(getattr(x, "data", x)))
    return RReLUTraining(slopes)(x)


def rrelu_arguments(where, lower, upper):
    """The checked slopes of rrelu: finite real numbers with lower <= upper."""
    lower, upper = validate.real(where, "lower", lower), validate.real(where, "upper", upper)
    if not lower <= upper:
        raise OpError(f"{where}: expected lower <= upper, got lower={lower}, upper={upper}")
    return lower, upper


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """Parametric ReLU (He et al.): y = x for x > 0 and ``weight[c] * x`` otherwise.

    Parameters
    ----------
    x : Tensor, (N, C, ...)
    weight : Tensor, (C,) with one slope per channel (axis 1), or (1,) shared by all.
    """
    return PReLU()(x, weight)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """Exponential linear unit (Clevert et al.): y = x for x > 0, alpha (e^x - 1) otherwise."""
    return ELU(validate.real("elu", "alpha", alpha))(x)


def selu(x: Tensor) -> Tensor:
    """Scaled ELU (Klambauer et al.): y = 1.0507 * elu(x, alpha=1.6733)."""
    return SELU()(x)


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid, y = 1 / (1 + e^-x), stable for large |x|."""
    return Sigmoid()(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh()(x)


def scaled_tanh(x: Tensor) -> Tensor:
    """LeCun's scaled tanh, y = 1.7159 tanh(2x / 3)."""
    return ScaledTanh()(x)


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """Softplus, y = log(1 + e^(beta x)) / beta; y = x where beta x > threshold."""
    return Softplus(*softplus_arguments("softplus", beta, threshold))(x)


def softplus_arguments(where, beta, threshold):
    """The checked ``beta`` (> 0) and ``threshold`` (finite) of softplus."""
    return (validate.real(where, "beta", beta, above=0.0),
            validate.real(where, "threshold", threshold))


def shifted_softplus(x: Tensor) -> Tensor:
    """Softplus shifted down by log 2 so that it passes through 0: log(1 + e^x) - log 2."""
    return ShiftedSoftplus()(x)


def maxout(x: Tensor, pieces: int) -> Tensor:
    """Maxout over channels (Goodfellow et al.): the maximum of each group of ``pieces``
    consecutive channels.

    x (N, C, ...) -> (N, C / pieces, ...); output channel k is the maximum of input channels
    k*pieces .. k*pieces + pieces - 1. C must be divisible by ``pieces``.
    """
    return Maxout(validate.integer("maxout", "pieces", pieces, minimum=1))(x)


def apl(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Adaptive piecewise linear unit (Agostinelli et al.).

    y = max(0, x) + sum_s a_s max(0, -x + b_s), with S learned hinges.

    Parameters
    ----------
    x : Tensor, (N, C, ...) (any shape when a and b are (S,))
    a : Tensor, (S, C) or (S,): the slopes of the hinges
    b : Tensor, same shape as a: the hinge locations
    """
    return APL()(x, a, b)
