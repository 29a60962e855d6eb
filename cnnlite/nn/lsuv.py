"""LSUV, layer-sequential unit-variance initialisation (Mishkin and Matas, "All you need is a
good init", 2016).

Instead of deriving a weight scale from a formula that assumes a particular non-linearity
(Xavier, He), measure it: push a mini-batch through the network and rescale each layer's
weights until its output has variance 1, one layer after another, front to back. By the time
layer ``l`` is measured, every layer before it already delivers unit variance, so rescaling
``l`` alone fixes its output. The steps, as in the authors' reference script:

1. every conv/linear weight gets an orthonormal matrix (``init.svd_orthonormal``), every bias 0;
2. for each such layer in the order the forward pass reaches it: forward a batch, take the
   variance of the layer's output (over N, C, H, W together; the conv/linear output itself,
   before the non-linearity), and divide the weights by sqrt(variance), until
   |variance - 1| < tol or ``max_iter`` rescalings. Biases are never rescaled.

The reference script used tol 0.02, at most 20 rescalings, the training-phase network and a
fresh training batch for every forward pass (``REFERENCE_SCRIPT`` plus ``fresh_batches``); later
ports use tol 0.1, 10 rescalings and one fixed batch in evaluation mode, the defaults here. Like
the reference script, a measurement runs the forward pass only as far as the measured layer.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from cnnlite import backend, validate
from cnnlite.autograd import no_grad
from cnnlite.nn import init
from cnnlite.nn.conv import Conv2d, Linear
from cnnlite.nn.module import Module
from cnnlite.tensor import Tensor, tensor

__all__ = ["lsuv_init", "LSUVLayer", "LSUVReport", "REFERENCE_SCRIPT"]

#: The settings of the authors' reference script; add ``fresh_batches=`` (a training loader).
REFERENCE_SCRIPT = {"tol": 0.02, "max_iter": 20, "train_mode": True}


@dataclass
class LSUVLayer:
    """One line of the report: the output variance after the orthonormal init (``before``),
    after rescaling (``after``), and the number of rescalings."""

    name: str
    var_before: float
    var_after: float
    iterations: int


class LSUVReport(list):
    """The list of ``LSUVLayer`` results, in network order; prints as a table."""

    def __str__(self):
        width = max([len("layer")] + [len(layer.name) for layer in self])
        lines = [f"{'layer':<{width}}  {'var before':>12}  {'var after':>12}  {'iterations':>10}"]
        lines += [f"{layer.name:<{width}}  {layer.var_before:>12.6g}  {layer.var_after:>12.6g}  "
                  f"{layer.iterations:>10d}" for layer in self]
        return "\n".join(lines)

    __repr__ = __str__


class _StopForward(Exception):
    """Raised by the measuring hook: the layers after the measured one need not run."""


def _batch_source(batch, fresh_batches) -> Callable[[], Tensor]:
    """A function giving the input of each forward pass: the fixed batch, or the next fresh one
    (``fresh_batches`` is a function or an iterable; an ``(images, labels)`` pair gives its
    images)."""
    if (batch is None) == (fresh_batches is None):
        raise ValueError("lsuv_init: give either a fixed batch or fresh_batches, not both "
                         "and not neither")
    if fresh_batches is None:
        draw = itertools.repeat(batch).__next__
    elif callable(fresh_batches):
        draw = fresh_batches
    else:
        draw = iter(fresh_batches).__next__

    def next_input():
        x = draw()
        if isinstance(x, (tuple, list)):
            x = x[0]
        return x if isinstance(x, Tensor) else tensor(x)
    return next_input


def _forward_order(model: Module, layers: dict, next_input) -> list[str]:
    """Names of ``layers`` in the order one forward pass calls them (first call counts)."""
    order = []

    def remember(name):
        def hook(module, inputs, output):
            if name not in order:
                order.append(name)
        return hook

    handles = [layer.register_forward_hook(remember(name)) for name, layer in layers.items()]
    try:
        model(next_input())
    finally:
        for handle in handles:
            handle.remove()
    return order


def _output_variance(model: Module, name: str, layer: Module, next_input) -> float:
    """Forward one batch as far as ``layer`` and return the variance of its output."""
    measured = []

    def measure(module, inputs, output):
        data = output.data
        measured.append(float(backend.array_module(data).var(data, dtype=np.float64)))
        raise _StopForward

    handle = layer.register_forward_hook(measure)
    try:
        model(next_input())
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not measured:
        raise RuntimeError(f"lsuv_init: layer {name!r} was not reached by the forward pass")
    variance = measured[0]
    if not math.isfinite(variance) or variance == 0:
        raise RuntimeError(f"lsuv_init: the output of layer {name!r} has variance {variance}; "
                           f"it cannot be rescaled to 1 (dead or exploding input?)")
    return variance


def lsuv_init(model: Module, batch=None, tol: float = 0.1, max_iter: int = 10,
              fresh_batches: Callable | Iterable | None = None, target_var: float = 1.0,
              orthonormal: bool = True, train_mode: bool = False,
              layer_types: tuple = (Conv2d, Linear), rng=None) -> LSUVReport:
    """Initialise ``model`` in place with LSUV; returns the per-layer ``LSUVReport``.

    Parameters
    ----------
    model : Module
    batch : Tensor or array, optional
        The mini-batch pushed through the network for every measurement.
    tol : float
        Stop rescaling a layer once |variance - target_var| < tol.
    max_iter : int
        At most this many rescalings per layer.
    fresh_batches : callable or iterable, optional
        Instead of ``batch``: a new batch for every forward pass (a function returning one,
        or an iterable such as a data loader; ``(images, labels)`` pairs are fine).
    target_var : float
        The output variance to reach (1 in the paper).
    orthonormal : bool
        Start from orthonormal weights and zero biases (step 1); ``False`` keeps the current
        weights and only rescales them.
    train_mode : bool
        Measure in training mode (dropout active, BN on batch statistics) as the reference
        script did; by default evaluation mode. The model's modes are restored afterwards.
    layer_types : tuple of Module classes
        The layers to initialise; layers the forward pass never reaches are only
        orthonormalised.
    rng : numpy Generator, optional
        For the orthonormal matrices.

    ``lsuv_init(model, fresh_batches=loader, **REFERENCE_SCRIPT)`` behaves like the reference
    script.
    """
    tol = validate.real("lsuv_init", "tol", tol, above=0.0)
    max_iter = validate.integer("lsuv_init", "max_iter", max_iter, minimum=0)
    target_var = validate.real("lsuv_init", "target_var", target_var, above=0.0)
    orthonormal = validate.boolean("lsuv_init", "orthonormal", orthonormal)
    train_mode = validate.boolean("lsuv_init", "train_mode", train_mode)
    next_input = _batch_source(batch, fresh_batches)
    layers = {name: module for name, module in model.named_modules()
              if isinstance(module, layer_types)}
    if not layers:
        raise ValueError(f"lsuv_init: {type(model).__name__} has no layer of the types "
                         f"{[t.__name__ for t in layer_types]}")
    modes = [(module, module.training) for module in model.modules()]
    model.train(train_mode)
    report = LSUVReport()
    try:
        with no_grad():
            if orthonormal:
                for layer in layers.values():
                    init.orthogonal_(layer.weight, rng=rng)
                    if getattr(layer, "bias", None) is not None:
                        init.zeros_(layer.bias)
            for name in _forward_order(model, layers, next_input):
                layer = layers[name]
                variance = before = _output_variance(model, name, layer, next_input)
                iterations = 0
                while abs(variance - target_var) >= tol and iterations < max_iter:
                    layer.weight.div_(math.sqrt(variance / target_var))
                    variance = _output_variance(model, name, layer, next_input)
                    iterations += 1
                report.append(LSUVLayer(name, before, variance, iterations))
    finally:
        for module, training in modes:
            object.__setattr__(module, "training", training)
    return report
