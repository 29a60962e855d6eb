"""What the model registry knows of each architecture: how to build it and what it takes.

Every family module (``resnet.py``, ``vgg.py``, ...) ends with a ``MODELS`` dict of name ->
``ModelEntry``; ``cnnlite.models`` merges them into the one registry behind ``list_models`` and
``get_model``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple


class ModelEntry(NamedTuple):
    """One registered architecture.

    constructor : builds the model; ``num_classes`` and the family's options as keywords.
    input_size : the (height, width) the architecture was designed for (224 x 224 for most
        ImageNet models, 299 x 299 for the Inception family, 32 x 32 for CIFAR models).
    small_input : a small (height, width) the architecture still accepts, for quick checks
        (ResNets take 32 x 32 thanks to their adaptive pooling); None when only
        ``input_size`` fits (AlexNet's fully connected layers expect exactly 227 x 227).
    small_kwargs : constructor keywords for a quick check of a reduced model, where even the
        smallest input would be slow (a 1001-layer ResNet checked at a lower depth).
    in_channels : the channels of the input it was built for (3 for colour images, 1 for
        LeNet-5's digits).
    """

    constructor: Callable
    input_size: tuple
    small_input: tuple | None = None
    small_kwargs: dict = {}
    in_channels: int = 3
