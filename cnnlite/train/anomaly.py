"""Finding where a training run went non-finite (NaN or inf).

A NaN loss says only *that* something overflowed. ``AnomalyDetector`` says *where*: it puts a
forward hook on every module of the model, and the first module (in execution order) whose
output holds a NaN or an inf during a step is remembered. When the loss of that step turns out
non-finite, ``fit`` raises ``AnomalyError`` naming the step and that module. Hooks fire as each
module finishes, so an inner layer is seen before the block that contains it, and the name is
the most precise one available. The detector also checks every parameter's gradient after the
backward pass, because an inf gradient with a finite loss poisons the weights one step later.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.tensor import Tensor

__all__ = ["AnomalyError", "AnomalyDetector", "check_finite_loss", "non_finite_summary"]


class AnomalyError(FloatingPointError):
    """Training produced a non-finite loss (or gradient).

    Attributes
    ----------
    step : int
        The 1-based global step (mini-batch) at which it happened.
    layer : str or None
        The dotted name of the first module whose output became non-finite in that step
        (``None`` when anomaly detection was off, or no module output was non-finite).
    """

    def __init__(self, message: str, step: int, layer: str | None = None):
        super().__init__(message)
        self.step, self.layer = step, layer


def non_finite_summary(array) -> str | None:
    """``"3 nan, 1 inf of 64 values"``, or ``None`` when every value is finite."""
    xp = backend.array_module(array)
    if array.dtype.kind not in "fc" or bool(xp.isfinite(array).all()):
        return None
    nans, infs = int(xp.isnan(array).sum()), int(xp.isinf(array).sum())
    return f"{nans} nan, {infs} inf of {array.size} values"


def _output_tensors(output):
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for t in output if isinstance(t, Tensor)]
    return []


class AnomalyDetector:
    """Forward hooks that remember the first module output with a NaN or inf in each step.

    Use as a context manager (the hooks are removed on exit)::

        with AnomalyDetector(model) as detector:
            detector.start_step()
            loss = loss_fn(model(x), y)
            detector.first_non_finite     # None, or "conv2 (Conv2d): 5 nan, 0 inf of 800 values"
    """

    def __init__(self, model, model_name: str = "model"):
        self.model, self.model_name = model, model_name
        self.first_layer = None
        self.first_non_finite = None
        self._handles = []

    def __enter__(self) -> "AnomalyDetector":
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(self._hook(name or
                                                                         self.model_name)))
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name):
        def check_output(module, inputs, output):
            if self.first_layer is not None:
                return None
            for tensor in _output_tensors(output):
                summary = non_finite_summary(tensor.data)
                if summary is not None:
                    self.first_layer = name
                    self.first_non_finite = f"'{name}' ({type(module).__name__}): {summary}"
                    break
            return None
        return check_output

    def start_step(self) -> None:
        """Forget the previous step's findings."""
        self.first_layer = self.first_non_finite = None

    def check_gradients(self, step: int) -> None:
        """Raise ``AnomalyError`` naming the first parameter whose gradient is not finite."""
        for name, param in self.model.named_parameters():
            if param.grad is None:
                continue
            summary = non_finite_summary(param.grad)
            if summary is not None:
                raise AnomalyError(f"step {step}: the gradient of parameter '{name}' is not "
                                   f"finite ({summary}) although the loss is; the backward pass "
                                   f"overflowed", step=step, layer=name.rpartition(".")[0])


def check_finite_loss(loss_value: float, step: int, where: str, detector=None) -> None:
    """Raise ``AnomalyError`` when the loss is NaN or inf, naming the step (and, with a
    detector, the first module whose output went non-finite)."""
    if np.isfinite(loss_value):
        return
    message = f"step {step} ({where}): the loss is {loss_value}"
    layer = None
    if detector is None:
        message += ("; run with detect_anomaly=True (cnnlite train --detect-anomaly) to find "
                    "the first layer whose output became non-finite")
    elif detector.first_layer is not None:
        layer = detector.first_layer
        message += (f"; the first non-finite output in this step came from "
                    f"{detector.first_non_finite}")
    else:
        message += "; every layer's output was finite, so the loss function itself overflowed"
    raise AnomalyError(message, step=step, layer=layer)
