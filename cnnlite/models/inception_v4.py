"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke and Alemi, 2016).

Inception-v4 is Inception-v3 made uniform: one stem, then the same three kinds of Inception
module (A on the 35x35 grid, B on 17x17, C on 8x8) separated by two reduction modules.
Inception-ResNet-v2 turns each Inception module into the residual branch of a ResNet block:

    y = relu(x + scale * conv1x1(concat(branches(x))))

the 1x1 convolution brings the concatenated branches back to the depth of x so the two can
be added. The paper found that residual branches of very wide blocks made training "die"
(the network output zeros after a while) unless they were scaled down, by 0.1 to 0.3, before
the addition; the scales below are those of the released model.

Layer names and state-dict keys follow the widely used PyTorch port of Google's released
TF-slim weights (Cadene's ``pretrainedmodels``: ``features.N`` for Inception-v4,
``conv2d_1a``, ``repeat``, ... for Inception-ResNet-v2, ``last_linear``), whose
``BasicConv2d`` is conv (no bias) -> batch norm (eps 0.001) -> ReLU. Shapes at 299 x 299:

    Inception-v4                                    Inception-ResNet-v2
    features.0-2  3 convs 3x3       147x147x64      conv2d_1a..2b  3 convs 3x3   147x147x64
    features.3    Mixed3a            73x73x160      maxpool_3a, conv2d_3b, 4a     71x71x192
    features.4    Mixed4a            71x71x192      maxpool_5a                    35x35x192
    features.5    Mixed5a            35x35x384      mixed_5b  Mixed5b             35x35x320
    features.6-9  4 x InceptionA     35x35x384      repeat    10 x InceptionResNetA (0.17)
    features.10   ReductionA         17x17x1024     mixed_6a  ReductionA          17x17x1088
    features.11-17 7 x InceptionB    17x17x1024     repeat_1  20 x InceptionResNetB (0.10)
    features.18   ReductionB          8x8x1536      mixed_7a  ResNetReductionB     8x8x2080
    features.19-21 3 x InceptionC     8x8x1536      repeat_2, block8  10 x InceptionResNetC
                                                    conv2d_7b 1x1                  8x8x1536
    average pooling, dropout, last_linear 1536 -> num_classes (both)

Inception-v4: 42,679,816 parameters, 12,253,974,624 multiply-adds; Inception-ResNet-v2:
55,843,464 and 13,155,794,016 (299 x 299, 1000 classes). The released Inception-ResNet-v2
(and so this one) has twice the blocks of the paper's Figure 15 (10, 20, 10 for 5, 10, 5) and
Inception-v3's stem, not the paper's Figure 3 stem; its last block has no ReLU.

The port averages the final 8x8 map with an 8x8 pooling; a global average is the same at
299 x 299 and also takes other sizes, from 75 x 75 up (the stem and the two reductions shrink
75 x 75 to 1 x 1). The port sets no initialisation: the layers' defaults are used.
"""
from __future__ import annotations

from cnnlite import functional as F, nn
from cnnlite.models.googlenet import BasicConv2d
from cnnlite.models.registry import ModelEntry

__all__ = ["ConcatBranches", "Mixed3a", "Mixed4a", "Mixed5a", "InceptionA", "ReductionA",
           "InceptionB", "ReductionB", "InceptionC", "InceptionV4", "Mixed5b",
           "InceptionResNetA", "InceptionResNetB", "ResNetReductionB", "InceptionResNetC",
           "InceptionResNetV2", "inception_v4", "inception_resnet_v2", "MODELS"]


def _average_pool_3x3():
    """3x3 average pooling that keeps the size; the padded zeros are not counted."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3_stride2():
    return nn.MaxPool2d(3, stride=2)


class ConcatBranches(nn.Module):
    """Run every child module (a branch) on the same input and concatenate their outputs
    along the channels, in the order the branches were assigned.

    x: (N, C, H, W) -> (N, sum of the branches' channels, H', W')
    """

    def forward(self, x):
        return F.concat([branch(x) for branch in self.children()], axis=1)


class Mixed3a(ConcatBranches):
    """Stem: 3x3/2 max pooling | 3x3/2 conv 96.  (N, 64, H, W) -> (N, 160, H', W')"""

    def __init__(self):
        super().__init__()
        self.maxpool = _max_pool_3x3_stride2()
        self.conv = BasicConv2d(64, 96, kernel_size=3, stride=2)


class Mixed4a(ConcatBranches):
    """Stem: 1x1 64 -> 3x3 96 | 1x1 64 -> 1x7 64 -> 7x1 64 -> 3x3 96.
    (N, 160, H, W) -> (N, 192, H - 2, W - 2)"""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(160, 64, kernel_size=1),
                                     BasicConv2d(64, 96, kernel_size=3))
        self.branch1 = nn.Sequential(
            BasicConv2d(160, 64, kernel_size=1),
            BasicConv2d(64, 64, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(64, 64, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(64, 96, kernel_size=3))


class Mixed5a(ConcatBranches):
    """Stem: 3x3/2 conv 192 | 3x3/2 max pooling.  (N, 192, H, W) -> (N, 384, H', W')"""

    def __init__(self):
        super().__init__()
        self.conv = BasicConv2d(192, 192, kernel_size=3, stride=2)
        self.maxpool = _max_pool_3x3_stride2()


class InceptionA(ConcatBranches):
    """Inception-A (35x35 grid): 1x1 96 | 1x1 64 -> 3x3 96 | 1x1 64 -> 3x3 96 -> 3x3 96 |
    avg pool -> 1x1 96.  (N, 384, H, W) -> (N, 384, H, W)"""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(384, 96, kernel_size=1)
        self.branch1 = nn.Sequential(BasicConv2d(384, 64, kernel_size=1),
                                     BasicConv2d(64, 96, kernel_size=3, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(384, 64, kernel_size=1),
                                     BasicConv2d(64, 96, kernel_size=3, padding=1),
                                     BasicConv2d(96, 96, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(_average_pool_3x3(), BasicConv2d(384, 96, kernel_size=1))


class ReductionA(ConcatBranches):
    """Reduction-A (35x35 -> 17x17), with the paper's widths k, l, m, n (Table 1):
    3x3/2 n | 1x1 k -> 3x3 l -> 3x3/2 m | 3x3/2 max pool.
    (N, C, H, W) -> (N, n + m + C, (H - 3) // 2 + 1, (W - 3) // 2 + 1)"""

    def __init__(self, in_channels: int, k: int, l: int, m: int, n: int):  # noqa: E741
        super().__init__()
        self.branch0 = BasicConv2d(in_channels, n, kernel_size=3, stride=2)
        self.branch1 = nn.Sequential(BasicConv2d(in_channels, k, kernel_size=1),
                                     BasicConv2d(k, l, kernel_size=3, padding=1),
                                     BasicConv2d(l, m, kernel_size=3, stride=2))
        self.branch2 = _max_pool_3x3_stride2()


class InceptionB(ConcatBranches):
    """Inception-B (17x17 grid), 7x7 convolutions factorised into 1x7 and 7x1:
    1x1 384 | 1x1 192 -> 1x7 224 -> 7x1 256 | 1x1 192 -> 7x1 192 -> 1x7 224 -> 7x1 224 ->
    1x7 256 | avg pool -> 1x1 128.  (N, 1024, H, W) -> (N, 1024, H, W)"""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1024, 384, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(224, 256, kernel_size=(7, 1), padding=(3, 0)))
        self.branch2 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(224, 224, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(224, 256, kernel_size=(1, 7), padding=(0, 3)))
        self.branch3 = nn.Sequential(_average_pool_3x3(), BasicConv2d(1024, 128, kernel_size=1))


class ReductionB(ConcatBranches):
    """Reduction-B (17x17 -> 8x8): 1x1 192 -> 3x3/2 192 | 1x1 256 -> 1x7 256 -> 7x1 320 ->
    3x3/2 320 | 3x3/2 max pool.  (N, 1024, H, W) -> (N, 1536, H', W')"""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(1024, 192, kernel_size=1),
                                     BasicConv2d(192, 192, kernel_size=3, stride=2))
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 256, kernel_size=1),
            BasicConv2d(256, 256, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(256, 320, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(320, 320, kernel_size=3, stride=2))
        self.branch2 = _max_pool_3x3_stride2()


class InceptionC(nn.Module):
    """Inception-C (8x8 grid), branches that end in a 1x3 and a 3x1 convolution side by side:
    1x1 256 | 1x1 384 -> (1x3 256, 3x1 256) | 1x1 384 -> 3x1 448 -> 1x3 512 -> (1x3 256,
    3x1 256) | avg pool -> 1x1 256.  (N, 1536, H, W) -> (N, 1536, H, W)"""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1536, 256, kernel_size=1)
        self.branch1_0 = BasicConv2d(1536, 384, kernel_size=1)
        self.branch1_1a = BasicConv2d(384, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch1_1b = BasicConv2d(384, 256, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_0 = BasicConv2d(1536, 384, kernel_size=1)
        self.branch2_1 = BasicConv2d(384, 448, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_2 = BasicConv2d(448, 512, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3a = BasicConv2d(512, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3b = BasicConv2d(512, 256, kernel_size=(3, 1), padding=(1, 0))
        self.branch3 = nn.Sequential(_average_pool_3x3(), BasicConv2d(1536, 256, kernel_size=1))

    def forward(self, x):
        x1 = self.branch1_0(x)
        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return F.concat([self.branch0(x), self.branch1_1a(x1), self.branch1_1b(x1),
                         self.branch2_3a(x2), self.branch2_3b(x2), self.branch3(x)], axis=1)


class InceptionV4(nn.Module):
    """Inception-v4; see the module docstring. ``dropout`` (before the last layer) is the
    paper's keep probability 0.8 (the port leaves it out; it changes nothing in evaluation).

    Shapes: x (N, 3, H, W), 299 x 299 by design, 75 x 75 and up -> (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            BasicConv2d(3, 32, kernel_size=3, stride=2),
            BasicConv2d(32, 32, kernel_size=3),
            BasicConv2d(32, 64, kernel_size=3, padding=1),
            Mixed3a(), Mixed4a(), Mixed5a(),
            *[InceptionA() for _ in range(4)],
            ReductionA(384, k=192, l=224, m=256, n=384),
            *[InceptionB() for _ in range(7)],
            ReductionB(),
            *[InceptionC() for _ in range(3)])
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)

    def forward(self, x):
        x = self.avg_pool(self.features(x))                             # (N, 1536, 1, 1)
        return self.last_linear(self.dropout(x.reshape(x.shape[0], -1)))


class Mixed5b(ConcatBranches):
    """End of Inception-ResNet-v2's stem (Inception-v3's first module, wider):
    1x1 96 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg pool -> 1x1 64.
    (N, 192, H, W) -> (N, 320, H, W)"""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, kernel_size=1)
        self.branch1 = nn.Sequential(BasicConv2d(192, 48, kernel_size=1),
                                     BasicConv2d(48, 64, kernel_size=5, padding=2))
        self.branch2 = nn.Sequential(BasicConv2d(192, 64, kernel_size=1),
                                     BasicConv2d(64, 96, kernel_size=3, padding=1),
                                     BasicConv2d(96, 96, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(_average_pool_3x3(), BasicConv2d(192, 64, kernel_size=1))


class _ScaledResidual(nn.Module):
    """``y = relu(x + scale * conv2d(concat(branch0(x), branch1(x), ...)))``: the Inception-
    ResNet block. Subclasses assign the branches (``branch0``, ...) and then ``conv2d``, the
    1x1 convolution (with bias) back to x's depth; ``activate=False`` leaves out the ReLU."""

    def __init__(self, scale: float, activate: bool):
        super().__init__()
        self.scale, self.activate = scale, activate

    def forward(self, x):
        branches = [module(x) for name, module in self.named_children()
                    if name.startswith("branch")]
        out = x + self.scale * self.conv2d(F.concat(branches, axis=1))
        return F.relu(out) if self.activate else out


class InceptionResNetA(_ScaledResidual):
    """Inception-ResNet-A (35x35): 1x1 32 | 1x1 32 -> 3x3 32 | 1x1 32 -> 3x3 48 -> 3x3 64,
    then 1x1 128 -> 320.  (N, 320, H, W) -> (N, 320, H, W)"""

    def __init__(self, scale: float = 1.0, activate: bool = True):
        super().__init__(scale, activate)
        self.branch0 = BasicConv2d(320, 32, kernel_size=1)
        self.branch1 = nn.Sequential(BasicConv2d(320, 32, kernel_size=1),
                                     BasicConv2d(32, 32, kernel_size=3, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(320, 32, kernel_size=1),
                                     BasicConv2d(32, 48, kernel_size=3, padding=1),
                                     BasicConv2d(48, 64, kernel_size=3, padding=1))
        self.conv2d = nn.Conv2d(128, 320, kernel_size=1)


class InceptionResNetB(_ScaledResidual):
    """Inception-ResNet-B (17x17): 1x1 192 | 1x1 128 -> 1x7 160 -> 7x1 192, then 1x1
    384 -> 1088.  (N, 1088, H, W) -> (N, 1088, H, W)"""

    def __init__(self, scale: float = 1.0, activate: bool = True):
        super().__init__(scale, activate)
        self.branch0 = BasicConv2d(1088, 192, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1088, 128, kernel_size=1),
            BasicConv2d(128, 160, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(160, 192, kernel_size=(7, 1), padding=(3, 0)))
        self.conv2d = nn.Conv2d(384, 1088, kernel_size=1)


class InceptionResNetC(_ScaledResidual):
    """Inception-ResNet-C (8x8): 1x1 192 | 1x1 192 -> 1x3 224 -> 3x1 256, then 1x1
    448 -> 2080.  (N, 2080, H, W) -> (N, 2080, H, W)"""

    def __init__(self, scale: float = 1.0, activate: bool = True):
        super().__init__(scale, activate)
        self.branch0 = BasicConv2d(2080, 192, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(2080, 192, kernel_size=1),
            BasicConv2d(192, 224, kernel_size=(1, 3), padding=(0, 1)),
            BasicConv2d(224, 256, kernel_size=(3, 1), padding=(1, 0)))
        self.conv2d = nn.Conv2d(448, 2080, kernel_size=1)


class ResNetReductionB(ConcatBranches):
    """Inception-ResNet-v2's Reduction-B (17x17 -> 8x8): 1x1 256 -> 3x3/2 384 | 1x1 256 ->
    3x3/2 288 | 1x1 256 -> 3x3 288 -> 3x3/2 320 | 3x3/2 max pool.
    (N, 1088, H, W) -> (N, 2080, H', W')"""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(1088, 256, kernel_size=1),
                                     BasicConv2d(256, 384, kernel_size=3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(1088, 256, kernel_size=1),
                                     BasicConv2d(256, 288, kernel_size=3, stride=2))
        self.branch2 = nn.Sequential(BasicConv2d(1088, 256, kernel_size=1),
                                     BasicConv2d(256, 288, kernel_size=3, padding=1),
                                     BasicConv2d(288, 320, kernel_size=3, stride=2))
        self.branch3 = _max_pool_3x3_stride2()


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2; see the module docstring. ``dropout`` as in ``InceptionV4``.

    Shapes: x (N, 3, H, W), 299 x 299 by design, 75 x 75 and up -> (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool_3a = _max_pool_3x3_stride2()
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool_5a = _max_pool_3x3_stride2()
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[InceptionResNetA(scale=0.17) for _ in range(10)])
        self.mixed_6a = ReductionA(320, k=256, l=256, m=384, n=384)
        self.repeat_1 = nn.Sequential(*[InceptionResNetB(scale=0.10) for _ in range(20)])
        self.mixed_7a = ResNetReductionB()
        self.repeat_2 = nn.Sequential(*[InceptionResNetC(scale=0.20) for _ in range(9)])
        self.block8 = InceptionResNetC(scale=1.0, activate=False)
        self.conv2d_7b = BasicConv2d(2080, 1536, kernel_size=1)
        self.avgpool_1a = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)

    def forward(self, x):
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))           # (N, 64, 147, 147)
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))          # (N, 192, 71, 71)
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))              # (N, 320, 35, 35)
        x = self.repeat_1(self.mixed_6a(x))                             # (N, 1088, 17, 17)
        x = self.block8(self.repeat_2(self.mixed_7a(x)))                # (N, 2080, 8, 8)
        x = self.avgpool_1a(self.conv2d_7b(x))                          # (N, 1536, 1, 1)
        return self.last_linear(self.dropout(x.reshape(x.shape[0], -1)))


def inception_v4(num_classes: int = 1000, dropout: float = 0.2) -> InceptionV4:
    """Inception-v4 (see ``InceptionV4``)."""
    return InceptionV4(num_classes=num_classes, dropout=dropout)


def inception_resnet_v2(num_classes: int = 1000, dropout: float = 0.2) -> InceptionResNetV2:
    """Inception-ResNet-v2 (see ``InceptionResNetV2``)."""
    return InceptionResNetV2(num_classes=num_classes, dropout=dropout)


MODELS = {
    "inception_v4": ModelEntry(inception_v4, (299, 299), small_input=(75, 75)),
    "inception_resnet_v2": ModelEntry(inception_resnet_v2, (299, 299), small_input=(75, 75)),
}
