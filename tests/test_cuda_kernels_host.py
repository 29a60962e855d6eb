"""The CUDA kernels of kernels/*.cu run on the CPU through the harness in kernels/host: what the
op table does not check.

The harness (kernels/host/cuda_on_cpu.h) compiles the kernels' own source with g++ (or $CXX);
inside ``host.run_on_cpu`` the launchers of ``cnnlite.cuda`` run on NumPy arrays through it.
The op table (``cnnlite/optable``, run by tests/test_optable.py) runs every hot op through
them as its "cuda-host" implementation: values against the NumPy formulas and the loops,
gradients, float32 and non-contiguous inputs, over drawn geometries (convolution strides,
paddings, dilations and groups; pooling with ceil mode and count_include_pad; LRN windows;
batch norm over channels longer than a block).

Here: the registry's signatures, NaN in max pooling, zeros in stochastic pooling, launch-shape
independence, softmax of large logits and rows wider than a block, cross-entropy with label
smoothing, dropout masks and their generator, the optimiser updates (against torch.optim), the
harness's own plumbing and bad input. The last test checks that the table's cuda-host cases and
the tests here launch every kernel between them.
"""
import inspect
import re
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnnlite import backend, cuda, optable, reference
from cnnlite.cuda import conv as cuda_conv, host, module
from cnnlite.optable import implementations
from cnnlite.reference.dropout import counter_uniforms
from cnnlite.errors import OpError
from cnnlite.functional.pool import pool_window
from cnnlite.reference import conv as reference_conv
from helpers import assert_same_outputs

COMPILER = host.compile_command()[0]
pytestmark = pytest.mark.skipif(shutil.which(COMPILER) is None,
                                reason=f"no {COMPILER} on the PATH to build the CUDA-on-CPU "
                                       f"harness (set $CXX to another C++20 compiler)")

DTYPES = [np.float32, np.float64]
both_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
KERNELS = cuda.KERNELS


@pytest.fixture(scope="session")
def harness_library(tmp_path_factory):
    """The harness with every kernel, compiled once per test session."""
    return host.build(tmp_path_factory.mktemp("cuda_on_cpu"))


@pytest.fixture(scope="module")
def launched_here():
    """Every kernel (``name<type>``) that a test of this module launched, for the last test."""
    return set()


@pytest.fixture(autouse=True)
def on_cpu(harness_library, launched_here):
    """Every test here runs the launchers through the harness: 3 blocks of 32 threads, so that
    the grid-stride loops go round several times on any input."""
    with host.run_on_cpu(host.HostKernels(harness_library)) as kernels:
        yield kernels
    launched_here.update(kernels.launched)


def tolerance(dtype):
    """float32 kernels sum in double but store in float: a few float32 ulps of difference."""
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def assert_same(got, expected, dtype):
    assert_same_outputs(got, expected, tolerance(dtype))


# ---------------------------------------------------------------------------------------------
# The registry: a CUDA launcher for every kernel, with the loops' signature.

def test_every_registry_kernel_has_a_cuda_launcher_with_the_same_signature():
    for name, loops in reference.KERNELS.items():
        assert name in KERNELS, f"no CUDA launcher for kernel {name!r}"
        ours = list(inspect.signature(KERNELS[name]).parameters)
        theirs = list(inspect.signature(loops).parameters)
        assert ours == theirs, (name, ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_64_bit_index_kernels_equal_the_loops(monkeypatch, dtype):
    """Every convolution that fits in memory here takes the 32-bit kernels; the 64-bit ones are
    forced (tests/test_cuda_compile.py checks the choice on shapes too large to allocate)."""
    monkeypatch.setattr(cuda_conv, "_index_type", lambda geometry: "long long")
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 6)).astype(dtype)
    geometry = (3, 2, (2, 1), (1, 1), (1, 2))
    col = KERNELS["im2col"](x, *geometry)
    np.testing.assert_array_equal(col, reference_conv.im2col(x, *geometry))
    np.testing.assert_allclose(KERNELS["col2im"](col, x.shape, *geometry),
                               reference_conv.col2im(col, x.shape, *geometry),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_col2im_rejects_a_column_matrix_of_the_wrong_shape():
    with pytest.raises(OpError, match=r"col2im: expected col of shape .*\(27, 50\).*got col "
                                      r"\(27, 49\)"):
        KERNELS["col2im"](np.zeros((27, 49)), (2, 3, 5, 5), 3, 3, (1, 1), (1, 1), (1, 1))


# ---------------------------------------------------------------------------------------------
# Pooling: NaN, and the zeros that the table's positive inputs for stochastic pooling never hold.

def distinct_values(shape, rng, dtype):
    """A permutation of distinct values 0.1 apart: no window holds a tie."""
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2) * 0.1).reshape(shape).astype(dtype)


@both_dtypes
def test_max_pooling_picks_the_first_nan_of_a_window(dtype):
    """A NaN wins over every number (it propagates, as in PyTorch), the first NaN of a window
    over later ones; its gradient goes to the NaN. The NaNs sit after a larger number in their
    windows, where a plain ``value > best`` would skip them."""
    x = distinct_values((1, 2, 4, 5), np.random.default_rng(2), dtype)
    x[0, 0, 1, 2] = x[0, 0, 2, 1] = np.nan  # two NaNs in the windows of rows 0..2
    x[0, 1, 3, 4] = np.nan                  # the last element of a plane
    g = pool_window("pool", x.shape, 3, 1, 1, ceil_mode=False)
    args = (x, g.kernel_size, g.stride, g.padding, g.output_size)
    y, argmax = KERNELS["max_pool2d_forward"](*args)
    expected_y, expected_argmax = reference.pool.max_pool2d_forward(*args)
    np.testing.assert_array_equal(y, expected_y)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(argmax, expected_argmax)
    # Every window holding a NaN: 9 + 9 - 4 (the windows of both) in plane 0, 4 in plane 1.
    assert np.isnan(y).sum() == 14 + 4
    t_y = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 1, 1)
    np.testing.assert_array_equal(y, t_y.numpy())
    gy = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    assert_same(KERNELS["max_pool2d_backward"](gy, argmax, x.shape[2:]),
                reference.pool.max_pool2d_backward(gy, argmax, x.shape[2:]), dtype)


@st.composite
def stochastic_geometries(draw):
    """Shape and window of a stochastic pooling (no padding), ceil mode or not, and a dtype."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    size = tuple(draw(st.integers(k, 7)) for k in kernel)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + size
    window = pool_window("pool", shape, kernel, stride, 0, draw(st.booleans()))
    return shape, window, draw(st.sampled_from(DTYPES))


@given(case=stochastic_geometries(), seed=st.integers(0, 99))
def test_stochastic_pooling_of_zeros_equals_the_loops(case, seed):
    """About half the values are 0 and some windows all zeros (the table's inputs for
    stochastic pooling are positive): sampling, expected value and its gradient equal the
    loops'."""
    shape, g, dtype = case
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    uniforms = rng.random(shape[:2] + g.output_size)
    sample = (g.kernel_size, g.stride, g.output_size)
    assert_same(KERNELS["stochastic_pool2d_sample"](x, *sample, uniforms),
                reference.pool.stochastic_pool2d_sample(x, *sample, uniforms), dtype)
    assert_same(KERNELS["probability_weighted_pool2d_forward"](x, *sample),
                reference.pool.probability_weighted_pool2d_forward(x, *sample), dtype)
    gy = rng.standard_normal(uniforms.shape).astype(dtype)
    assert_same(KERNELS["probability_weighted_pool2d_backward"](gy, x, *sample[:2]),
                reference.pool.probability_weighted_pool2d_backward(gy, x, *sample[:2]), dtype)


# ---------------------------------------------------------------------------------------------
# The grid does not matter: any number of blocks and threads gives the same result.

@pytest.mark.parametrize("blocks, threads", [(1, 1), (2, 7), (5, 64)])
def test_results_do_not_depend_on_the_launch_shape(harness_library, blocks, threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 5))
    col = rng.standard_normal((27, 60))  # 3x3 kernel, padding 1: 6x5 outputs per sample
    x3 = rng.standard_normal((3, 4, 40))
    logits = rng.standard_normal((3, 70))
    conv = (3, 3, (1, 1), (1, 1), (1, 1))
    with host.run_on_cpu(host.HostKernels(harness_library, blocks, threads)):
        got = [KERNELS["col2im"](col, x.shape, *conv),
               *KERNELS["batch_norm_statistics"](x3),
               KERNELS["log_softmax_forward"](logits, 1),
               KERNELS["dropout_forward"](x, 0.3, 99)[1]]
    expected = [reference_conv.col2im(col, x.shape, *conv),
                *reference.norm.batch_norm_statistics(x3),
                logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)),
                (counter_uniforms(99, x.size) >= 0.3).reshape(x.shape) / 0.7]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# Softmax, log-softmax, cross-entropy.

def numpy_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@both_dtypes
@pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((2, 70), 1), ((4, 3, 2), 0),
                                         ((2, 3, 4, 5), 1), ((6,), 0), ((3, 1), 1)])
def test_softmax_and_log_softmax_equal_numpy(shape, axis, dtype):
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 5 + 100).astype(dtype)  # large logits: exp would overflow
    gy = rng.standard_normal(shape).astype(dtype)
    log_y = numpy_log_softmax(x.astype(np.float64), axis)
    y = np.exp(log_y)
    np.testing.assert_allclose(KERNELS["log_softmax_forward"](x, axis), log_y, **tolerance(dtype))
    np.testing.assert_allclose(KERNELS["softmax_forward"](x, axis), y, **tolerance(dtype))
    y, log_y = y.astype(dtype), log_y.astype(dtype)
    np.testing.assert_allclose(KERNELS["softmax_backward"](y, gy, axis),
                               y * (gy - (gy * y).sum(axis=axis, keepdims=True)),
                               **tolerance(dtype))
    np.testing.assert_allclose(KERNELS["log_softmax_backward"](log_y, gy, axis),
                               gy - np.exp(log_y) * gy.sum(axis=axis, keepdims=True),
                               **tolerance(dtype))


@both_dtypes
@pytest.mark.parametrize("shape", [(4, 7), (2, 40), (2, 3, 4, 2), (5,)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_equals_pytorch(shape, label_smoothing, dtype):
    rng = np.random.default_rng(shape[0])
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    classes = shape[1] if len(shape) > 1 else shape[0]
    target = rng.integers(0, classes, size=shape[:1] + shape[2:] if len(shape) > 1 else ())
    gloss = rng.standard_normal(target.shape).astype(dtype)
    loss, log_probs = KERNELS["cross_entropy_forward"](logits, target, label_smoothing)
    glogits = KERNELS["cross_entropy_backward"](log_probs, target, gloss, label_smoothing)

    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(target), reduction="none",
                                               label_smoothing=label_smoothing)
    (t_loss * torch.tensor(gloss)).sum().backward()
    np.testing.assert_allclose(loss, t_loss.detach().numpy(), **tolerance(dtype))
    np.testing.assert_allclose(log_probs, numpy_log_softmax(logits, 1 if len(shape) > 1 else 0),
                               **tolerance(dtype))
    np.testing.assert_allclose(glogits, t_logits.grad.numpy(), **tolerance(dtype))


def test_cross_entropy_rejects_a_target_of_the_wrong_shape():
    with pytest.raises(OpError, match=r"cross_entropy: expected target of shape \(4,\) for "
                                      r"logits \(4, 3\), got \(3,\)"):
        KERNELS["cross_entropy_forward"](np.zeros((4, 3)), np.zeros(3, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Dropout masks.

@both_dtypes
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_dropout_mask_is_the_counter_generator_thresholded_and_scaled(p, dtype):
    x = np.random.default_rng(1).standard_normal((3, 50, 7)).astype(dtype)
    y, mask = KERNELS["dropout_forward"](x, p, 2024)
    scale = 1 / (1 - p) if p < 1 else 0.0
    expected = np.where(counter_uniforms(2024, x.size) >= p, scale, 0).reshape(x.shape)
    np.testing.assert_allclose(mask, expected.astype(dtype), rtol=1e-7)
    np.testing.assert_array_equal(y, x * mask)


def test_dropout_keeps_about_1_minus_p_and_seeds_differ():
    x = np.ones(20000)
    _, mask = KERNELS["dropout_forward"](x, 0.3, 1)
    _, other = KERNELS["dropout_forward"](x, 0.3, 2)
    kept = (mask > 0).mean()
    assert abs(kept - 0.7) < 4 * np.sqrt(0.7 * 0.3 / x.size)  # four standard deviations
    assert (mask != other).mean() > 0.3  # 2 * 0.7 * 0.3 = 0.42 expected


def test_counter_uniforms_are_uniform():
    u = counter_uniforms(7, 100000)
    assert 0 <= u.min() and u.max() < 1
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(counts - 10000) < 5 * np.sqrt(10000 * 0.9))


# ---------------------------------------------------------------------------------------------
# Optimiser updates against torch.optim, several steps.

def gradients(shape, steps, dtype):
    rng = np.random.default_rng(11)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]


@both_dtypes
@pytest.mark.parametrize("momentum, dampening, nesterov, weight_decay",
                         [(0.0, 0.0, False, 0.0), (0.9, 0.0, False, 1e-2),
                          (0.9, 0.1, False, 0.0), (0.8, 0.0, True, 5e-4)])
def test_sgd_update_equals_torch(momentum, dampening, nesterov, weight_decay, dtype):
    start = np.random.default_rng(5).standard_normal((4, 6)).astype(dtype)
    param, buffer = start.copy(), np.zeros_like(start)
    t_param = torch.tensor(start.copy(), requires_grad=True)
    t_opt = torch.optim.SGD([t_param], lr=0.1, momentum=momentum, dampening=dampening,
                            nesterov=nesterov, weight_decay=weight_decay)
    for step, grad in enumerate(gradients(start.shape, 4, dtype)):
        KERNELS["sgd_momentum_update"](param, grad, buffer, 0.1, momentum, dampening,
                                       weight_decay, nesterov, step == 0)
        t_param.grad = torch.tensor(grad)
        t_opt.step()
    np.testing.assert_allclose(param, t_param.detach().numpy(), **tolerance(dtype))


@both_dtypes
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_update_equals_torch(weight_decay, dtype):
    start = np.random.default_rng(6).standard_normal((5, 3)).astype(dtype)
    param, exp_avg, exp_avg_sq = start.copy(), np.zeros_like(start), np.zeros_like(start)
    t_param = torch.tensor(start.copy(), requires_grad=True)
    t_opt = torch.optim.Adam([t_param], lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                             weight_decay=weight_decay)
    for step, grad in enumerate(gradients(start.shape, 5, dtype), start=1):
        KERNELS["adam_update"](param, grad, exp_avg, exp_avg_sq, step, 0.01, 0.8, 0.99, 1e-6,
                               weight_decay)
        t_param.grad = torch.tensor(grad)
        t_opt.step()
    np.testing.assert_allclose(param, t_param.detach().numpy(), **tolerance(dtype))


def test_in_place_updates_reject_a_state_of_another_dtype():
    param = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(OpError, match=r"adam_update: exp_avg must be a contiguous float32 "
                                      r"array of param's shape \(2, 3\).*got \(2, 3\) float64"):
        KERNELS["adam_update"](param, param, np.zeros((2, 3)), np.zeros_like(param), 1, 0.1)


# ---------------------------------------------------------------------------------------------
# The plumbing: entry points, shared sizes, argument types, bad input.

def test_the_harness_has_an_entry_point_for_every_kernel(on_cpu):
    for topic in module.KERNEL_SOURCES:
        for expression in module.name_expressions(topic):
            assert on_cpu.by_expression(expression) is not None


def test_block_size_limit_is_the_same_in_python_and_cuda():
    common = (module.kernel_folder() / "common.cuh").read_text()
    limit = re.search(r"#define MAX_BLOCK_THREADS (\d+)", common).group(1)
    assert int(limit) == module.MAX_BLOCK_THREADS


def test_nvrtc_source_has_the_common_header_pasted_in():
    text = module.source("pool")
    assert "__device__ double block_sum(double value)" in text
    # No #include line is left: NVRTC has no include path here, and no standard headers.
    assert not re.search(r"^\s*#\s*include", text, re.MULTILINE)


def test_a_python_int_argument_is_refused(on_cpu):
    kernel = on_cpu.function("relu_forward", "double")
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"relu_forward<double>: argument 2 is a int; pass a "
                                        r"NumPy scalar"):
        kernel((1,), (1,), (x, np.empty(3), 3))


def test_an_argument_of_the_wrong_width_is_refused(on_cpu):
    """A float64 where the float kernel has a float: on a GPU, silently wrong numbers."""
    kernel = on_cpu.function("leaky_relu_forward", "float")
    x = np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match=r"leaky_relu_forward<float>: arguments of \[8, 8, 8, "
                                        r"8\] bytes, kinds 'ppif', for parameters of "
                                        r"\[8, 8, 8, 4\] bytes, kinds 'ppif'"):
        kernel((1,), (1,), (x, np.empty_like(x), np.int64(3), np.float64(0.1)))


@pytest.mark.parametrize("size, kinds", [(np.float64(3), "ppf"), (np.uint64(3), "ppu"),
                                         (np.empty(3), "ppp")], ids=["double", "unsigned",
                                                                     "array"])
def test_an_argument_of_the_right_width_but_the_wrong_kind_is_refused(on_cpu, size, kinds):
    """A double, an unsigned long long or a pointer where the kernel has a long long: the same
    8 bytes, which the kernel would read as a wrong (for a pointer, a huge) count."""
    kernel = on_cpu.function("relu_forward", "double")
    x = np.ones(3)
    with pytest.raises(TypeError, match=rf"relu_forward<double>: arguments of \[8, 8, 8\] "
                                        rf"bytes, kinds '{kinds}', for parameters of "
                                        rf"\[8, 8, 8\] bytes, kinds 'ppi'"):
        kernel((1,), (1,), (x, np.empty(3), size))


def test_the_harness_reports_the_kind_of_each_parameter(on_cpu):
    """cross_entropy_forward<float>(const float*, const long long*, float*, float*, long long
    rows, K, inner, double label_smoothing): every kind the kernels use."""
    kernel = on_cpu.function("cross_entropy_forward", "float")
    assert kernel.parameter_kinds == "pppp" + "iii" + "f"
    assert kernel.parameter_sizes == [8] * 4 + [8] * 3 + [8]


def test_a_shared_build_is_reused_only_for_the_same_sources(monkeypatch, tmp_path):
    """build_once's library name carries a hash of its sources: another checkout, an edited
    kernel or another compiler never loads a library built from something else."""
    first = host.fingerprint()
    assert host.fingerprint() == first
    copy = tmp_path / "kernels"
    shutil.copytree(module.kernel_folder(), copy)
    monkeypatch.setattr(module, "kernel_folder", lambda: copy)
    assert host.fingerprint() != first  # the generated C++ names the copy's files
    moved = host.fingerprint()
    relu = copy / "activation.cu"
    relu.write_text(relu.read_text().replace("x[t] > 0 ? x[t] : T(0)", "x[t] >= 0 ? x[t] : T(0)"))
    assert host.fingerprint() != moved
    edited = host.fingerprint()
    monkeypatch.setenv("CXX", "clang++")
    assert host.fingerprint() != edited


def test_the_compiler_is_cxx_when_it_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "ccache g++-13")
    assert host.compile_command() == ("ccache", "g++-13", *host.COMPILE_OPTIONS)
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails: build must run it
    with pytest.raises(RuntimeError, match=r"compiling the CUDA-on-CPU harness failed: false "
                                           r"-std=c\+\+20 "):
        host.build(tmp_path)
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(RuntimeError, match=r"no compiler 'no-such-compiler-here' on the PATH"):
        host.build(tmp_path)
    monkeypatch.delenv("CXX")
    assert host.compile_command()[0] == "g++"


def test_integer_arrays_are_refused_with_the_shapes():
    with pytest.raises(OpError, match=r"relu_forward: the CUDA kernels take float32 or float64 "
                                      r"arrays, got \(2, 2\) int64"):
        KERNELS["relu_forward"](np.ones((2, 2), dtype=np.int64))


def test_numpy_arrays_outside_the_harness_are_refused():
    with host.run_on_cpu(None):
        with pytest.raises(backend.DeviceError, match=r"im2col: the CUDA kernels run on cupy "
                                                      r"arrays, got a ndarray"):
            KERNELS["im2col"](np.ones((1, 1, 3, 3)), 2, 2, (1, 1), (0, 0), (1, 1))


# ---------------------------------------------------------------------------------------------
# Last: between them, the table's cuda-host cases and the tests above launched every kernel of
# every kernels/*.cu file.

def test_every_kernel_is_launched_by_the_table_or_a_test_here(request, launched_here):
    """A kernel that no test launches is a kernel that no test checks. Runs the table's float32
    value and gradient checks of every op on the harness (one example each: the kernels an op
    launches do not depend on its parameters), and only when the whole module ran (not for a -k
    selection or a single test), last, after the others."""
    module_file = request.node.path
    selected = [item for item in request.session.items if item.path == module_file]
    defined = request.node.parent.collect()  # this module's tests, parametrised, unfiltered
    if len(selected) < len(defined) or selected[-1] is not request.node:
        pytest.skip("only a part of this module ran")
    for spec in optable.OPS.values():
        if "cuda-host" in spec.implementations:
            for check in ("value", "gradient"):
                result = optable.run_check(spec, check, "cuda-host", dtype="float32")
                assert result.passed, str(result)
    launched = launched_here | implementations.host_kernels().launched
    expected = {e for topic in module.KERNEL_SOURCES for e in module.name_expressions(topic)}
    assert not expected - launched, f"never launched: {sorted(expected - launched)}"
