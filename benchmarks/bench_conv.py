"""conv2d forward + backward in float32, cnnlite vs PyTorch, on the layers of REFERENCES.md sec. 7.

    cd /work/main && PYTHONPATH=. python3 benchmarks/bench_conv.py [--repeats 7]

For each layer both frameworks compute y = conv2d(x, w, b) and the gradients of x, w and b for
the same upstream gradient, alternately (see ``common.time_side_by_side``). The script prints
and writes ``benchmarks/results_conv.md``: the medians, the ratio cnnlite / PyTorch per layer
and its geometric mean, then where cnnlite's time goes (each step of ``Conv2d`` timed on its
own) and the notes on what was tried to make it faster.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cnnlite as cl  # noqa: E402
from cnnlite import backend  # noqa: E402
from cnnlite import functional as F  # noqa: E402
from common import geometric_mean, time_side_by_side, write_results  # noqa: E402

# (N, C, H=W, K, O, stride, padding), from REFERENCES.md section 7
LAYERS = [
    (32, 64, 32, 3, 64, 1, 1),
    (32, 128, 16, 3, 128, 1, 1),
    (8, 3, 227, 11, 96, 4, 0),
    (8, 96, 27, 5, 256, 1, 2),
]
LAYER_NAMES = ["3x3, 64 -> 64 at 32x32", "3x3, 128 -> 128 at 16x16",
               "AlexNet conv1, 11x11 s4", "AlexNet conv2, 5x5 p2"]

RESULTS = Path(__file__).resolve().parent / "results_conv.md"

NOTES = """
## What was tried, and the effect

Measured on this shared 2-core machine (other engineers' jobs running, load average 0.5 to 8),
so only effects well above the noise are listed; each was measured in one process against the
alternative, interleaved.

- **Column layout (C*kh*kw, N*OH*OW): one GEMM per product for the whole batch.** A per-sample
  layout (N, C*kh*kw, OH*OW) gives NCHW without a transpose but runs N smaller GEMMs. The three
  products of a layer took 56 / 41 / 26 / 100 ms as one GEMM per sample against
  49 / 34 / 24 / 76 ms as one GEMM for the batch (layers in table order, OpenBLAS, 2 threads).
  The price is a transpose of y and one of dL/dy, 1 to 2 ms each (the bias is added in the
  transpose of y, so it costs no pass).
- **dL/dW as (col @ dL/dy^T)^T** instead of dL/dy @ col^T (same numbers): 14.4 -> 12.2,
  11.1 -> 10.0, 9.0 -> 8.3 ms, layer 4 unchanged. The forward product is faster as W @ col
  than as col^T @ W^T (10.6 vs 16.6 ms on layer 1); dL/dcol stays W^T @ dL/dy, because the other
  orientation would hand col2im a transposed matrix to copy first.
- **Unsigned indices in the innermost loops of the numba kernels.** With signed indices numba
  tests every index for a negative value and LLVM does not vectorise the copy. Serial kernels,
  warm buffers, per layer: im2col 17.6 -> 10.2, 12.6 -> 3.5, 7.4 -> 4.9, 14.2 -> 5.9 ms;
  col2im 17.2 -> 9.7, 14.2 -> 6.7, 8.9 -> 4.9, 13.3 -> 7.3 ms. Tried and dropped: slices
  (a view per row segment) instead of index loops, up to 2x slower than the plain loops.
- **im2col copies only the part inside the image into a zeroed col** (np.zeros: fresh pages
  arrive zeroed anyway), so the padding costs nothing, and col2im mirrors it.
- **col from the forward pass kept for dL/dW** when the batch fits in one chunk: saves the
  second im2col (6 to 16 ms per layer here). Memory: one col per conv layer between its forward
  and backward pass, never more than the budget.
- **dL/dcol written over col** (``matmul(..., out=col)``) instead of a fresh array: fresh memory
  costs ~4-8 ms per 72 MB here (page faults; warm im2col of layer 1: 6.0 ms, fresh: 13.6 ms).
- **Small inputs on the calling thread alone** (first a threshold of its own, now the shared
  rule of ``cnnlite.cpu.parallel``): the float64 gradient checks in the tests call the kernels
  thousands of times on tiny inputs (14 s -> 5 s in one measurement on the busy machine).
- **Chunk budget.** 256 MiB keeps these four layers in one chunk. Smaller budgets are
  *catastrophic under numba's default OpenMP threading layer*: sum of the four layers 286 ms
  (256 MiB), 452 ms (16 MiB), 1198 ms (4 MiB). Every chunk hands the cores from numba's
  OpenMP workers to OpenBLAS's workers and back, and each pool keeps spinning after its work.
  With ``NUMBA_THREADING_LAYER=workqueue`` (or ``OMP_WAIT_POLICY=passive``, or serial kernels)
  4 MiB chunks cost the same as one chunk (276-288 ms), and the one-chunk case gets faster
  too: 269 -> 238 ms (workqueue and passive alike). This affects every numba kernel that runs
  between two GEMMs, so it is a project-wide setting (``cnnlite/cpu/__init__.py``).
- **Timing protocol.** Back to back in one process, each framework's still-spinning workers
  slow the other down, and PyTorch far more: layer 1 PyTorch alone 34 ms, interleaved with
  cnnlite 98 ms (30.8 ms with ``OPENBLAS_THREAD_TIMEOUT=4``, which sends OpenBLAS's idle workers
  to sleep at once). The headline ratios therefore use a 0.3 s pause before every timed run;
  the back-to-back column shows how much the plain protocol flatters cnnlite.
- **Runs during development** (2026-11-22, final code, load average 0.6-1.1): geometric
  mean 1.72, 1.65, 1.76, 1.83 with pauses (0.74, 0.76, 0.68, 0.66 back to back; the last run
  is the table above, its layer 4 slowed by another job); the same script under
  ``NUMBA_THREADING_LAYER=workqueue``: 1.66, 1.49 (0.80, 0.74).
- **What is left.** On layers 1 and 2 the three GEMMs alone (~37 and ~29 ms) take longer than
  PyTorch's whole forward + backward (~24-35 ms), and im2col, the GEMMs and col2im move the
  36-72 MB column matrix through memory five times per step (a warm 72 MB memset alone takes
  ~8 ms on this machine). Layers 3 and 4 are at 0.9-1.7x in the runs above.
"""


def make_layer(n, c, size, k, o, stride, padding, rng):
    """float32 inputs and the upstream gradient of one layer."""
    out = (size + 2 * padding - k) // stride + 1
    layer = dict(x=rng.standard_normal((n, c, size, size), dtype=np.float32),
                 w=(rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32),
                 b=rng.standard_normal(o, dtype=np.float32),
                 gy=rng.standard_normal((n, o, out, out), dtype=np.float32),
                 stride=stride, padding=padding)
    assert all(layer[name].dtype == np.float32 for name in ("x", "w", "b", "gy"))
    return layer


def cnnlite_step(layer):
    x, w, b = (cl.tensor(layer[name], requires_grad=True) for name in "xwb")

    def step():
        for t in (x, w, b):
            t.grad = None
        F.conv2d(x, w, b, stride=layer["stride"], padding=layer["padding"]).backward(layer["gy"])
    return step


def torch_step(layer):
    x, w, b = (torch.tensor(layer[name], requires_grad=True) for name in "xwb")
    gy = torch.tensor(layer["gy"])

    def step():
        for t in (x, w, b):
            t.grad = None
        torch.nn.functional.conv2d(x, w, b, stride=layer["stride"],
                                   padding=layer["padding"]).backward(gy)
    return step


def profile_steps(layer, repeats):
    """Median ms of each step Conv2d takes for this layer (one chunk, groups=1), in its order."""
    x, w, b, gy = layer["x"], layer["w"], layer["b"], layer["gy"]
    im2col, col2im = backend.kernel("im2col", x), backend.kernel("col2im", x)
    N, O, L = gy.shape[0], gy.shape[1], gy.shape[2] * gy.shape[3]
    k = w.shape[2]
    geometry = (k, k, (layer["stride"],) * 2, (layer["padding"],) * 2, (1, 1))
    w_rows = w.reshape(O, -1)
    times = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for _ in range(repeats):
        time.sleep(0.3)
        col = timed("im2col", lambda: im2col(x, *geometry))
        y = timed("W @ col", lambda: w_rows @ col)
        timed("transpose y, + b", lambda: y.reshape(O, N, L).transpose(1, 0, 2) + b[:, None])
        gy_rows = timed("transpose dy", lambda: gy.transpose(1, 0, 2, 3).reshape(O, -1))
        timed("(col @ dy^T)^T", lambda: (col @ gy_rows.T).T)
        gcol = timed("W^T @ dy", lambda: np.matmul(w_rows.T, gy_rows, out=col))
        timed("col2im", lambda: col2im(gcol, x.shape, *geometry))
        timed("sum dy", lambda: gy.sum(axis=(0, 2, 3)))
        col = gcol = None  # freed before the next im2col, as in Conv2d
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    layers = [make_layer(*spec, rng) for spec in LAYERS]
    rows, ratios, back_to_back_ratios, profiles = [], [], [], []
    for spec, name, layer in zip(LAYERS, LAYER_NAMES, layers):
        ours_step, torch_step_ = cnnlite_step(layer), torch_step(layer)
        ours, theirs = time_side_by_side(ours_step, torch_step_, args.repeats, pause=0.3)
        ours_b2b, theirs_b2b = time_side_by_side(ours_step, torch_step_, args.repeats)
        ratios.append(ours / theirs)
        back_to_back_ratios.append(ours_b2b / theirs_b2b)
        rows.append([name, ", ".join(map(str, spec)), f"{ours * 1e3:.1f}", f"{theirs * 1e3:.1f}",
                     f"{ours / theirs:.2f}", f"{ours_b2b * 1e3:.1f} / {theirs_b2b * 1e3:.1f} = "
                     f"{ours_b2b / theirs_b2b:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
        profiles.append(profile_steps(layer, max(3, args.repeats // 2)))
    rows.append(["geometric mean", "", "", "", f"**{geometric_mean(ratios):.2f}**",
                 f"{geometric_mean(back_to_back_ratios):.2f}"])
    print(f"geometric mean of the ratios: {geometric_mean(ratios):.2f} "
          f"(back to back: {geometric_mean(back_to_back_ratios):.2f})")

    steps = list(profiles[0])
    profile_table = ["| layer | " + " | ".join(steps) + " | sum |",
                     "|---" * (len(steps) + 2) + "|"]
    for name, profile in zip(LAYER_NAMES, profiles):
        profile_table.append(f"| {name} | " + " | ".join(f"{profile[s]:.1f}" for s in steps)
                             + f" | {sum(profile.values()):.1f} |")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    notes = (f"Forward + backward (dL/dx, dL/dw, dL/db), float32, median ms of {args.repeats} "
             f"interleaved runs, each after a 0.3 s pause; ratio = cnnlite / PyTorch (lower is "
             f"better; target: geometric mean <= 1.5). The last column runs the two back to "
             f"back without pauses (``common.time_side_by_side`` with pause=0): there each framework's "
             f"still-spinning worker threads slow the other one down, PyTorch far more (see the "
             f"notes). Load average (1, 5, 15 min) when the run ended: {load}; the machine is "
             f"shared, so rerun on a quiet machine for final figures.\n\n"
             f"## Where cnnlite's time goes (ms per step of Conv2d, run in its order)\n\n"
             + "\n".join(profile_table) + "\n" + NOTES)
    text = write_results(RESULTS, "conv2d forward + backward: cnnlite vs PyTorch",
                         ["layer", "N, C, H, K, O, stride, pad", "cnnlite ms", "PyTorch ms",
                          "ratio", "back to back: cnnlite / PyTorch ms = ratio"], rows, notes)
    print(f"wrote {RESULTS}")
    return text


if __name__ == "__main__":
    main()
