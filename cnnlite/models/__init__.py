"""Classic architectures, built from cnnlite's own layers, and a registry by name.

>>> from cnnlite import models
>>> models.list_models()
['lenet5']
>>> model = models.get_model("lenet5", num_classes=10)
>>> models.input_size("lenet5")      # the (height, width) the architecture was designed for
(32, 32)
"""
from __future__ import annotations

from cnnlite.models.lenet import LeNet5, lenet5

__all__ = ["list_models", "get_model", "input_size", "LeNet5", "lenet5"]

# name -> (constructor, input (height, width) the architecture is built for)
_REGISTRY = {
    "lenet5": (lenet5, (32, 32)),
}


def list_models() -> list[str]:
    """The names ``get_model`` knows, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: "
                       f"{', '.join(list_models())}") from None


def get_model(name: str, **kwargs):
    """Build the model called ``name``; ``kwargs`` go to its constructor (``num_classes``...)."""
    constructor, _ = _entry(name)
    return constructor(**kwargs)


def input_size(name: str) -> tuple[int, int]:
    """The input ``(height, width)`` that model ``name`` expects."""
    return _entry(name)[1]
