"""LeNet-5 (LeCun et al., 1998), the first convolutional network that read digits for a living.

    input 1 x 32 x 32
    conv1  6 @ 5x5      ->  6 x 28 x 28        156 params
    pool   2x2 / 2      ->  6 x 14 x 14
    conv2 16 @ 5x5      -> 16 x 10 x 10      2,416 params
    pool   2x2 / 2      -> 16 x  5 x  5
    fc3   400 -> 120                        48,120 params
    fc4   120 -> 84                         10,164 params
    fc5    84 -> 10                            850 params      total 61,706

This version uses ReLU and max pooling, as LeNet-5 is usually taught today; ``classic=True``
gives the tanh and average pooling of the paper (its pooling layers also had a learned scale
and bias, and conv2 saw only some of conv1's maps; both are left out here, as in most
re-implementations). Layer names follow the usual ``features`` / ``classifier`` split, so the
state-dict keys read ``features.0.weight`` ... ``classifier.4.bias``.

Bringing the 8 x 8 digits to 32 x 32: each of the 8 x 8 pixels counts the set cells of a 4 x 4
block of the original 32 x 32 bitmap (that is how the UCI data set was made). Repeating every
pixel into a 4 x 4 block (``upsample_nearest(image, 4)``) puts the counts back on the original
32 x 32 grid, so LeNet-5 sees its intended input size without any invented detail.
"""
from __future__ import annotations

import numpy as np

from cnnlite import nn
from cnnlite.models.registry import ModelEntry

__all__ = ["LeNet5", "lenet5", "upsample_nearest"]


class LeNet5(nn.Module):
    """LeNet-5 for ``in_channels`` x 32 x 32 images.

    Parameters
    ----------
    num_classes : int
        Outputs of the last layer (10 digits).
    in_channels : int
        1 for grey digits, 3 for colour images such as CIFAR-10.
    classic : bool
        ``False``: ReLU and 2x2 max pooling (trains faster). ``True``: tanh and 2x2 average
        pooling, as in the 1998 paper.

    Shapes: x (N, in_channels, 32, 32) -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, classic: bool = False):
        super().__init__()
        activation = nn.Tanh if classic else nn.ReLU
        pool = nn.AvgPool2d if classic else nn.MaxPool2d
        self.classic = classic
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5), activation(), pool(2),
            nn.Conv2d(6, 16, kernel_size=5), activation(), pool(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), activation(),
            nn.Linear(120, 84), activation(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        features = self.features(x)                              # (N, 16, 5, 5)
        return self.classifier(features.reshape(features.shape[0], -1))


def lenet5(num_classes: int = 10, in_channels: int = 1, classic: bool = False) -> LeNet5:
    """LeNet-5 (see ``LeNet5``)."""
    return LeNet5(num_classes=num_classes, in_channels=in_channels, classic=classic)


def upsample_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Repeat every pixel into a ``factor`` x ``factor`` block.  image: (C, H, W) ->
    (C, factor*H, factor*W); the 8 x 8 digits with ``factor=4`` become LeNet's 32 x 32."""
    return np.asarray(image).repeat(factor, axis=-2).repeat(factor, axis=-1)


MODELS = {"lenet5": ModelEntry(lenet5, (32, 32), small_input=(32, 32), in_channels=1)}
