"""Training curves with matplotlib, drawn without pyplot.

The figure is built on ``matplotlib.figure.Figure`` and rendered by the Agg canvas, so plotting
works on a machine without a display and never switches the backend of the calling program
(a notebook keeps its inline backend).
"""
from __future__ import annotations

import io

import numpy as np

from cnnlite.checkpoint import atomic_write

__all__ = ["plot_history"]


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
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
    if path is not None:
        image = io.BytesIO()
        figure.savefig(image, format="png", dpi=100)
        atomic_write(path, lambda file: file.write(image.getvalue()))
    return figure
