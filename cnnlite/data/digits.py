"""Digits: 1,797 hand-written digits of 8 x 8 pixels, the data set that ships inside
scikit-learn (the test set of the UCI "optical recognition of hand-written digits").

Real data that needs no download and trains a small CNN in seconds on a laptop CPU, which is
why the demos and the notebooks use it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from cnnlite.data.dataset import TensorDataset
from cnnlite.validate import boolean, integer, real

__all__ = ["Digits"]


class Digits(TensorDataset):
    """The 8 x 8 digits: images (1, 8, 8) float32 in [0, 1], labels 0..9.

    The 1,797 samples are split once, by a random permutation drawn with ``seed``, into a
    held-out test part (``round(1797 * test_fraction)`` samples, 359 by default) and a
    training part (the other 1,438). The same seed always gives the same split, and the two
    parts never share a sample.

    Parameters
    ----------
    train : the training part, or the held-out test part.
    test_fraction : share of the samples held out for testing, in (0, 1).
    seed : fixes the split.
    transform : applied to each image ``(1, 8, 8)``.
    """

    classes = [str(digit) for digit in range(10)]

    def __init__(self, train: bool = True, test_fraction: float = 0.2, seed: int = 0,
                 transform: Callable | None = None):
        train = boolean("Digits", "train", train)
        test_fraction = real("Digits", "test_fraction", test_fraction, above=0.0, below=1.0)
        seed = integer("Digits", "seed", seed, minimum=0, maximum=None)
        from sklearn.datasets import load_digits  # imported here: it takes a second to load

        digits = load_digits()
        # The pixels are counts of set cells in a 4 x 4 block of the 32 x 32 bitmap: 0..16.
        images = (digits.images / 16.0).astype(np.float32)[:, None]
        order = np.random.default_rng(seed).permutation(len(images))
        test_size = int(round(len(images) * test_fraction))
        chosen = order[test_size:] if train else order[:test_size]
        super().__init__(images[chosen], digits.target[chosen].astype(np.int64), transform)
        self.train, self.test_fraction, self.seed = train, test_fraction, seed
