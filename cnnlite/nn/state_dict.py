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
    """``load_state_dict`` found missing, unexpected, mis-shaped or unusable entries (nothing
    was loaded)."""


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
            lines.append("missing keys: " + ", ".join(map(str, self.missing_keys)))
        if self.unexpected_keys:
            lines.append("unexpected keys: " + ", ".join(map(str, self.unexpected_keys)))
        if self.mismatched_keys:
            lines.append("shape mismatches: " + ", ".join(
                f"{key} (model {model}, given {given})"
                for key, model, given in self.mismatched_keys))
        return "\n".join(lines) or "all keys matched"


def _to_numpy(value, key, owner):
    """A state-dict value as a NumPy array: Tensors, arrays and PyTorch's CPU tensors alike."""
    if isinstance(value, Tensor):
        return value.numpy()
    if backend.is_cupy_array(value):
        return value.get()
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise StateDictError(f"{owner}.load_state_dict: nothing was loaded: the value of "
                             f"{key!r} is not an array ({type(value).__name__}: "
                             f"{error})") from None


def _unusable(key: str, target: Tensor, value: np.ndarray) -> str | None:
    """Why ``value`` cannot be copied into ``target`` whatever its shape, or None.

    Only real numbers load: a complex array would lose its imaginary part, an array of
    strings or objects is no weight at all. Into an integer tensor (a counter such as
    ``num_batches_tracked``) only whole numbers load: the cast would cut off a fraction and
    turn NaN into garbage."""
    if value.dtype.kind not in "biuf":
        return f"{key} has dtype {value.dtype}"
    if target.dtype.kind in "biu" and value.dtype.kind == "f" and not (
            np.isfinite(value).all() and (value == np.round(value)).all()):
        return f"{key} holds fractions or non-finite values, the model's tensor is {target.dtype}"
    return None


def load_into(entries: Mapping[str, Tensor], state_dict, strict: bool, owner: str) -> LoadReport:
    """Copy ``state_dict`` into the tensors ``entries`` (dotted name -> Tensor) in place.

    Everything is checked, and every value converted, before the first tensor is written: the
    model is either loaded or left exactly as it was. Values of the wrong kind (complex,
    strings, objects, floats for an integer buffer) raise ``StateDictError`` in both modes.
    Strict: so does any missing, unexpected or mis-shaped key. Not strict: the entries whose
    name and shape match are copied. Values are cast to each tensor's dtype and moved to its
    device. Returns the ``LoadReport``.
    """
    if not isinstance(state_dict, Mapping) and not hasattr(state_dict, "files"):
        raise TypeError(f"{owner}.load_state_dict: expected a dict of name -> array (or an npz "
                        f"file), got {type(state_dict).__name__}")
    given = OrderedDict((key, _to_numpy(state_dict[key], key, owner)) for key in state_dict)
    missing = [key for key in entries if key not in given]
    unexpected = [key for key in given if key not in entries]
    mismatched = [(key, tuple(entries[key].shape), tuple(given[key].shape))
                  for key in entries if key in given
                  and tuple(entries[key].shape) != tuple(given[key].shape)]
    report = LoadReport(missing, unexpected, mismatched)
    unusable = [reason for key in entries if key in given
                for reason in [_unusable(key, entries[key], given[key])] if reason]
    if unusable:
        raise StateDictError(f"{owner}.load_state_dict: nothing was loaded: only real numbers "
                             f"load into a model; {', '.join(unusable)}")
    if strict and not report.ok:
        raise StateDictError(f"{owner}.load_state_dict: nothing was loaded because the state "
                             f"dict does not fit the model:\n{report}")
    skipped = {key for key, _, _ in mismatched}
    converted = {key: backend.to_device(given[key].astype(target.dtype, copy=False),
                                        target.device)
                 for key, target in entries.items() if key in given and key not in skipped}
    with no_grad():
        for key, value in converted.items():
            entries[key].copy_(value)
    return report
