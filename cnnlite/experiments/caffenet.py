"""CaffeNet128, the baseline of Mishkin et al.'s systematic evaluation, with its ablation axes.

The structure of ``caffenet128_lsuv.prototxt`` (input 3 x 128 x 128; channels at width 1)::

    [colour]  learned: 1x1 conv to 10, VLReLU (slope 1/2), 1x1 conv to 3     (optional)
    conv1   96 @ 11x11 / 4           act   pool1 3x3 / 2   LRN     96 x 30 x 30 -> 15 x 15
    conv2  256 @ 5x5, pad 2, group 2 act   pool2 3x3 / 2   LRN    256 x 15 x 15 ->  7 x  7
    conv3  384 @ 3x3, pad 1          act
    conv4  384 @ 3x3, pad 1, group 2 act
    conv5  256 @ 3x3, pad 1, group 2 act   pool5 3x3 / 2          256 x  7 x  7 ->  3 x  3
    fc6   2048  act  dropout
    fc7   2048  act  dropout
    fc8   num_classes

Pooling is Caffe's ceil mode (30 -> 15 -> 7 -> 3; floor mode would give pool5 2 x 2). The
axes follow the benchmark's network files:

* ``activation`` replaces every ReLU. ``maxout`` doubles the outputs of each convolution and
  fully connected layer and keeps the larger of each pair (same width after the maximum);
  ``vlrelu`` is the very leaky ReLU (slope 1/3); ``softplus`` is the shifted softplus
  ``log(1 + e^x) - log 2`` of the paper; ``none`` leaves the layers linear.
* ``batch_norm`` puts a batch normalisation after conv1-5, fc6 and fc7, ``before`` or
  ``after`` the non-linearity; the benchmark's BN networks drop the LRN layers, and so does
  this one.
* ``pooling``: ``max``, ``average``, ``stochastic``, ``max+average`` (the sum of both) or
  ``strided`` (no pooling layers: conv2, conv3 and conv5 get stride 2 instead, and there is
  no LRN, as in ``caffenet128_lsuv_nopool.prototxt``; pool5's output is then 4 x 4).
* ``colour``: ``rgb`` (the images as they are) or ``learned`` (two 1x1 convolutions in
  front, ``caffenet128_lsuv_3_to_10_to_3`` with a VLReLU between them).
* ``width`` multiplies every layer's channels (kept even where a layer has two groups) and
  ``input_size`` is the square side of the input; ``feature_sizes`` says which sizes work.

Small inputs: the 8 x 8 digits become 128 x 128 by repeating each pixel into a 16 x 16 block
(``cnnlite.models.lenet.upsample_nearest``), which keeps every spatial size of the paper's
network; 64 x 64 (blocks of 8) also works and ends in a 1 x 1 pool5.
"""
from __future__ import annotations

import math
from collections import OrderedDict

from cnnlite import nn
from cnnlite.errors import OpError
from cnnlite.validate import integer, probability, real

__all__ = ["CaffeNet128", "caffenet128", "feature_sizes", "check_axes", "ACTIVATIONS", "BATCH_NORM",
           "POOLINGS", "COLOURS", "NON_NEGATIVE_ACTIVATIONS"]

ACTIVATIONS = ("relu", "tanh", "vlrelu", "rrelu", "prelu", "elu", "maxout", "selu", "sigmoid",
               "softplus", "none")
BATCH_NORM = ("none", "before", "after")
POOLINGS = ("max", "average", "stochastic", "max+average", "strided")
COLOURS = ("rgb", "learned")
#: Activations whose outputs are never negative: the only ones stochastic pooling accepts
#: (it draws an element with probability proportional to its value).
NON_NEGATIVE_ACTIVATIONS = ("relu", "sigmoid")

# (name, out channels at width 1, kernel, padding, groups) of the five convolutions.
_CONVOLUTIONS = (("conv1", 96, 11, 0, 1), ("conv2", 256, 5, 2, 2), ("conv3", 384, 3, 1, 1),
                 ("conv4", 384, 3, 1, 2), ("conv5", 256, 3, 1, 2))
_FULLY_CONNECTED = 2048
_POOL_AFTER = ("conv1", "conv2", "conv5")
# With pooling "strided" each pooling's stride-2 moves into a convolution.
_STRIDED = {"conv1": 4, "conv2": 2, "conv3": 2, "conv5": 2}
_LEARNED_COLOUR_CHANNELS = 10


def _pooled(size: int, kernel: int = 3, stride: int = 2) -> int:
    """Caffe's ceil-mode output size of an unpadded pooling."""
    return math.ceil((size - kernel) / stride) + 1


def _convolved(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def feature_sizes(input_size: int, pooling: str = "max") -> OrderedDict:
    """The side of the square feature maps after each stage, for a square input.

    >>> feature_sizes(128)
    OrderedDict([('conv1', 30), ('pool1', 15), ('conv2', 15), ('pool2', 7), ('conv3', 7),
                 ('conv4', 7), ('conv5', 7), ('pool5', 3)])

    Raises ``OpError`` naming the first stage whose window does not fit (the input is too
    small for the structure).
    """
    input_size = integer("CaffeNet128", "input_size", input_size, minimum=1)
    if pooling not in POOLINGS:
        raise OpError(f"CaffeNet128: pooling must be one of {', '.join(POOLINGS)}, got "
                      f"{pooling!r}")
    sizes, size = OrderedDict(), input_size
    for name, _, kernel, padding, _ in _CONVOLUTIONS:
        stride = _STRIDED.get(name, 1) if pooling == "strided" else (4 if name == "conv1" else 1)
        if size + 2 * padding < kernel:
            raise _too_small(input_size, name, size, kernel)
        size = sizes[name] = _convolved(size, kernel, stride, padding)
        if name in _POOL_AFTER and pooling != "strided":
            if size < 3:
                raise _too_small(input_size, f"pool{name[-1]}", size, 3)
            size = sizes[f"pool{name[-1]}"] = _pooled(size)
    return sizes


def check_axes(input_size: int = 128, activation: str = "relu", batch_norm: str = "none",
               pooling: str = "max", colour: str = "rgb") -> None:
    """Raise ``OpError`` for a value outside an axis's choices or an impossible combination:
    an input too small for the structure, or stochastic pooling of inputs that can be
    negative (it draws each window's element with probability proportional to its value)."""
    for name, value, allowed in (("activation", activation, ACTIVATIONS),
                                 ("batch_norm", batch_norm, BATCH_NORM),
                                 ("pooling", pooling, POOLINGS), ("colour", colour, COLOURS)):
        if value not in allowed:
            raise OpError(f"CaffeNet128: {name} must be one of {', '.join(allowed)}, got "
                          f"{value!r}")
    if pooling == "stochastic" and (activation not in NON_NEGATIVE_ACTIVATIONS
                                    or batch_norm == "after"):
        raise OpError(f"CaffeNet128: stochastic pooling needs non-negative inputs, from one "
                      f"of the activations {', '.join(NON_NEGATIVE_ACTIVATIONS)} without batch "
                      f"norm after it; got activation {activation!r}, batch_norm {batch_norm!r}")
    feature_sizes(input_size, pooling)


def _too_small(input_size, stage, size, window) -> OpError:
    return OpError(f"CaffeNet128: input {input_size}x{input_size} is too small: {stage} gets "
                   f"{size}x{size} maps, smaller than its {window}x{window} window (128x128 is "
                   f"the paper's input, 64x64 about the smallest that fits)")


def _channels(count: int, width: float, groups: int = 1) -> int:
    """``count * width`` rounded, at least one channel per group, a multiple of ``groups``."""
    return groups * max(1, round(count * width / groups))


class CaffeNet128(nn.Module):
    """CaffeNet128 with one ablation axis or more changed (see the module's docstring).

    Parameters
    ----------
    num_classes : outputs of fc8.
    in_channels : channels of the input images (1 for the digits, 3 for colour images).
    input_size : side of the square input (128 in the paper).
    width : multiplier of every layer's channels (1 is the paper's network).
    activation, batch_norm, pooling, colour : the axes; see ``ACTIVATIONS``, ``BATCH_NORM``,
        ``POOLINGS``, ``COLOURS``.
    dropout : probability of fc6's and fc7's dropout.

    Shapes: x (N, in_channels, input_size, input_size) -> logits (N, num_classes).
    Layer names follow the Caffe file: ``features.conv1``, ``features.pool1``, ...,
    ``classifier.fc8``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, input_size: int = 128,
                 width: float = 1.0, activation: str = "relu", batch_norm: str = "none",
                 pooling: str = "max", colour: str = "rgb", dropout: float = 0.5):
        super().__init__()
        num_classes = integer("CaffeNet128", "num_classes", num_classes, minimum=1)
        in_channels = integer("CaffeNet128", "in_channels", in_channels, minimum=1)
        width = real("CaffeNet128", "width", width, above=0.0)
        dropout = probability("CaffeNet128", "dropout", dropout, allow_one=False)
        check_axes(input_size, activation, batch_norm, pooling, colour)
        self.pool5_size = feature_sizes(input_size, pooling)["conv5" if pooling == "strided"
                                                             else "pool5"]
        self.activation, self.batch_norm, self.pooling = activation, batch_norm, pooling
        self.features = nn.Sequential(self._feature_layers(in_channels, width, colour))
        conv5_channels = _channels(_CONVOLUTIONS[-1][1], width, 2)
        fc_width = _channels(_FULLY_CONNECTED, width)
        self.classifier = nn.Sequential(OrderedDict([
            *self._unit("fc6", conv5_channels * self.pool5_size ** 2, fc_width),
            ("drop6", nn.Dropout(dropout)),
            *self._unit("fc7", fc_width, fc_width),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(fc_width, num_classes)),
        ]))

    def _feature_layers(self, in_channels, width, colour) -> OrderedDict:
        layers = OrderedDict()
        if colour == "learned":
            layers["colour1"] = nn.Conv2d(in_channels, _LEARNED_COLOUR_CHANNELS, 1)
            layers["colour_relu"] = nn.LeakyReLU(0.5)
            layers["colour2"] = nn.Conv2d(_LEARNED_COLOUR_CHANNELS, 3, 1)
            in_channels = 3
        for name, channels, kernel, padding, groups in _CONVOLUTIONS:
            out_channels = _channels(channels, width, 2)
            stride = _STRIDED.get(name, 1) if self.pooling == "strided" else (
                4 if name == "conv1" else 1)
            layers.update(self._unit(name, in_channels, out_channels, kernel=kernel,
                                     stride=stride, padding=padding, groups=groups))
            if name in _POOL_AFTER and self.pooling != "strided":
                index = name[-1]
                layers[f"pool{index}"] = self._pool()
                if self.batch_norm == "none" and index in "12":
                    layers[f"norm{index}"] = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
            in_channels = out_channels
        return layers

    def _unit(self, name, in_size, out_size, **conv_args) -> list:
        """A convolution (``conv_args`` given) or fully connected layer with its batch norm
        and non-linearity, in the order the axes ask for: ``[(name, layer), ...]``."""
        pieces = 2 if self.activation == "maxout" else 1
        if conv_args:
            layer = nn.Conv2d(in_size, out_size * pieces, conv_args.pop("kernel"), **conv_args)
            norm = nn.BatchNorm2d
        else:
            layer, norm = nn.Linear(in_size, out_size * pieces), nn.BatchNorm1d
        units = [(name, layer)]
        activation = (f"{name}_act", self._activation(out_size))
        if self.batch_norm == "before":
            units += [(f"{name}_bn", norm(out_size * pieces)), activation]
        elif self.batch_norm == "after":
            units += [activation, (f"{name}_bn", norm(out_size))]
        else:
            units.append(activation)
        return units

    def _activation(self, channels: int) -> nn.Module:
        return {"relu": nn.ReLU, "tanh": nn.Tanh, "vlrelu": lambda: nn.LeakyReLU(1 / 3),
                "rrelu": nn.RReLU, "prelu": lambda: nn.PReLU(channels), "elu": nn.ELU,
                "maxout": lambda: nn.Maxout(2), "selu": nn.SELU, "sigmoid": nn.Sigmoid,
                "softplus": nn.ShiftedSoftplus, "none": nn.Identity}[self.activation]()

    def _pool(self) -> nn.Module:
        return {"max": nn.MaxPool2d, "average": nn.AvgPool2d,
                "stochastic": nn.StochasticPool2d, "max+average": nn.MaxAvgPool2d,
                }[self.pooling](3, 2, ceil_mode=True)

    def forward(self, x):
        features = self.features(x)
        return self.classifier(features.reshape(features.shape[0], -1))


def caffenet128(num_classes: int = 1000, in_channels: int = 3, **axes) -> CaffeNet128:
    """CaffeNet128 (see ``CaffeNet128``); ``axes``: input_size, width, activation,
    batch_norm, pooling, colour, dropout."""
    return CaffeNet128(num_classes=num_classes, in_channels=in_channels, **axes)
