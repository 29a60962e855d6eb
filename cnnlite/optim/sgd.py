"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay."""
from __future__ import annotations

from cnnlite import backend
from cnnlite.errors import OpError
from cnnlite.optim.optimizer import Optimizer, check_hyper_parameters, required, update_in_place
from cnnlite.validate import boolean

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD, with the update written as in PyTorch (so results match it step for step)::

        g = grad + weight_decay * p                  (L2 penalty folded into the gradient)
        b = g                                        at the first step
        b = momentum * b + (1 - dampening) * g       afterwards
        g = g + momentum * b  (Nesterov)   or   g = b
        p = p - lr * g

    The learning rate multiplies the velocity (not the gradient inside it as in Sutskever et
    al.); both agree while lr is constant. The step is the kernel ``sgd_momentum_update``
    (cnnlite.reference.optim for the loop): one pass over the parameter, in place.

    Parameters
    ----------
    params : iterable of Parameters or parameter groups
    lr : float
        Learning rate (required), finite and >= 0.
    momentum, weight_decay : float
        Finite and >= 0.
    dampening : float
        In [0, 1].
    nesterov : bool
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    """

    def __init__(self, params, lr: float = required, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def check_group(self, group):
        check_hyper_parameters("SGD", group, lr=dict(minimum=0.0), momentum=dict(minimum=0.0),
                               dampening=dict(minimum=0.0, maximum=1.0),
                               weight_decay=dict(minimum=0.0))
        group["nesterov"] = boolean("SGD", "nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise OpError(f"SGD: Nesterov momentum needs momentum > 0 and dampening 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def update(self, param, grad, state, group):
        momentum = group["momentum"]
        first_step = momentum != 0 and "momentum_buffer" not in state
        if first_step:  # the kernel starts the buffer as the first gradient
            state["momentum_buffer"] = backend.array_module(grad).empty(param.shape, param.dtype)

        def sgd_step(array):
            # Without momentum the kernel keeps no buffer and never touches the one it is
            # given, so the parameter's own array stands in for it.
            buffer = state.get("momentum_buffer", array)
            backend.kernel("sgd_momentum_update", array)(
                array, grad, buffer, group["lr"], momentum, group["dampening"],
                group["weight_decay"], group["nesterov"], first_step)

        update_in_place(param, sgd_step)
