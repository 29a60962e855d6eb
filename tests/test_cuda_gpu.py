"""On a GPU: every CUDA kernel equals its CPU version, gradients check in float64 on the GPU,
and running out of GPU memory says how much was asked for and how much is free.

Without cupy or without a device the GPU tests skip and say which. The GPU code path is also
checked everywhere, with a stand-in for cupy (NumPy arrays that say they belong to cupy, and a
RawModule whose kernels run through the CPU harness): the launchers compile each kernel file
once, with the options and name expressions NVRTC needs, and the ops of cnnlite.functional run
unchanged on such arrays, through the CUDA kernels, and pass their gradient checks. So does the
out-of-memory message.
"""
import re
import types

import numpy as np
import pytest
import torch
from test_cuda_kernels_host import registry_cases
from test_kernel_routing import call, kernel_cases

import cnnlite as cl
from cnnlite import backend, cpu, cuda, nn, optim
from cnnlite import functional as F
from cnnlite.cuda import host, memory, module
from cnnlite.reference.dropout import counter_uniforms
from cnnlite.reference import conv as reference_conv


def no_gpu_reason():
    if backend.cupy_module() is None:
        return "no GPU: cupy not installed"
    if not backend.cuda_available():
        return "no GPU: cupy sees no device"
    return None


needs_gpu = pytest.mark.skipif(no_gpu_reason() is not None, reason=str(no_gpu_reason()))
both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                      ids=["float32", "float64"])
CASE_NAMES = [name for name, _ in registry_cases(np.random.default_rng(0), np.float64)]
NEW_CASE_NAMES = [name for name, _ in kernel_cases(np.random.default_rng(0), np.float64)]


def on_gpu(value):
    return backend.cupy_module().asarray(value) if isinstance(value, np.ndarray) else value


def on_cpu(value):
    return value.get() if backend.is_cupy_array(value) else value


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# GPU == CPU for every registry kernel; the GPU-only kernels against NumPy and PyTorch.

@needs_gpu
@both_dtypes
@pytest.mark.parametrize("index", range(len(CASE_NAMES)), ids=CASE_NAMES)
def test_registry_kernel_on_gpu_equals_the_numba_kernel(index, dtype):
    name, args = registry_cases(np.random.default_rng(index), dtype)[index]
    got = cuda.KERNELS[name](*[on_gpu(a) for a in args])
    expected = cpu.KERNELS[name](*args)
    got, expected = (got, expected) if isinstance(got, tuple) else ((got,), (expected,))
    for g, e in zip(got, expected):
        assert backend.is_cupy_array(g)
        g = on_cpu(g)
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, **tolerance(dtype))


@needs_gpu
@both_dtypes
def test_gpu_only_kernels_equal_their_formulas(dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 40)).astype(dtype)
    target = rng.integers(0, 40, size=6)

    y, mask = cuda.KERNELS["dropout_forward"](on_gpu(x), 0.4, 77)
    expected_mask = np.where(counter_uniforms(77, x.size) >= 0.4, 1 / 0.6, 0).reshape(x.shape)
    np.testing.assert_allclose(on_cpu(mask), expected_mask, rtol=1e-6)

    log_y = x - x.max(axis=1, keepdims=True)
    log_y = log_y - np.log(np.exp(log_y).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(on_cpu(cuda.KERNELS["log_softmax_forward"](on_gpu(x), 1)), log_y,
                               **tolerance(dtype))
    np.testing.assert_allclose(on_cpu(cuda.KERNELS["softmax_forward"](on_gpu(x), -1)),
                               np.exp(log_y), **tolerance(dtype))

    loss, _ = cuda.KERNELS["cross_entropy_forward"](on_gpu(x), on_gpu(target), 0.1)
    expected = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(target),
                                                 reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(on_cpu(loss), expected.numpy(), **tolerance(dtype))

    param, grad = x.copy(), rng.standard_normal(x.shape).astype(dtype)
    exp_avg, exp_avg_sq = np.zeros_like(x), np.zeros_like(x)
    gpu_state = [on_gpu(a) for a in (param, grad, exp_avg, exp_avg_sq)]
    cuda.KERNELS["adam_update"](*gpu_state, 1, 0.01)
    # The first Adam step moves every element by lr * g / (|g| + eps / ...): about lr.
    step = 0.01 * grad / (np.abs(grad) + 1e-8)
    np.testing.assert_allclose(on_cpu(gpu_state[0]), param - step, **tolerance(dtype))


# ---------------------------------------------------------------------------------------------
# Whole ops on the GPU: float64 gradient checks, and conv2d against the CPU.

def gpu_tensor(array):
    return cl.tensor(array, requires_grad=True, device="cuda")


def distinct_values(shape, seed):
    """A permutation of values 0.1 apart: no ties in a pooling window, no kinks for gradcheck."""
    size = int(np.prod(shape))
    return ((np.random.default_rng(seed).permutation(size) - size / 2) * 0.1).reshape(shape)


@needs_gpu
def test_conv2d_gradcheck_on_gpu():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((6, 2, 3, 2)), \
        rng.standard_normal(6)
    cl.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2),
                                          groups=2),
                 [gpu_tensor(x), gpu_tensor(w), gpu_tensor(b)])


@needs_gpu
def test_max_pool2d_gradcheck_on_gpu():
    x = distinct_values((2, 3, 7, 6), 1)
    cl.gradcheck(lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
                 [gpu_tensor(x)])


@needs_gpu
def test_batch_norm_gradcheck_on_gpu():
    rng = np.random.default_rng(2)
    x, weight, bias = rng.standard_normal((3, 4, 2, 3)), rng.standard_normal(4), \
        rng.standard_normal(4)
    cl.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                 [gpu_tensor(x), gpu_tensor(weight), gpu_tensor(bias)])


@needs_gpu
def test_local_response_norm_gradcheck_on_gpu():
    x = np.random.default_rng(3).standard_normal((2, 6, 3, 3))
    cl.gradcheck(lambda x: F.local_response_norm(x, 5, alpha=0.5, beta=0.75, k=2.0),
                 [gpu_tensor(x)])


@needs_gpu
def test_conv2d_forward_and_backward_on_gpu_equal_the_cpu():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 9, 9)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    upstream = rng.standard_normal((4, 8, 5, 5)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        xt = cl.tensor(x, requires_grad=True, device=device)
        wt = cl.tensor(w, requires_grad=True, device=device)
        y = F.conv2d(xt, wt, stride=2, padding=1, groups=2)
        (y * cl.tensor(upstream, device=device)).sum().backward()
        results.append([on_cpu(a) for a in (y.data, xt.grad, wt.grad)])
    for got, expected in zip(results[1], results[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@needs_gpu
def test_each_kernel_file_is_compiled_once():
    assert module.compiled_module("im2col") is module.compiled_module("im2col")


# ---------------------------------------------------------------------------------------------
# The GPU code path with a stand-in for cupy: arrays that say they belong to cupy, and a
# RawModule whose kernels run through the CPU harness.

class StandInGpuArray(np.ndarray):
    """A NumPy array that says it belongs to cupy, so cnnlite takes the GPU path with it."""

    def get(self):
        return np.asarray(self)


StandInGpuArray.__module__ = "cupy"


def dressed_as_cupy(value):
    """Arrays (also inside tuples) as StandInGpuArray; anything else unchanged."""
    if isinstance(value, np.ndarray):
        return value.view(StandInGpuArray)
    if isinstance(value, tuple):
        return tuple(dressed_as_cupy(v) for v in value)
    return value


@pytest.fixture(scope="module")
def stand_in_kernels(tmp_path_factory):
    return host.HostKernels(host.build(tmp_path_factory.mktemp("stand_in")))


@pytest.fixture
def stand_in_cupy(stand_in_kernels, monkeypatch):
    """NumPy dressed as cupy, with a RawModule that records how it was built and hands out the
    CPU harness's build of each kernel. Yields the list of RawModules built."""
    built = []

    class RawModule:
        def __init__(self, code, options, name_expressions):
            built.append(dict(code=code, options=options, name_expressions=name_expressions))
            self.name_expressions = name_expressions

        def get_function(self, expression):
            assert expression in self.name_expressions
            return stand_in_kernels.function(*re.fullmatch(r"(\w+)<(\w+)>", expression).groups())

    cupy = types.ModuleType("cupy")
    cupy.__getattr__ = lambda name: (
        lambda *args, **kwargs: dressed_as_cupy(getattr(np, name)(*args, **kwargs))
        if callable(getattr(np, name)) else getattr(np, name))
    cupy.RawModule = RawModule
    cupy.cuda = types.SimpleNamespace(memory=types.SimpleNamespace(
        OutOfMemoryError=type("OutOfMemoryError", (MemoryError,), {})))
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)
    module.compiled_module.cache_clear()
    module._gpu_function.cache_clear()
    yield built
    module.compiled_module.cache_clear()
    module._gpu_function.cache_clear()


def test_launchers_compile_each_kernel_file_once_and_launch_its_kernels(stand_in_cupy):
    rng = np.random.default_rng(8)
    conv = (3, 3, (2, 1), (1, 1), (1, 1))
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
        col = cuda.KERNELS["im2col"](dressed_as_cupy(x), *conv)
        assert backend.is_cupy_array(col)
        np.testing.assert_allclose(col, reference_conv.im2col(x, *conv), rtol=1e-6)
    (built,) = stand_in_cupy  # one module for kernels/im2col.cu, however many launches
    assert built["options"] == ("-std=c++17",)
    assert built["name_expressions"] == ["im2col<float>", "im2col<double>", "col2im<float>",
                                         "col2im<double>"]
    assert "__global__ void col2im(" in built["code"]
    assert not re.search(r"^\s*#\s*include", built["code"], re.MULTILINE)


def stand_in_tensor(array):
    return cl.Tensor(dressed_as_cupy(array), requires_grad=True)


@pytest.mark.parametrize("op, shapes", [
    (lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
     [(2, 4, 5, 4), (4, 2, 3, 2), (4,)]),
    (lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True), [(1, 2, 5, 6)]),
    (lambda x: F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False), [(1, 2, 4, 3)]),
    (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [(3, 2, 2, 3), (2,), (2,)]),
    (lambda x: F.local_response_norm(x, 3, alpha=0.5, beta=0.75, k=2.0), [(1, 4, 2, 3)]),
    (lambda x: F.elu(F.tanh(x)) * F.sigmoid(x), [(2, 5)]),
    (lambda x: F.softmax(x, axis=0), [(3, 4)]),
    (lambda x: F.log_softmax(x, axis=(0, 2)), [(2, 3, 2)]),
    (lambda x: F.cross_entropy(x, np.array([0, 3]), label_smoothing=0.1), [(2, 5)]),
    (lambda x: F.cross_entropy(x, np.array([[0, 2], [1, 1]]), 0.2, "sum"), [(2, 3, 2)]),
    (lambda x: F.dropout(x, 0.4, rng=np.random.default_rng(3)), [(2, 5)]),
], ids=["conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "local_response_norm", "activations",
        "softmax", "log_softmax", "cross_entropy", "cross_entropy (N, K, d)", "dropout"])
def test_functional_ops_on_the_gpu_path_pass_gradcheck(stand_in_cupy, op, shapes):
    """The ops of cnnlite.functional, unchanged, on (stand-in) cupy arrays: their hot kernels
    are the CUDA ones, run here by the harness; the result and its gradient are checked. The
    result equals the CPU's: for dropout, one seeded generator gives one mask on both."""
    rng = np.random.default_rng(len(shapes))
    arrays = [distinct_values(shape, i) if i == 0 else rng.standard_normal(shape)
              for i, shape in enumerate(shapes)]
    inputs = [stand_in_tensor(a) for a in arrays]
    y = op(*inputs)
    assert y.device == "cuda"
    np.testing.assert_allclose(y.data, op(*[cl.tensor(a) for a in arrays]).data, rtol=1e-10)
    cl.gradcheck(op, inputs)


@both_dtypes
@pytest.mark.parametrize("index", range(len(NEW_CASE_NAMES)), ids=NEW_CASE_NAMES)
def test_launchers_of_the_new_kernels_equal_the_cpu_kernels(stand_in_cupy, index, dtype):
    """Dropout, softmax, cross-entropy and the optimiser updates: the CUDA launcher (through
    the harness) and the fast CPU kernel give the same arrays; in-place updates change the
    arrays they are given in the same way."""
    name, args = kernel_cases(np.random.default_rng(index), dtype)[index]
    got = call(cuda.KERNELS, name, args, lambda a: dressed_as_cupy(a.copy()))
    expected = call(cpu.KERNELS, name, args)
    for g, e in zip(got, expected):
        assert backend.is_cupy_array(g) and g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_allclose(g, e, **tolerance(dtype))


def optimizer_steps(make, device_array, steps=3):
    """A (3, 4) weight and a (3,) bias after ``steps`` steps of ``make(params)`` with fixed
    gradients; ``device_array`` puts an array where the parameters live."""
    rng = np.random.default_rng(12)
    params = [nn.Parameter(device_array(rng.standard_normal(shape))) for shape in ((3, 4), (3,))]
    optimizer = make(params)
    for _ in range(steps):
        for param in params:
            param.grad = device_array(rng.standard_normal(param.shape))
        optimizer.step()
    return params


OPTIMIZERS = {"SGD": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                         weight_decay=0.01),
              "Adam": lambda p: optim.Adam(p, lr=0.05, weight_decay=0.01)}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_steps_on_the_gpu_path_equal_the_cpu(stand_in_cupy, name):
    on_stand_in = optimizer_steps(OPTIMIZERS[name], dressed_as_cupy)
    on_cpu_ = optimizer_steps(OPTIMIZERS[name], np.asarray)
    for got, expected in zip(on_stand_in, on_cpu_):
        assert got.device == "cuda"
        np.testing.assert_allclose(got.data, expected.data, rtol=1e-12, atol=1e-14)


@needs_gpu
@both_dtypes
@pytest.mark.parametrize("index", range(len(NEW_CASE_NAMES)), ids=NEW_CASE_NAMES)
def test_new_kernels_on_gpu_equal_the_cpu_kernels(index, dtype):
    name, args = kernel_cases(np.random.default_rng(index), dtype)[index]
    got = call(cuda.KERNELS, name, args, on_gpu)
    expected = call(cpu.KERNELS, name, args)
    for g, e in zip(got, expected):
        assert backend.is_cupy_array(g)
        np.testing.assert_allclose(on_cpu(g), e, **tolerance(dtype))


@needs_gpu
def test_dropout_mask_on_gpu_is_the_cpu_mask_for_a_seeded_generator():
    x = np.random.default_rng(13).standard_normal((64, 33))
    masks = [F.dropout(cl.tensor(x, device=device), 0.5, rng=np.random.default_rng(14)).data
             for device in ("cpu", "cuda")]
    np.testing.assert_array_equal(on_cpu(masks[1]), masks[0])


@needs_gpu
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_steps_on_gpu_equal_the_cpu(name):
    on_device = optimizer_steps(OPTIMIZERS[name], on_gpu)
    for got, expected in zip(on_device, optimizer_steps(OPTIMIZERS[name], np.asarray)):
        np.testing.assert_allclose(on_cpu(got.data), expected.data, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Out of GPU memory.

@needs_gpu
def test_running_out_of_gpu_memory_says_how_much_was_asked_and_is_free():
    cupy = backend.cupy_module()
    huge = cupy.broadcast_to(cupy.zeros(1, dtype=cupy.float32), (2**40,))  # 4 TiB once copied
    with pytest.raises(memory.GpuOutOfMemoryError,
                       match=r"relu_forward: out of GPU memory: asked for 4\.00 TiB "
                             r"\(4,398,046,511,104 bytes\), .* free of .* on the device"):
        cuda.KERNELS["relu_forward"](huge)


def fake_cupy(free, total, cached):
    """Just the parts of cupy that the out-of-memory report reads."""
    class OutOfMemoryError(MemoryError):
        def __init__(self, size):
            super().__init__(f"Out of memory allocating {size:,} bytes")
            self._size = size

    return types.SimpleNamespace(
        cuda=types.SimpleNamespace(
            memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
            runtime=types.SimpleNamespace(memGetInfo=lambda: (free, total))),
        get_default_memory_pool=lambda: types.SimpleNamespace(free_bytes=lambda: cached))


def test_out_of_memory_report_names_the_request_and_what_is_free(monkeypatch):
    cupy = fake_cupy(free=3 * 2**20, total=80 * 2**30, cached=512)
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)
    with pytest.raises(memory.GpuOutOfMemoryError) as caught:
        with memory.reporting_out_of_memory("to_device", requested=6 * 2**30):
            raise cupy.cuda.memory.OutOfMemoryError(6 * 2**30 + 512)
    assert str(caught.value).startswith(
        "to_device: out of GPU memory: asked for 6.00 GiB (6,442,450,944 bytes), 3.00 MiB "
        "(3,145,728 bytes) free of 80.00 GiB (85,899,345,920 bytes) on the device, and "
        "512 bytes cached in cupy's memory pool")
    assert isinstance(caught.value.__cause__, cupy.cuda.memory.OutOfMemoryError)


def test_a_launcher_that_runs_out_of_memory_names_itself(monkeypatch):
    cupy = fake_cupy(free=0, total=16 * 2**30, cached=0)
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)

    @memory.reports_out_of_memory
    def im2col(x):
        raise cupy.cuda.memory.OutOfMemoryError(1536)

    with pytest.raises(memory.GpuOutOfMemoryError, match=r"^im2col: out of GPU memory: asked "
                                                         r"for 1\.50 KiB \(1,536 bytes\), 0 "
                                                         r"bytes free"):
        im2col(None)


def test_other_errors_pass_through_the_report(monkeypatch):
    monkeypatch.setattr(backend, "cupy_module", lambda: fake_cupy(0, 1, 0))
    with pytest.raises(ValueError, match="not about memory"):
        with memory.reporting_out_of_memory("x"):
            raise ValueError("not about memory")
