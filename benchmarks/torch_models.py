"""LeNet-5, ResNet-50 and VGG-16 in PyTorch, for the whole-network benchmark (``bench_models.py``).

torchvision has ResNet-50 and VGG-16, but it is not a dependency of cnnlite, and its compiled
ops need a torch build that matches it. So the PyTorch side of the benchmark builds its models
here, in a few lines each, with torchvision's module names: the state-dict keys and shapes are
torchvision's, and therefore cnnlite's (``cnnlite.models``), so one model's weights load into
the other unchanged. The initialisation is torchvision's (He-normal convolutions with fan-out,
batch norm at scale 1 and shift 0, VGG's linear layers N(0, 0.01)); LeNet-5 keeps PyTorch's
default one.

Only the benchmark's PyTorch children and its agreement check import this module: it imports
torch at its top.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["MODELS", "lenet5", "resnet50", "vgg16"]


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 as ``cnnlite.models.lenet5``: ReLU, 2x2 max pooling, 1 x 32 x 32 inputs."""
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
        flatten=nn.Flatten(),                                      # (N, 16, 5, 5) -> (N, 400)
        classifier=nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                 nn.Linear(84, num_classes))))


class Bottleneck(nn.Module):
    """1x1 (reduce to ``width``), 3x3 (stride here, as torchvision's "ResNet v1.5"), 1x1
    (expand to 4 ``width``), each followed by batch norm; the sum with the shortcut (projected
    by ``downsample`` when the shape changes) goes through the last ReLU."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = 4 * width
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride,
                                                      bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + shortcut)


class ResNet50(nn.Module):
    """conv1 7x7/2 and 3x3/2 max pooling (224 -> 56), four stages of 3, 4, 6, 3 bottlenecks of
    width 64, 128, 256, 512 (out 256 ... 2048 channels; the last three start with stride 2:
    56 -> 28 -> 14 -> 7), global average pooling, fc 2048 -> ``num_classes``."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
            stride = 1 if stage == 1 else 2
            layer = []
            for index in range(blocks):
                layer.append(Bottleneck(in_channels, width, stride if index == 0 else 1))
                in_channels = 4 * width
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000) -> ResNet50:
    """ResNet-50 as torchvision's ``resnet50()`` (see ``ResNet50``)."""
    return ResNet50(num_classes)


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
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
    return model


#: The models the benchmark can time, by their names in ``cnnlite.models``.
MODELS = {"lenet5": lenet5, "resnet50": resnet50, "vgg16": vgg16}
