"""conv2d of 1x1 kernels as plain matrix products (``Conv2dPointwise``): it passes the float64
gradient check, equals the reference loops (direct convolution for y, the im2col loops for the
gradients) with and without stride, bias and batch, keeps float32 and promotes mixed dtypes as
im2col does, and equals PyTorch on a ResNet-50 projection shortcut.
"""
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend
from cnnlite import functional as F
from cnnlite.functional.conv_pointwise import Conv2dPointwise
from cnnlite.reference.conv import conv2d_direct
from helpers import random_upstream


@st.composite
def pointwise_cases(draw):
    """(arrays [x, w] or [x, w, b], stride): any batch (0 included), channels, sizes, stride."""
    n, c, o = draw(st.integers(0, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = [rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, 1, 1))]
    if draw(st.booleans()):
        arrays.append(rng.standard_normal(o))
    return arrays, stride


LANDMARKS = [([np.random.default_rng(0).standard_normal(s) for s in ((2, 3, 5, 4), (2, 3, 1, 1),
                                                                     (2,))], (2, 1))]


def pointwise_conv(stride):
    def conv(*inputs):
        y = Conv2dPointwise(stride)(*inputs)
        assert isinstance(y.creator, Conv2dPointwise) or not y.requires_grad
        return y
    return conv


def values_and_grads(conv, arrays, dtype):
    tensors = [cl.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    y = conv(*tensors)
    y.backward(random_upstream(y.shape, dtype))
    return [y.data] + [t.grad for t in tensors]


@example(case=LANDMARKS[0])
@given(case=pointwise_cases())
def test_pointwise_conv2d_gradcheck(case):
    arrays, stride = case
    if arrays[0].shape[0] == 0:
        return  # nothing to perturb
    cl.gradcheck(pointwise_conv(stride), [cl.tensor(a, requires_grad=True) for a in arrays])


@example(case=LANDMARKS[0])
@given(case=pointwise_cases())
def test_pointwise_equals_the_reference_loops(case):
    arrays, stride = case
    got = values_and_grads(pointwise_conv(stride), arrays, np.float64)
    pair = stride if isinstance(stride, tuple) else (stride, stride)
    x, w, b = (arrays + [None])[:3]
    direct = conv2d_direct(x, w, b, pair, (0, 0), (1, 1), 1)
    assert got[0].shape == direct.shape
    np.testing.assert_allclose(got[0], direct, rtol=1e-12, atol=1e-12)
    with backend.use_reference():
        expected = values_and_grads(lambda *t: F.conv2d(*t, stride=stride), arrays, np.float64)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_float32_stays_float32_and_mixed_dtypes_promote_as_im2col_does():
    (x, w, b), stride = LANDMARKS[0]
    for dtypes in ((np.float32,) * 3, (np.float32, np.float64, np.float32)):
        tensors = [cl.tensor(a.astype(d), requires_grad=True) for a, d in zip((x, w, b), dtypes)]
        y = pointwise_conv(stride)(*tensors)
        with backend.conv_algorithm("im2col"):
            expected = F.conv2d(*tensors, stride=stride)
        assert y.dtype == expected.dtype
        y.sum().backward()
        assert [t.grad.dtype for t in tensors] == [np.dtype(d) for d in dtypes]


def test_a_resnet_projection_shortcut_equals_pytorch_in_float32():
    """ResNet-50's first projection of stage 3: 256 -> 512 channels, stride 2, no bias."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 256, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((512, 256, 1, 1)) / 16).astype(np.float32)
    ours = values_and_grads(pointwise_conv(2), [x, w], np.float32)
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x, w))
    y = torch.nn.functional.conv2d(xt, wt, stride=2)
    y.backward(torch.tensor(random_upstream(y.shape, np.float32)))
    for mine, theirs in zip(ours, (y.detach(), xt.grad, wt.grad), strict=True):
        theirs = theirs.numpy()
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_gradcheck_catches_a_gradient_scattered_to_the_wrong_pixels(monkeypatch):
    """A strided dL/dx written into the first pixels of each row instead of every s-th one."""
    def misplaced(self, gy):
        gx, gw = original(self, gy)
        if gx is not None:
            gx = np.roll(gx, 1, axis=3)
        return gx, gw
    original = Conv2dPointwise.backward
    monkeypatch.setattr(Conv2dPointwise, "backward", misplaced)
    rng = np.random.default_rng(0)
    inputs = [cl.tensor(rng.standard_normal(s), requires_grad=True)
              for s in ((1, 2, 4, 4), (3, 2, 1, 1))]
    with pytest.raises(cl.GradcheckError, match="input 0"):
        cl.gradcheck(pointwise_conv(2), inputs)
