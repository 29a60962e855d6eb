"""How signals and gradients flow through a network: per layer, the mean, standard deviation
and variance of its output activations and of the gradient of the loss with respect to them.

Vanishing or exploding signals show up here first: a variance that shrinks (or grows) by a
constant factor from layer to layer is what a bad initialisation looks like, and what LSUV
(``cnnlite.nn.init.lsuv_init``) repairs by rescaling every layer to output variance 1. The
"before and after" of that repair is one call::

    before = layer_statistics(model, batch)
    nn.init.lsuv_init(model, batch)
    after = layer_statistics(model, batch)
    plot_layer_statistics(before, after)

=========================  ======================================================================
``layer_statistics``       measure: forward (and backward) one batch, return ``LayerStatistics``
``LayerStatistics``        the rows, as a text table, an HTML table (Jupyter) and a plot
``plot_layer_statistics``  variance per layer on a log axis, and per-layer histograms
=========================  ======================================================================
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cnnlite import validate
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.viz.plots import as_numpy, new_figure, save_figure

__all__ = ["LayerRow", "LayerStatistics", "layer_statistics", "plot_layer_statistics"]

#: The statistics of a row, in table order: name on the page -> attribute.
COLUMNS = {"act mean": "act_mean", "act std": "act_std", "act var": "act_var",
           "grad mean": "grad_mean", "grad std": "grad_std", "grad var": "grad_var"}

#: plot_layer_statistics draws at most this many histograms per row (evenly spaced layers).
MAX_HISTOGRAMS = 12


@dataclass
class LayerRow:
    """One layer's statistics.

    ``act_*`` describe the layer's output y over all its elements (N, C, H, W together, as
    LSUV measures it): mean, std = sqrt(var), var = mean((y - mean)^2). ``grad_*`` describe
    dL/dy the same way; they are None when no gradient was measured (``backward=False``, or a
    layer whose output does not reach the loss). ``activations`` and ``gradients`` keep the
    raw values (NumPy copies) for histograms.
    """

    name: str
    kind: str
    shape: tuple
    act_mean: float
    act_std: float
    act_var: float
    grad_mean: float | None = None
    grad_std: float | None = None
    grad_var: float | None = None
    activations: np.ndarray = field(default=None, repr=False)
    gradients: np.ndarray | None = field(default=None, repr=False)


def _moments(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, std, var) of all the values, in float64 (float32 sums drift on big layers)."""
    mean = float(values.mean(dtype=np.float64))
    var = float(values.var(dtype=np.float64))
    return mean, math.sqrt(var), var


def _format(value) -> str:
    return "-" if value is None else f"{value:.4g}"


class LayerStatistics(list):
    """The ``LayerRow`` of every measured layer, in forward order.

    ``print(stats)`` shows a text table, Jupyter an HTML table; ``stats.plot(...)`` draws them
    (``plot_layer_statistics``).
    """

    @property
    def has_gradients(self) -> bool:
        return any(row.grad_var is not None for row in self)

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        names = list(COLUMNS) if self.has_gradients else list(COLUMNS)[:3]
        header = ["layer", "kind", "output shape"] + names
        body = [[row.name, row.kind, str(row.shape)] +
                [_format(getattr(row, COLUMNS[name])) for name in names] for row in self]
        return header, body

    def __str__(self):
        header, body = self._cells()
        widths = [max(len(line[k]) for line in [header] + body) for k in range(len(header))]
        lines = ["  ".join(cell.ljust(width) if k < 3 else cell.rjust(width)
                           for k, (cell, width) in enumerate(zip(line, widths)))
                 for line in [header] + body]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        header, body = self._cells()
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in line) +
                       "</tr>" for line in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"

    def plot(self, other: "LayerStatistics | None" = None, labels=("before", "after"),
             histograms: bool = True, path=None):
        """``plot_layer_statistics(self, other, labels, histograms, path)``."""
        return plot_layer_statistics(self, other, labels, histograms, path)


def _chosen_layers(model, layers) -> dict:
    """``{name: module}`` of the layers to measure: every Conv2d and Linear by default, the
    modules of the given classes, or the modules with the given names."""
    from cnnlite.nn.conv import Conv2d, Linear

    modules = dict(model.named_modules())
    if layers is None:
        layers = (Conv2d, Linear)
    if isinstance(layers, type):
        layers = (layers,)
    if isinstance(layers, tuple) and all(isinstance(kind, type) for kind in layers):
        chosen = {name: module for name, module in modules.items()
                  if isinstance(module, layers)}
        if not chosen:
            raise OpError(f"layer_statistics: {type(model).__name__} has no layer of the types "
                          f"{[kind.__name__ for kind in layers]}")
        return chosen
    if isinstance(layers, str):
        layers = [layers]
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise OpError(f"layer_statistics: {type(model).__name__} has no layers {unknown}")
    return {name: modules[name] for name in layers}


class _BufferSnapshot:
    """The model's buffers (batch norm's running statistics) as they were, to put back: a
    forward pass in training mode updates them, and measuring must change nothing."""

    def __init__(self, model):
        self._saved = [(buffer, buffer.data, buffer.data.copy()) for buffer in model.buffers()]

    def restore(self):
        for buffer, array, values in self._saved:
            array[...] = values  # the layer may have updated the array in place ...
            buffer.data = array  # ... or replaced it


def layer_statistics(model, batch, layers=None, backward: bool = True,
                     loss_fn: Callable | None = None) -> LayerStatistics:
    """Measure the activations (and their gradients) of every chosen layer on one batch.

    A forward hook on each layer copies its output y the first time the forward pass calls
    it. With ``backward=True`` the loss (``output.sum()``, or ``loss_fn(output)``) is
    differentiated, and a hook on each captured output copies dL/dy as the backward pass
    computes it.

    The model is measured in its current mode (``model.eval()`` first to measure evaluation
    behaviour) and left as it was: the hooks are removed, every parameter's ``.grad`` is put
    back (the backward pass here never adds to it), and so are the buffers (batch norm's
    running statistics move during a training-mode forward pass).

    Parameters
    ----------
    model : Module
    batch : Tensor or array, (N, ...)
        The input; it is wrapped in a Tensor that requires grad, so that even the outputs of
        frozen layers get a gradient.
    layers : list of str, Module class or tuple of classes, optional
        The layers to measure, by name (``model.named_modules()``) or by class. By default
        every Conv2d and Linear. Rows come in forward order; a named layer that the forward
        pass never calls is an error, an unreached layer chosen by class is left out.
    backward : bool
        Also measure the gradients.
    loss_fn : callable, optional
        ``loss_fn(output) -> one-element Tensor``; by default ``output.sum()`` (every output
        element gets gradient 1, so dL/dy shows what the network alone does to a gradient).

    Returns
    -------
    LayerStatistics
        One ``LayerRow`` per measured layer.
    """
    from cnnlite.autograd import enable_grad, no_grad
    from cnnlite.nn.module import Module
    from cnnlite.tensor import Tensor

    if not isinstance(model, Module):
        raise ArgumentTypeError(f"layer_statistics: expected a Module, got "
                                f"{type(model).__name__}")
    backward = validate.boolean("layer_statistics", "backward", backward)
    if loss_fn is not None and not callable(loss_fn):
        raise ArgumentTypeError(f"layer_statistics: loss_fn must be callable, got "
                                f"{type(loss_fn).__name__}")
    chosen = _chosen_layers(model, layers)
    explicit = not (layers is None or isinstance(layers, (type, tuple)))
    data = batch.data if isinstance(batch, Tensor) else as_numpy("layer_statistics", "batch",
                                                                 batch)
    inputs = Tensor(data, requires_grad=backward and data.dtype.kind == "f")

    outputs, activations, gradients = {}, {}, {}
    tensor_hooks = []

    def capture(name):
        def hook(module, hook_inputs, output):
            if name in outputs:  # a layer called twice (shared weights): the first call counts
                return
            if not isinstance(output, Tensor):
                raise OpError(f"layer_statistics: layer {name!r} returned "
                              f"{type(output).__name__}, not a Tensor")
            outputs[name] = output
            activations[name] = np.array(output.numpy(), copy=True)
            if backward and output.requires_grad:
                tensor_hooks.append(output.register_hook(
                    lambda grad: gradients.__setitem__(name, np.array(
                        as_numpy("layer_statistics", "gradient", grad), copy=True))))
        return hook

    handles = [module.register_forward_hook(capture(name)) for name, module in chosen.items()]
    saved_grads = [(param, param.grad) for param in model.parameters()]
    buffers = _BufferSnapshot(model)
    try:
        for param, _ in saved_grads:
            param.grad = None  # the backward pass below then never touches the saved arrays
        with enable_grad() if backward else no_grad():
            output = model(inputs)
            if backward:
                loss = _loss(output, loss_fn)
                loss.backward()
    finally:
        for handle in handles + tensor_hooks:
            handle.remove()
        for param, grad in saved_grads:
            param.grad = grad
        buffers.restore()

    missed = [name for name in chosen if name not in outputs]
    if explicit and missed:
        raise OpError(f"layer_statistics: the forward pass never called the layers {missed}")
    statistics = LayerStatistics()
    for name in outputs:  # dicts keep insertion order: the order the forward pass ran
        row = LayerRow(name, type(chosen[name]).__name__, tuple(outputs[name].shape),
                       *_moments(activations[name]), activations=activations[name])
        if name in gradients:
            row.grad_mean, row.grad_std, row.grad_var = _moments(gradients[name])
            row.gradients = gradients[name]
        statistics.append(row)
    return statistics


def _loss(output, loss_fn):
    """The one-element Tensor to differentiate: ``loss_fn(output)`` or ``output.sum()``."""
    from cnnlite.tensor import Tensor

    if loss_fn is None:
        if not isinstance(output, Tensor):
            raise OpError(f"layer_statistics: the model returned {type(output).__name__}; "
                          f"pass loss_fn to turn it into one number")
        return output.sum()
    loss = loss_fn(output)
    if not isinstance(loss, Tensor) or loss.size != 1:
        got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise OpError(f"layer_statistics: loss_fn must return a one-element Tensor, got {got}")
    return loss


# --- the plot ---------------------------------------------------------------------------------

def _variances(statistics, attribute: str) -> np.ndarray:
    """One statistic per layer as floats; an unmeasured one (None) as NaN, which is not drawn."""
    return np.array([math.nan if getattr(row, attribute) is None else getattr(row, attribute)
                     for row in statistics], dtype=float)


def _check_statistics(name: str, statistics):
    if not (isinstance(statistics, list) and statistics and
            all(isinstance(row, LayerRow) for row in statistics)):
        raise ArgumentTypeError(f"plot_layer_statistics: {name} must be a non-empty "
                                f"LayerStatistics (from layer_statistics), got "
                                f"{type(statistics).__name__}")


def _histogram_row(figure, place, series, layers: list[int], field_name: str, ylabel: str):
    """One small Axes per layer index in ``layers``: the histogram of each statistics
    object's raw ``field_name`` values, on shared bins so that the two compare."""
    grid = place.subgridspec(1, len(layers))
    for k, index in enumerate(layers):
        axes = figure.add_subplot(grid[0, k])
        values = [(label, getattr(statistics[index], field_name))
                  for label, statistics in series]
        present = [v.ravel() for _, v in values if v is not None and v.size]
        if present:
            low = min(float(v.min()) for v in present)
            high = max(float(v.max()) for v in present)
            bins = np.linspace(low, high, 41) if high > low else 40
            for label, v in values:
                if v is not None and v.size:
                    axes.hist(v.ravel(), bins=bins, density=True, histtype="stepfilled",
                              alpha=0.5, label=label)
        axes.set_title(series[0][1][index].name, fontsize=8)
        axes.tick_params(labelsize=6)
        axes.set_yticks([])
        if k == 0:
            axes.set_ylabel(ylabel, fontsize=8)


def plot_layer_statistics(stats, other=None, labels=("before", "after"),
                          histograms: bool = True, path=None):
    """The variance per layer of the activations (and of their gradients) on a log axis, and
    a row of per-layer histograms of the raw values.

    Parameters
    ----------
    stats : LayerStatistics
    other : LayerStatistics, optional
        A second measurement of the same layers (matched by position), drawn over the first:
        LSUV's "before and after".
    labels : pair of str
        The legend's names of ``stats`` and ``other``.
    histograms : bool
        Add a row of histograms of the activations (and a row of the gradients, when measured)
        for up to ``MAX_HISTOGRAMS`` layers, evenly spaced from first to last.
    path : str or PathLike, optional
        Where to write the figure as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The top row holds the activation-variance Axes (a dashed line marks variance 1, LSUV's
        target) and, when gradients were measured, the gradient-variance Axes.
    """
    _check_statistics("stats", stats)
    if other is not None:
        _check_statistics("other", other)
        if len(other) != len(stats):
            raise OpError(f"plot_layer_statistics: stats has {len(stats)} layers, other "
                          f"{len(other)}; the two are matched layer by layer")
    if (not isinstance(labels, (tuple, list)) or len(labels) != 2 or
            not all(isinstance(label, str) for label in labels)):
        raise ArgumentTypeError(f"plot_layer_statistics: labels must be two strings, got "
                                f"{labels!r}")
    histograms = validate.boolean("plot_layer_statistics", "histograms", histograms)
    # Alone, one measurement needs no name in a legend.
    series = [(labels[0], stats), (labels[1], other)] if other is not None else [(None, stats)]
    with_gradients = any(LayerStatistics(s).has_gradients for _, s in series)

    kinds = [("act_var", "activations")] + ([("grad_var", "gradients")] if with_gradients
                                             else [])
    shown = (sorted(set(np.linspace(0, len(stats) - 1, MAX_HISTOGRAMS).round().astype(int)))
             if len(stats) > MAX_HISTOGRAMS else list(range(len(stats))))
    histogram_rows = len(kinds) if histograms else 0
    figure = new_figure(max(9.0, 1.2 * len(shown)), 4.0 + 1.9 * histogram_rows)
    outer = figure.add_gridspec(1 + histogram_rows, 1,
                                height_ratios=[2.2] + [1.0] * histogram_rows)
    top = outer[0].subgridspec(1, len(kinds))
    positions = np.arange(len(stats))
    for k, (attribute, what) in enumerate(kinds):
        axes = figure.add_subplot(top[0, k])
        for label, statistics in series:
            axes.plot(positions, _variances(statistics, attribute), marker="o",
                      markersize=4, label=label)
        if attribute == "act_var":
            axes.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="variance 1")
        axes.set_yscale("log", nonpositive="mask")  # a variance of 0 has no place on it
        axes.set_xticks(positions, [row.name for row in stats],
                        rotation=90 if len(stats) > 6 else 0, fontsize=7)
        axes.set(title=f"variance of the {what} per layer", xlabel="layer", ylabel="variance")
        axes.grid(alpha=0.3, which="both")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    for row, (attribute, what) in enumerate(kinds[:histogram_rows], start=1):
        _histogram_row(figure, outer[row], series, shown,
                       "activations" if attribute == "act_var" else "gradients", what)
    save_figure(figure, path)
    return figure
