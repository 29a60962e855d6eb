"""Input makers for the table: values chosen away from the points where an op is not smooth.

A central difference with step eps = 1e-6 measures a wrong derivative when an input sits
within eps of a kink (relu at 0, |x| at 0), a tie (two equal values in a max-pooling window,
max(a, b) with a = b) or a singularity (1/x, log x at 0). Each maker keeps a margin far wider
than eps, so a failing check means a bug, not a kink.
"""
from __future__ import annotations

import numpy as np


def uniform(rng, shape, low=-2.0, high=2.0):
    """Values in [low, high]: for ops that are smooth everywhere."""
    return rng.uniform(low, high, size=shape)


def away_from_zero(rng, shape, margin=0.1, high=2.0):
    """Values with margin <= |v| <= high: for kinks and singularities at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(margin, high, size=shape)


def positive(rng, shape, low=0.5, high=2.0):
    """Values in [low, high], low > 0: for log, sqrt, powers of a tensor."""
    return rng.uniform(low, high, size=shape)


def distinct(rng, shape, spacing=0.1):
    """A random permutation of 0, spacing, 2*spacing, ..., centred on 0: no two values closer
    than ``spacing``, so no max (of a window, a group, a pair) is ever tied."""
    size = int(np.prod(shape))
    values = rng.permutation(size) * spacing
    return (values - values.mean()).reshape(shape)


def away_from(rng, shape, points, margin=0.1, low=-3.0, high=3.0):
    """Values in [low, high] at least ``margin`` from each of ``points`` (the kinks of relu6 at
    0 and 6, of hardsigmoid at -3 and 3, ...)."""
    values = rng.uniform(low, high, size=shape)
    for _ in range(100):
        near = np.zeros(values.shape, dtype=bool)
        for p in points:
            near |= np.abs(values - p) < margin
        if not near.any():
            return values
        values[near] = rng.uniform(low, high, size=int(near.sum()))
    raise ValueError(f"away_from: could not keep values {margin} away from {points}")


def class_targets(rng, shape, classes):
    """Integer class indices in [0, classes)."""
    return rng.integers(0, classes, size=shape)
