"""Classic architectures, built from cnnlite's own layers, and a registry by name.

>>> from cnnlite import models
>>> "resnet50" in models.list_models()
True
>>> model = models.get_model("lenet5", num_classes=10)
>>> models.input_size("lenet5")      # the (height, width) the architecture was designed for
(32, 32)
>>> models.reference("resnet50").params
25557032

One module per family, each ending with its ``MODELS`` table (``registry.ModelEntry``), and:

reference   the published figures (parameters, multiply-adds, accuracy) with their sources
counts      cnnlite's own counts beside them (``cnnlite models --compare``)
lecture     the lecture slides' figures recounted (``cnnlite models --lecture``)
compare     the layer-by-layer comparison of a model with a reference (e.g. a PyTorch model)
blocks      blocks several families share (conv-BN-activation, squeeze-and-excitation,
            channel shuffle, stochastic depth)

A model built by ``get_model`` or a constructor names itself and the input size it expects
when an input does not fit (``blocks.InputSizeErrors``), instead of failing with the message of
whichever pooling or linear layer deep inside first noticed.

Every constructor is also an attribute: ``models.resnet50()``. As in torchvision, that name
wins over a family module of the same name (``alexnet``, ``googlenet``, ``nin``,
``xception``): import from those modules as ``from cnnlite.models.alexnet import AlexNet``.
"""
from __future__ import annotations

import difflib
import functools

from cnnlite import nn

from cnnlite.models import (alexnet, densenet, efficientnet, googlenet, inception, inception_v4,
                            lenet, mobilenet, mobilenet_v3, nin, preact_resnet, regnet, resnet,
                            resnet_cifar, senet, shufflenet, squeezenet, vgg, wide_resnet,
                            xception)
from cnnlite.models.blocks import InputSizeErrors
from cnnlite.models.compare import Comparison, compare, torch_reference
from cnnlite.models.lenet import LeNet5, lenet5
from cnnlite.models.reference import REFERENCES, Reference, reference
from cnnlite.models.registry import ModelEntry

__all__ = ["list_models", "get_model", "input_size", "entry", "reference", "Reference",
           "UnknownModelError", "compare", "torch_reference", "Comparison",
           "ModelEntry", "LeNet5", "lenet5"]

_FAMILIES = (lenet, alexnet, nin, vgg, googlenet, inception, inception_v4, xception,
             resnet, senet, resnet_cifar, preact_resnet, wide_resnet, densenet, squeezenet,
             shufflenet, mobilenet, mobilenet_v3, efficientnet, regnet)

_REGISTRY: dict[str, ModelEntry] = {name: model_entry for family in _FAMILIES
                                    for name, model_entry in family.MODELS.items()}


def _first_conv_channels(model, default: int) -> int:
    """The input channels of the model's first convolution (``in_channels=1`` models)."""
    return next((module.in_channels for module in model.modules()
                 if isinstance(module, nn.Conv2d)), default)


def _with_input_size_errors(name: str, model_entry: ModelEntry):
    """``model_entry.constructor``, whose models name themselves and their input size when an
    input does not fit (see ``blocks.InputSizeErrors``)."""
    constructor = model_entry.constructor

    @functools.wraps(constructor)
    def build(*args, **kwargs):
        model = constructor(*args, **kwargs)
        model.forward = InputSizeErrors(model, name,
                                        _first_conv_channels(model, model_entry.in_channels),
                                        model_entry.input_size, model_entry.small_input)
        return model

    return build


_CONSTRUCTORS = {name: _with_input_size_errors(name, model_entry)
                 for name, model_entry in _REGISTRY.items()}

# Every constructor under its own name too: ``models.resnet50()`` is ``get_model("resnet50")``.
globals().update(_CONSTRUCTORS)
__all__ += list(_REGISTRY)


class UnknownModelError(KeyError):
    """A model name the registry does not know; the message lists the closest names."""

    def __str__(self):  # KeyError would show the message in quotes, as a key
        return str(self.args[0])


def unknown_name_error(name, known, listed_by="cnnlite.models.list_models()"):
    """The UnknownModelError for a name that is not in ``known``, with the closest names."""
    close = difflib.get_close_matches(str(name), list(known), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownModelError(f"unknown model {name!r}{hint} (the {len(known)} known: "
                             f"{listed_by})")


def list_models() -> list[str]:
    """The names ``get_model`` knows, sorted."""
    return sorted(_REGISTRY)


def entry(name: str) -> ModelEntry:
    """The registry entry of ``name``: constructor, input size, small test input."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name_error(name, _REGISTRY) from None


def get_model(name: str, **kwargs):
    """Build the model called ``name``; ``kwargs`` go to its constructor (``num_classes``...).

    An input the model cannot take (too small for its pooling, or not the one size its fully
    connected layers fit) raises an ``OpError`` naming the model and the input it expects.
    """
    entry(name)  # an unknown name fails here, with the close names
    return _CONSTRUCTORS[name](**kwargs)


def input_size(name: str) -> tuple[int, int]:
    """The input ``(height, width)`` that model ``name`` expects."""
    return entry(name).input_size
