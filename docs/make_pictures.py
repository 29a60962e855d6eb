"""Draws the pictures of the README: ``python docs/make_pictures.py`` (from the repository root).

graph.png: the autograd graph of a small CNN's loss after one backward pass, as
``cl.viz.draw_graph`` draws it without Graphviz's ``dot`` program (with ``dot`` installed,
Jupyter shows the same graph as SVG).
"""
from pathlib import Path

import numpy as np

import cnnlite as cl
from cnnlite import functional as F
from cnnlite import nn

HERE = Path(__file__).parent


def small_cnn_graph(path):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8, 3))
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    x = cl.tensor(rng.standard_normal((1, 1, 6, 6)))
    loss = F.cross_entropy(model(x), np.array([1]))
    loss.backward()
    return cl.viz.draw_graph(loss, model=model, engine="matplotlib").save(path)


if __name__ == "__main__":
    small_cnn_graph(HERE / "graph.png")
