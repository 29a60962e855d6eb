"""Squeeze-and-excitation networks (Hu et al. 2018): ResNet-50 and ResNeXt-50 with SE blocks.

An SE block lets a residual branch reweigh its own channels. It squeezes each of the C maps
of the branch's output to one number (its global average), passes the C numbers through a
small bottleneck of two fully connected layers (C -> C/16 -> C, ReLU then sigmoid) and
multiplies every map by its gate in (0, 1) before the shortcut is added::

    u = F(x)                               (N, C, H, W)   the bottleneck's output
    s = mean of u over H, W                (N, C, 1, 1)   squeeze
    g = sigmoid(fc2(relu(fc1(s))))         (N, C, 1, 1)   excitation
    y = relu(g * u + shortcut(x))          (N, C, H, W)

Table 1 of the paper (input 3 x 224 x 224; fc [C/16, C] is the SE block of a stage)::

    output   SE-ResNet-50                        SE-ResNeXt-50 (32 x 4d)
    112x112  conv 7x7, 64, stride 2
     56x56   max pool 3x3, stride 2
     56x56   [1x1, 64; 3x3, 64; 1x1, 256;        [1x1, 128; 3x3, 128, 32 groups; 1x1, 256;
              fc [16, 256]] x 3                    fc [16, 256]] x 3
     28x28   [1x1, 128; 3x3, 128; 1x1, 512;      [1x1, 256; 3x3, 256, 32 groups; 1x1, 512;
              fc [32, 512]] x 4                    fc [32, 512]] x 4
     14x14   [1x1, 256; 3x3, 256; 1x1, 1024;     [1x1, 512; 3x3, 512, 32 groups; 1x1, 1024;
              fc [64, 1024]] x 6                   fc [64, 1024]] x 6
      7x7    [1x1, 512; 3x3, 512; 1x1, 2048;     [1x1, 1024; 3x3, 1024, 32 groups; 1x1, 2048;
              fc [128, 2048]] x 3                  fc [128, 2048]] x 3
      1x1    global average pool, 1000-d fc, softmax

The SE blocks add 2,530,992 parameters (about 10 %) to ResNet-50's 25,557,032, but only
2,514,944 multiply-adds (0.06 %): they work on 1 x 1 maps.

Module names and state-dict keys are those of the widely used PyTorch port of the authors'
Caffe models (Cadene's ``pretrainedmodels``): ``layer0.conv1``, ``layer0.bn1``,
``layer1.0.conv1`` ... ``layer1.0.se_module.fc1``, ``layer2.0.downsample.0``,
``last_linear``. The SE block is ``blocks.SqueezeExcitation``, whose ``fc1`` and ``fc2`` are
the port's 1x1 convolutions. Two differences from the port, neither touching a key:

* the stride of a block sits on its 3x3 convolution, as in torchvision's ResNet, where the
  port's SE-ResNet (following Caffe) puts it on the first 1x1 (its SE-ResNeXt has it on the
  3x3 too). ``stride_in_1x1=True`` gives the port's SE-ResNet, the one its weights were
  trained as: the same parameters, 3,860,488,192 multiply-adds at 224 instead of
  4,091,699,200, since the 3x3 convolutions of each stage's first block see the smaller map;
* the final pooling is adaptive (the port's is a fixed 7 x 7 window), so inputs other than
  224 x 224 work; at 224 the two are the same.

Initialisation as ``resnet.init_resnet_weights`` (He et al.'s normal for every convolution,
the SE layers included, their biases 0), as the SENet models were trained from scratch.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from cnnlite import functional as F, nn
from cnnlite.models.blocks import SqueezeExcitation
from cnnlite.models.registry import ModelEntry
from cnnlite.models.resnet import Bottleneck, conv1x1, conv3x3, init_resnet_weights

__all__ = ["SEBottleneck", "SENet", "se_resnet50", "se_resnext50_32x4d", "MODELS"]


class SEBottleneck(Bottleneck):
    """A ResNet / ResNeXt bottleneck whose residual branch ends in a squeeze-and-excitation
    block: ``F(x) = se_module(bn3(conv3(...)))``, see ``resnet.Bottleneck``.

    x: (N, in_channels, H, W) -> (N, 4 * planes, H / stride, W / stride).

    Parameters
    ----------
    in_channels, planes, stride, downsample, groups, base_width
        As ``resnet.Bottleneck``.
    reduction : int
        The SE block squeezes the 4 * planes channels to 4 * planes / reduction (16).
    stride_in_1x1 : bool
        Stride on conv1 (the authors' Caffe SE-ResNets) instead of conv2.
    """

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 reduction: int = 16, stride_in_1x1: bool = False):
        super().__init__(in_channels, planes, stride, downsample, groups, base_width)
        if stride_in_1x1 and stride != 1:
            # Caffe's ResNets subsample in the first 1x1 convolution, which then reads only
            # every other pixel, and the 3x3 works on the smaller map.
            width = self.conv1.out_channels
            self.conv1 = conv1x1(in_channels, width, stride)
            self.conv2 = conv3x3(width, width, groups=groups)
        out_channels = planes * self.expansion
        self.se_module = SqueezeExcitation(out_channels, out_channels // reduction)

    def residual(self, x):
        return self.se_module(super().residual(x))


class SENet(nn.Module):
    """SE-ResNet / SE-ResNeXt: ResNet's layout with ``SEBottleneck`` blocks.

    Shapes for a 224 x 224 input::

        layer0: conv1 7x7/2, bn1, relu1    (N, 64, 112, 112)
                pool 3x3/2 (ceil mode)      (N, 64, 56, 56)
        layer1 .. layer4                    (N, 256, 56, 56) .. (N, 2048, 7, 7)
        avg_pool (adaptive, 1x1)            (N, 2048, 1, 1)
        last_linear                         (N, num_classes)

    The max pooling has no padding and rounds up (Caffe's rule), where torchvision's ResNet
    pads by 1 and rounds down: the same output size, slightly different windows at the edge.

    Parameters
    ----------
    layers : four ints
        Blocks per stage ([3, 4, 6, 3] for the 50-layer networks).
    num_classes : int
    groups, base_width : int
        1 and 64 for SE-ResNet, 32 and 4 for SE-ResNeXt 32 x 4d.
    reduction : int
        Reduction ratio of the SE blocks (16 in the paper).
    stride_in_1x1 : bool
        Put each stage's stride on the first 1x1 convolution, as the port's SE-ResNet.
    """

    def __init__(self, layers: Sequence[int], num_classes: int = 1000, groups: int = 1,
                 base_width: int = 64, reduction: int = 16, stride_in_1x1: bool = False):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"SENet: layers must give the blocks of the 4 stages, got "
                             f"{list(layers)}")
        self.layer0 = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)),
            ("bn1", nn.BatchNorm2d(64)),
            ("relu1", nn.ReLU()),
            ("pool", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        ]))
        in_channels = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            out_channels = planes * SEBottleneck.expansion
            stage = []
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                downsample = None
                if stride != 1 or in_channels != out_channels:
                    downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride),
                                               nn.BatchNorm2d(out_channels))
                stage.append(SEBottleneck(in_channels, planes, stride, downsample, groups,
                                          base_width, reduction, stride_in_1x1))
                in_channels = out_channels
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.last_linear = nn.Linear(512 * SEBottleneck.expansion, num_classes)
        init_resnet_weights(self)

    def forward(self, x):
        x = self.layer0(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.last_linear(F.flatten(self.avg_pool(x), 1))


def se_resnet50(num_classes: int = 1000, stride_in_1x1: bool = False) -> SENet:
    """SE-ResNet-50: 28,088,024 parameters; 4,091,699,200 multiply-adds at 224 x 224
    (3,860,488,192 with ``stride_in_1x1``, the paper's 3.87 GFLOPs)."""
    return SENet([3, 4, 6, 3], num_classes, stride_in_1x1=stride_in_1x1)


def se_resnext50_32x4d(num_classes: int = 1000) -> SENet:
    """SE-ResNeXt-50 (32 x 4d): 27,559,896 parameters; 4,232,994,816 multiply-adds at
    224 x 224 (the paper gives 4.25 GFLOPs)."""
    return SENet([3, 4, 6, 3], num_classes, groups=32, base_width=4)


MODELS = {
    "se_resnet50": ModelEntry(se_resnet50, (224, 224), small_input=(32, 32)),
    "se_resnext50_32x4d": ModelEntry(se_resnext50_32x4d, (224, 224), small_input=(32, 32)),
}
