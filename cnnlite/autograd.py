"""The autograd engine: ``Function`` (one differentiable op) and the backward walk.

A forward pass builds the graph as it runs ("define by run")::

    x ──► Mul ──► y ──► Sum ──► loss          every Tensor made by an op remembers its
    w ──┘                                     creator Function; every Function its inputs.

``loss.backward()`` walks that graph from the end. A Function is processed only when the
gradients of all of its outputs are complete, which is guaranteed by handling Functions in
decreasing *generation* (a Function's generation is one more than the newest of its inputs).
The walk uses a heap, never recursion, so a chain of 20,000 ops is as fine as a chain of 3.

Writing an op: subclass ``Function`` and implement ``forward(*arrays)`` and
``backward(*grad_outputs)`` on raw NumPy/CuPy arrays. Keep what backward needs with
``self.save_for_backward(...)``; the engine frees it after the backward pass and notices when
one of those arrays was changed in place in between.
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import inspect
import itertools
import types
import weakref
from dataclasses import dataclass

from cnnlite import backend, dtypes

_grad_enabled = True

#: While ``cnnlite.summary`` walks a model: the tracer that sees every op (see ``tracing``).
_tracer = None

#: The modules whose forward is running, outermost first (``module_scope``, entered by
#: ``Module.__call__``). Every Function keeps the scope it ran in, so that a drawing of the graph
#: can group a ResNet's hundreds of ops into its blocks.
_module_scope = ()


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = enabled
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """Context manager: ops inside build no graph (evaluation, optimiser updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: turn graph building back on inside a ``no_grad`` block."""
    return _grad_mode(True)


@contextlib.contextmanager
def tracing(tracer):
    """Show every op to ``tracer`` while the block runs (how ``cnnlite.summary`` counts).

    ``tracer.forward(function, arrays)`` computes the op's outputs in place of
    ``function.forward(*arrays)`` (a summary makes placeholder outputs of the right shape for
    the convolutions instead of computing them); ``tracer.record(function, inputs, outputs)``
    then sees the op with its input and output Tensors.
    """
    global _tracer
    previous, _tracer = _tracer, tracer
    try:
        yield tracer
    finally:
        _tracer = previous


@contextlib.contextmanager
def module_scope(module):
    """Functions created inside this block remember ``module`` as their innermost module."""
    global _module_scope
    previous = _module_scope
    _module_scope = previous + (module,)
    try:
        yield
    finally:
        _module_scope = previous


def _shapes(arrays) -> str:
    return ", ".join(str(tuple(a.shape)) for a in arrays)


def _gpu_out_of_memory():
    """cupy's OutOfMemoryError class once cupy is imported, else ``()`` (matches nothing).

    Used as ``except _gpu_out_of_memory() as error``: Python evaluates it only when an
    exception reaches that clause, so the CPU path pays nothing. Ops on cupy arrays run out of
    GPU memory in cuBLAS products and cupy's element-wise ops, not only in our kernels; the
    report then names the op and its shapes (cnnlite.cuda.memory)."""
    from cnnlite.cuda.memory import cupy_out_of_memory_type
    return cupy_out_of_memory_type()


def _from_host_allocation(error) -> bool:
    """True for Python's and NumPy's own MemoryError; cnnlite's errors (which name the op
    already) and other libraries' (cupy's is a MemoryError too) pass through as they are."""
    return type(error) is MemoryError or type(error).__module__.startswith("numpy")


def _host_out_of_memory_error(what, error):
    """A MemoryError from NumPy, reworded with the op and its shapes."""
    from cnnlite.memory import HostOutOfMemoryError
    return HostOutOfMemoryError(f"{what}: {error}")


def _out_of_memory_error(what, error):
    from cnnlite.cuda.memory import gpu_out_of_memory_error
    return gpu_out_of_memory_error(what, error)


class _callable_on_class:
    """Makes ``Function.apply`` work both on an object and on the class.

    cnnlite's convention is one Function object per call, ``Square()(x)``, so that an op can
    keep its constructor arguments (``Conv2d(stride=2)``) and what it saved for backward.
    Readers coming from PyTorch write ``Square.apply(x)``; a plain method would then take ``x``
    for ``self``. This descriptor hands out the ordinary bound method on an object and, on the
    class, a function that first makes a fresh object with no constructor arguments.
    """

    def __init__(self, method):
        self.method = method
        functools.update_wrapper(self, method)

    def __get__(self, function, cls):
        if function is not None:
            return types.MethodType(self.method, function)

        @functools.wraps(self.method)
        def apply_on_a_fresh_object(*inputs):
            return self.method(_fresh_function(cls), *inputs)
        return apply_on_a_fresh_object


def _fresh_function(cls) -> "Function":
    """``cls()``, or a TypeError naming the constructor arguments ``cls.apply`` cannot guess."""
    constructor = inspect.signature(cls)
    try:
        constructor.bind()
    except TypeError:
        raise TypeError(f"{cls.__name__}.apply(...) needs a {cls.__name__} object, and "
                        f"{cls.__name__}{constructor} takes arguments: construct it first, "
                        f"{cls.__name__}(...)(*inputs) or {cls.__name__}(...).apply(*inputs)"
                        ) from None
    return cls()


class Function:
    """One differentiable operation on raw arrays.

    Subclasses implement

    * ``forward(*xs) -> y or tuple of ys``: compute the outputs from input arrays;
    * ``backward(*gys) -> gx or tuple of gxs``: given dL/dy for each output, return dL/dx for
      each input (``None`` for inputs that need no gradient, see ``self.needs_input_grad``).

    A Function object is used once: ``Mul()(a, b)``, or ``Mul.apply(a, b)`` which makes the
    object for you (ops with constructor arguments: ``Conv2d(stride=2)(x, w)``). The functional
    API wraps that call.
    """

    generation = 0
    saved = None
    #: The modules that were running when the op ran, outermost first (see ``module_scope``).
    scope = ()
    #: What the op computes in (``cnnlite.dtypes``): FLOAT promotes bool and integer inputs and
    #: refuses float16 and complex; NUMERIC (arithmetic, shapes) takes any real dtype.
    dtypes = dtypes.FLOAT
    #: The public op this Function computes, when its wrapper is named otherwise (``clone``
    #: builds a ``Copy``): set with ``named``, so that errors name the op the user called.
    op_name = None

    @property
    def name(self) -> str:
        return self.op_name or type(self).__name__

    def named(self, op_name: str) -> "Function":
        """This Function, its errors naming ``op_name`` (the public op) instead of its class."""
        self.op_name = op_name
        return self

    def save_for_backward(self, *arrays):
        """Keep arrays for ``backward``; they are read back as ``self.saved``."""
        self.saved = arrays

    def forward(self, *xs):
        raise NotImplementedError(f"{self.name} must implement forward(*arrays)")

    def backward(self, *gys):
        raise NotImplementedError(f"{self.name} does not implement backward")

    def __call__(self, *inputs):
        return self.apply(*inputs)

    @_callable_on_class
    def apply(self, *inputs):
        from cnnlite.tensor import Tensor

        tensors = _as_tensors(inputs, self.name)
        _check_same_device(tensors, self.name)
        xs = dtypes.prepare(self.name, self.dtypes, [t.data for t in tensors])
        self.needs_input_grad = tuple(_grad_enabled and t.requires_grad for t in tensors)
        try:
            ys = self.forward(*xs) if _tracer is None else _tracer.forward(self, xs)
        except (ValueError, IndexError) as error:
            # An error from deep inside NumPy gets the op's name and the input shapes; our own
            # checks already say both, so they pass through unchanged.
            if getattr(error, "from_cnnlite", False):
                raise
            raise type(error)(f"{self.name}: {error} (input shapes: {_shapes(xs)})") from None
        except _gpu_out_of_memory() as error:
            raise _out_of_memory_error(f"{self.name} (forward, input shapes {_shapes(xs)})",
                                       error) from error
        except MemoryError as error:  # NumPy's "Unable to allocate": add the op and shapes
            if not _from_host_allocation(error):
                raise
            raise _host_out_of_memory_error(f"{self.name} (forward, input shapes "
                                            f"{_shapes(xs)})", error) from error
        single = not isinstance(ys, tuple)
        ys = (ys,) if single else ys

        requires_grad = any(self.needs_input_grad)
        outputs = [Tensor(backend.array_module(y).asarray(y), requires_grad=requires_grad)
                   for y in ys]
        if requires_grad:
            self.inputs = tensors
            self.outputs = [weakref.ref(y) for y in outputs]
            self.output_specs = [(y.shape, y.dtype) for y in outputs]
            self.generation = max(t.generation for t in tensors) + 1
            self.scope = _module_scope
            for y in outputs:
                y.creator = self
                y.generation = self.generation
            self._record_saved_versions(tensors + outputs)
        else:
            self.saved = None
        if _tracer is not None:
            _tracer.record(self, tensors, outputs)
        return outputs[0] if single else tuple(outputs)

    def _record_saved_versions(self, tensors):
        """Remember the version of every tensor whose array was saved for backward."""
        saved_ids = {id(a) for a in (self.saved or ())}
        self._saved_versions = [(weakref.ref(t), t._version, i)
                                for i, t in enumerate(tensors) if id(t.data) in saved_ids]
        self._had_saved = self.saved is not None

    def _check_saved_versions(self):
        for ref, version, position in self._saved_versions:
            t = ref()
            if t is not None and t._version != version:
                role = (f"input {position}" if position < len(self.inputs)
                        else f"output {position - len(self.inputs)}")
                raise RuntimeError(
                    f"{self.name}: an array it saved for backward ({role}, shape "
                    f"{tuple(t.shape)}) was modified in place after the forward pass (version "
                    f"{version} -> {t._version}); the gradient would be wrong. Change a copy "
                    f"(t.clone()) instead, or make the change after backward().")


def _as_tensors(inputs, op_name):
    """Tensors for the inputs; Python numbers take the dtype and device of the tensor inputs."""
    from cnnlite.tensor import Tensor, as_tensor

    like = next((x for x in inputs if isinstance(x, Tensor)), None)
    return [x if isinstance(x, Tensor) else as_tensor(x, like=like, op_name=op_name)
            for x in inputs]


def _check_same_device(tensors, op_name):
    devices = [t.device for t in tensors]
    if len(set(devices)) > 1:
        listing = ", ".join(f"input {i} on {d} {tuple(t.shape)}"
                            for i, (t, d) in enumerate(zip(tensors, devices)))
        raise backend.DeviceError(
            f"{op_name}: all inputs must be on one device, got {listing}; "
            f"move them with .to('cpu') or .to('cuda')")


# ---------------------------------------------------------------------------------------------
# The backward walk.


@dataclass(repr=False)
class BackwardStep:
    """One step of the backward pass: one Function turns dL/d(outputs) into dL/d(inputs).

    ``iter_backward`` yields one per Function; ``cnnlite.viz.Stepper`` shows each as a card in
    Jupyter (``_repr_html_``), ``str(step)`` as a few lines for a terminal.

    Attributes
    ----------
    function : Function
        The op of this step; ``step.inputs`` are its input Tensors.
    grad_outputs : tuple of arrays
        dL/d(output), one per output, complete (zeros for an output that nothing used).
    grad_inputs : tuple of arrays or None
        dL/d(input), one per input: what this step passes on (``None``: that input needs none).
    index, total : int
        The step's place in the walk, counting from 1, and the number of Functions it visits.
    outputs : tuple of arrays or None
        The op's forward results (``None`` for an output Tensor already garbage collected).
    """

    function: Function
    grad_outputs: tuple
    grad_inputs: tuple
    index: int
    total: int
    outputs: tuple

    @property
    def inputs(self) -> tuple:
        return tuple(self.function.inputs)

    @property
    def destinations(self) -> tuple:
        """Where each of ``grad_inputs`` goes, in words: ``"leaf 'x'"``, ``"parameter
        fc.weight"``, ``"output 0 of Mul"``, or ``"needs no gradient"``."""
        from cnnlite.viz.stepper import destinations
        return destinations(self)

    def __repr__(self):
        outs = ", ".join(str(None if g is None else tuple(g.shape)) for g in self.grad_outputs)
        ins = ", ".join(str(None if g is None else tuple(g.shape)) for g in self.grad_inputs)
        return (f"<step {self.index}/{self.total} {self.function.name}: grad outputs [{outs}] "
                f"-> grad inputs [{ins}]>")

    def __str__(self):
        from cnnlite.viz.stepper import step_text
        return step_text(self)

    def _repr_html_(self):
        from cnnlite.viz.stepper import step_card
        return step_card(self)


def _initial_grad(root, grad):
    """The upstream gradient ``root.backward(grad)`` starts from: ones for a scalar root, else
    ``grad`` (a Tensor, an array or nested numbers) as real numbers of root's shape, in root's
    dtype and on root's device."""
    from cnnlite.errors import OpError

    xp = backend.array_module(root.data)
    if grad is None:
        if root.size != 1:
            raise RuntimeError(
                f"backward() without a gradient works only for a scalar (one-element) tensor; "
                f"this one has shape {tuple(root.shape)}. Reduce it first (y.sum().backward()) "
                f"or pass the upstream gradient: y.backward(grad) with grad of that shape.")
        return xp.ones_like(root.data)
    grad = grad.data if hasattr(grad, "creator") else grad
    if hasattr(grad, "shape") and backend.device_of(grad) != root.device:
        raise backend.DeviceError(f"backward(): gradient on {backend.device_of(grad)} given for "
                                  f"a tensor on {root.device}; move it with .to('{root.device}')")
    try:
        grad = xp.asarray(grad)
    except (TypeError, ValueError) as error:
        raise OpError(f"backward(): the gradient must be an array of numbers, got "
                      f"{type(grad).__name__} ({error})") from None
    if grad.dtype.kind not in "biuf":
        raise OpError(f"backward(): the gradient must hold real numbers, got dtype {grad.dtype}")
    if grad.shape != root.shape:
        raise OpError(f"backward(): gradient of shape {tuple(grad.shape)} given for a tensor "
                      f"of shape {tuple(root.shape)}; they must be equal")
    return grad.astype(root.dtype, copy=False)


def _accumulate(grads, tensor, g):
    key = id(tensor)
    grads[key] = g if key not in grads else grads[key] + g


def _finish_tensor_grad(tensor, g):
    """Run hooks on a tensor's complete gradient; store it on leaves and retain_grad tensors.

    A hook's result replaces the gradient only if it is one for this tensor: its shape, dtype
    and device (as PyTorch asks), since it flows on into the backward kernels and the
    optimisers, which read it element by element alongside the tensor.
    """
    from cnnlite.tensor import checked_gradient

    for hook in list(tensor._hooks.values()):
        replaced = hook(g)
        if replaced is not None:
            name = getattr(hook, "__qualname__", type(hook).__name__)
            g = checked_gradient(tensor, replaced, f"hook {name!r} of a tensor of shape "
                                 f"{tensor.shape}", exact_dtype=True)
    if tensor.creator is None or tensor._retains_grad:
        tensor.grad = g if tensor.grad is None else tensor.grad + g
    return g


def count_functions(root) -> int:
    """How many Functions ``backward()`` from ``root`` visits (a step's ``total``).

    They are the Functions reachable from ``root.creator`` through inputs that require grad,
    counted before the walk so that a step can say "step 3 of 7". (An op whose backward returns
    ``None`` for an input that requires grad would cut that branch short.)
    """
    if root.creator is None:
        return 0
    seen = {id(root.creator)}
    stack = [root.creator]
    while stack:
        for x in stack.pop().inputs:
            if x.requires_grad and x.creator is not None and id(x.creator) not in seen:
                seen.add(id(x.creator))
                stack.append(x.creator)
    return len(seen)


def iter_backward(root, grad=None, retain_graph=False):
    """Walk the graph behind ``root`` backwards, yielding a ``BackwardStep`` per Function.

    ``Tensor.backward`` simply exhausts this generator; a notebook can step through it (or use
    ``cnnlite.viz.Stepper``, which shows each step as a card)::

        for step in cl.autograd.iter_backward(loss):
            print(repr(step))   # <step 2/3 Mul: grad outputs [(3,)] -> grad inputs [(3,), (3,)]>

    The leaves' ``.grad`` are stored when the generator finishes, after the last step.
    """
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad and has no graph; "
                           "create its inputs with requires_grad=True")
    grads = {id(root): _initial_grad(root, grad)}  # id(tensor) -> dL/d(tensor), summed so far
    if root.creator is None:
        _finish_tensor_grad(root, grads.pop(id(root)))
        return

    total = count_functions(root)
    counter = itertools.count()  # tie-breaker: the heap never compares Functions
    heap = [(-root.creator.generation, next(counter), root.creator)]
    queued = {id(root.creator)}  # each Function goes on the heap once
    leaves = {}                  # id(leaf) -> leaf, for the leaves that receive a gradient
    index = 0
    # Each turn: pop the newest Function (the gradients of its outputs are complete), finish
    # those gradients (hooks, retain_grad), run ``_run_backward``, add each input's gradient
    # into ``grads`` (noting leaves in ``leaves``, pushing other creators on the heap once),
    # and describe the turn in ``step``.
    while heap:
        index += 1
        # BEGIN SOLUTION
        _, _, function = heapq.heappop(heap)
        outputs = [ref() for ref in function.outputs]
        gys = []
        for y in outputs:
            g = None if y is None else grads.pop(id(y), None)
            gys.append(None if g is None else _finish_tensor_grad(y, g))
        xp = backend.array_module(function.inputs[0].data)
        # An output nobody used (or that was garbage collected) gets a zero gradient.
        gys = tuple(xp.zeros(shape, dtype) if g is None else g
                    for (shape, dtype), g in zip(function.output_specs, gys))
        gxs = _run_backward(function, gys, retain_graph)

        for x, gx in zip(function.inputs, gxs):
            if gx is None or not x.requires_grad:
                continue
            if gx.dtype != x.dtype:
                gx = gx.astype(x.dtype)
            _accumulate(grads, x, gx)
            if x.creator is None:
                leaves[id(x)] = x
            elif id(x.creator) not in queued:
                queued.add(id(x.creator))
                heapq.heappush(heap, (-x.creator.generation, next(counter), x.creator))
        step = BackwardStep(function, gys, gxs, index, total,
                            tuple(None if y is None else y.data for y in outputs))
        # END SOLUTION
        yield step

    for key, leaf in leaves.items():
        _finish_tensor_grad(leaf, grads.pop(key))


def _run_backward(function, gys, retain_graph):
    """``function.backward(*gys)`` as a tuple, checked, its saved arrays freed after."""
    if function._had_saved and function.saved is None:
        raise RuntimeError(
            f"{function.name}: trying to run backward through the graph a second time, but "
            f"the arrays it saved were freed after the first backward(). Pass "
            f"retain_graph=True to the first backward() if you need to walk it again.")
    function._check_saved_versions()
    try:
        gxs = function.backward(*gys)
    except _gpu_out_of_memory() as error:
        raise _out_of_memory_error(f"{function.name} (backward, gradient shapes "
                                   f"{_shapes(gys)})", error) from error
    except MemoryError as error:
        if not _from_host_allocation(error):
            raise
        raise _host_out_of_memory_error(f"{function.name} (backward, gradient shapes "
                                        f"{_shapes(gys)})", error) from error
    gxs = gxs if isinstance(gxs, tuple) else (gxs,)
    _check_grad_inputs(function, gxs)
    if not retain_graph:
        function.saved = None
    return gxs


def _check_grad_inputs(function, gxs):
    """A wrong gradient shape is a bug in an op's backward: say which op and which input."""
    if len(gxs) != len(function.inputs):
        raise RuntimeError(f"{function.name}.backward returned {len(gxs)} gradients for "
                           f"{len(function.inputs)} inputs")
    for i, (x, gx) in enumerate(zip(function.inputs, gxs)):
        if gx is not None and tuple(gx.shape) != tuple(x.shape):
            raise RuntimeError(f"{function.name}.backward returned a gradient of shape "
                               f"{tuple(gx.shape)} for input {i} of shape {tuple(x.shape)}")


def backward(root, grad=None, retain_graph=False):
    """Compute the gradient of ``root`` with respect to every leaf tensor that requires grad."""
    for _ in iter_backward(root, grad, retain_graph):
        pass
