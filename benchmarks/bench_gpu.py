"""cnnlite's CUDA kernels against PyTorch + cuDNN on one GPU: float32, TF32 off on both sides.

    PYTHONPATH=. python3 benchmarks/bench_gpu.py              # writes benchmarks/results_gpu.md
    PYTHONPATH=. python3 benchmarks/bench_gpu.py --quick      # fewer repeats and shapes

Needs cupy and a CUDA build of PyTorch on a machine with a GPU. Three parts:

1. conv2d forward + backward (dL/dx, dL/dw, dL/db) on the four reference layers of
   REFERENCES.md section 7 and on every distinct convolution of ResNet-50 at batch 64:
   cnnlite's im2col / col2im kernels around cuBLAS GEMMs, against cuDNN.
2. The memory-bound kernels (pooling, LRN, batch norm, activations), forward + backward: the
   bytes each must move at least, divided by its time, next to the copy bandwidth measured on
   the same GPU (what a kernel that only moves its bytes would reach); and the whole op with
   autograd against PyTorch.
3. One training step (forward, loss, backward, SGD with momentum) of a small residual network
   built the same way in both frameworks.

Before a case is timed, one run of each framework must give the same numbers (outputs and
gradients, to float32 precision); if they differ the script stops with the difference, since
a fast wrong answer is not a result. Each table says whether it meets the project's target
(``target`` and ``met``): convolutions within 2x of cuDNN in geometric mean, the memory-bound
kernels at 60% or more of the copy bandwidth, the training step within 2x of PyTorch.

Timing: every measured call ends with a device synchronisation, the two frameworks alternate
after warm-up runs (the first cnnlite call compiles each kernel file with NVRTC), and each is
summarised by its median (``common.time_side_by_side``). TF32 would let cuBLAS and cuDNN
multiply float32 in 10-bit-mantissa precision; it is off for cupy (CUPY_TF32=0, set before
cupy is imported) and for PyTorch (both allow_tf32 switches).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["CUPY_TF32"] = "0"

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cnnlite as cl  # noqa: E402
from cnnlite import backend, cuda, nn, optim  # noqa: E402
from cnnlite import functional as F  # noqa: E402
from common import geometric_mean, time_side_by_side, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results_gpu.md"

#: The project's targets: cnnlite / PyTorch at most this (geometric mean over the
#: convolutions; the training step), and the memory-bound kernels at least this share of the
#: copy bandwidth.
CONV_TARGET = 2.0
BANDWIDTH_TARGET = 0.6
STEP_TARGET = 2.0

#: Two float32 results agree when they differ by at most this much relative to the largest
#: value: sums of thousands of products round differently in each framework (and cuDNN picks
#: other summation orders, even FFTs, where cnnlite runs im2col + GEMM); a wrong index, divisor
#: or block of a kernel is off by far more.
RTOL = 1e-3

# (N, C, H=W, K, O, stride, padding): the four reference layers (REFERENCES.md section 7) ...
REFERENCE_LAYERS = [
    (32, 64, 32, 3, 64, 1, 1),
    (32, 128, 16, 3, 128, 1, 1),
    (8, 3, 227, 11, 96, 4, 0),
    (8, 96, 27, 5, 256, 1, 2),
]
# ... and every distinct convolution of ResNet-50 (torchvision's, stride in the 3x3), batch 64.
RESNET50_LAYERS = [(64, c, h, k, o, s, p) for c, h, k, o, s, p in [
    (3, 224, 7, 64, 2, 3),
    (64, 56, 1, 64, 1, 0), (64, 56, 3, 64, 1, 1), (64, 56, 1, 256, 1, 0),
    (256, 56, 1, 64, 1, 0), (256, 56, 1, 128, 1, 0), (128, 56, 3, 128, 2, 1),
    (128, 28, 1, 512, 1, 0), (256, 56, 1, 512, 2, 0), (512, 28, 1, 128, 1, 0),
    (128, 28, 3, 128, 1, 1), (512, 28, 1, 256, 1, 0), (256, 28, 3, 256, 2, 1),
    (256, 14, 1, 1024, 1, 0), (512, 28, 1, 1024, 2, 0), (1024, 14, 1, 256, 1, 0),
    (256, 14, 3, 256, 1, 1), (1024, 14, 1, 512, 1, 0), (512, 14, 3, 512, 2, 1),
    (512, 7, 1, 2048, 1, 0), (1024, 14, 1, 2048, 2, 0), (2048, 7, 1, 512, 1, 0),
    (512, 7, 3, 512, 1, 1),
]]


def setup_gpu():
    """cupy, after checking that both frameworks see a GPU; TF32 off in PyTorch."""
    if not cl.cuda.is_available() or not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU, cupy and a CUDA build of PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape
    return backend.cupy_module()


def gpu_name(cupy) -> str:
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronized(fn, synchronize):
    """``fn`` followed by a wait for the GPU: a kernel launch returns before the kernel ends."""
    def run():
        fn()
        synchronize()
    return run


def time_alone(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(seconds) -> str:
    return f"{seconds * 1e3:.3f}"


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


class Disagreement(AssertionError):
    """cnnlite and PyTorch computed different numbers for the same case."""


def as_numpy(a) -> np.ndarray:
    """A NumPy copy of a PyTorch tensor, a cupy or NumPy array, or a cnnlite Tensor."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, cl.Tensor):
        a = a.data
    return np.asarray(backend.to_device(a, "cpu"))


def check_agreement(what: str, ours, theirs, results, rtol: float = RTOL):
    """Run ``ours()`` and ``theirs()`` once; raise Disagreement unless every pair of
    ``results()`` (name -> (cnnlite's array, PyTorch's)) agrees to float32 precision."""
    ours()
    theirs()
    for name, (got, expected) in results().items():
        got, expected = as_numpy(got), as_numpy(expected)
        if got.shape != expected.shape:
            raise Disagreement(f"{what}: {name} has shape {got.shape} in cnnlite, "
                               f"{expected.shape} in PyTorch")
        scale = float(np.abs(expected).max()) if expected.size else 0.0
        if not np.allclose(got, expected, rtol=rtol, atol=rtol * scale):
            worst = float(np.abs(got.astype(np.float64) - expected).max())
            raise Disagreement(f"{what}: {name} differs between cnnlite and PyTorch by up to "
                               f"{worst:.3g} (largest |value| {scale:.3g}, allowed "
                               f"{rtol:g} of it)")


# ---------------------------------------------------------------------------------------------
# 1. Convolutions.

def conv_pair(layer, device="cuda", bias=True):
    """One forward + backward step of ``layer`` in each framework, on the same numbers:
    (cnnlite's step, PyTorch's step, their latest results side by side)."""
    n, c, size, k, o, stride, padding = layer
    out = (size + 2 * padding - k) // stride + 1
    rng = np.random.default_rng(0)
    arrays = dict(x=rng.standard_normal((n, c, size, size), dtype=np.float32),
                  # (NumPy 2 keeps float64 for float32 / np.float64: hence the astype.)
                  w=(rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32),
                  b=rng.standard_normal(o, dtype=np.float32),
                  gy=rng.standard_normal((n, o, out, out), dtype=np.float32))
    ours = {name: cl.tensor(a, requires_grad=name != "gy", device=device)
            for name, a in arrays.items()}
    theirs = {name: torch.tensor(a, device=device, requires_grad=name != "gy")
              for name, a in arrays.items()}
    outputs = {}

    def cnnlite_step():
        for name in "xwb":
            ours[name].grad = None
        outputs["ours"] = F.conv2d(ours["x"], ours["w"], ours["b"] if bias else None, stride,
                                   padding)
        outputs["ours"].backward(ours["gy"].data)

    def torch_step():
        for name in "xwb":
            theirs[name].grad = None
        outputs["theirs"] = torch.nn.functional.conv2d(
            theirs["x"], theirs["w"], theirs["b"] if bias else None, stride, padding)
        outputs["theirs"].backward(theirs["gy"])

    def results():
        pairs = {"y": (outputs["ours"], outputs["theirs"])}
        pairs.update({f"dL/d{name}": (ours[name].grad, theirs[name].grad)
                      for name in ("xwb" if bias else "xw")})
        return pairs

    return cnnlite_step, torch_step, results


def conv_rows(layers, cupy, repeats, bias):
    rows, ratios = [], []
    for layer in layers:
        n, c, size, k, o, stride, padding = layer
        name = f"{n}, {c}, {size}x{size}, {k}x{k}, {o}, s{stride}, p{padding}"
        ours, theirs, results = conv_pair(layer, "cuda", bias)
        check_agreement(f"conv2d {name}", ours, theirs, results)
        t_ours, t_theirs = time_side_by_side(synchronized(ours, cupy.cuda.Device().synchronize),
                                             synchronized(theirs, torch.cuda.synchronize),
                                             repeats=repeats)
        ratios.append(t_ours / t_theirs)
        rows.append([name, ms(t_ours), ms(t_theirs), f"{t_ours / t_theirs:.2f}", "", ""])
        cupy.get_default_memory_pool().free_all_blocks()
    mean = geometric_mean(ratios)
    rows.append(["geometric mean", "", "", f"{mean:.2f}", f"<= {CONV_TARGET:g}",
                 met(mean <= CONV_TARGET)])
    return rows


# ---------------------------------------------------------------------------------------------
# 2. Memory-bound kernels against the copy bandwidth.

def copy_bandwidth(cupy, repeats) -> float:
    """Bytes per second of a device-to-device copy of 1 GiB (read + write counted)."""
    source = cupy.ones(2**28, dtype=cupy.float32)
    target = cupy.empty_like(source)
    copy = synchronized(lambda: cupy.copyto(target, source), cupy.cuda.Device().synchronize)
    return 2 * source.nbytes / time_alone(copy, repeats)


def op_pair(our_op, their_op, x, gy, device="cuda"):
    """Forward + backward of one op through each framework's autograd, on the same arrays:
    (cnnlite's run, PyTorch's run, their latest results side by side)."""
    our_x = cl.tensor(x, requires_grad=True, device=device)
    their_x = torch.as_tensor(x, device=device).detach().requires_grad_()
    their_gy = torch.as_tensor(gy, device=device)
    outputs = {}

    def ours():
        our_x.grad = None
        outputs["ours"] = our_op(our_x)
        outputs["ours"].backward(gy)

    def theirs():
        their_x.grad = None
        outputs["theirs"] = their_op(their_x)
        outputs["theirs"].backward(their_gy)

    def results():
        return {"y": (outputs["ours"], outputs["theirs"]), "dL/dx": (our_x.grad, their_x.grad)}

    return ours, theirs, results


def memory_bound_cases(cupy, quick):
    """(name, shape, bytes moved, cnnlite kernels, cnnlite op, PyTorch op, their results)
    per case (the last three from ``op_pair``).

    "Bytes moved" is the least a forward + backward pass must read and write in float32: the
    inputs it reads, the outputs it writes, what it saves for backward (max pooling's argmax
    as int32) and the gradients in and out.
    """
    rng = np.random.default_rng(1)
    K = cuda.KERNELS
    batch = 16 if quick else 64

    def arrays(shape, out_shape=None):
        x = cupy.asarray(rng.standard_normal(shape, dtype=np.float32))
        gy = cupy.asarray(rng.standard_normal(out_shape or shape, dtype=np.float32))
        return x, gy

    cases = []
    # Pooling 3x3 s2 p1 (ResNet's stem) on (N, 64, 112, 112) -> (N, 64, 56, 56).
    x, gy = arrays((batch, 64, 112, 112), (batch, 64, 56, 56))
    window = ((3, 3), (2, 2), (1, 1))

    def max_pool_kernels(x=x, gy=gy):
        _, argmax = K["max_pool2d_forward"](x, *window, (56, 56))
        K["max_pool2d_backward"](gy, argmax, x.shape[2:])

    def avg_pool_kernels(x=x, gy=gy):
        K["avg_pool2d_forward"](x, *window, (56, 56), True)
        K["avg_pool2d_backward"](gy, x.shape[2:], *window, True)

    # max: read x, write y and argmax; backward: zero gx, read gy and argmax, add into gx.
    cases.append(("max_pool2d 3x3 s2 p1", x.shape, 4 * (2 * x.size + 4 * gy.size),
                  max_pool_kernels, *op_pair(lambda t: F.max_pool2d(t, 3, 2, 1),
                                             lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1),
                                             x, gy)))
    cases.append(("avg_pool2d 3x3 s2 p1", x.shape, 4 * (2 * x.size + 2 * gy.size),
                  avg_pool_kernels, *op_pair(lambda t: F.avg_pool2d(t, 3, 2, 1),
                                             lambda t: torch.nn.functional.avg_pool2d(t, 3, 2, 1),
                                             x, gy)))

    # LRN(5) after AlexNet's conv1: forward reads x and writes y, denom, factor; backward reads
    # gy, x, denom, factor and writes gx.
    x, gy = arrays((batch, 96, 55, 55))
    x3, gy3 = x.reshape(batch, 96, -1), gy.reshape(batch, 96, -1)
    lrn = (5, 1e-4 / 5, 0.75, 1.0)

    def lrn_kernels():
        _, denom, factor = K["lrn_forward"](x3, *lrn)
        K["lrn_backward"](gy3, x3, denom, factor, *lrn[:3])

    cases.append(("local_response_norm(5)", x.shape, 4 * 9 * x.size, lrn_kernels,
                  *op_pair(lambda t: F.local_response_norm(t, 5),
                           lambda t: torch.nn.functional.local_response_norm(t, 5), x, gy)))

    # Batch norm in training on (N, 256, 56, 56): statistics (read x), normalise (read x,
    # write y); backward sums (read gy, x), dx (read gy, x, write gx).
    x, gy = arrays((batch, 256, 56, 56))
    x3, gy3 = x.reshape(batch, 256, -1), gy.reshape(batch, 256, -1)
    weight, bias = cupy.ones(256, dtype=cupy.float32), cupy.zeros(256, dtype=cupy.float32)

    def batch_norm_kernels():
        mean, var = K["batch_norm_statistics"](x3)
        inv_std = 1 / cupy.sqrt(var + 1e-5)
        K["batch_norm_forward"](x3, mean, inv_std, weight, bias)
        grad_bias, grad_weight = K["batch_norm_grad_statistics"](gy3, x3, mean, inv_std)
        K["batch_norm_backward"](gy3, x3, mean, inv_std, weight, grad_weight, grad_bias)

    our_weight, our_bias = (cl.tensor(a, requires_grad=True, device="cuda")
                            for a in (weight, bias))
    their_weight, their_bias = (torch.as_tensor(a, device="cuda").detach().requires_grad_()
                                for a in (weight, bias))
    cases.append(("batch_norm (training)", x.shape, 4 * 8 * x.size, batch_norm_kernels,
                  *op_pair(lambda t: F.batch_norm(t, None, None, our_weight, our_bias, True),
                           lambda t: torch.nn.functional.batch_norm(t, None, None, their_weight,
                                                                    their_bias, True),
                           x, gy)))

    # Activations on (N, 256, 56, 56): forward reads x and writes y; backward reads x (or y)
    # and gy and writes gx.
    activations = [("relu", (), F.relu, torch.relu),
                   ("leaky_relu", (0.01,), F.leaky_relu, torch.nn.functional.leaky_relu),
                   ("elu", (1.0,), F.elu, torch.nn.functional.elu),
                   ("sigmoid", (), F.sigmoid, torch.sigmoid),
                   ("tanh", (), F.tanh, torch.tanh)]
    for name, extra, ours, theirs in activations:
        x, gy = arrays((batch, 256, 56, 56))

        def kernels(name=name, extra=extra, x=x, gy=gy):
            y = K[f"{name}_forward"](x, *extra)
            # sigmoid and tanh write their derivative in y, the others in x
            K[f"{name}_backward"](y if name in ("sigmoid", "tanh") else x, gy, *extra)

        cases.append((name, x.shape, 4 * 5 * x.size, kernels,
                      *op_pair(lambda t, ours=ours, extra=extra: ours(t, *extra),
                               lambda t, theirs=theirs, extra=extra: theirs(t, *extra), x, gy)))
    return cases


def memory_bound_rows(cupy, repeats, quick):
    synchronize = cupy.cuda.Device().synchronize
    bandwidth = copy_bandwidth(cupy, repeats)
    rows = []
    for name, shape, bytes_moved, kernels, ours, theirs, results in memory_bound_cases(cupy,
                                                                                      quick):
        check_agreement(name, ours, theirs, results)
        t_kernels = time_alone(synchronized(kernels, synchronize), repeats)
        t_ours, t_theirs = time_side_by_side(synchronized(ours, synchronize),
                                             synchronized(theirs, torch.cuda.synchronize),
                                             repeats=repeats)
        achieved = bytes_moved / t_kernels
        rows.append([name, "x".join(map(str, shape)), f"{bytes_moved / 2**20:.0f}",
                     ms(t_kernels), f"{achieved / 1e9:.0f}", f"{100 * achieved / bandwidth:.0f}%",
                     f">= {100 * BANDWIDTH_TARGET:.0f}%", met(achieved >= BANDWIDTH_TARGET *
                                                              bandwidth),
                     ms(t_ours), ms(t_theirs), f"{t_ours / t_theirs:.2f}"])
    return rows, bandwidth


# ---------------------------------------------------------------------------------------------
# 3. A small residual network, one training step.

def residual_network(framework, width=32, classes=10):
    """stem conv-BN-ReLU, three residual stages (width, 2 width, 4 width; the last two halve
    the resolution, with a 1x1 projection on the shortcut), global average pooling, linear."""
    layers = nn if framework == "cnnlite" else torch.nn
    relu = F.relu if framework == "cnnlite" else torch.relu

    class Block(layers.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = layers.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = layers.BatchNorm2d(c_out)
            self.conv2 = layers.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = layers.BatchNorm2d(c_out)
            self.project = (layers.Sequential(layers.Conv2d(c_in, c_out, 1, stride, bias=False),
                                              layers.BatchNorm2d(c_out))
                            if stride != 1 or c_in != c_out else None)

        def forward(self, x):
            shortcut = x if self.project is None else self.project(x)
            return relu(self.bn2(self.conv2(relu(self.bn1(self.conv1(x))))) + shortcut)

    pool = nn.GlobalAvgPool2d() if framework == "cnnlite" else torch.nn.AdaptiveAvgPool2d(1)
    return layers.Sequential(
        layers.Conv2d(3, width, 3, 1, 1, bias=False), layers.BatchNorm2d(width), layers.ReLU(),
        Block(width, width, 1), Block(width, 2 * width, 2), Block(2 * width, 4 * width, 2),
        pool, layers.Flatten(), layers.Linear(4 * width, classes))


def training_step_pair(device="cuda", batch=64, width=32, dtype=np.float32):
    """One training step of the residual network in each framework, from the same weights
    (PyTorch's initial ones, copied into cnnlite's) on the same batch of ``dtype``: (cnnlite's
    step, PyTorch's step, their latest losses and gradients side by side)."""
    rng = np.random.default_rng(2)
    images = rng.standard_normal((batch, 3, 32, 32)).astype(dtype)
    labels = rng.integers(0, 10, size=batch)

    torch.manual_seed(2)
    theirs = residual_network("torch", width).to(device, getattr(torch, np.dtype(dtype).name))
    ours = residual_network("cnnlite", width)
    ours.load_state_dict({name: value.detach().cpu().numpy()
                          for name, value in theirs.state_dict().items()})
    ours.to(device, dtype)
    our_optimizer = optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    our_criterion = nn.CrossEntropyLoss()
    our_images = cl.tensor(images, device=device)
    our_labels = backend.to_device(labels, device)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
    their_images = torch.tensor(images, device=device)
    their_labels = torch.tensor(labels, device=device)
    losses = {}

    def our_step():
        losses["ours"] = our_criterion(ours(our_images), our_labels)
        our_optimizer.zero_grad()
        losses["ours"].backward()
        our_optimizer.step()

    def their_step():
        losses["theirs"] = torch.nn.functional.cross_entropy(theirs(their_images), their_labels)
        their_optimizer.zero_grad()
        losses["theirs"].backward()
        their_optimizer.step()

    def results():
        their_grads = {name: p.grad for name, p in theirs.named_parameters()}
        pairs = {"loss": (losses["ours"], losses["theirs"])}
        pairs.update({f"dL/d {name}": (p.grad, their_grads[name])
                      for name, p in ours.named_parameters()})
        return pairs

    return our_step, their_step, results


#: The training step is compared in float64. In float32 the gradient of a convolution that
#: feeds a batch norm is a small difference of large sums (batch norm makes the loss blind to
#: the scale of those weights), and for some weights PyTorch's float sums and cnnlite's double
#: ones then differ by several percent: no float32 tolerance tells that from a bug. In float64
#: both agree to about 1e-13 (on the CPU).
STEP_RTOL = 1e-8


def training_step_row(cupy, repeats, batch=64):
    check_agreement("training step (float64)",
                    *training_step_pair("cuda", batch, dtype=np.float64), rtol=STEP_RTOL)
    ours, theirs, _ = training_step_pair("cuda", batch)
    t_ours, t_theirs = time_side_by_side(
        synchronized(ours, cupy.cuda.Device().synchronize),
        synchronized(theirs, torch.cuda.synchronize), repeats=repeats)
    return [f"residual network (3 stages, width 32), batch {batch}, 3x32x32", ms(t_ours),
            ms(t_theirs), f"{t_ours / t_theirs:.2f}", f"<= {STEP_TARGET:g}",
            met(t_ours / t_theirs <= STEP_TARGET)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 repeats, smaller batches")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    cupy = setup_gpu()
    name = gpu_name(cupy)
    resnet = RESNET50_LAYERS[:4] if args.quick else RESNET50_LAYERS

    conv_header = ["conv layer (N, C, H, K, O, stride, pad)", "cnnlite ms", "PyTorch ms",
                   "cnnlite / PyTorch", "target", "met"]
    reference_rows = conv_rows(REFERENCE_LAYERS, cupy, repeats, bias=True)
    resnet_rows = conv_rows(resnet, cupy, repeats, bias=False)
    bound_rows, bandwidth = memory_bound_rows(cupy, repeats, args.quick)
    step_row = training_step_row(cupy, repeats)

    def table(header, rows):
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header)
                          + "|"] + ["| " + " | ".join(map(str, row)) + " |" for row in rows])

    notes = "\n\n".join([
        f"GPU: {name}. float32, TF32 off in cupy and PyTorch; PyTorch {torch.__version__} with "
        f"cuDNN {torch.backends.cudnn.version()}, cupy {cupy.__version__}. Medians of "
        f"{repeats} interleaved runs, each ending with a device synchronisation.",
        "## ResNet-50 convolutions, batch 64 (no bias)", table(conv_header, resnet_rows),
        f"## Memory-bound kernels, forward + backward (copy bandwidth {bandwidth / 1e9:.0f} GB/s)",
        "\"MiB moved\" is the least a forward + backward pass must read and write; the kernels "
        "alone reach the GB/s shown, a percentage of a plain copy; the last three columns time "
        "the whole op with autograd.",
        table(["op", "shape", "MiB moved", "kernels ms", "GB/s", "of copy", "target", "met",
               "cnnlite op ms", "PyTorch ms", "cnnlite / PyTorch"], bound_rows),
        "## Training step (forward, cross-entropy, backward, SGD with momentum)",
        table(["network", "cnnlite ms", "PyTorch ms", "cnnlite / PyTorch", "target", "met"],
              [step_row]),
    ])
    text = write_results(RESULTS, f"cnnlite on the GPU ({name}) against PyTorch + cuDNN",
                         conv_header, reference_rows, notes)
    print(text)


if __name__ == "__main__":
    main()
