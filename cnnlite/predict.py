"""Using a trained model: classify image files with a checkpoint of ``cnnlite train``/``demo``.

A run's checkpoint holds, beside the weights, what using them needs (its ``inference`` part,
see ``cnnlite.train.resume``): the model's registry name and sizes, and the
``Preprocessing`` of the training images. An image file is prepared exactly as they were::

    file (PNG, JPEG, ...)  --Pillow-->  grey ("L") or RGB, as the model was trained
    -> pixels in [0, 1]            (C, h, w) float32, uint8 / 255
    -> the data set's size         bilinear resize when the file's size differs (``h, w``)
    -> the training transform      the model's size, then (x - mean) / std

and the model (in evaluation mode, without a graph) gives the class probabilities:
``softmax(logits)``. On the command line::

    cnnlite predict runs/demo/checkpoint.npz digit.png --top 3
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cnnlite import checkpoint as checkpoints
from cnnlite import functional as F
from cnnlite import models
from cnnlite.autograd import no_grad
from cnnlite.checkpoint import CheckpointError
from cnnlite.data.preprocessing import Preprocessing
from cnnlite.data.transforms import resize_bilinear
from cnnlite.errors import ArgumentTypeError
from cnnlite.tensor import Tensor
from cnnlite.validate import integer

__all__ = ["predict", "load_trained_model", "prepare_image"]

_PILLOW_MODES = {1: "L", 3: "RGB"}
_INFERENCE_FIELDS = ("model", "num_classes", "in_channels", "preprocessing")


def load_trained_model(checkpoint) -> tuple:
    """The model of a training checkpoint, in evaluation mode, and its ``Preprocessing``.

    Raises ``CheckpointError`` for a file that is not a checkpoint, and for one written before
    checkpoints kept what prediction needs (saying which parts are missing).
    """
    where = os.fspath(checkpoint)
    state = checkpoints.load(where)
    inference = state.get("inference")
    if not isinstance(inference, dict) or "model" not in state:
        missing = ([f"inference ({', '.join(_INFERENCE_FIELDS)})"]
                   if not isinstance(inference, dict) else [])
        missing += [] if "model" in state else ["model (the weights)"]
        raise CheckpointError(f"{where}: this checkpoint cannot be used for prediction: it lacks "
                              f"{'; '.join(missing)}; it was written by a cnnlite that did not "
                              f"keep the preprocessing, or not by cnnlite train/demo; train "
                              f"again (cnnlite train ... --out DIR) to get one that has it")
    absent = [field for field in _INFERENCE_FIELDS if field not in inference]
    if absent:
        raise CheckpointError(f"{where}: the checkpoint's inference part lacks "
                              f"{', '.join(absent)}")
    model = models.get_model(inference["model"], num_classes=int(inference["num_classes"]),
                             in_channels=int(inference["in_channels"]))
    checkpoints.check_state_dict(model.state_dict(), state["model"], where, "model")
    model.load_state_dict(state["model"])
    model.eval()
    return model, Preprocessing.from_dict(inference["preprocessing"])


def prepare_image(image, preprocessing: Preprocessing) -> np.ndarray:
    """The model's input (C, H, W) float32 for one image: a file path or a Pillow image."""
    from PIL import Image  # imported here: only prediction decodes image files

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            picture = opened.convert(_PILLOW_MODES[preprocessing.channels])
    elif isinstance(image, Image.Image):
        picture = image.convert(_PILLOW_MODES[preprocessing.channels])
    else:
        raise ArgumentTypeError(f"predict: an image must be a file path or a PIL.Image, got "
                                f"{type(image).__name__}")
    pixels = np.asarray(picture, dtype=np.float32) / 255.0        # (h, w) or (h, w, 3)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if pixels.shape[1:] != preprocessing.image_size:
        pixels = resize_bilinear(pixels, preprocessing.image_size)
    return np.asarray(preprocessing.transform()(pixels), dtype=np.float32)


def predict(checkpoint, images: Sequence, top: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top`` most probable classes of each image, with their probabilities.

    Parameters
    ----------
    checkpoint : path
        A checkpoint written by ``cnnlite train`` or ``cnnlite demo`` (``runs/demo/
        checkpoint.npz``).
    images : sequence of paths (PNG, JPEG, anything Pillow reads) or PIL images
    top : int
        How many classes per image, at least 1 (at most the number of classes).

    Returns
    -------
    list of lists of (class name, probability)
        One list per image, most probable first; probabilities are softmax outputs in [0, 1].
    """
    top = integer("predict", "top", top, minimum=1)
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    for image in images:
        if isinstance(image, (str, os.PathLike)) and not Path(image).is_file():
            raise FileNotFoundError(f"predict: no image file {os.fspath(image)}")
    model, preprocessing = load_trained_model(checkpoint)
    batch = np.stack([prepare_image(image, preprocessing) for image in images])
    with no_grad():
        probabilities = F.softmax(model(Tensor(batch)), axis=-1).data
    top = min(top, probabilities.shape[1])
    results = []
    for row in probabilities:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(preprocessing.classes[i], float(row[i])) for i in best])
    return results
