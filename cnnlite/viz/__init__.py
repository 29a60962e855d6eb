"""Pictures of what happens inside cnnlite: training curves (``plot_history``)."""
from cnnlite.viz.plots import plot_history

__all__ = ["plot_history"]
