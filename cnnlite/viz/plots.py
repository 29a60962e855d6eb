"""Plots of numbers over training (curves, learning rates, confusion matrices), and the pieces
every plot of ``cnnlite.viz`` shares.

The figures are built on ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never by
pyplot, so plotting works on a machine without a display and never switches the backend of the
calling program (a notebook keeps its inline backend, and shows the returned Figure inline).
Every plot takes ``path=None``; given a path, it writes a PNG there atomically (a reader never
sees half an image).

=========================  ======================================================================
``plot_history``           loss and accuracy per epoch, training and validation
``plot_lr_schedule``       learning rate per iteration, for one or several schedules
``confusion_matrix``       the (K, K) matrix of counts: true class on rows, predicted on columns
``plot_confusion_matrix``  that matrix as an image with the numbers in the cells
=========================  ======================================================================

Shared by the plots of ``images`` and ``statistics`` as well: ``new_figure`` (a Figure on the
Agg canvas), ``save_figure`` (the atomic PNG) and ``as_numpy`` (Tensors, Parameters, CuPy and
NumPy arrays and nested lists, as one NumPy array).
"""
from __future__ import annotations

import io
import math

import numpy as np

from cnnlite import validate
from cnnlite.checkpoint import atomic_write
from cnnlite.errors import ArgumentTypeError, OpError

__all__ = ["plot_history", "plot_lr_schedule", "confusion_matrix", "plot_confusion_matrix",
           "new_figure", "save_figure", "as_numpy"]

#: Up to this many classes the confusion matrix writes its numbers into the cells.
MAX_ANNOTATED_CLASSES = 30


# --- the shared pieces ------------------------------------------------------------------------

def new_figure(width: float, height: float):
    """An empty ``Figure`` of ``width`` x ``height`` inches on the Agg canvas, laid out by
    matplotlib's constrained layout (titles and tick labels never overlap)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path, dpi: int = 100) -> None:
    """Write ``figure`` to ``path`` as a PNG, atomically; nothing happens when ``path`` is None.

    The image is rendered into memory first, so a failing render leaves no file behind.
    """
    if path is None:
        return
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=dpi)
    atomic_write(path, lambda file: file.write(image.getvalue()))


def as_numpy(where: str, name: str, value) -> np.ndarray:
    """``value`` (a Tensor or Parameter, a NumPy or CuPy array, a nested list) as a NumPy array
    on the CPU; errors name ``where`` and ``name``."""
    from cnnlite.tensor import Tensor

    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "get") and hasattr(value, "shape"):  # a CuPy array: copy it to the host
        return value.get()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ArgumentTypeError(f"{where}: {name} must be a Tensor or an array, got "
                                f"{type(value).__name__} ({error})") from None


# --- training curves --------------------------------------------------------------------------

def plot_history(history, path=None):
    """Loss (left) and accuracy (right) per epoch, training and validation.

    Parameters
    ----------
    history : cnnlite.train.History
    path : str or PathLike, optional
        Where to write the figure as a PNG (atomically: a reader never sees half an image).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    figure = new_figure(10, 4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = np.asarray(history.epoch)
    curves = [
        (loss_axes, "train_loss", "train", 1.0), (loss_axes, "val_loss", "validation", 1.0),
        (accuracy_axes, "train_acc", "train", 100.0),
        (accuracy_axes, "val_acc", "validation", 100.0),
    ]
    for axes, field, label, scale in curves:
        values = scale * np.asarray(getattr(history, field), dtype=float)
        if np.isfinite(values).any():  # leave out curves never measured (no validation set)
            axes.plot(epochs, values, marker="o", markersize=3, label=label)
    loss_axes.set(title="loss", xlabel="epoch", ylabel="mean loss per sample")
    accuracy_axes.set(title="accuracy", xlabel="epoch", ylabel="top-1 accuracy (%)")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    save_figure(figure, path)
    return figure


# --- learning-rate schedules ------------------------------------------------------------------

def _schedule_curves(name: str, schedule, iterations: list[int]) -> list[tuple[str, list]]:
    """``(label, learning rates)`` per curve of one schedule: one per parameter group of a
    scheduler (from ``lr_at``, which leaves the scheduler where it is), one for a function."""
    from cnnlite.optim.lr_scheduler import LRScheduler

    if isinstance(schedule, LRScheduler):
        per_iteration = [schedule.lr_at(t) for t in iterations]
        groups = len(per_iteration[0])
        label = name or type(schedule).__name__
        if groups == 1:
            return [(label, [lrs[0] for lrs in per_iteration])]
        return [(f"{label} (group {g})", [lrs[g] for lrs in per_iteration])
                for g in range(groups)]
    if callable(schedule):
        rates = []
        for t in iterations:
            lr = schedule(t)
            if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
                raise ArgumentTypeError(f"plot_lr_schedule: schedule {name or schedule!r} "
                                        f"returned {type(lr).__name__} {lr!r} at iteration {t}; "
                                        f"expected a number")
            rates.append(float(lr))
        return [(name or getattr(schedule, "__name__", "lr"), rates)]
    raise ArgumentTypeError(f"plot_lr_schedule: expected an LRScheduler, a function "
                            f"iteration -> lr or a dict of them, got {type(schedule).__name__}")


def plot_lr_schedule(scheduler_or_fn, steps, path=None):
    """The learning rate at every iteration of a schedule (or of several, on one axis).

    The scheduler is not stepped: its ``lr_at(iteration)`` gives each value, so plotting a
    scheduler in the middle of training leaves it where it is.

    Parameters
    ----------
    scheduler_or_fn : LRScheduler, callable or dict
        A ``cnnlite.optim.lr_scheduler.LRScheduler`` (one curve per parameter group), a
        function ``iteration -> lr``, or a dict ``{label: scheduler or function}``.
    steps : int or iterable of int
        How many iterations (0 .. steps-1), or the iterations to evaluate.
    path : str or PathLike, optional
        Where to write the figure as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes: iteration on x, learning rate on y, a legend when there are several curves.
    """
    if validate.is_integer(steps):
        steps = validate.integer("plot_lr_schedule", "steps", steps, minimum=1)
        iterations = list(range(steps))
    else:
        if not hasattr(steps, "__iter__"):
            raise ArgumentTypeError(f"plot_lr_schedule: steps must be a number of iterations "
                                    f"or the iterations to show, got {type(steps).__name__}")
        iterations = [validate.integer("plot_lr_schedule", "iteration", t, minimum=0)
                      for t in steps]
        if not iterations:
            raise OpError("plot_lr_schedule: steps names no iteration")
    named = scheduler_or_fn if isinstance(scheduler_or_fn, dict) else {"": scheduler_or_fn}
    if not named:
        raise OpError("plot_lr_schedule: the dict of schedules is empty")
    figure = new_figure(7, 3.5)
    axes = figure.add_subplot()
    curves = [curve for name, schedule in named.items()
              for curve in _schedule_curves(str(name), schedule, iterations)]
    for label, rates in curves:
        # Steps draws a staircase: the rate holds for a whole iteration, then jumps.
        axes.step(iterations, rates, where="post", label=label)
    axes.set(title="learning-rate schedule", xlabel="iteration", ylabel="learning rate")
    axes.grid(alpha=0.3)
    if len(curves) > 1:
        axes.legend()
    save_figure(figure, path)
    return figure


# --- confusion matrix -------------------------------------------------------------------------

def _labels(where: str, name: str, values) -> np.ndarray:
    """Class labels as a 1-d int64 array: integers, or the argmax of (N, K) scores."""
    array = as_numpy(where, name, values)
    if array.ndim == 2:
        array = array.argmax(axis=1)  # scores or logits per class: the predicted class
    if array.ndim != 1:
        raise OpError(f"{where}: expected {name} of shape (N,) (or scores (N, K)), got "
                      f"{array.shape}")
    if array.dtype.kind not in "biu" and not (array.dtype.kind == "f" and
                                               np.array_equal(array, np.round(array))):
        raise OpError(f"{where}: {name} must hold whole class numbers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise OpError(f"{where}: {name} holds the negative class {array.min()}")
    return array


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Count how often each true class was predicted as each class.

    ``matrix[t, p]`` = number of samples i with ``y_true[i] == t`` and ``y_pred[i] == p``, so
    the diagonal holds the correct predictions and row t sums to the number of class-t samples.

    Parameters
    ----------
    y_true : (N,) integer labels
    y_pred : (N,) integer labels, or (N, K) scores (their argmax is the prediction)
    num_classes : int, optional
        K; by default one more than the largest label seen.

    Returns
    -------
    ndarray of int64, shape (K, K)
    """
    where = "confusion_matrix"
    true = _labels(where, "y_true", y_true)
    predicted = _labels(where, "y_pred", y_pred)
    if true.shape != predicted.shape:
        raise OpError(f"{where}: y_true and y_pred must have one label per sample, got "
                      f"{true.shape} and {predicted.shape}")
    largest = int(max(true.max(initial=-1), predicted.max(initial=-1)))
    if num_classes is None:
        num_classes = largest + 1
    num_classes = validate.integer(where, "num_classes", num_classes, minimum=1)
    if largest >= num_classes:
        raise OpError(f"{where}: label {largest} is out of range for {num_classes} classes")
    # Each (true, predicted) pair is one cell of the flattened matrix: count them all at once.
    cells = np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    return cells.reshape(num_classes, num_classes)


def plot_confusion_matrix(y_true, y_pred, classes=None, normalize: bool = False, path=None):
    """The confusion matrix as an image, true class on rows, predicted class on columns.

    Parameters
    ----------
    y_true : (N,) integer labels
    y_pred : (N,) integer labels, or (N, K) scores (their argmax is the prediction)
    classes : sequence of str, optional
        The class names (also fixes K); by default 0 .. K-1.
    normalize : bool
        Show each row divided by its sum (the rate at which class t is predicted as p; the
        diagonal is each class's recall) instead of counts. A class without samples shows 0.
    path : str or PathLike, optional
        Where to write the figure as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The matrix Axes (its image holds the plotted numbers) and a colour bar. Up to
        ``MAX_ANNOTATED_CLASSES`` classes, every cell shows its number.

    ``plot_confusion_matrix.from_model(model, loader, ...)`` predicts the labels first.
    """
    normalize = validate.boolean("plot_confusion_matrix", "normalize", normalize)
    num_classes = None if classes is None else len(classes)
    counts = confusion_matrix(y_true, y_pred, num_classes)
    classes = [str(k) for k in range(len(counts))] if classes is None else list(classes)
    samples = int(counts.sum())
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    else:
        values = counts
    size = min(12.0, max(4.5, 2.5 + 0.45 * len(counts)))
    figure = new_figure(size + 1.0, size)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="Blues", vmin=0, interpolation="nearest")
    colour_bar = figure.colorbar(image, ax=axes, label="rate" if normalize else "samples")
    if not normalize:
        from matplotlib.ticker import MaxNLocator

        colour_bar.locator = MaxNLocator(integer=True)  # counts have no fractions
    if len(counts) <= MAX_ANNOTATED_CLASSES:
        dark = values.max() / 2 if values.max() > 0 else 1
        for (t, p), value in np.ndenumerate(values):
            text = f"{value:.2f}" if normalize else f"{value:d}"
            axes.text(p, t, text, ha="center", va="center", fontsize=8,
                      color="white" if value > dark else "black")
        ticks = np.arange(len(counts))
        axes.set_xticks(ticks, classes, rotation=90 if len(counts) > 10 else 0)
        axes.set_yticks(ticks, classes)
    accuracy = np.trace(counts) / samples if samples else math.nan
    what = "row-normalised rates" if normalize else "counts"
    axes.set_title(f"confusion matrix ({what})\n{samples} samples, accuracy "
                   f"{100 * accuracy:.1f}%", fontsize=10)
    axes.set(xlabel="predicted class", ylabel="true class")
    save_figure(figure, path)
    return figure


def _from_model(model, loader, classes=None, normalize: bool = False, path=None):
    """``plot_confusion_matrix`` of ``model``'s predictions on every batch of ``loader``.

    ``loader`` yields ``(images, labels)`` pairs. The model runs in evaluation mode without a
    graph (``cl.no_grad()``); its modes are restored afterwards. The prediction is the argmax
    of the model's output (N, K).
    """
    from cnnlite.autograd import no_grad
    from cnnlite.tensor import Tensor, tensor

    true, predicted = [], []
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with no_grad():
            for images, labels in loader:
                scores = model(images if isinstance(images, Tensor) else tensor(images))
                predicted.append(_labels("plot_confusion_matrix.from_model", "model output",
                                         scores))
                true.append(_labels("plot_confusion_matrix.from_model", "labels", labels))
    finally:
        for module, training in modes:
            object.__setattr__(module, "training", training)
    if not true:
        raise OpError("plot_confusion_matrix.from_model: the loader gave no batch")
    return plot_confusion_matrix(np.concatenate(true), np.concatenate(predicted), classes,
                                 normalize, path)


plot_confusion_matrix.from_model = _from_model
