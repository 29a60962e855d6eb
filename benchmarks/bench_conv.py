"""conv2d forward + backward in float32, cnnlite vs PyTorch, each in processes of its own.

    PYTHONPATH=. python3 benchmarks/bench_conv.py        # writes benchmarks/results_conv.md
    PYTHONPATH=. python3 benchmarks/bench_conv.py --rounds 1 --repeats 2 \
        --out benchmarks/_scratch/conv.md                # a quick try

Six layers: the four of REFERENCES.md sec. 7 (the project's target is on those) and two of
ResNet's (a 3x3 layer of its third stage, a 1x1 expansion of its first). For each, y =
conv2d(x, w, b) and the gradients of x, w and b for the same upstream gradient, timed in three
columns of child processes (``common.py``): cnnlite with the algorithm conv2d chooses, cnnlite
with im2col forced, and PyTorch. One more cnnlite child measures cnnlite alone: where its time
goes (each step of the im2col Function, each Winograd kernel) and Winograd against im2col on
3x3 layers of several sizes (the rule of ``winograd_applies``). The results file ends with the
notes on what was tried to make it faster.

Nothing here imports cnnlite or torch at the top: the functions that need one import it, so
that each child loads only its own framework.
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

# (N, C, H=W, K, O, stride, padding): REFERENCES.md section 7, then two of ResNet's layers
LAYERS = [
    (32, 64, 32, 3, 64, 1, 1),
    (32, 128, 16, 3, 128, 1, 1),
    (8, 3, 227, 11, 96, 4, 0),
    (8, 96, 27, 5, 256, 1, 2),
    (16, 256, 14, 3, 256, 1, 1),
    (8, 64, 56, 1, 256, 1, 0),
]
LAYER_NAMES = ["3x3, 64 -> 64 at 32x32", "3x3, 128 -> 128 at 16x16",
               "AlexNet conv1, 11x11 s4", "AlexNet conv2, 5x5 p2",
               "3x3, 256 -> 256 at 14x14", "1x1, 64 -> 256 at 56x56"]
REFERENCE_LAYERS = 4  # the first four: the target (geometric mean <= 1.5) is on those
TARGET = 1.5

NOTES = """
## What was tried, and the effect

Measured on this 2-core machine, under the earlier in-process protocol (see "Timing
protocol" below): each effect in one process against the alternative, interleaved, with a
0.3 s pause before every timed run. Earlier rounds ran while other jobs shared the machine, so
only effects well above the noise are listed.

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
- **Runs of the final code** (2026-12-01, quiet machine, in-process protocol, four layers):
  geometric mean 1.50 and 1.56 with 7 repeats, 1.34 and 1.40 with 11 (the default since: the
  medians of 7 moved with PyTorch's times, 27-41 ms on the first layer from run to run).
- **Timing protocol, changed.** Up to the run of 2026-12-01 both frameworks ran in one
  process, interleaved. Back to back, each framework's still-busy workers slowed the other
  down, PyTorch far more: geometric mean 0.56 back to back against 1.41 with a 0.3 s pause
  before every timed run, in the same run of the same code, and 2.9 in another in-process
  harness. With figures that moved with the protocol more than with the code, the in-process
  timing was found untrustworthy on 2 cores; the table now comes from separate processes
  (Method above), and the "back to back" column is gone with it.
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


def make_layers() -> dict:
    """{name: layer} of the table, the same arrays in every child (one seeded RNG, in order)."""
    rng = np.random.default_rng(0)
    return {name: make_layer(*spec, rng) for name, spec in zip(LAYER_NAMES, LAYERS)}


def cnnlite_step(layer, algorithm="auto"):
    """One forward + backward step; it returns the name of the Function conv2d chose."""
    import cnnlite as cl
    from cnnlite import backend
    from cnnlite import functional as F

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
    import torch

    x, w, b = (torch.tensor(layer[name], requires_grad=True) for name in "xwb")
    gy = torch.tensor(layer["gy"])

    def step():
        for t in (x, w, b):
            t.grad = None
        torch.nn.functional.conv2d(x, w, b, stride=layer["stride"],
                                   padding=layer["padding"]).backward(gy)
    return step


def per_layer(make_step, *args):
    """The steps of one column: {layer name: step}."""
    return {name: make_step(layer, *args) for name, layer in make_layers().items()}


def profile_steps(layer, repeats):
    """Median ms of each step the im2col Function takes for this layer (one chunk, groups=1).

    The first run loads the kernels and is not counted; a 0.3 s pause before each run lets
    the worker threads of the previous one go idle.
    """
    from cnnlite import backend

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

    for _ in range(repeats + 1):
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
    return {name: statistics.median(values[1:]) * 1e3 for name, values in times.items()}


WINOGRAD_KERNELS = ["winograd_filter", "winograd_input", "winograd_output",
                    "winograd_output_grad", "winograd_input_grad", "winograd_filter_grad"]
WINOGRAD_COLUMNS = WINOGRAD_KERNELS + ["products and rest", "step"]


def profile_winograd(layer, repeats):
    """Median ms per step in each Winograd kernel (all chunks), and the rest: the 16-GEMM
    products plus Python, of a whole forward + backward step."""
    from cnnlite.cpu import KERNELS as CPU_KERNELS

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

    totals = {name: [] for name in WINOGRAD_COLUMNS}
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


# (N, C = O, H = W) of 3x3 stride-1 padding-1 layers, for the rule of winograd_applies: the
# networks' layers at their benchmark batch (ResNet-20's 64-channel 8x8 one, VGG-16's 512-channel
# 14x14 one) and a few more
CHOICE_LAYERS = [(32, 16, 32), (32, 32, 32), (32, 48, 32), (32, 64, 32), (8, 64, 56),
                 (8, 128, 28), (32, 128, 16), (16, 256, 14), (16, 256, 8), (8, 512, 7),
                 (64, 64, 8), (8, 256, 14), (4, 512, 14), (4, 512, 28)]


def choice_rows(repeats, warmup):
    """Winograd against im2col, both cnnlite, on 3x3 layers of several sizes: one row each."""
    rng = np.random.default_rng(1)
    rows = []
    for n, channels, size in CHOICE_LAYERS:
        layer = make_layer(n, channels, size, 3, channels, 1, 1, rng)
        times = common.median_times({"winograd": cnnlite_step(layer, "winograd"),
                                     "im2col": cnnlite_step(layer, "im2col")}, repeats, warmup)
        rows.append([f"{n}, {channels}, {size}", ms(times["winograd"]), ms(times["im2col"]),
                     f"{times['winograd'] / times['im2col']:.2f}", cnnlite_step(layer)()])
        print("  choice:", " | ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


def profile(repeats, warmup):
    """cnnlite alone, in a child of its own: the Function conv2d chooses per layer, the time
    of each im2col step and each Winograd kernel, and the Winograd-or-im2col table."""
    repeats = max(3, repeats // 2)
    layers = make_layers()
    algorithms = {name: cnnlite_step(layer)() for name, layer in layers.items()}
    return {"algorithms": algorithms,
            "im2col steps": {name: profile_steps(layer, repeats)
                             for name, layer in layers.items()},
            "winograd kernels": {name: profile_winograd(layer, repeats)
                                 for name, layer in layers.items()
                                 if algorithms[name] == "Conv2dWinograd"},
            "choice": choice_rows(repeats + 1, warmup)}


def profile_tables(profile) -> str:
    """The three cnnlite-only tables, with their headings."""
    im2col = profile["im2col steps"]
    steps = list(next(iter(im2col.values())))
    im2col_rows = [[name] + [f"{times[s]:.1f}" for s in steps] + [f"{sum(times.values()):.1f}"]
                   for name, times in im2col.items()]
    winograd_rows = [[name] + [f"{times[c]:.1f}" for c in WINOGRAD_COLUMNS]
                     for name, times in profile["winograd kernels"].items()]
    winograd_header = ["layer"] + [c.replace("winograd_", "") for c in WINOGRAD_COLUMNS]
    choice_header = ["N, C = O, H = W", "Winograd ms", "im2col ms", "Winograd / im2col",
                     "auto takes"]
    return "\n\n".join([
        "## Where cnnlite's time goes: im2col (ms per step of the im2col Function, run in its "
        "order)", markdown_table(["layer"] + steps + ["sum"], im2col_rows),
        "## Where cnnlite's time goes: Winograd (ms per step in each kernel, all chunks; "
        "'products and rest' is the step less the kernels: the 16-GEMM products, allocation "
        "and Python)", markdown_table(winograd_header, winograd_rows),
        "## Winograd or im2col: 3x3, stride 1, padding 1 (median ms of forward + backward, "
        "each algorithm's runs one after the other in the same cnnlite child)",
        markdown_table(choice_header, profile["choice"])])


def summarise(run):
    """The header and rows of the main table, and the notes below it."""
    algorithms = run.profile["algorithms"]
    rows = [[name, ", ".join(map(str, spec)), algorithms[name], ms(run.best["cnnlite"][name]),
             ms(run.best["torch"][name]), f"{run.ratio('cnnlite', name):.2f}",
             ms(run.best["im2col"][name]), f"{run.ratio('im2col', name):.2f}"]
            for name, spec in zip(LAYER_NAMES, LAYERS)]
    for label, count in ((f"geometric mean, the {REFERENCE_LAYERS} reference layers (target "
                          f"<= {TARGET})", REFERENCE_LAYERS),
                         (f"geometric mean, all {len(LAYERS)} layers", len(LAYERS))):
        rows.append([label, "", "", "", "",
                     f"**{geometric_mean(run.ratios('cnnlite')[:count]):.2f}**", "",
                     f"{geometric_mean(run.ratios('im2col')[:count]):.2f}"])
    header = ["layer", "N, C, H, K, O, stride, pad", "algorithm", "cnnlite ms", "PyTorch ms",
              "ratio", "im2col only: cnnlite ms", "im2col only: ratio"]
    notes = ("Forward + backward (dL/dx, dL/dw, dL/db), float32; ratio = cnnlite / PyTorch "
             "(lower is better). 'algorithm' is the Function conv2d chose; the im2col columns "
             "force ``backend.conv_algorithm(\"im2col\")`` on every layer, in cnnlite children "
             "of their own. The \"back to back\" column of earlier tables (both frameworks in "
             "one process without pauses) is gone: the in-process protocol was found "
             "untrustworthy on 2 cores (\"Timing protocol, changed\" below).\n\n"
             + profile_tables(run.profile) + "\n" + NOTES)
    return header, rows, notes


SUITE = common.Suite(
    "conv2d forward + backward: cnnlite vs PyTorch", Path(__file__).resolve(),
    (common.Side("cnnlite", "cnnlite", "cnnlite", lambda: per_layer(cnnlite_step)),
     common.Side("im2col", "cnnlite (im2col only)", "cnnlite",
                 lambda: per_layer(cnnlite_step, "im2col")),
     common.Side("torch", "PyTorch", "torch", lambda: per_layer(torch_step))),
    summarise, profile)

if __name__ == "__main__":
    common.main(SUITE)
