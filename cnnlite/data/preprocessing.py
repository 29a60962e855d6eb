"""How a data set's images are prepared for a model, kept so that a trained model can be used.

Training brings every image of a data set to the model's input in three steps::

    pixels in [0, 1]     (C, h, w)   uint8 files are divided by 255; the digits come in [0, 1]
    -> model's size      (C, H, W)   ``to_size``: repeat pixels (8x8 digits -> 32x32) or pad
                                     with zeros (MNIST's 28x28 -> LeNet-5's 32x32)
    -> standardised      (C, H, W)   ``(x - mean[c]) / std[c]`` with the training images' statistics

A ``Preprocessing`` records those steps (and the class names) as plain numbers and strings, so
that a checkpoint can hold it and ``cnnlite predict`` can prepare a new image exactly as the
training images were.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnnlite.data import transforms
from cnnlite.errors import OpError
from cnnlite.models.lenet import upsample_nearest

__all__ = ["Preprocessing", "to_size", "preprocessing_for", "CHANNEL_STATS", "NATIVE_SIZE"]

# Per-channel mean and standard deviation of the training images (in [0, 1]), for Normalize.
CHANNEL_STATS = {"mnist": ((0.1307,), (0.3081,)),
                 "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}
# The (height, width) and channels of each data set's images as they are stored.
NATIVE_SIZE = {"digits": ((8, 8), 1), "mnist": ((28, 28), 1), "cifar10": ((32, 32), 3)}
_CLASSES = {"digits": [str(digit) for digit in range(10)],
            "mnist": [str(digit) for digit in range(10)],
            "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                        "ship", "truck"]}


def to_size(image_size: tuple, target: tuple):
    """A transform that brings (C, h, w) images to the ``target`` (H, W) a model expects.

    Images whose sides divide the target are upsampled by repeating pixels (the 8x8 digits
    become 32x32: each pixel was a 4x4 block of the original bitmap); smaller ones are padded
    with zeros on every side (MNIST's 28x28 in LeNet-5's 32x32, as in the original paper).
    None when the sizes are equal.
    """
    (h, w), (height, width) = image_size, target
    if (h, w) == (height, width):
        return None
    if height % h == 0 and width % w == 0 and height // h == width // w:
        factor = height // h
        return lambda image: upsample_nearest(image, factor)
    if h <= height and w <= width and (height - h) % 2 == 0 and (width - w) % 2 == 0:
        pad_h, pad_w = (height - h) // 2, (width - w) // 2
        return lambda image: np.pad(image, ((0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    raise OpError(f"cannot bring images of {h}x{w} to the model's input size {height}x{width}")


class Preprocessing(NamedTuple):
    """What a model was trained on and how its input images were prepared.

    dataset : the data set's name (``digits``, ``mnist``, ``cifar10``).
    channels : 1 (grey) or 3 (RGB).
    image_size : (h, w) of the data set's images.
    input_size : (H, W) of the model's input.
    mean, std : per channel (or one for all), applied to pixels in [0, 1].
    classes : the class names, in the order of the model's outputs.
    """

    dataset: str
    channels: int
    image_size: tuple
    input_size: tuple
    mean: tuple
    std: tuple
    classes: tuple

    def transform(self) -> transforms.Compose:
        """The steps from pixels in [0, 1] at ``image_size`` to the model's input."""
        resize = to_size(self.image_size, self.input_size)
        normalize = transforms.Normalize(list(self.mean), list(self.std))
        return transforms.Compose([resize, normalize] if resize is not None else [normalize])

    def to_dict(self) -> dict:
        """Plain lists, numbers and strings, as a checkpoint stores them."""
        return {"dataset": self.dataset, "channels": int(self.channels),
                "image_size": [int(s) for s in self.image_size],
                "input_size": [int(s) for s in self.input_size],
                "mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "classes": [str(c) for c in self.classes]}

    @classmethod
    def from_dict(cls, record: dict) -> "Preprocessing":
        return cls(dataset=str(record["dataset"]), channels=int(record["channels"]),
                   image_size=tuple(int(s) for s in record["image_size"]),
                   input_size=tuple(int(s) for s in record["input_size"]),
                   mean=tuple(float(m) for m in record["mean"]),
                   std=tuple(float(s) for s in record["std"]),
                   classes=tuple(str(c) for c in record["classes"]))


def _digits_statistics() -> tuple[float, float]:
    """The digits are standardised with the training part's own mean and std."""
    from cnnlite.data.digits import Digits

    pixels = Digits(train=True).images
    return float(pixels.mean()), float(pixels.std())


def preprocessing_for(dataset: str, input_size: tuple) -> Preprocessing:
    """The ``Preprocessing`` that ``cnnlite train`` uses for ``dataset`` and a model whose input
    is ``input_size`` (H, W)."""
    if dataset not in NATIVE_SIZE:
        raise OpError(f"unknown dataset {dataset!r}; known: {', '.join(NATIVE_SIZE)}")
    image_size, channels = NATIVE_SIZE[dataset]
    if dataset == "digits":
        mean, std = _digits_statistics()
        mean, std = (mean,), (std,)
    else:
        mean, std = CHANNEL_STATS[dataset]
    to_size(image_size, input_size)  # fails here, naming both sizes, when they do not fit
    return Preprocessing(dataset, channels, tuple(image_size), tuple(input_size), tuple(mean),
                         tuple(std), tuple(_CLASSES[dataset]))
