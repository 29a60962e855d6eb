"""The training loop: ``fit`` a model for some epochs, ``evaluate`` it on a loader.

One training step is the five lines every deep-learning course writes on the board::

    logits = model(images)                 # forward: builds the graph
    loss = loss_fn(logits, labels)         # one number per batch
    optimizer.zero_grad()                  # forget the previous step's gradients
    loss.backward()                        # dloss/dparam for every parameter
    optimizer.step()                       # param -= lr * gradient (or Adam's rule, ...)

``fit`` adds what a real run needs around them: progress bars, per-epoch validation, a
``History`` of the numbers, a checkpoint after every epoch from which a run continues exactly
as if it had never stopped, and a clear error at the first non-finite loss.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, NamedTuple

import numpy as np

from cnnlite import backend
from cnnlite import functional as F
from cnnlite.autograd import no_grad
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.nn.module import Module
from cnnlite.optim.optimizer import Optimizer
from cnnlite.tensor import Tensor
from cnnlite.train.anomaly import AnomalyDetector, check_finite_loss
from cnnlite.train.history import History
from cnnlite.train.metrics import RunningMean, topk_correct
from cnnlite.train.progress import tqdm
from cnnlite.train.resume import load_training_state, save_training_state
from cnnlite.train.state import random_generators, seed_everything
from cnnlite.validate import boolean, integer

__all__ = ["fit", "evaluate", "Metrics"]


class Metrics(NamedTuple):
    """What ``evaluate`` measured: the mean loss, top-1 and top-5 accuracy (fractions in
    [0, 1]; top-5 is top-C when there are only C < 5 classes) and the number of samples."""

    loss: float
    top1: float
    top5: float
    samples: int


def _model_dtype(model):
    """The dtype of the model's first floating parameter (inputs are cast to it)."""
    for param in model.parameters():
        if param.dtype.kind == "f":
            return param.dtype
    return None


def _prepare_batch(images, labels, device, dtype):
    """Batch tensors on the model's device, images in the model's floating dtype (so that
    ``model.double()`` trains in float64 from the loader's float32 batches)."""
    images = images if isinstance(images, Tensor) else Tensor(np.asarray(images))
    labels = labels if isinstance(labels, Tensor) else Tensor(np.asarray(labels))
    images, labels = images.to(device), labels.to(device)
    if dtype is not None and images.dtype.kind == "f" and images.dtype != dtype:
        images = Tensor(images.data.astype(dtype))
    return images, labels


def _current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _describe_loader(loader) -> str:
    """What an empty loader is made of, so the message points at the cause."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__len__"):
        return type(loader).__name__
    settings = ", ".join(f"{name}={getattr(loader, name)!r}"
                         for name in ("batch_size", "drop_last") if hasattr(loader, name))
    return (f"{type(loader).__name__} over a dataset of {len(dataset)} samples"
            f"{f' ({settings})' if settings else ''}")


def _empty_loader_error(where: str, role: str, loader) -> OpError:
    return OpError(f"{where}: {role} gave no samples: {_describe_loader(loader)}; a loss or "
                   f"an accuracy over no samples means nothing")


def _check_not_empty(where: str, role: str, loader) -> None:
    """Refuse a loader that has no batches, before any work (a loader without ``len`` is
    checked after its first pass instead)."""
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise _empty_loader_error(where, role, loader)


def evaluate(model, loader, loss_fn: Callable = F.cross_entropy, device: str = "cpu",
             progress: bool = False) -> Metrics:
    """Mean loss and top-1 / top-5 accuracy of ``model`` over every batch of ``loader``.

    The model runs in evaluation mode (dropout off, batch norm on its running statistics)
    without building a graph; its previous mode is restored afterwards.
    """
    device = backend.check_device(device)
    progress = boolean("evaluate", "progress", progress)
    _check_not_empty("evaluate", "the loader", loader)
    dtype = _model_dtype(model)
    was_training = model.training
    model.eval()
    loss_mean, top1, top5, seen = RunningMean(), 0, 0, 0
    try:
        with no_grad():
            for images, labels in tqdm(loader, desc="evaluate", leave=False,
                                       disable=not progress, unit="batch"):
                images, labels = _prepare_batch(images, labels, device, dtype)
                logits = model(images)
                n = labels.shape[0]
                loss_mean.add(float(loss_fn(logits, labels).item()), n)
                hits = topk_correct(logits, labels, (1, min(5, logits.shape[1])))
                top1, top5, seen = top1 + hits[0], top5 + hits[1], seen + n
    finally:
        model.train(was_training)
    if seen == 0:
        raise _empty_loader_error("evaluate", "the loader", loader)
    return Metrics(loss_mean.mean, top1 / seen, top5 / seen, seen)


class _EpochResult(NamedTuple):
    loss: float
    accuracy: float
    steps: int  # the global step count after the epoch


def _train_epoch(model, loader, optimizer, loss_fn, device, schedule_per_step, schedule,
                 detector, epoch, step, bar) -> _EpochResult:
    """One pass over ``loader``: epoch number ``epoch``, after ``step`` steps in all."""
    model.train()
    dtype = _model_dtype(model)
    loss_mean, correct, seen = RunningMean(), 0, 0
    start = time.perf_counter()
    for batch, (images, labels) in enumerate(loader, 1):
        step += 1
        images, labels = _prepare_batch(images, labels, device, dtype)
        if detector is not None:
            detector.start_step()
        logits = model(images)
        loss = loss_fn(logits, labels)
        loss_value = float(loss.item())
        check_finite_loss(loss_value, step, f"epoch {epoch}, batch {batch}", detector)
        optimizer.zero_grad()
        loss.backward()
        if detector is not None:
            detector.check_gradients(step)
        optimizer.step()
        if schedule_per_step:
            schedule.step()

        n = labels.shape[0]
        loss_mean.add(loss_value, n)
        correct += topk_correct(logits, labels, (1,))[0]
        seen += n
        bar.update()
        bar.set_postfix(loss=f"{loss_mean.mean:.4f}", acc=f"{100 * correct / seen:.1f}%",
                        lr=f"{_current_lr(optimizer):.3g}",
                        img_s=f"{seen / max(time.perf_counter() - start, 1e-9):.0f}",
                        refresh=batch == bar.total)  # otherwise at tqdm's own pace
    if seen == 0:
        raise _empty_loader_error("fit", "train_loader", loader)
    return _EpochResult(loss_mean.mean, correct / seen, step)


def _epoch_line(row: dict, epochs: int) -> str:
    line = (f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  "
            f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.1f}%")
    if np.isfinite(row["val_loss"]):
        line += (f"  |  val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:.1f}% "
                 f"top-5 {100 * row['val_top5']:.1f}%")
    return line + f"  |  lr {row['lr']:.3g}  {row['seconds']:.1f} s"


def _check_fit_arguments(model, optimizer, schedule, loss_fn, log) -> None:
    """The objects ``fit`` is given are of the kinds it calls (a mix-up of the positional
    arguments, say the optimiser in the schedule's place, fails here and not mid-epoch)."""
    if not isinstance(model, Module):
        raise ArgumentTypeError(f"fit: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise ArgumentTypeError(f"fit: optimizer must be an optim.Optimizer, got "
                                f"{type(optimizer).__name__}")
    if schedule is not None and not hasattr(schedule, "step"):
        raise ArgumentTypeError(f"fit: schedule must be an LR scheduler (with step()), got "
                                f"{type(schedule).__name__}")
    for name, function in (("loss_fn", loss_fn), ("log", log)):
        if function is not None and not callable(function):
            raise ArgumentTypeError(f"fit: {name} must be callable, got "
                                    f"{type(function).__name__}")


def fit(model, train_loader, val_loader=None, optimizer=None, schedule=None, epochs: int = 1,
        loss_fn: Callable = F.cross_entropy, device: str = "cpu", checkpoint=None, resume=None,
        seed: int | None = None, detect_anomaly: bool = False, progress: bool = True,
        schedule_per: str = "epoch", log: Callable[[str], None] | None = None,
        inference: dict | None = None) -> History:
    """Train ``model`` for ``epochs`` epochs and return the ``History`` of the run.

    Parameters
    ----------
    model : nn.Module
        Moved to ``device``; inputs are cast to its parameters' floating dtype.
    train_loader, val_loader : DataLoader
        Batches ``(images, labels)``; ``val_loader`` (optional) is evaluated after each epoch.
        A loader without samples is an error (a loss over no samples is no number).
    optimizer : optim.Optimizer
    schedule : LR schedule, optional
        Its ``step()`` is called after every epoch (``schedule_per="epoch"``) or after every
        optimiser step (``schedule_per="step"``).
    epochs : int
        The total number of epochs of the run, at least 1, counted from the start (also when
        resuming: ``fit(..., epochs=10, resume=path)`` after 4 saved epochs trains epochs 5
        to 10).
    loss_fn : callable
        ``loss_fn(logits, labels) -> scalar Tensor``, the mean over the batch.
    checkpoint : path, optional
        Written (atomically) after every epoch: model, optimiser, schedule, loader position,
        random generator states, epoch and step counters and the history.
    resume : path, optional
        A checkpoint to continue from. The run then repeats, bit for bit, what an
        uninterrupted run would have computed.
    seed : int, optional
        Seeds every random generator in use (dropout, shuffling, random transforms) before
        training. Seed the weights too by calling ``seed_everything(seed)`` before building
        the model (as ``cnnlite train --seed`` does). Ignored when resuming: the checkpoint
        holds the generators' states.
    detect_anomaly : bool
        Check every module's output (and every gradient) for NaN/inf, so that a non-finite
        loss is reported with the first layer that produced one. A non-finite loss always
        stops training with an ``AnomalyError`` naming the step.
    progress : bool
        Show tqdm progress bars and print a line per epoch.
    log : callable, optional
        Receives the per-epoch lines instead of printing them.
    inference : dict, optional
        Saved in every checkpoint beside the training state: what using the trained model
        needs (``cnnlite train`` stores the model's name and the input preprocessing, which
        ``cnnlite.predict`` reads).

    Returns
    -------
    History
        Per-epoch train/val loss and accuracy, learning rate and time.
    """
    if optimizer is None:
        raise TypeError("fit: an optimizer is required, e.g. optim.SGD(model.parameters(), "
                        "lr=0.01, momentum=0.9)")
    _check_fit_arguments(model, optimizer, schedule, loss_fn, log)
    if schedule_per not in ("epoch", "step"):
        raise OpError(f"fit: schedule_per must be 'epoch' or 'step', got {schedule_per!r}")
    epochs = integer("fit", "epochs", epochs, minimum=1, maximum=None)
    detect_anomaly = boolean("fit", "detect_anomaly", detect_anomaly)
    progress = boolean("fit", "progress", progress)
    if seed is not None:
        seed = integer("fit", "seed", seed, minimum=0, maximum=None)
    _check_not_empty("fit", "train_loader", train_loader)
    if val_loader is not None:
        _check_not_empty("fit", "val_loader", val_loader)
    device = backend.check_device(device)
    model.to(device)
    if log is None:
        log = tqdm.write if progress else (lambda line: None)
    roots = dict(model=model, train_loader=train_loader, val_loader=val_loader)

    history, epoch_done, step = History(), 0, 0
    if resume is not None:
        epoch_done, step = load_training_state(resume, model, optimizer, schedule,
                                               train_loader, random_generators(**roots),
                                               history)
        log(f"resumed from {resume} after epoch {epoch_done} (step {step})")
    elif seed is not None:
        seed_everything(seed, **roots)

    detector = AnomalyDetector(model) if detect_anomaly else None
    with detector or contextlib.nullcontext():  # the hooks are removed on the way out
        for epoch in range(epoch_done + 1, epochs + 1):
            lr = _current_lr(optimizer)
            started = time.perf_counter()
            with tqdm(total=len(train_loader), desc=f"epoch {epoch}/{epochs}", unit="batch",
                      leave=False, disable=not progress, dynamic_ncols=True) as bar:
                result = _train_epoch(model, train_loader, optimizer, loss_fn, device,
                                      schedule is not None and schedule_per == "step",
                                      schedule, detector, epoch, step, bar)
            step = result.steps
            row = dict(epoch=epoch, train_loss=result.loss, train_acc=result.accuracy, lr=lr)
            if val_loader is not None:
                metrics = evaluate(model, val_loader, loss_fn, device)
                row.update(val_loss=metrics.loss, val_acc=metrics.top1, val_top5=metrics.top5)
            if schedule is not None and schedule_per == "epoch":
                schedule.step()
            history.append(**row, seconds=time.perf_counter() - started)
            if checkpoint is not None:
                save_training_state(checkpoint, model, optimizer, schedule, train_loader,
                                    random_generators(**roots), history, epoch, step,
                                    inference)
            log(_epoch_line(history.row(), epochs))
    return history

