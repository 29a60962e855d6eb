"""RegNet (Radosavovic et al. 2020, "Designing Network Design Spaces"): RegNetY-400MF.

The idea. Instead of designing one network, the paper narrows a whole *design space* of
networks (AnyNet: a stem, four stages of residual bottleneck blocks, a head, with free depth,
width, group width and bottleneck ratio per stage) until what is left is simple and good on
average. The good networks turn out to have widths that grow linearly with the block index j,
then get quantised onto a few stages:

    u_j = w_0 + w_a * j                     0 <= j < d    (a linear ramp of widths)
    s_j = round(log(u_j / w_0) / log(w_m))                 (its position on a log grid)
    w_j = 8 * round(w_0 * w_m^s_j / 8)                     (snapped to the grid, multiple of 8)

so a RegNet is four numbers (depth d, initial width w_0, slope w_a, grid ratio w_m) plus the
group width g. Consecutive blocks of equal width w_j form one stage; each stage starts with a
stride-2 block. The groups must tile a stage: g is cut to the width where it is wider, and the
width is rounded to a multiple of g (RegNetX-1.6GF's g = 24 turns 80 and 176 into 72 and 168).
RegNetY adds a squeeze-and-excitation block (Hu et al. 2018) to every block and fixes the
bottleneck ratio to 1 (the 3x3 convolution is as wide as the block).

RegNetY-400MF: d = 16, w_0 = 48, w_a = 27.89, w_m = 2.09, g = 8, SE ratio 0.25. The ramp
u_j = 48, 75.9, 103.8, ..., 466.4 lands on grid steps s_j = 0, 1 x 3, 2 x 6, 3 x 6, that is
widths 48, 104, 208, 440 (groups = width / g in each block's 3x3 convolution). Input
3 x 224 x 224::

    stage    module                   blocks  width  groups  output           params  mult-adds
    stem     stem (3x3 s2, BN, ReLU)     -      32      -     32 x 112 x 112       928    10.8 M
    stage 1  trunk_output.block1         1      48      6     48 x  56 x  56    10,040    42.1 M
    stage 2  trunk_output.block2         3     104     13    104 x  28 x  28   102,296    79.6 M
    stage 3  trunk_output.block3         6     208     26    208 x  14 x  14   737,438   132.2 M
    stage 4  trunk_output.block4         6     440     55    440 x   7 x   7 3,052,442   136.6 M
    head     avgpool, fc                 -    1000      -   1000               441,000     0.4 M

In total 4,344,144 parameters and 401,842,848 multiply-adds (convolutions, the SE blocks' 1x1
convolutions and the fully connected layer; the "400MF" of the name). The names and shapes of
the state dict are torchvision's (``stem.0.weight``,
``trunk_output.block2.block2-0.proj.0.weight``, ``...f.a``, ``f.b``, ``f.se.fc1``, ``f.c``,
``fc``), so its pretrained weights load unchanged.
"""
from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from typing import NamedTuple

from cnnlite import functional as F, nn
from cnnlite.models.blocks import ConvNormActivation, SqueezeExcitation
from cnnlite.models.mobilenet import make_divisible
from cnnlite.models.registry import ModelEntry

__all__ = ["BlockParams", "BottleneckTransform", "ResBottleneckBlock", "RegNet",
           "init_regnet_weights", "regnet_y_400mf", "MODELS"]

WIDTH_QUANTUM = 8        # block widths are multiples of 8, which hardware computes best
STAGE_STRIDE = 2         # every stage halves the feature map in its first block


class BlockParams(NamedTuple):
    """The per-stage settings of a RegNet: ``depths[i]`` blocks of width ``widths[i]`` whose
    grouped 3x3 convolutions have ``group_widths[i]`` channels per group; ``se_ratio`` sizes the
    squeeze-and-excitation block (None: no SE, a RegNetX)."""

    depths: list[int]
    widths: list[int]
    group_widths: list[int]
    se_ratio: float | None = None

    @classmethod
    def from_init_params(cls, depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                         se_ratio: float | None = None) -> "BlockParams":
        """The stages of the RegNet with parameters d, w_0, w_a, w_m (module docstring).

        Parameters
        ----------
        depth : int
            Number of blocks d, over all stages.
        w_0 : int
            Width of the first block, a multiple of 8.
        w_a : float
            Slope of the linear width ramp u_j = w_0 + w_a * j (>= 0).
        w_m : float
            Ratio of the log grid the ramp is snapped to (> 1): widths w_0 * w_m^s.
        group_width : int
            Channels per group of the 3x3 convolutions.
        se_ratio : float or None
            Squeeze channels of the SE block as a fraction of the block's input width.

        Returns
        -------
        BlockParams with one entry per stage, as torchvision computes them.
        """
        if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % WIDTH_QUANTUM:
            raise ValueError(f"RegNet: needs w_a >= 0, w_0 > 0 a multiple of {WIDTH_QUANTUM} "
                             f"and w_m > 1; got w_0={w_0}, w_a={w_a}, w_m={w_m}")
        # round() takes halves to the even neighbour, as torch.round does in torchvision
        # (RegNetX-1.6GF's 180 / 8 = 22.5 becomes 22, width 176).
        block_widths = []
        for j in range(depth):
            step = round(math.log((w_0 + w_a * j) / w_0) / math.log(w_m))
            block_widths.append(round(w_0 * w_m ** step / WIDTH_QUANTUM) * WIDTH_QUANTUM)
        # The ramp grows, so the blocks of one width are consecutive: one stage each.
        stages = [(width, len(list(blocks)))
                  for width, blocks in itertools.groupby(block_widths)]
        # A group cannot be wider than the block, and the groups must tile the width.
        group_widths = [min(group_width, width) for width, _ in stages]
        widths = [make_divisible(width, group) for (width, _), group in zip(stages, group_widths)]
        return cls([blocks for _, blocks in stages], widths, group_widths, se_ratio)


class BottleneckTransform(nn.Sequential):
    """The residual branch F(x) of a RegNet block, children ``a``, ``b``, ``se``, ``c``::

        a   1x1 conv, BN, ReLU          in_channels -> width         (N, width, H, W)
        b   3x3 conv / stride, BN, ReLU groups = width / group_width (N, width, H', W')
        se  squeeze-and-excitation      squeeze = round(se_ratio * in_channels)
        c   1x1 conv, BN (no ReLU)      width -> width               (N, width, H', W')

    H' = ceil(H / stride). The bottleneck ratio is 1 (the 3x3 convolution is as wide as the
    output), and the SE block's squeeze width follows the block's *input* width, as in the
    paper and torchvision; ``se_ratio`` None leaves the SE block out (RegNetX).
    """

    def __init__(self, in_channels: int, width: int, stride: int, group_width: int,
                 se_ratio: float | None):
        layers = OrderedDict([
            ("a", ConvNormActivation(in_channels, width, kernel_size=1)),
            ("b", ConvNormActivation(width, width, kernel_size=3, stride=stride,
                                     groups=width // group_width)),
        ])
        if se_ratio:
            layers["se"] = SqueezeExcitation(width, round(se_ratio * in_channels))
        layers["c"] = ConvNormActivation(width, width, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    """``relu(shortcut(x) + f(x))``, the residual block of RegNet (``f``: ``BottleneckTransform``).

    The shortcut is the identity when the shape stays, otherwise ``proj``: a 1x1 convolution
    with the stride, and batch norm (ResNet's projection shortcut, option B).

    x: (N, in_channels, H, W) -> (N, width, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, in_channels: int, width: int, stride: int, group_width: int,
                 se_ratio: float | None = None):
        super().__init__()
        self.proj = None
        if in_channels != width or stride != 1:
            self.proj = ConvNormActivation(in_channels, width, kernel_size=1, stride=stride,
                                           activation_layer=None)
        self.f = BottleneckTransform(in_channels, width, stride, group_width, se_ratio)
        self.activation = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class RegNet(nn.Module):
    """A RegNet: stem, one stage of ``ResBottleneckBlock`` per entry of ``block_params``,
    global average pooling and a fully connected layer.

    Parameters
    ----------
    block_params : BlockParams
        Depth, width and group width of each stage (``BlockParams.from_init_params``).
    num_classes : int
        Outputs of the fully connected layer.
    stem_width : int
        Channels of the stem, a 3x3 stride-2 convolution with batch norm and ReLU.

    Stage i (from 1) is ``trunk_output.block{i}``, its blocks ``block{i}-0``, ``block{i}-1``,
    ... (torchvision's names); the first block of each stage has stride 2. Initialisation:
    ``init_regnet_weights``. Shapes: x (N, 3, H, W) -> logits (N, num_classes); any H, W the
    five stride-2 steps leave at least 1 x 1 (32 x 32 gives a 1 x 1 map).
    """

    def __init__(self, block_params: BlockParams, num_classes: int = 1000, stem_width: int = 32):
        super().__init__()
        self.stem = ConvNormActivation(3, stem_width, kernel_size=3, stride=STAGE_STRIDE)
        stages = OrderedDict()
        in_channels = stem_width
        for index, (depth, width, group_width) in enumerate(
                zip(block_params.depths, block_params.widths, block_params.group_widths),
                start=1):
            blocks = OrderedDict()
            for block in range(depth):
                blocks[f"block{index}-{block}"] = ResBottleneckBlock(
                    in_channels, width, STAGE_STRIDE if block == 0 else 1, group_width,
                    block_params.se_ratio)
                in_channels = width
            stages[f"block{index}"] = nn.Sequential(blocks)
        self.trunk_output = nn.Sequential(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_regnet_weights(self)

    def forward(self, x):
        x = self.trunk_output(self.stem(x))              # (N, widths[-1], H/32, W/32)
        return self.fc(F.flatten(self.avgpool(x), 1))


def init_regnet_weights(model: nn.Module) -> None:
    """torchvision's initialisation of RegNet, in place: convolution weights ~ N(0, 2 / fan_out)
    with fan_out = out_channels * k^2 (He et al. 2015, for the backward pass); batch norm scale
    1 and shift 0; fully connected weights ~ N(0, 0.01^2) and bias 0. The SE block's
    convolution biases keep their default initialisation, as in torchvision."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)


def regnet_y_400mf(num_classes: int = 1000) -> RegNet:
    """RegNetY-400MF: d = 16, w_0 = 48, w_a = 27.89, w_m = 2.09, group width 8, SE ratio 0.25
    (stages of 1, 3, 6, 6 blocks, widths 48, 104, 208, 440); 4,344,144 parameters."""
    block_params = BlockParams.from_init_params(depth=16, w_0=48, w_a=27.89, w_m=2.09,
                                                group_width=8, se_ratio=0.25)
    return RegNet(block_params, num_classes=num_classes)


MODELS = {"regnet_y_400mf": ModelEntry(regnet_y_400mf, (224, 224), small_input=(32, 32))}
