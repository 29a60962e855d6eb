"""Loading a state dict into a model: check everything first, then copy.

A state dict maps dotted names (``features.0.weight``) to arrays. Before a single value is
copied, the names and shapes are compared with the model's, so that a mistake (a wrong model, a
wrong number of classes) leaves the model exactly as it was and the error lists every problem
at once instead of the first.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, NamedTuple

import numpy as np

from cnnlite import backend
from cnnlite.autograd import no_grad
from cnnlite.tensor import Tensor

__all__ = ["StateDictError", "LoadReport", "load_into"]


class StateDictError(RuntimeError):
    """``load_state_dict`` found missing, unexpected or mis-shaped entries (nothing was loaded)."""


class LoadReport(NamedTuple):
    """What ``load_state_dict`` found: keys the model has that the dict lacks, keys the dict has
    that the model lacks, and ``(key, model shape, dict shape)`` for every shape that differs."""

    missing_keys: list
    unexpected_keys: list
    mismatched_keys: list

    @property
    def ok(self) -> bool:
        return not (self.missing_keys or self.unexpected_keys or self.mismatched_keys)

    def __str__(self):
        lines = []
        if self.missing_keys:
            lines.append("missing keys: " + ", ".join(self.missing_keys))
        if self.unexpected_keys:
            lines.append("unexpected keys: " + ", ".join(self.unexpected_keys))
        if self.mismatched_keys:
            lines.append("shape mismatches: " + ", ".join(
                f"{key} (model {model}, given {given})"
                for key, model, given in self.mismatched_keys))
        return "\n".join(lines) or "all keys matched"


def _to_numpy(value, key):
    """A state-dict value as a NumPy array: Tensors, arrays and PyTorch's CPU tensors alike."""
    if isinstance(value, Tensor):
        return value.numpy()
    if backend.is_cupy_array(value):
        return value.get()
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"load_state_dict: value of {key!r} is not an array "
                        f"({type(value).__name__}: {error})") from None


def load_into(entries: Mapping[str, Tensor], state_dict, strict: bool, owner: str) -> LoadReport:
    """Copy ``state_dict`` into the tensors ``entries`` (dotted name -> Tensor) in place.

    Strict: raise ``StateDictError`` on any missing, unexpected or mis-shaped key, before
    changing anything. Not strict: copy the entries whose name and shape match. Values are cast
    to each tensor's dtype and moved to its device. Returns the ``LoadReport``.
    """
    given = OrderedDict((key, _to_numpy(value, key)) for key, value in state_dict.items())
    missing = [key for key in entries if key not in given]
    unexpected = [key for key in given if key not in entries]
    mismatched = [(key, tuple(entries[key].shape), tuple(given[key].shape))
                  for key in entries if key in given
                  and tuple(entries[key].shape) != tuple(given[key].shape)]
    report = LoadReport(missing, unexpected, mismatched)
    if strict and not report.ok:
        raise StateDictError(f"{owner}.load_state_dict: nothing was loaded because the state "
                             f"dict does not fit the model:\n{report}")
    skipped = {key for key, _, _ in mismatched}
    with no_grad():
        for key, target in entries.items():
            if key in given and key not in skipped:
                target.copy_(backend.to_device(given[key].astype(target.dtype), target.device))
    return report
