"""Network in Network (Lin, Chen and Yan 2014): micro-networks in place of linear filters,
and global average pooling in place of fully connected layers.

mlpconv. A convolution computes, at each position, a linear function of a patch followed by
a ReLU: a generalised linear model, which can only separate what is linearly separable. NiN
slides a small multilayer perceptron over the patches instead. Its hidden layers act on one
position's channels only, so they are 1x1 convolutions ("cascaded cross channel parametric
pooling", cccp, in the paper and its Caffe files)::

    mlpconv:  conv k x k -> ReLU -> cccp1 1x1 -> ReLU -> cccp2 1x1 -> ReLU

Global average pooling. The last mlpconv makes one map per class; the mean of each map is
that class's score. No fully connected layers, so far fewer parameters to overfit, and each
map can be read as where the network sees its class.

The ImageNet model of the authors' Caffe files (``nin``; input 3 x 224 x 224; the poolings
round up, as Caffe's do)::

    block      layers (channels)                          output          parameters
    mlpconv1   11x11 / 4 (96), 1x1 (96), 1x1 (96)          96 x 54 x 54        53,568
    pool1      max 3x3 / 2                                 96 x 27 x 27
    mlpconv2   5x5, pad 2 (256), 1x1 (256), 1x1 (256)     256 x 27 x 27       746,240
    pool2      max 3x3 / 2                                256 x 13 x 13
    mlpconv3   3x3, pad 1 (384), 1x1 (384), 1x1 (384)     384 x 13 x 13     1,180,800
    pool3      max 3x3 / 2, dropout 0.5                   384 x  6 x  6
    mlpconv4   3x3, pad 1 (1024), 1x1 (1024), 1x1 (1000) 1000 x  6 x  6     5,614,568
    global average pool                                  1000
                                                                  total    7,595,176

The CIFAR-10 model of the paper (``nin_cifar``; input 3 x 32 x 32)::

    mlpconv1   5x5, pad 2 (192), 1x1 (160), 1x1 (96)       96 x 32 x 32        60,928
    pool1      max 3x3 / 2, dropout 0.5                    96 x 16 x 16
    mlpconv2   5x5, pad 2 (192), 1x1 (192), 1x1 (192)     192 x 16 x 16       535,104
    pool2      average 3x3 / 2, dropout 0.5               192 x  8 x  8
    mlpconv3   3x3, pad 1 (192), 1x1 (192), 1x1 (10)       10 x  8 x  8       370,954
    global average pool                                    10
                                                                  total      966,986

The keys read ``features.mlpconv1.conv.weight``, ``features.mlpconv1.cccp1.weight``, ...
Initialisation: the paper does not give one (its Caffe files draw Gaussian weights with hand-
picked standard deviations per layer); here He et al.'s ``kaiming_normal_`` for ReLU layers
and zero biases, the scale that keeps the signal's variance through a deep ReLU stack.
"""
from __future__ import annotations

from collections import OrderedDict

from cnnlite import nn
from cnnlite.models.registry import ModelEntry

__all__ = ["mlpconv", "NetworkInNetwork", "nin", "nin_cifar"]


def mlpconv(in_channels: int, channels: tuple, kernel_size: int, stride: int = 1,
            padding: int = 0) -> nn.Sequential:
    """One mlpconv block: a ``kernel_size`` convolution and two 1x1 convolutions, each
    followed by a ReLU.

    Parameters
    ----------
    in_channels : int
    channels : (int, int, int)
        Output channels of the convolution, of cccp1 and of cccp2 (the block's output).
    kernel_size, stride, padding : int
        Of the first convolution.

    Shapes: x (N, in_channels, H, W) -> (N, channels[2], OH, OW), with OH, OW those of the
    first convolution.
    """
    conv_channels, hidden_channels, out_channels = channels
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(in_channels, conv_channels, kernel_size, stride=stride,
                           padding=padding)),
        ("relu", nn.ReLU()),
        ("cccp1", nn.Conv2d(conv_channels, hidden_channels, kernel_size=1)),
        ("relu1", nn.ReLU()),
        ("cccp2", nn.Conv2d(hidden_channels, out_channels, kernel_size=1)),
        ("relu2", nn.ReLU()),
    ]))


class NetworkInNetwork(nn.Module):
    """mlpconv blocks and poolings (``features``), whose last block makes one map per class,
    then the global average of each map.

    Shapes: x (N, 3, H, W) -> features (N, num_classes, h, w) -> logits (N, num_classes).
    """

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features
        self.global_pool = nn.GlobalAvgPool2d()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x):
        scores = self.global_pool(self.features(x))                # (N, num_classes, 1, 1)
        return scores.reshape(scores.shape[0], -1)


def _max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def nin(num_classes: int = 1000, dropout: float = 0.5) -> NetworkInNetwork:
    """The ImageNet NiN of the authors' Caffe files (four mlpconv blocks, 7,595,176
    parameters at 1000 classes); x (N, 3, H, W), H, W >= 55 (224 by design)."""
    return NetworkInNetwork(nn.Sequential(OrderedDict([
        ("mlpconv1", mlpconv(3, (96, 96, 96), 11, stride=4)), ("pool1", _max_pool()),
        ("mlpconv2", mlpconv(96, (256, 256, 256), 5, padding=2)), ("pool2", _max_pool()),
        ("mlpconv3", mlpconv(256, (384, 384, 384), 3, padding=1)), ("pool3", _max_pool()),
        ("dropout", nn.Dropout(dropout)),
        ("mlpconv4", mlpconv(384, (1024, 1024, num_classes), 3, padding=1)),
    ])))


def nin_cifar(num_classes: int = 10, dropout: float = 0.5) -> NetworkInNetwork:
    """The paper's CIFAR-10 NiN (three mlpconv blocks, 966,986 parameters at 10 classes);
    x (N, 3, 32, 32) by design."""
    return NetworkInNetwork(nn.Sequential(OrderedDict([
        ("mlpconv1", mlpconv(3, (192, 160, 96), 5, padding=2)), ("pool1", _max_pool()),
        ("dropout1", nn.Dropout(dropout)),
        ("mlpconv2", mlpconv(96, (192, 192, 192), 5, padding=2)),
        ("pool2", nn.AvgPool2d(kernel_size=3, stride=2, ceil_mode=True)),
        ("dropout2", nn.Dropout(dropout)),
        ("mlpconv3", mlpconv(192, (192, 192, num_classes), 3, padding=1)),
    ])))


MODELS = {
    "nin": ModelEntry(nin, (224, 224), small_input=(64, 64)),
    "nin_cifar": ModelEntry(nin_cifar, (32, 32), small_input=(32, 32)),
}
