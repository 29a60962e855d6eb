"""Wide Residual Networks for CIFAR (Zagoruyko and Komodakis 2016): fewer, wider units.

A WRN-d-k is a pre-activation ResNet of depth d whose units are k times wider than the
original's (He et al.'s 16/32/64 channels become 16k/32k/64k). Each of the three groups has
N units of two 3x3 convolutions, N = (d - 4) / 6 (as the authors' code computes it: d = 28
gives N = 4). The paper's table 1:

    group    output size   units
    conv1    32 x 32       [3x3, 16]
    conv2    32 x 32       N x [3x3, 16k; 3x3, 16k]
    conv3    16 x 16       N x [3x3, 32k; 3x3, 32k]     first unit stride 2
    conv4     8 x  8       N x [3x3, 64k; 3x3, 64k]     first unit stride 2
    avg-pool  1 x  1       BN, ReLU, [8 x 8] average pool, fc

WRN-28-10: N = 4 units per group of 160, 320 and 640 channels; 36,479,194 parameters (the
paper: 36.5M), 5,243,328,768 multiply-adds on a 32 x 32 image.

Each unit is ``PreActBasicBlock``: BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3 plus the
shortcut, which is the identity where the shape stays and otherwise a 1x1 convolution of the
pre-activated input. Unlike the pre-activation ResNets, conv1 has no batch norm or ReLU of
its own: the first unit pre-activates its input (for k > 1 for both paths, as its shortcut
is a projection), as in the authors' code. The paper found dropout (p = 0.3) between the two
convolutions helps; ``dropout`` sets it (0: none).

Initialisation as in the authors' code: convolution and fully connected weights
~ N(0, 2 / fan_in) (He et al. 2015), fully connected bias 0, batch norm scale 1, shift 0.
"""
from __future__ import annotations

from cnnlite import nn
from cnnlite.models.preact_resnet import PreActBasicBlock, preact_stage
from cnnlite.models.registry import ModelEntry

__all__ = ["WideResNet", "wide_resnet_cifar", "wrn28_10", "MODELS"]


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for 32 x 32 images (see the module docstring).

    Parameters
    ----------
    depth : int
        6N + 4 (16, 22, 28, 40, ...).
    widen_factor : int
        k: the groups have 16k, 32k and 64k channels.
    dropout : float
        Dropout probability between the two convolutions of each unit (the paper: 0.3).
    num_classes : int

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); 32 x 32 by design, any H, W >= 4 run.
    """

    def __init__(self, depth: int, widen_factor: int, dropout: float = 0.0,
                 num_classes: int = 10):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet: depth must be 6N + 4 with N >= 1, got {depth}")
        if widen_factor < 1:
            raise ValueError(f"WideResNet: widen_factor must be >= 1, got {widen_factor}")
        units = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.layer1 = preact_stage(PreActBasicBlock, 16, widths[0], units, stride=1,
                                   dropout=dropout)
        self.layer2 = preact_stage(PreActBasicBlock, widths[0], widths[1], units, stride=2,
                                   dropout=dropout)
        self.layer3 = preact_stage(PreActBasicBlock, widths[1], widths[2], units, stride=2,
                                   dropout=dropout)
        self.final_bn = nn.BatchNorm2d(widths[2])
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        self._initialise()

    def _initialise(self):
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.conv1(x)                                    # (N, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))         # (N, 64k, 8, 8)
        x = self.avgpool(self.relu(self.final_bn(x)))        # (N, 64k, 1, 1)
        return self.fc(x.reshape(x.shape[0], -1))


def wide_resnet_cifar(depth: int, widen_factor: int, dropout: float = 0.0,
                      num_classes: int = 10) -> WideResNet:
    """WRN-``depth``-``widen_factor`` (``WideResNet``), e.g. ``wide_resnet_cifar(16, 8)``."""
    return WideResNet(depth, widen_factor, dropout, num_classes)


def wrn28_10(num_classes: int = 10, dropout: float = 0.0) -> WideResNet:
    """WRN-28-10: 36,479,194 parameters (the paper: 36.5M); ``dropout=0.3`` is the paper's
    best CIFAR setting."""
    return WideResNet(28, 10, dropout, num_classes)


MODELS = {
    "wrn28_10": ModelEntry(wrn28_10, (32, 32), small_input=(32, 32)),
}
