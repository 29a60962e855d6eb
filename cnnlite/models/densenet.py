"""DenseNet (Huang, Liu, van der Maaten and Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017): every layer of a dense block sees the feature maps of all layers before
it in that block, concatenated along the channels.

In a dense block, layer l computes ``k`` new maps (the *growth rate*) from all earlier ones::

    x_l = H_l([x_0, x_1, ..., x_{l-1}])        [.] = concatenation along the channels

so after L layers a block that started with c_0 channels holds c_0 + L k. H_l is the
bottleneck version of the paper's "DenseNet-B": BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k). Between
blocks a *transition layer* (BN-ReLU-Conv1x1-AvgPool 2x2/2) halves both the channels (the
compression of "DenseNet-C", theta = 0.5) and the spatial size. Together: DenseNet-BC.

The paper's Table 1 (ImageNet, k = 32; input 224 x 224)::

    layers            output     DenseNet-121  DenseNet-169  DenseNet-201  DenseNet-264
    convolution       112 x 112  7x7 conv, stride 2
    pooling            56 x 56   3x3 max pool, stride 2
    dense block (1)    56 x 56   [1x1 conv, 3x3 conv] x 6   x 6           x 6           x 6
    transition (1)     56 x 56   1x1 conv
                       28 x 28   2x2 average pool, stride 2
    dense block (2)    28 x 28   [1x1 conv, 3x3 conv] x 12  x 12          x 12          x 12
    transition (2)     14 x 14   1x1 conv, 2x2 average pool, stride 2
    dense block (3)    14 x 14   [1x1 conv, 3x3 conv] x 24  x 32          x 48          x 64
    transition (3)      7 x 7    1x1 conv, 2x2 average pool, stride 2
    dense block (4)     7 x 7    [1x1 conv, 3x3 conv] x 16  x 32          x 32          x 48
    classification      1 x 1    7x7 global average pool, 1000-d fully connected, softmax

Channels after each stage (stem, block 1, transition 1, ..., block 4); the stem has 2k maps::

    densenet121  64   256 128   512 256   1024  512   1024
    densenet169  64   256 128   512 256   1280  640   1664
    densenet201  64   256 128   512 256   1792  896   1920
    densenet161  96   384 192   768 384   2112 1056   2208     (k = 48, blocks 6-12-36-24)

DenseNet-161 is not in the table; it is the wider model the authors released with their code.
DenseNet-264 is left out, as torchvision leaves it out (``DenseNet(block_config=(6, 12, 64,
48))`` builds it).

The modules, their names and the initialisation are torchvision's, so its weights load
unchanged: ``features.conv0``, ``features.norm0``, ``features.denseblock1.denselayer1.norm1``
..., ``features.transition1.conv``, ``features.norm5``, ``classifier``. torchvision's
``memory_efficient`` (recomputing the concatenation in the backward pass instead of storing
it) has no counterpart here and is not accepted.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from cnnlite import functional as F, nn
from cnnlite.models.registry import ModelEntry

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNet", "densenet121", "densenet161",
           "densenet169", "densenet201", "MODELS"]


class DenseLayer(nn.Module):
    """One layer of a dense block: BN-ReLU-Conv1x1 (bottleneck) then BN-ReLU-Conv3x3.

    x: (N, in_channels, H, W) -> new maps (N, growth_rate, H, W)

    The 1x1 convolution first squeezes the ever wider input to ``bn_size * growth_rate``
    channels, so the 3x3 convolution's cost does not grow with the layer's depth in the block.

    Parameters
    ----------
    in_channels : int
        Channels of the concatenated input: the block's input plus ``growth_rate`` per earlier
        layer.
    growth_rate : int
        k, the maps this layer adds.
    bn_size : int
        Width of the bottleneck in multiples of k (4 in the paper).
    drop_rate : float
        Dropout probability on the new maps (0: no dropout, as on ImageNet).
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0):
        super().__init__()
        bottleneck_channels = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bottleneck_channels, growth_rate, kernel_size=3, padding=1,
                               bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, x):
        bottleneck = self.conv1(self.relu1(self.norm1(x)))
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class DenseBlock(nn.Module):
    """``num_layers`` dense layers, each fed the concatenation of the block's input and every
    earlier layer's output.

    x: (N, in_channels, H, W) -> (N, in_channels + num_layers * growth_rate, H, W)

    The children are named ``denselayer1``, ``denselayer2``, ... (torchvision's keys).
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0):
        super().__init__()
        for index in range(num_layers):
            self.add_module(f"denselayer{index + 1}",
                            DenseLayer(in_channels + index * growth_rate, growth_rate,
                                       bn_size, drop_rate))

    def forward(self, x):
        features = [x]
        for layer in self.children():
            features.append(layer(F.concat(features, axis=1)))
        return F.concat(features, axis=1)


class Transition(nn.Sequential):
    """Between two dense blocks: BN-ReLU-Conv1x1 to ``out_channels``, then 2x2 average pooling
    with stride 2.

    x: (N, in_channels, H, W) -> (N, out_channels, H // 2, W // 2)
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(in_channels)),
            ("relu", nn.ReLU()),
            ("conv", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)),
            ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
        ]))


class DenseNet(nn.Module):
    """DenseNet-BC: a stem, four dense blocks with transitions between them, a classifier.

    x: (N, 3, H, W) -> logits (N, num_classes); H and W at least 32 (the network divides
    them by 32; 224 x 224 is the designed size, giving 7 x 7 maps in block 4).

    Parameters
    ----------
    growth_rate : int
        k, the maps each dense layer adds (32; 48 for DenseNet-161).
    block_config : sequence of int
        Layers per dense block (DenseNet-121: 6, 12, 24, 16).
    num_init_features : int
        Channels of the stem's 7x7 convolution (2k in the paper).
    bn_size : int
        Bottleneck width of the dense layers in multiples of k.
    drop_rate : float
        Dropout after every dense layer.
    num_classes : int
        Outputs of the classifier.

    Initialisation (torchvision's): convolutions He-normal, ``N(0, 2 / fan_in)``; batch-norm
    scale 1 and shift 0; the classifier's bias 0 and its weight PyTorch's default uniform.
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0,
                 num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3,
                                bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        channels = num_init_features
        for index, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{index}", DenseBlock(
                num_layers, channels, growth_rate, bn_size, drop_rate))
            channels += num_layers * growth_rate
            if index < len(block_config):
                # Compression theta = 0.5: the transition halves the channels.
                self.features.add_module(f"transition{index}", Transition(channels,
                                                                          channels // 2))
                channels //= 2
        # The dense layers put BN before each convolution (pre-activation), so the output of
        # the last block has not been normalised yet.
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        self._initialise()

    def _initialise(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x):
        features = F.relu(self.features(x))                  # (N, C, H / 32, W / 32)
        pooled = F.flatten(F.global_avg_pool2d(features), start_axis=1)     # (N, C)
        return self.classifier(pooled)


def densenet121(num_classes: int = 1000, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-121: k = 32, blocks 6-12-24-16; 7,978,856 parameters at 1000 classes."""
    return DenseNet(32, (6, 12, 24, 16), 64, drop_rate=drop_rate, num_classes=num_classes)


def densenet161(num_classes: int = 1000, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-161: k = 48, a 96-map stem, blocks 6-12-36-24; 28,681,000 parameters."""
    return DenseNet(48, (6, 12, 36, 24), 96, drop_rate=drop_rate, num_classes=num_classes)


def densenet169(num_classes: int = 1000, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-169: k = 32, blocks 6-12-32-32; 14,149,480 parameters."""
    return DenseNet(32, (6, 12, 32, 32), 64, drop_rate=drop_rate, num_classes=num_classes)


def densenet201(num_classes: int = 1000, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet-201: k = 32, blocks 6-12-48-32; 20,013,928 parameters."""
    return DenseNet(32, (6, 12, 48, 32), 64, drop_rate=drop_rate, num_classes=num_classes)


MODELS = {
    "densenet121": ModelEntry(densenet121, (224, 224), small_input=(32, 32)),
    "densenet161": ModelEntry(densenet161, (224, 224), small_input=(32, 32)),
    "densenet169": ModelEntry(densenet169, (224, 224), small_input=(32, 32)),
    "densenet201": ModelEntry(densenet201, (224, 224), small_input=(32, 32)),
}
