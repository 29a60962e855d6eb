"""``History``: what ``fit`` measured, one row per epoch."""
from __future__ import annotations

import math

import numpy as np

from cnnlite.viz.plots import plot_history

__all__ = ["History"]


class History:
    """Per-epoch results of a training run.

    Every field is a list with one entry per finished epoch (``nan`` where nothing was
    measured, e.g. the validation columns when there is no validation loader):

    ``epoch`` (1-based), ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
    ``val_top5``, ``lr`` (the learning rate at the start of the epoch) and ``seconds``
    (training and validation).
    Accuracies are fractions in [0, 1].

    >>> history.val_acc[-1]          # after fit(...)
    0.978
    >>> history.plot("curves.png")   # loss and accuracy curves
    """

    FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "lr",
              "seconds")

    def __init__(self):
        for field in self.FIELDS:
            setattr(self, field, [])

    def __len__(self) -> int:
        return len(self.epoch)

    def append(self, **row) -> None:
        """Add one epoch's results; fields not given are recorded as ``nan``."""
        unknown = set(row) - set(self.FIELDS)
        if unknown:
            raise KeyError(f"History.append: unknown fields {sorted(unknown)}; "
                           f"known: {', '.join(self.FIELDS)}")
        for field in self.FIELDS:
            value = row.get(field, math.nan)
            getattr(self, field).append(int(value) if field == "epoch" else float(value))

    def row(self, index: int = -1) -> dict:
        """One epoch's results as a dict (the last epoch by default)."""
        return {field: getattr(self, field)[index] for field in self.FIELDS}

    def state_dict(self) -> dict:
        """The columns as NumPy arrays (for checkpoints)."""
        return {field: np.asarray(getattr(self, field),
                                  dtype=np.int64 if field == "epoch" else np.float64)
                for field in self.FIELDS}

    def load_state_dict(self, state: dict) -> None:
        missing = [field for field in self.FIELDS if field not in state]
        if missing:
            raise KeyError(f"History.load_state_dict: missing columns {missing}")
        for field in self.FIELDS:
            setattr(self, field, [v.item() for v in np.asarray(state[field]).reshape(-1)])

    def plot(self, path=None):
        """Draw the loss and accuracy curves; write a PNG to ``path`` when given.

        Returns the matplotlib ``Figure`` (a notebook shows it when it is the cell's value).
        """
        return plot_history(self, path)

    def __repr__(self) -> str:
        if not self:
            return "History(no epochs)"
        last = self.row()
        return (f"History({len(self)} epochs; last: train loss {last['train_loss']:.4f}, "
                f"val loss {last['val_loss']:.4f}, val acc {100 * last['val_acc']:.1f}%)")
