"""Launchers of kernels/optim.cu: one optimiser step for one parameter array, in place.

The formulas are PyTorch's (as in ``cnnlite.optim``). Each update is a single pass over the
parameter, its gradient and the optimiser's state; the arrays that are updated in place must
be contiguous arrays of one float type, since the kernel writes straight into their memory,
and the gradient must have the parameter's shape, since the kernel reads it element for element
(``cnnlite.reference.contracts`` checks both).
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.cuda.memory import reports_out_of_memory
from cnnlite.cuda.module import float_dtype, int64s, kernel_function, launch
from cnnlite.reference import contracts


@reports_out_of_memory
def sgd_momentum_update(param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                        weight_decay=0.0, nesterov=False, first_step=False):
    """SGD step in place (``first_step``: the buffer starts as the gradient)::

        g = grad + weight_decay * param
        b = g (first step) or momentum * b + (1 - dampening) * g
        param -= lr * (g + momentum * b if nesterov else b)     (lr * g when momentum = 0)
    """
    dtype = float_dtype("sgd_momentum_update", param)
    contracts.sgd_momentum_update(param, grad, momentum_buffer, lr, momentum, dampening,
                                  weight_decay, nesterov, first_step)
    grad = backend.array_module(param).ascontiguousarray(grad, dtype=dtype)
    real = dtype.type
    launch(kernel_function("optim", "sgd_momentum_update", dtype, param), param.size,
           (param, grad, momentum_buffer, *int64s(param.size), real(lr), real(momentum),
            real(dampening), real(weight_decay), *int64s(bool(nesterov), bool(first_step))))


@reports_out_of_memory
def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0):
    """Adam step ``step`` (1 for the first) in place::

        g = grad + weight_decay * param
        exp_avg = beta1 * exp_avg + (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g^2
        param -= lr / (1 - beta1^step) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2^step) + eps)
    """
    dtype = float_dtype("adam_update", param)
    contracts.adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                          weight_decay)
    grad = backend.array_module(param).ascontiguousarray(grad, dtype=dtype)
    step_size = lr / (1 - beta1**step)
    sqrt_correction2 = (1 - beta2**step) ** 0.5
    real = dtype.type
    launch(kernel_function("optim", "adam_update", dtype, param), param.size,
           (param, grad, exp_avg, exp_avg_sq, *int64s(param.size), real(step_size), real(beta1),
            real(beta2), real(eps), real(weight_decay), real(sqrt_correction2)))


KERNELS = {"sgd_momentum_update": sgd_momentum_update, "adam_update": adam_update}
