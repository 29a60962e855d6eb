"""The layers that Caffe has and ``cnnlite.nn`` does not name the same way, and Caffe's fillers.

Each is a small ``nn.Module`` built on ``cnnlite.functional``, so autograd differentiates it:

InnerProduct       ``nn.Linear`` that first flattens (N, C, H, W) to (N, C*H*W) (Caffe's axis 1)
ChannelAffine      Caffe's Scale and Bias: ``y = x * weight[c] + bias[c]``
GlobalStatsBatchNorm1d/2d  BatchNorm with ``use_global_stats: true``: always the running
                   averages
Power, Log         ``(shift + scale x)^power`` and ``log_base(shift + scale x)``
Eltwise            SUM (with coefficients), PROD, MAX of several blobs of one shape
Concat, Slice, Split    joining and cutting blobs; Split copies one blob to several tops
CaffeSpatialPyramidPool2d  Caffe's SPP: per level a ceil-mode pooling with Caffe's padding

``fill(tensor, filler, ...)`` applies a ``weight_filler`` / ``bias_filler`` message.
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import functional as F, nn
from cnnlite.errors import OpError
from cnnlite.io.prototxt import Message

__all__ = ["CaffeError", "fill", "InnerProduct", "ChannelAffine", "GlobalStatsBatchNorm1d",
           "GlobalStatsBatchNorm2d", "Power", "Log", "Eltwise", "Concat", "Slice", "Split",
           "CaffeSpatialPyramidPool2d"]


class CaffeError(ValueError):
    """A Caffe definition that cannot be built: the message names the file, line and layer."""


def fill(tensor, filler: Message, default_type: str, default_value: float, rng,
         where: str, caffe_shape: tuple | None = None) -> None:
    """Fill ``tensor`` as Caffe's filler ``filler`` would (a missing filler: ``default_type``).

    ``caffe_shape`` is the shape of Caffe's blob where cnnlite's differs (the fans come from
    it), e.g. (1, 1, kh, kw) for a learned pooling mask that cnnlite keeps as (kh, kw).

    With ``count`` elements and ``shape[0]`` outputs, Caffe's fans are
    ``fan_in = count / shape[0]`` (C * kh * kw for a convolution, the inputs of an inner
    product) and ``fan_out = count / shape[1]``; ``variance_norm`` picks n = fan_in (the
    default), fan_out or their mean (AVERAGE).

    constant  value (default ``default_value``)
    gaussian  N(mean, std^2), mean 0 and std 1 by default
    uniform   U(min, max), 0 and 1 by default
    xavier    U(-sqrt(3 / n), sqrt(3 / n))  (variance 1 / n)
    msra      N(0, 2 / n)                   (He et al.)
    """
    kind = filler.get("type", default_type)
    shape = tuple(caffe_shape or tensor.shape)
    count = math.prod(shape)
    fan_in = count // shape[0] if shape else 1
    fan_out = count // shape[1] if len(shape) > 1 else count
    norm = filler.get("variance_norm", "FAN_IN")
    n = {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}.get(norm)
    if n is None:
        raise CaffeError(f"{where}: unknown variance_norm {norm!r} (FAN_IN, FAN_OUT, AVERAGE)")
    if kind == "constant":
        values = np.full(shape, float(filler.get("value", default_value)), dtype=np.float32)
    elif kind == "gaussian":
        std, mean = float(filler.get("std", 1.0)), float(filler.get("mean", 0.0))
        values = rng.standard_normal(shape, dtype=np.float32) * std + mean
    elif kind == "uniform":
        low, high = float(filler.get("min", 0.0)), float(filler.get("max", 1.0))
        values = rng.random(shape, dtype=np.float32) * (high - low) + low
    elif kind == "xavier":
        bound = math.sqrt(3.0 / n)
        values = rng.random(shape, dtype=np.float32) * (2 * bound) - bound
    elif kind == "msra":
        values = rng.standard_normal(shape, dtype=np.float32) * math.sqrt(2.0 / n)
    else:
        raise CaffeError(f"{where}: filler type {kind!r} is not supported (constant, gaussian, "
                         f"uniform, xavier, msra)")
    # Drawn in float32 and written straight into the array: a fully connected layer of a
    # benchmark net has up to 38M weights, and the nets are built under init.skip_init().
    tensor.data[...] = values.reshape(tensor.shape).astype(tensor.dtype, copy=False)


def _channel_view(param, ndim: int):
    """A (C,) parameter as (1, C, 1, ...) so that it broadcasts over x: (N, C, ...)."""
    return F.reshape(param, (1, param.shape[0]) + (1,) * (ndim - 2))


class InnerProduct(nn.Linear):
    """Caffe's fully connected layer: x: (N, ...) is flattened to (N, D) first, then
    ``y = x @ weight^T + bias`` with weight: (num_output, D)."""

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim > 2:
            x = F.reshape(x, (x.shape[0], math.prod(x.shape[1:])))
        return super().forward(x)


class ChannelAffine(nn.Module):
    """``y = x * weight[c] + bias[c]`` per channel (axis 1) of x: (N, C, ...).

    Caffe's Scale layer (weight, and bias with ``bias_term``) and Bias layer (bias only).
    """

    def __init__(self, channels: int, weight: bool = True, bias: bool = True):
        super().__init__()
        self.channels = channels
        self.register_parameter("weight", nn.Parameter(np.ones(channels, dtype=np.float32))
                                if weight else None)
        self.register_parameter("bias", nn.Parameter(np.zeros(channels, dtype=np.float32))
                                if bias else None)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise self.input_error(f"(N, {self.channels}, ...)", x)
        if self.weight is not None:
            x = x * _channel_view(self.weight, x.ndim)
        if self.bias is not None:
            x = x + _channel_view(self.bias, x.ndim)
        return x

    def extra_repr(self):
        return f"{self.channels}, weight={self.weight is not None}, bias={self.bias is not None}"


class _GlobalStats:
    """Batch normalisation that normalises with the running averages in training too (Caffe's
    ``use_global_stats: true``); the averages are then never updated."""

    def forward(self, x):
        self.check(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


class GlobalStatsBatchNorm1d(_GlobalStats, nn.BatchNorm1d):
    """``use_global_stats: true`` after a fully connected layer: x: (N, C)."""


class GlobalStatsBatchNorm2d(_GlobalStats, nn.BatchNorm2d):
    """``use_global_stats: true`` on feature maps: x: (N, C, H, W)."""


class Power(nn.Module):
    """``y = (shift + scale * x) ^ power``, element-wise (Caffe's Power layer)."""

    def __init__(self, power: float = 1.0, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.power, self.scale, self.shift = float(power), float(scale), float(shift)

    def forward(self, x):
        y = x * self.scale if self.scale != 1 else x
        y = y + self.shift if self.shift != 0 else y
        return y ** self.power if self.power != 1 else y

    def extra_repr(self):
        return f"power={self.power}, scale={self.scale}, shift={self.shift}"


class Log(nn.Module):
    """``y = log_base(shift + scale * x)``; ``base=-1`` means e (Caffe's Log layer)."""

    def __init__(self, base: float = -1.0, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.base, self.scale, self.shift = float(base), float(scale), float(shift)

    def forward(self, x):
        y = F.log(x * self.scale + self.shift)
        return y if self.base == -1 else y * (1.0 / math.log(self.base))

    def extra_repr(self):
        return f"base={self.base}, scale={self.scale}, shift={self.shift}"


class Eltwise(nn.Module):
    """Element-wise combination of k inputs of one shape: ``SUM`` (``sum_i coeffs[i] x_i``,
    coefficients 1 by default), ``PROD`` or ``MAX``. Two convolutions and a MAX are
    Mishkin et al.'s maxout; a max and an average pooling and a SUM their max+avg pooling."""

    def __init__(self, operation: str = "SUM", coeffs=()):
        super().__init__()
        self.operation, self.coeffs = operation, tuple(float(c) for c in coeffs)

    def forward(self, *xs):
        if len({tuple(x.shape) for x in xs}) != 1:
            raise OpError(f"{self.describe()}: expected inputs of one shape, got "
                          f"{[tuple(x.shape) for x in xs]}")
        if self.operation == "SUM":
            coeffs = self.coeffs or (1.0,) * len(xs)
            terms = [x if c == 1 else x * c for x, c in zip(xs, coeffs)]
            result = terms[0]
            for term in terms[1:]:
                result = result + term
            return result
        result = xs[0]
        for x in xs[1:]:
            result = result * x if self.operation == "PROD" else F.maximum(result, x)
        return result

    def extra_repr(self):
        return f"{self.operation}" + (f", coeffs={self.coeffs}" if self.coeffs else "")


class Concat(nn.Module):
    """Join the inputs along ``axis`` (1: channels)."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = axis

    def forward(self, *xs):
        return F.concat(list(xs), axis=self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class Slice(nn.Module):
    """Cut the input along ``axis`` at ``points`` (or into ``parts`` equal pieces)."""

    def __init__(self, points=(), axis: int = 1, parts: int = 2):
        super().__init__()
        self.points, self.axis, self.parts = tuple(points), axis, parts

    def forward(self, x):
        return tuple(F.split(x, list(self.points) if self.points else self.parts, self.axis))

    def extra_repr(self):
        return f"points={self.points}, axis={self.axis}" if self.points else f"parts={self.parts}"


class Split(nn.Module):
    """Hand the same blob to ``copies`` tops (the gradients of the copies add up)."""

    def __init__(self, copies: int):
        super().__init__()
        self.copies = copies

    def forward(self, x):
        return (x,) * self.copies


def spp_level_window(size: int, bins: int) -> tuple[int, int]:
    """Caffe's SPP window for ``bins`` bins along an axis of ``size``: kernel
    ``ceil(size / bins)`` (also the stride) and padding ``(kernel * bins - size + 1) // 2``."""
    kernel = -(-size // bins)
    return kernel, (kernel * bins - size + 1) // 2


class CaffeSpatialPyramidPool2d(nn.Module):
    """Caffe's SPP layer: for level l = 0 .. height-1, pool x: (N, C, H, W) into 2^l x 2^l
    bins (window from ``spp_level_window``, Caffe's ceil-mode sizes), flatten and concatenate:
    (N, C * sum_l 4^l). Level 0 is a global pooling.

    Unlike ``nn.SpatialPyramidPool2d`` (adaptive bins), the padded windows are Caffe's, so a
    trained Caffe model gives the same outputs.
    """

    def __init__(self, pyramid_height: int, mode: str = "max"):
        super().__init__()
        self.pyramid_height, self.mode = pyramid_height, mode

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim != 4:
            raise self.input_error("(N, C, H, W)", x)
        pool = F.max_pool2d if self.mode == "max" else F.avg_pool2d
        pieces = []
        for level in range(self.pyramid_height):
            bins = 2 ** level
            (kh, ph), (kw, pw) = (spp_level_window(n, bins) for n in x.shape[2:])
            pooled = pool(x, (kh, kw), (kh, kw), (ph, pw), True)
            pieces.append(F.reshape(pooled, (x.shape[0], math.prod(pooled.shape[1:]))))
        return F.concat(pieces, axis=1)

    def extra_repr(self):
        return f"pyramid_height={self.pyramid_height}, mode={self.mode!r}"
