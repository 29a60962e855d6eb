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
from cnnlite.tensor import Tensor

__all__ = ["Optimizer", "caffe_param_groups", "required", "update_in_place"]


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
        groups = list(params) if not isinstance(params, Tensor) else [params]
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty list of parameters")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: Mapping):
        """Add a group of parameters with its own hyper-parameters (e.g. while fine-tuning)."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a parameter group is a dict with a "
                            f"'params' entry, got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError(f"{type(self).__name__}: parameters must be Tensors, got "
                                f"{type(param).__name__}")
            if not param.is_leaf:
                raise ValueError(f"{type(self).__name__}: can only optimise leaf tensors (made "
                                 f"by the user, not by an op); got one of shape {param.shape}")
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or known & {id(p) for p in params}:
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once in the "
                             f"parameter groups")
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown hyper-parameter(s) "
                             f"{sorted(unknown)} in a parameter group; known: "
                             f"{sorted(self.defaults)}")
        full = {**self.defaults, **group, "params": params}
        missing = [key for key, value in full.items() if value is required]
        if missing:
            raise ValueError(f"{type(self).__name__}: parameter group needs {missing}")
        self.check_group(full)
        self.param_groups.append(full)

    def check_group(self, group: dict):
        """Validate a group's hyper-parameters (subclasses raise ValueError on bad values)."""

    def _indexed_params(self):
        index = 0
        for group in self.param_groups:
            for param in group["params"]:
                yield index, param, group
                index += 1

    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradient of every parameter (to ``None``, or to zeros)."""
        for _, param, _ in self._indexed_params():
            if param.grad is not None:
                param.grad = (None if set_to_none
                              else backend.array_module(param.grad).zeros_like(param.grad))

    def step(self, closure: Callable | None = None):
        """Update every parameter that has a gradient; returns ``closure()`` when given (the
        closure re-evaluates the loss and calls backward, for optimisers that need it)."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for index, param, group in self._indexed_params():
                if param.grad is None:
                    continue
                self.update(param, param.grad, self.state.setdefault(index, {}), group)
        return loss

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
        checked before anything changes.
        """
        entries = {key: state_dict[key] for key in state_dict}
        group_values, new_state = {}, {}
        params = {index: param for index, param, _ in self._indexed_params()}
        for key, value in entries.items():
            parts = key.split(".")
            if len(parts) != 3 or parts[0] not in ("param_groups", "state") \
                    or not parts[1].isdigit():
                raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected key {key!r}")
            if parts[0] == "param_groups":
                group_values.setdefault(int(parts[1]), {})[parts[2]] = value
            else:
                new_state.setdefault(int(parts[1]), {})[parts[2]] = value
        self._check_saved_groups(group_values)
        for i, state in new_state.items():
            if i not in params:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter "
                                 f"{i}, but there are only {len(params)} parameters")
            for key, value in state.items():
                if key not in self.scalar_state and np.shape(value) != params[i].shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: state.{i}.{key} "
                                     f"has shape {np.shape(value)}, parameter {i} has shape "
                                     f"{params[i].shape}")
        for g, values in group_values.items():
            group = self.param_groups[g]
            for key, value in values.items():
                if key != "params":
                    group[key] = _like(value, group.get(key, self.defaults.get(key)))
        self.state = {
            i: {key: (_scalar(value) if key in self.scalar_state else
                      backend.to_device(np.array(value, dtype=params[i].dtype, order="C"),
                                        params[i].device))
                    for key, value in state.items()}
            for i, state in new_state.items()}

    def _check_saved_groups(self, group_values):
        name = type(self).__name__
        if sorted(group_values) != list(range(len(self.param_groups))):
            raise ValueError(f"{name}.load_state_dict: the saved state has "
                             f"{len(group_values)} parameter groups, this optimiser "
                             f"{len(self.param_groups)}")
        for g, values in group_values.items():
            saved = len(np.asarray(values.get("params", ())))
            if saved != len(self.param_groups[g]["params"]):
                raise ValueError(f"{name}.load_state_dict: group {g} was saved with {saved} "
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
    """Give a loaded hyper-parameter the Python type of the current one (tuple, bool, ...)."""
    if isinstance(reference, tuple):
        return tuple(float(v) for v in np.asarray(value).ravel())
    value = _scalar(value)
    if isinstance(reference, bool):
        return bool(value)
    if isinstance(reference, float) and value is not None:
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
    weights, biases = [], []
    for name, param in model.named_parameters():
        (biases if name.split(".")[-1] == "bias" else weights).append(param)
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay}]
    if biases:
        groups.append({"params": biases, "lr": lr * bias_lr_mult,
                       "weight_decay": weight_decay * bias_decay_mult})
    return groups


def check_non_negative(optimizer: str, **values):
    """Raise ValueError naming the optimiser if any of ``values`` is negative."""
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{optimizer}: {name} must be >= 0, got {value}")
