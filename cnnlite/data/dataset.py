"""Datasets: anything with a length and an ``(image, label)`` pair per index.

A dataset is the smallest possible contract, so that a student can write one in five lines::

    class Squares(Dataset):
        def __len__(self):
            return 100
        def __getitem__(self, index):
            return np.full((1, 4, 4), index, np.float32), index % 2

Images are NumPy arrays ``(C, H, W)``; labels are integers. The ``DataLoader`` stacks them into
batches. ``Subset`` and ``random_split`` carve a dataset into parts without copying images.
"""
from __future__ import annotations

import abc
from typing import Callable, Sequence

import numpy as np

from cnnlite import backend
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.tensor import Tensor
from cnnlite.validate import integer, is_integer, probability

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "random_split"]


class Dataset(abc.ABC):
    """A sized collection of ``(image, label)`` pairs.

    Subclasses define ``__len__`` and ``__getitem__(index) -> (image, label)`` with ``image`` a
    NumPy array ``(C, H, W)`` and ``label`` an integer. An index outside ``range(len(self))``
    raises ``IndexError`` (which also lets ``for image, label in dataset`` stop).
    """

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of samples."""

    @abc.abstractmethod
    def __getitem__(self, index: int):
        """The sample ``(image, label)`` at ``index``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples)"


def check_index(index, length: int, owner: str) -> int:
    """``index`` as a non-negative int below ``length`` (negative indices count from the end)."""
    if not is_integer(index):
        raise ArgumentTypeError(f"{owner}: index must be an int, got {type(index).__name__} "
                                f"{index!r}")
    if not -length <= index < length:
        raise IndexError(f"{owner}: index {index} is out of range for {length} samples")
    return int(index) % length


class TensorDataset(Dataset):
    """A dataset over arrays already in memory: ``images[i], labels[i]``.

    Parameters
    ----------
    images : array ``(N, C, H, W)`` (or a ``cl.Tensor``; its ``.data`` is used)
    labels : array ``(N,)`` of integers
    transform : callable, optional
        Applied to each image ``(C, H, W)`` when it is read.
    """

    def __init__(self, images, labels, transform: Callable | None = None):
        owner = type(self).__name__
        images, labels = np.asarray(_raw(images)), np.asarray(_raw(labels))
        if images.ndim < 1 or labels.ndim != 1 or len(images) != len(labels):
            raise OpError(f"{owner}: expected images (N, ...) and labels (N,) with the same N, "
                          f"got images {images.shape} and labels {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise OpError(f"{owner}: labels must be integers, got dtype {labels.dtype}")
        if images.dtype.kind not in "biuf":
            raise OpError(f"{owner}: images must be real numbers, got dtype {images.dtype}")
        if transform is not None and not callable(transform):
            raise ArgumentTypeError(f"{owner}: transform must be callable (or None), got "
                                    f"{type(transform).__name__}")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        index = check_index(index, len(self), type(self).__name__)
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


ArrayDataset = TensorDataset
"""Another name for ``TensorDataset``: it holds plain NumPy arrays."""


def _raw(data):
    """The array inside a ``cl.Tensor``; anything else unchanged."""
    return backend.to_device(data.data, "cpu") if isinstance(data, Tensor) else data


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order (no copy of the images)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        indices = np.asarray(indices)
        if indices.ndim != 1:
            raise OpError(f"Subset: indices must be 1-D, got shape {indices.shape}")
        if indices.size and indices.dtype.kind not in "iu":
            # A float 1.5 would be cut to 1, a boolean mask read as the indices 0 and 1.
            raise OpError(f"Subset: indices must be integers, got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(dataset)):
            raise IndexError(f"Subset: indices must lie in [0, {len(dataset)}), got "
                             f"{indices.min()}..{indices.max()}")
        self.dataset, self.indices = dataset, indices.astype(np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        index = check_index(index, len(self), "Subset")
        return self.dataset[int(self.indices[index])]


def random_split(dataset: Dataset, lengths: Sequence[float], seed: int = 0) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given lengths.

    Parameters
    ----------
    lengths : sequence of ints summing to ``len(dataset)``, or of fractions summing to 1
        Fractions are turned into counts by rounding down, then the left-over samples go one
        each to the first parts (so ``[0.5, 0.5]`` of 5 samples gives 3 and 2).
    seed : int
        The same seed gives the same split on every run and every machine.
    """
    total = len(dataset)
    if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__iter__"):
        raise ArgumentTypeError(f"random_split: lengths must be a list of counts or fractions, "
                                f"got {type(lengths).__name__} {lengths!r}")
    seed = integer("random_split", "seed", seed, minimum=0, maximum=None)
    counts = _split_counts(list(lengths), total)
    order = np.random.default_rng(seed).permutation(total)
    bounds = np.cumsum([0] + counts)
    return [Subset(dataset, order[start:stop]) for start, stop in zip(bounds[:-1], bounds[1:])]


def _split_counts(lengths: list, total: int) -> list[int]:
    if all(is_integer(n) for n in lengths):
        if sum(lengths) != total or min(lengths, default=0) < 0:
            raise OpError(f"random_split: lengths {lengths} must be non-negative and sum to the "
                          f"dataset's length {total}")
        return [int(n) for n in lengths]
    lengths = [probability("random_split", f"lengths[{i}]", f) for i, f in enumerate(lengths)]
    if not np.isclose(sum(lengths), 1.0):
        raise OpError(f"random_split: fractions {lengths} must be non-negative and sum to 1")
    counts = [int(np.floor(f * total)) for f in lengths]
    for part in range(total - sum(counts)):
        counts[part % len(counts)] += 1
    return counts
