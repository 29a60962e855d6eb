"""The CIFAR-10 ResNets of He et al. 2016 (section 4.2), and stochastic depth (Huang et al. 2016).

"Deep Residual Learning for Image Recognition" trains, besides its ImageNet networks, a family
of small ResNets on 32 x 32 CIFAR images: a 3x3 convolution, then three stages of n basic
blocks (two 3x3 convolutions each) and a global average pool into a 10-way fully connected
layer, 6n + 2 weighted layers in all (the paper's table):

    output map size     32 x 32     16 x 16     8 x 8
    # layers            1 + 2n      2n          2n
    # filters           16          32          64

    stage    output (C x H x W)    blocks
    conv1    16 x 32 x 32          3x3, 16                   (+ BN, ReLU)
    layer1   16 x 32 x 32          n x [3x3, 16; 3x3, 16]
    layer2   32 x 16 x 16          n x [3x3, 32; 3x3, 32]    first block stride 2
    layer3   64 x  8 x  8          n x [3x3, 64; 3x3, 64]    first block stride 2
    pool     64 x  1 x  1          global average
    fc       num_classes

    model       n    params, option A   option B     paper
    resnet20    3      269,722            272,474     0.27M
    resnet32    5      464,154            466,906     0.46M
    resnet44    7      658,586            661,338     0.66M
    resnet56    9      853,018            855,770     0.85M
    resnet110  18    1,727,962          1,730,714     1.7M

Where a stage doubles the channels and halves the map, the shortcut must change shape too.
The paper's CIFAR networks use option A, which adds no parameter: take every second pixel
of every second row (stride-2 subsampling) and append zero channels. ``shortcut="B"``
projects instead with a strided 1x1 convolution and batch norm (option B), the shortcut
of the ImageNet ResNets.

``stochastic_depth_prob`` turns a network into one with stochastic depth (Huang et al.
2016, "Deep Networks with Stochastic Depth"): while training, block l of the L blocks (l =
1 .. L, in network order) is skipped for the whole mini-batch with probability
(l / L) * stochastic_depth_prob, its residual branch replaced by zero so that the block
passes its shortcut on; the survival probabilities fall linearly from ~1 to
p_L = 1 - stochastic_depth_prob ("linear decay", p_l = 1 - (l / L)(1 - p_L)).
``resnet110_stochastic_depth`` is the paper's CIFAR model, resnet110 with p_L = 0.5.

Initialisation: every convolution ~ N(0, 2 / fan_out), He et al. 2015's scheme for ReLU
networks ("kaiming normal"), as in the authors' Torch code; batch norm scale 1, shift 0;
the fully connected layer keeps the default U(-1/sqrt(64), 1/sqrt(64)).
"""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F, nn
from cnnlite.models.blocks import StochasticDepth
from cnnlite.models.registry import ModelEntry
from cnnlite.models.resnet import init_resnet_weights

__all__ = ["CifarResNet", "CifarBasicBlock", "ZeroPadShortcut", "resnet20", "resnet32",
           "resnet44", "resnet56", "resnet110", "resnet110_stochastic_depth", "MODELS"]

STAGE_CHANNELS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and append zero channels; no parameters.

    x: (N, C_in, H, W) -> (N, C_out, ceil(H / stride), ceil(W / stride)): the input's channels
    come first, ``C_out - C_in`` zero channels after them, so the sum with the residual
    branch adds nothing to the new channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x):
        subsampled = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(subsampled, ((0, 0), (0, extra), (0, 0), (0, 0)))

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (He et al. 2016, figure 2)::

        y = relu(shortcut(x) + stochastic_depth(bn2(conv2(relu(bn1(conv1(x)))))))

    x: (N, in_channels, H, W) -> (N, channels, H / stride, W / stride). The shortcut,
    ``downsample``, is the identity where the shape stays, else option ``"A"``
    (``ZeroPadShortcut``) or ``"B"`` (a 1x1 convolution with ``stride``, then batch norm).
    ``drop_prob`` is the probability that stochastic depth skips the residual branch in
    training (0: never).
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "A",
                 drop_prob: float = 0.0, rng: np.random.Generator | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.stochastic_depth = StochasticDepth(drop_prob, mode="batch", rng=rng)
        if stride == 1 and in_channels == channels:
            self.downsample = nn.Identity()
        elif shortcut == "A":
            self.downsample = ZeroPadShortcut(in_channels, channels, stride)
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x):
        residual = self.relu(self.bn1(self.conv1(x)))
        residual = self.stochastic_depth(self.bn2(self.conv2(residual)))
        return self.relu(self.downsample(x) + residual)


class CifarResNet(nn.Module):
    """A ResNet for 32 x 32 images with ``depth = 6n + 2`` layers (see the module docstring).

    Parameters
    ----------
    depth : int
        6n + 2: 20, 32, 44, 56, 110, ...
    num_classes : int
    shortcut : {"A", "B"}
        Where the shape changes: ``"A"`` subsample and zero-pad (no parameters, the paper's
        choice for CIFAR), ``"B"`` a 1x1 projection with batch norm.
    stochastic_depth_prob : float
        1 - p_L, the probability that the last block is skipped in training; block l of L is
        skipped with probability (l / L) * stochastic_depth_prob. 0 turns it off.
    rng : numpy.random.Generator, optional
        Draws stochastic depth's decisions (for reproducible runs).

    Shapes: x (N, 3, H, W) -> logits (N, num_classes); 32 x 32 by design, any H, W >= 4 run.
    """

    def __init__(self, depth: int, num_classes: int = 10, shortcut: str = "A",
                 stochastic_depth_prob: float = 0.0, rng: np.random.Generator | None = None):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet: depth must be 6n + 2 with n >= 1, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"CifarResNet: shortcut must be 'A' or 'B', got {shortcut!r}")
        blocks_per_stage = (depth - 2) // 6
        total_blocks = 3 * blocks_per_stage
        self.conv1 = nn.Conv2d(3, STAGE_CHANNELS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_CHANNELS[0])
        self.relu = nn.ReLU()
        in_channels, block_index = STAGE_CHANNELS[0], 0
        for stage, channels in enumerate(STAGE_CHANNELS):
            blocks = []
            for i in range(blocks_per_stage):
                block_index += 1
                stride = 2 if stage > 0 and i == 0 else 1
                drop_prob = stochastic_depth_prob * block_index / total_blocks
                blocks.append(CifarBasicBlock(in_channels, channels, stride, shortcut,
                                              drop_prob, rng))
                in_channels = channels
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_CHANNELS[-1], num_classes)
        init_resnet_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))             # (N, 16, 32, 32)
        x = self.layer3(self.layer2(self.layer1(x)))       # (N, 64, 8, 8)
        x = self.avgpool(x)                                # (N, 64, 1, 1)
        return self.fc(x.reshape(x.shape[0], -1))


def resnet20(num_classes: int = 10, shortcut: str = "A", stochastic_depth_prob: float = 0.0,
             rng: np.random.Generator | None = None) -> CifarResNet:
    """ResNet-20 for CIFAR (n = 3): 269,722 parameters with option A (paper: 0.27M)."""
    return CifarResNet(20, num_classes, shortcut, stochastic_depth_prob, rng)


def resnet32(num_classes: int = 10, shortcut: str = "A", stochastic_depth_prob: float = 0.0,
             rng: np.random.Generator | None = None) -> CifarResNet:
    """ResNet-32 for CIFAR (n = 5): 464,154 parameters with option A (paper: 0.46M)."""
    return CifarResNet(32, num_classes, shortcut, stochastic_depth_prob, rng)


def resnet44(num_classes: int = 10, shortcut: str = "A", stochastic_depth_prob: float = 0.0,
             rng: np.random.Generator | None = None) -> CifarResNet:
    """ResNet-44 for CIFAR (n = 7): 658,586 parameters with option A (paper: 0.66M)."""
    return CifarResNet(44, num_classes, shortcut, stochastic_depth_prob, rng)


def resnet56(num_classes: int = 10, shortcut: str = "A", stochastic_depth_prob: float = 0.0,
             rng: np.random.Generator | None = None) -> CifarResNet:
    """ResNet-56 for CIFAR (n = 9): 853,018 parameters with option A (paper: 0.85M)."""
    return CifarResNet(56, num_classes, shortcut, stochastic_depth_prob, rng)


def resnet110(num_classes: int = 10, shortcut: str = "A", stochastic_depth_prob: float = 0.0,
              rng: np.random.Generator | None = None) -> CifarResNet:
    """ResNet-110 for CIFAR (n = 18): 1,727,962 parameters with option A (paper: 1.7M)."""
    return CifarResNet(110, num_classes, shortcut, stochastic_depth_prob, rng)


def resnet110_stochastic_depth(num_classes: int = 10, shortcut: str = "A",
                               stochastic_depth_prob: float = 0.5,
                               rng: np.random.Generator | None = None) -> CifarResNet:
    """ResNet-110 with stochastic depth (Huang et al. 2016), the paper's CIFAR model.

    In training, block l of the L = 54 blocks is skipped for the whole mini-batch with
    probability 1 - p_l = (l / 54) * 0.5 (linear decay to p_L = 0.5); 1,727,962 parameters,
    the same as resnet110.

    The paper trains with the branch unscaled, b_l * f_l(x) with b_l ~ Bernoulli(p_l), and
    at test time multiplies each branch by its survival probability: x + p_l * f_l(x). Here
    (``StochasticDepth``) a surviving branch is divided by p_l in training, x + (b_l / p_l)
    * g_l(x), and the test-time block is x + g_l(x). With g_l = p_l * f_l (the last batch norm
    of the branch scaled by p_l) the two networks are the same function in training and at
    test time; in both, the test-time branch is the expected value of the training branch.
    So the learned models are equivalent, and evaluation needs no rescaling here.
    """
    return CifarResNet(110, num_classes, shortcut, stochastic_depth_prob, rng)


MODELS = {
    "resnet20": ModelEntry(resnet20, (32, 32), small_input=(32, 32)),
    "resnet32": ModelEntry(resnet32, (32, 32), small_input=(32, 32)),
    "resnet44": ModelEntry(resnet44, (32, 32), small_input=(32, 32)),
    "resnet56": ModelEntry(resnet56, (32, 32), small_input=(32, 32)),
    "resnet110": ModelEntry(resnet110, (32, 32), small_input=(32, 32)),
    "resnet110_stochastic_depth": ModelEntry(resnet110_stochastic_depth, (32, 32),
                                             small_input=(32, 32)),
}
