"""CIFAR-10 and CIFAR-100: 60,000 colour images of 32 x 32 pixels, in 10 or 100 classes.

The "python version" of the data set is a folder of pickled dictionaries ("batches"):

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch   (10,000 images each)
        {b"data": uint8 (10000, 3072), b"labels": [10000 ints], ...}
    cifar-100-python/train (50,000 images), test (10,000)
        {b"data": uint8 (N, 3072), b"fine_labels": [...], b"coarse_labels": [...], ...}

Each row of ``data`` is the red plane, then the green, then the blue, each 32 x 32 row by row,
so ``data.reshape(N, 3, 32, 32)`` is already (N, C, H, W) in RGB order.

Unpickling runs whatever code a file asks for, so read only the official files (the archive
that ``download=True`` fetches is checked against its published MD5 checksum).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np

from cnnlite.data.dataset import TensorDataset
from cnnlite.data.download import (DataFileError, DownloadError, download_file, extract_tar,
                                   folder_path, missing_files_error)
from cnnlite.errors import OpError
from cnnlite.validate import boolean

__all__ = ["CIFAR10", "CIFAR100"]


def _load_batch(path: Path) -> dict:
    """The dictionary pickled in a CIFAR batch file, or ``DataFileError`` naming the file."""
    try:
        with open(path, "rb") as file:
            # The files were written by Python 2: bytes keys, and no text decoding of the arrays.
            batch = pickle.load(file, encoding="bytes")
    except OSError:
        raise
    except Exception as error:  # unpickling garbage can fail with almost any exception
        raise DataFileError(f"{path}: not a CIFAR batch file, or a damaged one: it cannot be "
                            f"unpickled ({type(error).__name__}: {error})") from None
    if not isinstance(batch, dict):
        raise DataFileError(f"{path}: not a CIFAR batch file: it holds a "
                            f"{type(batch).__name__}, not a dict")
    return batch


def _entry(batch: dict, key: bytes, path: Path):
    if key not in batch:
        keys = sorted(repr(k) for k in batch)
        raise DataFileError(f"{path}: no {key!r} entry (found {', '.join(keys)}); "
                            f"is it a CIFAR batch file?")
    return batch[key]


def _integers(batch: dict, key: bytes, path: Path, low: int, high: int) -> np.ndarray:
    """Entry ``key`` as an integer array with values in [low, high], or ``DataFileError``
    (a float or out-of-range pixel would otherwise be cut or wrapped into a wrong byte)."""
    try:
        values = np.asarray(_entry(batch, key, path))
    except (TypeError, ValueError) as error:
        raise DataFileError(f"{path}: the {key!r} entry is not an array ({error})") from None
    if values.dtype.kind not in "iu" or (values.size and (values.min() < low
                                                          or values.max() > high)):
        found = (f"dtype {values.dtype}" if values.dtype.kind not in "iu"
                 else f"values {values.min()}..{values.max()}")
        raise DataFileError(f"{path}: the {key!r} entry must hold integers in [{low}, {high}], "
                            f"got {found}")
    return values


class CIFAR10(TensorDataset):
    """CIFAR-10: images (3, 32, 32) uint8 RGB, labels 0..9.

    Parameters
    ----------
    root : folder holding ``cifar-10-batches-py/`` (the unpacked official archive); the batch
        files directly in ``root`` are found too.
    train : the 50,000 training images (data_batch_1..5) or the 10,000 test images.
    download : fetch and unpack the official archive into ``root`` (MD5 checked).
    transform : applied to each image; ``transforms.ToFloat()`` scales it to [0, 1].

    Attributes: ``images`` (N, 3, 32, 32) uint8, ``labels`` (N,) int64, ``classes`` (the
    names from the ``batches.meta`` file, when it is there).
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    md5 = "c58f30108f718f92721af3b95e74349a"
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{number}" for number in range(1, 6))
    test_files = ("test_batch",)
    meta_file, names_key = "batches.meta", b"label_names"
    labels_key = b"labels"
    num_classes = 10

    def __init__(self, root, train: bool = True, download: bool = False,
                 transform: Callable | None = None):
        owner = type(self).__name__
        train, download = boolean(owner, "train", train), boolean(owner, "download", download)
        self.root, self.train = folder_path(owner, root), train
        names = self.train_files if train else self.test_files
        folder = self._find(names)
        if folder is None and download:
            try:
                archive = self.root / self.url.rsplit("/", 1)[-1]
                download_file([self.url], archive, self.md5)
                extract_tar(archive, self.root)
            except DownloadError as error:
                raise self._missing_error(names, reason=str(error)) from None
            folder = self._find(names)
        if folder is None:
            raise self._missing_error(names) from None
        images, labels = [], []
        for name in names:
            path = folder / name
            batch = _load_batch(path)
            data = _integers(batch, b"data", path, 0, 255).astype(np.uint8)
            targets = _integers(batch, self.labels_key, path, 0, self.num_classes - 1)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or targets.shape != (len(data),):
                raise DataFileError(f"{path}: expected data (N, 3072) and N labels, got data "
                                    f"{data.shape} and labels {targets.shape}")
            images.append(data)
            labels.append(targets.astype(np.int64))
        images, labels = np.concatenate(images), np.concatenate(labels)
        super().__init__(images.reshape(-1, 3, 32, 32), labels, transform)
        self.classes = self._class_names(folder)

    def _find(self, names):
        """The folder that holds all of ``names``: root/<folder> or root itself, or None."""
        for folder in (self.root / self.folder, self.root):
            if all((folder / name).is_file() for name in names):
                return folder
        return None

    def _class_names(self, folder: Path):
        meta_path = folder / self.meta_file
        if not meta_path.is_file():
            return None
        names = _entry(_load_batch(meta_path), self.names_key, meta_path)
        if not isinstance(names, (list, tuple)) or len(names) != self.num_classes:
            raise DataFileError(f"{meta_path}: expected a list of {self.num_classes} class "
                                f"names under {self.names_key!r}, got {type(names).__name__}")
        return [name.decode(errors="replace") if isinstance(name, bytes) else str(name)
                for name in names]

    def _missing_error(self, names, reason=None):
        missing = [name for name in names if not (self.root / self.folder / name).is_file()]
        how = f"download {self.url} and unpack it into {self.root.resolve()}"
        return missing_files_error(type(self).__name__, missing, self.root / self.folder, how,
                                   reason)


class CIFAR100(CIFAR10):
    """CIFAR-100: images (3, 32, 32) uint8 RGB, 100 fine labels (or 20 coarse super-classes).

    Same parameters as ``CIFAR10``, plus ``label_type``: ``"fine"`` (100 classes, the usual
    benchmark) or ``"coarse"`` (20 super-classes). The files live in ``cifar-100-python/``.
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    folder = "cifar-100-python"
    train_files, test_files = ("train",), ("test",)
    meta_file = "meta"

    def __init__(self, root, train: bool = True, download: bool = False,
                 transform: Callable | None = None, label_type: str = "fine"):
        if label_type not in ("fine", "coarse"):
            raise OpError(f"CIFAR100: label_type must be 'fine' or 'coarse', got {label_type!r}")
        self.num_classes = 100 if label_type == "fine" else 20
        self.labels_key = f"{label_type}_labels".encode()
        self.names_key = f"{label_type}_label_names".encode()
        super().__init__(root, train, download, transform)
