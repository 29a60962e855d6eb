"""Learning-rate policies: how the learning rate changes over training.

Every policy comes twice:

* a pure function ``policy_lr(iteration, base_lr, ...) -> lr`` (for plots and reasoning);
* a scheduler class that sets each parameter group's ``lr`` from its own base lr (so Caffe's
  2x bias learning rate stays 2x), with ``step()``, ``get_last_lr()``, ``lr_at(iteration)``
  and ``state_dict()``/``load_state_dict()``.

A scheduler counts calls of ``step()``: call it once per iteration for Caffe-style policies
(Mishkin et al. count iterations) or once per epoch for PyTorch-style ones; the formulas do
not care. Creating a scheduler sets the lr of iteration 0.

======================  ====================================================================
step                    base * gamma^floor(t / step_size)                  (Caffe "step")
multistep               base * gamma^(number of milestones <= t)
exponential             base * gamma^t
poly                    base * (1 - min(t, T) / T)^power; power 1 "linear", 2 "square",
                        0.5 "square root" (Mishkin et al.'s best policies)
cosine                  min + (base - min) * (1 + cos(pi t / T)) / 2
linear cosine           base * ((alpha + (T - t) / T) * (1 + cos(2 pi p t / T)) / 2 + beta),
                        t clipped to T (Bello et al., "Neural Optimizer Search")
linear warm-up          any of the above times start + (1 - start) * min(t, W) / W
======================  ====================================================================
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable

import numpy as np

from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.optim.optimizer import Optimizer
from cnnlite.validate import integer, probability, real

__all__ = ["step_lr", "multistep_lr", "exponential_lr", "poly_lr", "cosine_lr",
           "linear_cosine_lr", "warmup_factor", "POLY_POWERS", "LRScheduler", "StepLR",
           "MultiStepLR", "ExponentialLR", "PolyLR", "CosineAnnealingLR", "LinearCosineLR",
           "LinearWarmup"]

#: The poly powers of Mishkin et al.'s learning-rate experiment, by their name there.
POLY_POWERS = {"linear": 1.0, "square": 2.0, "square_root": 0.5}


# --- the policies as pure functions ----------------------------------------------------------

def step_lr(iteration: int, base_lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` every ``step_size`` iterations."""
    step_size = _iterations("step_lr", "step_size", step_size)
    return base_lr * gamma ** (iteration // step_size)


def multistep_lr(iteration: int, base_lr: float, milestones: Iterable[int],
                 gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` at each milestone."""
    return base_lr * gamma ** bisect.bisect_right(sorted(milestones), iteration)


def exponential_lr(iteration: int, base_lr: float, gamma: float) -> float:
    """Multiply by ``gamma`` every iteration."""
    return base_lr * gamma ** iteration


def poly_lr(iteration: int, base_lr: float, max_iter: int, power: float | str = 1.0) -> float:
    """Polynomial decay to 0 at ``max_iter`` (0 afterwards). ``power`` may be a name from
    ``POLY_POWERS``: "linear", "square", "square_root"."""
    power = _poly_power(power)
    max_iter = _iterations("poly_lr", "max_iter", max_iter)
    return base_lr * (1 - min(iteration, max_iter) / max_iter) ** power


def cosine_lr(iteration: int, base_lr: float, T_max: int, eta_min: float = 0.0) -> float:
    """Half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` iterations (SGDR
    without restarts). As in PyTorch it is not clipped: past ``T_max`` it rises again."""
    T_max = _iterations("cosine_lr", "T_max", T_max)
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * iteration / T_max)) / 2


def linear_cosine_lr(iteration: int, base_lr: float, decay_steps: int,
                     num_periods: float = 0.5, alpha: float = 0.0, beta: float = 0.001) -> float:
    """Linear decay times a cosine (Bello et al., 2017): ``num_periods`` cosine periods over
    ``decay_steps``; ``alpha`` and ``beta`` shift the linear part and the result up."""
    decay_steps = _iterations("linear_cosine_lr", "decay_steps", decay_steps)
    t = min(iteration, decay_steps)
    linear = (decay_steps - t) / decay_steps
    cosine = (1 + math.cos(2 * math.pi * num_periods * t / decay_steps)) / 2
    return base_lr * ((alpha + linear) * cosine + beta)


def warmup_factor(iteration: int, warmup_iters: int, start_factor: float = 0.0) -> float:
    """The warm-up multiplier: from ``start_factor`` up to 1 linearly over ``warmup_iters``."""
    warmup_iters = integer("warmup_factor", "warmup_iters", warmup_iters, minimum=0, maximum=None)
    if warmup_iters == 0:
        return 1.0
    return start_factor + (1 - start_factor) * min(iteration, warmup_iters) / warmup_iters


def _poly_power(power, policy="poly"):
    if isinstance(power, str):
        if power not in POLY_POWERS:
            raise OpError(f"{policy}: unknown power {power!r}; named powers: "
                          f"{', '.join(POLY_POWERS)}")
        return POLY_POWERS[power]
    return real(policy, "power", power, minimum=0.0)


def _iterations(policy: str, name: str, value) -> int:
    """A positive whole number of iterations: the divisor of a policy's formula."""
    return integer(policy, name, value, minimum=1, maximum=None)


def _factor(policy: str, name: str, value) -> float:
    """A finite multiplier >= 0 (a negative gamma would flip the learning rate's sign)."""
    return real(policy, name, value, minimum=0.0)


# --- schedulers ------------------------------------------------------------------------------

class LRScheduler:
    """Base class: sets every group's ``lr`` to ``lr(base_lr, iteration)`` of the subclass.

    The base learning rates are the groups' ``lr`` when the first scheduler was attached
    (kept in each group as ``initial_lr``).
    """

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise ArgumentTypeError(f"{type(self).__name__}: expected an Optimizer, got "
                                    f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.iteration = 0
        self._apply()

    def lr(self, base_lr: float, iteration: int) -> float:
        """The learning rate at ``iteration`` for a group whose base rate is ``base_lr``."""
        raise NotImplementedError(f"{type(self).__name__} must implement lr(base_lr, iteration)")

    def lr_at(self, iteration: int) -> list[float]:
        """The learning rate of every group at ``iteration`` (changes nothing)."""
        return [self.lr(base_lr, iteration) for base_lr in self.base_lrs]

    def _apply(self):
        self._last_lr = self.lr_at(self.iteration)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def step(self):
        """Advance one iteration (or epoch) and set the groups' learning rates."""
        self.iteration += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` (or the constructor) set, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """``{"iteration": int, "base_lrs": array}``: NumPy-saveable, no pickle."""
        return {"iteration": self.iteration, "base_lrs": np.array(self.base_lrs)}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()``; both values are checked before either is set."""
        where = f"{type(self).__name__}.load_state_dict"
        saved = np.asarray(state_dict["base_lrs"])
        if saved.dtype.kind not in "iuf":
            raise OpError(f"{where}: base_lrs must be numbers, got dtype {saved.dtype}")
        base_lrs = [real(where, "base_lrs", v, minimum=0.0) for v in saved.ravel().tolist()]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise OpError(f"{where}: saved for {len(base_lrs)} parameter groups, the optimiser "
                          f"has {len(self.optimizer.param_groups)}")
        iteration = np.asarray(state_dict["iteration"])
        iteration = integer(where, "iteration", iteration.item() if iteration.ndim == 0
                            else iteration, minimum=0, maximum=None)
        self.iteration, self.base_lrs = iteration, base_lrs
        self._apply()

    def __repr__(self):
        settings = ", ".join(f"{key}={value}" for key, value in vars(self).items()
                             if key not in ("optimizer", "base_lrs", "iteration", "_last_lr",
                                            "scheduler"))
        return f"{type(self).__name__}({settings})"


class StepLR(LRScheduler):
    """``lr = base * gamma^floor(t / step_size)``; Caffe's "step" policy."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _iterations("StepLR", "step_size", step_size)
        self.gamma = _factor("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return step_lr(iteration, base_lr, self.step_size, self.gamma)


class MultiStepLR(LRScheduler):
    """``lr = base * gamma^(number of milestones <= t)``; Caffe's "multistep"."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise ArgumentTypeError(f"MultiStepLR: milestones must be a list of iterations, "
                                    f"got {type(milestones).__name__} {milestones!r}")
        self.milestones = sorted(integer("MultiStepLR", "milestones", m, minimum=0, maximum=None)
                                 for m in milestones)
        self.gamma = _factor("MultiStepLR", "gamma", gamma)
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return multistep_lr(iteration, base_lr, self.milestones, self.gamma)


class ExponentialLR(LRScheduler):
    """``lr = base * gamma^t``; Caffe's "exp"."""

    def __init__(self, optimizer: Optimizer, gamma: float):
        self.gamma = _factor("ExponentialLR", "gamma", gamma)
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return exponential_lr(iteration, base_lr, self.gamma)


class PolyLR(LRScheduler):
    """``lr = base * (1 - min(t, max_iter) / max_iter)^power``; Caffe's "poly".

    ``power`` 1 ("linear"), 2 ("square") or 0.5 ("square_root") are the policies of Mishkin
    et al., where linear decay beat the step policy by 2 points top-1.
    """

    def __init__(self, optimizer: Optimizer, max_iter: int, power: float | str = 1.0):
        self.max_iter = _iterations("PolyLR", "max_iter", max_iter)
        self.power = _poly_power(power, "PolyLR")
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return poly_lr(iteration, base_lr, self.max_iter, self.power)


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base - eta_min) * (1 + cos(pi t / T_max)) / 2`` (Loshchilov and
    Hutter's SGDR without restarts)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        self.T_max = _iterations("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = real("CosineAnnealingLR", "eta_min", eta_min, minimum=0.0)
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return cosine_lr(iteration, base_lr, self.T_max, self.eta_min)


class LinearCosineLR(LRScheduler):
    """Linear cosine decay (Bello et al., 2017); see ``linear_cosine_lr``."""

    def __init__(self, optimizer: Optimizer, decay_steps: int, num_periods: float = 0.5,
                 alpha: float = 0.0, beta: float = 0.001):
        self.decay_steps = _iterations("LinearCosineLR", "decay_steps", decay_steps)
        self.num_periods = real("LinearCosineLR", "num_periods", num_periods, minimum=0.0)
        self.alpha = real("LinearCosineLR", "alpha", alpha, minimum=0.0)
        self.beta = real("LinearCosineLR", "beta", beta, minimum=0.0)
        super().__init__(optimizer)

    def lr(self, base_lr, iteration):
        return linear_cosine_lr(iteration, base_lr, self.decay_steps, self.num_periods,
                                self.alpha, self.beta)


class LinearWarmup(LRScheduler):
    """Linear warm-up in front of another policy: the wrapped policy's lr times a factor that
    rises from ``start_factor`` to 1 over ``warmup_iters`` (Goyal et al., 2017).

    ``scheduler`` is the policy to wrap, or an Optimizer for a constant lr after warm-up.
    The wrapped policy keeps counting from 0, so a step at iteration 100 stays at 100.
    """

    def __init__(self, scheduler: LRScheduler | Optimizer, warmup_iters: int,
                 start_factor: float = 0.0):
        self.warmup_iters = integer("LinearWarmup", "warmup_iters", warmup_iters, minimum=0,
                                    maximum=None)
        self.start_factor = probability("LinearWarmup", "start_factor", start_factor)
        self.scheduler = scheduler if isinstance(scheduler, LRScheduler) else None
        super().__init__(scheduler.optimizer if self.scheduler else scheduler)

    def lr(self, base_lr, iteration):
        after = base_lr if self.scheduler is None else self.scheduler.lr(base_lr, iteration)
        return after * warmup_factor(iteration, self.warmup_iters, self.start_factor)

    def __repr__(self):
        return (f"LinearWarmup({self.scheduler!r}, warmup_iters={self.warmup_iters}, "
                f"start_factor={self.start_factor})")
