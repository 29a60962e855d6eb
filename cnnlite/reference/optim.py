"""Reference optimiser updates: one step for one parameter, element by element, in place.

* ``sgd_momentum_update(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
  nesterov, first_step)``
* ``adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)``

Both change ``param`` and the optimiser's state arrays in place and return nothing. The
formulas are PyTorch's (as in ``cnnlite.optim``). Each element's update reads and writes only
that element of the parameter and of the state, so the loop below is also the shape of the
fast kernels: one pass over memory.

The arrays updated in place must be contiguous arrays of one float type and of param's shape
(the fast kernels write straight into their memory), and the gradient must have param's shape
(they read it element for element): ``cnnlite.reference.contracts`` checks both. The gradient
is converted to param's dtype, and the hyper-parameters too, so that a float32 update computes
in float32 like the GPU's.
"""
import numpy as np

from cnnlite.reference import contracts


def sgd_momentum_update(param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                        weight_decay=0.0, nesterov=False, first_step=False):
    """SGD step in place::

        g = grad + weight_decay * param              (L2 penalty folded into the gradient)
        b = g  on the first step,  else  momentum * b + (1 - dampening) * g
        param -= lr * (g + momentum * b  if nesterov  else  b)

    With momentum = 0 this is plain SGD, param -= lr * g, and the buffer is left alone.
    """
    contracts.sgd_momentum_update(param, grad, momentum_buffer, lr, momentum, dampening,
                                  weight_decay, nesterov, first_step)
    real = param.dtype.type
    grad = np.asarray(grad, dtype=param.dtype)
    lr, momentum, dampening, weight_decay = (real(lr), real(momentum), real(dampening),
                                             real(weight_decay))
    for i in np.ndindex(param.shape):
        g = grad[i] + weight_decay * param[i]
        if momentum != 0:
            b = g if first_step else momentum * momentum_buffer[i] + (1 - dampening) * g
            momentum_buffer[i] = b
            g = g + momentum * b if nesterov else b
        param[i] -= lr * g


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0):
    """Adam step number ``step`` (1 for the first) in place::

        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g              (exp_avg: the first moment)
        v = beta2 * v + (1 - beta2) * g^2            (exp_avg_sq: the second moment)
        param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

    The ``1 - beta^step`` factors undo the bias of m and v towards their zero start; they are
    the same for every element, so they are computed once.
    """
    contracts.adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                          weight_decay)
    real = param.dtype.type
    grad = np.asarray(grad, dtype=param.dtype)
    step_size = real(lr / (1 - beta1**step))
    sqrt_correction2 = real((1 - beta2**step) ** 0.5)
    beta1, beta2, eps, weight_decay = real(beta1), real(beta2), real(eps), real(weight_decay)
    for i in np.ndindex(param.shape):
        g = grad[i] + weight_decay * param[i]
        m = beta1 * exp_avg[i] + (1 - beta1) * g
        v = beta2 * exp_avg_sq[i] + (1 - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] -= step_size * m / (np.sqrt(v) / sqrt_correction2 + eps)


KERNELS = {"sgd_momentum_update": sgd_momentum_update, "adam_update": adam_update}
