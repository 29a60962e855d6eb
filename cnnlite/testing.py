"""Tools for testing gradients, public so that course test suites can use them too.

``gradcheck`` compares the gradient that backward computes with one measured by central
differences. Rather than building the whole Jacobian it checks a vector-Jacobian product with a
random upstream gradient ``u``: the analytic ``dL/dx`` of ``L = sum(u * f(x))`` against

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

for every element ``i`` of every input that requires grad. A random ``u`` (not all ones) makes
sure that errors which cancel in a plain sum (a transposed or shifted gradient) still show.

The hypothesis strategies (``shapes``, ``broadcastable_shapes``, ``arrays``) draw test inputs;
hypothesis is imported only when they are used.
"""
from __future__ import annotations

import numpy as np

from cnnlite import backend
from cnnlite.autograd import no_grad
from cnnlite.tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic and the numerical gradient disagree."""


def _outputs(result):
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _weighted_total(outputs, upstream):
    return sum(float((backend.array_module(y.data).asarray(y.data, dtype=np.float64) * u).sum())
               for y, u in zip(outputs, upstream))


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              seed: int = 0, raise_exception: bool = True) -> bool:
    """Check the gradients of ``fn(*inputs)`` against central differences, in float64.

    Parameters
    ----------
    fn : callable
        Takes the inputs, returns a tensor or a tuple of tensors. Must be deterministic.
    inputs : sequence of Tensor
        The inputs that have ``requires_grad=True`` are checked; they must be float64.
    eps, atol, rtol : float
        Step of the central difference; an element passes when
        ``|analytic - numeric| <= atol + rtol * |numeric|``.
    seed : int
        Seed of the random upstream gradient.

    Returns ``True`` when every element passes. Otherwise raises ``GradcheckError`` naming the
    worst element (input, index, analytic, numeric, relative error), or returns ``False`` when
    ``raise_exception=False``.
    """
    inputs = list(inputs)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise ValueError(f"gradcheck: input {i} is {inputs[i].dtype}; central differences "
                             f"need float64 (use .double())")

    rng = np.random.default_rng(seed)
    for i in checked:
        inputs[i].grad = None
    outputs = _outputs(fn(*inputs))
    upstream = [rng.standard_normal(y.shape) for y in outputs]
    total = None
    for y, u in zip(outputs, upstream):
        if not y.requires_grad:
            continue
        xp = backend.array_module(y.data)
        term = (y * Tensor(xp.asarray(u, dtype=y.dtype))).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("gradcheck: no output of fn depends on the inputs that require grad")
    total.backward()

    worst = None
    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else np.asarray(_to_numpy(x.grad))
        numeric = numerical_grad(fn, inputs, x, upstream, eps)
        error = np.abs(analytic - numeric)
        # A NaN anywhere (a 0/0 in a backward) is the worst error of all: np.argmax would
        # pick it, but NaN > 0 is False, so it would pass; it counts as infinite instead.
        bad = np.nan_to_num(error - (atol + rtol * np.abs(numeric)), nan=np.inf)
        k = int(np.argmax(bad)) if bad.size else 0
        if bad.size and bad.flat[k] > 0 and (worst is None or bad.flat[k] > worst[0]):
            index = np.unravel_index(k, x.shape)
            relative = error.flat[k] / max(abs(numeric.flat[k]), 1e-12)
            worst = (bad.flat[k], i, index, analytic.flat[k], numeric.flat[k], relative,
                     int((bad > 0).sum()), bad.size)
    if worst is None:
        return True
    _, i, index, a, n, rel, n_bad, n_all = worst
    message = (f"gradcheck failed: input {i}, element {tuple(int(j) for j in index)}: "
               f"analytic {a:.8g}, numeric {n:.8g}, relative error {rel:.3g} "
               f"({n_bad} of {n_all} elements off; atol={atol}, rtol={rtol})")
    if raise_exception:
        raise GradcheckError(message)
    return False


def _to_numpy(a):
    return a.get() if backend.is_cupy_array(a) else a


def numerical_grad(fn, inputs, x, upstream, eps):
    """Central differences of sum(u * fn(inputs)) with respect to every element of ``x``.

    The elements are nudged in place, through a flat view of ``x.data``; a non-contiguous
    array has no such view (reshape would copy it, and the nudges would be lost), so it is
    replaced by a contiguous copy for the duration and put back afterwards.
    """
    xp = backend.array_module(x.data)
    original_data = x.data
    if not original_data.flags.c_contiguous:
        x.data = xp.ascontiguousarray(original_data)
    try:
        return _nudged_differences(fn, inputs, x, upstream, eps)
    finally:
        x.data = original_data


def _nudged_differences(fn, inputs, x, upstream, eps):
    flat = x.data.reshape(-1)
    grad = np.zeros(flat.size)
    with no_grad():
        for k in range(flat.size):
            original = flat[k].item()
            flat[k] = original + eps
            plus = _weighted_total(_outputs(fn(*inputs)), upstream)
            flat[k] = original - eps
            minus = _weighted_total(_outputs(fn(*inputs)), upstream)
            flat[k] = original
            grad[k] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# Hypothesis strategies.


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 5):
    """A strategy for array shapes, e.g. ``(3,)``, ``(2, 1, 4)``."""
    from hypothesis.extra import numpy as hnp
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(shape, min_dims: int = 0, max_dims: int = 4, max_side: int = 5):
    """A strategy for shapes that broadcast with ``shape`` (some axes dropped or set to 1)."""
    from hypothesis.extra import numpy as hnp
    return hnp.broadcastable_shapes(shape, min_dims=min_dims, max_dims=max_dims,
                                    max_side=max_side)


def broadcastable_pairs(max_dims: int = 4, max_side: int = 5):
    """A strategy for pairs of shapes that broadcast together: ``((2, 3), (3,))``."""
    from hypothesis.extra import numpy as hnp
    return hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=max_dims,
                                             max_side=max_side).map(lambda s: s.input_shapes)


def arrays(shape, dtype=np.float64, low: float = -2.0, high: float = 2.0,
           min_magnitude: float = 0.0):
    """A strategy for arrays with values in ``[low, high]``.

    ``min_magnitude`` keeps values away from zero (|v| >= min_magnitude), for ops with a kink
    or a singularity there (abs, relu, division, log of |x|).
    """
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
    def floats(lo, hi):
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)

    if min_magnitude <= 0:
        elements = floats(low, high)
    else:
        # Draw from the two allowed intervals rather than filtering, which would reject most
        # draws when min_magnitude is a large part of the range.
        parts = []
        if high >= min_magnitude:
            parts.append(floats(max(low, min_magnitude), high))
        if low <= -min_magnitude:
            parts.append(floats(low, min(high, -min_magnitude)))
        if not parts:
            raise ValueError(f"arrays: no value in [{low}, {high}] has |v| >= {min_magnitude}")
        elements = st.one_of(*parts)
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)
