"""conv2d forward + backward in float32, cnnlite vs PyTorch, on the layers of REFERENCES.md sec. 7.

    PYTHONPATH=. python3 benchmarks/bench_conv.py [--repeats 11]

For each layer both frameworks compute y = conv2d(x, w, b) and the gradients of x, w and b for
the same upstream gradient, alternately (see ``common.time_side_by_side``). The script prints
and writes ``benchmarks/results_conv.md``: the medians, the ratio cnnlite / PyTorch per layer
and its geometric mean (with the algorithm conv2d chose, and with im2col forced), where
cnnlite's time goes (each step of the im2col Function, each Winograd kernel), Winograd against
im2col on 3x3 layers of several sizes (the rule of ``winograd_applies``), and the notes on
what was tried to make it faster.
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
from cnnlite.cpu import KERNELS as CPU_KERNELS  # noqa: E402
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

Measured on this 2-core machine; each effect in one process against the alternative,
interleaved, with the pauses of the headline table. Earlier rounds ran while other jobs shared
the machine, so only effects well above the noise are listed.

- **numba's threading layer: TBB instead of OpenMP** (``tbb`` in setup.py; numba takes it
  when it is installed). Under numba's OpenMP layer the idle workers spin after every parallel
  loop (GNU libgomp's default spin count), and on 2 cores the spinning worker takes a core from
  the BLAS product that follows, and OpenBLAS's spinning workers from the next numba loop.
  TBB's workers go to sleep. Same code, four layers: geometric mean 1.50 and 1.50 under TBB
  against 2.13 and 2.67 under OpenMP (Winograd in 4 MiB chunks, which hand over between numba
  and BLAS 8 times more often). The im2col path alone gained too: the first layer ran
  94.7 ms in the previous round's table and 70.5 ms now (same code apart from the layer).
  Rejected: setting ``GOMP_SPINCOUNT``/``OMP_WAIT_POLICY`` from the library (PyTorch ships its
  own ``libgomp.so.1``; whichever loads first is the one both use, so it would change PyTorch's
  behaviour too) and numba's ``workqueue`` layer (it aborts the process when two Python threads
  run parallel kernels at once, e.g. a data-loader thread).
- **Winograd F(2x2, 3x3) for 3x3 stride-1 layers** (``cnnlite.functional.winograd``): 16
  instead of 36 multiply-adds per output and channel pair. The products shrink 2.25x (single
  thread, first layer: 16 + 15 + 16 ms against im2col's 34 + 30 + 34 ms), but they are short
  (K = C = 64 there: ~100-130 GFLOP/s against ~290 for im2col's long products) and V, M and dM
  are 4x the input, so the transforms run at the memory bandwidth and take half the step. In
  the end Winograd is 3-8% faster than im2col (once 20%) on 3x3 layers of 64 channels or more
  with outputs of 14x14 or more, within a few percent either way at 32-48 channels, and slower
  on small feature maps (8 x 512 x 7x7: 1.6x im2col's time): the rule of ``winograd_applies``
  and the table above it. A small gain for this much code, kept because it decides the
  3x3 layers where the target is tightest, and because the algorithm is worth reading.
- **Winograd's 4K aliasing.** The transforms write one value into each of 16 planes per tile;
  planes of 2 MiB start at the same offset within a 4 KiB page, and every later load waited
  for the 16 stores (26 ms for the first layer's input transform). A 64-byte gap after each
  plane: 3.7 ms.
- **Winograd in chunks of samples that stay in the cache.** V of one chunk <= 4 MiB (sweep of
  the first two layers: 1 MiB 2.11 / 1.76, 2 MiB 1.75 / 1.69, 4 MiB 1.62 / 1.71, 8 MiB
  1.78 / 1.67, the whole batch 2.87 / 2.15 x PyTorch); the backward pass transforms x again
  per chunk instead of keeping V. The same chunking does not help im2col (a budget of 32, 16
  or 8 MiB against 256 MiB: AlexNet conv2 1.67, 1.79, 1.88 against 1.62).
- **Filter transforms as two tensordots** instead of one ``einsum`` or a broadcast matmul of
  4x3 matrices: 128 x 128 filters 2.2 -> 1.0 ms (forward), 1.4 -> 0.85 ms (backward).
- **Column layout (C*kh*kw, N*OH*OW): one GEMM per product for the whole batch.** A per-sample
  layout (N, C*kh*kw, OH*OW) gives NCHW without a transpose but runs N smaller GEMMs. The three
  products of a layer took 56 / 41 / 26 / 100 ms as one GEMM per sample against
  49 / 34 / 24 / 76 ms as one GEMM for the batch (layers in table order, OpenBLAS, 2 threads).
  The price is a transpose of y and one of dL/dy, 1 to 2 ms each (the bias is added in the
  transpose of y, so it costs no pass).
- **dL/dW as (col @ dL/dy^T)^T** instead of dL/dy @ col^T (same numbers): 14.4 -> 12.2,
  11.1 -> 10.0, 9.0 -> 8.3 ms, layer 4 unchanged. The forward product is faster as W @ col
  than as col^T @ W^T (10.6 vs 16.6 ms on layer 1); dL/dcol stays W^T @ dL/dy, written into
  the kept col (``out=``): a fresh 72 MB result costs 5-6 ms of page zeroing here.
- **Unsigned indices in the innermost loops of the im2col kernels.** With signed indices numba
  tests every index for a negative value and LLVM does not vectorise the copy: im2col
  17.6 -> 10.2, 12.6 -> 3.5, 7.4 -> 4.9, 14.2 -> 5.9 ms; col2im likewise.
- **im2col copies only the part inside the image into a zeroed col**, so the padding costs
  nothing, and col2im mirrors it; **col from the forward pass kept for dL/dW** when the batch
  fits in one chunk (saves an im2col, 6 to 16 ms per layer).
- **Small inputs on the calling thread alone** (``cnnlite.cpu.parallel``): the float64
  gradient checks call the kernels thousands of times on tiny inputs.
- **Tried and dropped: the chunks of a batch on one thread each** (each core running its own
  chunks' transforms and single-threaded products, no hand-over between thread pools): the
  first layer 1.1-1.2x faster, the second 1.1-1.3x slower (OpenBLAS's stacked products did not
  run concurrently from two threads; as 16 2-d products they did, yet the step was no faster).
  Also dropped: keeping every chunk's V for the backward pass instead of transforming x again
  (no difference above the noise), dynamic scheduling of the numba loops
  (``numba.set_parallel_chunksize`` 8 or 64: within 3%), Winograd F(4x4, 3x3) (products 1.8x
  smaller still, but its input transform ran 3-4x longer than F(2x2)'s, and its float32
  rounding error is ten times that of the direct convolution).
- **Runs of the final code** (2026-12-01, quiet machine): geometric mean 1.50 and 1.56 with 7
  repeats, 1.34 and 1.40 with 11 (the default since: the medians of 7 moved with PyTorch's
  times, 27-41 ms on the first layer from run to run). The table above is one more run.
- **Timing protocol.** Back to back in one process, each framework's still-busy workers slow
  the other down, PyTorch far more. The headline ratios use a 0.3 s pause before every timed
  run; the back-to-back column shows how much the plain protocol flatters cnnlite.
- **What is left.** AlexNet conv2 (5x5) is im2col's three GEMMs at ~290 GFLOP/s (24 ms
  each), already more than PyTorch's whole step; only a different algorithm would help there.
  On the 3x3 layers the Winograd products run at ~100-130 GFLOP/s (short K) and the transforms
  at the memory bandwidth; a fused kernel (transform, product and inverse transform per block
  of tiles in the cache) is the next step worth measuring.
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


def cnnlite_step(layer, algorithm="auto"):
    x, w, b = (cl.tensor(layer[name], requires_grad=True) for name in "xwb")

    def step():
        for t in (x, w, b):
            t.grad = None
        with backend.conv_algorithm(algorithm):
            y = F.conv2d(x, w, b, stride=layer["stride"], padding=layer["padding"])
        y.backward(layer["gy"])
        return type(y.creator).__name__
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
    """Median ms of each step the im2col Function takes for this layer (one chunk, groups=1)."""
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


WINOGRAD_KERNELS = ["winograd_filter", "winograd_input", "winograd_output",
                    "winograd_output_grad", "winograd_input_grad", "winograd_filter_grad"]


def profile_winograd(layer, repeats):
    """Median ms per step in each Winograd kernel (all chunks), and the rest: the 16-GEMM
    products plus Python, of a whole forward + backward step."""
    step = cnnlite_step(layer, "winograd")
    real = {name: CPU_KERNELS[name] for name in WINOGRAD_KERNELS}
    spent = {}

    def timed(name):
        def run(*args):
            start = time.perf_counter()
            result = real[name](*args)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
            return result
        return run

    totals = {name: [] for name in WINOGRAD_KERNELS + ["products and rest", "step"]}
    try:
        CPU_KERNELS.update({name: timed(name) for name in WINOGRAD_KERNELS})
        step()
        for _ in range(repeats):
            spent.clear()
            time.sleep(0.3)
            start = time.perf_counter()
            step()
            total = time.perf_counter() - start
            for name in WINOGRAD_KERNELS:
                totals[name].append(spent.get(name, 0.0))
            totals["products and rest"].append(total - sum(spent.values()))
            totals["step"].append(total)
    finally:
        CPU_KERNELS.update(real)
    return {name: statistics.median(values) * 1e3 for name, values in totals.items()}


# (N, C = O, H = W) of 3x3 stride-1 padding-1 layers, for the rule of winograd_applies
CHOICE_LAYERS = [(32, 16, 32), (32, 32, 32), (32, 48, 32), (32, 64, 32), (8, 64, 56),
                 (8, 128, 28), (32, 128, 16), (16, 256, 14), (16, 256, 8), (8, 512, 7)]


def choice_table(repeats, rng):
    """Winograd against im2col, both cnnlite, on 3x3 layers of several sizes."""
    lines = ["| N, C = O, H = W | Winograd ms | im2col ms | Winograd / im2col | auto takes |",
             "|---|---|---|---|---|"]
    for n, channels, size in CHOICE_LAYERS:
        layer = make_layer(n, channels, size, 3, channels, 1, 1, rng)
        winograd, im2col = time_side_by_side(cnnlite_step(layer, "winograd"),
                                             cnnlite_step(layer, "im2col"), repeats, pause=0.2)
        taken = cnnlite_step(layer)()
        lines.append(f"| {n}, {channels}, {size} | {winograd * 1e3:.1f} | {im2col * 1e3:.1f} | "
                     f"{winograd / im2col:.2f} | {taken} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    layers = [make_layer(*spec, rng) for spec in LAYERS]
    rows, ratios, im2col_ratios, back_to_back_ratios, profiles, winograd_profiles = \
        [], [], [], [], [], {}
    for spec, name, layer in zip(LAYERS, LAYER_NAMES, layers):
        ours_step, torch_step_ = cnnlite_step(layer), torch_step(layer)
        ours, theirs = time_side_by_side(ours_step, torch_step_, args.repeats, pause=0.3)
        im2col, theirs_again = time_side_by_side(cnnlite_step(layer, "im2col"), torch_step_,
                                                 args.repeats, pause=0.3)
        ours_b2b, theirs_b2b = time_side_by_side(ours_step, torch_step_, args.repeats)
        algorithm = ours_step()
        ratios.append(ours / theirs)
        im2col_ratios.append(im2col / theirs_again)
        back_to_back_ratios.append(ours_b2b / theirs_b2b)
        rows.append([name, ", ".join(map(str, spec)), algorithm, f"{ours * 1e3:.1f}",
                     f"{theirs * 1e3:.1f}", f"{ours / theirs:.2f}",
                     f"{im2col * 1e3:.1f} / {theirs_again * 1e3:.1f} = "
                     f"{im2col / theirs_again:.2f}",
                     f"{ours_b2b * 1e3:.1f} / {theirs_b2b * 1e3:.1f} = "
                     f"{ours_b2b / theirs_b2b:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
        profiles.append(profile_steps(layer, max(3, args.repeats // 2)))
        if algorithm == "Conv2dWinograd":
            winograd_profiles[name] = profile_winograd(layer, max(3, args.repeats // 2))
    rows.append(["geometric mean", "", "", "", "", f"**{geometric_mean(ratios):.2f}**",
                 f"{geometric_mean(im2col_ratios):.2f}",
                 f"{geometric_mean(back_to_back_ratios):.2f}"])
    print(f"geometric mean of the ratios: {geometric_mean(ratios):.2f} (im2col only: "
          f"{geometric_mean(im2col_ratios):.2f}, back to back: "
          f"{geometric_mean(back_to_back_ratios):.2f})")

    steps = list(profiles[0])
    profile_table = ["| layer | " + " | ".join(steps) + " | sum |",
                     "|---" * (len(steps) + 2) + "|"]
    for name, profile in zip(LAYER_NAMES, profiles):
        profile_table.append(f"| {name} | " + " | ".join(f"{profile[s]:.1f}" for s in steps)
                             + f" | {sum(profile.values()):.1f} |")
    columns = WINOGRAD_KERNELS + ["products and rest", "step"]
    winograd_table = ["| layer | " + " | ".join(c.replace("winograd_", "") for c in columns)
                      + " |", "|---" * (len(columns) + 1) + "|"]
    for name, profile in winograd_profiles.items():
        winograd_table.append(f"| {name} | " + " | ".join(f"{profile[c]:.1f}" for c in columns)
                              + " |")
    choices = choice_table(max(3, args.repeats // 2 + 1), rng)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    notes = (f"Forward + backward (dL/dx, dL/dw, dL/db), float32, median ms of {args.repeats} "
             f"interleaved runs, each after a 0.3 s pause; ratio = cnnlite / PyTorch (lower is "
             f"better; target: geometric mean <= 1.5). 'algorithm' is the Function conv2d "
             f"chose; the im2col column forces ``backend.conv_algorithm(\"im2col\")`` on every "
             f"layer. The last column runs the two back to back without pauses "
             f"(``common.time_side_by_side`` with pause=0): there each framework's still-busy "
             f"worker threads slow the other one down. Load average (1, 5, 15 min) when the "
             f"run ended: {load}.\n\n"
             "## Where cnnlite's time goes: im2col (ms per step of the im2col Function, run in "
             "its order)\n\n" + "\n".join(profile_table) + "\n\n"
             "## Where cnnlite's time goes: Winograd (ms per step in each kernel, all chunks; "
             "'products and rest' is the step less the kernels: the 16-GEMM products, "
             "allocation and Python)\n\n" + "\n".join(winograd_table) + "\n\n"
             "## Winograd or im2col: 3x3, stride 1, padding 1 (median ms of forward + "
             "backward)\n\n" + choices + "\n" + NOTES)
    text = write_results(RESULTS, "conv2d forward + backward: cnnlite vs PyTorch",
                         ["layer", "N, C, H, K, O, stride, pad", "algorithm", "cnnlite ms",
                          "PyTorch ms", "ratio", "im2col only: cnnlite / PyTorch ms = ratio",
                          "back to back: cnnlite / PyTorch ms = ratio"], rows, notes)
    print(f"wrote {RESULTS}")
    return text


if __name__ == "__main__":
    main()
