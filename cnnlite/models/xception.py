"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", 2017).

An Inception module maps cross-channel correlations (1x1 convolutions) and spatial
correlations (3x3 convolutions on a few channel groups) separately. Taken to the extreme, one
group per channel, that is a depthwise separable convolution:

    depthwise  3x3 convolution of each channel on its own (groups = C)   C * 9 weights
    pointwise  1x1 convolution mixing the channels                       C * C_out weights

instead of C * C_out * 9 weights for a full 3x3 convolution (Xception puts the depthwise part
first, as TensorFlow's ``separable_conv2d`` does, and no non-linearity in between).
Xception is a linear stack of such convolutions with residual connections, in three flows
(the paper's Figure 5; shapes at 299 x 299, as the PyTorch port with its keys)::

    entry flow   conv1 3x3/2 32, conv2 3x3 64 (each + BN + ReLU)          147x147x64
                 block1  [SepConv 128, SepConv 128, max pool 3x3/2]  + 1x1/2 conv  74x74x128
                 block2  [ReLU SepConv 256, ReLU SepConv 256, pool]  + 1x1/2 conv  37x37x256
                 block3  [ReLU SepConv 728, ReLU SepConv 728, pool]  + 1x1/2 conv  19x19x728
    middle flow  block4 .. block11  [ReLU SepConv 728] x 3  + identity     19x19x728
    exit flow    block12 [ReLU SepConv 728, ReLU SepConv 1024, pool] + 1x1/2 conv  10x10x1024
                 conv3 SepConv 1536, conv4 SepConv 2048 (each + BN + ReLU) 10x10x2048
                 global average pooling, dropout, last_linear             num_classes

Every SepConv is followed by batch normalisation (PyTorch's default eps 1e-5 in the port).
22,855,952 parameters (the paper's Table 3 gives the same count) and 8,357,403,496
multiply-adds at 299 x 299 (1000 classes). Thanks to the global pooling small inputs work too
(32 x 32 for quick checks; Keras asks for at least 71 x 71).

Keys follow the widely used PyTorch port of the Keras weights (Cadene's ``pretrainedmodels``,
after its rename of ``fc`` to ``last_linear``): ``conv1``, ``bn1``, ``block1.rep.0.conv1``
(the depthwise part), ``block1.rep.0.pointwise``, ``block1.skip``, ``block1.skipbn``, ...
The port sets no initialisation, so the layers' defaults are used. ``dropout`` is the paper's
0.5 before the classifier on ImageNet (the port leaves it out; evaluation is the same).
"""
from __future__ import annotations

from cnnlite import functional as F, nn
from cnnlite.models.registry import ModelEntry

__all__ = ["SeparableConv2d", "XceptionBlock", "Xception", "xception", "MODELS"]


class SeparableConv2d(nn.Module):
    """Depthwise separable convolution: a ``kernel_size`` convolution of each channel on its
    own (``conv1``, groups = in_channels), then a 1x1 convolution across channels
    (``pointwise``). No biases: batch norm follows.

    x: (N, in_channels, H, W) -> (N, out_channels, H', W') with H' as for ``conv1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                               padding=padding, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class XceptionBlock(nn.Module):
    """``reps`` x (ReLU -> SeparableConv2d 3x3 -> BN), then a 3x3 max pooling when ``stride``
    is 2, plus a shortcut: the input itself, or a 1x1 convolution with ``stride`` and BN where
    the depth or the size changes.

    Parameters
    ----------
    reps : int
        Separable convolutions in the residual branch.
    start_with_relu : bool
        ``False`` for block1, which follows conv2's own ReLU.
    grow_first : bool
        Change the depth in the first separable convolution (``True``) or in the last
        (``False``: block12 widens 728 -> 1024 only at its end).

    The branch is the Sequential ``rep``; its indices (``rep.1.conv1`` ...) count the ReLUs,
    as in the port. x: (N, in_channels, H, W) -> (N, out_channels, H', W'), H' = (H - 1) //
    stride + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, reps: int, stride: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
        widths = [in_channels] + [out_channels if grow_first else in_channels] * (reps - 1)
        widths.append(out_channels)
        layers = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ReLU(), SeparableConv2d(width_in, width_out), nn.BatchNorm2d(width_out)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride=stride, padding=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x):
        shortcut = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + shortcut


class Xception(nn.Module):
    """Xception; see the module docstring.

    Shapes: x (N, 3, H, W), 299 x 299 by design, 32 x 32 and up -> (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.block1 = XceptionBlock(64, 128, 2, stride=2, start_with_relu=False)
        self.block2 = XceptionBlock(128, 256, 2, stride=2)
        self.block3 = XceptionBlock(256, 728, 2, stride=2)
        for index in range(4, 12):
            setattr(self, f"block{index}", XceptionBlock(728, 728, 3))
        self.block12 = XceptionBlock(728, 1024, 2, stride=2, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))                             # (N, 32, 149, 149)
        x = F.relu(self.bn2(self.conv2(x)))                             # (N, 64, 147, 147)
        for index in range(1, 13):
            x = getattr(self, f"block{index}")(x)                       # ... (N, 1024, 10, 10)
        x = F.relu(self.bn3(self.conv3(x)))                             # (N, 1536, 10, 10)
        x = F.relu(self.bn4(self.conv4(x)))                             # (N, 2048, 10, 10)
        x = self.avgpool(x)                                             # (N, 2048, 1, 1)
        return self.last_linear(self.dropout(x.reshape(x.shape[0], -1)))


def xception(num_classes: int = 1000, dropout: float = 0.5) -> Xception:
    """Xception (see ``Xception``)."""
    return Xception(num_classes=num_classes, dropout=dropout)


MODELS = {"xception": ModelEntry(xception, (299, 299), small_input=(32, 32))}
