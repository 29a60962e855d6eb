"""conv2d by Winograd's F(2x2, 3x3): the matrices compute a 3x3 correlation, each kernel is what
its formula says and the backward kernels are the adjoints of the forward ones, the Function
passes the float64 gradient check and equals the direct convolution and PyTorch, conv2d picks
it exactly where it applies, and chunking the batch changes nothing.
"""
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend
from cnnlite import functional as F
from cnnlite.cpu import KERNELS as CPU_KERNELS
from cnnlite.cpu import parallel as cpu_parallel
from cnnlite.cpu import winograd as kernels
from cnnlite.functional import winograd as winograd_module
from cnnlite.functional.conv import Conv2d
from cnnlite.functional.conv_pointwise import Conv2dPointwise
from cnnlite.functional.conv_small import Conv2dSmall
from cnnlite.functional.winograd import Conv2dWinograd
from cnnlite.reference.conv import conv2d_direct
from helpers import assert_matches_torch


def make_case(n, channels, out_channels, height, width, padding, bias=True, seed=0):
    """Arrays [x, w] or [x, w, b] of a 3x3 stride-1 convolution and its padding."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, channels, height, width)),
              rng.standard_normal((out_channels, channels, 3, 3))]
    if bias:
        arrays.append(rng.standard_normal(out_channels))
    return arrays, padding


@st.composite
def winograd_cases(draw, max_channels=4, max_side=7):
    """A random 3x3 stride-1 convolution: odd and even outputs (partial tiles), any padding."""
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    height = draw(st.integers(max(1, 3 - 2 * ph), max_side))
    width = draw(st.integers(max(1, 3 - 2 * pw), max_side))
    return make_case(draw(st.integers(1, 3)), draw(st.integers(1, max_channels)),
                     draw(st.integers(1, max_channels)), height, width, padding,
                     bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


# Every run sees a 1x1 output (one partial tile), odd sizes with uneven padding, and an even one.
LANDMARKS = [make_case(1, 2, 3, 3, 3, 0), make_case(2, 3, 2, 5, 6, (2, 1)),
             make_case(2, 2, 2, 8, 8, 1, bias=False)]


def with_landmarks(test):
    for case in LANDMARKS:
        test = example(case=case)(test)
    return test


def winograd_conv(padding):
    def conv(*inputs):
        with backend.conv_algorithm("winograd"):
            y = F.conv2d(*inputs, padding=padding)
        assert isinstance(y.creator, Conv2dWinograd) or not y.requires_grad
        return y
    return conv


def values_and_grads(arrays, padding, dtype):
    tensors = [cl.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    y = winograd_conv(padding)(*tensors)
    y.backward(np.random.default_rng(1).standard_normal(y.shape).astype(dtype))
    return [y.data] + [t.grad for t in tensors]


def direct_values_and_grads(arrays, padding):
    """The reference: the direct loop convolution for y, the im2col loops for the gradients."""
    x, w, b = (arrays + [None])[:3]
    pair = padding if isinstance(padding, tuple) else (padding, padding)
    y = conv2d_direct(x, w, b, (1, 1), pair, (1, 1), 1)
    tensors = [cl.tensor(a, requires_grad=True) for a in arrays]
    with backend.use_reference():
        out = F.conv2d(*tensors, padding=padding)
        out.backward(np.random.default_rng(1).standard_normal(out.shape))
    return [y] + [t.grad for t in tensors]


# --- the algorithm ----------------------------------------------------------------------------

def correlate_3x3(d, g):
    return np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])


@given(seed=st.integers(0, 2**32 - 1))
def test_the_matrices_compute_a_3x3_correlation_of_a_4x4_patch(seed):
    rng = np.random.default_rng(seed)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    BT, G, AT = kernels.BT, kernels.G, kernels.AT
    y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
    np.testing.assert_allclose(y, correlate_3x3(d, g), rtol=1e-12, atol=1e-12)


def test_the_kernels_transform_one_tile_as_the_matrices_do():
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((1, 1, 3, 3))
    BT, G, AT = kernels.BT, kernels.G, kernels.AT
    np.testing.assert_allclose(kernels.input_transform(d, (0, 0))[:, 0, 0].reshape(4, 4),
                               BT @ d[0, 0] @ BT.T, rtol=1e-14)
    np.testing.assert_allclose(kernels.filter_transform(g)[:, 0, 0].reshape(4, 4),
                               G @ g[0, 0] @ G.T, rtol=1e-14)
    m = rng.standard_normal((16, 1, 1))
    y = kernels.output_transform(m, np.zeros(1), np.empty((1, 1, 2, 2)))
    np.testing.assert_allclose(y[0, 0], AT @ m.reshape(4, 4) @ AT.T, rtol=1e-14)


def inner(a, b):
    return float(np.vdot(np.asarray(a), np.asarray(b)))


@pytest.mark.parametrize("mode", ["serial", "parallel"])
@given(case=winograd_cases())
def test_each_backward_kernel_is_the_adjoint_of_its_forward_kernel(case, mode):
    """<T(a), b> == <a, T^T(b)> for the input, output and filter transforms."""
    (x, w, *_), padding = case
    pair = padding if isinstance(padding, tuple) else (padding, padding)
    rng = np.random.default_rng(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_parallel, "SERIAL_BELOW", {"serial": 2**62, "parallel": 0}[mode])
        V = kernels.input_transform(x, pair)
        dV = rng.standard_normal(V.shape)
        gx = kernels.input_transform_grad(dV, np.empty_like(x), pair)
        assert inner(V, dV) == pytest.approx(inner(x, gx))
        out_shape = (x.shape[0], w.shape[0], x.shape[2] + 2 * pair[0] - 2,
                     x.shape[3] + 2 * pair[1] - 2)
        M = rng.standard_normal((16, w.shape[0], V.shape[2]))
        gy = rng.standard_normal(out_shape)
        y = kernels.output_transform(M, np.zeros(w.shape[0]), np.empty(out_shape))
        assert inner(y, gy) == pytest.approx(inner(M, kernels.output_transform_grad(gy)))
    U = kernels.filter_transform(w)
    dU = rng.standard_normal(U.shape)
    assert inner(U, dU) == pytest.approx(inner(w, kernels.filter_transform_grad(dU)))


# --- the Function -----------------------------------------------------------------------------

@with_landmarks
@given(case=winograd_cases())
def test_winograd_conv2d_gradcheck(case):
    arrays, padding = case
    cl.gradcheck(winograd_conv(padding), [cl.tensor(a, requires_grad=True) for a in arrays])


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float32, 2e-5, 2e-5),
                                               (np.float64, 1e-12, 1e-12)])
@with_landmarks
@given(case=winograd_cases())
def test_winograd_equals_the_direct_convolution(case, dtype, rtol, atol):
    arrays, padding = case
    got = values_and_grads(arrays, padding, dtype)
    expected = direct_values_and_grads(arrays, padding)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == dtype
        np.testing.assert_allclose(mine, theirs.astype(dtype), rtol=rtol, atol=atol)


@with_landmarks
@given(case=winograd_cases())
def test_winograd_matches_pytorch(case):
    arrays, padding = case
    assert_matches_torch(winograd_conv(padding),
                         lambda *t: torch.nn.functional.conv2d(*t, padding=padding), arrays,
                         rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("samples_per_chunk", [1, 2])
@given(case=winograd_cases())
def test_chunked_equals_unchunked(case, samples_per_chunk):
    (x, *others), padding = case
    arrays = [np.concatenate([x] * 3), *others]  # 3 to 9 samples: uneven chunks too
    whole = values_and_grads(arrays, padding, np.float64)
    tiles = np.prod(kernels.tiles(*whole[0].shape[2:]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd_module, "WINOGRAD_CHUNK_BYTES",
                      samples_per_chunk * 16 * x.shape[1] * tiles * 8)
        samples_seen = []
        real_input_transform = CPU_KERNELS["winograd_input"]

        def counting_input_transform(x, *args):
            samples_seen.append(len(x))
            return real_input_transform(x, *args)

        patch.setitem(CPU_KERNELS, "winograd_input", counting_input_transform)
        chunked = values_and_grads(arrays, padding, np.float64)
    assert max(samples_seen) == samples_per_chunk
    for mine, theirs in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_a_second_backward_pass_gives_the_same_gradients():
    arrays, padding = LANDMARKS[1]
    tensors = [cl.tensor(a, requires_grad=True) for a in arrays]
    loss = (winograd_conv(padding)(*tensors) ** 2).sum()
    loss.backward(retain_graph=True)
    first = [t.grad.copy() for t in tensors]
    for t in tensors:
        t.grad = None
    loss.backward()
    for again, once in zip((t.grad for t in tensors), first):
        np.testing.assert_allclose(again, once, rtol=1e-13)


def test_the_gradient_of_a_sum_is_right_although_it_arrives_as_a_broadcast_view():
    arrays, padding = LANDMARKS[1]
    grads = []
    for algorithm in ("winograd", "im2col"):
        tensors = [cl.tensor(a, requires_grad=True) for a in arrays]
        with backend.conv_algorithm(algorithm):
            F.conv2d(*tensors, padding=padding).sum().backward()
        grads.append([t.grad for t in tensors])
    for mine, theirs in zip(*grads):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_a_64_channel_layer_in_two_chunks_equals_float64_im2col_in_float32():
    """Rounding stays at float32's level, chunks join up."""
    arrays, padding = make_case(6, 64, 64, 14, 14, 1, seed=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd_module, "WINOGRAD_CHUNK_BYTES", 3 * 16 * 64 * 49 * 4)
        got = values_and_grads(arrays, padding, np.float32)
    with backend.conv_algorithm("im2col"):
        tensors = [cl.tensor(a, requires_grad=True) for a in arrays]
        y = F.conv2d(*tensors, padding=padding)
        y.backward(np.random.default_rng(1).standard_normal(y.shape))
    for mine, theirs in zip(got, [y.data] + [t.grad for t in tensors], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=2e-6 * np.abs(theirs).max())


@pytest.mark.parametrize("x_dtype", [np.float64, np.float32], ids=["same", "mixed"])
def test_an_in_place_change_of_x_after_the_forward_pass_is_detected(x_dtype):
    """Also when x is float32 among float64 weights, so that it is converted for computing."""
    (x, w, b), padding = LANDMARKS[1]
    x = cl.tensor(x.astype(x_dtype))
    w, b = cl.tensor(w, requires_grad=True), cl.tensor(b, requires_grad=True)
    y = winograd_conv(padding)(x, w, b)
    x += 1
    with pytest.raises(RuntimeError, match="Conv2dWinograd: an array it saved"):
        y.sum().backward()


def test_float32_stays_float32():
    x = cl.tensor(np.ones((4, 64, 12, 12), np.float32), requires_grad=True)
    w = cl.tensor(np.ones((64, 64, 3, 3), np.float32), requires_grad=True)
    y = winograd_conv(1)(x, w)
    y.sum().backward()
    assert isinstance(y.creator, Conv2dWinograd)
    assert y.dtype == x.grad.dtype == w.grad.dtype == np.float32


# --- which algorithm conv2d picks -------------------------------------------------------------

def creator_of(x_shape, w_shape, **kwargs):
    x = cl.tensor(np.zeros(x_shape), requires_grad=True)
    w = cl.tensor(np.zeros(w_shape), requires_grad=True)
    return type(F.conv2d(x, w, **kwargs).creator)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((4, 256, 28, 28), (256, 256, 3, 3), dict(padding=1), Conv2dWinograd),
    ((2, 160, 30, 30), (192, 160, 3, 3), dict(), Conv2dWinograd),
    ((32, 256, 8, 8), (256, 256, 3, 3), dict(padding=1), Conv2dWinograd),
    ((1, 256, 12, 12), (256, 256, 3, 3), dict(padding=1), Conv2d),
    ((4, 512, 14, 14), (512, 512, 3, 3), dict(padding=1), Conv2d),
    ((1, 256, 12, 12), (256, 256, 3, 3), dict(stride=2, padding=1), Conv2d),
    ((1, 256, 12, 12), (256, 256, 3, 3), dict(dilation=2, padding=2), Conv2d),
    ((1, 32, 12, 12), (32, 16, 3, 3), dict(groups=2, padding=1), Conv2d),
    ((1, 32, 12, 12), (32, 32, 5, 5), dict(padding=2), Conv2d),
    ((1, 32, 12, 12), (32, 32, 1, 1), dict(), Conv2dPointwise),
    ((1, 64, 12, 12), (64, 64, 3, 3), dict(padding=1), Conv2dSmall),  # up to 128 channels
    ((1, 16, 12, 12), (256, 16, 3, 3), dict(padding=1), Conv2d),
    ((8, 256, 9, 9), (256, 256, 3, 3), dict(), Conv2d),
    ((16, 256, 12, 7), (256, 256, 3, 3), dict(padding=1), Conv2d),
], ids=["3x3", "3x3-no-padding", "8x8-output-large-batch", "too-few-tiles",
        "too-few-tiles-for-512-channels", "strided", "dilated", "grouped", "5x5", "1x1",
        "at-most-128-channels", "few-input-channels", "7x7-output", "12x7-output"])
def test_conv2d_takes_winograd_exactly_where_it_applies(x_shape, w_shape, kwargs, expected):
    assert creator_of(x_shape, w_shape, **kwargs) is expected


def test_the_algorithm_can_be_chosen():
    shapes = ((1, 2, 6, 6), (2, 2, 3, 3))
    assert creator_of(*shapes) is not Conv2dWinograd  # too few channels for "auto"
    with backend.conv_algorithm("winograd"):
        assert creator_of(*shapes) is Conv2dWinograd
        assert creator_of(*shapes, stride=2) is Conv2d  # Winograd cannot do it
    large = ((4, 256, 30, 30), (256, 256, 3, 3))
    assert creator_of(*large) is Conv2dWinograd
    with backend.conv_algorithm("im2col"):
        assert creator_of(*large) is Conv2d
    with backend.use_reference():  # the reference loops are im2col's
        assert creator_of(*large) is Conv2d
    with pytest.raises(ValueError, match="conv_algorithm.*'fft'"):
        with backend.conv_algorithm("fft"):
            pass


def test_bad_input_gets_the_message_of_conv2d():
    x = cl.tensor(np.zeros((1, 3, 8, 8)))
    w = cl.tensor(np.zeros((4, 2, 3, 3)))
    with backend.conv_algorithm("winograd"):
        with pytest.raises(ValueError, match=r"conv2d: .*\(1, 3, 8, 8\).*\(4, 2, 3, 3\)"):
            F.conv2d(x, w)


# --- the checks above catch real bugs -------------------------------------------------------

def test_gradcheck_catches_an_input_gradient_that_overwrites_the_tile_overlap(monkeypatch):
    B = kernels.BT.T

    def tiles_written_not_added(dV, gx, padding):
        """dL/dx with each tile's B dV B^T written over its neighbours' instead of added."""
        N, C, H, W = gx.shape
        (ph, pw), (TH, TW) = padding, kernels.tiles(H + 2 * padding[0] - 2,
                                                    W + 2 * padding[1] - 2)
        gx_pad = np.zeros((N, C, 2 * TH + 2, 2 * TW + 2))
        for n in range(N):
            for c in range(C):
                for th in range(TH):
                    for tw in range(TW):
                        dv = dV[:, c, (n * TH + th) * TW + tw].reshape(4, 4)
                        gx_pad[n, c, 2 * th:2 * th + 4, 2 * tw:2 * tw + 4] = B @ dv @ B.T
        gx[...] = gx_pad[:, :, ph:ph + H, pw:pw + W]
        return gx

    monkeypatch.setitem(CPU_KERNELS, "winograd_input_grad", tiles_written_not_added)
    arrays, padding = LANDMARKS[1]
    with pytest.raises(cl.GradcheckError, match="input 0"):
        cl.gradcheck(winograd_conv(padding), [cl.tensor(a, requires_grad=True) for a in arrays])


def test_gradcheck_catches_a_filter_gradient_with_a_wrong_matrix(monkeypatch):
    wrong_G = kernels.G.copy()
    wrong_G[1, 2] = -0.5
    real = kernels.filter_transform_grad

    def filter_grad_with_wrong_G(dU):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(kernels, "G", wrong_G)
            return real(dU)

    monkeypatch.setitem(CPU_KERNELS, "winograd_filter_grad", filter_grad_with_wrong_G)
    arrays, padding = LANDMARKS[1]
    with pytest.raises(cl.GradcheckError, match="input 1"):
        cl.gradcheck(winograd_conv(padding), [cl.tensor(a, requires_grad=True) for a in arrays])
