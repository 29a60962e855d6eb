"""Pictures of what happens inside cnnlite, for notebooks and reports.

Every function draws with matplotlib's object API (never pyplot's global state), returns the
figure (or drawing) and, given ``path``, writes it atomically. Jupyter shows the returned
object inline.

=======================  ========================================================================
``Stepper``              the backward pass one Function at a time (an HTML card per step)
``draw_graph``           the graph behind a tensor: SVG through graphviz, else matplotlib
``plot_history``         training curves: loss and accuracy per epoch
``plot_lr_schedule``     a learning-rate schedule, step by step
``plot_filters``         the filters of a convolution as an image grid (AlexNet's conv1)
``plot_feature_maps``    the feature maps of one image after a layer
``layer_statistics``     per-layer mean, std and variance of activations and gradients
``plot_layer_statistics``  those statistics per layer (LSUV's before/after), and histograms
``confusion_matrix``     the counts: true class (rows) against predicted class (columns)
``plot_confusion_matrix``  those counts as an image
``plot_im2col``          the column matrix of a small input, receptive fields coloured
=======================  ========================================================================

The modules load on first use, so ``import cnnlite`` does not import matplotlib or graphviz.
"""
import importlib

_WHERE = {
    "Stepper": "cnnlite.viz.stepper",
    "draw_graph": "cnnlite.viz.graph",
    "plot_history": "cnnlite.viz.plots",
    "plot_lr_schedule": "cnnlite.viz.plots",
    "plot_confusion_matrix": "cnnlite.viz.plots",
    "confusion_matrix": "cnnlite.viz.plots",
    "plot_filters": "cnnlite.viz.images",
    "plot_feature_maps": "cnnlite.viz.images",
    "plot_im2col": "cnnlite.viz.images",
    "layer_statistics": "cnnlite.viz.statistics",
    "plot_layer_statistics": "cnnlite.viz.statistics",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'cnnlite.viz' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__():
    return __all__
