"""Loss layers: ``loss_fn(prediction, target)`` wrapping ``cnnlite.functional.loss``.

``reduction`` is ``"mean"`` (the default), ``"sum"`` or ``"none"`` (one loss per sample).
"""
from __future__ import annotations

from cnnlite import functional as F, validate
from cnnlite.functional.loss import check_reduction
from cnnlite.nn.module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss"]


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_reduction(type(self).__name__, reduction)

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of scores (N, K) (or (N, K, d1, ...)) and class indices (N,)
    (or (N, d1, ...)); ``label_smoothing`` mixes the one-hot target with the uniform one."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.label_smoothing = validate.probability("CrossEntropyLoss", "label_smoothing",
                                                    label_smoothing)

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing,
                               reduction=self.reduction)

    def extra_repr(self):
        parts = [super().extra_repr()]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(p for p in parts if p)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, K) and class indices (N,): put it after
    ``LogSoftmax`` (together they are ``CrossEntropyLoss``)."""

    def forward(self, log_probs, target):
        return F.nll_loss(log_probs, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error of two tensors of one shape."""

    def forward(self, prediction, target):
        return F.mse_loss(prediction, target, reduction=self.reduction)
