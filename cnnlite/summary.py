"""``summary(model, input_shape)``: a model's layers in a table, as the lectures count them.

For every layer: its output shape, its parameters, its multiply-adds (MACs), the values its
output holds (activation memory) and the receptive field and jump of its output. A summary
runs the model once on a batch of one, in evaluation mode and without gradients, but it does
not compute the convolutions: a tracer (``cnnlite.autograd.tracing``) sees every op, hands the
convolutions an output of zeros of the right shape, and counts as the ops go by. A
152-layer ResNet is summarised in a fraction of a second.

Multiply-adds. A convolution computes, for each of its N*O*OH*OW outputs, a dot product of
length C/groups * kh * kw; a fully connected layer (and a matrix product) one of length
``in`` per output::

    conv2d:  MACs = N * O * OH * OW * (C / groups) * kh * kw
    linear:  MACs = N * out * in

Bias additions, batch norm, activations and pooling are not counted (they are cheap next to
these, and the published tables leave them out too). "FLOPs" on many slides means these MACs.

Receptive field and jump. The receptive field r of a unit is the side of the input patch it
sees; the jump j is the distance in input pixels between neighbouring units of its map. An
input pixel has r = 1, j = 1; a window of size k (dilated: d (k - 1) + 1) and stride s gives::

    r_out = r_in + (k_eff - 1) * j_in        j_out = j_in * s

Two 3x3 stride-2 convolutions: r = 3, j = 2, then r = 7, j = 4. Where branches meet (a
residual sum, an Inception concat) the larger field is kept. A fully connected layer, a global
average and everything after them see the whole image: shown as ``all``. (A squeeze-and-
excitation gate is such a global average: after the first SE block every unit depends on the
whole image, however small its convolutional field.)
"""
from __future__ import annotations

import html
import weakref
from typing import NamedTuple

import numpy as np

from cnnlite import autograd
from cnnlite.autograd import no_grad
from cnnlite.functional import conv as conv_ops, math as math_ops, pool as pool_ops
from cnnlite.functional.reduction import Reduction
from cnnlite.reference.conv import output_size
from cnnlite.tensor import Tensor

__all__ = ["summary", "Summary", "LayerRow"]

#: The field of a unit that sees the whole input (after a fully connected layer).
WHOLE_INPUT = "all"


class LayerRow(NamedTuple):
    """One layer call in a summary (a layer called twice has two rows)."""

    name: str            # dotted name in the model, as in its state dict
    type: str            # the layer's class
    output_shape: tuple  # batch included
    params: int          # parameters the layer owns (counted at its first call only)
    macs: int            # multiply-adds of its convolutions and products
    activations: int     # values its output holds
    receptive_field: tuple | str   # (rows, columns), or "all"
    jump: tuple | str              # (rows, columns), or "all"


class Summary:
    """The table ``summary`` returns: ``rows`` (LayerRow) and the totals.

    output_shape       the shape of the model's output (its first, if it returns several)
    total_params       every parameter of the model (shared ones once)
    trainable_params   those with ``requires_grad``
    total_macs         multiply-adds of the whole forward pass
    total_activations  values held by all layer outputs together (batch included)

    ``str(summary)`` (or ``print``) gives a text table, Jupyter shows an HTML table.
    """

    def __init__(self, model_name, input_shape, output_shape, rows, total_params,
                 trainable_params, itemsize):
        self.model_name, self.input_shape, self.rows = model_name, tuple(input_shape), rows
        self.output_shape = tuple(output_shape)
        self.total_params, self.trainable_params = total_params, trainable_params
        self.total_macs = sum(row.macs for row in rows)
        self.total_activations = sum(row.activations for row in rows)
        self.itemsize = itemsize

    def __getitem__(self, name: str) -> LayerRow:
        """The (first) row of the layer called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"summary of {self.model_name}: no layer named {name!r}")

    def activations_of(self, *types: str, include_input: bool = True) -> int:
        """Values held by the outputs of the layers of the given class names (and the input):
        how the lecture counts a network's activation memory (VGG-16: convolutions, poolings
        and fully connected layers; the ReLUs are taken to run in place)."""
        values = sum(row.activations for row in self.rows if row.type in types)
        return values + (int(np.prod(self.input_shape)) if include_input else 0)

    def _cells(self):
        header = ("layer", "type", "output shape", "params", "MACs", "activations", "r", "j")
        body = [(row.name or "(model)", row.type, _shape_text(row.output_shape),
                 f"{row.params:,}", f"{row.macs:,}", f"{row.activations:,}",
                 _field_text(row.receptive_field), _field_text(row.jump))
                for row in self.rows]
        return header, body

    def _totals(self):
        megabytes = self.total_activations * self.itemsize / 2**20
        return [f"input {_shape_text(self.input_shape)}, output "
                f"{_shape_text(self.output_shape)}",
                f"total params       {self.total_params:,} "
                f"({self.trainable_params:,} trainable)",
                f"total MACs         {self.total_macs:,} ({_engineering(self.total_macs)})",
                f"total activations  {self.total_activations:,} values "
                f"({megabytes:,.1f} MiB at {self.itemsize} bytes each)"]

    def __str__(self):
        header, body = self._cells()
        widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
        numeric = {3, 4, 5, 6, 7}

        def line(cells):
            return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(header))
        return "\n".join([f"{self.model_name}", rule, line(header), rule]
                         + [line(cells) for cells in body] + [rule] + self._totals())

    def _repr_html_(self):
        header, body = self._cells()
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
                       + "</tr>" for cells in body)
        totals = "<br>".join(html.escape(text) for text in self._totals())
        return (f"<b>{html.escape(self.model_name)}</b><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{rows}</tbody></table><p>{totals}</p>")

    def __repr__(self):
        return (f"Summary({self.model_name}: {len(self.rows)} layers, "
                f"{self.total_params:,} params, {self.total_macs:,} MACs)")


def _engineering(number: int) -> str:
    """1,814,073,344 -> '1.81 G'; 416,520 -> '416.5 k'."""
    for size, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= size:
            return f"{number / size:.3g} {prefix}"
    return str(number)


def _shape_text(shape):
    return "x".join(str(n) for n in shape)


def _field_text(pair):
    if pair == WHOLE_INPUT:
        return pair
    rows, columns = pair
    return str(rows) if rows == columns else f"{rows}x{columns}"


# --- what each op costs and sees -----------------------------------------------------------------

def _macs(function, inputs, outputs) -> int:
    """Multiply-adds of one op (see the module docstring); 0 for the cheap ones."""
    if isinstance(function, conv_ops.Conv2d):
        w = inputs[1].shape
        return outputs[0].size * w[1] * w[2] * w[3]
    if isinstance(function, (conv_ops.Linear, math_ops.MatMul)):
        return outputs[0].size * inputs[0].shape[-1]
    return 0


def _window(function, inputs):
    """((kh, kw) effective kernel, (sh, sw) stride) of a sliding-window op on its first input,
    WHOLE_INPUT for the ops that mix every position, or None for position-wise ops."""
    x_shape = inputs[0].shape
    if isinstance(function, conv_ops.Conv2d):
        kernel = inputs[1].shape[2:]
        return (tuple(d * (k - 1) + 1 for d, k in zip(function.dilation, kernel)),
                function.stride)
    if hasattr(function, "args") and len(x_shape) == 4:  # max, average, stochastic pooling
        window = pool_ops.pool_window(function.name, x_shape, *function.args)
        return window.kernel_size, window.stride
    if hasattr(function, "bins"):  # adaptive pooling: the widest bin, the step between bins
        return (tuple(max(stop - start for start, stop in bins) for bins in function.bins),
                tuple(bins[1][0] - bins[0][0] if len(bins) > 1 else 1
                      for bins in function.bins))
    if isinstance(function, pool_ops.GlobalAvgPool2d):
        return tuple(x_shape[2:]), tuple(x_shape[2:])
    if isinstance(function, (conv_ops.Linear, math_ops.MatMul, Reduction)):
        return WHOLE_INPUT
    return None


class _Tracer:
    """Follows one forward pass: placeholder outputs for the convolutions, MACs for the layer
    that is running, a receptive field and jump for every tensor."""

    def __init__(self):
        self._fields = {}  # id(Tensor) -> (weak reference, (field, jump) or WHOLE_INPUT)
        self.running = []                          # the stack of layers being called
        self.macs = {}                             # id(layer) -> MACs of its own ops

    def field(self, t):
        """The (field, jump) of tensor ``t``, WHOLE_INPUT, or None for weights and constants.
        (Kept by id with a weak reference: a Tensor's ``==`` is element-wise, so Tensors
        cannot be dictionary keys that compare.)"""
        ref, field = self._fields.get(id(t), (None, None))
        return field if ref is not None and ref() is t else None

    def set_field(self, t, field):
        self._fields[id(t)] = (weakref.ref(t), field)

    def forward(self, function, xs):
        if not isinstance(function, conv_ops.Conv2d):
            return function.forward(*xs)
        x, w = xs[0], xs[1]
        function.check(x, w, xs[2] if len(xs) == 3 else None)
        out = [output_size(n, k, s, p, d) for n, k, s, p, d in zip(
            x.shape[2:], w.shape[2:], function.stride, function.padding, function.dilation)]
        return np.zeros((x.shape[0], w.shape[0], *out), dtype=np.result_type(x, w))

    def record(self, function, inputs, outputs):
        if self.running:
            layer = id(self.running[-1])
            self.macs[layer] = self.macs.get(layer, 0) + _macs(function, inputs, outputs)
        seen = [field for field in map(self.field, inputs) if field is not None]
        if not seen:
            return  # an op on weights or constants only
        window = _window(function, inputs)
        if WHOLE_INPUT in seen or window == WHOLE_INPUT:
            field = WHOLE_INPUT
        else:
            (size, jump) = max(seen, key=lambda field: sum(field[0]))
            if window is not None:
                kernel, stride = window
                size = tuple(r + (k - 1) * j for r, k, j in zip(size, kernel, jump))
                jump = tuple(j * s for j, s in zip(jump, stride))
            field = (size, jump)
        for t in outputs:
            self.set_field(t, field)


def summary(model, input_shape, dtype=np.float32) -> Summary:
    """A per-layer table of ``model`` for one input of ``input_shape``.

    Parameters
    ----------
    model : nn.Module
    input_shape : (C, H, W), or (N, C, H, W) for a batch of N (the MACs and activations
        then count the whole batch)
    dtype : the input's dtype (float32; its size gives the activation memory in bytes)

    Returns
    -------
    Summary, with ``rows``, ``total_params``, ``total_macs`` and ``total_activations``.

    Rows are the layers that hold no other layers (Conv2d, BatchNorm2d, ReLU, ...), in the
    order they run, plus any other module that runs a convolution or product of its own.
    The model is put back in training mode afterwards if it was in it.
    """
    shape = tuple(int(n) for n in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"summary: expected input_shape (C, H, W) or (N, C, H, W) of positive "
                         f"sizes, got {tuple(input_shape)}")
    names = {id(module): name for name, module in model.named_modules()}
    tracer, rows, counted = _Tracer(), [], set()

    def enter(module, inputs):
        tracer.running.append(module)

    def leave(module, inputs, output):
        tracer.running.pop()
        macs = tracer.macs.pop(id(module), 0)
        own = list(module.parameters(recurse=False))
        if next(iter(module.children()), None) is not None and not macs:
            return  # a container: its layers have rows of their own
        params = 0 if id(module) in counted else sum(p.size for p in own)
        counted.add(id(module))
        # A layer with several outputs (GoogLeNet's logits and auxiliary logits) is shown by
        # its first.
        first = output[0] if isinstance(output, (tuple, list)) else output
        field = tracer.field(first) or WHOLE_INPUT
        rows.append(LayerRow(
            name=names.get(id(module), "?"), type=type(module).__name__,
            output_shape=tuple(first.shape), params=params, macs=macs,
            activations=int(first.size),
            receptive_field=field if field == WHOLE_INPUT else field[0],
            jump=field if field == WHOLE_INPUT else field[1]))

    handles = [hook for module in model.modules()
               for hook in (module.register_forward_pre_hook(enter),
                            module.register_forward_hook(leave))]
    was_training = model.training
    model.eval()
    try:
        x = Tensor(np.zeros(shape, dtype=dtype))
        tracer.set_field(x, ((1, 1), (1, 1)))
        with no_grad(), autograd.tracing(tracer):
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    parameters = {id(p): p for p in model.parameters()}.values()
    first = output[0] if isinstance(output, (tuple, list)) else output
    return Summary(type(model).__name__, shape, tuple(first.shape), rows,
                   total_params=sum(p.size for p in parameters),
                   trainable_params=sum(p.size for p in parameters if p.requires_grad),
                   itemsize=np.dtype(dtype).itemsize)
