"""conv2d and linear: what is special about them. The generic checks (values against the NumPy
formula, float64 gradients by central differences, float32 and non-contiguous gradients and
PyTorch parity, with and without a bias, over drawn strides, paddings, dilations and groups,
depthwise included, on the im2col loops, numba, the CUDA kernels through the host harness, the
GPU and the direct loop convolution) live in the op table (``cnnlite/optable/table_conv.py``,
run by tests/test_optable.py).

Here: im2col and col2im (serial and parallel numba kernels against the loops, col2im the
adjoint of im2col), chunking the batch, only the gradients asked for, a second backward pass,
dtypes, bad input, and the table's checks catching planted bugs. Shapes and hyper-parameters
are drawn by hypothesis; values come from a seeded generator.
"""
import contextlib

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend, optable
from cnnlite import functional as F
from cnnlite.cpu import KERNELS as CPU_KERNELS
from cnnlite.cpu import im2col as fast_kernels
from cnnlite.cpu import parallel as cpu_parallel
from cnnlite.functional import conv as conv_module
from cnnlite.optable import checks
from cnnlite.reference import conv as reference
from helpers import torch_grads


def as_pair(value):
    return value if isinstance(value, tuple) else (value, value)


def make_case(n, channels, out_channels, sides, kernel, bias=True, seed=0, stride=1, padding=0,
              dilation=1, groups=1):
    """Arrays [x, w] or [x, w, b] of a convolution and its keyword arguments."""
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, channels, *sides)),
              rng.standard_normal((out_channels, channels // groups, *kernel))]
    if bias:
        arrays.append(rng.standard_normal(out_channels))
    return arrays, kwargs


@st.composite
def conv_cases(draw, max_channels=4, max_side=7):
    """A random valid convolution, as ``make_case`` returns it."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "dense":
        groups, channels = 1, draw(st.integers(1, max_channels))
    elif kind == "grouped":
        groups = 2
        channels = 2 * draw(st.integers(1, max_channels // 2))
    else:
        channels = draw(st.integers(1, max_channels))
        groups = channels
    out_channels = groups * draw(st.integers(1, 2 if groups > 1 else 3))
    kernel = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    dilation = draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2))))
    # The kernel (dilation included) must fit inside the padded input.
    sides = [draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), max_side))
             for k, p, d in zip(kernel, as_pair(padding), as_pair(dilation))]
    return make_case(draw(st.integers(1, 2)), channels, out_channels, sides, kernel,
                     bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
                     stride=stride, padding=padding, dilation=dilation, groups=groups)


# Cases every run sees, whatever hypothesis draws: a strided, padded, dilated 3x3 convolution of
# a 7x7 input, a depthwise one with two filters per channel, and a 1x1 convolution.
LANDMARKS = [
    make_case(2, 3, 4, (7, 7), (3, 3), stride=2, padding=1, dilation=2),
    make_case(2, 4, 8, (6, 5), (3, 2), groups=4, padding=(1, 0), stride=(1, 2)),
    make_case(2, 4, 3, (5, 5), (1, 1), bias=False),
]


def with_landmarks(test):
    for case in LANDMARKS:
        test = example(case=case)(test)
    return test


@contextlib.contextmanager
def numba_kernels(mode):
    """Run the numba kernels serially or in parallel, whatever the input size."""
    threshold = {"serial": 2**62, "parallel": 0}[mode]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_parallel, "SERIAL_BELOW", threshold)
        yield


def torch_conv_of(kwargs):
    return lambda *inputs: torch.nn.functional.conv2d(*inputs, **kwargs)


def values_and_grads(arrays, kwargs, dtype):
    """conv2d's output and the gradients of every input for a fixed random upstream gradient,
    by im2col (the Function that chunks), whatever the layer."""
    tensors = [cl.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    with backend.conv_algorithm("im2col"):
        y = F.conv2d(*tensors, **kwargs)
    upstream = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    y.backward(upstream)
    return [y.data] + [t.grad for t in tensors]


def assert_all_close(got, expected, rtol, atol):
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == theirs.dtype
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol)


# --- the gradients asked for -----------------------------------------------------------------

@given(case=conv_cases())
def test_only_the_gradients_asked_for_are_computed(case):
    arrays, kwargs = case
    x, w = cl.tensor(arrays[0]), cl.tensor(arrays[1], requires_grad=True)
    y = F.conv2d(x, w, *[cl.tensor(a) for a in arrays[2:]], **kwargs)
    upstream = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(upstream)
    theirs = torch_grads(torch_conv_of(kwargs), arrays, upstream)
    assert x.grad is None
    np.testing.assert_allclose(w.grad, theirs[1], rtol=1e-6, atol=1e-10)


# --- im2col and col2im ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["serial", "parallel"])
@given(case=conv_cases(), dtype=st.sampled_from([np.float32, np.float64]))
def test_im2col_and_col2im_kernels_equal_the_loops(case, dtype, mode):
    """Serial and parallel: the table's small inputs run the numba kernels serially only."""
    arrays, kwargs = case
    x = arrays[0].astype(dtype)
    kh, kw = arrays[1].shape[2:]
    args = [as_pair(kwargs[name]) for name in ("stride", "padding", "dilation")]
    col = reference.im2col(x, kh, kw, *args)
    upstream = np.random.default_rng(3).standard_normal(col.shape).astype(dtype)
    with numba_kernels(mode):
        fast_col = fast_kernels.im2col(x, kh, kw, *args)
        fast_x = fast_kernels.col2im(upstream, x.shape, kh, kw, *args)
    np.testing.assert_array_equal(fast_col, col)
    np.testing.assert_allclose(fast_x, reference.col2im(upstream, x.shape, kh, kw, *args),
                               rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-6)


@pytest.mark.parametrize("kernels, mode", [(fast_kernels, "serial"), (fast_kernels, "parallel"),
                                           (reference, "serial")],
                         ids=["numba serial", "numba parallel", "reference"])
@given(case=conv_cases())
def test_col2im_is_the_adjoint_of_im2col(kernels, mode, case):
    """<im2col(x), c> == <x, col2im(c)> for all x and c: col2im is im2col transposed."""
    arrays, kwargs = case
    x = arrays[0]
    kh, kw = arrays[1].shape[2:]
    args = [as_pair(kwargs[name]) for name in ("stride", "padding", "dilation")]
    c = np.random.default_rng(4).standard_normal(reference.im2col(x, kh, kw, *args).shape)
    with numba_kernels(mode):
        col = kernels.im2col(x, kh, kw, *args)
        x_back = kernels.col2im(c, x.shape, kh, kw, *args)
    np.testing.assert_allclose(np.vdot(col, c), np.vdot(x, x_back), rtol=1e-12)


# --- chunks of the batch ---------------------------------------------------------------------

@pytest.mark.parametrize("samples_per_chunk", [1, 2])
@with_landmarks
@given(case=conv_cases())
def test_chunked_equals_unchunked(case, samples_per_chunk):
    arrays, kwargs = case
    x, *others = arrays
    arrays = [np.concatenate([x] * 3), *others]  # 3 to 6 samples: uneven chunks too
    whole = values_and_grads(arrays, kwargs, np.float64)
    _, channels, _, _ = arrays[0].shape
    _, _, kh, kw = arrays[1].shape
    _, _, out_h, out_w = whole[0].shape
    col_bytes_per_sample = channels * kh * kw * out_h * out_w * 8
    with pytest.MonkeyPatch.context() as patch:  # undone after every example
        patch.setattr(conv_module, "IM2COL_BUDGET_BYTES", samples_per_chunk * col_bytes_per_sample)
        samples_seen = []
        real_im2col = backend.kernel("im2col", arrays[0])

        def counting_im2col(x, *args):
            samples_seen.append(len(x))
            return real_im2col(x, *args)

        patch.setitem(CPU_KERNELS, "im2col", counting_im2col)
        chunked = values_and_grads(arrays, kwargs, np.float64)
    assert max(samples_seen) == samples_per_chunk
    assert_all_close(chunked, whole, rtol=1e-12, atol=1e-12)


@contextlib.contextmanager
def recorded_column_kernels(samples_per_chunk, x, w, kwargs):
    """A budget of ``samples_per_chunk`` samples of col, and the CPU im2col and col2im recording
    what they make and get: yields {"col": [cols made], "gcol": [dL/dcols received]}."""
    out_h, out_w = F.conv2d(cl.tensor(x[:1]), cl.tensor(w), **kwargs).shape[2:]
    col_bytes_per_sample = x.shape[1] * w.shape[2] * w.shape[3] * out_h * out_w * x.itemsize
    real_im2col, real_col2im = CPU_KERNELS["im2col"], CPU_KERNELS["col2im"]
    seen = {"col": [], "gcol": []}

    def recording_im2col(*args):
        seen["col"].append(real_im2col(*args))
        return seen["col"][-1]

    def recording_col2im(gcol, *args):
        seen["gcol"].append(gcol)
        return real_col2im(gcol, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_module, "IM2COL_BUDGET_BYTES", samples_per_chunk * col_bytes_per_sample)
        patch.setitem(CPU_KERNELS, "im2col", recording_im2col)
        patch.setitem(CPU_KERNELS, "col2im", recording_col2im)
        yield seen


@pytest.mark.parametrize("samples_per_chunk, cols_in_backward", [(6, 0), (2, 3)],
                         ids=["one chunk: col kept", "three chunks: col built again"])
def test_col_is_kept_for_one_chunk_and_dcol_is_written_over_it(samples_per_chunk,
                                                               cols_in_backward):
    (x, w, b), kwargs = LANDMARKS[0]
    x = np.concatenate([x] * 3)  # 6 samples
    tensors = [cl.tensor(a, requires_grad=True) for a in (x, w, b)]
    with recorded_column_kernels(samples_per_chunk, x, w, kwargs) as seen:
        y = F.conv2d(*tensors, **kwargs)
        cols_in_forward = len(seen["col"])
        y.backward(np.ones(y.shape))
    assert cols_in_forward == 6 // samples_per_chunk
    assert len(seen["col"]) - cols_in_forward == cols_in_backward
    backward_cols = seen["col"][-1:] if cols_in_backward == 0 else seen["col"][cols_in_forward:]
    assert len(seen["gcol"]) == len(backward_cols)
    for col, gcol in zip(backward_cols, seen["gcol"]):
        assert np.shares_memory(col, gcol)


def test_no_col_is_built_for_the_input_gradient_alone():
    (x, w, b), kwargs = LANDMARKS[0]
    x = np.concatenate([x] * 3)
    tensors = [cl.tensor(x, requires_grad=True), cl.tensor(w), cl.tensor(b)]
    with recorded_column_kernels(2, x, w, kwargs) as seen:
        y = F.conv2d(*tensors, **kwargs)
        cols_in_forward = len(seen["col"])
        y.backward(np.ones(y.shape))
    assert len(seen["col"]) == cols_in_forward and len(seen["gcol"]) == 3


# --- dtypes, a second backward pass ----------------------------------------------------------

def test_linear_keeps_float32():
    x = cl.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    w = cl.tensor(np.ones((4, 3), np.float32), requires_grad=True)
    y = F.linear(x, w, cl.tensor(np.zeros(4, np.float32)))
    y.sum().backward()
    assert y.dtype == x.grad.dtype == w.grad.dtype == np.float32


@pytest.mark.parametrize("budget", [conv_module.IM2COL_BUDGET_BYTES, 1],
                         ids=["col kept from forward", "col recomputed per sample"])
def test_a_second_backward_pass_gives_the_same_gradients(budget, monkeypatch):
    """The backward pass writes dL/dcol over col: a retained graph must still be right."""
    monkeypatch.setattr(conv_module, "IM2COL_BUDGET_BYTES", budget)
    arrays, kwargs = LANDMARKS[0]
    tensors = [cl.tensor(a, requires_grad=True) for a in arrays]
    y = F.conv2d(*tensors, **kwargs)
    upstream = np.random.default_rng(6).standard_normal(y.shape)
    y.backward(upstream, retain_graph=True)
    first = [t.grad.copy() for t in tensors]
    y.backward(upstream)
    for t, g in zip(tensors, first):
        np.testing.assert_allclose(t.grad, 2 * g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("single", [0, 1, 2], ids=["x", "w", "b"])
def test_conv2d_with_one_float32_input_among_float64_ones(single):
    """Mixed dtypes follow NumPy's promotion; each gradient comes back in its input's dtype."""
    arrays, kwargs = LANDMARKS[0]
    arrays = [a.astype(np.float32) if i == single else a for i, a in enumerate(arrays)]
    tensors = [cl.tensor(a, requires_grad=True) for a in arrays]
    y = F.conv2d(*tensors, **kwargs)
    upstream = np.random.default_rng(7).standard_normal(y.shape)
    y.backward(upstream)
    expected = torch_grads(torch_conv_of(kwargs), [a.astype(np.float64) for a in arrays],
                           upstream)
    assert y.dtype == np.float64
    for t, theirs in zip(tensors, expected):
        assert t.grad.dtype == t.dtype
        np.testing.assert_allclose(t.grad, theirs, rtol=1e-5, atol=1e-5)


def test_conv2d_keeps_float32():
    x = cl.tensor(np.ones((1, 2, 5, 5), np.float32), requires_grad=True)
    w = cl.tensor(np.ones((3, 2, 3, 3), np.float32), requires_grad=True)
    b = cl.tensor(np.zeros(3, np.float32), requires_grad=True)
    y = F.conv2d(x, w, b, padding=1)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    assert y.shape == (1, 3, 5, 5)


# --- bad input --------------------------------------------------------------------------------

BAD_CONV = [
    ((3, 8, 8), (4, 3, 3, 3), None, {}, "(N, C, H, W)"),
    ((2, 3, 8, 8), (4, 3, 3), None, {}, "(O, C/groups, kh, kw)"),
    ((8, 1, 28, 28), (64, 3, 3, 3), None, {}, "C=3 = w.shape[1]*groups"),
    ((2, 3, 8, 8), (4, 1, 3, 3), None, {"groups": 2}, "divide both"),
    ((2, 4, 8, 8), (3, 2, 3, 3), None, {"groups": 2}, "divide both"),
    ((1, 1, 2, 2), (1, 1, 5, 5), None, {"padding": 1}, "kernel spans 5 pixels in height"),
    ((1, 1, 5, 9), (1, 1, 3, 3), None, {"dilation": (1, 5)}, "kernel spans 11 pixels in width"),
    ((1, 0, 5, 5), (1, 0, 3, 3), None, {}, "every size but the batch size N must be >= 1"),
    ((1, 1, 5, 5), (1, 1, 0, 0), None, {}, "every size but the batch size N must be >= 1"),
    ((1, 1, 5, 5), (4, 1, 3, 3), (3,), {}, "bias of shape (4,)"),
    ((1, 1, 5, 5), (4, 1, 3, 3), (4, 1), {}, "got bias (4, 1)"),
]


@pytest.mark.parametrize("x_shape, w_shape, b_shape, kwargs, fragment", BAD_CONV)
def test_conv2d_refuses_bad_input(x_shape, w_shape, b_shape, kwargs, fragment):
    inputs = [cl.tensor(np.ones(x_shape)), cl.tensor(np.ones(w_shape))]
    if b_shape is not None:
        inputs.append(cl.tensor(np.ones(b_shape)))
    with pytest.raises(cl.OpError) as error:
        F.conv2d(*inputs, **kwargs)
    message = str(error.value)
    assert message.startswith("conv2d: ")
    assert f"x {x_shape}" in message and f"w {w_shape}" in message
    assert fragment in message


@pytest.mark.parametrize("kwargs, fragment", [
    ({"groups": 0}, "groups must be >= 1, got 0"),
    ({"groups": 1.5}, "groups must be an int"),
    ({"stride": 0}, "stride[0] must be >= 1, got 0"),
    ({"stride": (1, -2)}, "stride[1] must be >= 1, got -2"),
    ({"dilation": 0}, "dilation[0] must be >= 1, got 0"),
    ({"padding": -1}, "padding[0] must be >= 0, got -1"),
    ({"stride": (1, 2, 3)}, "pair of ints"),
    ({"padding": 1.5}, "pair of ints"),
])
def test_conv2d_refuses_bad_arguments_by_name(kwargs, fragment):
    """The words of cnnlite.validate, shared with nn.Conv2d (tests/test_bad_input_ops.py)."""
    with pytest.raises(cl.OpError) as error:
        F.conv2d(cl.tensor(np.ones((2, 4, 8, 8))), cl.tensor(np.ones((4, 4, 3, 3))), **kwargs)
    assert str(error.value).startswith("conv2d: ") and fragment in str(error.value)


@pytest.mark.parametrize("x_shape, w_shape, b_shape, fragment", [
    ((2, 3), (4, 5), None, "the same in"),
    ((), (4, 5), None, "the same in"),
    ((2, 5), (5,), None, "the same in"),
    ((2, 5), (4, 5), (5,), "bias of shape (4,)"),
])
def test_linear_refuses_bad_input(x_shape, w_shape, b_shape, fragment):
    inputs = [cl.tensor(np.ones(x_shape)), cl.tensor(np.ones(w_shape))]
    if b_shape is not None:
        inputs.append(cl.tensor(np.ones(b_shape)))
    with pytest.raises(cl.OpError) as error:
        F.linear(*inputs)
    message = str(error.value)
    assert message.startswith("linear: ")
    assert f"w {w_shape}" in message and fragment in message


# --- the table's checks catch planted bugs ---------------------------------------------------

def test_the_table_catches_a_col2im_with_a_wrong_index(monkeypatch):
    real_col2im = backend.kernel("col2im", np.ones(1))

    def col2im_one_pixel_off(col, x_shape, *args):
        return np.roll(real_col2im(col, x_shape, *args), 1, axis=-1)

    monkeypatch.setitem(CPU_KERNELS, "col2im", col2im_one_pixel_off)
    with backend.conv_algorithm("im2col"):  # the first example is a small 3x3 layer
        result = optable.run_check(optable.spec("conv2d"), "gradient", "numba")
    assert result.status == checks.WRONG_GRADIENT and "input 0" in result.detail, str(result)


def test_the_table_catches_a_missing_bias_gradient(monkeypatch):
    real_backward = conv_module.Conv2d.backward

    def backward_without_bias(self, gy):
        gx, gw, _ = real_backward(self, gy)
        return gx, gw, None

    monkeypatch.setattr(conv_module.Conv2d, "backward", backward_without_bias)
    with backend.conv_algorithm("im2col"):  # the first example is a small 3x3 layer
        result = optable.run_check(optable.spec("conv2d"), "gradient", "numba")
    assert result.status == checks.WRONG_GRADIENT and "input 2" in result.detail, str(result)
