"""``Module``: the base class of every layer and model.

A Module is a callable object with state. Setting an attribute to a ``Parameter`` or to another
``Module`` registers it, so that a whole network can be walked without naming its parts::

    class TwoLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 8)     # registered as child "fc1"
            self.fc2 = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))

    model = TwoLayer()
    [name for name, _ in model.named_parameters()]
    # ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']

Names are dotted paths from the root, as in PyTorch, so ``state_dict()`` keys line up with a
PyTorch model built the same way.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np

from cnnlite import autograd, backend
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.nn.parameter import Parameter
from cnnlite.nn.state_dict import LoadReport, load_into
from cnnlite.tensor import Tensor, _as_array, as_tensor
from cnnlite.validate import boolean


class HookHandle:
    """Returned by ``register_forward_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class Module:
    """Base class of layers and models: owns Parameters, buffers and child Modules.

    Subclasses call ``super().__init__()`` first, assign their parts as attributes, and
    implement ``forward``. Call the module (``model(x)``), not ``forward``, so hooks run.

    Attributes
    ----------
    training : bool
        ``True`` after ``train()`` (the default), ``False`` after ``eval()``; layers such as
        Dropout and BatchNorm behave differently in the two modes.
    """

    _next_hook_id = 0

    def __init__(self):
        # object.__setattr__ because our own __setattr__ needs these dicts to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration ------------------------------------------------------------------------
    def _check_initialised(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() ran; call "
                                 f"super().__init__() first in {type(self).__name__}.__init__")

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)):
            self._check_initialised(name)
            registry = self._parameters if isinstance(value, Parameter) else self._modules
            self._forget(name, keep=registry)
            registry[name] = value
        elif name in self.__dict__.get("_parameters", {}):
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to parameter {name!r} "
                                f"of {type(self).__name__}; wrap it in nn.Parameter (or None)")
            self._parameters[name] = None
        elif name in self.__dict__.get("_buffers", {}):
            self._buffers[name] = _as_buffer(value, name)
        elif name in self.__dict__.get("_modules", {}):
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to child module "
                                f"{name!r} of {type(self).__name__}; expected a Module or None")
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        """Drop ``name`` from the registries (except ``keep``, where replacing an entry keeps
        its place in the order) and from the plain attributes."""
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # Only called when normal lookup fails: the registered parts live in the dicts.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        if any(name in r for r in (self._parameters, self._buffers, self._modules)):
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None):
        """Register ``param`` under ``name`` (``None`` reserves the name, e.g. ``bias=False``)."""
        self._check_initialised(name)
        _check_name(f"{type(self).__name__}.register_parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected an nn.Parameter or None, "
                            f"got {type(param).__name__}")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True):
        """Register a Tensor that is state but not learned (no grad), e.g. BN's running mean.

        Persistent buffers are part of ``state_dict()``; ``persistent=False`` keeps one out.
        """
        self._check_initialised(name)
        _check_name(f"{type(self).__name__}.register_buffer", name)
        persistent = boolean(f"{type(self).__name__}.register_buffer", "persistent", persistent)
        self._forget(name, keep=self._buffers)
        self._buffers[name] = _as_buffer(tensor, name)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: "Module | None"):
        """Register ``module`` as a child called ``name`` (for names that are not identifiers)."""
        self._check_initialised(name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        _check_name(f"{type(self).__name__}.add_module", name)
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    # --- walking the tree --------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """``(dotted name, module)`` for this module and every descendant, parents first.

        A module that appears twice (shared) is listed once. The walk uses an explicit stack,
        so very deep networks are fine.
        """
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, recurse: bool):
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for module_name, module in modules:
            for name, member in getattr(module, registry).items():
                if member is None or id(member) in seen:
                    continue
                seen.add(id(member))
                yield (f"{module_name}.{name}" if module_name else name), member

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, Parameter)`` pairs; a shared Parameter is listed once."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse):
            yield param

    def named_buffers(self, recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse):
            yield buffer

    # --- saving and loading ------------------------------------------------------------------
    def _state_entries(self) -> "OrderedDict[str, Tensor]":
        """Every persistent tensor by dotted name, in PyTorch's order: per module its own
        parameters, then its own buffers, then its children's (shared tensors under each name)."""
        entries = OrderedDict()
        stack = [("", self)]
        while stack:
            prefix, module = stack.pop()
            for name, param in module._parameters.items():
                if param is not None:
                    entries[prefix + name] = param
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent:
                    entries[prefix + name] = buffer
            children = [(f"{prefix}{name}.", child) for name, child in module._modules.items()
                        if child is not None]
            stack.extend(reversed(children))
        return entries

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and persistent buffer as NumPy arrays, by dotted name.

        Keys follow PyTorch (``features.0.weight``, ``bn.running_mean``,
        ``bn.num_batches_tracked``), so ``np.savez(path, **model.state_dict())`` saves a model
        and PyTorch weights converted to NumPy load with ``load_state_dict``.
        """
        return OrderedDict((name, np.array(t.numpy(), copy=True))
                           for name, t in self._state_entries().items())

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadReport:
        """Copy arrays from ``state_dict`` (name -> array) into the parameters and buffers.

        Everything is checked before anything changes. With ``strict=True`` any missing,
        unexpected or mis-shaped key raises ``StateDictError`` listing all of them, and the
        model is left untouched. With ``strict=False`` the entries that match are loaded and
        the others are skipped (unlike PyTorch, which raises on a shape mismatch even then;
        skipping is what fine-tuning with a new classifier wants). Values are cast to each
        tensor's dtype and device.

        Returns the ``LoadReport`` (missing, unexpected and mismatched keys).
        """
        strict = boolean(f"{type(self).__name__}.load_state_dict", "strict", strict)
        return load_into(self._state_entries(), state_dict, strict, type(self).__name__)

    # --- modes, devices, dtypes --------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode on this module and all descendants; returns ``self``."""
        mode = boolean(f"{type(self).__name__}.train", "mode", mode)
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (``train(False)``): Dropout passes through, BN uses running stats."""
        return self.train(False)

    def _convert(self, convert_array: Callable, floating_only: bool):
        """Replace the array of every parameter, buffer and gradient in place, so that an
        optimiser built before the call still holds the same Parameter objects."""
        for module in self.modules():
            for tensor in [*module._parameters.values(), *module._buffers.values()]:
                if tensor is None or (floating_only and tensor.dtype.kind != "f"):
                    continue
                tensor.data = convert_array(tensor.data)
                if tensor.grad is not None:
                    tensor.grad = convert_array(tensor.grad)
        return self

    def to(self, device: str | None = None, dtype=None) -> "Module":
        """Move every parameter and buffer to ``device`` and/or cast the floating ones to
        ``dtype`` (float32 or float64, what the layers compute in), in place; returns
        ``self``."""
        if dtype is not None:
            dtype = _layer_dtype(f"{type(self).__name__}.to", dtype)
        if device is not None:
            device = backend.check_device(device)
            self._convert(lambda a: backend.to_device(a, device), floating_only=False)
        if dtype is not None:
            self._convert(lambda a: a.astype(dtype), floating_only=True)
        return self

    def double(self) -> "Module":
        """Cast floating parameters and buffers to float64 (for gradient checks)."""
        return self.to(dtype=np.float64)

    def float(self) -> "Module":
        return self.to(dtype=np.float32)

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call ``fn(module)`` on every descendant and then on ``self``, each module after its
        children (as PyTorch; for custom initialisation). Returns ``self``."""
        stack = [(self, False)]
        while stack:
            module, children_done = stack.pop()
            if children_done:
                fn(module)
                continue
            stack.append((module, True))
            stack.extend((child, False) for child in reversed(list(module.children())))
        return self

    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradients of all parameters (to ``None``, or to zeros)."""
        set_to_none = boolean(f"{type(self).__name__}.zero_grad", "set_to_none", set_to_none)
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad = backend.array_module(param.grad).zeros_like(param.grad)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (``False``) or unfreeze all parameters."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    # --- calling -----------------------------------------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *inputs, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            replaced = hook(self, inputs)
            if replaced is not None:
                inputs = replaced if isinstance(replaced, tuple) else (replaced,)
        with autograd.module_scope(self):
            output = self.forward(*inputs, **kwargs)
        for hook in list(self._forward_hooks.values()):
            replaced = hook(self, inputs, output)
            if replaced is not None:
                output = replaced
        return output

    def _add_hook(self, hooks: dict, hook: Callable) -> HookHandle:
        key = Module._next_hook_id
        Module._next_hook_id += 1
        hooks[key] = hook
        return HookHandle(hooks, key)

    def register_forward_hook(self, hook: Callable) -> HookHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-``None`` return
        value replaces the output. Returns a handle with ``remove()``."""
        return self._add_hook(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook: Callable) -> HookHandle:
        """Call ``hook(module, inputs)`` before every forward; a non-``None`` return value
        replaces the inputs. Returns a handle with ``remove()``."""
        return self._add_hook(self._forward_pre_hooks, hook)

    # --- description -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's settings, shown inside the parentheses of its repr."""
        return ""

    def describe(self) -> str:
        """The short name that error messages start with, e.g. ``MaxPool2d(k=3, s=2)``."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def as_input(self, x) -> Tensor:
        """``x`` as a Tensor (a user may pass a list or an array), errors naming this layer:
        the layers read ``x.ndim`` and ``x.shape`` in their checks before any op converts it."""
        return as_tensor(x, op_name=self.describe())

    def input_error(self, expected: str, x) -> OpError:
        """An OpError naming this layer, what it expects and the shape it got."""
        return OpError(f"{self.describe()}: expected input {expected}, got {tuple(x.shape)}")

    def __repr__(self):
        children = [(name, module) for name, module in self._modules.items()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [self.extra_repr()] if self.extra_repr() else []
        for name, module in children:
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        body = "\n  ".join(lines)
        return f"{type(self).__name__}(\n  {body}\n)"


def _as_buffer(value, name):
    if value is None or isinstance(value, Tensor):
        if isinstance(value, Parameter):
            raise TypeError(f"buffer {name!r}: buffers hold no learned values; register a "
                            f"Parameter with register_parameter instead")
        return value
    return Tensor(_as_array(value, op_name=f"buffer {name!r}"))


def _check_name(method: str, name) -> None:
    """A registered name is a non-empty string without dots (dots join the dotted paths of
    ``state_dict()`` keys, so ``"a.b"`` would be read back as child ``a``'s ``b``)."""
    if not isinstance(name, str):
        raise TypeError(f"{method}: name must be a string, got {type(name).__name__} {name!r}")
    if "." in name or name == "":
        raise KeyError(f"{method}: name must be non-empty and without '.', got {name!r}")


def _layer_dtype(where: str, dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype the layers compute in: float32 or float64."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ArgumentTypeError(f"{where}: dtype {dtype!r} is not a NumPy dtype") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ArgumentTypeError(f"{where}: layers compute in float32 or float64, got dtype "
                                f"{dtype}")
    return dtype
