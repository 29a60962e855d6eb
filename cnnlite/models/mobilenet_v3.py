"""MobileNet v3 (Howard et al. 2019, "Searching for MobileNetV3"), large and small.

MobileNet v2's inverted residual, found again by a network architecture search and given
three additions: a squeeze-and-excitation block inside some bottlenecks, the hard-swish
activation ``h-swish(x) = x relu6(x + 3) / 6`` (a cheap swish) in the deeper layers, and a
cheaper last stage: the wide layer to 1280 channels comes after the average pooling, where it
works on a 1 x 1 map instead of 7 x 7.

MobileNetV3-Large (the paper's Table 1; exp size = the expanded channels, SE = with a
squeeze-and-excitation block, NL = non-linearity, RE = ReLU, HS = h-swish, s = stride)::

    input        operator           exp size  #out  SE  NL  s    module
    224^2 x 3    conv2d 3x3             -      16   -   HS  2    features.0
    112^2 x 16   bneck 3x3             16      16   -   RE  1    features.1
    112^2 x 16   bneck 3x3             64      24   -   RE  2    features.2
     56^2 x 24   bneck 3x3             72      24   -   RE  1    features.3
     56^2 x 24   bneck 5x5             72      40   x   RE  2    features.4
     28^2 x 40   bneck 5x5 (2 x)      120      40   x   RE  1    features.5 - 6
     28^2 x 40   bneck 3x3            240      80   -   HS  2    features.7
     14^2 x 80   bneck 3x3            200      80   -   HS  1    features.8
     14^2 x 80   bneck 3x3 (2 x)      184      80   -   HS  1    features.9 - 10
     14^2 x 80   bneck 3x3            480     112   x   HS  1    features.11
     14^2 x 112  bneck 3x3            672     112   x   HS  1    features.12
     14^2 x 112  bneck 5x5            672     160   x   HS  2    features.13
      7^2 x 160  bneck 5x5 (2 x)      960     160   x   HS  1    features.14 - 15
      7^2 x 160  conv2d 1x1             -     960   -   HS  1    features.16
      7^2 x 960  pool 7x7               -       -   -   -   1    avgpool
      1^2 x 960  fc (conv2d 1x1, NBN)   -    1280   -   HS  1    classifier.0 - 1
      1^2 x 1280 fc (conv2d 1x1, NBN)   -       k   -   -   1    classifier.3

MobileNetV3-Small (Table 2)::

    input        operator           exp size  #out  SE  NL  s    module
    224^2 x 3    conv2d 3x3             -      16   -   HS  2    features.0
    112^2 x 16   bneck 3x3             16      16   x   RE  2    features.1
     56^2 x 16   bneck 3x3             72      24   -   RE  2    features.2
     28^2 x 24   bneck 3x3             88      24   -   RE  1    features.3
     28^2 x 24   bneck 5x5             96      40   x   HS  2    features.4
     14^2 x 40   bneck 5x5 (2 x)      240      40   x   HS  1    features.5 - 6
     14^2 x 40   bneck 5x5            120      48   x   HS  1    features.7
     14^2 x 48   bneck 5x5            144      48   x   HS  1    features.8
     14^2 x 48   bneck 5x5            288      96   x   HS  2    features.9
      7^2 x 96   bneck 5x5 (2 x)      576      96   x   HS  1    features.10 - 11
      7^2 x 96   conv2d 1x1             -     576   -   HS  1    features.12
      7^2 x 576  pool 7x7               -       -   -   -   1    avgpool
      1^2 x 576  fc (NBN)               -    1024   -   HS  1    classifier.0 - 1
      1^2 x 1024 fc (NBN)               -       k   -   -   1    classifier.3

The paper's fully connected layers at the end are 1 x 1 convolutions without batch norm
("NBN") on the pooled 1 x 1 map; torchvision writes them as ``nn.Linear``, with dropout
(``classifier.2``) between them, and so does this module. Large: 5,483,032 parameters,
216,589,760 multiply-adds; small: 2,542,856 and 56,510,400 (a squeeze-and-excitation block's
two 1 x 1 convolutions count C * C_squeeze each, as on a 1 x 1 map). The state-dict names and
shapes are torchvision's, so its pretrained weights load unchanged; batch norm uses
eps = 0.001 and momentum = 0.01, as there (the TensorFlow reference's settings).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

from cnnlite import nn
from cnnlite.models.blocks import ConvNormActivation, SqueezeExcitation
from cnnlite.models.mobilenet import init_weights, make_divisible
from cnnlite.models.registry import ModelEntry

__all__ = ["BottleneckSetting", "InvertedResidualSE", "MobileNetV3", "mobilenet_v3_large",
           "mobilenet_v3_small", "MODELS"]


class BottleneckSetting(NamedTuple):
    """One row of the paper's Tables 1 and 2 (channels before the width multiplier)."""

    kernel: int
    expanded: int          # "exp size"
    out_channels: int      # "#out"
    use_se: bool           # "SE"
    activation: str        # "NL": "RE" (ReLU) or "HS" (hard swish)
    stride: int            # "s"


LARGE_SETTING = [
    BottleneckSetting(3, 16, 16, False, "RE", 1),
    BottleneckSetting(3, 64, 24, False, "RE", 2),
    BottleneckSetting(3, 72, 24, False, "RE", 1),
    BottleneckSetting(5, 72, 40, True, "RE", 2),
    BottleneckSetting(5, 120, 40, True, "RE", 1),
    BottleneckSetting(5, 120, 40, True, "RE", 1),
    BottleneckSetting(3, 240, 80, False, "HS", 2),
    BottleneckSetting(3, 200, 80, False, "HS", 1),
    BottleneckSetting(3, 184, 80, False, "HS", 1),
    BottleneckSetting(3, 184, 80, False, "HS", 1),
    BottleneckSetting(3, 480, 112, True, "HS", 1),
    BottleneckSetting(3, 672, 112, True, "HS", 1),
    BottleneckSetting(5, 672, 160, True, "HS", 2),
    BottleneckSetting(5, 960, 160, True, "HS", 1),
    BottleneckSetting(5, 960, 160, True, "HS", 1),
]

SMALL_SETTING = [
    BottleneckSetting(3, 16, 16, True, "RE", 2),
    BottleneckSetting(3, 72, 24, False, "RE", 2),
    BottleneckSetting(3, 88, 24, False, "RE", 1),
    BottleneckSetting(5, 96, 40, True, "HS", 2),
    BottleneckSetting(5, 240, 40, True, "HS", 1),
    BottleneckSetting(5, 240, 40, True, "HS", 1),
    BottleneckSetting(5, 120, 48, True, "HS", 1),
    BottleneckSetting(5, 144, 48, True, "HS", 1),
    BottleneckSetting(5, 288, 96, True, "HS", 2),
    BottleneckSetting(5, 576, 96, True, "HS", 1),
    BottleneckSetting(5, 576, 96, True, "HS", 1),
]

# Channels of the classifier's hidden layer (the paper's first "fc" row).
LARGE_LAST_CHANNEL, SMALL_LAST_CHANNEL = 1280, 1024
ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}
MOBILENET_V3_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class InvertedResidualSE(nn.Module):
    """MobileNet v3's bottleneck: MobileNet v2's inverted residual with an optional
    squeeze-and-excitation block after the depthwise convolution.

    ::

        expand   1x1 conv  C_in -> E, BN, act          (left out when E = C_in)
        filter   k x k depthwise conv (stride s, dilation d), BN, act
        SE       x * hardsigmoid(fc2(relu(fc1(mean_hw x))))   E -> E/4 -> E (when use_se)
        project  1x1 conv  E -> C_out, BN              (linear)
        y = x + block(x)   when s = 1 and C_in = C_out

    act is ReLU or hard swish. The SE block's squeeze width is ``make_divisible(E / 4)``.
    Children: ``block`` (a Sequential of ConvNormActivation and SqueezeExcitation, numbered in
    order of use, as in torchvision: ``block.0.0.weight``, ``block.2.fc1.weight``, ...).

    x: (N, in_channels, H, W) -> (N, out_channels, ceil(H / s), ceil(W / s))
    """

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int,
                 use_se: bool, activation: str, stride: int, dilation: int = 1,
                 norm_layer: Callable = MOBILENET_V3_NORM):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidualSE: stride must be 1 or 2, got {stride}")
        activation_layer = ACTIVATIONS[activation]
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expanded != in_channels:
            layers.append(ConvNormActivation(in_channels, expanded, 1, norm_layer=norm_layer,
                                             activation_layer=activation_layer))
        # A dilated block keeps the resolution (for dense prediction) instead of striding.
        layers.append(ConvNormActivation(expanded, expanded, kernel,
                                         stride=1 if dilation > 1 else stride,
                                         dilation=dilation, groups=expanded,
                                         norm_layer=norm_layer,
                                         activation_layer=activation_layer))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4),
                                            scale_activation=nn.Hardsigmoid))
        layers.append(ConvNormActivation(expanded, out_channels, 1, norm_layer=norm_layer,
                                         activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x):
        result = self.block(x)
        return x + result if self.use_residual else result


class MobileNetV3(nn.Module):
    """MobileNet v3 from a table of bottlenecks (see the module's tables).

    Parameters
    ----------
    setting : list of BottleneckSetting
        The bottlenecks (``LARGE_SETTING`` or ``SMALL_SETTING``), channels before scaling.
    last_channel : int
        Width of the classifier's hidden layer (1280 large, 1024 small), before scaling.
    num_classes : int
    width_mult : float
        Multiplies every channel count (rounded by ``make_divisible``).
    dropout : float
        Dropout between the classifier's two fully connected layers.
    reduced_tail : bool
        Halve the channels of the last stage (the paper's Section 6.4, for segmentation).
    dilated : bool
        Dilate the last stage's depthwise convolutions by 2 instead of striding (output
        stride 16, for segmentation).
    norm_layer : callable
        Builds the normalisation layer from a channel count; default batch norm with
        eps = 0.001 and momentum = 0.01.

    Initialisation: torchvision's (``init_weights``; fully connected weights ~ N(0, 0.01^2)).

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); 224 x 224 as designed, any size >= 32.
    """

    def __init__(self, setting: list, last_channel: int, num_classes: int = 1000,
                 width_mult: float = 1.0, dropout: float = 0.2, reduced_tail: bool = False,
                 dilated: bool = False, norm_layer: Callable = MOBILENET_V3_NORM):
        super().__init__()
        if not setting:
            raise ValueError("MobileNetV3: the bottleneck setting is empty")

        def width(channels):
            return make_divisible(channels * width_mult)

        # The last stage: the final three bottlenecks (from the last stride 2 on).
        tail = len(setting) - 3
        divider = 2 if reduced_tail else 1
        channels = width(16)
        layers = [ConvNormActivation(3, channels, 3, stride=2, norm_layer=norm_layer,
                                     activation_layer=nn.Hardswish)]
        for index, row in enumerate(setting):
            in_tail = index >= tail
            # The first tail block's input is the previous stage's output, never reduced.
            expanded = row.expanded // divider if in_tail and index > tail else row.expanded
            out_channels = row.out_channels // divider if in_tail else row.out_channels
            layers.append(InvertedResidualSE(
                channels, row.kernel, width(expanded), width(out_channels), row.use_se,
                row.activation, row.stride, dilation=2 if in_tail and dilated else 1,
                norm_layer=norm_layer))
            channels = width(out_channels)
        layers.append(ConvNormActivation(channels, 6 * channels, 1, norm_layer=norm_layer,
                                         activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = width(last_channel // divider)
        self.classifier = nn.Sequential(
            nn.Linear(6 * channels, hidden),
            nn.Hardswish(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self, partial(nn.init.normal_, mean=0.0, std=0.01))

    def forward(self, x):
        features = self.avgpool(self.features(x))                 # (N, 960 or 576, 1, 1)
        return self.classifier(features.flatten(1))


def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                       reduced_tail: bool = False, dilated: bool = False,
                       norm_layer: Callable = MOBILENET_V3_NORM) -> MobileNetV3:
    """MobileNetV3-Large (the paper's Table 1) with torchvision's names; see ``MobileNetV3``."""
    return MobileNetV3(LARGE_SETTING, LARGE_LAST_CHANNEL, num_classes=num_classes,
                       width_mult=width_mult, dropout=dropout, reduced_tail=reduced_tail,
                       dilated=dilated, norm_layer=norm_layer)


def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                       reduced_tail: bool = False, dilated: bool = False,
                       norm_layer: Callable = MOBILENET_V3_NORM) -> MobileNetV3:
    """MobileNetV3-Small (the paper's Table 2) with torchvision's names; see ``MobileNetV3``."""
    return MobileNetV3(SMALL_SETTING, SMALL_LAST_CHANNEL, num_classes=num_classes,
                       width_mult=width_mult, dropout=dropout, reduced_tail=reduced_tail,
                       dilated=dilated, norm_layer=norm_layer)


MODELS = {
    "mobilenet_v3_large": ModelEntry(mobilenet_v3_large, (224, 224), small_input=(32, 32)),
    "mobilenet_v3_small": ModelEntry(mobilenet_v3_small, (224, 224), small_input=(32, 32)),
}
