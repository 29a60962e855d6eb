"""ImageFolder: images sorted into one sub-folder per class, the usual layout of a custom
data set (and of ImageNet's training set)::

    root/cat/0001.jpg          -> label 0 ("cat")
    root/cat/more/0002.png     -> label 0 (nested folders belong to their top-level class)
    root/dog/0001.jpg          -> label 1 ("dog")

Classes are the sub-folder names in sorted order; files are decoded with Pillow when read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from cnnlite.data.dataset import Dataset, check_index
from cnnlite.data.download import DataFileError, folder_path
from cnnlite.errors import ArgumentTypeError, OpError

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "IMAGE_MODES"]

#: The Pillow modes an image can be converted to, each giving uint8 channels: grey levels (1),
#: colour (3), colour with transparency (4).
IMAGE_MODES = ("L", "RGB", "RGBA")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")


class ImageFolder(Dataset):
    """Images (C, H, W) uint8 from files in ``root/<class name>/``, labels by class.

    Parameters
    ----------
    root : folder with one sub-folder per class.
    transform : applied to each decoded image (e.g. ``ResizeShortSide(144)`` then a crop).
    mode : Pillow mode the images are converted to: ``"RGB"`` gives (3, H, W), ``"L"``
        (grey levels) gives (1, H, W), ``"RGBA"`` gives (4, H, W).
    extensions : file name endings (case-insensitive) that count as images.

    Attributes: ``classes`` (sorted folder names), ``class_to_idx``, ``samples`` (a list of
    ``(path, label)``).
    """

    def __init__(self, root, transform: Callable | None = None, mode: str = "RGB",
                 extensions=IMAGE_EXTENSIONS):
        if mode not in IMAGE_MODES:
            raise OpError(f"ImageFolder: mode must be one of {', '.join(IMAGE_MODES)}, got "
                          f"{mode!r}")
        if transform is not None and not callable(transform):
            raise ArgumentTypeError(f"ImageFolder: transform must be callable (or None), got "
                                    f"{type(transform).__name__}")
        self.root, self.transform, self.mode = folder_path("ImageFolder", root), transform, mode
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: {self.root.resolve()} is not a folder")
        self.classes = sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: {self.root.resolve()} has no sub-folders; "
                                    f"expected one sub-folder of images per class")
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        endings = tuple(ending.lower() for ending in extensions)
        self.samples = [(path, label) for label, name in enumerate(self.classes)
                        for path in _files_under(self.root / name)
                        if path.suffix.lower() in endings]
        if not self.samples:
            raise FileNotFoundError(f"ImageFolder: no image files ({', '.join(endings)}) in "
                                    f"the class folders of {self.root.resolve()}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image  # imported here: only image folders need Pillow

        path, label = self.samples[check_index(index, len(self), "ImageFolder")]
        try:
            with Image.open(path) as picture:
                pixels = np.asarray(picture.convert(self.mode))
        except (OSError, ValueError, SyntaxError) as error:  # Pillow's "broken PNG" is one
            raise DataFileError(f"{path}: cannot be decoded as an image, the file is damaged "
                                f"or not an image ({type(error).__name__}: {error})") from None
        # Pillow gives (H, W, C), or (H, W) for one channel; the framework works in (C, H, W).
        if pixels.ndim == 2:
            image = pixels[None]
        else:
            image = np.ascontiguousarray(pixels.transpose(2, 0, 1))
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def _files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, in sorted order so that indices are stable across runs."""
    return sorted(Path(directory) / name
                  for directory, _, names in os.walk(folder, followlinks=True) for name in names)
