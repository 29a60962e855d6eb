"""Ops that move values around without computing new ones: reshape, transpose, broadcast,
indexing, concatenation, stacking, splitting and padding.

Their backward passes move the gradient back the same way: reshape it back, transpose it by the
inverse permutation, sum it over broadcast axes, scatter it into the indexed places, cut it
into the concatenated pieces, crop away the padding.
"""
from __future__ import annotations

import numbers

import numpy as np

from cnnlite import backend, dtypes, validate
from cnnlite.autograd import Function
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.functional.math import sum_to
from cnnlite.tensor import Tensor, as_tensor


def _shape_arg(shape):
    """Accept ``reshape(2, 3)`` as well as ``reshape((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _target_shape(op, shape):
    """A target shape of ints, -1 standing for "whatever fits" (``2.0`` is not a size)."""
    return tuple(validate.integer(op, f"shape[{i}]", n, minimum=-1, maximum=None)
                 for i, n in enumerate(shape))


class Reshape(Function):
    """y = x with a new shape of the same size; dL/dx = dL/dy reshaped back."""

    dtypes = dtypes.NUMERIC

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        known = int(np.prod([n for n in self.shape if n != -1]))
        fits = (self.shape.count(-1) == 1 and known > 0 and x.size % known == 0) or \
            (self.shape.count(-1) == 0 and known == x.size)
        if not fits:
            raise OpError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                          f"({x.size} elements) into {self.shape}")
        self.x_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.x_shape)


class Transpose(Function):
    """y = x with its axes permuted (reversed when no axes are given)."""

    dtypes = dtypes.NUMERIC

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        axes = (validate.axes("transpose", self.axes, x.ndim, "axes") if self.axes
                else tuple(reversed(range(x.ndim))))
        if len(axes) != x.ndim:
            raise OpError(f"transpose: axes {self.axes} are not a permutation of the "
                          f"{x.ndim} axes of a tensor of shape {tuple(x.shape)}")
        self.inverse = tuple(np.argsort(axes))
        return x.transpose(axes)

    def backward(self, gy):
        return gy.transpose(self.inverse)


class BroadcastTo(Function):
    """y = x broadcast to a larger shape; dL/dx = dL/dy summed over the broadcast axes."""

    dtypes = dtypes.NUMERIC

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        lead = len(self.shape) - x.ndim
        target = tuple(x.shape[i - lead] if n == -1 and i >= lead else n
                       for i, n in enumerate(self.shape))
        try:
            y = backend.array_module(x).broadcast_to(x, target)
        except ValueError:
            raise OpError(f"broadcast_to: cannot broadcast a tensor of shape {tuple(x.shape)} "
                          f"to {self.shape}") from None
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        return sum_to(gy, self.x_shape)


class GetItem(Function):
    """y = x[index] for any NumPy index (slices, integers, integer or boolean arrays).

    Backward scatters dL/dy into zeros of x's shape; indices that repeat add up (``add.at``).
    """

    dtypes = dtypes.NUMERIC

    def __init__(self, index):
        self.index = _checked_index(index)

    def forward(self, x):
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        gx = backend.array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        backend.add_at(gx, self.index, gy)
        return gx


def _index_part_error(part, why):
    return ArgumentTypeError(f"getitem: {why}, got {type(part).__name__} {part!r:.60}; an index "
                             f"is made of ints, slices of ints, None, ..., and bool or integer "
                             f"arrays")


def _checked_part(part):
    """One part of an index, checked (a list as an array): its kind only; NumPy checks the
    ranges, and their errors get getitem's name in ``Function.apply``."""
    if part is None or part is Ellipsis or isinstance(part, (numbers.Integral, np.integer,
                                                             np.bool_)):
        return part  # a bool (True/False) is NumPy's 0-d mask, as in PyTorch
    if isinstance(part, slice):
        for bound in (part.start, part.stop, part.step):
            if bound is not None and not validate.is_integer(bound):
                raise _index_part_error(part, "slice bounds must be ints or None")
        return part
    if isinstance(part, list):
        part = np.asarray(part)
        if part.size == 0:
            part = part.astype(np.intp)  # [] selects nothing (NumPy would read it as float)
    kind = getattr(getattr(part, "dtype", None), "kind", None)
    if kind is None:
        raise _index_part_error(part, "not an index")
    if kind not in "biu":
        raise _index_part_error(part, f"index arrays must be bool or integer, not {part.dtype}")
    return part


def _checked_index(index):
    """The index of ``getitem`` with each part checked (a tuple part by part): a float slice
    bound or a float array would otherwise fail inside NumPy with a TypeError that does not
    say which op it came from."""
    if isinstance(index, tuple):
        return tuple(_checked_part(part) for part in index)
    return _checked_part(index)


class Concat(Function):
    """y = the inputs joined along ``axis``; dL/dx_i = the matching slice of dL/dy."""

    dtypes = dtypes.NUMERIC

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        first = xs[0]
        axis = validate.axis("concat", self.axis, first.ndim)
        for x in xs[1:]:
            other = [n for i, n in enumerate(x.shape) if i != axis]
            if x.ndim != first.ndim or other != [n for i, n in enumerate(first.shape)
                                                 if i != axis]:
                shapes = ", ".join(str(tuple(t.shape)) for t in xs)
                raise OpError(f"concat: shapes must match except along axis {self.axis}, "
                              f"got {shapes}")
        self.bounds = np.cumsum([x.shape[axis] for x in xs])[:-1]
        self.axis = axis
        return backend.array_module(first).concatenate(xs, axis=axis)

    def backward(self, gy):
        return tuple(backend.array_module(gy).split(gy, self.bounds, axis=self.axis))


class Split(Function):
    """ys = x cut along ``axis`` (NumPy's ``split``); dL/dx = the pieces' gradients joined."""

    dtypes = dtypes.NUMERIC

    def __init__(self, indices_or_sections, axis):
        self.indices_or_sections, self.axis = indices_or_sections, axis

    def forward(self, x):
        self.axis = validate.axis("split", self.axis, x.ndim)
        sections = _sections(self.indices_or_sections)
        if isinstance(sections, int) and x.shape[self.axis] % sections:
            raise OpError(f"split: axis {self.axis} of a tensor of shape {tuple(x.shape)} "
                          f"does not divide into {sections} equal parts")
        return tuple(backend.array_module(x).split(x, sections, axis=self.axis))

    def backward(self, *gys):
        return backend.array_module(gys[0]).concatenate(gys, axis=self.axis)


def _sections(indices_or_sections):
    """A number of equal parts (an int >= 1) or a list of int cut points, as numpy.split."""
    if validate.is_integer(indices_or_sections):
        return validate.integer("split", "sections", indices_or_sections, minimum=1)
    if not isinstance(indices_or_sections, (tuple, list)):
        raise ArgumentTypeError(f"split: indices_or_sections must be an int or a list of ints, "
                                f"got {type(indices_or_sections).__name__} "
                                f"{indices_or_sections!r}")
    return [validate.integer("split", "indices", i, minimum=None, maximum=None)
            for i in indices_or_sections]


def _pad_widths(pad_width, ndim):
    """``pad_width`` in any of numpy.pad's forms (n; (n,); (before, after); one pair per axis)
    as an (ndim, 2) array, every entry checked to be an int >= 0 (``1.5`` is not padded by 1)."""
    entries = np.asarray(pad_width, dtype=object)
    for width in entries.flat:
        validate.integer("pad", "pad_width", width, minimum=0)
    try:
        return np.broadcast_to(entries.astype(np.int64), (ndim, 2))
    except ValueError:
        raise OpError(f"pad: pad_width {pad_width} does not fit a tensor of {ndim} "
                      f"dimensions (need one (before, after) pair per axis)") from None


class Pad(Function):
    """y = x with a border of a constant value (NumPy's ``pad_width``); dL/dx = the centre."""

    dtypes = dtypes.NUMERIC

    def __init__(self, pad_width, value):
        self.pad_width, self.value = pad_width, value

    def forward(self, x):
        widths = _pad_widths(self.pad_width, x.ndim)
        self.crop = tuple(slice(int(b), int(b) + n) for (b, _), n in zip(widths, x.shape))
        return backend.array_module(x).pad(x, widths, mode="constant",
                                           constant_values=self.value)

    def backward(self, gy):
        return gy[self.crop]


def _tensor(x, op_name="tensor"):
    return x if isinstance(x, Tensor) else as_tensor(x, op_name=op_name)


def reshape(x, *shape):
    return Reshape(_target_shape("reshape", _shape_arg(shape)))(x)


def _reshaped(op_name, x, shape):
    """``x`` reshaped by the op ``op_name`` (flatten, squeeze, ...): its errors name that op."""
    return Reshape(shape).named(op_name)(x)


def transpose(x, *axes):
    return Transpose(_shape_arg(axes))(x)


def flatten(x, start_axis=0, end_axis=-1):
    """Merge axes ``start_axis..end_axis`` into one (all of them by default); a 0-d tensor
    becomes (1,), as in PyTorch."""
    x = _tensor(x, "flatten")
    shape = x.shape
    ndim = max(len(shape), 1)
    start = validate.axis("flatten", start_axis, ndim, "start_axis")
    end = validate.axis("flatten", end_axis, ndim, "end_axis")
    if start > end:
        raise OpError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis} for a "
                      f"tensor of shape {shape}")
    merged = int(np.prod(shape[start:end + 1]))
    return _reshaped("flatten", x, shape[:start] + (merged,) + shape[end + 1:])


def broadcast_to(x, *shape):
    return BroadcastTo(_target_shape("broadcast_to", _shape_arg(shape)))(x)


def expand(x, *shape):
    """``broadcast_to`` under PyTorch's name; its errors name ``expand``."""
    return BroadcastTo(_target_shape("expand", _shape_arg(shape))).named("expand")(x)


def squeeze(x, axis=None):
    """Drop axes of length 1 (all of them, or the ones named)."""
    x = _tensor(x, "squeeze")
    shape = x.shape
    axes = [i for i, n in enumerate(shape) if n == 1] if axis is None else \
        validate.axes("squeeze", axis, len(shape))
    for a in axes:
        if shape[a] != 1:
            raise OpError(f"squeeze: axis {a} of shape {shape} has length {shape[a]}, not 1")
    return _reshaped("squeeze", x, tuple(n for i, n in enumerate(shape) if i not in axes))


def unsqueeze(x, axis):
    """Insert an axis of length 1 at position ``axis``."""
    x = _tensor(x, "unsqueeze")
    shape = list(x.shape)
    shape.insert(validate.axis("unsqueeze", axis, len(shape) + 1), 1)
    return _reshaped("unsqueeze", x, tuple(shape))


def getitem(x, index):
    # Only Tensors are unwrapped: an ndarray's ``.data`` is its raw memoryview.
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, Tensor):
        index = index.data
    return GetItem(index)(x)


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    if len(tensors) == 0:
        raise OpError("concat: needs at least one tensor")
    return Concat(axis)(*tensors)


def stack(tensors, axis=0):
    """Join tensors of one shape along a new axis."""
    if len(tensors) == 0:
        raise OpError("stack: needs at least one tensor")
    tensors = [as_tensor(t, like=tensors[0] if isinstance(tensors[0], Tensor) else None,
                         op_name="stack") for t in tensors]
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise OpError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    axis = validate.axis("stack", axis, tensors[0].ndim + 1)
    grown = [_reshaped("stack", t, t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors]
    return Concat(axis).named("stack")(*grown)


def split(x, indices_or_sections, axis=0):
    """Cut ``x`` into equal parts (an int) or at the given indices, as ``numpy.split``."""
    return list(Split(indices_or_sections, axis)(x))


def pad(x, pad_width, value=0.0):
    """Pad with a constant, ``pad_width`` as in ``numpy.pad``: ((before, after), ...)."""
    return Pad(pad_width, _pad_value(value))(x)


def _pad_value(value):
    """The fill value of ``pad``: a real number (not a bool). Infinities and NaN are taken, as
    PyTorch's constant pad takes them (a -inf border is how max pooling pads); a string ("7"
    would pad with 7.0), a complex number, None or a list is refused."""
    if not isinstance(value, (numbers.Real, np.integer, np.floating)) or isinstance(
            value, (bool, np.bool_)):
        raise ArgumentTypeError(f"pad: value must be a real number, got "
                                f"{type(value).__name__} {value!r:.60}")
    return value
