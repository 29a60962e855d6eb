"""Activation layers: each wraps one op of ``cnnlite.functional.activation`` (and softmax).

Most have no state. PReLU and APL learn their shape; RReLU draws random slopes while training
and uses their mean in evaluation.
"""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F, validate
from cnnlite.functional.activation import rrelu_arguments, softplus_arguments
from cnnlite.functional.dropout import random_generator
from cnnlite.nn import init
from cnnlite.nn.module import Module
from cnnlite.nn.parameter import Parameter

__all__ = ["ReLU", "LeakyReLU", "RReLU", "PReLU", "ELU", "SELU", "ReLU6", "Hardsigmoid",
           "Hardswish", "SiLU", "Sigmoid", "Tanh",
           "ScaledTanh", "Softplus", "ShiftedSoftplus", "Maxout", "APL", "Softmax", "LogSoftmax"]


class ReLU(Module):
    """``y = max(0, x)``, any shape."""

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """``y = x`` for x > 0, ``negative_slope * x`` otherwise. A slope of 1/3 is Mishkin et
    al.'s "very leaky" ReLU (VLReLU)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = validate.real("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class RReLU(Module):
    """Randomised leaky ReLU (Xu et al.): while training, each element's negative slope is
    drawn from U(lower, upper) (from ``rng``); in evaluation the slope is their mean."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3,
                 rng: np.random.Generator | None = None):
        super().__init__()
        self.lower, self.upper = rrelu_arguments("RReLU", lower, upper)
        self.rng = random_generator("RReLU", rng)

    def forward(self, x):
        return F.rrelu(x, self.lower, self.upper, training=self.training, rng=self.rng)

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}"


class PReLU(Module):
    """Parametric ReLU (He et al.): ``y = x`` for x > 0, ``weight[c] * x`` otherwise, with the
    slopes learned.

    Parameters
    ----------
    num_parameters : int
        1 (one slope shared by all channels) or C (one per channel, axis 1).
    init : float
        Initial slope (0.25 in the paper).
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.num_parameters = validate.integer("PReLU", "num_parameters", num_parameters,
                                               minimum=1)
        init = validate.real("PReLU", "init", init)
        self.weight = Parameter(np.full(self.num_parameters, init, dtype=np.float32))

    def forward(self, x):
        x = self.as_input(x)
        if self.num_parameters != 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            raise self.input_error(f"(N, {self.num_parameters}, ...)", x)
        return F.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """``y = x`` for x > 0, ``alpha (e^x - 1)`` otherwise (Clevert et al.)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = validate.real("ELU", "alpha", alpha)

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class SELU(Module):
    """Scaled ELU (Klambauer et al.), self-normalising with LeCun-normal weights."""

    def forward(self, x):
        return F.selu(x)


class Sigmoid(Module):
    """``y = 1 / (1 + e^-x)``."""

    def forward(self, x):
        return F.sigmoid(x)


class ReLU6(Module):
    """``y = min(max(0, x), 6)``, any shape (MobileNet v2)."""

    def forward(self, x):
        return F.relu6(x)


class Hardsigmoid(Module):
    """``y = relu6(x + 3) / 6``, any shape (MobileNet v3's gate)."""

    def forward(self, x):
        return F.hardsigmoid(x)


class Hardswish(Module):
    """``y = x * relu6(x + 3) / 6``, any shape (MobileNet v3)."""

    def forward(self, x):
        return F.hardswish(x)


class SiLU(Module):
    """``y = x * sigmoid(x)``, the swish, any shape (EfficientNet)."""

    def forward(self, x):
        return F.silu(x)


class Tanh(Module):
    """``y = tanh(x)``."""

    def forward(self, x):
        return F.tanh(x)


class ScaledTanh(Module):
    """LeCun's ``y = 1.7159 tanh(2x / 3)``."""

    def forward(self, x):
        return F.scaled_tanh(x)


class Softplus(Module):
    """``y = log(1 + e^(beta x)) / beta``, linear where ``beta x > threshold``."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = softplus_arguments("Softplus", beta, threshold)

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class ShiftedSoftplus(Module):
    """``y = log(1 + e^x) - log 2``: softplus through the origin."""

    def forward(self, x):
        return F.shifted_softplus(x)


class Maxout(Module):
    """The maximum of each group of ``pieces`` consecutive channels (no weights of its own).

    x: (N, C, ...) -> (N, C / pieces, ...). Put it after a layer that makes ``pieces`` times
    the channels, or use ``MaxoutConv2d`` / ``MaxoutLinear``, which do both.
    """

    def __init__(self, pieces: int = 2):
        super().__init__()
        self.pieces = validate.integer("Maxout", "pieces", pieces, minimum=1)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim < 2 or x.shape[1] % self.pieces:
            raise self.input_error(f"(N, C, ...) with C divisible by {self.pieces}", x)
        return F.maxout(x, self.pieces)

    def extra_repr(self):
        return f"pieces={self.pieces}"


class APL(Module):
    """Adaptive piecewise linear unit (Agostinelli et al.) with ``hinges`` learned hinges::

        y = max(0, x) + sum_s a[s, c] * max(0, -x + b[s, c])

    Parameters
    ----------
    num_channels : int or None
        C, for hinges per channel (axis 1), or None for one set shared by all elements.
    hinges : int
        S (Mishkin et al. try 2 and 5).
    rng : numpy Generator, optional
        For the initial values: slopes ``a ~ U(-0.5, 0.5)``, hinge positions ``b ~ N(0, 0.5^2)``
        (the fillers of Mishkin et al.'s APL experiments).
    """

    def __init__(self, num_channels: int | None, hinges: int = 2, rng=None):
        super().__init__()
        if num_channels is not None:
            num_channels = validate.integer("APL", "num_channels", num_channels, minimum=1)
        self.num_channels = num_channels
        self.hinges = validate.integer("APL", "hinges", hinges, minimum=1)
        rng = random_generator("APL", rng)  # checked here, so the error names APL, not init
        shape = (hinges,) if num_channels is None else (hinges, num_channels)
        self.a = Parameter(np.zeros(shape, dtype=np.float32))
        self.b = Parameter(np.zeros(shape, dtype=np.float32))
        init.uniform_(self.a, -0.5, 0.5, rng=rng)
        init.normal_(self.b, 0.0, 0.5, rng=rng)

    def forward(self, x):
        x = self.as_input(x)
        if self.num_channels is not None and (x.ndim < 2 or x.shape[1] != self.num_channels):
            raise self.input_error(f"(N, {self.num_channels}, ...)", x)
        return F.apl(x, self.a, self.b)

    def extra_repr(self):
        return f"num_channels={self.num_channels}, hinges={self.hinges}"


class Softmax(Module):
    """Softmax along ``axis`` (default 1: the classes of (N, K) or (N, K, H, W) scores)."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = validate.integer(type(self).__name__, "axis", axis, minimum=None,
                                     maximum=None)

    def forward(self, x):
        return F.softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    """log(softmax(x)) along ``axis`` (default 1), computed stably."""

    def forward(self, x):
        return F.log_softmax(x, self.axis)
