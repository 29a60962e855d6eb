"""Pooling speed: cnnlite against PyTorch, float32, forward and forward + backward.

    PYTHONPATH=. python3 benchmarks/bench_pool.py              # writes benchmarks/results_pool.md
    PYTHONPATH=. python3 benchmarks/bench_pool.py --repeats 3  # a shorter run

The sizes are those of AlexNet (max pool 3x3/2 after conv1 and conv2) and ResNet (the stem's
max pool 3x3/2 with padding 1, the global average pool before the classifier), batch 32.
Both frameworks pool the same array in the same process, interleaved (see ``common.py``);
backward starts from the same random upstream gradient.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cnnlite as cl  # noqa: E402
from cnnlite import functional as F  # noqa: E402
from common import geometric_mean, time_side_by_side, write_results  # noqa: E402

CASES = [
    ("AlexNet pool1: max 3x3/2", (32, 96, 55, 55),
     lambda x: F.max_pool2d(x, 3, 2), lambda x: TF.max_pool2d(x, 3, 2)),
    ("AlexNet pool2: max 3x3/2", (32, 256, 27, 27),
     lambda x: F.max_pool2d(x, 3, 2), lambda x: TF.max_pool2d(x, 3, 2)),
    ("ResNet stem: max 3x3/2 pad 1", (32, 64, 112, 112),
     lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1)),
    ("ResNet head: global avg", (32, 2048, 7, 7),
     F.global_avg_pool2d, lambda x: TF.adaptive_avg_pool2d(x, 1)),
]

NOTES = """
Times are medians in milliseconds; ratio = cnnlite / PyTorch (below 1: cnnlite is faster).
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
is the figure to quote; the load average below says how quiet this one was.
"""


def time_case(ours, theirs, shape, repeats):
    """Medians (s) of forward and forward + backward for cnnlite and PyTorch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    x_ours, x_torch = cl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with cl.no_grad():
        upstream = rng.standard_normal(ours(x_ours).shape).astype(np.float32)
    upstream_torch = torch.from_numpy(upstream)

    def ours_forward():
        with cl.no_grad():
            ours(x_ours)

    def theirs_forward():
        with torch.no_grad():
            theirs(x_torch)

    def ours_both():
        x_ours.grad = None
        ours(x_ours).backward(upstream)

    def theirs_both():
        x_torch.grad = None
        theirs(x_torch).backward(upstream_torch)

    forward = time_side_by_side(ours_forward, theirs_forward, repeats=repeats)
    both = time_side_by_side(ours_both, theirs_both, repeats=repeats)
    return forward, both


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(Path(__file__).with_name("results_pool.md")))
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    header = ["layer", "input (N, C, H, W)", "forward cnnlite", "forward PyTorch", "ratio",
              "fwd + bwd cnnlite", "fwd + bwd PyTorch", "ratio"]
    rows, ratios = [], []
    for name, shape, ours, theirs in CASES:
        (f_ours, f_torch), (b_ours, b_torch) = time_case(ours, theirs, shape, args.repeats)
        ratios.append(b_ours / b_torch)
        rows.append([name, str(shape), f"{f_ours * 1e3:.1f}", f"{f_torch * 1e3:.1f}",
                     f"{f_ours / f_torch:.2f}", f"{b_ours * 1e3:.1f}", f"{b_torch * 1e3:.1f}",
                     f"{b_ours / b_torch:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    rows.append(["geometric mean of the fwd + bwd ratios", "", "", "", "", "", "",
                 f"{geometric_mean(ratios):.2f}"])
    text = write_results(args.output, "Pooling: cnnlite vs PyTorch (float32, ms)", header, rows,
                         NOTES + f"\n{args.repeats} interleaved repeats per figure, after 2 "
                                 f"warm-up runs; 1-minute load average {load_before:.1f} "
                                 f"before, {os.getloadavg()[0]:.1f} after "
                                 f"({os.cpu_count()} cores).")
    print(text)


if __name__ == "__main__":
    main()
