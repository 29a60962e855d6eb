"""ShuffleNet V2 (Ma, Zhang, Zheng and Sun, "ShuffleNet V2: Practical Guidelines for Efficient
CNN Architecture Design", ECCV 2018): a network designed for the time it takes on a device,
not only for its multiply-adds.

Its unit follows the paper's four guidelines: equal input and output widths of the 1x1
convolutions (G1), no grouped 1x1 convolutions (G2), few branches (G3), few element-wise
operations (G4). The *channel split* sends half of the channels through unchanged and the
other half through 1x1 conv - 3x3 depthwise conv - 1x1 conv; the halves are concatenated
(no addition) and a *channel shuffle* mixes them, so that the next unit's split takes
channels from both::

    basic unit (stride 1)                    down-sampling unit (stride 2)
    x -> split -> [x1 | x2]                  x -> both branches, no split
         x1 unchanged                             branch 1: 3x3 DW s2, BN; 1x1, BN, ReLU
         x2: 1x1, BN, ReLU                        branch 2: 1x1, BN, ReLU
             3x3 DW, BN                                     3x3 DW s2, BN
             1x1, BN, ReLU                                  1x1, BN, ReLU
    concat -> channel shuffle (2 groups)     concat -> channel shuffle (2 groups)

    C -> C channels, H x W kept              C -> C' channels (C' = 2 x each branch), H/2 x W/2

The paper's Table 5 (input 224 x 224; output channels at the four widths)::

    layer        output     kernel  stride  repeat   0.5x   1.0x   1.5x   2.0x
    image        224 x 224                             3      3      3      3
    conv1        112 x 112  3x3     2       1         24     24     24     24
    max pool      56 x 56   3x3     2
    stage 2       28 x 28           2       1         48    116    176    244
                  28 x 28           1       3
    stage 3       14 x 14           2       1         96    232    352    488
                  14 x 14           1       7
    stage 4        7 x 7            2       1        192    464    704    976
                   7 x 7            1       3
    conv5          7 x 7    1x1     1       1       1024   1024   1024   2048
    global pool    1 x 1    7x7
    fc                                              1000   1000   1000   1000
    FLOPs                                             41M   146M   299M   591M
    weights                                          1.4M   2.3M   3.5M   7.4M

The modules and names are torchvision's (``conv1.0``, ``stage2.0.branch1.0``, ...,
``conv5.0``, ``fc``; torchvision calls the unit ``InvertedResidual``), so its weights load
unchanged. Initialisation is torchvision's too: PyTorch's default for the convolutions and
the fully connected layer (uniform, bound 1/sqrt(fan_in)), batch-norm scale 1 and shift 0.
"""
from __future__ import annotations

from typing import Sequence

from cnnlite import functional as F, nn
from cnnlite.models.blocks import ConvNormActivation, channel_shuffle
from cnnlite.models.registry import ModelEntry

__all__ = ["ShuffleUnit", "ShuffleNetV2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
           "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "MODELS"]


def _depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    """3x3 depthwise convolution (one filter per channel, ``groups=channels``). No ReLU
    follows it in either branch, as in ShuffleNet V1, which took that from Xception's finding
    that a non-linearity between the depthwise and the 1x1 convolution hurts."""
    return nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1,
                     groups=channels, bias=False)


def _pointwise_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


class ShuffleUnit(nn.Module):
    """The ShuffleNet V2 unit: channel split (stride 1) or two branches (stride 2), then
    concatenation and a channel shuffle.

    x: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride)

    Parameters
    ----------
    in_channels, out_channels : int
        At stride 1 they must be equal (and even): half the channels pass through, the other
        half go through ``branch2``.
    stride : int
        1 (basic unit) or 2 (down-sampling unit, which doubles the width of each stage).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit: stride must be 1 or 2, got {stride}")
        branch_channels = out_channels // 2
        if stride == 1 and in_channels != 2 * branch_channels:
            raise ValueError(f"ShuffleUnit: at stride 1 the input must have 2 x "
                             f"{branch_channels} channels (split into two halves), got "
                             f"{in_channels}")
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(
                _depthwise_conv(in_channels, stride), nn.BatchNorm2d(in_channels),
                _pointwise_conv(in_channels, branch_channels), nn.BatchNorm2d(branch_channels),
                nn.ReLU(),
            )
        self.branch2 = nn.Sequential(
            _pointwise_conv(in_channels if stride == 2 else branch_channels, branch_channels),
            nn.BatchNorm2d(branch_channels), nn.ReLU(),
            _depthwise_conv(branch_channels, stride), nn.BatchNorm2d(branch_channels),
            _pointwise_conv(branch_channels, branch_channels), nn.BatchNorm2d(branch_channels),
            nn.ReLU(),
        )

    def forward(self, x):
        if self.stride == 1:
            passed, processed = F.split(x, 2, axis=1)
            out = F.concat([passed, self.branch2(processed)], axis=1)
        else:
            out = F.concat([self.branch1(x), self.branch2(x)], axis=1)
        # Without the shuffle the pass-through half would stay in the first channels and be
        # split off unchanged again by every later unit of the stage.
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2: conv1, max pool, three stages of units, conv5, global pool, fc.

    x: (N, 3, H, W) -> logits (N, num_classes); the network divides H and W by 32 (224 x 224
    gives 7 x 7 maps at conv5) and takes any size, down to 1 x 1.

    Parameters
    ----------
    stages_repeats : sequence of 3 ints
        Units per stage 2, 3, 4 (the first of each at stride 2): 4, 8, 4 in the paper.
    stages_out_channels : sequence of 5 ints
        Channels of conv1, stages 2-4 and conv5 (a column of Table 5).
    num_classes : int
        Outputs of ``fc``.
    """

    def __init__(self, stages_repeats: Sequence[int], stages_out_channels: Sequence[int],
                 num_classes: int = 1000):
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError(f"ShuffleNetV2: stages_repeats needs 3 numbers (stages 2, 3, 4), "
                             f"got {list(stages_repeats)}")
        if len(stages_out_channels) != 5:
            raise ValueError(f"ShuffleNetV2: stages_out_channels needs 5 numbers (conv1, "
                             f"stages 2-4, conv5), got {list(stages_out_channels)}")
        conv1_channels, *stage_channels, conv5_channels = stages_out_channels
        self.conv1 = ConvNormActivation(3, conv1_channels, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = conv1_channels
        for stage, (repeats, out_channels) in enumerate(zip(stages_repeats, stage_channels),
                                                        start=2):
            units = [ShuffleUnit(channels, out_channels, stride=2)]
            units += [ShuffleUnit(out_channels, out_channels, stride=1)
                      for _ in range(repeats - 1)]
            setattr(self, f"stage{stage}", nn.Sequential(*units))
            channels = out_channels
        self.conv5 = ConvNormActivation(channels, conv5_channels, kernel_size=1)
        self.fc = nn.Linear(conv5_channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))                      # (N, C1, H / 4, W / 4)
        x = self.stage4(self.stage3(self.stage2(x)))         # (N, C4, H / 32, W / 32)
        x = self.conv5(x)
        return self.fc(F.mean(x, axis=(2, 3)))               # global average pool -> fc


def shufflenet_v2_x0_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 0.5x: 1,366,792 parameters at 1000 classes."""
    return ShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024], num_classes)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 1.0x: 2,278,604 parameters at 1000 classes."""
    return ShuffleNetV2([4, 8, 4], [24, 116, 232, 464, 1024], num_classes)


def shufflenet_v2_x1_5(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 1.5x: 3,503,624 parameters at 1000 classes."""
    return ShuffleNetV2([4, 8, 4], [24, 176, 352, 704, 1024], num_classes)


def shufflenet_v2_x2_0(num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNet V2 2.0x: 7,393,996 parameters at 1000 classes."""
    return ShuffleNetV2([4, 8, 4], [24, 244, 488, 976, 2048], num_classes)


MODELS = {
    "shufflenet_v2_x0_5": ModelEntry(shufflenet_v2_x0_5, (224, 224), small_input=(32, 32)),
    "shufflenet_v2_x1_0": ModelEntry(shufflenet_v2_x1_0, (224, 224), small_input=(32, 32)),
    "shufflenet_v2_x1_5": ModelEntry(shufflenet_v2_x1_5, (224, 224), small_input=(32, 32)),
    "shufflenet_v2_x2_0": ModelEntry(shufflenet_v2_x2_0, (224, 224), small_input=(32, 32)),
}
