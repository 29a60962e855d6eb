"""Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture", 2015), as torchvision.

Inception-v3 keeps GoogLeNet's idea (parallel branches, concatenated) and makes it cheaper by
factorising convolutions: a 5x5 becomes two stacked 3x3 (same receptive field, 18/25 of the
cost), an n x n becomes a 1 x n followed by an n x 1 (2n/n^2 of the cost), and the grid is
halved by convolutions and pooling side by side, so that the representation never passes
through a narrow bottleneck.

The network at its 299 x 299 input (the paper's Table 1, with torchvision's layer names;
in brackets torchvision's class names)::

    layer                                  kernel/stride     output
    Conv2d_1a_3x3                          3x3/2            149x149x32
    Conv2d_2a_3x3                          3x3/1            147x147x32
    Conv2d_2b_3x3                          3x3/1, padded    147x147x64
    maxpool1                               3x3/2             73x73x64
    Conv2d_3b_1x1                          1x1/1             73x73x80
    Conv2d_4a_3x3                          3x3/1             71x71x192
    maxpool2                               3x3/2             35x35x192
    Mixed_5b, 5c, 5d   InceptionFactorized  (Fig. 5) [A]     35x35x256, 288, 288
    Mixed_6a           GridReduction35to17  (Fig. 10) [B]    17x17x768
    Mixed_6b .. 6e     InceptionAsymmetric  (Fig. 6) [C]     17x17x768
    (AuxLogits on the 17x17x768 map, while training)
    Mixed_7a           GridReduction17to8   [D]               8x8x1280
    Mixed_7b, 7c       InceptionExpanded    (Fig. 7) [E]      8x8x2048
    avgpool, dropout, fc                                       1x1x2048 -> num_classes

23,834,568 parameters without the auxiliary head (27,161,264 with it), 5,713,216,096
multiply-adds at 299 x 299. The grid sizes above are those of the 299 input; any input from
75 x 75 up works (the last pooling is adaptive), but the auxiliary head needs the full 17 x 17
map, that is a 299 x 299 input or larger: its 5x5/3 pooling and 5x5 convolution take 17 x 17
down to 1 x 1, and a 16 x 16 map would leave the 5x5 convolution a 4 x 4 input.

Initialisation (torchvision's): conv and linear weights ~ N(0, 0.1^2), the auxiliary fully
connected layer N(0, 0.001^2); batch norm scale 1, shift 0. torchvision meant 0.01 for the
auxiliary 5x5 convolution too, but sets it on the wrapper (``BasicConv2d``), which its loop
over convolutions never looks at, so that layer gets 0.1 as well; so does it here. The normal is
truncated at +-2 in torchvision, 20 standard deviations out: no draw ever gets there.
"""
from __future__ import annotations

from typing import NamedTuple

from cnnlite import functional as F, nn
from cnnlite.models.googlenet import BasicConv2d, transform_imagenet_input
from cnnlite.models.registry import ModelEntry
from cnnlite.tensor import Tensor

__all__ = ["InceptionFactorized", "GridReduction35to17", "InceptionAsymmetric",
           "GridReduction17to8", "InceptionExpanded", "InceptionAux", "Inception3",
           "InceptionOutputs", "inception_v3", "MODELS"]


def _average_pool_3x3(x):
    """3x3 average pooling that keeps the size (the padded zeros count, as in torchvision)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1)


class InceptionFactorized(nn.Module):
    """Inception module with the 5x5 convolution factorised into two 3x3 (Fig. 5) [InceptionA].

    branches: 1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg pool -> 1x1
    pool_features. (torchvision's port keeps a true 5x5 in the second branch, as Google's
    released graph does.)  x: (N, C, H, W) -> (N, 224 + pool_features, H, W)
    """

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_average_pool_3x3(x))
        return F.concat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], axis=1)


class GridReduction35to17(nn.Module):
    """Halve the grid with a stride-2 convolution and a stride-2 pooling side by side (Fig. 10)
    [InceptionB]: pooling alone would lose information, a convolution at full size first would
    cost three times as much.

    branches: 3x3/2 384 | 1x1 64 -> 3x3 96 -> 3x3/2 96 | 3x3/2 max pool
    x: (N, C, H, W) -> (N, 480 + C, (H - 3) // 2 + 1, (W - 3) // 2 + 1)
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, 3, stride=2)
        return F.concat([self.branch3x3(x), branch3x3dbl, branch_pool], axis=1)


class InceptionAsymmetric(nn.Module):
    """Inception module with 7x7 convolutions factorised into 1x7 and 7x1 (Fig. 6)
    [InceptionC]; ``channels_7x7`` is the width inside the factorised branches.

    branches: 1x1 192 | 1x1 c7 -> 1x7 c7 -> 7x1 192 | 1x1 c7 -> 7x1 -> 1x7 -> 7x1 -> 1x7 192 |
    avg pool -> 1x1 192.  x: (N, C, H, W) -> (N, 768, H, W)
    """

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for index in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{index}")(branch7x7dbl)
        branch_pool = self.branch_pool(_average_pool_3x3(x))
        return F.concat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], axis=1)


class GridReduction17to8(nn.Module):
    """The second grid reduction [InceptionD].

    branches: 1x1 192 -> 3x3/2 320 | 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192 | 3x3/2 max pool
    x: (N, C, H, W) -> (N, 512 + C, (H - 3) // 2 + 1, (W - 3) // 2 + 1)
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = x
        for index in range(1, 5):
            branch7x7x3 = getattr(self, f"branch7x7x3_{index}")(branch7x7x3)
        branch_pool = F.max_pool2d(x, 3, stride=2)
        return F.concat([branch3x3, branch7x7x3, branch_pool], axis=1)


class InceptionExpanded(nn.Module):
    """Inception module with expanded filter bank outputs (Fig. 7) [InceptionE]: on the
    coarsest grid the 3x3 branches end in a 1x3 and a 3x1 convolution side by side, both kept,
    to make the representation wider where it is spatially small.

    branches: 1x1 320 | 1x1 384 -> (1x3 384, 3x1 384) | 1x1 448 -> 3x3 384 -> (1x3 384,
    3x1 384) | avg pool -> 1x1 192.  x: (N, C, H, W) -> (N, 2048, H, W)
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = F.concat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)],
                             axis=1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = F.concat([self.branch3x3dbl_3a(branch3x3dbl),
                                 self.branch3x3dbl_3b(branch3x3dbl)], axis=1)
        branch_pool = self.branch_pool(_average_pool_3x3(x))
        return F.concat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], axis=1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17x768 map: 5x5/3 average pooling (-> 5x5), 1x1 conv to
    128, 5x5 conv to 768 (-> 1x1), fully connected to the classes. The paper found it acts
    as a regulariser (with batch norm in it) rather than as a help for the gradient.

    x: (N, in_channels, H, W), H and W >= 17 -> (N, num_classes)
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim != 4 or min(x.shape[2:]) < 17:
            raise self.input_error("(N, C, H, W) with H, W >= 17 (the 17x17 map of a 299x299 "
                                   "image; train smaller inputs with aux_logits=False)", x)
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))         # (N, 768, 1, 1)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.fc(x.reshape(x.shape[0], -1))


class InceptionOutputs(NamedTuple):
    """What Inception-v3 returns while training with the auxiliary head."""

    logits: Tensor
    aux_logits: Tensor


class Inception3(nn.Module):
    """Inception-v3; see the module docstring for the architecture.

    Parameters
    ----------
    num_classes : int
    aux_logits : bool
        Build the auxiliary classifier ``AuxLogits``; while training the forward pass then
        returns ``InceptionOutputs(logits, aux_logits)``, in evaluation only the logits.
    transform_input : bool
        Re-normalise ImageNet-normalised inputs to [-1, 1] first (for Google's weights).
    init_weights : bool
        torchvision's initialisation (module docstring); ``False`` keeps the layers' defaults.
    dropout : float
        Dropout before the last layer.

    Shapes: x (N, 3, H, W), 299 x 299 by design, 75 x 75 and up accepted (299 x 299 and up
    while training with the auxiliary head) -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True,
                 transform_input: bool = False, init_weights: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2)
        self.Mixed_5b = InceptionFactorized(192, pool_features=32)
        self.Mixed_5c = InceptionFactorized(256, pool_features=64)
        self.Mixed_5d = InceptionFactorized(288, pool_features=64)
        self.Mixed_6a = GridReduction35to17(288)
        self.Mixed_6b = InceptionAsymmetric(768, channels_7x7=128)
        self.Mixed_6c = InceptionAsymmetric(768, channels_7x7=160)
        self.Mixed_6d = InceptionAsymmetric(768, channels_7x7=160)
        self.Mixed_6e = InceptionAsymmetric(768, channels_7x7=192)
        if aux_logits:
            self.AuxLogits = InceptionAux(768, num_classes)
        self.Mixed_7a = GridReduction17to8(768)
        self.Mixed_7b = InceptionExpanded(1280)
        self.Mixed_7c = InceptionExpanded(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2048, num_classes)
        if init_weights:
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(module.weight, 0.0, 0.1)
            if aux_logits:
                nn.init.normal_(self.AuxLogits.fc.weight, 0.0, 0.001)

    def forward(self, x):
        if self.transform_input:
            x = transform_imagenet_input(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))       # (N, 192, 71, 71)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(self.maxpool2(x))))  # (N, 288, 35, 35)
        x = self.Mixed_6a(x)                                               # (N, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (N, 768, 17, 17)
        with_aux = self.aux_logits and self.training
        aux = self.AuxLogits(x) if with_aux else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))                 # (N, 2048, 8, 8)
        x = self.dropout(self.avgpool(x))                                  # (N, 2048, 1, 1)
        logits = self.fc(x.reshape(x.shape[0], -1))                        # (N, num_classes)
        return InceptionOutputs(logits, aux) if with_aux else logits


def inception_v3(num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 init_weights: bool = True, dropout: float = 0.5) -> Inception3:
    """Inception-v3 as torchvision's ``inception_v3`` (see ``Inception3``)."""
    return Inception3(num_classes=num_classes, aux_logits=aux_logits,
                      transform_input=transform_input, init_weights=init_weights,
                      dropout=dropout)


# The auxiliary head needs a 299 x 299 input; a quick check at 75 x 75 goes without it.
MODELS = {"inception_v3": ModelEntry(inception_v3, (299, 299), small_input=(75, 75),
                                     small_kwargs={"aux_logits": False})}
