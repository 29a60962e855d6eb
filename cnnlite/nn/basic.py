"""Small layers with no weights: ``Identity``, ``Flatten`` and ``Dropout``."""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F, validate
from cnnlite.functional.dropout import dropout_arguments
from cnnlite.nn.module import Module

__all__ = ["Identity", "Flatten", "Dropout"]


class Identity(Module):
    """Returns its input (a placeholder, e.g. for a removed classifier)."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge the axes ``start_axis`` .. ``end_axis`` into one: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_axis: int = 1, end_axis: int = -1):
        super().__init__()
        self.start_axis = validate.integer("Flatten", "start_axis", start_axis, minimum=None,
                                           maximum=None)
        self.end_axis = validate.integer("Flatten", "end_axis", end_axis, minimum=None,
                                         maximum=None)

    def forward(self, x):
        x = self.as_input(x)
        n = x.ndim
        in_range = all(-n <= axis < n for axis in (self.start_axis, self.end_axis))
        if not in_range or self.start_axis % n > self.end_axis % n:
            raise self.input_error(f"axes {self.start_axis} .. {self.end_axis} to exist", x)
        return F.flatten(x, self.start_axis, self.end_axis)

    def extra_repr(self):
        return f"start_axis={self.start_axis}, end_axis={self.end_axis}"


class Dropout(Module):
    """Inverted dropout: while training, zero each element with probability ``p`` and scale
    the rest by 1 / (1 - p), so that evaluation (which passes x through) needs no rescaling.
    Random numbers come from ``rng`` (a NumPy Generator; default: the op's own)."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        self.p, _, self.rng = dropout_arguments("Dropout", p, True, rng)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}"
