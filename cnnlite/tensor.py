"""``Tensor``: an array, its gradient, and the Function that created it.

``t.data`` and ``t.grad`` are plain NumPy (or CuPy) arrays, so everything NumPy can do with
them still works; the Tensor adds the bookkeeping that ``backward()`` needs. Operators
(``+ - * / ** @``, indexing, reductions) call the ops in ``cnnlite.functional`` and so build
the graph.
"""
from __future__ import annotations

import numbers

import numpy as np

from cnnlite import autograd, backend
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.validate import boolean


def _dtype_for(data):
    """Python floats become float32 (as in PyTorch); NumPy arrays keep their dtype."""
    if isinstance(data, (np.ndarray, np.generic)) or backend.is_cupy_array(data):
        return None
    probe = np.asarray(data)
    if probe.dtype.kind == "f":
        return np.float32
    return None


def _as_array(data, dtype=None, op_name="tensor"):
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_cupy_array(data):
        return data if dtype is None else data.astype(dtype, copy=False)
    try:
        array = np.asarray(data, dtype=dtype if dtype is not None else _dtype_for(data))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{op_name}: expected numeric data (a number, a nested list of numbers "
                        f"or an array), got {type(data).__name__}: {error}") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{op_name}: expected numeric data, got an array of dtype {array.dtype} "
                        f"({type(data).__name__} {_short(data)})")
    return array


def _short(data, limit=40):
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "..."


def tensor(data, dtype=None, requires_grad: bool = False, device: str = "cpu", name=None):
    """Make a Tensor from a number, a nested list or an array.

    Parameters
    ----------
    data : number, list or array
        NumPy arrays keep their dtype; Python floats (and lists of them) become float32,
        Python ints int64.
    dtype : optional
        Convert to this dtype.
    requires_grad : bool
        Record operations on this tensor so that ``backward()`` computes its gradient.
    device : ``"cpu"`` or ``"cuda"``
    """
    array = _as_array(data, dtype)
    return Tensor(backend.to_device(array, device), requires_grad=requires_grad, name=name)


def as_tensor(data, like=None, op_name="tensor"):
    """A Tensor for an op input: Python numbers take the dtype and device of ``like``."""
    if isinstance(data, Tensor):
        return data
    if like is not None and isinstance(data, numbers.Number) and not isinstance(data, bool):
        dtype = like.dtype if like.dtype.kind in "fc" or isinstance(data, numbers.Integral) \
            else np.float32
        array = backend.array_module(like.data).asarray(data, dtype=dtype)
        return Tensor(array)
    array = _as_array(data, op_name=op_name)
    if like is not None:
        array = backend.to_device(array, like.device)
    return Tensor(array)


def checked_gradient(tensor: "Tensor", grad, where: str, exact_dtype: bool = False):
    """``grad`` as an array fit to be ``tensor``'s gradient, or an ``OpError`` naming ``where``.

    A gradient is what the optimiser kernels read element by element alongside the tensor, so
    it must be an array (a Tensor gives its ``.data``) of exactly the tensor's shape, on the
    tensor's device, of a floating dtype; ``exact_dtype`` also asks for the tensor's own dtype
    (a hook's result flows on into the backward kernels, which read it at that width).
    Without these checks a gradient of 1 element for a parameter of 10**8 made the kernel read
    far past its end.
    """
    if isinstance(grad, Tensor):
        grad = grad.data
    elif isinstance(grad, np.generic):
        grad = np.asarray(grad)
    if not (isinstance(grad, np.ndarray) or backend.is_cupy_array(grad)):
        raise ArgumentTypeError(f"{where}: the gradient must be {_wanted(tensor, exact_dtype)}, "
                                f"got {type(grad).__name__} {_short(grad)}")
    if (grad.shape != tensor.data.shape or grad.dtype.kind != "f"
            or (exact_dtype and grad.dtype != tensor.dtype) or not same_device(grad, tensor.data)):
        raise OpError(f"{where}: the gradient must be {_wanted(tensor, exact_dtype)}, got "
                      f"shape {tuple(grad.shape)}, dtype {grad.dtype} on "
                      f"{backend.device_of(grad)}")
    return grad


def same_device(a, b) -> bool:
    """Whether arrays ``a`` and ``b`` are on one device (cheap when both are of one type, as
    on every step of a training loop)."""
    return type(a) is type(b) or backend.device_of(a) == backend.device_of(b)


def _wanted(tensor, exact_dtype: bool) -> str:
    dtype = f" and dtype {tensor.dtype}" if exact_dtype else ""
    return f"a floating-point array of shape {tensor.shape}{dtype} on {tensor.device}"


class _HookHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Attributes
    ----------
    data : ndarray
        The values (NumPy on the CPU, CuPy on the GPU).
    grad : ndarray or None
        dL/d(this tensor), filled by ``backward()`` on leaves (and on tensors that called
        ``retain_grad()``); accumulates over several ``backward()`` calls until reset. It may
        be assigned: ``None``, or a floating-point array of this tensor's shape on its device
        (its float width may differ: optimisers convert it to the parameter's).
    creator : Function or None
        The op that made this tensor; ``None`` for leaves (inputs, parameters).
    """

    # Make NumPy hand ``ndarray + Tensor`` to Tensor.__radd__ instead of broadcasting itself.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, name=None):
        if not (isinstance(data, np.ndarray) or backend.is_cupy_array(data)):
            data = _as_array(data)
        requires_grad = boolean("Tensor", "requires_grad", requires_grad)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {data.dtype}")
        self.data = data
        self._grad = None
        self.creator = None
        self.generation = 0
        self.requires_grad = requires_grad
        self.name = name
        self._version = 0
        self._retains_grad = False
        self._hooks = {}
        self._next_hook = 0

    # --- description -----------------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extras = [f"dtype={self.dtype}"]
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.creator is not None:
            extras.append(f"creator={self.creator.name}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    def numpy(self):
        """The values as a NumPy array (copied from the GPU when needed)."""
        return self.data.get() if self.device == "cuda" else self.data

    def item(self):
        if self.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python "
                             f"number, this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             f"use .any() or .all() on its data")
        return bool(self.item())

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    __hash__ = object.__hash__

    # --- autograd --------------------------------------------------------------------------
    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = None if value is None else checked_gradient(self, value, "Tensor.grad")

    def backward(self, grad=None, retain_graph: bool = False):
        """Compute d(self)/d(leaf) for every leaf that requires grad, into ``leaf.grad``.

        ``grad`` is the upstream gradient; it may be left out only for one-element tensors.
        The graph's saved arrays are freed afterwards unless ``retain_graph=True``.
        """
        autograd.backward(self, grad, retain_graph)

    def detach(self) -> "Tensor":
        """The same array, cut from the graph (no copy)."""
        out = Tensor(self.data)
        out._version = self._version
        return out

    def clone(self) -> "Tensor":
        from cnnlite.functional import math
        return math.clone(self)

    def retain_grad(self):
        """Keep this intermediate tensor's gradient in ``.grad`` after ``backward()``."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad(): this tensor does not require grad")
        self._retains_grad = True

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed.

        The hook may return a new array that replaces the gradient. Returns a handle whose
        ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook(): this tensor does not require grad")
        key = self._next_hook
        self._next_hook += 1
        self._hooks[key] = hook
        return _HookHandle(self._hooks, key)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        requires_grad = boolean("requires_grad_", "requires_grad", requires_grad)
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # --- devices and dtypes ----------------------------------------------------------------
    def to(self, device: str) -> "Tensor":
        """This tensor on ``device`` (itself when already there); the copy has no graph."""
        moved = backend.to_device(self.data, device)
        if moved is self.data:
            return self
        return Tensor(moved, requires_grad=self.requires_grad, name=self.name)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def astype(self, dtype) -> "Tensor":
        from cnnlite.functional import math
        return math.astype(self, dtype)

    def float(self) -> "Tensor":
        return self.astype(np.float32)

    def double(self) -> "Tensor":
        return self.astype(np.float64)

    # --- in-place changes (not differentiable; they bump the version counter) -------------
    def mark_changed_in_place(self, what: str):
        """Record that ``self.data`` is about to change in place (by ``what``).

        The in-place methods below call it; so should code that writes into ``.data``
        directly, such as an optimiser kernel. It bumps the version counter, so that a graph
        that saved the old values reports the change at backward time instead of silently
        computing a wrong gradient.
        """
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                f"{what}: in-place change of a tensor that requires grad while the graph is "
                f"being recorded; use an out-of-place op (y = x + 1), or wrap the change in "
                f"`with cl.no_grad():` as optimisers do")
        self._version += 1

    def _inplace(self, what, other, update):
        self.mark_changed_in_place(what)
        other = other.data if isinstance(other, Tensor) else other
        try:
            update(self.data, other)
        except (ValueError, TypeError) as error:
            other_shape = getattr(other, "shape", ())
            raise ValueError(f"{what}: cannot apply a value of shape {tuple(other_shape)} to a "
                             f"tensor of shape {self.shape} in place ({error})") from None
        return self

    def add_(self, other):
        return self._inplace("add_", other, lambda a, b: a.__iadd__(b))

    def sub_(self, other):
        return self._inplace("sub_", other, lambda a, b: a.__isub__(b))

    def mul_(self, other):
        return self._inplace("mul_", other, lambda a, b: a.__imul__(b))

    def div_(self, other):
        return self._inplace("div_", other, lambda a, b: a.__itruediv__(b))

    def fill_(self, value):
        return self._inplace("fill_", value, lambda a, b: a.fill(b))

    def zero_(self):
        return self.fill_(0)

    def copy_(self, other):
        return self._inplace("copy_", other, lambda a, b: a.__setitem__(Ellipsis, b))

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def __setitem__(self, index, value):
        if isinstance(index, Tensor):
            index = index.data
        self._inplace("__setitem__", value, lambda a, b: a.__setitem__(index, b))


def _install_operators():
    """Give Tensor its operators and methods, each a thin call of a functional op."""
    from cnnlite.functional import math, reduction, shape

    def binary(op, reflected=False):
        if reflected:
            return lambda self, other: op(other, self)
        return lambda self, other: op(self, other)

    def comparison(ufunc):
        def compare(self, other):
            other = other.data if isinstance(other, Tensor) else other
            return Tensor(ufunc(self.data, other))
        return compare

    operators = {
        "__add__": binary(math.add), "__radd__": binary(math.add, True),
        "__sub__": binary(math.sub), "__rsub__": binary(math.sub, True),
        "__mul__": binary(math.mul), "__rmul__": binary(math.mul, True),
        "__truediv__": binary(math.div), "__rtruediv__": binary(math.div, True),
        "__pow__": binary(math.pow), "__rpow__": binary(math.pow, True),
        "__matmul__": binary(math.matmul), "__rmatmul__": binary(math.matmul, True),
        "__neg__": math.neg, "__abs__": math.abs, "__getitem__": shape.getitem,
        "__lt__": comparison(np.less), "__le__": comparison(np.less_equal),
        "__gt__": comparison(np.greater), "__ge__": comparison(np.greater_equal),
        "__eq__": comparison(np.equal), "__ne__": comparison(np.not_equal),
    }
    methods = {
        "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "abs": math.abs,
        "clip": math.clip, "pow": math.pow,
        "sum": reduction.sum, "mean": reduction.mean, "max": reduction.max,
        "min": reduction.min, "var": reduction.var,
        "reshape": shape.reshape, "transpose": shape.transpose, "flatten": shape.flatten,
        "expand": shape.expand, "broadcast_to": shape.broadcast_to,
        "squeeze": shape.squeeze, "unsqueeze": shape.unsqueeze,
    }
    for name, fn in {**operators, **methods}.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: shape.transpose(self))


_install_operators()
