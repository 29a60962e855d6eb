"""Optimisers with a per-element step size: AdaGrad, RMSProp and Adam.

All three divide the gradient by the square root of an accumulated squared gradient, so
elements with large gradients take smaller steps. They differ in how they accumulate it:
AdaGrad sums forever (steps only shrink), RMSProp and Adam keep an exponential moving
average. The formulas are PyTorch's, so the results match it step for step.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.errors import ArgumentTypeError
from cnnlite.optim.optimizer import Optimizer, check_hyper_parameters, update_in_place
from cnnlite.validate import boolean, probability

__all__ = ["Adagrad", "AdaGrad", "RMSprop", "RMSProp", "Adam"]


class Adagrad(Optimizer):
    """AdaGrad (Duchi et al., 2011)::

        t = t + 1
        g = grad + weight_decay * p
        s = s + g^2                                  (s starts at initial_accumulator_value)
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def check_group(self, group):
        non_negative = dict(minimum=0.0)
        check_hyper_parameters("Adagrad", group, lr=non_negative, lr_decay=non_negative,
                               weight_decay=non_negative, eps=non_negative,
                               initial_accumulator_value=non_negative)

    def update(self, param, grad, state, group):
        xp = backend.array_module(grad)
        if "sum" not in state:
            state["step"] = 0
            state["sum"] = xp.full_like(param.data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.data
        decayed_lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        param.sub_(decayed_lr * grad / (xp.sqrt(state["sum"]) + group["eps"]))


class RMSprop(Optimizer):
    """RMSProp (Hinton's lecture 6e), optionally centred and with momentum::

        g = grad + weight_decay * p
        v = alpha * v + (1 - alpha) * g^2
        d = sqrt(v) + eps                 or, centred:  m = alpha * m + (1 - alpha) * g,
                                                        d = sqrt(v - m^2) + eps
        p = p - lr * g / d                or, with momentum:  b = momentum * b + g / d,
                                                              p = p - lr * b
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def check_group(self, group):
        non_negative = dict(minimum=0.0)
        # alpha above 1 would make (1 - alpha) * g^2 negative, and the square root NaN.
        check_hyper_parameters("RMSprop", group, lr=non_negative,
                               alpha=dict(minimum=0.0, maximum=1.0), eps=non_negative,
                               weight_decay=non_negative, momentum=non_negative)
        group["centered"] = boolean("RMSprop", "centered", group["centered"])

    def update(self, param, grad, state, group):
        xp = backend.array_module(grad)
        if "square_avg" not in state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(param.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(param.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param.data)
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.data
        alpha = group["alpha"]
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg *= alpha
            grad_avg += (1 - alpha) * grad
            denominator = xp.sqrt(square_avg - grad_avg * grad_avg) + group["eps"]
        else:
            denominator = xp.sqrt(square_avg) + group["eps"]
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]
            buffer *= group["momentum"]
            buffer += grad / denominator
            param.sub_(group["lr"] * buffer)
        else:
            param.sub_(group["lr"] * grad / denominator)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015), weight decay as an L2 term in the gradient::

        t = t + 1
        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g              (first moment)
        v = beta2 * v + (1 - beta2) * g^2            (second moment)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The ``1 - beta^t`` factors undo the bias of m and v towards their zero start. The step is
    the kernel ``adam_update`` (cnnlite.reference.optim for the loop): one pass over the
    parameter and both moments, in place.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check_group(self, group):
        non_negative = dict(minimum=0.0)
        check_hyper_parameters("Adam", group, lr=non_negative, eps=non_negative,
                               weight_decay=non_negative)
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ArgumentTypeError(f"Adam: betas must be two numbers in [0, 1), got "
                                    f"{type(betas).__name__} {betas!r}")
        group["betas"] = tuple(probability("Adam", f"betas[{i}]", beta, allow_one=False)
                               for i, beta in enumerate(betas))

    def update(self, param, grad, state, group):
        if "exp_avg" not in state:
            xp = backend.array_module(grad)
            state["step"] = 0
            state["exp_avg"] = xp.zeros(param.shape, param.dtype)
            state["exp_avg_sq"] = xp.zeros(param.shape, param.dtype)
        state["step"] += 1
        beta1, beta2 = group["betas"]

        def adam_step(array):
            backend.kernel("adam_update", array)(
                array, grad, state["exp_avg"], state["exp_avg_sq"], state["step"], group["lr"],
                beta1, beta2, group["eps"], group["weight_decay"])

        update_in_place(param, adam_step)


AdaGrad = Adagrad
RMSProp = RMSprop
