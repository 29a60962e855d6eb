"""Caffe solver files: the optimiser, the learning-rate policy and the data layer's transform.

A file of Mishkin et al.'s benchmark is a solver header followed by the network::

    base_lr: 0.01              lr_policy: "step"      gamma: 0.1     stepsize: 100000
    max_iter: 320000           momentum: 0.9          weight_decay: 0.0005
    solver_type: SGD           (or type: "SGD" / "Nesterov": the newer spelling)
    test_iter: 200   test_interval: 1000   snapshot: 10000   snapshot_prefix: "..."
    net_param {
      layer { type: "Data"  include { phase: TRAIN }
              transform_param { scale: 0.04  mirror: true  crop_size: 128
                                mean_value: 104  mean_value: 117  mean_value: 124
                                resize_param { resize_mode: FIT_SMALL_SIZE  height: 144 ... } } }
      layer { type: "Data"  include { phase: TEST } ... }     (mirror: false, its own means)
      ...
    }

(A header may name the network in a separate file instead: ``net: "path"``.) The learning rate
at iteration t follows Caffe's ``SGDSolver::GetLearningRate``:

==========  ===============================================  ============================
fixed       base_lr
step        base_lr * gamma^floor(t / stepsize)              gamma, stepsize
exp         base_lr * gamma^t                                gamma
inv         base_lr * (1 + gamma t)^(-power)                 gamma, power
multistep   base_lr * gamma^(number of stepvalue <= t)       gamma, stepvalue (repeated)
poly        base_lr * (1 - t / max_iter)^power               power, max_iter
sigmoid     base_lr / (1 + exp(-gamma (t - stepsize)))       gamma, stepsize
==========  ===============================================  ============================

A field a policy's formula uses must be in the file (where Caffe would read a missing one as
0). Rates are computed in double precision; Caffe's own float arithmetic agrees to about 1e-7
relative. Training stops at ``max_iter``; past it "poly" stays at 0.

Where cnnlite's optimisers differ from Caffe's:

* SGD: Caffe keeps ``v = momentum v + lr g`` (the rate inside the velocity), cnnlite PyTorch's
  ``b = momentum b + g; p -= lr b``. They agree while the rate is constant; right after a step
  of the "step" policy Caffe still moves with the old rate's velocity, cnnlite at once with
  the new one. Nesterov: the same, and equal at a constant rate.
* Adam: Caffe adds ``delta`` to sqrt(v) before the bias correction, PyTorch after it, so
  Caffe's epsilon is in effect ``delta / sqrt(1 - beta2^t)``: a difference only while
  sqrt(v) is as small as delta.
* AdaDelta and L1 weight decay (``regularization_type: "L1"``) have no cnnlite optimiser: the
  file loads, ``make_optimizer`` says so. ``iter_size`` (gradient accumulation) and
  ``clip_gradients`` are kept as attributes for the training loop to apply.
"""
from __future__ import annotations

import bisect
import difflib
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from cnnlite.data import transforms as T
from cnnlite.errors import OpError
from cnnlite.io.prototxt import Message, parse_prototxt, read_prototxt
from cnnlite.nn.module import Module
from cnnlite.optim import SGD, Adagrad, Adam, Optimizer, RMSprop
from cnnlite.optim.lr_scheduler import LRScheduler
from cnnlite.validate import integer, real

__all__ = ["SolverError", "LR_POLICIES", "SOLVER_TYPES", "LearningRatePolicy", "CaffeLR",
           "CaffeSolver", "load_solver", "data_transform"]

#: Each policy and the fields its formula reads (besides base_lr).
LR_POLICIES = {"fixed": (), "step": ("gamma", "stepsize"), "exp": ("gamma",),
               "inv": ("gamma", "power"), "multistep": ("gamma", "stepvalue"),
               "poly": ("power", "max_iter"), "sigmoid": ("gamma", "stepsize")}

#: Caffe's solver types (``type: "..."``; the old ``solver_type`` enum in capitals).
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")

# The fields of Caffe's SolverParameter; any other is refused as a likely misspelling.
_SOLVER_FIELDS = frozenset("""
    net net_param train_net test_net train_net_param test_net_param train_state test_state
    test_iter test_interval test_compute_loss test_initialization base_lr display average_loss
    max_iter iter_size lr_policy gamma power momentum weight_decay regularization_type stepsize
    stepvalue clip_gradients snapshot snapshot_prefix snapshot_diff snapshot_format solver_mode
    device_id random_seed type delta momentum2 rms_decay debug_info snapshot_after_train
    solver_type layer_wise_reduce weights""".split())


# Marks a field without a default: its absence is an error.
_MISSING = object()


class SolverError(OpError):
    """A solver or data layer that cnnlite cannot use: names the file, line and field."""


@dataclass(frozen=True)
class LearningRatePolicy:
    """A Caffe ``lr_policy`` with its settings; ``policy(t)`` is the rate at iteration t.

    Fields that the policy does not use are None (``stepvalues``: empty).
    """

    name: str
    base_lr: float
    gamma: float | None = None
    power: float | None = None
    stepsize: int | None = None
    stepvalues: tuple[int, ...] = ()
    max_iter: int | None = None

    def __call__(self, iteration: int, base_lr: float | None = None) -> float:
        """The rate at ``iteration`` (>= 0); ``base_lr`` replaces the policy's own (a
        parameter group's ``lr_mult * base_lr``: every formula is linear in it)."""
        t = integer(f"lr_policy {self.name!r}", "iteration", iteration, minimum=0, maximum=None)
        base = self.base_lr if base_lr is None else base_lr
        if self.name == "fixed":
            return base
        if self.name == "step":
            return base * self.gamma ** (t // self.stepsize)
        if self.name == "exp":
            return base * self.gamma ** t
        if self.name == "inv":
            return base * (1 + self.gamma * t) ** -self.power
        if self.name == "multistep":
            return base * self.gamma ** bisect.bisect_right(self.stepvalues, t)
        if self.name == "poly":
            return base * (1 - min(t, self.max_iter) / self.max_iter) ** self.power
        return base / (1 + math.exp(-self.gamma * (t - self.stepsize)))

    @classmethod
    def from_message(cls, solver: Message) -> "LearningRatePolicy":
        """The policy of a parsed solver; a missing or bad field names the file and line."""
        name = _required(solver, "lr_policy")
        if name not in LR_POLICIES:
            close = difflib.get_close_matches(str(name), LR_POLICIES, n=1)
            raise SolverError(f"{solver.where('lr_policy')}: unknown lr_policy {name!r}"
                              f"{_did_you_mean(close)}; Caffe's policies: "
                              f"{', '.join(LR_POLICIES)}")
        settings = {"name": name, "base_lr": _real(solver, "base_lr", minimum=0.0)}
        for field in LR_POLICIES[name]:
            if field not in solver:
                raise SolverError(f"{solver.where()}: lr_policy {name!r} needs the field "
                                  f"{field!r}, which is missing")
        if "gamma" in LR_POLICIES[name]:
            settings["gamma"] = _real(solver, "gamma", minimum=0.0 if name != "sigmoid" else None)
        if "power" in LR_POLICIES[name]:
            settings["power"] = _real(solver, "power")
        if "stepsize" in LR_POLICIES[name]:
            settings["stepsize"] = _integer(solver, "stepsize",
                                            minimum=1 if name == "step" else None)
        if "max_iter" in LR_POLICIES[name]:
            settings["max_iter"] = _integer(solver, "max_iter", minimum=1)
        if name == "multistep":
            values = [integer(solver.where("stepvalue"), "stepvalue", v, minimum=0, maximum=None)
                      for v in solver.all("stepvalue")]
            if any(b <= a for a, b in zip(values, values[1:])):
                # Caffe passes one stepvalue per iteration at most: out of order, or repeated,
                # they would take effect later than their value says.
                raise SolverError(f"{solver.where('stepvalue')}: stepvalue must increase, got "
                                  f"{values}")
            settings["stepvalues"] = tuple(values)
        return cls(**settings)


class CaffeLR(LRScheduler):
    """A scheduler that sets every group's lr by a Caffe ``LearningRatePolicy`` (call
    ``step()`` once per iteration): group lr = policy(t) * the group's lr_mult."""

    def __init__(self, optimizer: Optimizer, policy: LearningRatePolicy):
        self.policy = policy
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return self.policy(iteration, base_lr)


class CaffeSolver:
    """A Caffe solver file, read (see ``load_solver``).

    Attributes: ``source`` (the file, or "<text>"), ``type`` (one of ``SOLVER_TYPES``),
    ``policy`` (a ``LearningRatePolicy``), ``base_lr``; ``momentum``, ``weight_decay``,
    ``momentum2``, ``delta``, ``rms_decay`` with Caffe's defaults (0, 0, 0.999, 1e-8, 0.99);
    ``regularization_type`` ("L2" or "L1"); ``max_iter``, ``test_interval``, ``display``,
    ``average_loss``, ``snapshot``, ``random_seed`` (None when absent); ``iter_size`` (1);
    ``test_iter`` (a list, one per test network); ``test_initialization`` (True);
    ``clip_gradients`` (None: never clip; else the bound on the gradients' global L2 norm);
    ``snapshot_prefix``, ``solver_mode``; ``net`` (the network definition: ``net_param``, the
    file ``net`` names, or the one given; None without one) and ``message`` (the parsed file,
    for any other field).
    """

    def __init__(self, message: Message, net: Message | None = None):
        unknown = [name for name in message.names() if name not in _SOLVER_FIELDS]
        if "layer" in unknown and "base_lr" not in message:
            raise SolverError(f"{message.source}: a network definition without a solver "
                              f"header (no base_lr); cnnlite.io.caffe.load_prototxt reads it")
        if unknown:
            close = difflib.get_close_matches(unknown[0], _SOLVER_FIELDS, n=1)
            raise SolverError(f"{message.where(unknown[0])}: unknown solver field "
                              f"{unknown[0]!r}{_did_you_mean(close)}")
        self.message, self.source = message, message.source
        self.type = _solver_type(message)
        self.policy = LearningRatePolicy.from_message(message)
        self.base_lr = self.policy.base_lr
        self.momentum = _real(message, "momentum", 0.0, minimum=0.0)
        self.weight_decay = _real(message, "weight_decay", 0.0, minimum=0.0)
        self.momentum2 = _real(message, "momentum2", 0.999, minimum=0.0, below=1.0)
        self.delta = _real(message, "delta", 1e-8, minimum=0.0)
        self.rms_decay = _real(message, "rms_decay", 0.99, minimum=0.0, maximum=1.0)
        self.regularization_type = message.get("regularization_type", "L2")
        if self.regularization_type not in ("L1", "L2"):
            raise SolverError(f"{message.where('regularization_type')}: regularization_type "
                              f"must be 'L1' or 'L2', got {self.regularization_type!r}")
        for name in ("max_iter", "test_interval", "display", "average_loss", "snapshot"):
            setattr(self, name, _integer(message, name, None, minimum=0))
        self.random_seed = _integer(message, "random_seed", None)  # -1: Caffe draws one
        self.iter_size = _integer(message, "iter_size", 1, minimum=1)
        self.test_iter = [integer(message.where("test_iter"), "test_iter", v, minimum=0)
                          for v in message.all("test_iter")]
        self.test_initialization = bool(message.get("test_initialization", True))
        clip = _real(message, "clip_gradients", -1.0)
        self.clip_gradients = clip if clip >= 0 else None
        self.snapshot_prefix = message.get("snapshot_prefix")
        self.solver_mode = message.get("solver_mode")
        self.net = net if net is not None else _solver_net(message)

    def learning_rate(self, iteration: int) -> float:
        """The rate of Caffe's ``lr_policy`` at ``iteration`` (see the module's table)."""
        return self.policy(iteration)

    def make_optimizer(self, model: Module | Iterable, multipliers: Mapping | None = None
                       ) -> Optimizer:
        """The cnnlite optimiser of this solver for ``model``'s parameters.

        Parameters
        ----------
        model : nn.Module or iterable of Parameters
        multipliers : dict, optional
            {parameter name: (lr_mult, decay_mult)}; by default ``model.param_multipliers``
            (what ``load_prototxt`` keeps from the layers' ``param { lr_mult decay_mult }``).
            A parameter without an entry gets (1, 1), as in Caffe.

        Parameters with the same multipliers share a group with ``lr = lr_mult * base_lr``
        and ``weight_decay = decay_mult * weight_decay``; the benchmark's biases (2, 0) learn
        twice as fast without decay.
        """
        where = f"{self.source}: solver type {self.type!r}"
        if self.type == "AdaDelta":
            raise SolverError(f"{where}: cnnlite.optim has no AdaDelta; it has SGD, Nesterov, "
                              f"AdaGrad, RMSProp and Adam")
        if self.regularization_type == "L1":
            raise SolverError(f"{self.message.where('regularization_type')}: "
                              f"regularization_type 'L1': cnnlite's optimisers decay weights "
                              f"by L2 only")
        if self.type in ("AdaGrad", "RMSProp") and self.momentum != 0:
            raise SolverError(f"{self.message.where('momentum')}: momentum cannot be used "
                              f"with {self.type} (Caffe refuses it too); got {self.momentum}")
        groups = self._param_groups(model, multipliers)
        lr, decay = self.base_lr, self.weight_decay
        if self.type in ("SGD", "Nesterov"):
            return SGD(groups, lr=lr, momentum=self.momentum, weight_decay=decay,
                       nesterov=self.type == "Nesterov")
        if self.type == "AdaGrad":
            return Adagrad(groups, lr=lr, eps=self.delta, weight_decay=decay)
        if self.type == "RMSProp":
            return RMSprop(groups, lr=lr, alpha=self.rms_decay, eps=self.delta,
                           weight_decay=decay)
        return Adam(groups, lr=lr, betas=(self.momentum, self.momentum2), eps=self.delta,
                    weight_decay=decay)

    def _param_groups(self, model, multipliers) -> list[dict]:
        if isinstance(model, Module):
            named = list(model.named_parameters())
            if multipliers is None:
                multipliers = getattr(model, "param_multipliers", None) or {}
        else:
            named = [(None, param) for param in model]
            if multipliers:
                raise SolverError(f"{self.source}: multipliers are given by parameter name; "
                                  f"pass the model, not its parameters")
        known = {name for name, _ in named}
        stray = sorted(set(multipliers or {}) - known)
        if stray:
            raise SolverError(f"{self.source}: multipliers for {stray}, which the model does "
                              f"not have (it has {len(known)} parameters, e.g. "
                              f"{sorted(filter(None, known))[:4]})")
        groups: dict[tuple[float, float], list] = {}
        for name, param in named:
            lr_mult, decay_mult = (multipliers or {}).get(name, (1.0, 1.0))
            groups.setdefault((float(lr_mult), float(decay_mult)), []).append(param)
        return [{"params": params, "lr": self.base_lr * lr_mult,
                 "weight_decay": self.weight_decay * decay_mult}
                for (lr_mult, decay_mult), params in groups.items()]

    def make_scheduler(self, optimizer: Optimizer) -> CaffeLR:
        """The scheduler of this solver's policy on ``optimizer`` (``step()`` per iteration)."""
        return CaffeLR(optimizer, self.policy)

    def transform(self, phase: str = "TRAIN", rng: np.random.Generator | None = None,
                  input_order: str = "rgb", resize: bool = True) -> T.Compose:
        """The data layer's ``transform_param`` for ``phase`` as cnnlite transforms (see
        ``data_transform``)."""
        if self.net is None:
            raise SolverError(f"{self.source}: the solver has no net_param and names no net "
                              f"file that exists; pass net= to load_solver")
        return data_transform(self.net, phase, rng=rng, input_order=input_order, resize=resize)

    def __repr__(self):
        return (f"CaffeSolver({self.source!r}, type={self.type!r}, policy={self.policy}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay}, "
                f"max_iter={self.max_iter})")


def load_solver(source: str | Path | Message, net: str | Path | Message | None = None
                ) -> CaffeSolver:
    """Read a Caffe solver: a file's path, its text, or a parsed ``Message``.

    ``net`` is the network definition (a path, text or Message) when the solver has no
    ``net_param``; a solver's ``net: "file"`` is looked for beside the solver file. Unknown
    fields, policies and solver types raise ``SolverError`` naming the file and line.

    >>> solver = load_solver('base_lr: 0.01 lr_policy: "step" gamma: 0.1 stepsize: 100000 '
    ...                      'momentum: 0.9 weight_decay: 0.0005 max_iter: 320000')
    >>> solver.learning_rate(99_999), solver.learning_rate(100_000)
    (0.01, 0.001)
    """
    return CaffeSolver(_read(source), None if net is None else _read(net))


def data_transform(net: Message, phase: str = "TRAIN", rng: np.random.Generator | None = None,
                   input_order: str = "rgb", resize: bool = True) -> T.Compose:
    """The ``transform_param`` of ``net``'s data layer in ``phase`` as cnnlite transforms.

    In Caffe's order: resize (``resize_param`` FIT_SMALL_SIZE: ``ResizeShortSide``; WARP:
    ``resize_bilinear``; bilinear where the file may ask for cubic; ``resize=False`` skips
    it), crop to ``crop_size``
    (random in TRAIN, central in TEST), ``mirror`` (a coin flip in both phases, as Caffe's
    DataTransformer does), then ``scale * (x - mean_value)`` per channel (``CaffeTransform``;
    one mean_value serves all three channels). Images arrive as cnnlite's loaders give them,
    RGB, and are reversed to the BGR order that Caffe's means refer to (``input_order="bgr"``
    when they are BGR already).
    """
    if phase not in ("TRAIN", "TEST"):
        raise SolverError(f"data_transform: phase must be 'TRAIN' or 'TEST', got {phase!r}")
    layers = [layer for layer in net.all("layer") if isinstance(layer, Message)
              and str(layer.get("type", "")).endswith("Data") and _included(layer, phase)]
    if not layers:
        raise SolverError(f"{net.where()}: no data layer for phase {phase} (a layer of type "
                          f"'Data', 'ImageData', ... included in {phase})")
    param = layers[0].message("transform_param")
    where = param.where
    if "mean_file" in param or param.get("force_gray", False):
        field = "mean_file" if "mean_file" in param else "force_gray"
        raise SolverError(f"{where(field)}: transform_param {field} is not supported; give "
                          f"mean_value (B, G, R) for colour images")
    steps = []
    if resize and param.all("resize_param"):
        if len(param.all("resize_param")) > 1:
            raise SolverError(f"{where('resize_param')}: several resize_param (a random choice "
                              f"of scales) have no cnnlite transform; pass resize=False")
        steps.append(_resize(param.message("resize_param")))
    crop = _integer(param, "crop_size", 0, minimum=0)
    if crop:
        steps.append(T.RandomCrop(crop, rng=rng) if phase == "TRAIN" else T.CenterCrop(crop))
    if param.get("mirror", False):
        steps.append(T.RandomHorizontalFlip(0.5, rng=rng))
    means = [real(where("mean_value"), "mean_value", v) for v in param.all("mean_value")] or [0.0]
    if len(means) not in (1, 3):
        raise SolverError(f"{where('mean_value')}: expected 1 or 3 mean_value (B, G, R), got "
                          f"{len(means)}")
    steps.append(T.CaffeTransform(scale=_real(param, "scale", 1.0),
                                  mean_bgr=means * (3 // len(means)), input_order=input_order))
    return T.Compose(steps)


# --- helpers -----------------------------------------------------------------------------------

def _read(source) -> Message:
    if isinstance(source, Message):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.endswith((".prototxt", ".txt", ".solver"))):
        if not Path(source).is_file():
            raise SolverError(f"load_solver: no such file {str(source)!r}")
        return read_prototxt(source)
    if isinstance(source, str):
        return parse_prototxt(source)
    raise SolverError(f"load_solver: expected a path, prototxt text or a Message, got "
                      f"{type(source).__name__}")


def _solver_net(message: Message) -> Message | None:
    """The network of a solver: ``net_param``, or the file ``net`` names (beside the solver
    file); None when neither is there."""
    if "net_param" in message:
        return message.message("net_param")
    if "net" in message:
        path = Path(message.source).parent / str(message.get("net"))
        return read_prototxt(path) if path.is_file() else None
    return None


def _solver_type(message: Message) -> str:
    """``type`` (a string, newer Caffe) or ``solver_type`` (the old enum), matched to
    ``SOLVER_TYPES`` without regard to case; SGD when neither is given."""
    given = {field: str(message.get(field)) for field in ("type", "solver_type")
             if field in message}
    by_lower = {name.lower(): name for name in SOLVER_TYPES}
    types = {field: by_lower.get(value.lower()) for field, value in given.items()}
    for field, name in types.items():
        if name is None:
            raise SolverError(f"{message.where(field)}: unknown solver {field} "
                              f"{given[field]!r}; Caffe's: {', '.join(SOLVER_TYPES)}")
    if len(set(types.values())) > 1:
        raise SolverError(f"{message.where('type')}: type {given['type']!r} and solver_type "
                          f"{given['solver_type']!r} disagree")
    return next(iter(types.values()), "SGD")


def _included(layer: Message, phase: str) -> bool:
    """Caffe's rule on ``include { phase }`` / ``exclude { phase }`` (other conditions of a
    rule, such as stages, are not looked at)."""
    includes, excludes = layer.all("include"), layer.all("exclude")
    if includes:
        return any(rule.get("phase", phase) == phase for rule in includes)
    return not any(rule.get("phase", phase) == phase for rule in excludes)


def _resize(param: Message):
    """``resize_param``: FIT_SMALL_SIZE (the short side to ``height``) or WARP (to ``height`` x
    ``width``), applied to every image."""
    mode, prob = param.get("resize_mode", "WARP"), param.get("prob", 1.0)
    height = _integer(param, "height", minimum=1)
    width = _integer(param, "width", minimum=1)
    if mode == "WARP" and prob == 1.0:
        return functools.partial(T.resize_bilinear, size=(height, width))
    if mode == "FIT_SMALL_SIZE" and prob == 1.0 and height == width:
        return T.ResizeShortSide(height)
    raise SolverError(f"{param.where()}: resize_param {mode} {height}x{width} with prob {prob} "
                      f"has no cnnlite transform (only WARP, or FIT_SMALL_SIZE to a square, "
                      f"always applied); resize beforehand and pass resize=False")


def _required(message: Message, field: str):
    if field not in message:
        raise SolverError(f"{message.where()}: the solver field {field!r} is missing")
    return message.get(field)


def _real(message: Message, field: str, default=_MISSING, **bounds) -> float:
    """Field ``field`` as a checked float; ``default`` when absent (required without one)."""
    if field not in message and default is not _MISSING:
        return default
    return real(message.where(field), field, _required(message, field), **bounds)


def _integer(message: Message, field: str, default=_MISSING, minimum: int | None = None):
    """Field ``field`` as a checked int; ``default`` when absent (required without one)."""
    if field not in message and default is not _MISSING:
        return default
    return integer(message.where(field), field, _required(message, field), minimum=minimum,
                   maximum=None)


def _did_you_mean(matches: list[str]) -> str:
    return f" (did you mean {matches[0]!r}?)" if matches else ""
