"""``Optimizer``: the base class that owns parameter groups and per-parameter state.

An optimiser sees a list of *parameter groups*, each a dict with its own ``params`` and its
own hyper-parameters; what a group leaves out comes from the optimiser's defaults. Per-group
settings are how Caffe's ``lr_mult``/``decay_mult`` are written here (see
``caffe_param_groups``)::

    SGD([{"params": weights, "weight_decay": 5e-4},
         {"params": biases, "lr": 0.02, "weight_decay": 0.0}], lr=0.01, momentum=0.9)

A subclass writes only the update rule of one parameter, ``update(param, grad, state,
group)``, on raw arrays; ``step()`` loops over the groups outside the graph (``no_grad``).
Where the rule is a kernel of the registry (``sgd_momentum_update``, ``adam_update``: one pass
over memory, on the CPU or a GPU), ``update_in_place`` runs it on the parameter's array.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from cnnlite import backend
from cnnlite.autograd import enable_grad, no_grad
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.nn.module import Module
from cnnlite.tensor import Tensor, checked_gradient, same_device
from cnnlite.validate import boolean, integer, real

__all__ = ["Optimizer", "caffe_param_groups", "required", "update_in_place"]

_PARAMETER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Optimizer:
    """Base class of optimisers.

    Parameters
    ----------
    params : iterable of Tensors, or of dicts
        The tensors to optimise, or parameter groups ``{"params": [...], "lr": ..., ...}``.
    defaults : dict
        Hyper-parameters that a group does not set itself.

    Attributes
    ----------
    param_groups : list of dict
    state : dict
        Per-parameter state (momentum buffers, running averages, step counts), keyed by the
        parameter's position in ``param_groups`` order, as in ``state_dict()``.
    """

    #: State entries that are Python scalars (everything else is an array shaped like the param).
    scalar_state = ("step",)

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        groups = self._as_list(params, "params")
        if not groups:
            raise OpError(f"{type(self).__name__}: got an empty list of parameters (has the "
                          f"model any? A generator such as model.parameters() is used up "
                          f"after one pass)")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _as_list(self, params, what: str) -> list:
        """``params`` (Tensors, or parameter groups) as a list; a Module, the commonest slip,
        is named with its fix."""
        name = type(self).__name__
        if isinstance(params, Module):
            raise ArgumentTypeError(f"{name}: {what} is a {type(params).__name__} module; pass "
                                    f"model.parameters() (its Parameters), not the model")
        if isinstance(params, (Tensor, Mapping)):
            return [params]
        try:
            return list(params)
        except TypeError:
            raise ArgumentTypeError(f"{name}: {what} must be an iterable of Tensors or of "
                                    f"parameter-group dicts, got {type(params).__name__}") from None

    def add_param_group(self, group: Mapping):
        """Add a group of parameters with its own hyper-parameters (e.g. while fine-tuning)."""
        name = type(self).__name__
        if not isinstance(group, Mapping) or "params" not in group:
            raise ArgumentTypeError(f"{name}: a parameter group is a dict with a 'params' entry, "
                                    f"got {type(group).__name__}")
        params = self._as_list(group["params"], "a group's 'params'")
        for param in params:
            _check_parameter(name, param)
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or known & {id(p) for p in params}:
            raise OpError(f"{name}: a parameter appears more than once in the parameter groups")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise OpError(f"{name}: unknown hyper-parameter(s) {sorted(unknown)} in a parameter "
                          f"group; known: {sorted(self.defaults)}")
        full = {**self.defaults, **group, "params": params}
        missing = [key for key, value in full.items() if value is required]
        if missing:
            raise OpError(f"{name}: parameter group needs {missing}")
        if "initial_lr" in full:
            full["initial_lr"] = real(name, "initial_lr", full["initial_lr"], minimum=0.0)
        self.check_group(full)
        self.param_groups.append(full)

    def check_group(self, group: dict):
        """Validate a group's hyper-parameters in place: subclasses replace each value by its
        checked form (``cnnlite.validate``) and raise ``OpError`` naming the bad one."""

    def _indexed_params(self):
        index = 0
        for group in self.param_groups:
            for param in group["params"]:
                yield index, param, group
                index += 1

    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradient of every parameter (to ``None``, or to zeros)."""
        set_to_none = boolean(f"{type(self).__name__}.zero_grad", "set_to_none", set_to_none)
        for _, param, _ in self._indexed_params():
            if param.grad is not None:
                param.grad = (None if set_to_none
                              else backend.array_module(param.grad).zeros_like(param.grad))

    def step(self, closure: Callable | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` when given (the
        closure re-evaluates the loss and calls backward, for optimisers that need it)."""
        loss = None
        if closure is not None and not callable(closure):
            raise ArgumentTypeError(f"{type(self).__name__}.step: closure must be a function "
                                    f"(or None), got {type(closure).__name__}")
        if closure is not None:
            with enable_grad():
                loss = closure()
        # Every gradient is checked before the first parameter changes: a bad one leaves the
        # model as it was, not half a step further.
        updates = [(index, param, self._checked_step_inputs(index, param), group)
                   for index, param, group in self._indexed_params() if param.grad is not None]
        with no_grad():
            for index, param, grad, group in updates:
                self.update(param, grad, self.state.setdefault(index, {}), group)
        return loss

    def _checked_step_inputs(self, index: int, param: Tensor):
        """The gradient of parameter ``index``, once it and the state are known to fit it.

        Every optimiser passes here before its kernel reads the gradient and the state
        element by element alongside the parameter: a gradient of another shape would be read
        past its end (a crash, or garbage written into the parameter), and so would state
        kept from before the parameter's ``.data`` was replaced by an array of another shape.
        The gradient's float width may differ from the parameter's: the update converts it.
        """
        where = f"{type(self).__name__}.step: parameter {index}"
        _check_parameter(type(self).__name__, param, where)
        grad = checked_gradient(param, param.grad, where)
        data = param.data
        for key, value in self.state.get(index, {}).items():
            if key not in self.scalar_state and (value.shape != data.shape
                                                 or value.dtype != data.dtype
                                                 or not same_device(value, data)):
                raise OpError(f"{where}: its state {key!r} is {tuple(value.shape)} "
                              f"{value.dtype} on {backend.device_of(value)}, the parameter "
                              f"{param.shape} {param.dtype} on {param.device}; was its .data "
                              f"replaced, or the model moved or cast? Build the optimiser "
                              f"after changing the parameters")
        return grad

    def update(self, param: Tensor, grad, state: dict, group: dict):
        """Change ``param`` in place given its gradient ``grad`` (a raw array)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    # --- saving and loading ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyper-parameters and state as a flat dict of NumPy arrays and Python scalars, so
        that ``np.savez(path, **optimizer.state_dict())`` saves it without pickle:

        * ``param_groups.{g}.{name}``: each group's hyper-parameters (tuples become arrays),
          and ``param_groups.{g}.params``: the indices of its parameters;
        * ``state.{i}.{name}``: parameter ``i``'s state (``step``, ``momentum_buffer``, ...).
        """
        result = {}
        index = 0
        for g, group in enumerate(self.param_groups):
            for key, value in group.items():
                if key == "params":
                    continue
                result[f"param_groups.{g}.{key}"] = (np.array(value, dtype=np.float64)
                                                     if isinstance(value, tuple) else value)
            count = len(group["params"])
            result[f"param_groups.{g}.params"] = np.arange(index, index + count)
            index += count
        for i, state in sorted(self.state.items()):
            for key, value in state.items():
                result[f"state.{i}.{key}"] = (value if key in self.scalar_state
                                              else np.array(backend.to_device(value, "cpu")))
        return result

    def load_state_dict(self, state_dict: Mapping):
        """Restore what ``state_dict()`` returned (or ``np.load`` of its npz file).

        The groups must hold the same number of parameters as when it was saved; everything is
        checked (keys, the hyper-parameters' values, the state's shapes and dtypes) before
        anything changes.
        """
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) and not hasattr(state_dict, "files"):
            raise ArgumentTypeError(f"{name}.load_state_dict: expected a dict (or an npz file), "
                                    f"got {type(state_dict).__name__}")
        group_values, saved_state = {}, {}
        params = {index: param for index, param, _ in self._indexed_params()}
        for key in state_dict:
            parts = str(key).split(".")
            if len(parts) != 3 or parts[0] not in ("param_groups", "state") \
                    or not parts[1].isdigit():
                raise OpError(f"{name}.load_state_dict: unexpected key {key!r}")
            target = group_values if parts[0] == "param_groups" else saved_state
            target.setdefault(int(parts[1]), {})[parts[2]] = state_dict[key]
        self._check_saved_groups(group_values)
        groups = [self._loaded_group(g, values) for g, values in sorted(group_values.items())]
        new_state = {i: self._loaded_state(i, params.get(i), values)
                     for i, values in saved_state.items()}
        for group, loaded in zip(self.param_groups, groups):
            group.update(loaded)
        self.state = new_state

    def _loaded_group(self, g: int, values: dict) -> dict:
        """Group ``g``'s saved hyper-parameters, in their Python types, checked."""
        group = self.param_groups[g]
        known = set(self.defaults) | {"params", "initial_lr"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OpError(f"{type(self).__name__}.load_state_dict: unknown hyper-parameter(s) "
                          f"{unknown} in param_groups.{g}; known: {sorted(self.defaults)}")
        loaded = {key: _like(value, group.get(key, self.defaults.get(key)))
                  for key, value in values.items() if key != "params"}
        candidate = {**group, **loaded}
        if "initial_lr" in candidate:
            candidate["initial_lr"] = real(type(self).__name__, "initial_lr",
                                           candidate["initial_lr"], minimum=0.0)
        self.check_group(candidate)
        return {key: value for key, value in candidate.items() if key != "params"}

    def _loaded_state(self, i: int, param, values: dict) -> dict:
        """Parameter ``i``'s saved state as arrays like the parameter (and scalar steps)."""
        where = f"{type(self).__name__}.load_state_dict"
        if param is None:
            raise OpError(f"{where}: state for parameter {i}, but there are only "
                          f"{sum(len(g['params']) for g in self.param_groups)} parameters")
        state = {}
        for key, value in values.items():
            if key in self.scalar_state:
                state[key] = integer(where, f"state.{i}.{key}", _scalar(value), minimum=0,
                                     maximum=None)
                continue
            array = np.asarray(backend.to_device(value, "cpu") if backend.is_cupy_array(value)
                               else value)
            if array.dtype.kind not in "biuf":
                raise OpError(f"{where}: state.{i}.{key} has dtype {array.dtype}; optimiser "
                              f"state holds real numbers")
            if array.shape != param.shape:
                raise OpError(f"{where}: state.{i}.{key} has shape {array.shape}, parameter "
                              f"{i} has shape {param.shape}")
            state[key] = backend.to_device(np.array(array, dtype=param.dtype, order="C"),
                                           param.device)
        return state

    def _check_saved_groups(self, group_values):
        name = type(self).__name__
        if sorted(group_values) != list(range(len(self.param_groups))):
            raise OpError(f"{name}.load_state_dict: the saved state has "
                             f"{len(group_values)} parameter groups, this optimiser "
                             f"{len(self.param_groups)}")
        for g, values in group_values.items():
            saved = np.asarray(values.get("params", ())).size
            if saved != len(self.param_groups[g]["params"]):
                raise OpError(f"{name}.load_state_dict: group {g} was saved with {saved} "
                                 f"parameters, this optimiser has "
                                 f"{len(self.param_groups[g]['params'])}")

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines.extend(f"    {key}: {value}" for key, value in sorted(group.items())
                         if key != "params")
        lines.append(")")
        return "\n".join(lines)


def update_in_place(param: Tensor, update: Callable):
    """Change ``param`` in place by ``update(array)``, a call of an optimiser kernel that
    writes into ``array``, a contiguous array holding param's values.

    The version of ``param`` goes up, as with ``param.sub_(...)``, so that a graph that saved
    the old values for its backward pass reports the change instead of using them. The kernels
    write straight into contiguous memory: a parameter whose array is a strided view (of a
    transposed array, say) is updated through a contiguous copy that is written back.
    """
    param.mark_changed_in_place("optimizer update")
    data = param.data
    if data.flags.c_contiguous:
        update(data)
    else:
        array = backend.array_module(data).ascontiguousarray(data)
        update(array)
        data[...] = array


class _RequiredType:
    def __repr__(self):
        return "<required>"


#: Placeholder default for a hyper-parameter every group must set (SGD's lr).
required = _RequiredType()


def _scalar(value):
    """A scalar back from a 0-d array (what ``np.load`` gives for a saved Python number)."""
    return value.item() if isinstance(value, np.ndarray) else value


def _like(value, reference):
    """A loaded hyper-parameter in the Python type of the current one (tuple, bool, float);
    ``check_group`` then checks its value."""
    if isinstance(reference, tuple):
        return tuple(np.asarray(value).ravel().tolist())
    value = _scalar(value)
    if isinstance(reference, bool) and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(reference, float) and isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, bool):
        return float(value)
    return value


def caffe_param_groups(model, lr: float, weight_decay: float, bias_lr_mult: float = 2.0,
                       bias_decay_mult: float = 0.0) -> list[dict]:
    """Parameter groups with Caffe's usual multipliers: biases learn at ``bias_lr_mult * lr``
    (2x) with ``bias_decay_mult * weight_decay`` (none); all other parameters get ``lr`` and
    ``weight_decay``. A bias is a parameter whose name ends in ``bias``.

    Used as ``SGD(caffe_param_groups(model, lr=0.01, weight_decay=5e-4), lr=0.01,
    momentum=0.9)``: CaffeNet's solver.
    """
    if not isinstance(model, Module):
        raise ArgumentTypeError(f"caffe_param_groups: model must be an nn.Module, got "
                                f"{type(model).__name__}")
    weights, biases = [], []
    for name, param in model.named_parameters():
        (biases if name.split(".")[-1] == "bias" else weights).append(param)
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay}]
    if biases:
        groups.append({"params": biases, "lr": lr * bias_lr_mult,
                       "weight_decay": weight_decay * bias_decay_mult})
    return groups


def _check_parameter(optimizer: str, param, where: str | None = None) -> None:
    """A parameter an optimiser can update: a leaf Tensor of float32 or float64 (the kernels'
    types; an integer parameter would be stepped by a learning rate rounded to 0)."""
    where = where or optimizer
    if not isinstance(param, Tensor):
        raise ArgumentTypeError(f"{where}: parameters must be Tensors, got "
                                f"{type(param).__name__}")
    if not param.is_leaf:
        raise OpError(f"{where}: can only optimise leaf tensors (made by the user, not by an "
                      f"op); got one of shape {param.shape}")
    if param.dtype not in _PARAMETER_DTYPES:
        raise ArgumentTypeError(f"{where}: can only optimise float32 and float64 parameters, "
                                f"got one of dtype {param.dtype} and shape {param.shape}")


def check_hyper_parameters(optimizer: str, group: dict, **bounds) -> None:
    """Replace each named hyper-parameter of ``group`` by its checked float (``validate.real``,
    with the keyword bounds given for it, e.g. ``lr=dict(minimum=0.0)``)."""
    for name, limits in bounds.items():
        group[name] = real(optimizer, name, group[name], **limits)
