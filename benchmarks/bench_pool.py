"""Pooling speed: cnnlite against PyTorch, float32, forward and forward + backward.

    PYTHONPATH=. python3 benchmarks/bench_pool.py        # writes benchmarks/results_pool.md
    PYTHONPATH=. python3 benchmarks/bench_pool.py --rounds 1 --repeats 2 \
        --out benchmarks/_scratch/pool.md                # a quick try

The sizes are those of AlexNet (max pool 3x3/2 after conv1 and conv2) and ResNet (the stem's
max pool 3x3/2 with padding 1, the global average pool before the classifier), batch 32.
Each framework pools the same array in child processes of its own (see ``common.py``);
backward starts from the same random upstream gradient. Nothing here imports cnnlite or torch
at the top: each child loads only its own framework.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import geometric_mean, ms  # noqa: E402

# (name, input shape, window): a max pool's (kernel, stride, padding), or None for the global
# average pool
CASES = [
    ("AlexNet pool1: max 3x3/2", (32, 96, 55, 55), (3, 2, 0)),
    ("AlexNet pool2: max 3x3/2", (32, 256, 27, 27), (3, 2, 0)),
    ("ResNet stem: max 3x3/2 pad 1", (32, 64, 112, 112), (3, 2, 1)),
    ("ResNet head: global avg", (32, 2048, 7, 7), None),
]
PASSES = ("forward", "fwd + bwd")

NOTES = """
Times in milliseconds, the best of the rounds' medians (Method above); ratio = cnnlite /
PyTorch (below 1: cnnlite is faster).
"forward" runs without building a graph (`cl.no_grad()` / `torch.no_grad()`); "fwd + bwd" pools
and back-propagates a fixed random upstream gradient into the input.

Where the time goes. Max pooling is one parallel numba loop over the N*C planes; each thread
pools its plane window by window and remembers the argmax (an int32 plane index). Backward
zeroes dL/dx and adds each dL/dy at its argmax, again one plane per thread: a third to a half of
fwd + bwd. Forward reads x and writes y and the argmax (ResNet's stem: 103 MB in, 51 MB out),
backward writes a 103 MB gradient, mostly zeros. Global average pooling is NumPy's mean over
the last two axes; its backward returns a broadcast view of dL/dy / (H W), so nothing is
written, where PyTorch (`adaptive_avg_pool2d(x, 1)`, as torchvision's ResNet) fills a 13 MB
dL/dx: a consumer that needs a real array pays that copy later, so that row's fwd + bwd ratio
flatters cnnlite.

What was tried. (1) The first max kernel tested every element for NaN (so that a NaN
propagates, as in PyTorch): that branch halved its speed. Now the window's running sum is
the NaN probe, and only a window whose sum is NaN is scanned again for its first NaN: the
forward time halved (from about PyTorch's to about half of it). (2) int32 instead of int64
argmax: forward 5-25% faster in single runs (less to write), and half the memory kept for
backward; kept. (3) Kernels specialised for strided inputs and for the stride-0 gradient of
`.sum()`: replaced by one C-contiguous copy in the wrapper, so each kernel compiles once per
dtype (the test file's cold start went from ~80 s to ~35 s). (4) Small inputs run on one
thread (`PARALLEL_MIN_ELEMENTS`): waking the second thread cost up to 15 ms per call on the
busy machine; at the sizes below both threads run.

When the machine is shared (the development machine is: several engineers on 2 cores),
both frameworks' 2 threads compete with other work and one descheduled thread stalls a whole
call: ratios are then indicative only, absolute times even less. A rerun on a quiet machine
is the figure to quote; the load average under Method says how quiet this one was.
"""


def make_inputs(shape, window):
    """x and the upstream gradient of one case, float32, the same in every child."""
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    if window is None:
        out = (n, c, 1, 1)
    else:
        k, s, p = window
        out = (n, c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
    return rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(out, dtype=np.float32)


def framework_steps(pooling, no_grad, leaf, upstream):
    """{case: step} for one framework, given its pooling function for a window (``pooling``),
    its ``no_grad`` context, and how it wraps x (``leaf``) and the upstream gradient."""
    steps = {}
    for name, shape, window in CASES:
        x, gy = make_inputs(shape, window)
        forward, both = case_steps(pooling(window), no_grad, leaf(x), upstream(gy))
        steps[f"{name}: forward"], steps[f"{name}: fwd + bwd"] = forward, both
    return steps


def case_steps(pool, no_grad, x, gy):
    """Forward alone (no graph built) and forward + backward, for one case."""
    def forward():
        with no_grad():
            pool(x)

    def forward_backward():
        x.grad = None
        pool(x).backward(gy)
    return forward, forward_backward


def cnnlite_steps():
    import cnnlite as cl
    from cnnlite import functional as F

    def pooling(window):
        return F.global_avg_pool2d if window is None else lambda x: F.max_pool2d(x, *window)
    return framework_steps(pooling, cl.no_grad, lambda x: cl.tensor(x, requires_grad=True),
                           lambda gy: gy)


def torch_steps():
    import torch
    import torch.nn.functional as TF

    def pooling(window):
        if window is None:
            return lambda x: TF.adaptive_avg_pool2d(x, 1)  # as torchvision's ResNet
        return lambda x: TF.max_pool2d(x, *window)
    return framework_steps(pooling, torch.no_grad,
                           lambda x: torch.tensor(x, requires_grad=True), torch.from_numpy)


def summarise(run):
    """One row per layer, forward and forward + backward, and the geometric means."""
    rows = []
    for name, shape, _ in CASES:
        row = [name, str(shape)]
        for part in PASSES:
            case = f"{name}: {part}"
            row += [ms(run.best["cnnlite"][case]), ms(run.best["torch"][case]),
                    f"{run.ratio('cnnlite', case):.2f}"]
        rows.append(row)
    means = [geometric_mean([run.ratio("cnnlite", f"{name}: {part}") for name, _, _ in CASES])
             for part in PASSES]
    rows.append(["geometric mean of the ratios", "", "", "", f"{means[0]:.2f}", "", "",
                 f"{means[1]:.2f}"])
    header = ["layer", "input (N, C, H, W)", "forward cnnlite", "forward PyTorch", "ratio",
              "fwd + bwd cnnlite", "fwd + bwd PyTorch", "ratio"]
    return header, rows, NOTES


SUITE = common.Suite(
    "Pooling: cnnlite vs PyTorch (float32, ms)", Path(__file__).resolve(),
    (common.Side("cnnlite", "cnnlite", "cnnlite", cnnlite_steps),
     common.Side("torch", "PyTorch", "torch", torch_steps)),
    summarise)

if __name__ == "__main__":
    common.main(SUITE)
