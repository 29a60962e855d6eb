"""Step through a backward pass one Function at a time, in Jupyter or in a terminal.

``Stepper(loss)`` wraps ``cnnlite.autograd.iter_backward``: each ``stepper.next()`` runs one
Function's backward and returns its ``BackwardStep``, which Jupyter shows as a card::

    stepper = cl.viz.Stepper(loss)
    stepper.next()      # card "step 1 of 5: Sum": inputs, outputs, dL/d outputs, dL/d inputs
    stepper.next()      # card "step 2 of 5: ..."
    stepper.run()       # the remaining steps; the leaves' .grad are now set
    stepper             # the table of every step

No widgets and no JavaScript: a card is plain HTML with inline CSS, so it survives in a saved
notebook, on GitHub and in nbconvert's output. The same module renders a step as text
(``str(step)``) for a terminal. Every piece of text passes through ``html.escape``.
"""
from __future__ import annotations

import html

import numpy as np

from cnnlite import autograd, backend

#: Arrays with at most this many elements are shown value by value; larger ones as a heat strip.
SMALL_ARRAY = 12
#: The number of cells of a heat strip (each the mean of a run of consecutive elements).
HEAT_STRIP_CELLS = 48

_CARD_STYLE = ("font-family: sans-serif; font-size: 13px; border: 1px solid #c8c8c8; "
               "border-radius: 6px; padding: 8px 12px; margin: 4px 0; display: inline-block")
_CELL_STYLE = "padding: 2px 8px; text-align: left; border-bottom: 1px solid #eee"
_SECTION_STYLE = "padding: 6px 8px 2px; text-align: left; font-weight: bold; background: #f4f4f4"
_COLUMNS = ("", "shape", "dtype", "min", "mean", "max", "norm", "values", "")


class Stepper:
    """The backward pass of ``root``, one Function per ``next()``, without widgets.

    Parameters
    ----------
    root : Tensor
        The tensor to differentiate (usually the loss).
    grad : array, Tensor or None
        The upstream gradient, as for ``root.backward(grad)``.
    retain_graph : bool
        Keep the saved arrays so that the graph can be walked again.

    Walking to the end leaves exactly what ``root.backward(grad, retain_graph)`` leaves: the
    leaves' ``.grad``, the hooks run, the ``retain_grad`` tensors filled. The leaves' gradients
    are stored together with the last step (they are complete only then). A root without any
    Function behind it (a leaf) has nothing to step through: its gradient is set at once.
    """

    def __init__(self, root, grad=None, retain_graph: bool = False):
        #: The number of steps the walk takes (Functions reachable from ``root``).
        self.total = autograd.count_functions(root)
        #: The ``BackwardStep`` of every step taken so far.
        self.steps = []
        self._walk = autograd.iter_backward(root, grad, retain_graph)
        self._finished = False
        if self.total == 0:
            self._finish()

    @property
    def done(self) -> bool:
        """True when no step is left (and the leaves' gradients are stored)."""
        return self._finished

    def __len__(self) -> int:
        return self.total

    def next(self) -> autograd.BackwardStep:
        """Run the next Function's backward and return its step (Jupyter shows its card)."""
        if not self._finished:
            try:
                step = next(self._walk)
            except StopIteration:
                self._finished = True
            else:
                self.steps.append(step)
                if step.index == step.total:
                    self._finish()
                return step
        raise StopIteration(f"Stepper: the backward pass is over, no step is left "
                            f"({len(self.steps)} of {self.total} taken)")

    def _finish(self):
        """Let the walk run past its last step: that stores the leaves' gradients."""
        next(self._walk, None)
        self._finished = True

    def __iter__(self):
        return self

    def __next__(self) -> autograd.BackwardStep:
        return self.next()

    def run(self) -> list:
        """Take every remaining step; returns them (the leaves' ``.grad`` are then set)."""
        return list(self)

    def __repr__(self):
        where = "done" if self.done else f"next: step {len(self.steps) + 1}"
        return f"<Stepper: {len(self.steps)} of {self.total} steps taken, {where}>"

    def history_html(self) -> str:
        """A table of the steps taken so far: op, gradient shapes and norms, destinations."""
        status = ("done: the leaves' .grad are set" if self.done
                  else f"next: step {len(self.steps) + 1} (stepper.next())")
        header = "".join(f'<th style="{_CELL_STYLE}">{html.escape(name)}</th>' for name in
                         ("step", "op", "dL/d outputs", "dL/d inputs", "norms", "to"))
        rows = "".join(_history_row(step) for step in self.steps)
        return (f'<div style="{_CARD_STYLE}"><div style="font-weight: bold">backward pass: '
                f'{len(self.steps)} of {self.total} steps taken; {html.escape(status)}</div>'
                f'<table style="border-collapse: collapse; margin-top: 6px">'
                f"<tr>{header}</tr>{rows}</table></div>")

    def _repr_html_(self) -> str:
        return self.history_html()


def _history_row(step) -> str:
    cells = (str(step.index), step.function.name, _shapes(step.grad_outputs),
             _shapes(step.grad_inputs),
             ", ".join("-" if g is None else _number(_statistics(g)[3]) for g in step.grad_inputs),
             "; ".join(destinations(step)))
    return "<tr>" + "".join(f'<td style="{_CELL_STYLE}">{html.escape(c)}</td>'
                            for c in cells) + "</tr>"


# --- what a step is about -------------------------------------------------------------------

def destinations(step) -> tuple:
    """Where each input of the step comes from, which is where its gradient goes, in words."""
    names = _parameter_names(step.function)
    return tuple(_describe_input(x, names) for x in step.inputs)


def _describe_input(x, parameter_names) -> str:
    from cnnlite.nn.parameter import Parameter

    if not x.requires_grad:
        return "constant (needs no gradient)"
    if x.creator is None:
        if id(x) in parameter_names:
            return f"parameter {parameter_names[id(x)]}"
        kind = "parameter" if isinstance(x, Parameter) else "leaf"
        return f"{kind} {x.name!r}" if x.name else kind
    creator = x.creator
    if len(creator.outputs) == 1:
        return f"output of {creator.name}"
    position = next(i for i, ref in enumerate(creator.outputs) if ref() is x)
    return f"output {position} of {creator.name}"


def _parameter_names(function) -> dict:
    """id(Parameter) -> dotted name in the outermost module the op ran in (``fc.weight``)."""
    if not function.scope:
        return {}
    return {id(p): name for name, p in function.scope[0].named_parameters()}


def _scope(function) -> str:
    """``in layer1.0.conv1 (Conv2d)``: the innermost module the op ran in, named from the
    outermost; empty outside modules."""
    if not function.scope:
        return ""
    outermost, innermost = function.scope[0], function.scope[-1]
    name = next((n for n, m in outermost.named_modules() if m is innermost), "")
    return f"in {name} ({type(innermost).__name__})" if name else f"in {type(innermost).__name__}"


def _formula(function) -> str:
    """The first line of the op's own class docstring (often its math), or ''."""
    doc = type(function).__dict__.get("__doc__") or ""
    lines = doc.strip().splitlines()
    return lines[0].strip() if lines else ""


# --- arrays in a few numbers ----------------------------------------------------------------

def _host(a) -> np.ndarray:
    return np.asarray(backend.to_device(a, "cpu"))


def _statistics(a) -> tuple:
    """(min, mean, max, norm) of an array, in float64; NaNs for an empty one."""
    values = _host(a).astype(np.float64).ravel()
    if values.size == 0:
        return (float("nan"),) * 4
    return (float(values.min()), float(values.mean()), float(values.max()),
            float(np.sqrt(np.sum(values * values))))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _values(a) -> str:
    """The values of a small array on one line: ``[[1, 2], [3, 4]]``."""
    text = np.array2string(_host(a), separator=", ", max_line_width=10**9,
                           formatter={"float_kind": _number})
    return " ".join(text.split())


def _shape(a) -> str:
    return str(tuple(a.shape))


def _shapes(arrays) -> str:
    return ", ".join("None" if a is None else _shape(a) for a in arrays)


def _heat_strip(a) -> str:
    """A row of coloured cells, each the mean of a run of elements (in flattened order):
    red positive, blue negative, white zero, grey not finite; scaled to the largest |mean|."""
    values = _host(a).astype(np.float64).ravel()
    means = np.array([chunk.mean() for chunk in
                      np.array_split(values, min(HEAT_STRIP_CELLS, values.size))])
    finite = means[np.isfinite(means)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    cells = []
    for mean in means:
        colour = _colour(mean / scale if scale > 0 else 0.0) if np.isfinite(mean) else "#999999"
        cells.append(f'<span title="{html.escape(_number(mean))}" style="display: inline-block; '
                     f'width: 4px; height: 12px; background: {colour}"></span>')
    return "".join(cells)


def _colour(t: float) -> str:
    """t in [-1, 1] -> a colour from blue (-1) through white (0) to red (+1)."""
    fade = int(round(255 * (1 - abs(t))))
    red, green, blue = (255, fade, fade) if t >= 0 else (fade, fade, 255)
    return f"#{red:02x}{green:02x}{blue:02x}"


# --- a step as HTML and as text ---------------------------------------------------------------

def _rows(step):
    """(section, [(label, array or None, note)]) for the four parts of a card."""
    where = destinations(step)
    inputs = [(f"input {i}", x.data, f"from {w}")
              for i, (x, w) in enumerate(zip(step.inputs, where))]
    outputs = [(f"output {i}", y, "" if y is not None else "garbage collected")
               for i, y in enumerate(step.outputs)]
    incoming = [(f"dL/d output {i}", g, "") for i, g in enumerate(step.grad_outputs)]
    outgoing = [(f"dL/d input {i}", g, f"to {w}" if g is not None else "no gradient")
                for i, (g, w) in enumerate(zip(step.grad_inputs, where))]
    return [("forward: inputs and outputs", inputs + outputs),
            ("incoming gradient: dL/d outputs", incoming),
            ("outgoing gradients: dL/d inputs", outgoing)]


def _title(step) -> str:
    return f"step {step.index} of {step.total}: {step.function.name}"


def step_card(step) -> str:
    """The HTML card of one ``BackwardStep`` (its ``_repr_html_``)."""
    parts = [f'<div style="{_CARD_STYLE}">',
             f'<div style="font-weight: bold; font-size: 14px">{html.escape(_title(step))}</div>']
    for line, style in ((_formula(step.function), "color: #444; font-style: italic"),
                        (_scope(step.function), "color: #777")):
        if line:
            parts.append(f'<div style="{style}">{html.escape(line)}</div>')
    header = "".join(f'<th style="{_CELL_STYLE}">{html.escape(c)}</th>' for c in _COLUMNS)
    parts.append(f'<table style="border-collapse: collapse; margin-top: 6px"><tr>{header}</tr>')
    for section, rows in _rows(step):
        parts.append(f'<tr><th colspan="{len(_COLUMNS)}" style="{_SECTION_STYLE}">'
                     f"{html.escape(section)}</th></tr>")
        parts.extend(_html_row(label, array, note) for label, array, note in rows)
    parts.append("</table></div>")
    return "".join(parts)


def _html_row(label, array, note) -> str:
    if array is None:
        cells = [html.escape(label)] + [""] * 7 + [html.escape(note)]
    else:
        shown = (f"<code>{html.escape(_values(array))}</code>" if array.size <= SMALL_ARRAY
                 else _heat_strip(array))
        cells = ([html.escape(label), html.escape(_shape(array)), html.escape(str(array.dtype))]
                 + [html.escape(_number(v)) for v in _statistics(array)]
                 + [shown, html.escape(note)])
    return "<tr>" + "".join(f'<td style="{_CELL_STYLE}">{c}</td>' for c in cells) + "</tr>"


def step_text(step) -> str:
    """A few lines describing one ``BackwardStep`` for a terminal (its ``str``)."""
    formula = _formula(step.function)
    lines = [_title(step) + (f"  ({formula})" if formula else "")]
    scope = _scope(step.function)
    if scope:
        lines.append(f"  {scope}")
    for _, rows in _rows(step):
        for label, array, note in rows:
            lines.append(f"  {label:<14} {_text_summary(array)}" + (f"  {note}" if note else ""))
    return "\n".join(lines)


def _text_summary(array) -> str:
    if array is None:
        return "-"
    head = f"{_shape(array)} {array.dtype}"
    if array.size <= SMALL_ARRAY:
        return f"{head} {_values(array)}"
    low, mean, high, norm = (_number(v) for v in _statistics(array))
    return f"{head} min {low} mean {mean} max {high} norm {norm}"
