"""What a training checkpoint holds, and putting it back for an exact resume.

A run continues exactly as if it had never stopped only if *everything* that the next step
depends on comes back:

=============  ==============================================================
``model``      parameters and buffers (BN running statistics)
``optimizer``  hyper-parameters and per-parameter state (momentum, Adam moments, step counts)
``schedule``   the LR schedule's position
``loader``     the shuffle generator (the order of the next epoch)
``random``     every other random generator in use (dropout, random crops, ...)
``progress``   epochs and steps done
``history``    the numbers so far, so the curves continue
``inference``  (optional) what using the trained model needs: its registry name, sizes and
               the preprocessing of its input images (read by ``cnnlite.predict``)
=============  ==============================================================

Loading checks the checkpoint against the objects first (model keys and shapes, optimiser
and schedule types) and changes nothing when it does not fit; should a part still fail to
load, the parts already loaded are put back as they were.
"""
from __future__ import annotations

import os
import warnings

from cnnlite import checkpoint
from cnnlite.checkpoint import CheckpointError
from cnnlite.train.state import generator_states, restore_generator_states

__all__ = ["training_state", "save_training_state", "load_training_state"]

PARTS = ("info", "model", "optimizer", "schedule", "loader", "random", "progress", "history")


def _type_name(obj):
    return None if obj is None else type(obj).__name__


def training_state(model, optimizer, schedule, loader, generators, history, epoch: int,
                   step: int, inference: dict | None = None) -> dict:
    """The nested dict a training checkpoint holds (see the table above)."""
    state = {
        "info": {"model": _type_name(model), "optimizer": _type_name(optimizer),
                 "schedule": _type_name(schedule)},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict() if schedule is not None else None,
        "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
        "random": generator_states(generators),
        "progress": {"epoch": int(epoch), "step": int(step)},
        "history": history.state_dict(),
    }
    if inference is not None:
        state["inference"] = inference
    return state


def save_training_state(path, model, optimizer, schedule, loader, generators, history,
                        epoch: int, step: int, inference: dict | None = None) -> None:
    """Write ``training_state(...)`` to ``path`` atomically."""
    checkpoint.save(path, training_state(model, optimizer, schedule, loader, generators,
                                         history, epoch, step, inference))


def _check_fits(state, where, model, optimizer, schedule, loader):
    """Raise ``CheckpointError`` before anything changes when the checkpoint does not fit."""
    missing = [part for part in PARTS if part not in state]
    if missing:
        raise CheckpointError(f"{where}: not a training checkpoint (missing parts: "
                              f"{', '.join(missing)}); a model-only checkpoint loads with "
                              f"model.load_state_dict(cnnlite.checkpoint.load(path)[...])")
    info = state["info"]
    for role, obj in (("model", model), ("optimizer", optimizer), ("schedule", schedule)):
        saved = info.get(role)
        if saved != _type_name(obj):
            raise CheckpointError(f"{where}: the checkpoint was written with {role} "
                                  f"{saved or 'none'}, but this run has "
                                  f"{_type_name(obj) or 'none'}")
    checkpoint.check_state_dict(model.state_dict(), state["model"], where, "model")
    if (state["loader"] is None) != (not hasattr(loader, "state_dict")):
        raise CheckpointError(f"{where}: the checkpoint's loader state does not fit this "
                              f"training loader ({type(loader).__name__})")


def _apply(state, model, optimizer, schedule, loader, generators, history):
    """Load every part of ``state`` into the objects; returns unmatched generator names."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if schedule is not None:
        schedule.load_state_dict(state["schedule"])
    unmatched = restore_generator_states(generators, state["random"])
    # After the generators: the loader's own state is the authority on its shuffle generator.
    if state["loader"] is not None:
        loader.load_state_dict(state["loader"])
    history.load_state_dict(state["history"])
    return unmatched


def load_training_state(path, model, optimizer, schedule, loader, generators,
                        history) -> tuple[int, int]:
    """Restore a checkpoint written by ``save_training_state`` into the given objects.

    Returns ``(epochs done, steps done)``. Raises ``CheckpointError`` (naming the file and
    what does not fit) and leaves every object as it was when the checkpoint cannot be used.
    """
    where = os.fspath(path)
    state = checkpoint.load(path)
    _check_fits(state, where, model, optimizer, schedule, loader)
    snapshot = training_state(model, optimizer, schedule, loader, generators, history, 0, 0)
    try:
        unmatched = _apply(state, model, optimizer, schedule, loader, generators, history)
    except Exception as error:
        _apply(snapshot, model, optimizer, schedule, loader, generators, history)
        raise CheckpointError(f"{where}: could not restore the training state "
                              f"({type(error).__name__}: {error}); nothing was changed") from error
    if unmatched:
        warnings.warn(f"{where}: the checkpoint holds random generators this run does not have "
                      f"({', '.join(unmatched)}); the resumed run will not repeat the original "
                      f"exactly", RuntimeWarning, stacklevel=3)
    progress = state["progress"]
    return int(progress["epoch"]), int(progress["step"])
