"""The published top-1 accuracies of the ablations, for the report to print beside ours.

Source: D. Mishkin, N. Sergievskiy and J. Matas, "Systematic evaluation of convolution neural
network advances on the ImageNet", Computer Vision and Image Understanding 161 (2017),
arXiv:1606.02228; CaffeNet128 (ImageNet at 128 x 128, 320K iterations of batch 256), top-1 on
the ImageNet validation set, one run each. The baseline (ReLU, max pooling, step policy,
RGB, batch 256, no batch norm) reaches 0.471.
"""
from __future__ import annotations

__all__ = ["PAPER", "PAPER_WITH_BATCH_NORM", "PAPER_BASELINE", "SOURCE", "paper_top1"]

SOURCE = ("Mishkin, Sergievskiy and Matas, Systematic evaluation of CNN advances on the "
          "ImageNet, CVIU 2017 (arXiv:1606.02228), CaffeNet128 top-1")
PAPER_BASELINE = 0.471

#: (axis, value) -> top-1, for networks without batch normalisation.
PAPER = {
    ("activation", "relu"): 0.471, ("activation", "tanh"): 0.401,
    ("activation", "vlrelu"): 0.469, ("activation", "rrelu"): 0.478,
    ("activation", "prelu"): 0.485, ("activation", "elu"): 0.488,
    ("activation", "maxout"): 0.517, ("activation", "selu"): 0.470,
    ("activation", "softplus"): 0.486, ("activation", "none"): 0.389,
    ("batch_norm", "none"): 0.471, ("batch_norm", "before"): 0.474,
    ("batch_norm", "after"): 0.499,
    ("pooling", "max"): 0.471, ("pooling", "stochastic"): 0.438,
    ("pooling", "average"): 0.435, ("pooling", "max+average"): 0.483,
    ("pooling", "strided"): 0.472,
    ("lr_policy", "step"): 0.471, ("lr_policy", "square"): 0.483,
    ("lr_policy", "sqrt"): 0.483, ("lr_policy", "linear"): 0.493,
    ("colour", "rgb"): 0.471, ("colour", "learned"): 0.485,
    ("batch_size", 32): 0.470, ("batch_size", 64): 0.475, ("batch_size", 128): 0.470,
    ("batch_size", 256): 0.471, ("batch_size", 512): 0.469, ("batch_size", 1024): 0.465,
}

#: The non-linearities again, each with batch normalisation after it (baseline ReLU 0.499).
PAPER_WITH_BATCH_NORM = {
    ("activation", "relu"): 0.499, ("activation", "rrelu"): 0.500,
    ("activation", "prelu"): 0.503, ("activation", "elu"): 0.498,
    ("activation", "maxout"): 0.487, ("activation", "sigmoid"): 0.475,
    ("activation", "tanh"): 0.448,
}


def paper_top1(changes: dict, batch_norm: str = "none") -> float | None:
    """The paper's top-1 for a variant that changes one axis (``{axis: value}``; ``{}`` is
    the baseline), with or without batch norm in the network; None where the paper has no
    such run. Batch sizes are matched by value, whatever the sweep's own baseline size."""
    table = PAPER if batch_norm == "none" else PAPER_WITH_BATCH_NORM
    if not changes:
        return table[("activation", "relu")]
    if len(changes) != 1:
        return None
    ((axis, value),) = changes.items()
    if axis == "batch_norm":
        table = PAPER
    return table.get((axis, value))
