"""The checks the table's specs turn into: values, gradients, PyTorch parity, layouts.

Every check runs one op of the table on inputs from its spec and returns a ``CheckResult``
(never raises for a wrong answer, so a grader can report every function):

``value``     the op's output (an implementation, a dtype, a layout) equals the readable
              reference in float64: the spec's NumPy formula, else the reference loops, else
              PyTorch;
``gradient``  in float64 on contiguous inputs: the gradient that backward computes equals
              central differences of ``L = sum(u * f(x))`` for a random upstream ``u``; in
              float32 or on non-contiguous inputs: it equals the float64 contiguous gradient
              (which the float64 check established);
``torch``     values and gradients equal PyTorch's (float64, the same upstream ``u``).

A status says what went wrong: "passed", "wrong values", "wrong gradient", "not implemented"
(a stub of a student version raised NotImplementedError), "error" (anything else raised),
"skipped" (the implementation cannot run here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cnnlite import backend
from cnnlite.optable import implementations
from cnnlite.tensor import Tensor
from cnnlite.testing import numerical_grad

PASSED, WRONG_VALUES, WRONG_GRADIENT = "passed", "wrong values", "wrong gradient"
NOT_IMPLEMENTED, ERROR, SKIPPED = "not implemented", "error", "skipped"
LAYOUTS = ("contiguous", "non-contiguous")


@dataclass
class CheckResult:
    """The outcome of one check of one op."""

    op: str
    implementation: str
    check: str
    status: str
    detail: str = ""
    index: tuple | None = None
    dtype: str = "float64"
    layout: str = "contiguous"
    params: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in (PASSED, SKIPPED)

    def to_dict(self) -> dict:
        result = asdict(self)
        result["params"] = {k: repr(v) for k, v in self.params.items()}
        return result

    def __str__(self):
        where = f"{self.op} ({self.implementation}, {self.dtype}, {self.layout}) {self.check}"
        return f"{where}: {self.status}" + (f": {self.detail}" if self.detail else "")


class _Mismatch(Exception):
    """A wrong answer found inside a check: its status, one line, the worst index."""

    def __init__(self, status, detail, index=None):
        super().__init__(detail)
        self.status, self.detail, self.index = status, detail, index


# --- running an op -----------------------------------------------------------------------------

def _to_numpy(a):
    return a.get() if backend.is_cupy_array(a) else np.asarray(a)


def non_contiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a view that is not contiguous (every other element of a buffer)."""
    buffer = np.zeros(a.shape + (2,), dtype=a.dtype)
    buffer[..., 0] = a
    return buffer[..., 0]


def prepare(arrays, dtype, layout):
    """The inputs in ``dtype`` (float arrays only: targets stay integers) and ``layout``."""
    out = []
    for a in arrays:
        if a.dtype.kind == "f":
            a = non_contiguous(a.astype(dtype)) if layout == "non-contiguous" else \
                np.array(a, dtype=dtype, order="C")
        out.append(a)
    return out


def run(spec, implementation, arrays, params, upstream=None, grad_indices=()):
    """Run the op: its output as a float64 NumPy array and, given an upstream gradient, the
    gradients of ``sum(upstream * output)`` for the inputs ``grad_indices``.

    The output must keep the dtype of the float inputs: the comparisons happen in float64,
    where a float32 op that answered in float64 would look right. (Gradients need no such
    check: the backward walk casts each to its input's dtype.)
    """
    device = implementations.device(implementation)
    tensors = [Tensor(a, requires_grad=i in grad_indices).to(device)
               for i, a in enumerate(arrays)]
    with implementations.running(implementation):
        y = _call(spec, implementation, tensors, spec.op_params(params))
        if upstream is not None:
            # backward(u) starts the walk with dL/dy = u directly: no Mul or Sum of the
            # library between the op under test and its upstream gradient.
            xp = backend.array_module(y.data)
            y.backward(Tensor(xp.asarray(upstream, dtype=y.dtype)))
    _check_output_dtype(arrays, y)
    grads = [None if t.grad is None else _to_numpy(t.grad).astype(np.float64)
             for t in tensors] if upstream is not None else None
    return _to_numpy(y.data).astype(np.float64), grads


def _check_output_dtype(arrays, y):
    """Raise a _Mismatch when the output's dtype is not the one of the float inputs."""
    float_dtypes = {a.dtype for a in arrays if a.dtype.kind == "f"}
    if len(float_dtypes) == 1 and y.dtype not in float_dtypes:
        raise _Mismatch(WRONG_VALUES, f"output dtype {y.dtype}, expected {float_dtypes.pop()} "
                                      f"like the inputs")


def _call(spec, implementation, tensors, op_params):
    """The op on ``tensors``: the spec's direct loops for "direct", else the op as called."""
    if implementation == "direct":
        return spec.direct(**op_params)(*tensors)
    return spec.call(*tensors, **op_params)


def reference_value(spec, implementation, arrays, params):
    """The float64 value to compare with: the NumPy formula, else the reference loops (unless
    the loops are what is checked), else PyTorch, else the numba kernels (dropout's loops have
    nothing else: its mask comes from a counter-based generator only the kernels compute)."""
    if spec.numpy is not None:
        return np.asarray(spec.numpy(*arrays, **spec.op_params(params)), dtype=np.float64)
    if "loops" in spec.implementations and implementation != "loops":
        return run(spec, "loops", arrays, params)[0]
    if spec.torch is not None:
        return torch_value_and_grads(spec, arrays, params)[0]
    for other in ("numba", "direct"):  # last resort: another implementation of the op
        if other in spec.implementations and implementation != other:
            return run(spec, other, arrays, params)[0]
    raise ValueError(f"{spec.name}: the table gives no reference value")


def torch_value_and_grads(spec, arrays, params, upstream=None, grad_indices=()):
    """PyTorch's value (and gradients of sum(upstream * y)) in float64."""
    import torch
    tensors = [torch.tensor(a, requires_grad=(i in grad_indices and upstream is not None))
               for i, a in enumerate(arrays)]
    y = spec.torch(*tensors, **spec.op_params(params))
    grads = None
    if upstream is not None:
        (y * torch.tensor(upstream, dtype=y.dtype)).sum().backward()
        grads = [None if t.grad is None else t.grad.numpy() for t in tensors]
    return y.detach().numpy().astype(np.float64), grads


# --- comparing ---------------------------------------------------------------------------------

def compare(got, expected, rtol, atol, status, what=""):
    """Raise a _Mismatch naming the worst element when ``got`` and ``expected`` differ."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise _Mismatch(status, f"{what}shape {got.shape}, expected {expected.shape}")
    both_nan = np.isnan(got) & np.isnan(expected)
    with np.errstate(invalid="ignore"):
        excess = np.abs(got - expected) - (atol + rtol * np.abs(expected))
    excess = np.where(both_nan, -1.0, np.nan_to_num(excess, nan=np.inf))
    bad = excess > 0
    if not bad.any():
        return
    k = int(np.argmax(excess))
    index = tuple(int(i) for i in np.unravel_index(k, got.shape))
    raise _Mismatch(status, f"{what}element {index}: got {got.flat[k]:.8g}, expected "
                            f"{expected.flat[k]:.8g} ({int(bad.sum())} of {bad.size} elements "
                            f"off; rtol={rtol:g}, atol={atol:g})", index)


def _compare_grads(spec, got, expected, indices, rtol, atol):
    for i in indices:
        if expected[i] is None:
            continue
        if got[i] is None:
            raise _Mismatch(WRONG_GRADIENT, f"input {i}: no gradient, expected one of shape "
                                            f"{expected[i].shape}")
        compare(got[i], expected[i], rtol, atol, WRONG_GRADIENT, f"input {i}, ")


def upstream_for(shape, seed):
    """The random upstream gradient u of ``L = sum(u * y)`` for an output of ``shape``: the
    same for every implementation and dtype of a seed."""
    return np.random.default_rng(seed + 7919).standard_normal(shape)


def _upstream(spec, implementation, arrays, params, seed):
    """``upstream_for`` the op's output (one forward run tells its shape)."""
    return upstream_for(run(spec, implementation, arrays, params)[0].shape, seed)


# --- the checks --------------------------------------------------------------------------------

def _value(spec, implementation, arrays, params, dtype, layout):
    expected = reference_value(spec, implementation, arrays, params)
    got, _ = run(spec, implementation, prepare(arrays, dtype, layout), params)
    compare(got, expected, *spec.tolerance[dtype], WRONG_VALUES)


def _gradcheck(spec, implementation, arrays, params, seed):
    """Analytic against central differences, float64, contiguous."""
    indices = spec.checked_inputs(arrays)
    upstream = _upstream(spec, implementation, arrays, params, seed)
    _, analytic = run(spec, implementation, arrays, params, upstream, indices)
    device = implementations.device(implementation)
    tensors = [Tensor(a.copy(), requires_grad=i in indices).to(device)
               for i, a in enumerate(arrays)]
    op_params = spec.op_params(params)

    def f(*ts):
        with implementations.running(implementation):
            return _call(spec, implementation, ts, op_params)

    rtol, atol = spec.gradcheck_tolerance
    for i in indices:
        numeric = numerical_grad(f, tensors, tensors[i], [upstream], 1e-6)
        if analytic[i] is None:
            raise _Mismatch(WRONG_GRADIENT, f"input {i}: backward gave no gradient")
        compare(analytic[i], numeric, rtol, atol, WRONG_GRADIENT, f"input {i}, ")


def _gradient_like_float64(spec, implementation, arrays, params, dtype, layout, seed):
    """float32 or non-contiguous: the same gradients as float64 contiguous."""
    indices = spec.checked_inputs(arrays)
    upstream = _upstream(spec, implementation, arrays, params, seed)
    _, expected = run(spec, implementation, arrays, params, upstream, indices)
    _, got = run(spec, implementation, prepare(arrays, dtype, layout), params, upstream, indices)
    _compare_grads(spec, got, expected, indices, *spec.tolerance[dtype])


def _torch(spec, implementation, arrays, params, seed):
    indices = spec.checked_inputs(arrays)
    expected_value, _ = torch_value_and_grads(spec, arrays, params)
    upstream = upstream_for(expected_value.shape, seed)
    _, expected = torch_value_and_grads(spec, arrays, params, upstream, indices)
    got_value, got = run(spec, implementation, arrays, params, upstream, indices)
    rtol, atol = spec.tolerance["float64"]
    compare(got_value, expected_value, rtol, atol, WRONG_VALUES)
    _compare_grads(spec, got, expected, indices, rtol, atol)


def run_check(spec, check, implementation, params=None, dtype="float64",
              layout="contiguous", seed=0, raise_errors=False) -> CheckResult:
    """One check (``"value"``, ``"gradient"`` or ``"torch"``) of one op as a CheckResult.

    A wrong answer is a result. So is an exception, for the grader (a student's crash is
    reported, and the next function checked); with ``raise_errors`` it propagates instead,
    with its traceback, as a test suite wants a bug of the library shown.

    An implementation the spec does not list is a mistake of the caller, not a result: it
    raises ValueError (run as it is, the op would be checked through its default kernels and
    pass under a name it never ran as).
    """
    if implementation not in spec.implementations:
        raise ValueError(f"run_check: {spec.name} has no implementation {implementation!r}; it "
                         f"has {spec.implementations}")
    params = dict(spec.examples[0] if params is None else params)
    result = CheckResult(spec.name, implementation, check, PASSED, dtype=dtype, layout=layout,
                         params=params)
    ok, why = implementations.available(implementation)
    if not ok:
        result.status, result.detail = SKIPPED, why
        return result
    try:
        # float64 and C-contiguous whatever ``inputs`` returned: these are the reference
        # inputs, and central differences perturb the buffer in place, element by element.
        arrays = prepare(spec.make_inputs(seed, params), "float64", "contiguous")
        with np.errstate(all="ignore"):
            if check == "value":
                _value(spec, implementation, arrays, params, dtype, layout)
            elif check == "gradient" and dtype == "float64" and layout == "contiguous":
                _gradcheck(spec, implementation, arrays, params, seed)
            elif check == "gradient":
                _gradient_like_float64(spec, implementation, arrays, params, dtype, layout, seed)
            elif check == "torch":
                _torch(spec, implementation, arrays, params, seed)
            else:
                raise ValueError(f"run_check: unknown check {check!r}")
    except _Mismatch as mismatch:
        result.status, result.detail, result.index = (mismatch.status, mismatch.detail,
                                                      mismatch.index)
    except NotImplementedError as error:
        if raise_errors:
            raise
        result.status, result.detail = NOT_IMPLEMENTED, str(error)
    except Exception as error:
        if raise_errors:
            raise
        result.status, result.detail = ERROR, f"{type(error).__name__}: {error}"
    return result
