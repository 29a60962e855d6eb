"""Element-wise arithmetic, ``matmul`` and the elementary functions, with their derivatives.

Binary ops follow NumPy broadcasting. In backward, the gradient of a broadcast input is summed
over the axes along which it was broadcast (``sum_to``), so it has the input's shape again.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from cnnlite import backend, dtypes, validate
from cnnlite.autograd import Function
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.tensor import as_tensor


def sum_to(g, shape):
    """Sum array ``g`` down to ``shape``: undo NumPy broadcasting in the backward pass.

    ``shape`` (3, 1) broadcast to ``g.shape`` (2, 3, 4): sum axis 0 (added in front), then
    axis 2 with keepdims (it was 1), giving (3, 1) again.
    """
    if not hasattr(g, "shape"):  # a list from a user's call, not a gradient array
        g = as_tensor(g, op_name="sum_to").data
    if not hasattr(g, "dtype"):
        g = np.asarray(g)
    shape = _sum_to_shape(g, shape)
    # BEGIN SOLUTION
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and g.shape[lead + i] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)
    # END SOLUTION


def _sum_to_shape(g, shape):
    """The target of ``sum_to`` checked against ``g`` (``sum_to`` is public, so a wrong shape
    gets sum_to's name, not NumPy's reshape error): a tuple or list of ints >= 0 that
    broadcasts to ``g.shape`` (not longer; each size equal to g's or 1). ``g`` must hold
    numbers (bool, integers or floats)."""
    if g.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"sum_to: g has dtype {g.dtype}; sum_to takes bool, integers "
                                f"and floats")
    if not isinstance(shape, (tuple, list)):
        raise ArgumentTypeError(f"sum_to: shape must be a tuple of ints, got "
                                f"{type(shape).__name__} {shape!r:.60}")
    shape = tuple(validate.integer("sum_to", f"shape[{i}]", n, minimum=0)
                  for i, n in enumerate(shape))
    lead = g.ndim - len(shape)
    if lead < 0 or any(n not in (1, m) for n, m in zip(shape, g.shape[lead:])):
        raise OpError(f"sum_to: g of shape {tuple(g.shape)} cannot be summed to {shape}: "
                      f"{shape} does not broadcast to {tuple(g.shape)}")
    return shape


class BroadcastBinary(Function):
    """Base of the binary element-wise ops: checks that the two shapes broadcast."""

    dtypes = dtypes.NUMERIC

    symbol = "?"

    def forward(self, a, b):
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise OpError(f"{self.name} ({self.symbol}): shapes {tuple(a.shape)} and "
                          f"{tuple(b.shape)} cannot be broadcast together") from None
        self.shapes = (a.shape, b.shape)
        return self.compute(a, b)

    def reduce_grads(self, ga, gb):
        sa, sb = self.shapes
        return (sum_to(ga, sa) if self.needs_input_grad[0] else None,
                sum_to(gb, sb) if self.needs_input_grad[1] else None)


class Add(BroadcastBinary):
    """y = a + b;  dy/da = 1, dy/db = 1."""

    symbol = "+"

    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        return self.reduce_grads(gy, gy)


class Sub(BroadcastBinary):
    """y = a - b;  dy/da = 1, dy/db = -1."""

    symbol = "-"

    def compute(self, a, b):
        _refuse_bool_negation("sub (-)", a, b)
        return a - b

    def backward(self, gy):
        return self.reduce_grads(gy, -gy)


class Mul(BroadcastBinary):
    """y = a * b;  dy/da = b, dy/db = a."""

    symbol = "*"

    def compute(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, gy):
        # BEGIN SOLUTION
        a, b = self.saved
        return self.reduce_grads(gy * b, gy * a)
        # END SOLUTION


class Div(BroadcastBinary):
    """y = a / b;  dy/da = 1 / b, dy/db = -a / b^2."""

    symbol = "/"

    def compute(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved
        ga = gy / b
        return self.reduce_grads(ga, -ga * a / b)


class Pow(BroadcastBinary):
    """y = a ** b;  dy/da = b a^(b-1), dy/db = a^b log(a) (needs a > 0)."""

    symbol = "**"

    def compute(self, a, b):
        y = a ** b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, gy):
        a, b, y = self.saved
        # Derivatives in the result's float dtype: NumPy's log of an int8 base is float16
        # (three digits), and b - 1 of an integer exponent may leave the integers. An integer
        # result (int ** int) has no gradient to take, so it is left as it is.
        if y.dtype.kind == "f":
            a, b = a.astype(y.dtype, copy=False), b.astype(y.dtype, copy=False)
        xp = backend.array_module(y)
        ga = gy * b * a ** (b - 1) if self.needs_input_grad[0] else gy
        gb = gy * y * xp.log(a) if self.needs_input_grad[1] else gy
        return self.reduce_grads(ga, gb)


class Maximum(BroadcastBinary):
    """y = max(a, b) element-wise; the gradient goes to the larger one (half each on ties)."""

    symbol = "maximum"

    def compute(self, a, b):
        self.save_for_backward(a, b)
        return backend.array_module(a).maximum(a, b)

    def backward(self, gy):
        a, b = self.saved
        share_a = (a > b) + 0.5 * (a == b)
        return self.reduce_grads(gy * share_a, gy * (1 - share_a))


def _refuse_bool_negation(op, *arrays):
    """NumPy (and PyTorch) refuse to negate bools; say so under the op's name."""
    if all(a.dtype == np.bool_ for a in arrays):
        raise OpError(f"{op}: bool tensors cannot be negated or subtracted (shapes "
                      f"{', '.join(str(tuple(a.shape)) for a in arrays)}); use logical_not on "
                      f"the data, or convert with .astype(...) first")


class Neg(Function):
    """y = -x."""

    dtypes = dtypes.NUMERIC

    def forward(self, x):
        _refuse_bool_negation("neg (-)", x)
        return -x

    def backward(self, gy):
        return -gy


class Exp(Function):
    """y = e^x;  dy/dx = y."""

    def forward(self, x):
        y = backend.array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        # BEGIN SOLUTION
        (y,) = self.saved
        return gy * y
        # END SOLUTION


class Log(Function):
    """y = ln x;  dy/dx = 1 / x."""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.array_module(x).log(x)

    def backward(self, gy):
        (x,) = self.saved
        return gy / x


class Sqrt(Function):
    """y = sqrt(x);  dy/dx = 1 / (2 y)."""

    def forward(self, x):
        y = backend.array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return gy / (2 * y)


class Abs(Function):
    """y = |x|;  dy/dx = sign(x) (0 at x = 0, as in NumPy and PyTorch)."""

    dtypes = dtypes.NUMERIC

    def forward(self, x):
        self.save_for_backward(x)
        return backend.array_module(x).abs(x)

    def backward(self, gy):
        (x,) = self.saved
        return gy * backend.array_module(x).sign(x)


class Clip(Function):
    """y = min(max(x, low), high);  dy/dx = 1 inside [low, high], 0 outside."""

    dtypes = dtypes.NUMERIC

    def __init__(self, low, high):
        self.low, self.high = low, high

    def forward(self, x):
        self.save_for_backward(x)
        return backend.array_module(x).clip(x, self.low, self.high)

    def backward(self, gy):
        (x,) = self.saved
        inside = np.ones((), bool)
        if self.low is not None:
            inside = inside & (x >= self.low)
        if self.high is not None:
            inside = inside & (x <= self.high)
        return gy * inside


class Where(Function):
    """y = a where condition else b; the gradient flows to the side that was chosen."""

    dtypes = dtypes.NUMERIC

    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        try:
            np.broadcast_shapes(self.condition.shape, a.shape, b.shape)
        except ValueError:
            raise OpError(f"where: condition {tuple(self.condition.shape)}, x {tuple(a.shape)} "
                          f"and y {tuple(b.shape)} cannot be broadcast together") from None
        self.shapes = (a.shape, b.shape)
        return backend.array_module(a).where(self.condition, a, b)

    def backward(self, gy):
        zero = gy.dtype.type(0)
        xp = backend.array_module(gy)
        ga = sum_to(xp.where(self.condition, gy, zero), self.shapes[0])
        gb = sum_to(xp.where(self.condition, zero, gy), self.shapes[1])
        return ga, gb


class MatMul(Function):
    """y = a @ b, batched over leading axes (which broadcast), as ``numpy.matmul``.

    a: (..., n, k), b: (..., k, m) -> y: (..., n, m)
    dL/da = dL/dy @ b^T,  dL/db = a^T @ dL/dy  (then summed over broadcast batch axes).
    A 1-d a is treated as (1, k) and a 1-d b as (k, 1), the added axis removed again.
    Two bool matrices are multiplied as the integers 0 and 1 (NumPy would compute a logical
    "or of ands", True where a count is wanted).
    """

    dtypes = dtypes.NUMERIC

    def forward(self, a, b):
        if a.dtype == np.bool_ and b.dtype == np.bool_:
            a, b = a.astype(np.int64), b.astype(np.int64)
        if a.ndim == 0 or b.ndim == 0:
            raise OpError(f"matmul (@): both operands need at least 1 dimension, got shapes "
                          f"{tuple(a.shape)} and {tuple(b.shape)}")
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if a.shape[-1] != k_b:
            raise OpError(f"matmul (@): shapes {tuple(a.shape)} and {tuple(b.shape)} do not "
                          f"align: {a.shape[-1]} (last axis of a) != {k_b} (second-to-last "
                          f"axis of b)")
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise OpError(f"matmul (@): batch shapes of {tuple(a.shape)} and {tuple(b.shape)} "
                          f"cannot be broadcast together") from None
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, gy):
        # BEGIN SOLUTION
        a, b = self.saved
        xp = backend.array_module(gy)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:  # first: for vector @ vector, gy () -> (1,) -> (1, 1)
            gy = xp.expand_dims(gy, -1)
        if a.ndim == 1:
            gy = xp.expand_dims(gy, -2)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = sum_to(gy @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = sum_to(xp.swapaxes(a2, -1, -2) @ gy, b2.shape).reshape(b.shape)
        return ga, gb
        # END SOLUTION


class Copy(Function):
    """y = x as a new array (``clone``); the gradient passes through."""

    dtypes = dtypes.NUMERIC

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


class AsType(Function):
    """y = x converted to another dtype; the gradient is converted back."""

    dtypes = dtypes.NUMERIC

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.source = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.source)


# --- the functional API ------------------------------------------------------------------------

def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def pow(a, b):
    return Pow()(a, b)


def maximum(a, b):
    """Element-wise maximum of two tensors (broadcasting)."""
    return Maximum()(a, b)


def matmul(a, b):
    return MatMul()(a, b)


def neg(x):
    return Neg()(x)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def sqrt(x):
    return Sqrt()(x)


def abs(x):
    return Abs()(x)


def clip(x, low=None, high=None):
    """Limit ``x`` to ``[low, high]`` (either bound may be ``None``)."""
    if low is None and high is None:
        raise OpError("clip: give at least one of low and high")
    return Clip(_clip_bound("low", low), _clip_bound("high", high))(x)


def _clip_bound(name, value):
    """A bound of ``clip``: None or a real number (a Python float); infinities are fine (no
    bound on that side), NaN is refused (every comparison with it is false, so the result
    would be all NaN). A bool or a list ([1.0]) is a mistake, not a number."""
    if value is None:
        return None
    if not isinstance(value, (numbers.Real, np.integer, np.floating)) or isinstance(
            value, (bool, np.bool_)):
        raise ArgumentTypeError(f"clip: {name} must be a real number or None, got "
                                f"{type(value).__name__} {value!r:.60}")
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)  # an int bound keeps an int tensor int
    value = float(value)
    if math.isnan(value):
        raise OpError(f"clip: {name} must not be NaN (infinities are fine)")
    return value


def where(condition, a, b):
    """``a`` where ``condition`` is true, else ``b`` (broadcasting); no gradient to condition."""
    return Where(_condition(condition))(a, b)


def _condition(condition):
    """The condition of ``where`` as a bool array. Bool is taken as it is; integers are read as
    "non-zero" (NumPy's truth of a number), converted with ``!= 0``. Floats, complex numbers and
    objects are refused: PyTorch wants bool, and whether 0.5 or NaN or 1j is "true" is a guess
    better left to the caller (write ``where(x > 0, ...)``)."""
    condition = getattr(condition, "data", condition)
    if not hasattr(condition, "dtype"):
        condition = np.asarray(condition)
    if condition.dtype.kind == "b":
        return condition
    if condition.dtype.kind in "iu":
        return condition != 0
    raise ArgumentTypeError(f"where: condition must be bool (or integers, read as non-zero), "
                            f"got dtype {condition.dtype} (shape {tuple(condition.shape)}); "
                            f"compare first, e.g. where(x > 0, a, b)")


def clone(x):
    return Copy().named("clone")(x)


def astype(x, dtype):
    """``x`` converted to ``dtype`` (a NumPy dtype, its type or its name: ``"float32"``)."""
    return AsType(_target_dtype(dtype))(x)


def _target_dtype(dtype):
    """The target of ``astype`` as a NumPy dtype: bool, an integer or a float (what cnnlite
    computes on). ``None`` is refused, not read as NumPy's default float64; complex, object and
    string targets are refused here, by astype's name, rather than failing later in NumPy or in
    the gradient machinery."""
    if dtype is None:
        raise ArgumentTypeError("astype: dtype must be a dtype (e.g. 'float32'), got None")
    try:
        target = np.dtype(dtype)
    except TypeError:
        raise ArgumentTypeError(f"astype: dtype {dtype!r:.60} is not a dtype (give e.g. "
                                f"'float32' or np.int64)") from None
    if target.kind not in "biuf":
        raise ArgumentTypeError(f"astype: cannot convert to {target}; the target must be bool, "
                                f"an integer or a floating dtype")
    return target
