"""Normalisation layers: batch normalisation and local response normalisation."""
from __future__ import annotations

import numpy as np

from cnnlite import functional as F, validate
from cnnlite.autograd import no_grad
from cnnlite.functional.norm import batch_norm_arguments, lrn_arguments
from cnnlite.nn.module import Module
from cnnlite.nn.parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LocalResponseNorm"]


class _BatchNorm(Module):
    """Batch normalisation (Ioffe and Szegedy), per channel (axis 1)::

        y = weight * (x - mean) / sqrt(var + eps) + bias

    In training, mean and var are the batch's (biased) statistics and the running averages
    are updated: ``running = (1 - momentum) * running + momentum * batch`` (the running
    variance takes the unbiased batch variance), or, with ``momentum=None``, the plain average
    of all batches so far. In evaluation the running averages are used. As in PyTorch.

    Parameters
    ----------
    num_features : int
        C.
    eps, momentum : float (momentum may be None)
    affine : bool
        Learn ``weight`` (gamma, starts at 1) and ``bias`` (beta, starts at 0).
    bias : bool
        With ``affine``: ``False`` learns only the scale (no beta).
    track_running_stats : bool
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked`` buffers; without them
        the batch statistics are used in evaluation too.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, bias: bool = True):
        super().__init__()
        where = type(self).__name__
        num_features = validate.integer(where, "num_features", num_features, minimum=1)
        # momentum=None (the plain average of all batches) is checked as 1: the weight that the
        # first batch gets.
        checked_momentum, eps = batch_norm_arguments(where, 1.0 if momentum is None
                                                     else momentum, eps)
        self.num_features, self.eps = num_features, eps
        self.momentum = None if momentum is None else checked_momentum
        self.affine = validate.boolean(where, "affine", affine)
        self.track_running_stats = validate.boolean(where, "track_running_stats",
                                                    track_running_stats)
        bias = validate.boolean(where, "bias", bias)
        self.register_parameter("weight", Parameter(np.ones(num_features, dtype=np.float32))
                                if affine else None)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype=np.float32))
                                if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        if self.track_running_stats:
            with no_grad():
                self.running_mean.fill_(0)
                self.running_var.fill_(1)
                self.num_batches_tracked.fill_(0)

    def check(self, x):
        """Raise an OpError naming the layer if ``x`` has the wrong shape (per subclass)."""
        raise NotImplementedError(f"{type(self).__name__} must implement check(x)")

    def forward(self, x):
        self.check(x)
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:
                # Weight 1/n for the n-th batch makes the running value the mean of all batches.
                momentum = 1.0 / int(self.num_batches_tracked.item())
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=momentum, eps=self.eps)

    def describe(self):
        return f"{type(self).__name__}({self.num_features})"

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of vectors (N, C) or sequences (N, C, L); see ``_BatchNorm``."""

    def check(self, x):
        x = self.as_input(x)
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise self.input_error(f"(N, {self.num_features}) or (N, {self.num_features}, L)", x)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of feature maps (N, C, H, W): statistics over N, H and W per
    channel; see ``_BatchNorm``."""

    def check(self, x):
        x = self.as_input(x)
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise self.input_error(f"(N, {self.num_features}, H, W)", x)


class LocalResponseNorm(Module):
    """Local response normalisation across channels (AlexNet)::

        y[c] = x[c] * (k + alpha / size * sum_{j near c} x[j]^2)^(-beta)

    alpha is divided by ``size`` as in Caffe and PyTorch; ``alpha_over_size=False`` gives the
    AlexNet paper's (and TensorFlow's) convention. CaffeNet: size 5, alpha 1e-4, beta 0.75, k 1.
    x: (N, C, H, W)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 alpha_over_size: bool = True):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.alpha_over_size = lrn_arguments(
            "LocalResponseNorm", size, alpha, beta, k, alpha_over_size)

    def forward(self, x):
        x = self.as_input(x)
        if x.ndim < 3:
            raise self.input_error("(N, C, H, W)", x)
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k,
                                     self.alpha_over_size)

    def extra_repr(self):
        text = f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        return text + ("" if self.alpha_over_size else ", alpha_over_size=False")
