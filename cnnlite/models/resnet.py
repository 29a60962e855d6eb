"""Deep residual networks (He et al. 2016) and their wider and grouped variants.

A residual block learns a correction F(x) to its input instead of a whole new mapping:
``y = relu(F(x) + x)``. If the best thing a block can do is nothing, F only has to go to zero,
and the gradient reaches early layers through the identity paths undamped: that is what lets
ResNets go to 152 layers (and beyond) where a plain stack of convolutions trains worse the
deeper it gets.

Table 1 of the paper (input 3 x 224 x 224; [k x k, c] is a convolution, "x n" n blocks)::

    stage    output    18-layer     34-layer     50-layer           101-layer  152-layer
    conv1    112x112   7x7, 64, stride 2
    conv2_x   56x56    3x3 max pool, stride 2
                       [3x3, 64]    [3x3, 64]    [1x1,  64]
                       [3x3, 64]    [3x3, 64]    [3x3,  64]
                            x 2          x 3     [1x1, 256]  x 3    x 3        x 3
    conv3_x   28x28    [3x3,128]    [3x3,128]    [1x1, 128]
                       [3x3,128]    [3x3,128]    [3x3, 128]
                            x 2          x 4     [1x1, 512]  x 4    x 4        x 8
    conv4_x   14x14    [3x3,256]    [3x3,256]    [1x1, 256]
                       [3x3,256]    [3x3,256]    [3x3, 256]
                            x 2          x 6     [1x1,1024]  x 6    x 23       x 36
    conv5_x    7x7     [3x3,512]    [3x3,512]    [1x1, 512]
                       [3x3,512]    [3x3,512]    [3x3, 512]
                            x 2          x 3     [1x1,2048]  x 3    x 3        x 3
              1x1      global average pool, 1000-d fully connected, softmax
    multiply-adds      1.8e9        3.6e9        3.8e9              7.6e9      11.3e9

The first block of conv3_x, conv4_x and conv5_x halves the map with stride 2, and its
shortcut becomes a 1x1 convolution with stride 2 plus batch norm ("projection shortcut"), so
that it has the block's output shape. Here the stride sits on the 3x3 convolution of a
bottleneck, as in torchvision ("ResNet v1.5"); the paper put it on the first 1x1, which
computes the 3x3 on the smaller map: 3,857,973,248 multiply-adds for ResNet-50 instead of
this version's 4,089,184,256, and about half a point less top-1 accuracy.

Variants, all the same ``ResNet`` class with other blocks and widths:

* ResNeXt (Xie et al. 2017): the 3x3 convolution of each bottleneck split into ``groups``
  parallel paths ("cardinality"); ``resnext50_32x4d`` has 32 groups of 4 channels in conv2_x.
* Wide ResNet-50-2 / 101-2 (Zagoruyko and Komodakis 2016): bottlenecks twice as wide inside
  (``width_per_group=128``), the outer widths unchanged.
* Stochastic depth (Huang et al. 2016): ``stochastic_depth_prob`` > 0 skips whole residual
  branches at random in training; see ``ResNet``.

Module names and state-dict keys are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so torchvision's ImageNet weights load unchanged.
Initialisation is torchvision's: convolutions ``kaiming_normal_(mode="fan_out")`` (He et al.
2015), batch norm scale 1 and shift 0, the classifier PyTorch's default.
"""
from __future__ import annotations

from itertools import accumulate
from typing import Callable, Sequence

from cnnlite import functional as F, nn, validate
from cnnlite.models.blocks import StochasticDepth
from cnnlite.models.registry import ModelEntry

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "resnet152_stochastic_depth", "resnext50_32x4d",
           "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2", "init_resnet_weights",
           "MODELS"]

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1,
            dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution that keeps the map size at stride 1 (padding = dilation); no bias,
    since a batch norm follows and would cancel it."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                     dilation=dilation, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias: mixes channels, changes their number."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class _ResidualBlock(nn.Module):
    """``y = relu(stochastic_depth(F(x)) + shortcut(x))``; subclasses build F (``residual``).

    ``downsample`` is the projection shortcut (1x1 convolution + batch norm) of a block that
    changes the shape, None for the identity. ``stochastic_depth`` passes F(x) through unless
    the block was given a drop probability and the model is training. Subclasses register
    their convolutions first and then call ``add_shortcut``, so that the state-dict keys come
    in torchvision's order (conv1, bn1, ..., downsample).
    """

    def add_shortcut(self, downsample: nn.Module | None, stochastic_depth_prob: float):
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, mode="batch")

    def residual(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement residual(x)")

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.stochastic_depth(self.residual(x)) + shortcut)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (ResNet-18 and -34)::

        F(x) = bn2(conv2(relu(bn1(conv1(x)))))        conv1: 3x3, stride; conv2: 3x3

    x: (N, in_channels, H, W) -> (N, planes, H / stride, W / stride). ``expansion`` = 1: the
    block's output has ``planes`` channels. Arguments as ``Bottleneck``'s; ``groups`` and
    ``base_width`` exist for the common signature and must stay 1 and 64.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 dilation: int = 1, norm_layer: NormLayer | None = None,
                 stochastic_depth_prob: float = 0.0):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock has no grouped or widened form: groups must be 1 and "
                             f"base_width 64, got {groups} and {base_width}")
        if dilation != 1:
            raise ValueError(f"BasicBlock has no dilated form, got dilation={dilation}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.add_shortcut(downsample, stochastic_depth_prob)
        self.stride = stride

    def residual(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_ResidualBlock):
    """The bottleneck block (ResNet-50 and deeper): 1x1 reduce, 3x3, 1x1 expand::

        F(x) = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))

        conv1  1x1, in_channels -> width          (N, width, H, W)
        conv2  3x3, width -> width, stride, groups (N, width, H / stride, W / stride)
        conv3  1x1, width -> 4 * planes            (N, 4 * planes, H / stride, W / stride)

    with ``width = planes * base_width / 64 * groups`` (``planes`` for a plain ResNet).

    Why a bottleneck: the expensive 3x3 convolution runs on 4 times fewer channels than the
    block's input and output. On 256 channels (the lecture's example, planes = 64)::

        1x1 256 -> 64:  256 * 64       =  16,384 weights
        3x3  64 -> 64:  64 * 64 * 9    =  36,864
        1x1  64 -> 256: 64 * 256       =  16,384
                                          69,632 weights (and 3 non-linearities)
        two 3x3 256 -> 256: 2 * 256 * 256 * 9 = 1,179,648 weights, 17 times as many

    Parameters
    ----------
    in_channels : int
        Channels of x.
    planes : int
        Channels inside a plain bottleneck; the output has ``expansion * planes`` = 4 * planes.
    stride : int
        2 in the first block of a stage (on conv2, as torchvision), else 1.
    downsample : Module or None
        Projection shortcut when the shape changes.
    groups, base_width : int
        ResNeXt's cardinality and channels per group (32 and 4 for 32x4d); base_width 128
        with groups 1 is the wide ResNet.
    dilation : int
        Dilation of conv2 (a stage whose stride was replaced by dilation).
    norm_layer : callable(channels) -> Module, default ``nn.BatchNorm2d``
    stochastic_depth_prob : float
        Probability of dropping F(x) for a whole mini-batch in training.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 dilation: int = 1, norm_layer: NormLayer | None = None,
                 stochastic_depth_prob: float = 0.0):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.add_shortcut(downsample, stochastic_depth_prob)
        self.stride = stride

    def residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(nn.Module):
    """ResNet for ImageNet: a 7x7 stem, four stages of residual blocks, global pooling, fc.

    Shapes for a 224 x 224 input (``C = 64 * block.expansion``)::

        conv1 7x7/2, bn1, relu     (N, 64, 112, 112)
        maxpool 3x3/2              (N, 64, 56, 56)
        layer1                     (N, C, 56, 56)
        layer2                     (N, 2C, 28, 28)
        layer3                     (N, 4C, 14, 14)
        layer4                     (N, 8C, 7, 7)
        avgpool (adaptive, 1x1)    (N, 8C, 1, 1)
        fc                         (N, num_classes)

    The adaptive pooling accepts any input from 32 x 32 up (layer4 then sees 1 x 1).

    Parameters
    ----------
    block : BasicBlock or Bottleneck (the class)
    layers : four ints
        Blocks per stage: [2, 2, 2, 2] for ResNet-18, [3, 4, 6, 3] for ResNet-50.
    num_classes : int
    zero_init_residual : bool
        Start the last batch norm of every residual branch at scale 0, so every block is the
        identity at initialisation and the network starts as a shallow one (Goyal et al.
        2017); it trains a little better.
    groups, width_per_group : int
        Cardinality and channels per group of the bottlenecks' 3x3 convolutions (ResNeXt,
        wide ResNet); 1 and 64 for ResNet.
    replace_stride_with_dilation : three bools, optional
        For layer2..layer4: keep the map size and dilate the following 3x3 convolutions
        instead of striding (dense prediction, e.g. segmentation). Bottleneck blocks only.
    norm_layer : callable(channels) -> Module, default ``nn.BatchNorm2d``
    stochastic_depth_prob : float in [0, 1)
        Stochastic depth (Huang et al. 2016), 0 = off. Block l of L (counted over all
        stages, l = 1 .. L) drops its residual branch for the whole mini-batch with
        probability ``l / L * stochastic_depth_prob`` in training: the paper's linear decay of
        the survival probability, ``p_l = 1 - l / L * (1 - p_L)``, with
        ``p_L = 1 - stochastic_depth_prob`` (0.5 in the paper). Early blocks, whose features
        every later block uses, are nearly always kept. A dropped block is the identity
        (``relu(shortcut(x))``); with p_L = 0.5 a training step runs about 3/4 of the blocks.

    Test-time scaling: the paper trains the kept branch unscaled and multiplies every
    branch by its survival probability p_l at test time, so that the test network computes
    the training network's expected output. Here, as in inverted dropout, a kept branch is
    divided by p_l in training and evaluation uses it unscaled: the expected training output
    is again the test output. The two are one network parameterised two ways: a branch G
    of the paper's adds what F / p_l adds here in training, so G = F / p_l and the paper's
    test-time p_l G is F, this one's test-time branch (dividing the scale and shift of the
    branch's last batch norm by p_l maps these weights onto the paper's). Scaling in
    training leaves evaluation nothing to do.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 num_classes: int = 1000, zero_init_residual: bool = False, groups: int = 1,
                 width_per_group: int = 64,
                 replace_stride_with_dilation: Sequence[bool] | None = None,
                 norm_layer: NormLayer | None = None, stochastic_depth_prob: float = 0.0):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give the blocks of the 4 stages, got "
                             f"{list(layers)}")
        dilate = list(replace_stride_with_dilation or [False, False, False])
        if len(dilate) != 3:
            raise ValueError(f"ResNet: replace_stride_with_dilation must have 3 entries (for "
                             f"layer2..layer4), got {dilate}")
        stochastic_depth_prob = validate.probability("ResNet", "stochastic_depth_prob",
                                                     stochastic_depth_prob, allow_one=False)
        self.block, self.groups, self.base_width = block, groups, width_per_group
        self.norm_layer = norm_layer or nn.BatchNorm2d
        # What _make_layer has reached: channels of the last stage's output, its dilation.
        self.in_channels, self.dilation = 64, 1
        depth = sum(layers)
        drop_probs = [stochastic_depth_prob * l / depth for l in range(1, depth + 1)]
        stage_drop_probs = [drop_probs[end - n:end] for n, end in zip(layers, accumulate(layers))]

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self.norm_layer(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, stage_drop_probs[0])
        self.layer2 = self._make_layer(128, stage_drop_probs[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(256, stage_drop_probs[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(512, stage_drop_probs[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        init_resnet_weights(self)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    last_norm = module.bn3 if isinstance(module, Bottleneck) else module.bn2
                    if last_norm.weight is not None:  # a norm layer without a learned scale
                        nn.init.zeros_(last_norm.weight)

    def _make_layer(self, planes: int, drop_probs: Sequence[float], stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        """One stage, a block for each stochastic-depth probability in ``drop_probs``; the
        first block strides (or, with ``dilate``, starts dilating the blocks after it) and
        projects the shortcut where the shape changes."""
        out_channels = planes * self.block.expansion
        first_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(conv1x1(self.in_channels, out_channels, stride),
                                       self.norm_layer(out_channels))
        stage = [self.block(self.in_channels, planes, stride, downsample, self.groups,
                            self.base_width, first_dilation, self.norm_layer, drop_probs[0])]
        stage += [self.block(out_channels, planes, 1, None, self.groups, self.base_width,
                             self.dilation, self.norm_layer, drop_prob)
                  for drop_prob in drop_probs[1:]]
        self.in_channels = out_channels
        return nn.Sequential(*stage)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(F.flatten(self.avgpool(x), 1))


def init_resnet_weights(model: nn.Module) -> None:
    """torchvision's initialisation of residual networks, in place: every convolution's
    weight ~ N(0, 2 / fan_out) (He et al. 2015, ``mode="fan_out"``), its bias (if any) 0;
    batch norm scale 1 and shift 0; linear layers keep PyTorch's default."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18: BasicBlock, [2, 2, 2, 2]; 11,689,512 parameters. ``kwargs`` go to ``ResNet``."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34: BasicBlock, [3, 4, 6, 3]; 21,797,672 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50: Bottleneck, [3, 4, 6, 3]; 25,557,032 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)


def resnet101(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-101: Bottleneck, [3, 4, 23, 3]; 44,549,160 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)


def resnet152(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-152: Bottleneck, [3, 8, 36, 3]; 60,192,808 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, **kwargs)


def resnet152_stochastic_depth(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-152 with stochastic depth as Huang et al. trained it on ImageNet: survival
    probability decaying linearly to p_L = 0.5 (``stochastic_depth_prob=0.5``)."""
    return resnet152(num_classes, stochastic_depth_prob=0.5, **kwargs)


def resnext50_32x4d(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-50 (32 x 4d): ResNet-50 with 32 groups of 4 channels (conv2_x) in every 3x3
    convolution, twice as wide inside; 25,028,904 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNeXt-101 (32 x 8d): ResNet-101 with 32 groups of 8 channels; 88,791,336 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, groups=32, width_per_group=8,
                  **kwargs)


def wide_resnet50_2(num_classes: int = 1000, **kwargs) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide inside (128 .. 1024
    channels in the 3x3 convolutions, the outer 256 .. 2048 unchanged); 68,883,240
    parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128, **kwargs)


def wide_resnet101_2(num_classes: int = 1000, **kwargs) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with bottlenecks twice as wide inside; 126,886,696
    parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, width_per_group=128, **kwargs)


MODELS = {
    name: ModelEntry(constructor, (224, 224), small_input=(32, 32))
    for name, constructor in [
        ("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50),
        ("resnet101", resnet101), ("resnet152", resnet152),
        ("resnet152_stochastic_depth", resnet152_stochastic_depth),
        ("resnext50_32x4d", resnext50_32x4d), ("resnext101_32x8d", resnext101_32x8d),
        ("wide_resnet50_2", wide_resnet50_2), ("wide_resnet101_2", wide_resnet101_2),
    ]
}
