"""The backward kernels of pooling that picks (kernels/pool.cu's max_pool2d_backward, for max,
adaptive max and stochastic pooling; gated max-average pooling in kernels/generalized_pool.cu)
are gathers: every gradient element is added up by one thread, in a fixed order.

So, run through the CUDA-on-CPU harness (kernels/host), where the threads of a block are real
threads that race as a GPU's do: the gradient equals the CPU kernels' (max pooling's bit for
bit, since it adds in their order and type), over windows that overlap, padding, ties and
picks anywhere in the plane; and it has the same bits on every run and for every launch shape
(the gate's gradient, a block reduction, on every run of one launch shape).
And no kernel of kernels/*.cu adds into a floating-point address with atomicAdd: that adds in
whatever order the threads come, and on a double it does not compile before sm_60.
"""
import re

import numpy as np
import pytest

from cnnlite import cpu, cuda, reference
from cnnlite.cuda import host, module
from cnnlite.functional.pool import pool_window

both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                      ids=["float32", "float64"])

#: (blocks, threads per block) of the harness: one thread alone, then threads that race.
LAUNCH_SHAPES = [(1, 1), (2, 7), (3, 32), (1, 256)]

SHAPE = (2, 3, 9, 11)  # not square, so that rows and columns cannot be mixed up unnoticed


def through_the_harness(test):
    """A test that runs the CUDA launchers on NumPy arrays (the source checks need no build)."""
    return pytest.mark.usefixtures("on_harness")(test)


# ---------------------------------------------------------------------------------------------
# Inputs where the order of the additions shows in the bits.

def peaks(shape, period, rng, dtype):
    """Small noise with a large value every ``period`` rows and columns: with windows of
    ``period`` or fewer elements a side and stride 1, each peak is the maximum of every window
    over it, so its gradient adds up as many values."""
    x = rng.random(shape)
    x[..., period // 2::period, period // 2::period] += 10
    return x.astype(dtype)


def ties(shape, rng, dtype):
    """Integers 0..2: almost every window holds a tie, which the first maximum wins."""
    return rng.integers(0, 3, size=shape).astype(dtype)


def upstream(shape, rng, dtype):
    """Gradients of magnitudes 1e-4 .. 1e3, so that the sum of a few rounds differently in
    another order."""
    return (rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 4, size=shape)).astype(dtype)


def order_shows(gy, argmax, plane_size):
    """Whether adding each element's gradients in the reverse order changes a bit of the sum:
    a determinism test on inputs where it does not could not fail."""
    outputs = gy.shape[2] * gy.shape[3]
    gy, argmax = gy.reshape(-1, outputs), argmax.reshape(-1, outputs)
    planes = np.arange(gy.shape[0])
    sums = []
    for order in (range(gy.shape[1]), reversed(range(gy.shape[1]))):
        gx = np.zeros((gy.shape[0], plane_size), dtype=gy.dtype)
        for k in order:
            gx[planes, argmax[:, k]] += gy[:, k]
        sums.append(gx.tobytes())
    return sums[0] != sums[1]


# ---------------------------------------------------------------------------------------------
# The cases: (x, argmax) pairs of each pooling that picks.

#: (kernel_size, stride, padding, ceil_mode) of max pooling: overlapping windows.
MAX_POOLS = {
    "3x3-stride2": (3, 2, 0, False),
    "3x3-stride2-pad1-ceil": (3, 2, 1, True),
    "2x2-stride1": (2, 1, 0, False),
    "2x2-stride1-pad1": (2, 1, 1, False),
    "3x3-stride1-pad1": (3, 1, 1, False),
}


def max_pooled(x, kernel_size, stride, padding, ceil_mode):
    g = pool_window("max_pool2d", x.shape, kernel_size, stride, padding, ceil_mode)
    return cpu.KERNELS["max_pool2d_forward"](x, g.kernel_size, g.stride, g.padding,
                                             g.output_size)[1]


def picks(kind, x, rng):
    """The argmax that a forward of ``kind`` gives for x (computed on the CPU: these tests are
    about the backward)."""
    if kind in MAX_POOLS:
        return max_pooled(x, *MAX_POOLS[kind])
    if kind == "adaptive-to-4x5":  # bins of 3 x 3 that overlap by one row and column
        return reference.pool.adaptive_max_pool2d_forward(x, (4, 5))[1]
    if kind == "stochastic-3x3-stride2":
        uniforms = rng.random(x.shape[:2] + (4, 5))
        return reference.pool.stochastic_pool2d_sample(abs(x), (3, 3), (2, 2), (4, 5),
                                                       uniforms)[1]
    assert kind == "anywhere-in-the-plane"
    return rng.integers(0, x.shape[2] * x.shape[3], size=x.shape[:2] + (4, 5),
                        dtype=np.int32)


PICKING = [*MAX_POOLS, "adaptive-to-4x5", "stochastic-3x3-stride2", "anywhere-in-the-plane"]


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


# ---------------------------------------------------------------------------------------------
# (a) The gradient equals the CPU kernels'.

@through_the_harness
@both_dtypes
@pytest.mark.parametrize("values", ["peaks", "ties"])
@pytest.mark.parametrize("kind", PICKING)
def test_max_pooling_backward_has_the_bits_of_the_cpu_kernel(kind, values, dtype):
    """The gather adds the outputs that picked an element in row-major order, in T, as the
    numba kernel does: the same bits, not just close values."""
    rng = np.random.default_rng(len(kind))
    x = peaks(SHAPE, 3, rng, dtype) if values == "peaks" else ties(SHAPE, rng, dtype)
    argmax = picks(kind, x, rng)
    gy = upstream(argmax.shape, rng, dtype)
    got = cuda.KERNELS["max_pool2d_backward"](gy, argmax, x.shape[2:])
    assert same_bits(got, cpu.KERNELS["max_pool2d_backward"](gy, argmax, x.shape[2:]))


@through_the_harness
@both_dtypes
@pytest.mark.parametrize("window, stride", [((3, 3), (2, 2)), ((2, 2), (1, 1)),
                                            ((3, 3), (1, 1))])
@pytest.mark.parametrize("values", ["peaks", "ties"])
def test_gated_pooling_backward_equals_the_cpu_kernel(window, stride, values, dtype):
    """Gated max-average pooling sums in double and rounds once, the numba kernel in the
    data's type: a few ulps apart, as tests/test_cuda_generalized_pool.py allows."""
    rng = np.random.default_rng(window[0] * 10 + stride[0])
    x = peaks(SHAPE, 3, rng, dtype) if values == "peaks" else ties(SHAPE, rng, dtype)
    gate = rng.standard_normal(window).astype(dtype)
    output_size = tuple((size - k) // s + 1 for size, k, s in zip(SHAPE[2:], window, stride))
    argmax = cpu.KERNELS["gated_max_ave_pool2d_forward"](x, gate, window, stride,
                                                         output_size)[1]
    # Not upstream(): the numba kernel adds in float32, and gradients 1e7 apart would cancel
    # there beyond any tolerance.
    gy = rng.standard_normal(argmax.shape).astype(dtype)
    args = (gy, x, gate, argmax, window, stride)
    tolerance = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11,
                                                                            atol=1e-12)
    for got, expected in zip(cuda.KERNELS["gated_max_ave_pool2d_backward"](*args),
                             cpu.KERNELS["gated_max_ave_pool2d_backward"](*args)):
        np.testing.assert_allclose(got, expected, **tolerance)


# ---------------------------------------------------------------------------------------------
# (b) The same bits on every run and for every launch shape.

def each_launch(harness_library, backward):
    """backward() three times for each launch shape of LAUNCH_SHAPES: a list of three results
    per shape."""
    results = []
    for blocks, threads in LAUNCH_SHAPES:
        with host.run_on_cpu(host.HostKernels(harness_library, blocks, threads)):
            results.append([backward() for _ in range(3)])
    return results


@both_dtypes
def test_max_pooling_backward_has_the_same_bits_on_every_run(harness_library, dtype):
    """3x3 windows at stride 1: every peak gets the gradient of 9 windows, which a scatter
    would add from 9 threads at once."""
    rng = np.random.default_rng(1)
    x = peaks((2, 3, 12, 12), 3, rng, dtype)
    argmax = max_pooled(x, 3, 1, 1, False)
    gy = upstream(argmax.shape, rng, dtype)
    assert order_shows(gy, argmax, 12 * 12)
    runs = each_launch(harness_library,
                       lambda: cuda.KERNELS["max_pool2d_backward"](gy, argmax, x.shape[2:]))
    first = runs[0][0]
    assert all(same_bits(first, gx) for shape in runs for gx in shape)


@both_dtypes
def test_gated_pooling_backward_has_the_same_bits_on_every_run(harness_library, dtype):
    """gx, for any launch shape. The gate's gradient is a block reduction, whose tree depends
    on the block size, which the launcher fixes (the harness shrinks it): the same bits on
    every run of one launch shape."""
    rng = np.random.default_rng(2)
    x = peaks((2, 3, 12, 12), 3, rng, dtype)
    gate = rng.standard_normal((3, 3)).astype(dtype)
    argmax = cpu.KERNELS["gated_max_ave_pool2d_forward"](x, gate, (3, 3), (1, 1), (10, 10))[1]
    gy = upstream(argmax.shape, rng, dtype)
    assert order_shows(gy, argmax, 12 * 12)
    runs = each_launch(harness_library, lambda: cuda.KERNELS["gated_max_ave_pool2d_backward"](
        gy, x, gate, argmax, (3, 3), (1, 1)))
    first_gx = runs[0][0][0]
    assert all(same_bits(first_gx, gx) for shape in runs for gx, _ in shape)
    assert all(same_bits(shape[0][1], ggate) for shape in runs for _, ggate in shape)


# ---------------------------------------------------------------------------------------------
# (c) No atomicAdd into a floating-point address, in any kernel source.

#: The types an atomicAdd may add into: integers (counters), whose sum does not depend on the
#: order, and whose atomicAdd every GPU has.
INTEGER_TYPES = {"int", "unsigned", "unsigned int", "long long", "long long int",
                 "unsigned long long", "unsigned long long int"}

#: Words of a declaration that are not its type.
QUALIFIERS = {"const", "volatile", "static", "__shared__", "__restrict__", "__device__"}


def without_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def first_argument(text, start):
    """The first argument of the call whose opening parenthesis is at text[start - 1]."""
    depth, position = 0, start
    while depth > 0 or text[position] not in ",)":
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(text[position], 0)
        position += 1
    return text[start:position].strip()


def declared_type(code, name):
    """The type that ``code`` (a function, up to the use) first declares ``name`` with as a
    pointer (``T* name``) or an array (``double name[...]``), without qualifiers; None if it
    declares none."""
    match = re.search(rf"([A-Za-z_][\w ]*?)\s*\*\s*(?:__restrict__\s+)?{name}\b"
                      rf"|([A-Za-z_][\w ]*?)\s+{name}\s*\[", code)
    if match is None:
        return None
    words = (match.group(1) or match.group(2)).split()
    return " ".join(w for w in words if w not in QUALIFIERS)


def atomic_adds(source):
    """(first argument, the type it points into or None) of every atomicAdd call."""
    code = without_comments(source)
    found = []
    for call in re.finditer(r"\batomicAdd\s*\(", code):
        argument = first_argument(code, call.end())
        name = re.match(r"&?\s*\(*\s*([A-Za-z_]\w*)", argument).group(1)
        function_start = max(code.rfind("__global__", 0, call.start()),
                             code.rfind("__device__", 0, call.start()), 0)
        found.append((argument, declared_type(code[function_start:call.start()], name)))
    return found


def test_the_atomic_add_check_tells_counters_from_floating_point_sums():
    """The check itself, on the forms a kernel would use: a T*, a double array in shared
    memory and a float* through a local pointer are refused; counters are not."""
    source = """
    template <typename T>
    __global__ void k(const T* gy, T* gx, unsigned long long* outside, int* counts) {
        __shared__ double partial[256];
        float* target = (float*)gx;  // atomicAdd(in, a comment) is no call
        atomicAdd(&gx[p * H + (i - 1)], gy[t]);
        atomicAdd(&partial[threadIdx.x], 1.0);
        atomicAdd(target + 1, 2.0f);
        atomicAdd(outside, 1ULL);
        atomicAdd(&counts[index[t]], 1);
    }
    """
    assert atomic_adds(source) == [("&gx[p * H + (i - 1)]", "T"), ("&partial[threadIdx.x]",
                                                                   "double"),
                                   ("target + 1", "float"), ("outside", "unsigned long long"),
                                   ("&counts[index[t]]", "int")]


def kernel_topics():
    return sorted(entry.name[:-len(".cu")] for entry in module.kernel_folder().iterdir()
                  if entry.name.endswith(".cu"))


@pytest.mark.parametrize("topic", kernel_topics())
def test_no_kernel_adds_into_a_floating_point_address_with_atomic_add(topic):
    """kernels/<topic>.cu, as NVRTC compiles it (common.cuh pasted in)."""
    for argument, pointee in atomic_adds(module.source(topic)):
        assert pointee is not None, (
            f"kernels/{topic}.cu: atomicAdd({argument}, ...): no declaration of it as a "
            f"pointer or an array before the call, so its type is unknown")
        assert pointee in INTEGER_TYPES, (
            f"kernels/{topic}.cu: atomicAdd({argument}, ...) adds into a {pointee}: the sum "
            f"depends on the order the threads come in, and atomicAdd on a double needs sm_60")
