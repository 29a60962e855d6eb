"""The whole-network benchmark's models in PyTorch (``bench_models.py``), written out from torch.nn:
LeNet-5, the CIFAR ResNet-20, ResNet-18, ResNet-50, VGG-16, MobileNet v2 and DenseNet-121.

torchvision has most of these, but it is not a dependency of cnnlite, and its compiled ops need
a torch build that matches it. So the PyTorch side of the benchmark builds its models here, a
few lines each, with the module names of ``cnnlite.models``: for ResNet-18/50, VGG-16,
MobileNet v2 and DenseNet-121 those are torchvision's names, for ResNet-20 (which torchvision
does not have) cnnlite's own (``conv1``, ``bn1``, ``layer1.0.conv1``, ..., ``fc``). Every
state-dict key and shape is therefore cnnlite's, so one model's weights load into the other
unchanged. The initialisation is torchvision's (He-normal convolutions, batch norm at scale 1
and shift 0, the fully connected layers as each model's constructor says); LeNet-5 keeps
PyTorch's default one.

Only the benchmark's PyTorch children and its agreement check import this module: it imports
torch at its top.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MODELS", "lenet5", "resnet20", "resnet18", "resnet50", "vgg16", "mobilenet_v2",
           "densenet121"]


def he_normal_convolutions(model: nn.Module, mode: str = "fan_out") -> None:
    """torchvision's initialisation of convolutions and batch norm, in place: every convolution
    weight ~ N(0, 2 / fan) (He et al. 2015; ``mode`` picks fan_in or fan_out), its bias 0;
    batch norm scale 1, shift 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# --- LeNet-5 -------------------------------------------------------------------------------------

def lenet5(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 as ``cnnlite.models.lenet5``: ReLU, 2x2 max pooling, 1 x 32 x 32 inputs."""
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
        flatten=nn.Flatten(),                                      # (N, 16, 5, 5) -> (N, 400)
        classifier=nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                 nn.Linear(84, num_classes))))


# --- ResNets -------------------------------------------------------------------------------------

def projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The shortcut of a block that changes the shape: 1x1 convolution with ``stride``, batch
    norm (``downsample.0``, ``downsample.1``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, the first with ``stride``, each followed by batch norm; the sum
    with the shortcut goes through the last ReLU. ``downsample`` is the shortcut when the
    shape changes (a module, or None for the identity).

    x: (N, in_channels, H, W) -> (N, channels, H / stride, W / stride)
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 (reduce to ``width``), 3x3 (stride here, as torchvision's "ResNet v1.5"), 1x1
    (expand to 4 ``width``), each followed by batch norm; the sum with the shortcut (projected
    by ``downsample`` when the shape changes) goes through the last ReLU.

    x: (N, in_channels, H, W) -> (N, 4 width, H / stride, W / stride)
    """

    def __init__(self, in_channels: int, width: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet(nn.Module):
    """torchvision's ImageNet ResNet: conv1 7x7/2 and 3x3/2 max pooling (224 -> 56), four
    stages of ``blocks`` blocks of width 64, 128, 256, 512 (the last three start with stride 2:
    56 -> 28 -> 14 -> 7), global average pooling, fc -> ``num_classes``.

    ``block`` is ``BasicBlock`` (ResNet-18: 2, 2, 2, 2; out 512 channels) or ``Bottleneck``
    (ResNet-50: 3, 4, 6, 3; out 4 x 512 = 2048 channels).
    """

    def __init__(self, block: type, blocks: tuple, num_classes: int = 1000):
        super().__init__()
        expansion = 4 if block is Bottleneck else 1
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512)), 1):
            stride = 1 if stage == 1 else 2
            layer = []
            for index in range(count):
                first = index == 0
                downsample = None
                if first and (stride != 1 or in_channels != expansion * width):
                    downsample = projection(in_channels, expansion * width, stride)
                layer.append(block(in_channels, width, stride if first else 1, downsample))
                in_channels = expansion * width
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        he_normal_convolutions(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 as torchvision's ``resnet18()``: basic blocks, 2, 2, 2, 2 per stage."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 as torchvision's ``resnet50()``: bottlenecks, 3, 4, 6, 3 per stage."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


class ZeroPadShortcut(nn.Module):
    """The CIFAR ResNets' option A shortcut, no parameters: every second pixel of every second
    row, then ``out_channels - in_channels`` zero channels after the input's.

    x: (N, in_channels, H, W) -> (N, out_channels, ceil(H / 2), ceil(W / 2))
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.extra_channels = out_channels - in_channels

    def forward(self, x):
        # F.pad's widths run from the last axis backwards: (W), (H), then (C): zeros after.
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra_channels))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. 2016 (section 4.2) as ``cnnlite.models.CifarResNet`` with
    option A shortcuts: a 3x3 convolution to 16 channels, three stages of n basic blocks of 16,
    32, 64 channels (the last two start with stride 2: 32 -> 16 -> 8), global average pooling,
    fc 64 -> ``num_classes``; depth 6n + 2. The fully connected layer keeps PyTorch's default
    initialisation, as cnnlite's does.
    """

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_channels = 16
        for stage, channels in enumerate((16, 32, 64), 1):
            layer = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 1 and index == 0 else 1
                downsample = (ZeroPadShortcut(in_channels, channels) if in_channels != channels
                              else None)
                layer.append(BasicBlock(in_channels, channels, stride, downsample))
                in_channels = channels
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        he_normal_convolutions(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))                    # (N, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))              # (N, 64, 8, 8)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 for CIFAR as ``cnnlite.models.resnet20()``: n = 3, option A, 10 classes."""
    return CifarResNet(20, num_classes)


# --- VGG-16 --------------------------------------------------------------------------------------

#: VGG-16, configuration D of the paper: the output channels of each 3x3 convolution, "M" for
#: a 2x2 max pooling.
VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M"]


def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> nn.Sequential:
    """13 convolutions (3x3, padding 1, each followed by ReLU) in five stages, each ending with
    2x2 max pooling (224 -> 7), pooling to 7 x 7, fc 25088 -> 4096 -> 4096 -> ``num_classes``
    with ReLU and dropout between."""
    features, in_channels = [], 3
    for item in VGG16_LAYERS:
        if item == "M":
            features.append(nn.MaxPool2d(2))
        else:
            features += [nn.Conv2d(in_channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = item
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(*features),
        avgpool=nn.AdaptiveAvgPool2d(7),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes))))
    he_normal_convolutions(model)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
    return model


# --- MobileNet v2 --------------------------------------------------------------------------------

def conv_norm_relu6(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                    groups: int = 1) -> nn.Sequential:
    """Convolution (no bias, padding that keeps the size at stride 1), batch norm, ReLU6:
    torchvision's ``Conv2dNormActivation``, children ``0``, ``1``, ``2``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNet v2's bottleneck: 1x1 expansion to ``t in_channels`` (left out when t = 1),
    3x3 depthwise convolution (one filter per channel, ``groups`` = channels; the stride is
    here), linear 1x1 projection to ``out_channels`` and batch norm; the input is added when
    the shape stays (stride 1 and ``in_channels == out_channels``).

    Children in ``conv`` with torchvision's indices: expansion, depthwise, projection
    convolution, its batch norm (``conv.0`` ... ``conv.3``; from ``conv.0`` = depthwise when
    t = 1). x: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = [conv_norm_relu6(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [conv_norm_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False),
                   nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


#: t (expansion), c (output channels), n (repeats), s (stride of the first): the paper's
#: Table 2 at width 1.0.
MOBILENET_V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    """MobileNet v2 at width 1.0 as torchvision's ``mobilenet_v2()``: a 3x3/2 convolution to 32
    channels, the 17 inverted residuals of Table 2 (224 -> 7), a 1x1 convolution to 1280,
    global average pooling, dropout and fc 1280 -> ``num_classes`` (``classifier.0``,
    ``classifier.1``). Fully connected weights ~ N(0, 0.01^2), as torchvision's."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers, channels = [conv_norm_relu6(3, 32, 3, 2)], 32
        for expansion, out_channels, repeats, stride in MOBILENET_V2_SETTING:
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out_channels,
                                               stride if index == 0 else 1, expansion))
                channels = out_channels
        layers.append(conv_norm_relu6(channels, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        he_normal_convolutions(self)
        nn.init.normal_(self.classifier[1].weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier[1].bias)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)           # (N, 1280, 1, 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNet v2 as torchvision's ``mobilenet_v2()`` (see ``MobileNetV2``)."""
    return MobileNetV2(num_classes)


# --- DenseNet-121 --------------------------------------------------------------------------------

class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 to ``4 growth_rate`` channels, BN-ReLU-Conv3x3 to ``growth_rate`` new
    maps. x: (N, in_channels, H, W) -> (N, growth_rate, H, W)"""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers (``denselayer1``, ...), each fed the concatenation along the
    channels of the block's input and every earlier layer's maps.

    x: (N, in_channels, H, W) -> (N, in_channels + num_layers growth_rate, H, W)
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int):
        super().__init__({f"denselayer{index + 1}":
                          DenseLayer(in_channels + index * growth_rate, growth_rate)
                          for index in range(num_layers)})

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


def transition(in_channels: int, out_channels: int) -> nn.Sequential:
    """Between two dense blocks: BN-ReLU-Conv1x1 to ``out_channels``, 2x2 average pooling with
    stride 2 (``norm``, ``relu``, ``conv``, ``pool``)."""
    return nn.Sequential(OrderedDict(
        norm=nn.BatchNorm2d(in_channels), relu=nn.ReLU(inplace=True),
        conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
        pool=nn.AvgPool2d(2, 2)))


class DenseNet(nn.Module):
    """DenseNet-BC as torchvision's ``DenseNet``: stem (``features.conv0`` 7x7/2, ``norm0``,
    ``relu0``, ``pool0`` 3x3/2 max), dense blocks of ``block_config`` layers adding
    ``growth_rate`` maps each, transitions halving channels and size between them, ``norm5``,
    ReLU, global average pooling, ``classifier``. Convolutions He-normal with fan-in, the
    classifier's bias 0 (its weight keeps PyTorch's default), as torchvision's."""

    def __init__(self, growth_rate: int = 32, block_config: tuple = (6, 12, 24, 16),
                 num_init_features: int = 64, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv0=nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(num_init_features), relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1)))
        channels = num_init_features
        for index, num_layers in enumerate(block_config, 1):
            self.features.add_module(f"denseblock{index}",
                                     DenseBlock(num_layers, channels, growth_rate))
            channels += num_layers * growth_rate
            if index < len(block_config):
                self.features.add_module(f"transition{index}",
                                         transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        he_normal_convolutions(self, mode="fan_in")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)   # (N, 1024, 1, 1)
        return self.classifier(torch.flatten(x, 1))


def densenet121(num_classes: int = 1000) -> DenseNet:
    """DenseNet-121 as torchvision's ``densenet121()``: k = 32, blocks of 6, 12, 24, 16."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes)


#: The models the benchmark can time, by their names in ``cnnlite.models``.
MODELS = {"lenet5": lenet5, "resnet20": resnet20, "resnet18": resnet18, "resnet50": resnet50,
          "vgg16": vgg16, "mobilenet_v2": mobilenet_v2, "densenet121": densenet121}
