"""On a GPU: the kernels that are not ops of the table (optimiser updates) and the GPU-only
kernels equal their CPU versions and formulas, training runs on the device, and running out of
GPU memory says how much was asked for and how much is free. The op table
(``cnnlite/optable``, run by tests/test_optable.py) runs every hot op on the GPU as its "gpu"
implementation: values against the NumPy formulas and the loops (dropout: the same mask as the
CPU's for one seeded generator), float64 gradients by central differences on the GPU, float32
and non-contiguous inputs.

Without cupy or without a device the GPU tests skip and say which. The GPU code path is also
checked everywhere, with a stand-in for cupy (NumPy arrays that say they belong to cupy, and a
RawModule whose kernels run through the CPU harness): the launchers compile each kernel file
once, with the options and name expressions NVRTC needs, and the ops of cnnlite.functional run
unchanged on such arrays, through the CUDA kernels, and pass their gradient checks; Tensor.to,
and `cnnlite train --device cuda` (fit, evaluate, checkpoint) keep everything on the device. So
does the out-of-memory message, also for an op of autograd that runs out outside our kernels.
"""
import json
import re
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from test_kernel_routing import call, kernel_cases

import cnnlite as cl
from cnnlite import backend, cli, cpu, cuda, models, nn, optim
from cnnlite import functional as F
from cnnlite.cuda import host, memory, module
from cnnlite.reference.dropout import counter_uniforms
from cnnlite.reference import conv as reference_conv
from cnnlite.train import loop


def no_gpu_reason():
    if backend.cupy_module() is None:
        return "no GPU: cupy not installed"
    if not backend.cuda_available():
        return "no GPU: cupy sees no device"
    return None


needs_gpu = pytest.mark.skipif(no_gpu_reason() is not None, reason=str(no_gpu_reason()))
both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                      ids=["float32", "float64"])
NEW_CASE_NAMES = [name for name, _ in kernel_cases(np.random.default_rng(0), np.float64)]


def on_gpu(value):
    return backend.cupy_module().asarray(value) if isinstance(value, np.ndarray) else value


def on_cpu(value):
    return value.get() if backend.is_cupy_array(value) else value


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The GPU-only kernels against NumPy and PyTorch.

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
def stand_in_library(tmp_path_factory):
    compiler = host.compile_command()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no {compiler} on the PATH to build the CUDA-on-CPU harness")
    return host.build(tmp_path_factory.mktemp("stand_in"))


@pytest.fixture
def stand_in_kernels(request, stand_in_library):
    """The harness that runs the stand-in's kernels: 3 blocks of 32 threads, or (blocks,
    threads) as an indirect parameter. Its ``launched`` says which kernels the test ran."""
    return host.HostKernels(stand_in_library, *getattr(request, "param", (3, 32)))


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
            return stand_in_kernels.by_expression(expression)

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
    assert built["name_expressions"] == module.name_expressions("im2col")
    assert "__global__ void col2im(" in built["code"]
    assert not re.search(r"^\s*#\s*include", built["code"], re.MULTILINE)


def distinct_values(shape, seed):
    """A permutation of values 0.1 apart: no ties in a pooling window, no kinks for gradcheck."""
    size = int(np.prod(shape))
    return ((np.random.default_rng(seed).permutation(size) - size / 2) * 0.1).reshape(shape)


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


# ---------------------------------------------------------------------------------------------
# The device API: Tensor.to, fit(device="cuda") and `cnnlite train --device cuda`, on the
# stand-in (with cuda_available() saying yes) and, where cheap, on a real GPU.

@pytest.fixture
def stand_in_gpu(stand_in_cupy, monkeypatch):
    """The stand-in cupy, and a device "cuda" that check_device accepts."""
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    return stand_in_cupy


def check_tensor_goes_to_cuda_and_back(x):
    t = cl.tensor(x, requires_grad=True)
    on_device = t.to("cuda")
    assert on_device.device == "cuda" and backend.is_cupy_array(on_device.data)
    assert on_device is not t and on_device.creator is None  # a copy, a leaf
    assert on_device.requires_grad and on_device.shape == t.shape and on_device.dtype == t.dtype
    assert on_device.to("cuda") is on_device  # already there: no copy
    back = on_device.to("cpu")
    assert back.device == "cpu" and type(back.data) is np.ndarray
    np.testing.assert_array_equal(back.data, x)
    assert t.to("cpu") is t


def test_tensor_to_cuda_and_back_on_the_stand_in(stand_in_gpu):
    check_tensor_goes_to_cuda_and_back(np.arange(12, dtype=np.float32).reshape(3, 4))


@needs_gpu
def test_tensor_to_cuda_and_back_on_gpu():
    check_tensor_goes_to_cuda_and_back(np.arange(12, dtype=np.float32).reshape(3, 4))


def train_lenet5_on_digits_for_one_epoch(out, monkeypatch, capsys):
    """`cnnlite train --device cuda` for one epoch of LeNet-5 on the digits; returns the net
    it built and the devices of the batches it trained and evaluated on."""
    nets, batch_devices = [], []
    get_model, prepare_batch = models.get_model, loop._prepare_batch

    def recording_get_model(*args, **kwargs):
        nets.append(get_model(*args, **kwargs))
        return nets[-1]

    def recording_prepare_batch(*args):
        images, labels = prepare_batch(*args)
        batch_devices.append((images.device, labels.device))
        return images, labels

    monkeypatch.setattr(models, "get_model", recording_get_model)
    monkeypatch.setattr(loop, "_prepare_batch", recording_prepare_batch)
    status = cli.main(["train", "--model", "lenet5", "--dataset", "digits", "--epochs", "1",
                       "--device", "cuda", "--out", str(out), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    (net,) = nets
    return net, batch_devices


def check_the_training_run(out, net, batch_devices):
    # Trained and evaluated on the device: every parameter, every batch.
    assert {p.device for p in net.parameters()} == {"cuda"}
    assert batch_devices and set(batch_devices) == {("cuda", "cuda")}
    # It learnt: one epoch of LeNet-5 on the digits reaches about 60% (chance: 10%).
    results = json.loads((out / "results.json").read_text())
    assert results["history"]["val_loss"][0] < 2.0 < np.log(10)  # ln 10: the untrained loss
    assert 0.3 < results["test_accuracy"] <= 1
    # The checkpoint holds NumPy arrays (it loads without a GPU) equal to the trained net's.
    with np.load(out / "checkpoint.npz", allow_pickle=False) as saved:
        for name, value in net.state_dict().items():
            np.testing.assert_array_equal(saved[f"model/{name}"],
                                          on_cpu(getattr(value, "data", value)))


# One block of 8 threads: the harness starts the threads of every launch anew, and starting
# them, thousands of launches over, would take most of the run's time.
@pytest.mark.parametrize("stand_in_kernels", [(1, 8)], indirect=True, ids=["1x8 threads"])
def test_cnnlite_train_on_device_cuda_with_the_stand_in(stand_in_gpu, stand_in_kernels,
                                                        tmp_path, monkeypatch, capsys):
    """The whole run (data loader, fit, evaluate, checkpoint, results) on device "cuda": the
    batches and parameters are (stand-in) cupy arrays, and the CUDA kernels do the work."""
    net, batch_devices = train_lenet5_on_digits_for_one_epoch(tmp_path, monkeypatch, capsys)
    check_the_training_run(tmp_path, net, batch_devices)
    for kernel in ("im2col<float, int>", "col2im<float, int>", "max_pool2d_forward<float>",
                   "max_pool2d_backward<float>", "relu_forward<float>", "relu_backward<float>",
                   "cross_entropy_forward<float>", "cross_entropy_backward<float>",
                   "sgd_momentum_update<float>"):
        assert kernel in stand_in_kernels.launched, kernel


@needs_gpu
def test_cnnlite_train_on_device_cuda_on_gpu(tmp_path, monkeypatch, capsys):
    net, batch_devices = train_lenet5_on_digits_for_one_epoch(tmp_path, monkeypatch, capsys)
    check_the_training_run(tmp_path, net, batch_devices)


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
        def __init__(self, size, keep_size=True):
            super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: "
                             f"{total - free:,} bytes).")
            if keep_size:  # cupy's private attribute, which a later cupy may not have
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


@pytest.mark.parametrize("message, asked", [
    ("Out of memory allocating 1,536 bytes (allocated so far: 0 bytes).", 1536),
    ("Out of memory allocating 1536 bytes", 1536),
    ("out of memory", None)], ids=["cupy's message", "no thousands separators", "no size"])
def test_the_size_asked_for_comes_from_the_message_without_cupys_private_size(message, asked):
    error = MemoryError(message)  # no _size attribute
    assert memory.requested_bytes(error) == asked


def test_the_report_reads_the_size_from_the_message_when_size_is_missing(monkeypatch):
    cupy = fake_cupy(free=0, total=2**30, cached=0)
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)
    with pytest.raises(memory.GpuOutOfMemoryError, match=r"^x: out of GPU memory: asked for "
                                                         r"3\.00 MiB \(3,145,728 bytes\), 0 "):
        with memory.reporting_out_of_memory("x"):
            raise cupy.cuda.memory.OutOfMemoryError(3 * 2**20, keep_size=False)


class RunsOutOfGpuMemory(cl.autograd.Function):
    """y = 2x; runs out of (fake) GPU memory in forward or in backward, as a cuBLAS product or
    a cupy element-wise op in an op would: outside our kernels' launchers."""

    def __init__(self, cupy, where):
        self.cupy, self.where = cupy, where

    def forward(self, x):
        if self.where == "forward":
            raise self.cupy.cuda.memory.OutOfMemoryError(2**30)
        return 2 * x

    def backward(self, gy):
        raise self.cupy.cuda.memory.OutOfMemoryError(2**31)


@pytest.fixture
def imported_fake_cupy(monkeypatch):
    """A fake cupy that cnnlite sees as imported (it is in sys.modules)."""
    cupy = fake_cupy(free=5 * 2**20, total=16 * 2**30, cached=0)
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return cupy


def test_an_op_out_of_gpu_memory_in_forward_names_the_op_and_its_shapes(imported_fake_cupy):
    x = cl.tensor(np.ones((4, 3)), requires_grad=True)
    with pytest.raises(memory.GpuOutOfMemoryError,
                       match=r"^RunsOutOfGpuMemory \(forward, input shapes \(4, 3\)\): out of "
                             r"GPU memory: asked for 1\.00 GiB \(1,073,741,824 bytes\), 5\.00 "
                             r"MiB \(5,242,880 bytes\) free") as caught:
        RunsOutOfGpuMemory(imported_fake_cupy, "forward")(x)
    assert isinstance(caught.value.__cause__, imported_fake_cupy.cuda.memory.OutOfMemoryError)


def test_an_op_out_of_gpu_memory_in_backward_names_the_op_and_its_shapes(imported_fake_cupy):
    x = cl.tensor(np.ones((4, 3)), requires_grad=True)
    y = RunsOutOfGpuMemory(imported_fake_cupy, "backward")(x)
    with pytest.raises(memory.GpuOutOfMemoryError,
                       match=r"^RunsOutOfGpuMemory \(backward, gradient shapes \(4, 3\)\): "
                             r"out of GPU memory: asked for 2\.00 GiB"):
        y.sum().backward()


def test_before_cupy_is_imported_an_op_reports_no_gpu_memory(monkeypatch):
    """Without cupy in sys.modules nothing is on the GPU: no cupy import, no report; the
    error (here a fake's) passes through as it was."""
    cupy = fake_cupy(free=0, total=1, cached=0)
    monkeypatch.setattr(backend, "cupy_module", lambda: pytest.fail("cupy was asked for"))
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    with pytest.raises(cupy.cuda.memory.OutOfMemoryError):
        RunsOutOfGpuMemory(cupy, "forward")(cl.tensor(np.ones(3)))


@needs_gpu
def test_an_element_wise_op_out_of_gpu_memory_names_the_op():
    """cupy's own element-wise multiply, inside Mul, allocating its 4 TiB result."""
    cupy = backend.cupy_module()
    huge = cl.Tensor(cupy.broadcast_to(cupy.zeros(1, dtype=cupy.float32), (2**40,)))
    with pytest.raises(memory.GpuOutOfMemoryError,
                       match=r"^\w+ \(forward, input shapes \(1099511627776,\), .*\): out of "
                             r"GPU memory: asked for 4\.00 TiB"):
        huge * 2.0


def test_other_errors_pass_through_the_report(monkeypatch):
    monkeypatch.setattr(backend, "cupy_module", lambda: fake_cupy(0, 1, 0))
    with pytest.raises(ValueError, match="not about memory"):
        with memory.reporting_out_of_memory("x"):
            raise ValueError("not about memory")
