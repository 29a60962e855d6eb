"""Layer-by-layer comparison of a cnnlite model with a reference implementation.

When a model's logits disagree with PyTorch's, the question is *where* the two first part
ways. ``compare`` runs the same input through both, records every named module's output, and
lines them up by name::

    from cnnlite.models.compare import compare, torch_reference
    model.load_state_dict(torch_model.state_dict())
    report = compare(model, torch_reference(torch_model), x)
    print(report)                    # one row per layer, in the order the layers ran
    report.first_divergence          # the earliest layer whose output is off, or None

A layer's output counts as equal when ``max |cnnlite - reference| <= atol + rtol * max
|reference|``: the error is measured against the size of the layer's output, so a ReLU whose
values are in the thousands and a softmax in [0, 1] are held to the same relative standard.
The first divergence, in execution order, is where to look: the layers after it are wrong
because their input is.
"""
from __future__ import annotations

import html
import sys
from collections import OrderedDict
from typing import Callable, Mapping, NamedTuple

import numpy as np

from cnnlite import backend
from cnnlite.autograd import no_grad
from cnnlite.nn.module import Module
from cnnlite.tensor import Tensor, tensor

__all__ = ["LayerComparison", "Comparison", "compare", "torch_reference"]

ROOT = ""  # the name named_modules() gives the model itself: its output is the final output


class LayerComparison(NamedTuple):
    """One layer's output in the model and in the reference.

    ``max_abs_error`` is ``max |model - reference|``; ``relative_error`` divides it by
    ``max |reference|``. Both are NaN when the shapes differ. ``note`` says when only the
    first of several outputs was compared, or why the shapes differ.
    """

    name: str
    layer_type: str
    shape: tuple
    reference_shape: tuple
    max_abs_error: float
    relative_error: float
    ok: bool
    note: str = ""


class Comparison:
    """The result of ``compare``: per-layer errors, the first divergence, the final output.

    Attributes
    ----------
    layers : list of LayerComparison
        Every layer found on both sides, in the order the model ran them.
    output : LayerComparison
        The final outputs (the logits).
    only_in_model, only_in_reference : list of str
        Names with an output on one side only (a different structure, or a ``names`` mapping
        to add).
    rtol, atol : float
        The tolerances the layers were judged with.
    """

    def __init__(self, layers, output, only_in_model, only_in_reference, rtol, atol):
        self.layers = layers
        self.output = output
        self.only_in_model = only_in_model
        self.only_in_reference = only_in_reference
        self.rtol, self.atol = rtol, atol

    @property
    def first_divergence(self) -> LayerComparison | None:
        """The first layer, in execution order, whose output is off (None if all agree)."""
        return next((layer for layer in self.layers if not layer.ok), None)

    @property
    def ok(self) -> bool:
        """Every compared layer and the final output agree."""
        return self.output.ok and self.first_divergence is None

    def _rows(self):
        first = self.first_divergence
        for layer in [*self.layers, self.output]:
            marks = [layer.note] if layer.note else []
            if layer is first:
                marks.insert(0, "first divergence")
            yield (layer.name or "(output)", layer.layer_type, _shape_text(layer),
                   f"{layer.max_abs_error:.3g}", f"{layer.relative_error:.3g}",
                   "ok" if layer.ok else "DIFFERS", "; ".join(marks))

    _HEADER = ("layer", "type", "shape", "max abs err", "rel err", "", "note")

    def _summary(self) -> str:
        first = self.first_divergence
        verdict = ("all layers agree" if first is None
                   else f"first divergence at {first.name!r} ({first.layer_type})")
        lines = [f"{len(self.layers)} layers compared (rtol={self.rtol:g}, atol={self.atol:g}): "
                 f"{verdict}; final output relative error {self.output.relative_error:.3g}"]
        if self.only_in_model:
            lines.append(f"no reference output for: {', '.join(self.only_in_model)}")
        if self.only_in_reference:
            lines.append(f"only in the reference: {', '.join(self.only_in_reference)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        rows = [self._HEADER, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEADER))]
        table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in rows]
        return "\n".join([*table, self._summary()])

    def __repr__(self) -> str:
        return f"<Comparison: {self._summary().splitlines()[0]}>"

    def _repr_html_(self) -> str:
        header = "".join(f"<th>{html.escape(cell)}</th>" for cell in self._HEADER)
        rows = []
        for cells in self._rows():
            style = "" if cells[5] == "ok" else ' style="background:#fdd"'
            rows.append(f"<tr{style}>" + "".join(f"<td>{html.escape(cell)}</td>"
                                                 for cell in cells) + "</tr>")
        summary = html.escape(self._summary()).replace("\n", "<br>")
        return (f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody>"
                f"</table><p>{summary}</p>")


def _shape_text(layer: LayerComparison) -> str:
    if layer.shape == layer.reference_shape:
        return str(layer.shape)
    return f"{layer.shape} vs reference {layer.reference_shape}"


def _comparable(value) -> tuple[np.ndarray | None, str]:
    """The array to compare for one recorded output, and a note on what was taken.

    A module that returns several values (a tuple, a namedtuple such as an auxiliary-logits
    output) is compared on its first. Values that hold no array at all are skipped.
    """
    note = ""
    if isinstance(value, (tuple, list)):
        if not value:
            return None, "empty output skipped"
        note = f"first of {len(value)} outputs"
        value = value[0]
    if isinstance(value, Tensor):
        value = value.numpy()
    elif backend.is_cupy_array(value):
        value = value.get()
    if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "biuf":
        return None, f"{type(value).__name__} output skipped"
    return np.asarray(value), note


def _judge(name, layer_type, model_value, reference_value, rtol, atol) -> LayerComparison:
    mine, my_note = _comparable(model_value)
    theirs, their_note = _comparable(reference_value)
    note = my_note or their_note
    if mine is None or theirs is None:
        return LayerComparison(name, layer_type, (), (), float("nan"), float("nan"), True, note)
    if mine.shape != theirs.shape:
        return LayerComparison(name, layer_type, mine.shape, theirs.shape, float("nan"),
                               float("nan"), False, note or "shapes differ")
    if mine.size == 0:
        return LayerComparison(name, layer_type, mine.shape, theirs.shape, 0.0, 0.0, True, note)
    # float64 so that the difference of two large float32 values cannot overflow.
    difference = np.abs(mine.astype(np.float64) - theirs.astype(np.float64))
    max_abs_error = float(difference.max())
    scale = float(np.abs(theirs.astype(np.float64)).max())
    relative_error = max_abs_error / scale if scale > 0 else (0.0 if max_abs_error == 0
                                                              else float("inf"))
    # A NaN anywhere makes max_abs_error NaN, and NaN <= anything is False: not ok.
    ok = max_abs_error <= atol + rtol * scale
    return LayerComparison(name, layer_type, mine.shape, theirs.shape, max_abs_error,
                           relative_error, ok, note)


def _record_outputs(model: Module, x: np.ndarray):
    """Run ``model`` on ``x`` in eval mode; every named module's output (the last one, for a
    module called more than once), in the order the calls finished, and the final output."""
    outputs, handles = OrderedDict(), []
    for name, module in model.named_modules():
        def record(module, inputs, output, name=name):
            outputs.pop(name, None)  # re-inserted at the end: a later call moves it in order
            outputs[name] = output
        handles.append(module.register_forward_hook(record))
    was_training = model.training
    device = next((p.device for p in model.parameters()), "cpu")
    try:
        model.eval()
        with no_grad():
            final = model(tensor(x, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return outputs, final


def _is_torch_module(value) -> bool:
    # Checked through sys.modules: if torch was never imported, value cannot be a torch Module.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def compare(model: Module, reference: Callable[[np.ndarray], Mapping[str, np.ndarray]],
            x: np.ndarray, rtol: float = 1e-4, atol: float = 1e-6,
            names: Mapping[str, str] | None = None) -> Comparison:
    """Run ``x`` through ``model`` and ``reference`` and compare every layer's output.

    Parameters
    ----------
    model : Module
        The cnnlite model. It runs in eval mode (its mode is restored afterwards), so
        Dropout passes through and BatchNorm uses its running statistics.
    reference : callable or torch.nn.Module
        Given ``x``, returns an ordered mapping of layer name -> output array; the entry named
        ``""`` (the root, as ``named_modules()`` names it) is the final output, or else the
        last entry. ``torch_reference(torch_model)`` builds one from a PyTorch model; a
        PyTorch model passed directly is wrapped that way.
    x : numpy.ndarray
        The input batch, e.g. ``(N, C, H, W)``; the same array goes to both.
    rtol, atol : float
        A layer agrees when ``max |model - reference| <= atol + rtol * max |reference|``.
    names : mapping of str to str, optional
        cnnlite name -> reference name, for layers named differently on the two sides;
        unlisted names are looked up unchanged.

    Returns
    -------
    Comparison
        Per-layer errors in execution order, ``first_divergence``, the final output's error;
        ``print`` it for a table (in Jupyter it shows as an HTML table).
    """
    if _is_torch_module(reference):
        reference = torch_reference(reference)
    names = dict(names or {})
    x = np.asarray(x)
    model_outputs, model_final = _record_outputs(model, x)
    reference_outputs = OrderedDict(reference(x))
    if not reference_outputs:
        raise ValueError("compare: the reference returned no outputs")
    reference_final = reference_outputs.get(ROOT, list(reference_outputs.values())[-1])
    layer_types = {name: type(module).__name__ for name, module in model.named_modules()}

    layers, only_in_model, matched = [], [], {ROOT}
    for name, output in model_outputs.items():
        if name == ROOT:
            continue
        reference_name = names.get(name, name)
        if reference_name not in reference_outputs:
            only_in_model.append(name)
            continue
        matched.add(reference_name)
        layers.append(_judge(name, layer_types[name], output,
                             reference_outputs[reference_name], rtol, atol))
    only_in_reference = [name for name in reference_outputs if name not in matched]
    final = _judge(ROOT, type(model).__name__, model_final, reference_final, rtol, atol)
    return Comparison(layers, final, only_in_model, only_in_reference, rtol, atol)


def torch_reference(torch_model) -> Callable[[np.ndarray], "OrderedDict[str, object]"]:
    """A ``reference`` for ``compare`` from a PyTorch module.

    The returned function runs ``torch_model`` in eval mode without gradients (restoring its
    mode afterwards) and returns every named module's output as NumPy arrays, under the names
    of ``torch_model.named_modules()``, in the order the calls finished; the model's own output
    is under ``""``. A module that returns a tuple gives a tuple of arrays.
    """
    import torch

    def as_numpy(value):
        if isinstance(value, torch.Tensor):
            # A copy: an in-place op later in the network (ReLU(inplace=True)) would otherwise
            # overwrite the recorded output of the layer before it.
            return value.detach().cpu().numpy().copy()
        if isinstance(value, (tuple, list)):
            return tuple(as_numpy(item) for item in value)
        return value

    def run(x: np.ndarray) -> "OrderedDict[str, object]":
        outputs, handles = OrderedDict(), []
        for name, module in torch_model.named_modules():
            def record(module, inputs, output, name=name):
                outputs.pop(name, None)
                outputs[name] = as_numpy(output)
            handles.append(module.register_forward_hook(record))
        was_training = torch_model.training
        try:
            torch_model.eval()
            with torch.no_grad():
                torch_model(torch.from_numpy(np.ascontiguousarray(x)))
        finally:
            torch_model.train(was_training)
            for handle in handles:
                handle.remove()
        return outputs

    return run
