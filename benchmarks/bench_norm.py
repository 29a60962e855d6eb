"""Speed of local response norm and batch norm (float32, forward + backward) against PyTorch.

    PYTHONPATH=. python3 benchmarks/bench_norm.py        # writes benchmarks/results_norm.md
    PYTHONPATH=. python3 benchmarks/bench_norm.py --rounds 1 --repeats 2 \
        --out benchmarks/_scratch/norm.md                # a quick try

Layers of their classic networks: LRN(5) after AlexNet's conv1 and conv2, batch norm in
training mode at the sizes of ResNet's first stages. Each framework runs in child processes of
its own (``common.py``); one more cnnlite child times cnnlite's kernels alone, to show where its
time goes (the rest is NumPy glue, allocation and autograd). Nothing here imports cnnlite or
torch at the top: each child loads only its own framework.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import geometric_mean, markdown_table, ms  # noqa: E402

LRN, BATCH_NORM = "LRN(5)", "batch norm, train"
# (op, input shape)
CASES = [(LRN, (32, 96, 55, 55)), (LRN, (32, 256, 27, 27)),
         (BATCH_NORM, (32, 64, 112, 112)), (BATCH_NORM, (32, 256, 56, 56))]

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


def case_name(op, shape) -> str:
    return f"{op}, {shape}"


def make_cases():
    """{case: (op, float32 arrays)}, the same in every child (one seeded RNG, in order)."""
    rng = np.random.default_rng(0)
    cases = {}
    for op, shape in CASES:
        arrays = {name: rng.standard_normal(shape, dtype=np.float32) for name in ("x", "gy")}
        if op == BATCH_NORM:
            arrays.update({name: rng.standard_normal(shape[1], dtype=np.float32)
                           for name in ("weight", "bias")})
        cases[case_name(op, shape)] = op, arrays
    return cases


def per_case(lrn, batch_norm):
    """{case: step}, from one framework's step builders for the two ops."""
    return {case: (lrn if op == LRN else batch_norm)(arrays)
            for case, (op, arrays) in make_cases().items()}


def cnnlite_steps():
    import cnnlite as cl
    from cnnlite import functional as F

    def lrn(a):
        def step():
            F.local_response_norm(cl.tensor(a["x"], requires_grad=True), 5).backward(a["gy"])
        return step

    def batch_norm(a):
        running = [np.zeros_like(a["weight"]), np.ones_like(a["weight"])]

        def step():
            x, w, b = (cl.tensor(a[name], requires_grad=True) for name in ("x", "weight", "bias"))
            F.batch_norm(x, *running, w, b, training=True).backward(a["gy"])
        return step
    return per_case(lrn, batch_norm)


def torch_steps():
    import torch
    import torch.nn.functional as TF

    def lrn(a):
        x, gy = torch.from_numpy(a["x"]).requires_grad_(), torch.from_numpy(a["gy"])

        def step():
            x.grad = None
            TF.local_response_norm(x, 5).backward(gy)
        return step

    def batch_norm(a):
        x, w, b = (torch.from_numpy(a[name]).requires_grad_() for name in ("x", "weight", "bias"))
        gy, running = torch.from_numpy(a["gy"]), [torch.zeros(w.shape), torch.ones(w.shape)]

        def step():
            for t in (x, w, b):
                t.grad = None
            TF.batch_norm(x, *running, w, b, training=True).backward(gy)
        return step
    return per_case(lrn, batch_norm)


def lrn_kernels(a):
    """Seconds in cnnlite's LRN kernels, forward and backward, for one run."""
    from cnnlite import backend

    x3 = a["x"].reshape(a["x"].shape[0], a["x"].shape[1], -1)
    start = time.perf_counter()  # size 5, alpha 1e-4 over the size, beta 0.75, k 1: the defaults
    _, denom, factor = backend.kernel("lrn_forward", x3)(x3, 5, 1e-4 / 5, 0.75, 1.0)
    middle = time.perf_counter()
    backend.kernel("lrn_backward", x3)(a["gy"].reshape(x3.shape), x3, denom, factor, 5,
                                       1e-4 / 5, 0.75)
    return {"forward": middle - start, "backward": time.perf_counter() - middle}


def batch_norm_kernels(a):
    """Seconds in cnnlite's batch-norm kernels, forward and backward, for one run."""
    from cnnlite import backend

    n, c = a["x"].shape[:2]
    x3, gy3 = a["x"].reshape(n, c, -1), a["gy"].reshape(n, c, -1)
    start = time.perf_counter()
    mean, var = backend.kernel("batch_norm_statistics", x3)(x3)
    inv_std = 1 / np.sqrt(var + np.float32(1e-5))
    backend.kernel("batch_norm_forward", x3)(x3, mean, inv_std, a["weight"], a["bias"])
    middle = time.perf_counter()
    grad_bias, grad_weight = backend.kernel("batch_norm_grad_statistics", x3)(
        gy3, x3, mean, inv_std)
    backend.kernel("batch_norm_backward", x3)(gy3, x3, mean, inv_std, a["weight"], grad_weight,
                                              grad_bias)
    return {"forward": middle - start, "backward": time.perf_counter() - middle}


def profile(repeats, warmup):
    """cnnlite's kernels alone, in a cnnlite child: {case: median seconds forward, backward}."""
    medians = {}
    for case, (op, a) in make_cases().items():
        kernels = lrn_kernels if op == LRN else batch_norm_kernels
        runs = [kernels(a) for _ in range(warmup + repeats)][warmup:]  # warm-up runs dropped
        medians[case] = {part: statistics.median(run[part] for run in runs) for part in runs[0]}
    return medians


def summarise(run):
    """The main table, and the breakdown of cnnlite's time below it."""
    rows, breakdown = [], []
    for op, shape in CASES:
        case = case_name(op, shape)
        ours, kernels = run.best["cnnlite"][case], run.profile[case]
        rows.append([op, str(shape), ms(ours), ms(run.best["torch"][case]),
                     f"{run.ratio('cnnlite', case):.2f}"])
        breakdown.append([op, str(shape), ms(kernels["forward"]), ms(kernels["backward"]),
                          ms(ours - sum(kernels.values()))])
    rows.append(["geometric mean", "", "", "", f"{geometric_mean(run.ratios('cnnlite')):.2f}"])
    notes = "\n".join([
        "Where cnnlite's time goes (ms; the kernels timed alone in a cnnlite child, median of "
        f"{run.args.repeats} runs; 'rest' = cnnlite's time above minus the kernels: reshapes, "
        "autograd, Python; within the noise it can come out negative):", "",
        markdown_table(["op", "shape", "forward kernels", "backward kernels", "rest"], breakdown),
        WHAT_WAS_TRIED])
    return ["op", "shape", "cnnlite", "PyTorch", "ratio"], rows, notes


SUITE = common.Suite(
    "Normalisation: cnnlite vs PyTorch (float32, forward + backward, ms)",
    Path(__file__).resolve(),
    (common.Side("cnnlite", "cnnlite", "cnnlite", cnnlite_steps),
     common.Side("torch", "PyTorch", "torch", torch_steps)),
    summarise, profile)

if __name__ == "__main__":
    common.main(SUITE)
