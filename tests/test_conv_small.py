"""conv2d by the direct 3x3 convolution (Conv2dSmall): equal to the direct loops of the reference
in values and gradients, serially and in parallel, the float64 gradient check, equal to PyTorch
in float32 on CIFAR ResNet-20's layers, ``small_conv_applies`` says yes exactly where it should,
and bad input gets messages that name the shapes.
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
from cnnlite.cpu import conv_small as kernels
from cnnlite.cpu import parallel as cpu_parallel
from cnnlite.functional import conv_small as conv_small_module
from cnnlite.functional.conv_small import Conv2dSmall, small_conv_applies
from cnnlite.reference.conv import conv2d_direct


def make_case(n, channels, out_channels, height, width, padding, dilation, bias=True, seed=0):
    """(arrays [x, w] or [x, w, b], padding, dilation) of a 3x3 stride-1 convolution."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, channels, height, width)),
              rng.standard_normal((out_channels, channels, 3, 3))]
    if bias:
        arrays.append(rng.standard_normal(out_channels))
    return arrays, padding, dilation


@st.composite
def small_conv_cases(draw, max_channels=4, max_side=9):
    """A 3x3 stride-1 convolution the Function takes: any dilation, padding up to 2*dilation,
    odd and even channel counts (output channels are paired in the weight gradient)."""
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2 * dh)), draw(st.integers(0, 2 * dw))
    height = draw(st.integers(max(1, 2 * dh + 1 - 2 * ph), max_side))
    width = draw(st.integers(max(1, 2 * dw + 1 - 2 * pw), max_side))
    return make_case(draw(st.integers(1, 3)), draw(st.integers(1, max_channels)),
                     draw(st.integers(1, max_channels)), height, width, (ph, pw), (dh, dw),
                     bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


# Every run sees a 1x1 output, a "same" layer with an odd number of output channels, uneven
# padding with dilation, a layer without padding or bias, and one of many input channels.
LANDMARKS = [make_case(1, 2, 3, 3, 3, (0, 0), (1, 1)),
             make_case(2, 3, 5, 6, 7, (1, 1), (1, 1)),
             make_case(3, 2, 3, 7, 8, (4, 1), (2, 1)),
             make_case(2, 4, 2, 8, 5, (0, 0), (1, 1), bias=False),
             make_case(1, 40, 3, 4, 5, (1, 1), (1, 1))]  # many channels in, few out


def with_landmarks(test):
    for case in LANDMARKS:
        test = example(case=case)(test)
    return test


def small_conv(padding, dilation):
    return lambda *inputs: Conv2dSmall(1, padding, dilation, 1)(*inputs)


def values_and_grads(function, arrays, dtype):
    """y and the gradients of sum(u * y) for a fixed random u, computed in ``dtype``."""
    tensors = [cl.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    y = function(*tensors)
    y.backward(np.random.default_rng(1).standard_normal(y.shape).astype(dtype))
    return [y.data] + [t.grad for t in tensors]


def reference_values_and_grads(arrays, padding, dilation):
    """The ground truth: the direct loop convolution for y, the reference loops for the
    gradients (conv2d under ``backend.use_reference()``)."""
    x, w, b = (arrays + [None])[:3]
    y = conv2d_direct(x, w, b, (1, 1), padding, dilation, 1)
    with backend.use_reference():
        _, *grads = values_and_grads(
            lambda *t: F.conv2d(*t, padding=padding, dilation=dilation), arrays, np.float64)
    return [y] + grads


# --- the Function -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["serial", "parallel", "two samples a task"])
@pytest.mark.parametrize("dtype, rtol, atol", [(np.float32, 2e-5, 2e-5),
                                               (np.float64, 1e-12, 1e-12)])
@with_landmarks
@given(case=small_conv_cases())
def test_conv_small_equals_the_direct_loops(case, dtype, rtol, atol, mode):
    """... also with two samples stacked on each task's grid (the last task has one sample when
    the batch is odd), which the batches here are too small to get by the rule."""
    arrays, padding, dilation = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_parallel, "SERIAL_BELOW", 2**62 if mode == "serial" else 0)
        if mode == "two samples a task":
            patch.setattr(kernels, "samples_per_task", lambda *shape_and_threads: 2)
        got = values_and_grads(small_conv(padding, dilation), arrays, dtype)
    expected = reference_values_and_grads(arrays, padding, dilation)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == dtype
        np.testing.assert_allclose(mine, theirs.astype(dtype), rtol=rtol, atol=atol)


@with_landmarks
@given(case=small_conv_cases(max_channels=3, max_side=6))
def test_conv_small_gradcheck(case):
    arrays, padding, dilation = case
    cl.gradcheck(small_conv(padding, dilation), [cl.tensor(a, requires_grad=True) for a in arrays])


RESNET20_LAYERS = [(16, 32), (32, 16), (64, 8)]  # (channels in = out, side): its three stages


@pytest.mark.parametrize("channels, side", RESNET20_LAYERS,
                         ids=[f"{c}x{s}x{s}" for c, s in RESNET20_LAYERS])
def test_the_resnet20_layers_match_pytorch_in_float32(channels, side):
    arrays, padding, dilation = make_case(4, channels, channels, side, side, (1, 1), (1, 1),
                                          seed=channels)
    arrays = [a.astype(np.float32) for a in arrays]
    got = values_and_grads(small_conv(padding, dilation), arrays, np.float32)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = torch.nn.functional.conv2d(*tensors, padding=1)
    y.backward(torch.tensor(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)))
    expected = [y.detach().numpy()] + [t.grad.numpy() for t in tensors]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == np.float32
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=2e-6 * np.abs(theirs).max())


def test_the_gradient_of_a_sum_is_right_although_it_arrives_as_a_broadcast_view():
    arrays, padding, dilation = LANDMARKS[2]
    mine = [cl.tensor(a, requires_grad=True) for a in arrays]
    small_conv(padding, dilation)(*mine).sum().backward()
    loops = [cl.tensor(a, requires_grad=True) for a in arrays]
    with backend.use_reference():
        F.conv2d(*loops, padding=padding, dilation=dilation).sum().backward()
    for got, expected in zip(mine, loops, strict=True):
        np.testing.assert_allclose(got.grad, expected.grad, rtol=1e-12, atol=1e-12)


def test_an_empty_batch_gives_empty_outputs_and_zero_weight_gradients():
    (x, w, b), padding, dilation = make_case(0, 3, 4, 5, 5, (1, 1), (1, 1))
    y, gx, gw, gb = values_and_grads(small_conv(padding, dilation), [x, w, b], np.float64)
    assert y.shape == (0, 4, 5, 5) and gx.shape == x.shape
    assert not gw.any() and not gb.any()


def test_small_planes_of_a_large_batch_are_stacked_and_stacking_changes_no_output_bit(
        monkeypatch):
    """Samples stack until a task's grid holds TASK_POSITIONS positions, keeping TASKS_PER_THREAD
    tasks a thread; every output is the same sum in the same order however many samples a task
    holds."""
    stack = kernels.samples_per_task
    assert stack(64, 10, 10, threads=2) == 8       # ResNet-20's 8x8 planes, batch 64, 2 cores
    assert stack(64, 10, 10, threads=16) == 1      # 16 threads: every sample a task of its own
    assert stack(64, 18, 18, threads=2) == 4       # 16x16: 324 positions, 4 make 1296
    assert stack(64, 34, 34, threads=2) == 1       # 32x32 planes are large enough
    assert stack(8, 9, 9, threads=1) == 2          # 8 // TASKS_PER_THREAD
    assert stack(8, 9, 9, threads=2) == 1          # 8 samples, 8 tasks
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((17, 5, 4, 3)), rng.standard_normal((6, 5, 3, 3))
    monkeypatch.setattr(kernels, "samples_per_task", lambda *shape_and_threads: 3)  # 5 x 3 + 2
    stacked = kernels.conv_small(x, w, None, (1, 1), (1, 1))
    monkeypatch.setattr(kernels, "samples_per_task", lambda *shape_and_threads: 1)
    np.testing.assert_array_equal(stacked, kernels.conv_small(x, w, None, (1, 1), (1, 1)))


def test_float32_input_with_float64_weights_computes_in_float64():
    (x, w, b), padding, dilation = LANDMARKS[1]
    tensors = [cl.tensor(x.astype(np.float32), requires_grad=True),
               cl.tensor(w, requires_grad=True), cl.tensor(b, requires_grad=True)]
    y = small_conv(padding, dilation)(*tensors)
    y.sum().backward()
    assert y.dtype == np.float64 and tensors[1].grad.dtype == np.float64
    expected = conv2d_direct(x.astype(np.float32).astype(np.float64), w, b, (1, 1), padding,
                             dilation, 1)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)


def test_an_in_place_change_of_x_after_the_forward_pass_is_detected():
    (x, w, b), padding, dilation = LANDMARKS[1]
    x, w = cl.tensor(x), cl.tensor(w, requires_grad=True)
    y = small_conv(padding, dilation)(x, w, cl.tensor(b))
    x += 1
    with pytest.raises(RuntimeError, match="Conv2dSmall: an array it saved"):
        y.sum().backward()


# --- where conv2d should take it ------------------------------------------------------------

@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((2, 16, 32, 32), (16, 16, 3, 3), dict(padding=1), True),
    ((2, 3, 32, 32), (16, 3, 3, 3), dict(padding=1), True),
    ((2, 32, 16, 16), (32, 32, 3, 3), dict(padding=1), True),
    ((2, 16, 16, 16), (16, 16, 3, 3), dict(padding=2, dilation=2), True),
    ((2, 16, 16, 16), (16, 16, 3, 3), dict(), True),
    ((2, 16, 32, 32), (16, 16, 3, 3), dict(stride=2, padding=1), False),
    ((2, 16, 32, 32), (16, 8, 3, 3), dict(groups=2, padding=1), False),
    ((2, 16, 32, 32), (16, 16, 5, 5), dict(padding=2), False),
    ((2, 16, 32, 32), (16, 16, 1, 1), dict(), False),
    ((2, 16, 32, 32), (16, 16, 3, 3), dict(padding=3), False),
    ((2, 16, 32, 32), (16, 16, 3, 3), dict(padding=(1, 3)), False),
    ((2, 16, 32, 32), (16, 8, 3, 3), dict(padding=1), False),
    ((2, 16, 2, 2), (16, 16, 3, 3), dict(), False),
    ((16, 32, 32), (16, 16, 3, 3), dict(padding=1), False),
], ids=["resnet20-stage1", "rgb-input", "resnet20-stage2", "dilated", "no-padding", "strided",
        "grouped", "5x5", "1x1", "padding-3", "padding-3-across", "channels-mismatch",
        "kernel-too-large", "3-d-input"])
def test_small_conv_applies_to_3x3_stride_1_layers(x_shape, w_shape, kwargs, expected):
    args = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **kwargs}
    assert small_conv_applies(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32),
                              **args) is expected


def test_small_conv_applies_up_to_the_channel_limit():
    most = conv_small_module.SMALL_CONV_MAX_CHANNELS

    def applies(channels, out_channels):
        return small_conv_applies(np.zeros((2, channels, 8, 8)),
                                  np.zeros((out_channels, channels, 3, 3)), 1, 1, 1, 1)

    assert applies(most, most) and applies(3, most) and applies(most, 1)
    assert applies(128, 32)  # DenseNet's 3x3 layers
    assert not applies(most + 1, most) and not applies(most, most + 1)
    assert not applies(most + 1, 1) and not applies(1, most + 1)


def test_small_conv_does_not_apply_where_another_algorithm_is_asked_for():
    x, w = np.zeros((2, 16, 32, 32)), np.zeros((16, 16, 3, 3))
    assert small_conv_applies(x, w, 1, 1, 1, 1)
    for algorithm in ("im2col", "winograd"):
        with backend.conv_algorithm(algorithm):
            assert not small_conv_applies(x, w, 1, 1, 1, 1)
    with backend.use_reference():  # the loops are the point there
        assert not small_conv_applies(x, w, 1, 1, 1, 1)


def test_small_conv_does_not_apply_without_the_kernel(monkeypatch):
    """What the GPU backend is like (it has no such kernel)."""
    monkeypatch.delitem(CPU_KERNELS, "conv_small")
    assert not small_conv_applies(np.zeros((2, 16, 32, 32)), np.zeros((16, 16, 3, 3)), 1, 1, 1, 1)


# --- bad input ------------------------------------------------------------------------------

def test_a_layer_it_does_not_take_is_refused_with_the_shapes():
    x = cl.tensor(np.zeros((1, 2, 8, 8)))
    w = cl.tensor(np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"Conv2dSmall: .*\(3, 2, 3, 3\).*stride=\(2, 2\)"):
        Conv2dSmall(2, 1, 1, 1)(x, w)
    with pytest.raises(ValueError, match=r"conv2d: .*\(1, 2, 8, 8\).*\(3, 3, 3, 3\)"):
        Conv2dSmall(1, 1, 1, 1)(x, cl.tensor(np.zeros((3, 3, 3, 3))))


@pytest.mark.parametrize("call, message", [
    (lambda: kernels.conv_small(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 5, 5)), None, (1, 1),
                                (1, 1)), r"expected w of shape \(O, 2, 3, 3\) .* \(3, 2, 5, 5\)"),
    (lambda: kernels.conv_small(np.zeros((1, 2, 5, 5)), np.zeros((3, 4, 3, 3)), None, (1, 1),
                                (1, 1)), r"expected w of shape \(O, 2, 3, 3\)"),
    (lambda: kernels.conv_small(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3), np.float32),
                                None, (1, 1), (1, 1)), r"w must have the dtype of x"),
    (lambda: kernels.conv_small(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3)), np.zeros(2),
                                (1, 1), (1, 1)), r"expected bias of shape \(3,\)"),
    (lambda: kernels.conv_small(np.zeros((1, 2, 2, 2)), np.zeros((3, 2, 3, 3)), None, (0, 0),
                                (1, 1)), r"does not fit x \(1, 2, 2, 2\)"),
    (lambda: kernels.conv_small_weight_grad(np.zeros((1, 2, 5, 5)), np.zeros((1, 3, 4, 5)),
                                            (1, 1), (1, 1)),
     r"expected gy of shape \(N, O, OH, OW\) = \(1, 3, 5, 5\)"),
], ids=["5x5-filter", "channels", "dtypes", "bias", "too-small", "gradient-shape"])
def test_the_kernels_refuse_inconsistent_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
