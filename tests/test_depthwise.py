"""Depthwise convolution (groups == C == O) by the numba kernels of ``cnnlite.cpu.depthwise``:
each kernel equals the reference loops for any kernel size, stride, padding and dilation, run
serially or in parallel and with any number of planes per task, the backward kernels are the
adjoints of the forward one, the Function passes the float64 gradient check, equals the
reference loops and PyTorch, and ``depthwise_applies`` says yes exactly to depthwise layers on
the numba backend.
"""
import contextlib

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend
from cnnlite import functional as F
from cnnlite.cpu import depthwise as kernels
from cnnlite.cpu import parallel as cpu_parallel
from cnnlite.errors import OpError
from cnnlite.functional.depthwise import Conv2dDepthwise, depthwise_applies
from cnnlite.reference.conv import conv2d_direct
from helpers import random_upstream


def make_case(n, channels, height, width, kernel_size, stride, padding, dilation, bias=True,
              seed=0):
    """(arrays [x, w] or [x, w, b], (stride, padding, dilation) as pairs) of a depthwise layer."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, channels, height, width)),
              rng.standard_normal((channels, 1, *kernel_size))]
    if bias:
        arrays.append(rng.standard_normal(channels))
    return arrays, (stride, padding, dilation)


@st.composite
def depthwise_cases(draw, max_side=8):
    """A random depthwise layer: kernels 1..3, strides 1..3, padding 0..2 and dilation 1..2 on
    each axis, odd and even sizes from the smallest the kernel fits."""
    pairs = [draw(st.tuples(st.integers(lo, hi), st.integers(lo, hi)))
             for lo, hi in ((1, 3), (1, 3), (0, 2), (1, 2))]
    kernel_size, stride, padding, dilation = pairs
    sides = [draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), max_side))
             for k, p, d in zip(kernel_size, padding, dilation)]
    return make_case(draw(st.integers(1, 3)), draw(st.integers(1, 5)), *sides, kernel_size,
                     stride, padding, dilation, bias=draw(st.booleans()),
                     seed=draw(st.integers(0, 2**32 - 1)))


# Every run sees a MobileNet 3x3 layer, its stride-2 version on an odd size, a 1x1 output, a
# dilated kernel wider than high, and a 1x1 kernel.
LANDMARKS = [make_case(2, 3, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1)),
             make_case(3, 2, 9, 8, (3, 3), (2, 2), (1, 1), (1, 1)),
             make_case(1, 2, 3, 3, (3, 3), (1, 1), (0, 0), (1, 1), bias=False),
             make_case(2, 4, 6, 8, (2, 3), (3, 2), (2, 0), (2, 2)),
             make_case(3, 5, 5, 4, (1, 1), (2, 3), (1, 2), (1, 1), bias=False)]


def with_landmarks(test):
    for case in LANDMARKS:
        test = example(case=case)(test)
    return test


def depthwise_conv(hyper):
    stride, padding, dilation = hyper

    def conv(x, w, *b):
        y = Conv2dDepthwise(stride, padding, dilation, x.shape[1])(x, w, *b)
        assert isinstance(y.creator, Conv2dDepthwise) or not y.requires_grad
        return y
    return conv


def values_and_grads(conv, arrays, dtype, requires_grad=True):
    tensors = [cl.tensor(a.astype(dtype), requires_grad=requires_grad) for a in arrays]
    y = conv(*tensors)
    y.backward(random_upstream(y.shape, dtype))
    return [y.data] + [t.grad for t in tensors]


def reference_values_and_grads(arrays, hyper):
    """The direct loop convolution for y, the im2col loops for the gradients."""
    x, w, b = (arrays + [None])[:3]
    y = conv2d_direct(x, w, b, *hyper, x.shape[1])
    stride, padding, dilation = hyper
    with backend.use_reference():
        expected = values_and_grads(
            lambda *t: F.conv2d(*t, stride=stride, padding=padding, dilation=dilation,
                                groups=x.shape[1]), arrays, np.float64)
    return [y] + expected[1:]


@contextlib.contextmanager
def running(mode):
    """Run the kernels on the calling thread alone ("serial") or in parallel however small the
    input ("parallel")."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu_parallel, "SERIAL_BELOW", {"serial": 2**62, "parallel": 0}[mode])
        yield


@contextlib.contextmanager
def stacking(planes_per_task):
    """Size ``STACK_ELEMENTS`` for each call so that a task stacks this many planes (the last
    task of a channel fewer)."""
    real_stack = kernels._stack

    def stack_of(x_shape, geometry):
        (_, Hs, _, Wr, *_), _ = real_stack(x_shape, geometry)
        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(kernels, "STACK_ELEMENTS", planes_per_task * Hs * Wr)
            return real_stack(x_shape, geometry)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "_stack", stack_of)
        yield


def inner(a, b):
    return float(np.vdot(np.asarray(a), np.asarray(b)))


# --- the kernels ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["serial", "parallel"])
@pytest.mark.parametrize("planes_per_task", [1, 2, 3])
@with_landmarks
@given(case=depthwise_cases())
def test_the_kernels_equal_the_reference_loops(case, mode, planes_per_task):
    arrays, hyper = case
    x, w = arrays[:2]
    y, gx, gw = reference_values_and_grads([x, w], hyper)
    gy = random_upstream(y.shape, np.float64)
    with running(mode), stacking(planes_per_task):
        got = [kernels.depthwise_forward(x, w, *hyper),
               kernels.depthwise_backward_input(gy, w, x.shape, *hyper),
               kernels.depthwise_backward_weight(x, gy, w.shape, *hyper)]
    for mine, theirs in zip(got, (y, gx, gw), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["serial", "parallel"])
@with_landmarks
@given(case=depthwise_cases())
def test_each_backward_kernel_is_the_adjoint_of_the_forward_kernel(case, mode):
    """<dy, y(x, w)> == <dL/dx(dy, w), x> == <dL/dw(x, dy), w>: y is linear in x and in w."""
    (x, w, *_), hyper = case
    with running(mode):
        y = kernels.depthwise_forward(x, w, *hyper)
        gy = np.random.default_rng(3).standard_normal(y.shape)
        gx = kernels.depthwise_backward_input(gy, w, x.shape, *hyper)
        gw = kernels.depthwise_backward_weight(x, gy, w.shape, *hyper)
    assert inner(gx, x) == pytest.approx(inner(gy, y), rel=1e-12, abs=1e-12)
    assert inner(gw, w) == pytest.approx(inner(gy, y), rel=1e-12, abs=1e-12)


def test_the_weight_gradient_sums_in_float64():
    """A float32 dL/dw over 8 x 128 x 128 outputs is as exact as float32 can hold it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 2, 128, 128)).astype(np.float32) + 1
    gy = rng.standard_normal((8, 2, 128, 128)).astype(np.float32) + 1
    got = kernels.depthwise_backward_weight(x, gy, (2, 1, 3, 3), (1, 1), (1, 1), (1, 1))
    expected = kernels.depthwise_backward_weight(x.astype(np.float64), gy.astype(np.float64),
                                                 (2, 1, 3, 3), (1, 1), (1, 1), (1, 1))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda x, w, gy: kernels.depthwise_forward(x, w[:, :, :2].repeat(2, axis=1), (1, 1),
                                                (1, 1), (1, 1)),
     r"depthwise_forward: expected w of shape \(C, 1, kh, kw\) with C = 3.*\(3, 2, 2, 3\)"),
    (lambda x, w, gy: kernels.depthwise_forward(x, w.astype(np.float32), (1, 1), (1, 1),
                                                (1, 1)),
     r"depthwise_forward: x and w must have one dtype, got float64 x .* float32 w"),
    (lambda x, w, gy: kernels.depthwise_backward_input(gy[:, :, 1:], w, x.shape, (1, 1),
                                                       (1, 1), (1, 1)),
     r"depthwise_backward_input: expected gy of shape \(N, C, OH, OW\) = \(2, 3, 5, 4\)"),
    (lambda x, w, gy: kernels.depthwise_backward_weight(x, gy, (3, 1, 9, 3), (1, 1), (1, 1),
                                                        (1, 1)),
     r"depthwise_backward_weight: the kernel spans 9 pixels in height .* only 7"),
    (lambda x, w, gy: kernels.depthwise_backward_weight(x, gy, w.shape, (0, 1), (1, 1),
                                                        (1, 1)),
     r"depthwise_backward_weight: stride\[0\] must be >= 1, got 0"),
], ids=["channel-multiplier", "mixed-dtypes", "gy-shape", "kernel-too-tall", "zero-stride"])
def test_the_kernels_refuse_arguments_that_would_index_outside_the_arrays(call, message):
    rng = np.random.default_rng(0)
    x, w, gy = (rng.standard_normal(s) for s in ((2, 3, 5, 4), (3, 1, 3, 3), (2, 3, 5, 4)))
    with pytest.raises(OpError, match=message):
        call(x, w, gy)


# --- the Function -----------------------------------------------------------------------------

@with_landmarks
@given(case=depthwise_cases(max_side=6))
def test_depthwise_conv2d_gradcheck(case):
    arrays, hyper = case
    cl.gradcheck(depthwise_conv(hyper), [cl.tensor(a, requires_grad=True) for a in arrays])


@with_landmarks
@given(case=depthwise_cases())
def test_depthwise_conv2d_equals_the_reference_loops(case):
    arrays, hyper = case
    got = values_and_grads(depthwise_conv(hyper), arrays, np.float64)
    for mine, theirs in zip(got, reference_values_and_grads(arrays, hyper), strict=True):
        assert mine.dtype == np.float64 and mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, channels, side, stride", [(2, 144, 28, 1), (2, 96, 56, 2),
                                                       (8, 160, 7, 1)],
                         ids=["144ch-28px", "96ch-56px-stride2", "160ch-7px"])
def test_a_mobilenet_layer_equals_pytorch_in_float32(n, channels, side, stride):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, channels, side, side)).astype(np.float32)
    w = (rng.standard_normal((channels, 1, 3, 3)) / 3).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    ours = values_and_grads(depthwise_conv(((stride,) * 2, (1, 1), (1, 1))), [x, w, b],
                            np.float32)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=1, groups=channels)
    y.backward(torch.tensor(random_upstream(y.shape, np.float32)))
    for mine, theirs in zip(ours, (y.detach(), xt.grad, wt.grad, bt.grad), strict=True):
        theirs = theirs.numpy()
        assert mine.dtype == np.float32
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=2e-6 * np.abs(theirs).max())


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False),
                                   (False, False, True), (True, True, None)],
                         ids=["x", "w", "b", "x-w-no-bias"])
def test_only_the_gradients_asked_for_are_computed(needs):
    arrays, hyper = LANDMARKS[1]
    arrays = arrays[:2] if needs[2] is None else arrays
    tensors = [cl.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
    depthwise_conv(hyper)(*tensors).backward(random_upstream((3, 2, 5, 4), np.float64))
    expected = reference_values_and_grads(arrays, hyper)[1:]
    for t, theirs in zip(tensors, expected):
        if t.requires_grad:
            np.testing.assert_allclose(t.grad, theirs, rtol=1e-12, atol=1e-12)
        else:
            assert t.grad is None


def test_float32_stays_float32_and_mixed_dtypes_promote_as_im2col_does():
    (x, w, b), hyper = LANDMARKS[0]
    stride, padding, dilation = hyper
    for dtypes in ((np.float32,) * 3, (np.float32, np.float64, np.float32)):
        tensors = [cl.tensor(a.astype(d), requires_grad=True) for a, d in zip((x, w, b), dtypes)]
        y = depthwise_conv(hyper)(*tensors)
        with backend.conv_algorithm("im2col"):
            expected = F.conv2d(*tensors, stride=stride, padding=padding, dilation=dilation,
                                groups=3)
        assert y.dtype == expected.dtype
        np.testing.assert_allclose(y.data, expected.data, rtol=1e-5, atol=1e-5)
        y.sum().backward()
        assert [t.grad.dtype for t in tensors] == [np.dtype(d) for d in dtypes]


def test_an_empty_batch_gives_empty_results():
    x = cl.tensor(np.zeros((0, 3, 5, 5)), requires_grad=True)
    w = cl.tensor(np.ones((3, 1, 3, 3)), requires_grad=True)
    y = Conv2dDepthwise(1, 1, 1, 3)(x, w)
    y.sum().backward()
    assert y.shape == (0, 3, 5, 5) and x.grad.shape == (0, 3, 5, 5)
    np.testing.assert_array_equal(w.grad, 0)


def test_a_convolution_that_is_not_depthwise_is_refused_by_name():
    x, w = cl.tensor(np.zeros((1, 2, 5, 5))), cl.tensor(np.zeros((4, 1, 3, 3)))
    with pytest.raises(OpError, match=r"conv2d \(depthwise\): .*\(2, 1, kh, kw\).*\(4, 1, 3, 3\)"):
        Conv2dDepthwise(1, 1, 1, 2)(x, w)


# --- when the depthwise Function applies ------------------------------------------------------

def applies(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    return depthwise_applies(np.zeros(x_shape), np.zeros(w_shape), stride, padding, dilation,
                             groups)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((1, 32, 12, 12), (32, 1, 3, 3), dict(padding=1, groups=32), True),
    ((1, 32, 12, 12), (32, 1, 5, 3), dict(stride=(2, 1), dilation=2, padding=2, groups=32), True),
    ((1, 1, 12, 12), (1, 1, 3, 3), dict(), True),
    ((1, 32, 12, 12), (64, 1, 3, 3), dict(groups=32), False),
    ((1, 32, 12, 12), (32, 2, 3, 3), dict(groups=16), False),
    ((1, 32, 12, 12), (32, 1, 3, 3), dict(groups=1), False),
    ((1, 32, 12, 12), (32, 1, 13, 13), dict(groups=32), False),
    ((32, 12, 12), (32, 1, 3, 3), dict(groups=32), False),
    ((1, 32, 12, 12), (32, 1, 3), dict(groups=32), False),
], ids=["mobilenet", "any-geometry", "one-channel", "channel-multiplier", "grouped",
        "one-group", "kernel-too-large", "3-d-input", "3-d-weights"])
def test_depthwise_applies_to_depthwise_layers_only(x_shape, w_shape, kwargs, expected):
    assert applies(x_shape, w_shape, **kwargs) is expected


def test_depthwise_does_not_apply_to_the_reference_loops_or_when_im2col_is_asked_for():
    shapes = ((1, 32, 12, 12), (32, 1, 3, 3))
    assert applies(*shapes, groups=32)
    with backend.use_reference():
        assert not applies(*shapes, groups=32)
    with backend.conv_algorithm("im2col"):
        assert not applies(*shapes, groups=32)
