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
from cnnlite.data.download import DownloadError, download_file, extract_tar, missing_files_error

__all__ = ["CIFAR10", "CIFAR100"]


def _load_batch(path: Path) -> dict:
    with open(path, "rb") as file:
        # The files were written by Python 2: bytes keys, and no text decoding of the arrays.
        return pickle.load(file, encoding="bytes")


def _entry(batch: dict, key: bytes, path: Path):
    if key not in batch:
        raise ValueError(f"{path}: no {key!r} entry (found {sorted(batch)}); "
                         f"is it a CIFAR batch file?")
    return batch[key]


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

    def __init__(self, root, train: bool = True, download: bool = False,
                 transform: Callable | None = None):
        self.root, self.train = Path(root), train
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
            batch = _load_batch(folder / name)
            images.append(np.asarray(_entry(batch, b"data", folder / name), dtype=np.uint8))
            labels.append(np.asarray(_entry(batch, self.labels_key, folder / name)))
        images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int64)
        if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
            raise ValueError(f"{type(self).__name__}: expected data (N, 3072) and N labels in "
                             f"{folder}, got data {images.shape} and {labels.shape} labels")
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
        return [name.decode() if isinstance(name, bytes) else str(name) for name in names]

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
            raise ValueError(f"CIFAR100: label_type must be 'fine' or 'coarse', "
                             f"got {label_type!r}")
        self.labels_key = f"{label_type}_labels".encode()
        self.names_key = f"{label_type}_label_names".encode()
        super().__init__(root, train, download, transform)
