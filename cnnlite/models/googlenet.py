"""GoogLeNet (Szegedy et al., "Going deeper with convolutions", 2014), as torchvision builds it.

The network is a stack of Inception modules: each runs 1x1, 3x3 and 5x5 convolutions and a
3x3 max pooling side by side on the same input and concatenates their outputs along the
channels, so the next layer can pick whichever scale helps.

Table 1 of the paper (224 x 224 input; "#3x3 red." is the 1x1 bottleneck before the 3x3)::

    layer            patch/stride  output       #1x1  #3x3 red.  #3x3  #5x5 red.  #5x5  pool proj
    conv1            7x7/2         112x112x64
    max pool         3x3/2          56x56x64
    conv2 + conv3    1x1, 3x3/1     56x56x192          64         192
    max pool         3x3/2          28x28x192
    inception (3a)                  28x28x256     64    96         128   16         32    32
    inception (3b)                  28x28x480    128   128         192   32         96    64
    max pool         3x3/2          14x14x480
    inception (4a)                  14x14x512    192    96         208   16         48    64
    inception (4b)                  14x14x512    160   112         224   24         64    64
    inception (4c)                  14x14x512    128   128         256   24         64    64
    inception (4d)                  14x14x528    112   144         288   32         64    64
    inception (4e)                  14x14x832    256   160         320   32        128   128
    max pool         3x3/2           7x7x832
    inception (5a)                   7x7x832     256   160         320   32        128   128
    inception (5b)                   7x7x1024    384   192         384   48        128   128
    avg pool         7x7/1           1x1x1024
    dropout (40%), linear            1x1x1000

Each module's output depth is #1x1 + #3x3 + #5x5 + pool proj (3a: 64 + 128 + 32 + 32 = 256).
Two auxiliary classifiers (after 4a and 4d) add their losses, weighted 0.3, while training.

Where torchvision (and so this module, whose state-dict keys are torchvision's) differs from
the paper: every convolution is followed by batch normalisation (eps 0.001), which did not
exist in 2014; the "5x5" branch uses a 3x3 kernel (a slip in the port the pretrained weights
were trained with, kept so that they load); the pooling after 4e is 2x2/2 rather than 3x3/2;
dropout is 0.2 rather than 0.4. Pooling rounds up (``ceil_mode``), as Caffe did. This gives
6,624,904 parameters without the auxiliary heads (13,004,888 with them) and 1,498,376,192
multiply-adds at 224 x 224.

Why the 1x1 bottlenecks (the lecture's example, 28x28x256 input, counted exactly):

    naive module: 1x1 128, 3x3 192, 5x5 96 on all 256 channels, plus 3x3 max pooling
        output 28x28x(128 + 192 + 96 + 256) = 28x28x672
        MACs   28*28*256 * (128*1 + 192*9 + 96*25) = 854,196,224
        weights       256 * (128*1 + 192*9 + 96*25) = 1,089,536
    with 1x1 bottlenecks: 1x1 128; 1x1 64 -> 3x3 192; 1x1 64 -> 5x5 96; pool -> 1x1 64
        output 28x28x(128 + 192 + 96 + 64) = 28x28x480
        MACs   28*28 * (256*(128 + 3*64) + 64*192*9 + 64*96*25) = 271,351,808
        weights       256*(128 + 3*64) + 64*192*9 + 64*96*25  = 346,112

The bottlenecks cut the cost by a factor of three, and the pooling branch no longer passes
all its input channels on, so the depth stops growing from module to module.
``naive_inception_module()`` and ``bottleneck_inception_module()`` build these two modules
(no batch norm, no biases: the figures count weights only), for ``cl.summary`` to count.

Initialisation (torchvision's): conv and linear weights ~ N(0, 0.01^2), batch norm scale 1 and
shift 0, linear biases as the layer's default. torchvision truncates the normal at +-2, that
is 200 standard deviations: a draw that far out never happens, so a plain normal is the same.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlite import functional as F, nn
from cnnlite.models.registry import ModelEntry
from cnnlite.tensor import Tensor

__all__ = ["BasicConv2d", "InceptionModule", "NaiveInceptionModule", "InceptionAux",
           "GoogLeNet", "GoogLeNetOutputs", "googlenet", "naive_inception_module",
           "bottleneck_inception_module", "transform_imagenet_input", "MODELS"]


class BasicConv2d(nn.Module):
    """Convolution (no bias) -> batch norm (eps 0.001) -> ReLU: the unit of every Inception
    network (keys ``conv.weight``, ``bn.running_mean``, ...). The bias is left out because the
    batch norm's shift would cancel it; eps 0.001 is TensorFlow's, which the weights came from.

    Keyword arguments after the channels go to ``nn.Conv2d`` (kernel_size, stride, padding).
    x: (N, in_channels, H, W) -> (N, out_channels, H', W')
    """

    def __init__(self, in_channels: int, out_channels: int, **conv_args):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_args)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class _ConvReLU(nn.Module):
    """Convolution without bias -> ReLU: the slide's units, whose counts are weights only."""

    def __init__(self, in_channels: int, out_channels: int, **conv_args):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_args)

    def forward(self, x):
        return F.relu(self.conv(x))


class InceptionModule(nn.Module):
    """The Inception module with 1x1 bottlenecks (the paper's Figure 2b).

    Four branches on the same input x: (N, in_channels, H, W), concatenated along the channels:

        branch1  1x1 conv, ch1x1
        branch2  1x1 conv to ch3x3red -> 3x3 conv, ch3x3
        branch3  1x1 conv to ch5x5red -> "5x5" conv, ch5x5 (kernel ``large_kernel_size``)
        branch4  3x3 max pool, stride 1 -> 1x1 conv, pool_proj

    -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W). The 1x1 convolutions before the 3x3 and
    5x5 ones shrink the depth they work on; the one after the pooling keeps the pooled input
    from adding all its channels to the output.

    Parameters
    ----------
    large_kernel_size : int
        Kernel of branch3: 3 as in torchvision (its weights were trained so), 5 as in the paper.
    conv_block : type
        The convolution unit (``BasicConv2d``: conv, batch norm, ReLU).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, large_kernel_size: int = 3,
                 conv_block: type = BasicConv2d):
        super().__init__()
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1),
            conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1),
            conv_block(ch5x5red, ch5x5, kernel_size=large_kernel_size,
                       padding=large_kernel_size // 2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return F.concat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)],
                        axis=1)


class NaiveInceptionModule(nn.Module):
    """The naive Inception module (the paper's Figure 2a): 1x1, 3x3 and 5x5 convolutions (each
    followed by ReLU) and a 3x3 max pooling, all on the whole input, concatenated.

    x: (N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + in_channels, H, W). The pooling
    branch passes every input channel on, so stacked naive modules only grow deeper.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int):
        super().__init__()
        self.branch1 = _ConvReLU(in_channels, ch1x1, kernel_size=1)
        self.branch2 = _ConvReLU(in_channels, ch3x3, kernel_size=3, padding=1)
        self.branch3 = _ConvReLU(in_channels, ch5x5, kernel_size=5, padding=2)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x):
        return F.concat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)],
                        axis=1)


def naive_inception_module(in_channels: int = 256) -> NaiveInceptionModule:
    """The lecture's naive module: 1x1 128, 3x3 192, 5x5 96 and 3x3 max pooling, no biases.

    On 28x28x256 it outputs 28x28x672 with 854,196,224 MACs and 1,089,536 weights.
    """
    return NaiveInceptionModule(in_channels, ch1x1=128, ch3x3=192, ch5x5=96)


def bottleneck_inception_module(in_channels: int = 256) -> InceptionModule:
    """The lecture's module with 1x1 bottlenecks: 1x1 128; 1x1 64 -> 3x3 192; 1x1 64 -> 5x5 96;
    pool -> 1x1 64. Convolution + ReLU without biases or batch norm.

    On 28x28x256 it outputs 28x28x480 with 271,351,808 MACs and 346,112 weights.
    """
    return InceptionModule(in_channels, 128, 64, 192, 64, 96, 64, large_kernel_size=5,
                           conv_block=_ConvReLU)


class InceptionAux(nn.Module):
    """Auxiliary classifier: average pooling to 4x4 (5x5/3 on the 14x14 map in the paper),
    1x1 conv to 128, fully connected 2048 -> 1024 with ReLU and dropout, then the classes.

    x: (N, in_channels, H, W) -> (N, num_classes)
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))                  # (N, 128, 4, 4)
        x = F.relu(self.fc1(x.reshape(x.shape[0], -1)))                  # (N, 1024)
        return self.fc2(self.dropout(x))


class GoogLeNetOutputs(NamedTuple):
    """What GoogLeNet returns while training with auxiliary heads (torchvision's order)."""

    logits: Tensor
    aux_logits2: Tensor
    aux_logits1: Tensor


# Per-channel (std, mean) of ImageNet, which torchvision's inputs are normalised with.
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)


def transform_imagenet_input(x: Tensor) -> Tensor:
    """Re-normalise an input made with ImageNet's mean and std to the [-1, 1] scale (mean 0.5,
    std 0.5) that Google's weights expect: ``x * std / 0.5 + (mean - 0.5) / 0.5`` per channel.
    x: (N, 3, H, W)"""
    return x * (_IMAGENET_STD / 0.5) + (_IMAGENET_MEAN - 0.5) / 0.5


class GoogLeNet(nn.Module):
    """GoogLeNet (Inception v1); see the module docstring for the architecture.

    Parameters
    ----------
    num_classes : int
    aux_logits : bool
        Build the two auxiliary classifiers ``aux1`` (after 4a) and ``aux2`` (after 4d). While
        training the forward pass then returns ``GoogLeNetOutputs(logits, aux_logits2,
        aux_logits1)``; in evaluation only the logits.
    transform_input : bool
        Apply ``transform_imagenet_input`` first (for the weights converted from TensorFlow).
    init_weights : bool
        torchvision's initialisation (module docstring); ``False`` keeps the layers' defaults.
    dropout, dropout_aux : float
        Dropout before the last layer, and inside the auxiliary heads.

    Shapes: x (N, 3, H, W), 224 x 224 by design, 32 x 32 and up accepted (the pooling at the
    end is adaptive) -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True,
                 transform_input: bool = False, init_weights: bool = True,
                 dropout: float = 0.2, dropout_aux: float = 0.7):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a = InceptionModule(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = InceptionModule(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = InceptionModule(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = InceptionModule(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = InceptionModule(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = InceptionModule(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = InceptionModule(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = InceptionModule(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = InceptionModule(832, 384, 192, 384, 48, 128, 128)

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        if init_weights:
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(module.weight, 0.0, 0.01)

    def forward(self, x):
        if self.transform_input:
            x = transform_imagenet_input(x)
        x = self.maxpool1(self.conv1(x))                                 # (N, 64, 56, 56)
        x = self.maxpool2(self.conv3(self.conv2(x)))                     # (N, 192, 28, 28)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))         # (N, 480, 14, 14)
        x = self.inception4a(x)                                          # (N, 512, 14, 14)
        with_aux = self.aux_logits and self.training
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))      # (N, 528, 14, 14)
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))                           # (N, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))                        # (N, 1024, 7, 7)
        x = self.avgpool(x)                                              # (N, 1024, 1, 1)
        logits = self.fc(self.dropout(x.reshape(x.shape[0], -1)))        # (N, num_classes)
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


def googlenet(num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
              init_weights: bool = True, dropout: float = 0.2,
              dropout_aux: float = 0.7) -> GoogLeNet:
    """GoogLeNet as torchvision's ``googlenet`` (see ``GoogLeNet``)."""
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits,
                     transform_input=transform_input, init_weights=init_weights,
                     dropout=dropout, dropout_aux=dropout_aux)


MODELS = {"googlenet": ModelEntry(googlenet, (224, 224), small_input=(32, 32))}
