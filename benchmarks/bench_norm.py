"""Speed of local response norm and batch norm (float32, forward + backward) against PyTorch.

    PYTHONPATH=. python3 benchmarks/bench_norm.py            # writes benchmarks/results_norm.md
    PYTHONPATH=. python3 benchmarks/bench_norm.py --quick    # fewer repeats, on a busy machine

Layers of their classic networks: LRN(5) after AlexNet's conv1 and conv2, batch norm in
training mode at the sizes of ResNet's first stages. Each case also times cnnlite's kernels
alone, to show where its time goes (the rest is NumPy glue, allocation and autograd).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import geometric_mean, time_side_by_side, write_results  # noqa: E402

import cnnlite as cl  # noqa: E402
from cnnlite import backend  # noqa: E402
from cnnlite import functional as F  # noqa: E402

LRN_CASES = [(32, 96, 55, 55), (32, 256, 27, 27)]
BN_CASES = [(32, 64, 112, 112), (32, 256, 56, 56)]

WHAT_WAS_TRIED = """
What was tried (kernel times, min of 3-5 runs on the shared 2-core machine, so approximate):

* Output allocation. Allocated inside numba, a fresh 100 MB output takes ~25,000 4 KB page
  faults; allocated by NumPy, which asks for transparent huge pages (madvise), ~50. Filling
  NumPy-allocated outputs cut the batch-norm kernels from 92 to 28 ms (forward, (32, 64, 112,
  112)) and 130 to 50 ms (backward), and LRN forward from 150 to 73 ms. PyTorch's CPU
  allocator asks for huge pages only with THP_MEM_ALLOC_ENABLE=1; a quick try with it set was
  within the noise here.
* LRN power. denom^(-0.75) by two square roots instead of pow: on 9.3M values pow in float64
  took 325 ms, powf in float32 135 ms, the square roots 79 ms. beta = 0.75 (AlexNet, CaffeNet,
  GoogLeNet) takes that path; other betas pay pow, about 2-3x the forward time, still far
  below PyTorch. The forward saves denom and denom^(-beta), so the backward needs no power.
* LRN window. A running sum down the channels (two additions per value, any size) with a
  ring of `size` rows so that what leaves is exactly what entered; the backward runs the same
  scheme over the mirrored window.
* Batch-norm statistics. One pass with sums shifted by one of the channel's values (float64
  accumulators) instead of two passes; forward = 1 read for the statistics + 1 read/1 write
  for the output, backward = 2 reads for the sums + 2 reads/1 write for dx.
* Threads. Kernels on fewer than 32K elements run on the calling thread: on a busy machine
  waking numba's worker threads cost 1-25 ms per call (a batch-norm gradient check took 14 s
  instead of 2 s). Parallel loops go over channels (statistics), (sample, channel) planes
  (element-wise) and samples (LRN). With other jobs on the second core, 2 threads gave
  little over 1 in these runs.
* numba on TBB (2026-12-01; setup.py). The previous round ran numba's OpenMP layer and
  measured batch norm at (32, 64, 112, 112) at 125 ms, 91 ms of it outside the kernels: the
  OpenMP workers spinning after each parallel loop and taking a core from the NumPy work in
  between. On TBB's workers, which sleep, that row is 46 ms with 1.4 ms outside the kernels.
* PyTorch's LRN is composed of generic ops (square, pad, 3-d average pooling, pow, divide)
  and their backward passes, hence the large gap in that row.
"""

def lrn_pair(shape, rng):
    x = rng.standard_normal(shape, dtype=np.float32)
    gy = rng.standard_normal(shape, dtype=np.float32)
    x_t, gy_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(gy)

    def ours():
        x_c = cl.tensor(x, requires_grad=True)
        F.local_response_norm(x_c, 5).backward(gy)

    def theirs():
        x_t.grad = None
        torch.nn.functional.local_response_norm(x_t, 5).backward(gy_t)

    def kernels():
        x3 = x.reshape(shape[0], shape[1], -1)
        forward = backend.kernel("lrn_forward", x3)
        backward = backend.kernel("lrn_backward", x3)
        start = time.perf_counter()
        _, denom, factor = forward(x3, 5, 1e-4 / 5, 0.75, 1.0)
        middle = time.perf_counter()
        backward(gy.reshape(x3.shape), x3, denom, factor, 5, 1e-4 / 5, 0.75)
        return {"forward": middle - start, "backward": time.perf_counter() - middle}

    return ours, theirs, kernels


def batch_norm_pair(shape, rng):
    C = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32)
    gy = rng.standard_normal(shape, dtype=np.float32)
    weight = rng.standard_normal(C, dtype=np.float32)
    bias = rng.standard_normal(C, dtype=np.float32)
    running = [np.zeros(C, np.float32), np.ones(C, np.float32)]
    running_t = [torch.zeros(C), torch.ones(C)]
    x_t, gy_t = torch.from_numpy(x).requires_grad_(), torch.from_numpy(gy)
    w_t, b_t = torch.from_numpy(weight).requires_grad_(), torch.from_numpy(bias).requires_grad_()

    def ours():
        inputs = [cl.tensor(a, requires_grad=True) for a in (x, weight, bias)]
        F.batch_norm(inputs[0], *running, *inputs[1:], training=True).backward(gy)

    def theirs():
        for t in (x_t, w_t, b_t):
            t.grad = None
        torch.nn.functional.batch_norm(x_t, *running_t, w_t, b_t, training=True).backward(gy_t)

    def kernels():
        x3, gy3 = x.reshape(shape[0], C, -1), gy.reshape(shape[0], C, -1)
        times = {}
        start = time.perf_counter()
        mean, var = backend.kernel("batch_norm_statistics", x3)(x3)
        inv_std = 1 / np.sqrt(var + np.float32(1e-5))
        backend.kernel("batch_norm_forward", x3)(x3, mean, inv_std, weight, bias)
        times["forward"] = time.perf_counter() - start
        start = time.perf_counter()
        grad_bias, grad_weight = backend.kernel("batch_norm_grad_statistics", x3)(
            gy3, x3, mean, inv_std)
        backend.kernel("batch_norm_backward", x3)(
            gy3, x3, mean, inv_std, weight, grad_weight, grad_bias)
        times["backward"] = time.perf_counter() - start
        return times

    return ours, theirs, kernels


def kernel_medians(kernels, repeats):
    runs = [kernels() for _ in range(repeats)]
    return {part: statistics.median(run[part] for run in runs) for part in runs[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed repeats instead of 7")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_norm.md")))
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]

    rows, breakdown, ratios = [], [], []
    cases = ([("LRN(5)", s, lrn_pair) for s in LRN_CASES]
             + [("batch norm, train", s, batch_norm_pair) for s in BN_CASES])
    for name, shape, make in cases:
        ours, theirs, kernels = make(shape, rng)
        ours_s, theirs_s = time_side_by_side(ours, theirs, repeats=repeats, warmup=1)
        parts = kernel_medians(kernels, repeats)
        ratio = ours_s / theirs_s
        ratios.append(ratio)
        rows.append([name, str(shape), f"{ours_s * 1e3:.1f}", f"{theirs_s * 1e3:.1f}",
                     f"{ratio:.2f}"])
        glue = ours_s - sum(parts.values())
        breakdown.append([name, str(shape), f"{parts['forward'] * 1e3:.1f}",
                          f"{parts['backward'] * 1e3:.1f}", f"{glue * 1e3:.1f}"])
        print(" | ".join(rows[-1]), "|| kernels:", " | ".join(breakdown[-1][2:]), flush=True)

    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    busy = (" A quick run on a busy machine: compare ratios, not times." if args.quick else "")
    notes = "\n".join([
        f"Median of {repeats} interleaved runs after one warm-up; ratio = cnnlite / PyTorch "
        f"(geometric mean {geometric_mean(ratios):.2f}); {load}.{busy}",
        "",
        "Where cnnlite's time goes (ms; the kernels timed alone, 'rest' = total minus kernels:",
        "reshapes, autograd, Python; within the noise it can come out negative):",
        "",
        "| op | shape | forward kernels | backward kernels | rest |",
        "|---|---|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in breakdown),
        WHAT_WAS_TRIED,
    ])
    text = write_results(args.out, "Normalisation: cnnlite vs PyTorch (float32, forward + "
                         "backward, ms)", ["op", "shape", "cnnlite", "PyTorch", "ratio"],
                         rows, notes)
    print(text)


if __name__ == "__main__":
    main()
