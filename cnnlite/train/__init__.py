"""Training: the loop, its metrics and history, checkpoints with exact resume, anomaly checks.

>>> from cnnlite.train import fit, evaluate
>>> history = fit(model, train_loader, val_loader, optimizer, epochs=10,
...               checkpoint="runs/lenet.npz")
>>> history.plot("runs/curves.png")

loop      ``fit`` and ``evaluate``
metrics   ``accuracy`` (top-k), running means
history   ``History``: per-epoch numbers, ``plot``
anomaly   ``AnomalyError`` and the hooks that find the first non-finite layer output
resume    what a training checkpoint holds and how it is put back
state     the random generators of a run: find, seed, save, restore
"""
from cnnlite.train.anomaly import AnomalyDetector, AnomalyError
from cnnlite.train.history import History
from cnnlite.train.loop import Metrics, evaluate, fit
from cnnlite.train.metrics import accuracy, topk_correct
from cnnlite.train.resume import load_training_state, save_training_state, training_state
from cnnlite.train.state import random_generators, seed_everything

__all__ = ["fit", "evaluate", "Metrics", "accuracy", "topk_correct", "History",
           "AnomalyError", "AnomalyDetector", "seed_everything", "random_generators",
           "training_state", "save_training_state", "load_training_state"]
