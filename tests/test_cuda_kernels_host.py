"""The CUDA kernels of kernels/*.cu, run on the CPU through the harness in kernels/host, equal
the reference ops.

The harness (kernels/host/cuda_on_cpu.h) compiles the kernels' own source with g++ (or $CXX);
inside ``host.run_on_cpu`` the launchers of ``cnnlite.cuda`` run on NumPy arrays through it, so
these tests cover the kernels, their launchers (grid sizes, argument order and types, output
allocation) and the registry's signatures, without a GPU. The library is built once per test
session, and the last test checks that between them the tests launched every kernel.

References: the loops of ``cnnlite.reference`` for the registry kernels; NumPy formulas and
PyTorch for softmax, cross-entropy and the optimiser updates; the NumPy twin of the counter
generator for dropout masks.
"""
import inspect
import re
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnnlite import backend, cuda, reference
from cnnlite.cuda import host, module
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
# Every registry kernel, on one input each (also used by test_cuda_gpu.py: GPU == CPU).

def registry_cases(rng, dtype):
    """(name, args) for every kernel of the registry, as NumPy arrays of ``dtype``."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x = normal(2, 3, 7, 6)
    conv = (3, 2, (2, 1), (1, 1), (1, 2))  # kh, kw, stride, padding, dilation
    col = reference_conv.im2col(x, *conv)
    window = pool_window("case", x.shape, (3, 2), (2, 1), (1, 0), ceil_mode=True)
    pool = (window.kernel_size, window.stride, window.padding)
    _, argmax = reference.pool.max_pool2d_forward(x, *pool, window.output_size)
    gy_pool = normal(2, 3, *window.output_size)
    positive = np.where(x > 0.3, x, 0).astype(dtype)
    positive[0, 0, :3, :3] = 0  # an all-zero window
    plain = pool_window("case", x.shape, (2, 3), (2, 2), 0, ceil_mode=True)
    sample = (plain.kernel_size, plain.stride, plain.output_size)
    uniforms = rng.random((2, 3, *plain.output_size))
    x3 = normal(3, 4, 5)
    mean, var = reference.norm.batch_norm_statistics(x3)
    inv_std = (1 / np.sqrt(var + 1e-5)).astype(dtype)
    weight, bias = normal(4), normal(4)
    gy3 = normal(3, 4, 5)
    grad_bias, grad_weight = reference.norm.batch_norm_grad_statistics(gy3, x3, mean, inv_std)
    lrn = (5, 0.2, 0.75, 2.0)  # size, coefficient, beta, k: a coefficient that matters
    _, denom, factor = reference.norm.lrn_forward(x3, *lrn)
    a = normal(2, 3, 4) * 3
    y_sigmoid = reference.activation.sigmoid_forward(a)
    y_tanh = reference.activation.tanh_forward(a)
    masks = [normal(*plain.kernel_size) for _ in range(3)]  # leaf1, leaf2, gate
    _, gated_argmax = reference.generalized_pool.gated_max_ave_pool2d_forward(x, masks[2],
                                                                              *sample)
    gy_plain = normal(*uniforms.shape)
    return [
        ("im2col", (x, *conv)),
        ("col2im", (normal(*col.shape), x.shape, *conv)),
        ("max_pool2d_forward", (x, *pool, window.output_size)),
        ("max_pool2d_backward", (gy_pool, argmax, x.shape[2:])),
        ("avg_pool2d_forward", (x, *pool, window.output_size, True)),
        ("avg_pool2d_forward", (x, *pool, window.output_size, False)),
        ("avg_pool2d_backward", (gy_pool, x.shape[2:], *pool, True)),
        ("avg_pool2d_backward", (gy_pool, x.shape[2:], *pool, False)),
        ("stochastic_pool2d_sample", (positive, *sample, uniforms)),
        ("probability_weighted_pool2d_forward", (positive, *sample)),
        ("probability_weighted_pool2d_backward", (normal(*uniforms.shape), positive,
                                                  *sample[:2])),
        ("batch_norm_statistics", (x3,)),
        ("batch_norm_forward", (x3, mean, inv_std, weight, bias)),
        ("batch_norm_grad_statistics", (gy3, x3, mean, inv_std)),
        ("batch_norm_backward", (gy3, x3, mean, inv_std, weight, grad_weight, grad_bias)),
        ("lrn_forward", (x3, *lrn)),
        ("lrn_backward", (gy3, x3, denom, factor, *lrn[:3])),
        ("relu_forward", (a,)),
        ("relu_backward", (a, normal(*a.shape))),
        ("leaky_relu_forward", (a, 0.1)),
        ("leaky_relu_backward", (a, normal(*a.shape), 0.1)),
        ("elu_forward", (a, 1.3)),
        ("elu_backward", (a, normal(*a.shape), 1.3)),
        ("sigmoid_forward", (a,)),
        ("sigmoid_backward", (y_sigmoid, normal(*a.shape))),
        ("tanh_forward", (a,)),
        ("tanh_backward", (y_tanh, normal(*a.shape))),
        ("gated_max_ave_pool2d_forward", (x, masks[2], *sample)),
        ("gated_max_ave_pool2d_backward", (gy_plain, x, masks[2], gated_argmax, *sample[:2])),
        ("tree_pool2d_forward", (x, *masks, *sample)),
        ("tree_pool2d_backward", (gy_plain, x, *masks, *sample[:2])),
    ]


def case_id(case):
    return case[0]


def test_every_registry_kernel_has_a_cuda_launcher_with_the_same_signature():
    for name, loops in reference.KERNELS.items():
        assert name in KERNELS, f"no CUDA launcher for kernel {name!r}"
        ours = list(inspect.signature(KERNELS[name]).parameters)
        theirs = list(inspect.signature(loops).parameters)
        assert ours == theirs, (name, ours, theirs)


@both_dtypes
@pytest.mark.parametrize("index", range(len(registry_cases(np.random.default_rng(0),
                                                           np.float64))),
                         ids=[c[0] for c in registry_cases(np.random.default_rng(0),
                                                           np.float64)])
def test_registry_kernel_equals_reference_loops(index, dtype):
    name, args = registry_cases(np.random.default_rng(index), dtype)[index]
    assert_same(KERNELS[name](*args), reference.KERNELS[name](*args), dtype)


# ---------------------------------------------------------------------------------------------
# im2col / col2im over strides, paddings, dilations; groups through a whole convolution.

@st.composite
def conv_geometries(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # Big enough for one output position: H + 2p >= d (k - 1) + 1.
    H = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]), 7))
    W = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1]), 7))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W)
    return shape, (kh, kw, stride, padding, dilation), draw(st.sampled_from(DTYPES))


@given(case=conv_geometries(), seed=st.integers(0, 99))
def test_im2col_and_col2im_equal_the_loops(case, seed):
    shape, conv, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    col = KERNELS["im2col"](x, *conv)
    assert_same(col, reference_conv.im2col(x, *conv), dtype)
    gcol = rng.standard_normal(col.shape).astype(dtype)
    assert_same(KERNELS["col2im"](gcol, shape, *conv),
                reference_conv.col2im(gcol, shape, *conv), dtype)


@both_dtypes
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_convolution_through_the_column_layout_equals_direct_loops(groups, dtype):
    """Groups need no kernel support: the rows of one group are contiguous in col."""
    rng = np.random.default_rng(groups)
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)
    w = rng.standard_normal((8, 4 // groups, 3, 2)).astype(dtype)
    conv = (3, 2, (1, 2), (1, 1), (2, 1))
    col = KERNELS["im2col"](x, *conv)
    y = w.reshape(groups, 8 // groups, -1) @ col.reshape(groups, col.shape[0] // groups, -1)
    OH, OW = (reference_conv.output_size(n, k, s, p, d)
              for n, k, s, p, d in zip((6, 5), (3, 2), (1, 2), (1, 1), (2, 1)))
    y = y.reshape(8, 2, OH, OW).transpose(1, 0, 2, 3)
    direct = reference_conv.conv2d_direct(x, w, None, (1, 2), (1, 1), (2, 1), groups)
    np.testing.assert_allclose(y, direct, **tolerance(dtype))


def test_col2im_rejects_a_column_matrix_of_the_wrong_shape():
    with pytest.raises(OpError, match=r"col2im: expected col of shape .*\(27, 50\).*got col "
                                      r"\(27, 49\)"):
        KERNELS["col2im"](np.zeros((27, 49)), (2, 3, 5, 5), 3, 3, (1, 1), (1, 1), (1, 1))


# ---------------------------------------------------------------------------------------------
# Pooling over kernel sizes, strides, paddings, ceil mode and count_include_pad.

@st.composite
def pool_geometries(draw, padding=True):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = tuple(draw(st.integers(0, k // 2)) for k in kernel) if padding else (0, 0)
    size = tuple(draw(st.integers(max(1, k - 2 * p), 7)) for k, p in zip(kernel, pad))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + size
    window = pool_window("pool", shape, kernel, stride, pad, draw(st.booleans()))
    return shape, window, draw(st.sampled_from(DTYPES))


def distinct_values(shape, rng, dtype):
    """A permutation of distinct values 0.1 apart: no window holds a tie."""
    size = int(np.prod(shape))
    return ((rng.permutation(size) - size / 2) * 0.1).reshape(shape).astype(dtype)


@given(case=pool_geometries(), seed=st.integers(0, 99))
def test_max_pooling_equals_the_loops(case, seed):
    shape, g, dtype = case
    rng = np.random.default_rng(seed)
    x = distinct_values(shape, rng, dtype)
    args = (x, g.kernel_size, g.stride, g.padding, g.output_size)
    y, argmax = KERNELS["max_pool2d_forward"](*args)
    assert_same((y, argmax), reference.pool.max_pool2d_forward(*args), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_same(KERNELS["max_pool2d_backward"](gy, argmax, shape[2:]),
                reference.pool.max_pool2d_backward(gy, argmax, shape[2:]), dtype)


@given(case=pool_geometries(), count_include_pad=st.booleans(), seed=st.integers(0, 99))
def test_average_pooling_equals_the_loops(case, count_include_pad, seed):
    shape, g, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    window = (g.kernel_size, g.stride, g.padding)
    assert_same(KERNELS["avg_pool2d_forward"](x, *window, g.output_size, count_include_pad),
                reference.pool.avg_pool2d_forward(x, *window, g.output_size, count_include_pad),
                dtype)
    gy = rng.standard_normal(shape[:2] + g.output_size).astype(dtype)
    args = (gy, shape[2:], *window, count_include_pad)
    assert_same(KERNELS["avg_pool2d_backward"](*args),
                reference.pool.avg_pool2d_backward(*args), dtype)


@both_dtypes
@pytest.mark.parametrize("count_include_pad", [True, False], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("size, kernel, stride, padding", [
    ((4, 5), (3, 3), (2, 2), (0, 0)),   # last window: rows 2..4 of 0..3, no padding to count
    ((6, 4), (3, 3), (2, 2), (1, 1)),   # last window: rows 5..7 of the padded -1..6
], ids=["no_padding", "padding"])
def test_average_pooling_of_a_ceil_mode_window_past_the_padded_input(size, kernel, stride,
                                                                   padding, count_include_pad,
                                                                   dtype):
    """Ceil mode adds a last window that runs past the padded input; even count_include_pad
    counts only the part on the padded input (PyTorch's divisor). Random geometries reach this
    rarely, so these two always run, against the loops and against PyTorch."""
    shape = (2, 3, *size)
    g = pool_window("pool", shape, kernel, stride, padding, ceil_mode=True)
    assert any((n - 1) * s - p + k > h + p for n, s, p, k, h in
               zip(g.output_size, stride, padding, kernel, size))  # the case is what it says
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    window = (g.kernel_size, g.stride, g.padding)
    y = KERNELS["avg_pool2d_forward"](x, *window, g.output_size, count_include_pad)
    assert_same(y, reference.pool.avg_pool2d_forward(x, *window, g.output_size,
                                                     count_include_pad), dtype)
    t_x = torch.tensor(x, requires_grad=True)
    t_y = torch.nn.functional.avg_pool2d(t_x, kernel, stride, padding, ceil_mode=True,
                                         count_include_pad=count_include_pad)
    np.testing.assert_allclose(y, t_y.detach().numpy(), **tolerance(dtype))
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = KERNELS["avg_pool2d_backward"](gy, size, *window, count_include_pad)
    assert_same(gx, reference.pool.avg_pool2d_backward(gy, size, *window, count_include_pad),
                dtype)
    t_y.backward(torch.tensor(gy))
    np.testing.assert_allclose(gx, t_x.grad.numpy(), **tolerance(dtype))


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


@given(case=pool_geometries(padding=False), seed=st.integers(0, 99))
def test_stochastic_and_probability_weighted_pooling_equal_the_loops(case, seed):
    shape, g, dtype = case
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(shape), 0).astype(dtype)  # about half the values are 0
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
# Normalisation: LRN window sizes (odd, even, larger than C), batch norm over long channels.

@both_dtypes
@pytest.mark.parametrize("size, beta", [(1, 0.75), (4, 0.75), (5, 0.5), (9, 1.3)])
def test_lrn_equals_the_loops(size, beta, dtype):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 6, 7)).astype(dtype)
    forward = (x, size, 0.3, beta, 1.5)
    outputs = KERNELS["lrn_forward"](*forward)
    assert_same(outputs, reference.norm.lrn_forward(*forward), dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    backward = (gy, x, outputs[1], outputs[2], size, 0.3, beta)
    assert_same(KERNELS["lrn_backward"](*backward), reference.norm.lrn_backward(*backward),
                dtype)


@both_dtypes
@pytest.mark.parametrize("shape", [(8, 3, 1), (3, 2, 50), (1, 5, 7)])
def test_batch_norm_equals_the_loops(shape, dtype):
    """(3, 2, 50): 150 values per channel, several per thread before the block sum."""
    rng = np.random.default_rng(shape[2])
    x = (rng.standard_normal(shape) * 2 + 5).astype(dtype)  # a mean far from 0
    mean, var = KERNELS["batch_norm_statistics"](x)
    assert_same((mean, var), reference.norm.batch_norm_statistics(x), dtype)
    inv_std = (1 / np.sqrt(var + 1e-5)).astype(dtype)
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))
    assert_same(KERNELS["batch_norm_forward"](x, mean, inv_std, weight, bias),
                reference.norm.batch_norm_forward(x, mean, inv_std, weight, bias), dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    sums = KERNELS["batch_norm_grad_statistics"](gy, x, mean, inv_std)
    assert_same(sums, reference.norm.batch_norm_grad_statistics(gy, x, mean, inv_std), dtype)
    backward = (gy, x, mean, inv_std, weight, sums[1], sums[0])
    assert_same(KERNELS["batch_norm_backward"](*backward),
                reference.norm.batch_norm_backward(*backward), dtype)


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
            name, c_type = re.fullmatch(r"(\w+)<(\w+)>", expression).groups()
            assert on_cpu.function(name, c_type) is not None


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
# Last: between them, the tests above launched every kernel of every kernels/*.cu file.

def test_every_kernel_was_launched_by_the_tests_of_this_module(request, launched_here):
    """A kernel that no test launches is a kernel that no test checks. Runs only when the whole
    module ran (not for a -k selection or a single test), and last, after the others."""
    module_file = request.node.path
    selected = [item for item in request.session.items if item.path == module_file]
    defined = request.node.parent.collect()  # this module's tests, parametrised, unfiltered
    if len(selected) < len(defined) or selected[-1] is not request.node:
        pytest.skip("only a part of this module ran")
    expected = {e for topic in module.KERNEL_SOURCES for e in module.name_expressions(topic)}
    assert not expected - launched_here, f"never launched: {sorted(expected - launched_here)}"
