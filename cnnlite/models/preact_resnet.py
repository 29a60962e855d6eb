"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

The original residual unit adds the shortcut and then applies ReLU, so the signal that
passes from block to block goes through a non-linearity each time. Moving batch norm and
ReLU in front of the convolutions ("pre-activation") leaves the shortcut a pure identity:

    original:        x_{l+1} = relu(x_l + bn(conv(relu(bn(conv(x_l))))))
    pre-activation:  x_{l+1} = x_l + conv(relu(bn(conv(relu(bn(x_l))))))

so that x_L = x_l + sum_{i=l}^{L-1} F(x_i) for any l < L: every unit sees the input of every
later unit directly, and the gradient dL/dx_l = dL/dx_L (1 + d/dx_l sum F) never vanishes
through a product of weights. That is what trains the 1001-layer network.

Two special units (the paper, section 4): the first unit follows a stand-alone conv1, whose
batch norm and ReLU serve as the first unit's pre-activation for both of its paths; after
the last unit an extra batch norm and ReLU (``final_bn``) normalise the sum before pooling.
Where a unit changes shape, its shortcut is a 1x1 projection of the pre-activated input
(no batch norm: the sum is normalised by the next unit), as in the authors' code.

ImageNet depths (stages as torchvision's ResNets, 224 x 224 input):

    stage    output (C x H x W)   18          34          50              101     152
    conv1    64 x 112 x 112       7x7, 64, stride 2, BN, ReLU; 3x3 max pool stride 2
    layer1   64/256 x 56 x 56     2 x basic   3 x basic   3 x bottleneck  3       3
    layer2   128/512 x 28 x 28    2           4           4               4       8
    layer3   256/1024 x 14 x 14   2           6           6               23      36
    layer4   512/2048 x 7 x 7     2           3           3               3       3
    final    BN, ReLU, global average pool, fc

    basic = [3x3, C; 3x3, C]; bottleneck = [1x1, C; 3x3, C; 1x1, 4C]; the first unit of
    layer2..4 has stride 2 (on the 3x3 convolution, as torchvision's ResNet v1.5).

CIFAR depths (32 x 32 input; conv1 is 3x3, 16, no pooling; stages at 32, 16, 8 pixels):

    model               units per stage   unit         stage outputs   params       paper
    preact_resnet110    18                basic        16, 32, 64       1,730,522   1.7M
    preact_resnet164    18                bottleneck   64, 128, 256     1,703,258   1.7M
    preact_resnet1001   111               bottleneck   64, 128, 256    10,327,706   10.2M

(depth = 6n + 2 with basic units, 9n + 2 with bottlenecks; ``preact_resnet_cifar`` builds
any of them.) The paper's 10.2M for ResNet-1001 is the count without the 149,216 scales and
shifts of its batch norms (10,178,490); with them it is 10.3M.

The ImageNet models have exactly the convolutions of torchvision's ResNets, so the same
multiply-adds (resnet18: 1,814,073,344 at 224 x 224). Their batch norms sit elsewhere (before
the convolutions, none on the projections, one after the last unit), which leaves 1,792
fewer parameters at depths 18 and 34 and 7,680 fewer at 50, 101 and 152.

Initialisation: convolutions ~ N(0, 2 / fan_out) (He et al. 2015, "kaiming normal", as in
the authors' Torch code), batch norm scale 1 and shift 0, the fully connected layer
PyTorch's default.
"""
from __future__ import annotations

from cnnlite import nn
from cnnlite.models.registry import ModelEntry
from cnnlite.models.resnet import init_resnet_weights

__all__ = ["PreActBasicBlock", "PreActBottleneck", "PreActResNet", "preact_stage",
           "preact_resnet18", "preact_resnet34", "preact_resnet50", "preact_resnet101",
           "preact_resnet152", "preact_resnet_cifar", "preact_resnet110", "preact_resnet164",
           "preact_resnet1001", "MODELS"]


class PreActBasicBlock(nn.Module):
    """Pre-activation basic unit (the paper's figure 1b)::

        a = relu(bn1(x))                          (x itself when preactivate=False)
        y = shortcut + conv2(dropout(relu(bn2(conv1(a)))))
        shortcut = x, or downsample(a) (1x1, stride) where the shape changes

    x: (N, in_channels, H, W) -> (N, channels, H / stride, W / stride). ``dropout`` between
    the two convolutions is Wide ResNet's option (0: none).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 preactivate: bool = True, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else None
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.downsample = _projection(in_channels, channels, stride)

    def forward(self, x):
        activated = x if self.bn1 is None else self.relu(self.bn1(x))
        # An identity shortcut carries x untouched; a projection sees what the branch sees.
        shortcut = x if self.downsample is None else self.downsample(activated)
        residual = self.conv1(activated)
        residual = self.conv2(self.dropout(self.relu(self.bn2(residual))))
        return shortcut + residual


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit: 1x1 reduce, 3x3 (with the stride), 1x1 expand by 4::

        a = relu(bn1(x))                          (x itself when preactivate=False)
        y = shortcut + conv3(relu(bn3(conv2(relu(bn2(conv1(a)))))))

    x: (N, in_channels, H, W) -> (N, 4 * channels, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1,
                 preactivate: bool = True):
        super().__init__()
        out_channels = channels * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else None
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.relu = nn.ReLU()
        self.downsample = _projection(in_channels, out_channels, stride)

    def forward(self, x):
        activated = x if self.bn1 is None else self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(activated)
        residual = self.conv1(activated)
        residual = self.conv2(self.relu(self.bn2(residual)))
        residual = self.conv3(self.relu(self.bn3(residual)))
        return shortcut + residual


def _projection(in_channels, out_channels, stride):
    """The 1x1 strided convolution of a shortcut that changes shape; None where it does not."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def preact_stage(block, in_channels: int, channels: int, count: int, stride: int,
                 preactivate_first: bool = True, **block_options) -> nn.Sequential:
    """``count`` units of ``block``; the first has ``stride`` and takes ``in_channels``.

    ``preactivate_first=False`` leaves out the first unit's own batch norm and ReLU, for the
    network's first unit, whose input conv1 has already normalised and rectified.
    Returns an ``nn.Sequential`` mapping (N, in_channels, H, W) to
    (N, block.expansion * channels, H / stride, W / stride).
    """
    units = [block(in_channels, channels, stride, preactivate_first, **block_options)]
    units += [block(channels * block.expansion, channels, 1, True, **block_options)
              for _ in range(count - 1)]
    return nn.Sequential(*units)


class PreActResNet(nn.Module):
    """A pre-activation ResNet (see the module docstring for the tables).

    Parameters
    ----------
    block : PreActBasicBlock or PreActBottleneck
    layers : sequence of int
        Units per stage (4 stages for ImageNet, 3 for CIFAR).
    channels : sequence of int
        The units' inner width per stage (the output is ``block.expansion`` times it).
    num_classes : int
    cifar_stem : bool
        ``True``: conv1 is 3x3 with 16 channels and nothing is pooled (32 x 32 input);
        ``False``: conv1 is 7x7, 64 channels, stride 2, and a 3x3 max pool follows.

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); the average pool is adaptive, so an
    ImageNet model also takes 32 x 32.
    """

    def __init__(self, block, layers, channels, num_classes: int = 1000,
                 cifar_stem: bool = False):
        super().__init__()
        if len(layers) != len(channels) or min(layers) < 1:
            raise ValueError(f"PreActResNet: need one count >= 1 per stage, got layers "
                             f"{list(layers)} for channels {list(channels)}")
        stem_channels = 16 if cifar_stem else 64
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, stem_channels, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()                # CIFAR's 32 x 32 is not pooled
        else:
            self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU()
        in_channels = stem_channels
        for index, (count, width) in enumerate(zip(layers, channels)):
            stage = preact_stage(block, in_channels, width, count, stride=1 if index == 0 else 2,
                                 preactivate_first=index > 0)
            setattr(self, f"layer{index + 1}", stage)
            in_channels = width * block.expansion
        self.num_stages = len(layers)
        self.final_bn = nn.BatchNorm2d(in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_resnet_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        x = self.avgpool(self.relu(self.final_bn(x)))         # (N, C, 1, 1)
        return self.fc(x.reshape(x.shape[0], -1))


IMAGENET_CHANNELS = (64, 128, 256, 512)


def preact_resnet18(num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ResNet-18 (ImageNet): 11,687,720 parameters."""
    return PreActResNet(PreActBasicBlock, (2, 2, 2, 2), IMAGENET_CHANNELS, num_classes)


def preact_resnet34(num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ResNet-34 (ImageNet): 21,795,880 parameters."""
    return PreActResNet(PreActBasicBlock, (3, 4, 6, 3), IMAGENET_CHANNELS, num_classes)


def preact_resnet50(num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ResNet-50 (ImageNet): 25,549,352 parameters."""
    return PreActResNet(PreActBottleneck, (3, 4, 6, 3), IMAGENET_CHANNELS, num_classes)


def preact_resnet101(num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ResNet-101 (ImageNet): 44,541,480 parameters."""
    return PreActResNet(PreActBottleneck, (3, 4, 23, 3), IMAGENET_CHANNELS, num_classes)


def preact_resnet152(num_classes: int = 1000) -> PreActResNet:
    """Pre-activation ResNet-152 (ImageNet): 60,185,128 parameters."""
    return PreActResNet(PreActBottleneck, (3, 8, 36, 3), IMAGENET_CHANNELS, num_classes)


def preact_resnet_cifar(depth: int, bottleneck: bool = True,
                        num_classes: int = 10) -> PreActResNet:
    """A pre-activation ResNet for 32 x 32 images with three stages of 16, 32, 64 channels.

    ``depth`` = 9n + 2 with bottleneck units (n units of three layers per stage), 6n + 2
    with basic units.
    """
    layers_per_unit = 3 if bottleneck else 2
    if (depth - 2) % (3 * layers_per_unit) or depth < 2 + 3 * layers_per_unit:
        raise ValueError(f"preact_resnet_cifar: depth must be {3 * layers_per_unit}n + 2 "
                         f"with {'bottleneck' if bottleneck else 'basic'} units, got {depth}")
    units = (depth - 2) // (3 * layers_per_unit)
    block = PreActBottleneck if bottleneck else PreActBasicBlock
    return PreActResNet(block, (units,) * 3, (16, 32, 64), num_classes, cifar_stem=True)


def preact_resnet110(num_classes: int = 10) -> PreActResNet:
    """Pre-activation ResNet-110 for CIFAR (basic units, 18 per stage): 1,730,522
    parameters (the paper: 1.7M)."""
    return preact_resnet_cifar(110, bottleneck=False, num_classes=num_classes)


def preact_resnet164(num_classes: int = 10) -> PreActResNet:
    """Pre-activation ResNet-164 for CIFAR (bottleneck units, 18 per stage): 1,703,258
    parameters (the paper: 1.7M)."""
    return preact_resnet_cifar(164, bottleneck=True, num_classes=num_classes)


def preact_resnet1001(num_classes: int = 10) -> PreActResNet:
    """Pre-activation ResNet-1001 for CIFAR (bottleneck units, 111 per stage): 10,327,706
    parameters (the paper: 10.2M, without batch norm)."""
    return preact_resnet_cifar(1001, bottleneck=True, num_classes=num_classes)


MODELS = {
    "preact_resnet18": ModelEntry(preact_resnet18, (224, 224), small_input=(32, 32)),
    "preact_resnet34": ModelEntry(preact_resnet34, (224, 224), small_input=(32, 32)),
    "preact_resnet50": ModelEntry(preact_resnet50, (224, 224), small_input=(32, 32)),
    "preact_resnet101": ModelEntry(preact_resnet101, (224, 224), small_input=(32, 32)),
    "preact_resnet152": ModelEntry(preact_resnet152, (224, 224), small_input=(32, 32)),
    "preact_resnet110": ModelEntry(preact_resnet110, (32, 32), small_input=(32, 32)),
    "preact_resnet164": ModelEntry(preact_resnet164, (32, 32), small_input=(32, 32)),
    "preact_resnet1001": ModelEntry(preact_resnet1001, (32, 32), small_input=(8, 8)),
}
