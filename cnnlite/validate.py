"""Checks of user arguments, in one place: sizes, strides, paddings, axes, probabilities, rates
and switches.

Every functional op, layer, optimiser, the data loader and the command line check their
arguments with these helpers, so that ``F.max_pool2d`` and ``nn.MaxPool2d`` refuse the same
things with the same words. Each helper takes ``where`` (the op or layer asking, as the user
would name it: ``"max_pool2d"``, ``"Conv2d(3->8)"``, ``"SGD"``) and the argument's name, and
raises ``OpError`` (a ``ValueError``) for a value out of range and ``ArgumentTypeError``
(both a ``TypeError`` and an ``OpError``) for one of the wrong kind, with both names in the
message.

The rules, and why:

* an integer argument is an exact integer: a Python or NumPy int, never a ``bool`` (``True`` is
  an int to Python, but a kernel size of ``True`` is a mistake) and never a float (``1.5`` is
  not rounded to 1);
* sizes are bounded by ``MAX_SIZE``: a stride of ``2**63`` overflows the index arithmetic of
  the kernels, and no array has an axis that long;
* a switch is a real ``bool`` (``ceil_mode="no"`` is truthy and would mean yes);
* a rate or probability is a finite real number in its range (``lr=nan`` would turn every
  parameter into NaN at the first step).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from cnnlite.errors import ArgumentTypeError, OpError

#: The largest size, stride, padding or dilation accepted: far beyond any array, small enough
#: that products of a few of them stay inside 64-bit index arithmetic.
MAX_SIZE = 2**31 - 1


def _describe(value) -> str:
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 60 else text


def is_integer(value) -> bool:
    """A Python or NumPy integer that is not a bool."""
    return (isinstance(value, (numbers.Integral, np.integer))
            and not isinstance(value, (bool, np.bool_)))


def integer(where: str, name: str, value, minimum: int | None = None,
            maximum: int | None = MAX_SIZE) -> int:
    """``value`` as a Python int, checked to be an exact integer in [minimum, maximum]."""
    if not is_integer(value):
        raise ArgumentTypeError(f"{where}: {name} must be an int, got {type(value).__name__} "
                        f"{_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise OpError(f"{where}: {name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise OpError(f"{where}: {name} must be <= {maximum}, got {value}")
    return value


def pair(where: str, name: str, value, minimum: int | None = None,
         maximum: int | None = MAX_SIZE) -> tuple[int, int]:
    """An int or a pair (tuple or list) of ints as a pair of Python ints (rows, columns)."""
    if is_integer(value):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ArgumentTypeError(f"{where}: {name} must be an int or a pair of ints, got "
                        f"{type(value).__name__} {_describe(value)}")
    return (integer(where, f"{name}[0]", value[0], minimum, maximum),
            integer(where, f"{name}[1]", value[1], minimum, maximum))


def boolean(where: str, name: str, value) -> bool:
    """A real ``bool`` (or NumPy bool), returned as a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{where}: {name} must be True or False, got {type(value).__name__} "
                        f"{_describe(value)}")
    return bool(value)


def real(where: str, name: str, value, minimum: float | None = None,
         maximum: float | None = None, above: float | None = None,
         below: float | None = None) -> float:
    """A finite real number (not a bool) as a Python float, checked against its bounds:
    ``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive."""
    if not isinstance(value, (numbers.Real, np.integer, np.floating)) or isinstance(
            value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{where}: {name} must be a real number, got {type(value).__name__} "
                        f"{_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise OpError(f"{where}: {name} must be finite, got {value}")
    for bound, fails, words in ((minimum, lambda b: value < b, ">="),
                                (maximum, lambda b: value > b, "<="),
                                (above, lambda b: value <= b, ">"),
                                (below, lambda b: value >= b, "<")):
        if bound is not None and fails(bound):
            raise OpError(f"{where}: {name} must be {words} {bound}, got {value}")
    return value


def probability(where: str, name: str, value, allow_one: bool = True) -> float:
    """A probability in [0, 1] (or [0, 1) when ``allow_one`` is False)."""
    if allow_one:
        return real(where, name, value, minimum=0.0, maximum=1.0)
    return real(where, name, value, minimum=0.0, below=1.0)


def axis(where: str, value, ndim: int, name: str = "axis") -> int:
    """An axis of an ``ndim``-dimensional array, negative counting from the end, as a
    non-negative int."""
    value = integer(where, name, value, maximum=None)
    if not -ndim <= value < ndim:
        raise OpError(f"{where}: {name} {value} is out of range for an array of {ndim} "
                      f"dimension{'s' if ndim != 1 else ''} (valid: {-ndim} to {ndim - 1})")
    return value % ndim


def axes(where: str, value, ndim: int, name: str = "axis") -> tuple[int, ...] | None:
    """``None`` (every axis), one axis, or a tuple of distinct axes, as non-negative ints."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        result = tuple(axis(where, a, ndim, name) for a in value)
        if len(set(result)) != len(result):
            raise OpError(f"{where}: repeated {name} in {tuple(value)}")
        return result
    return (axis(where, value, ndim, name),)
