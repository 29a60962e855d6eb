"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018): networks for phones,
built from depthwise separable convolutions.

The idea. A standard k x k convolution from M to N channels on a D x D map costs
``k^2 M N D^2`` multiply-adds: every filter looks at every channel. MobileNet splits it in two:

    depthwise  k x k, one filter per channel (groups = M)      k^2 M D^2
    pointwise  1 x 1, mixes the channels, M -> N                   M N D^2

which costs ``1/N + 1/k^2`` of the standard convolution: with k = 3, about 8 to 9 times less.

MobileNet v1, width 1.0, input 3 x 224 x 224 (the paper's Table 1; "dw" = depthwise 3x3,
"pw" = pointwise 1x1, each followed by batch norm and ReLU)::

    type / stride    filter shape                input size        module
    conv / s2        3 x 3 x 3 x 32              224 x 224 x 3     features.0
    dw / s1, pw      3x3x32 dw, 1x1x32x64        112 x 112 x 32    features.1
    dw / s2, pw      3x3x64 dw, 1x1x64x128       112 x 112 x 64    features.2
    dw / s1, pw      3x3x128 dw, 1x1x128x128      56 x  56 x 128   features.3
    dw / s2, pw      3x3x128 dw, 1x1x128x256      56 x  56 x 128   features.4
    dw / s1, pw      3x3x256 dw, 1x1x256x256      28 x  28 x 256   features.5
    dw / s2, pw      3x3x256 dw, 1x1x256x512      28 x  28 x 256   features.6
    5 x dw / s1, pw  3x3x512 dw, 1x1x512x512      14 x  14 x 512   features.7 - 11
    dw / s2, pw      3x3x512 dw, 1x1x512x1024     14 x  14 x 512   features.12
    dw / s1, pw      3x3x1024 dw, 1x1x1024x1024    7 x   7 x 1024  features.13
    avg pool 7x7                                   7 x   7 x 1024  avgpool
    fc               1024 x 1000                   1 x   1 x 1024  classifier.1

The paper's table prints stride 2 for the last depthwise layer, but its own input-size
column (7 x 7 before and after that layer) and every implementation use stride 1. 4,231,976
parameters and 568,740,352 multiply-adds (the paper: 4.2 M and 569 M). The width multiplier
alpha thins every layer to ``int(alpha * channels)`` (cost about alpha^2); the resolution
multiplier is simply a smaller input, which the global average pooling accepts.

MobileNet v2, width 1.0, input 3 x 224 x 224 (the paper's Table 2: t = expansion factor,
c = output channels, n = repeats, s = stride of the first repeat)::

    input           operator       t    c     n   s    module
    224^2 x 3       conv2d 3x3     -    32    1   2    features.0
    112^2 x 32      bottleneck     1    16    1   1    features.1
    112^2 x 16      bottleneck     6    24    2   2    features.2 - 3
     56^2 x 24      bottleneck     6    32    3   2    features.4 - 6
     28^2 x 32      bottleneck     6    64    4   2    features.7 - 10
     14^2 x 64      bottleneck     6    96    3   1    features.11 - 13
     14^2 x 96      bottleneck     6    160   3   2    features.14 - 16
      7^2 x 160     bottleneck     6    320   1   1    features.17
      7^2 x 320     conv2d 1x1     -    1280  1   1    features.18
      7^2 x 1280    avgpool 7x7    -    -     1   -    avgpool
      1 x 1 x 1280  dropout, fc    -    k     -   -    classifier.0, classifier.1

The bottleneck is the inverted residual (``InvertedResidual``). 3,504,872 parameters and
300,774,272 multiply-adds; the names and shapes of the state dict are torchvision's, so its
pretrained weights load unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Callable, Sequence

from cnnlite import nn
from cnnlite.models.blocks import ConvNormActivation
from cnnlite.models.registry import ModelEntry

__all__ = ["make_divisible", "init_weights", "DepthwiseSeparableConv", "MobileNetV1",
           "mobilenet_v1", "InvertedResidual", "MobileNetV2", "mobilenet_v2", "MODELS"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (at least ``min_value``,
    by default ``divisor``), going up a step if rounding lost more than 10 %.

    Hardware computes channels in groups of 8 best; a width multiplier gives any number
    (0.35 * 32 = 11.2 -> 16). This is the rounding of the TensorFlow reference and torchvision,
    so that thinner models have the same shapes as their pretrained weights.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_weights(model: nn.Module, init_linear_weight: Callable) -> None:
    """torchvision's initialisation of its mobile networks, in place.

    Convolution weights ~ N(0, 2 / fan_out) (He et al.'s scale for the backward pass;
    ``fan_out`` = out_channels * k^2; a depthwise convolution's fan_in is only k^2, which
    would give weights of standard deviation 0.47), their biases 0; batch norm gamma 1 and
    beta 0; fully connected weights by ``init_linear_weight(weight)`` and biases 0.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init_linear_weight(module.weight)
            nn.init.zeros_(module.bias)


# --- MobileNet v1 ------------------------------------------------------------------------------

class DepthwiseSeparableConv(nn.Sequential):
    """MobileNet v1's block: a depthwise 3 x 3 convolution (one filter per channel, carrying
    the stride) and a pointwise 1 x 1 convolution that mixes the channels, each followed by
    batch norm and ReLU. Children ``depthwise`` and ``pointwise`` (``ConvNormActivation``).

    Cost on an output of D x D: ``9 C_in D^2 + C_in C_out D^2`` multiply-adds, against
    ``9 C_in C_out D^2`` for a full 3 x 3 convolution.

    x: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(OrderedDict([
            ("depthwise", ConvNormActivation(in_channels, in_channels, 3, stride=stride,
                                             groups=in_channels)),
            ("pointwise", ConvNormActivation(in_channels, out_channels, 1)),
        ]))


# (output channels, stride) of the 13 depthwise separable blocks, the rows of Table 1.
MOBILENET_V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
                       (1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    """MobileNet v1 (see the module's table).

    Parameters
    ----------
    num_classes : int
        Outputs of the classifier.
    width_mult : float
        The paper's width multiplier alpha (1.0, 0.75, 0.5, 0.25): every layer gets
        ``int(alpha * channels)`` channels.
    dropout : float
        Dropout before the classifier; 0.001 as in the TensorFlow reference implementation
        (keep probability 0.999), the paper using little regularisation.

    Initialisation: ``init_weights`` with fully connected weights ~ N(0, 0.01^2), as
    torchvision initialises MobileNet v2 (the paper names none). State-dict keys:
    ``features.0.0.weight`` (stem), ``features.1.depthwise.0.weight``, ...,
    ``classifier.1.weight``.

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); 224 x 224 as designed, any size >= 32.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.001):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"MobileNetV1: width_mult must be positive, got {width_mult}")

        def width(channels):
            return max(1, int(channels * width_mult))

        channels = width(32)
        layers = [ConvNormActivation(3, channels, 3, stride=2)]
        for out_channels, stride in MOBILENET_V1_BLOCKS:
            layers.append(DepthwiseSeparableConv(channels, width(out_channels), stride))
            channels = width(out_channels)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        init_weights(self, partial(nn.init.normal_, mean=0.0, std=0.01))

    def forward(self, x):
        features = self.avgpool(self.features(x))                 # (N, 1024 alpha, 1, 1)
        return self.classifier(features.flatten(1))


def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.001) -> MobileNetV1:
    """MobileNet v1 (Howard et al. 2017); see ``MobileNetV1``."""
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, dropout=dropout)


# --- MobileNet v2 ------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    """MobileNet v2's bottleneck, the inverted residual with a linear bottleneck.

    ::

        expand   1x1 conv  C_in -> t C_in, BN, ReLU6     (left out when t = 1)
        filter   3x3 depthwise conv (stride s), BN, ReLU6
        project  1x1 conv  t C_in -> C_out, BN           (linear: no activation)
        y = x + block(x)   when s = 1 and C_in = C_out, else y = block(x)

    "Inverted": a ResNet bottleneck is wide - narrow - wide with the shortcut between the wide
    ends; here the shortcut joins the narrow ends and the cheap depthwise filter works in the
    wide, expanded space. The projection is linear because a ReLU in a low-dimensional space
    destroys information the next layer cannot get back (the paper's Section 3.2). ReLU6
    (``min(max(0, x), 6)``) stays accurate in low-precision arithmetic.

    Children: ``conv`` (a Sequential) with torchvision's indices: ``conv.0`` expand and
    ``conv.1`` depthwise (ConvNormActivation), ``conv.2`` the projection's Conv2d and
    ``conv.3`` its norm; without expansion the indices start at the depthwise layer.

    x: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(in_channels, hidden, 1, norm_layer=norm_layer,
                                             activation_layer=nn.ReLU6))
        layers += [
            ConvNormActivation(hidden, hidden, 3, stride=stride, groups=hidden,
                               norm_layer=norm_layer, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            norm_layer(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x):
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


# t (expansion), c (output channels), n (repeats), s (first stride): the rows of Table 2.
MOBILENET_V2_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


class MobileNetV2(nn.Module):
    """MobileNet v2 (see the module's table), as torchvision defines it.

    Parameters
    ----------
    num_classes : int
        Outputs of the classifier.
    width_mult : float
        Width multiplier: every layer's channels times this, rounded by ``make_divisible``;
        the last layer (1280) is never made thinner, only wider.
    inverted_residual_setting : list of [t, c, n, s], optional
        The bottleneck stages; default Table 2 (``MOBILENET_V2_SETTING``).
    round_nearest : int
        Channel counts are rounded to a multiple of this (1 turns the rounding off).
    dropout : float
        Dropout before the classifier.
    norm_layer : callable
        Builds the normalisation layer from a channel count (default ``nn.BatchNorm2d``).

    Initialisation: torchvision's (``init_weights``, fully connected weights ~ N(0, 0.01^2)).

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); 224 x 224 as designed, any size >= 32.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 inverted_residual_setting: Sequence[Sequence[int]] | None = None,
                 round_nearest: int = 8, dropout: float = 0.2,
                 norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        setting = inverted_residual_setting
        if setting is None:
            setting = MOBILENET_V2_SETTING
        if not setting or any(len(row) != 4 for row in setting):
            raise ValueError(f"MobileNetV2: inverted_residual_setting must be a non-empty list "
                             f"of [t, c, n, s] rows, got {setting}")
        channels = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        layers = [ConvNormActivation(3, channels, 3, stride=2, norm_layer=norm_layer,
                                     activation_layer=nn.ReLU6)]
        for expand_ratio, out_channels, repeats, stride in setting:
            out_channels = make_divisible(out_channels * width_mult, round_nearest)
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out_channels,
                                               stride if index == 0 else 1, expand_ratio,
                                               norm_layer))
                channels = out_channels
        layers.append(ConvNormActivation(channels, self.last_channel, 1, norm_layer=norm_layer,
                                         activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout),
                                        nn.Linear(self.last_channel, num_classes))
        init_weights(self, partial(nn.init.normal_, mean=0.0, std=0.01))

    def forward(self, x):
        features = self.avgpool(self.features(x))                 # (N, 1280, 1, 1)
        return self.classifier(features.flatten(1))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0,
                 inverted_residual_setting: Sequence[Sequence[int]] | None = None,
                 round_nearest: int = 8, dropout: float = 0.2,
                 norm_layer: Callable = nn.BatchNorm2d) -> MobileNetV2:
    """MobileNet v2 (Sandler et al. 2018) with torchvision's names; see ``MobileNetV2``."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult,
                       inverted_residual_setting=inverted_residual_setting,
                       round_nearest=round_nearest, dropout=dropout, norm_layer=norm_layer)


MODELS = {
    "mobilenet_v1": ModelEntry(mobilenet_v1, (224, 224), small_input=(32, 32)),
    "mobilenet_v2": ModelEntry(mobilenet_v2, (224, 224), small_input=(32, 32)),
}
