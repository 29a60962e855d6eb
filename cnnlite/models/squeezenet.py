"""SqueezeNet (Iandola et al. 2016): AlexNet's accuracy with 50 times fewer parameters.

Three strategies, all in the Fire module: replace most 3x3 filters by 1x1 filters (9 times
fewer weights each); feed the remaining 3x3 filters fewer input channels, through a 1x1
"squeeze" layer; and pool late, so that the convolutions work on large maps. There are no
fully connected layers: a 1x1 convolution makes one map per class and a global average
turns each map into a score, as in Network in Network.

Fire module (squeeze s, expand e1 + e3, s < e1 + e3)::

    x (N, C, H, W) -> squeeze 1x1, s channels, ReLU          -> (N, s, H, W)
                   -> [expand 1x1, e1 channels, ReLU ;
                       expand 3x3 (padding 1), e3 channels, ReLU]
                   -> concatenated along the channels        -> (N, e1 + e3, H, W)

Table 1 of the paper (SqueezeNet 1.0, input 3 x 224 x 224) and version 1.1 (from the
authors' repository: 2.4 times less computation for the same accuracy, by a smaller conv1
and earlier pooling)::

    1.0                            output          1.1                            output
    conv1 96 @ 7x7 / 2             96 x 109 x 109  conv1 64 @ 3x3 / 2             64 x 111 x 111
    maxpool 3x3 / 2                96 x 54 x 54    maxpool 3x3 / 2                64 x 55 x 55
    fire2 (16, 64, 64)            128 x 54 x 54    fire2 (16, 64, 64)            128 x 55 x 55
    fire3 (16, 64, 64)            128 x 54 x 54    fire3 (16, 64, 64)            128 x 55 x 55
    fire4 (32, 128, 128)          256 x 54 x 54    maxpool 3x3 / 2               128 x 27 x 27
    maxpool 3x3 / 2               256 x 27 x 27    fire4 (32, 128, 128)          256 x 27 x 27
    fire5 (32, 128, 128)          256 x 27 x 27    fire5 (32, 128, 128)          256 x 27 x 27
    fire6 (48, 192, 192)          384 x 27 x 27    maxpool 3x3 / 2               256 x 13 x 13
    fire7 (48, 192, 192)          384 x 27 x 27    fire6 (48, 192, 192)          384 x 13 x 13
    fire8 (64, 256, 256)          512 x 27 x 27    fire7 (48, 192, 192)          384 x 13 x 13
    maxpool 3x3 / 2               512 x 13 x 13    fire8 (64, 256, 256)          512 x 13 x 13
    fire9 (64, 256, 256)          512 x 13 x 13    fire9 (64, 256, 256)          512 x 13 x 13
    dropout 0.5, conv10 1000 @ 1x1, ReLU, global average pool -> 1000
    params 1,248,424 (MACs 819 M)                  params 1,235,496 (MACs 349 M)

The poolings round up (``ceil_mode``, as Caffe, where SqueezeNet was trained): 109 -> 54
and 27 -> 13 either way, but 1.1's 111 -> 55 and 55 -> 27 too. (The paper's table lists
111 x 111 after conv1 of 1.0: its Caffe model takes 227 x 227 crops.)

Module names and state-dict keys are torchvision's (``features.3.squeeze.weight``,
``classifier.1.weight``), so its ImageNet weights load unchanged. Initialisation as
torchvision's: conv10 ~ N(0, 0.01^2), the other convolutions ``kaiming_uniform_`` (gain
sqrt(2), for ReLU), biases 0.
"""
from __future__ import annotations

from cnnlite import functional as F, nn
from cnnlite.models.registry import ModelEntry

__all__ = ["Fire", "SqueezeNet", "squeezenet1_0", "squeezenet1_1"]


class Fire(nn.Module):
    """The Fire module: a 1x1 squeeze layer, then 1x1 and 3x3 expand layers side by side.

    Parameters
    ----------
    in_channels : int
    squeeze_channels : int
        s, the channels the 3x3 filters see (fewer than the input's).
    expand1x1_channels, expand3x3_channels : int
        e1, e3; the output has e1 + e3 channels.

    Shapes: x (N, in_channels, H, W) -> (N, e1 + e3, H, W).
    Parameters: (C + 1) s + (s + 1) e1 + (9 s + 1) e3.
    """

    def __init__(self, in_channels: int, squeeze_channels: int, expand1x1_channels: int,
                 expand3x3_channels: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze_channels, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze_channels, expand1x1_channels, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze_channels, expand3x3_channels, kernel_size=3,
                                   padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x):
        squeezed = self.squeeze_activation(self.squeeze(x))
        return F.concat([self.expand1x1_activation(self.expand1x1(squeezed)),
                         self.expand3x3_activation(self.expand3x3(squeezed))], axis=1)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.0 or 1.1 (see the module's table).

    Parameters
    ----------
    version : "1_0" or "1_1"
    num_classes : int
        Channels of conv10, one map per class.
    dropout : float
        Dropout probability before conv10.

    Shapes: x (N, 3, H, W), H, W >= 29 (1.0) or 25 (1.1), 224 by design -> features
    (N, 512, 13, 13) at 224 -> logits (N, num_classes).
    """

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2), nn.ReLU(), _pool(),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), _pool(),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), _pool(),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(), _pool(),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), _pool(),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), _pool(),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"SqueezeNet: version must be '1_0' or '1_1', got {version!r}")
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)       # conv10
        self.classifier = nn.Sequential(nn.Dropout(dropout), final_conv, nn.ReLU(),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x):
        scores = self.classifier(self.features(x))                 # (N, num_classes, 1, 1)
        return scores.reshape(scores.shape[0], -1)


def squeezenet1_0(num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.0, the paper's (1,248,424 parameters at 1000 classes)."""
    return SqueezeNet("1_0", num_classes=num_classes, dropout=dropout)


def squeezenet1_1(num_classes: int = 1000, dropout: float = 0.5) -> SqueezeNet:
    """SqueezeNet 1.1 (1,235,496 parameters, 2.4 times fewer MACs than 1.0)."""
    return SqueezeNet("1_1", num_classes=num_classes, dropout=dropout)


MODELS = {
    "squeezenet1_0": ModelEntry(squeezenet1_0, (224, 224), small_input=(64, 64)),
    "squeezenet1_1": ModelEntry(squeezenet1_1, (224, 224), small_input=(64, 64)),
}
