"""EfficientNet-B0 (Tan and Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

Two ideas. The baseline B0 was found by an architecture search over MobileNet v2's inverted
residual with a squeeze-and-excitation block (MBConv) and the swish activation
``silu(x) = x sigmoid(x)``. It is then scaled up by *compound scaling*: depth by
``alpha^phi``, width by ``beta^phi`` and input resolution by ``gamma^phi`` together
(alpha = 1.2, beta = 1.1, gamma = 1.15, with alpha beta^2 gamma^2 ~ 2 so that each step of
phi about doubles the cost); B1 ... B7 are phi = 1 ... 7. ``width_mult`` and ``depth_mult``
of ``EfficientNet`` are those two factors.

EfficientNet-B0 (the paper's Table 1; MBConv6 = expansion 6, k3x3 = depthwise kernel)::

    stage  operator               resolution   #channels  #layers  stride  module
    1      conv 3x3                224 x 224       32         1       2    features.0
    2      MBConv1, k3x3           112 x 112       16         1       1    features.1
    3      MBConv6, k3x3           112 x 112       24         2       2    features.2
    4      MBConv6, k5x5            56 x  56       40         2       2    features.3
    5      MBConv6, k3x3            28 x  28       80         3       2    features.4
    6      MBConv6, k5x5            14 x  14      112         3       1    features.5
    7      MBConv6, k5x5            14 x  14      192         4       2    features.6
    8      MBConv6, k3x3             7 x   7      320         1       1    features.7
    9      conv 1x1, pooling, fc     7 x   7     1280         1       -    features.8,
                                                                           avgpool, classifier

(The stride is that of the stage's first layer; the resolution column is the stage's input.)
Every convolution is followed by batch norm, and by SiLU except the MBConv's projection.
5,288,548 parameters and 385,814,752 multiply-adds (the paper: 5.3 M and 0.39 B FLOPs). The
state-dict names and shapes are torchvision's (``features.2.0.block.0.0.weight``, ...), so its
pretrained weights load unchanged.

Batch norm: torchvision's B0 uses PyTorch's defaults (eps 1e-5, momentum 0.1) and its
pretrained weights were trained with them, so they are the default here too. The paper's
TensorFlow reference uses eps 1e-3 and momentum 0.01 (decay 0.99), which
``norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)`` gives.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from cnnlite import nn
from cnnlite.models.blocks import ConvNormActivation, SqueezeExcitation, StochasticDepth
from cnnlite.models.mobilenet import init_weights, make_divisible
from cnnlite.models.registry import ModelEntry

__all__ = ["StageSetting", "MBConv", "EfficientNet", "efficientnet_b0", "MODELS"]


class StageSetting(NamedTuple):
    """One MBConv stage, a row of the paper's Table 1 (channels and layers of B0)."""

    expand_ratio: int
    kernel: int
    stride: int             # of the stage's first block; the others have stride 1
    in_channels: int
    out_channels: int
    num_layers: int


B0_STAGES = [
    StageSetting(1, 3, 1, 32, 16, 1),
    StageSetting(6, 3, 2, 16, 24, 2),
    StageSetting(6, 5, 2, 24, 40, 2),
    StageSetting(6, 3, 2, 40, 80, 3),
    StageSetting(6, 5, 1, 80, 112, 3),
    StageSetting(6, 5, 2, 112, 192, 4),
    StageSetting(6, 3, 1, 192, 320, 1),
]


class MBConv(nn.Module):
    """The mobile inverted bottleneck with squeeze-and-excitation (MnasNet, EfficientNet).

    ::

        expand   1x1 conv  C_in -> t C_in, BN, SiLU          (left out when t = 1)
        filter   k x k depthwise conv (stride s), BN, SiLU
        SE       x * sigmoid(fc2(silu(fc1(mean_hw x))))  t C_in -> max(1, C_in / 4) -> t C_in
        project  1x1 conv  t C_in -> C_out, BN               (linear)
        y = x + drop(block(x))   when s = 1 and C_in = C_out

    The squeeze width is a quarter of the block's *input* channels, not of the expanded ones.
    ``drop`` is stochastic depth (``StochasticDepth``, per sample): while training the whole
    residual branch is dropped with probability ``stochastic_depth_prob`` and the survivors
    are scaled by 1 / (1 - p), so a deep network trains like an ensemble of shallower ones.
    Children: ``block`` (``block.0.0.weight``, ..., as in torchvision) and
    ``stochastic_depth``.

    x: (N, in_channels, H, W) -> (N, out_channels, ceil(H / s), ceil(W / s))
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand_ratio: float, stochastic_depth_prob: float,
                 norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv: stride must be 1 or 2, got {stride}")
        self.use_residual = stride == 1 and in_channels == out_channels
        expanded = make_divisible(in_channels * expand_ratio)
        layers = []
        if expanded != in_channels:
            layers.append(ConvNormActivation(in_channels, expanded, 1, norm_layer=norm_layer,
                                             activation_layer=nn.SiLU))
        layers += [
            ConvNormActivation(expanded, expanded, kernel, stride=stride, groups=expanded,
                               norm_layer=norm_layer, activation_layer=nn.SiLU),
            SqueezeExcitation(expanded, max(1, in_channels // 4), activation=nn.SiLU),
            ConvNormActivation(expanded, out_channels, 1, norm_layer=norm_layer,
                               activation_layer=None),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, x):
        result = self.block(x)
        if self.use_residual:
            return x + self.stochastic_depth(result)
        return result


class EfficientNet(nn.Module):
    """EfficientNet from a table of MBConv stages (see the module's table).

    Parameters
    ----------
    stages : list of StageSetting
        The MBConv stages before scaling (default ``B0_STAGES``).
    width_mult, depth_mult : float
        Compound scaling: channels times ``width_mult`` (rounded by ``make_divisible``),
        layers per stage times ``depth_mult`` (rounded up).
    dropout : float
        Dropout before the classifier (0.2 for B0, rising to 0.5 for B7).
    stochastic_depth_prob : float
        Drop probability of the last block's residual branch; block i of n (counted from 0
        over all stages) gets ``stochastic_depth_prob * i / n``, so early blocks, whose
        features everything later needs, are almost never dropped.
    num_classes : int
    norm_layer : callable
        Builds the normalisation layer from a channel count (default ``nn.BatchNorm2d``).

    Initialisation: torchvision's (``init_weights``), fully connected weights
    ~ U(-1/sqrt(num_classes), 1/sqrt(num_classes)).

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); 224 x 224 for B0, any size >= 32.
    """

    def __init__(self, stages: list | None = None, width_mult: float = 1.0,
                 depth_mult: float = 1.0, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, num_classes: int = 1000,
                 norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        stages = B0_STAGES if stages is None else stages
        if not stages:
            raise ValueError("EfficientNet: the stage setting is empty")

        def width(channels):
            return make_divisible(channels * width_mult)

        def depth(num_layers):
            return int(math.ceil(num_layers * depth_mult))

        total_blocks = sum(depth(stage.num_layers) for stage in stages)
        layers = [ConvNormActivation(3, width(stages[0].in_channels), 3, stride=2,
                                     norm_layer=norm_layer, activation_layer=nn.SiLU)]
        block_index = 0
        for stage in stages:
            blocks = []
            channels = width(stage.in_channels)
            for index in range(depth(stage.num_layers)):
                drop_prob = stochastic_depth_prob * block_index / total_blocks
                blocks.append(MBConv(channels, width(stage.out_channels), stage.kernel,
                                     stage.stride if index == 0 else 1, stage.expand_ratio,
                                     drop_prob, norm_layer))
                channels = width(stage.out_channels)
                block_index += 1
            layers.append(nn.Sequential(*blocks))
        last_in = width(stages[-1].out_channels)
        layers.append(ConvNormActivation(last_in, 4 * last_in, 1, norm_layer=norm_layer,
                                         activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout),
                                        nn.Linear(4 * last_in, num_classes))
        bound = 1.0 / math.sqrt(num_classes)
        init_weights(self, lambda weight: nn.init.uniform_(weight, -bound, bound))

    def forward(self, x):
        features = self.avgpool(self.features(x))                 # (N, 1280, 1, 1)
        return self.classifier(features.flatten(1))


def efficientnet_b0(num_classes: int = 1000, dropout: float = 0.2,
                    stochastic_depth_prob: float = 0.2,
                    norm_layer: Callable = nn.BatchNorm2d) -> EfficientNet:
    """EfficientNet-B0 (phi = 0: width and depth 1.0, 224 x 224) with torchvision's names;
    see ``EfficientNet``."""
    return EfficientNet(B0_STAGES, dropout=dropout, stochastic_depth_prob=stochastic_depth_prob,
                        num_classes=num_classes, norm_layer=norm_layer)


MODELS = {
    "efficientnet_b0": ModelEntry(efficientnet_b0, (224, 224), small_input=(32, 32)),
}
