"""Building blocks shared by several families of models.

ConvNormActivation   convolution -> batch norm -> activation, the unit most modern networks
                     repeat (MobileNet, EfficientNet, ShuffleNet, ...)
SqueezeExcitation    the SE block (Hu et al. 2018): reweigh the channels by a gate computed
                     from their global averages (SENet, MobileNet v3, EfficientNet)
channel_shuffle      ShuffleNet's interleaving of channel groups
StochasticDepth      drop a residual branch at random while training (Huang et al. 2016)
check_input_size     the error of a model that takes one input size only
InputSizeErrors      the error of any registered model run on an input it cannot take: it
                     names the model and the input size it expects
"""
from __future__ import annotations

import numpy as np

from cnnlite import nn, validate
from cnnlite.errors import OpError
from cnnlite.functional.dropout import random_generator
from cnnlite.tensor import Tensor

__all__ = ["ConvNormActivation", "SqueezeExcitation", "channel_shuffle", "StochasticDepth",
           "check_input_size", "InputSizeError", "InputSizeErrors"]


class ConvNormActivation(nn.Sequential):
    """``conv -> norm -> activation`` as one Sequential: children ``0`` (Conv2d), ``1`` (the
    norm layer) and ``2`` (the activation), so the state-dict keys read ``0.weight``,
    ``1.running_mean``, ... like torchvision's ``Conv2dNormActivation``.

    ``padding=None`` keeps the spatial size at stride 1: (kernel_size - 1) // 2 * dilation.
    ``bias=None`` gives the convolution a bias only when there is no norm layer (a batch norm
    right after it would cancel the bias anyway). ``norm_layer`` or ``activation_layer`` None
    leaves that layer out; each is called with no argument but the channels (norm) or none
    (activation), so pass ``functools.partial(nn.BatchNorm2d, eps=1e-3)`` for other settings.

    Shapes: x (N, in_channels, H, W) -> (N, out_channels, H', W'), H' = (H + 2p - d(k-1) - 1)
    // stride + 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, groups: int = 1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation: int = 1,
                 bias: bool | None = None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                            padding=padding, dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """The squeeze-and-excitation block (Hu et al. 2018).

    squeeze:    s = mean of x over H, W                     (N, C, 1, 1)
    excitation: g = scale_activation(fc2(activation(fc1(s))))  (N, C, 1, 1), in (0, 1)
    output:     y = g * x                                   (N, C, H, W)

    fc1 (C -> squeeze_channels) and fc2 (squeeze_channels -> C) are fully connected layers,
    written as 1x1 convolutions on the 1 x 1 map (keys ``fc1.weight`` ... as in torchvision);
    they cost 2 * C * squeeze_channels multiply-adds per sample, next to nothing.
    SENet uses squeeze_channels = C / 16 with ReLU and sigmoid; MobileNet v3 ReLU and
    hardsigmoid; EfficientNet SiLU and sigmoid.
    """

    def __init__(self, input_channels: int, squeeze_channels: int, activation=nn.ReLU,
                 scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x):
        scale = self.avgpool(x)
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(scale))))
        return scale * x


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet, Zhang et al. 2018).

    With the channels in groups [a0 a1 a2 | b0 b1 b2] (groups=2), the output is
    [a0 b0 a1 b1 a2 b2]: each group of the next grouped convolution then sees channels from
    every group of the previous one. A reshape to (N, groups, C/groups, H, W), a swap of the
    two channel axes and a reshape back. x: (N, C, H, W) with C divisible by groups.
    """
    n, channels, height, width = x.shape
    if channels % groups:
        raise OpError(f"channel_shuffle: {channels} channels do not split into {groups} groups "
                      f"(input {tuple(x.shape)})")
    x = x.reshape(n, groups, channels // groups, height, width)
    return x.transpose(0, 2, 1, 3, 4).reshape(n, channels, height, width)


class StochasticDepth(nn.Module):
    """Randomly drop a residual branch while training (Huang et al. 2016).

    In training, the branch's output is kept with probability 1 - p and zeroed otherwise, and
    what is kept is scaled by 1 / (1 - p); in evaluation the layer passes its input through.
    The paper keeps the branch unscaled in training and multiplies it by the survival
    probability 1 - p at test time instead: both make the expected training output equal the
    test output, and scaling in training (as inverted dropout does) leaves nothing to do at test
    time. ``mode="batch"`` drops the branch for the whole mini-batch (the paper: the block is
    skipped); ``mode="row"`` decides for each sample (EfficientNet's drop path).

    x: (N, ...) -> the same shape.
    """

    def __init__(self, p: float, mode: str = "row", rng: np.random.Generator | None = None):
        super().__init__()
        if mode not in ("row", "batch"):
            raise ValueError(f"StochasticDepth: mode must be 'row' or 'batch', got {mode!r}")
        self.p = validate.probability("StochasticDepth", "p", p)
        self.mode = mode
        self.rng = random_generator("StochasticDepth", rng) or np.random.default_rng()

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = (x.shape[0],) + (1,) * (x.ndim - 1) if self.mode == "row" else (1,) * x.ndim
        keep = (self.rng.random(size) < survival).astype(x.dtype)
        if survival > 0:
            keep /= survival
        return x * keep

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"


class InputSizeError(OpError):
    """An input a model cannot take; the message names the model and the input it expects."""


def check_input_size(where: str, x, channels: int, size: tuple) -> None:
    """Raise an InputSizeError saying which input a fixed-size model expects (its fully
    connected layers are sized for one feature map), naming the model and the input's shape."""
    shape = tuple(getattr(x, "shape", np.shape(x)))
    if len(shape) != 4 or shape[1] != channels or shape[2:] != tuple(size):
        height, width = size
        raise InputSizeError(f"{where}: expected input of shape (N, {channels}, {height}, "
                             f"{width}): the fully connected layers are sized for "
                             f"{height}x{width} images; got {shape}")


class InputSizeErrors:
    """Runs a model's ``forward`` and, when an input of another size than the model was
    designed for fails inside it, says so in the model's terms.

    A too-small input fails deep inside a network, where the op that notices knows nothing of
    the model: ``max_pool2d: kernel_size (3, 3) is larger than the padded input (1, 1)``.
    Installed as the model's ``forward`` by ``cnnlite.models.get_model`` (and the
    constructors ``models.resnet50()``, ...), it turns that into::

        alexnet: cannot run on an input of shape (1, 3, 32, 32): it expects (N, 3, 224, 224),
        the size it was designed for (it also runs at 64x64); resize or pad the images
        (inside the model: max_pool2d: kernel_size (3, 3) is larger than ...)

    Errors for inputs of the designed size pass through unchanged: they are not about the size.
    Holding the model (not a closure over it) keeps ``copy.deepcopy(model)`` right: the copy's
    check calls the copy's own ``forward``.
    """

    def __init__(self, model, name: str, channels: int, input_size: tuple,
                 small_input: tuple | None = None):
        self.model, self.name, self.channels = model, name, channels
        self.input_size, self.small_input = tuple(input_size), small_input

    def expected(self) -> str:
        """The expected input in words: ``(N, 3, 224, 224), ... (it also runs at 32x32)``."""
        height, width = self.input_size
        text = f"(N, {self.channels}, {height}, {width}), the size it was designed for"
        if self.small_input is not None and tuple(self.small_input) != self.input_size:
            text += f" (it also runs at {self.small_input[0]}x{self.small_input[1]})"
        return text

    def __call__(self, x, *args, **kwargs):
        try:
            return type(self.model).forward(self.model, x, *args, **kwargs)
        except InputSizeError:
            raise
        except OpError as error:
            shape = tuple(getattr(x, "shape", np.shape(x)))
            if shape[1:] == (self.channels, *self.input_size):
                raise
            raise InputSizeError(f"{self.name}: cannot run on an input of shape {shape}: it "
                                 f"expects {self.expected()}; resize or pad the images (inside "
                                 f"the model: {error})") from error

    def __repr__(self) -> str:
        return f"<forward of {self.name}, expecting {self.expected()}>"
