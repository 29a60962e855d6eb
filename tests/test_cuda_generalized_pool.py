"""The CUDA kernels of gated max-average and tree pooling (kernels/generalized_pool.cu), run on
the CPU through the harness of kernels/host, equal the loops of
``cnnlite.reference.generalized_pool``: over window sizes, strides and ceil-mode clipping, in
float32 and float64; for the masks' gradients summed over several blocks and any launch shape;
for ties and NaNs in a window; for an argmax anywhere in its plane; and the launchers refuse an
argmax outside it.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnlite import cuda
from cnnlite.cuda import generalized_pool as launchers
from cnnlite.cuda import host
from cnnlite.errors import OpError
from cnnlite.functional.pool import pool_output_size
from cnnlite.reference import generalized_pool as loops
from helpers import assert_same_outputs

pytestmark = pytest.mark.usefixtures("on_harness")

both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                      ids=["float32", "float64"])


def tolerance(dtype):
    """The kernels sum in double, the loops in the data's type: a few float32 ulps apart."""
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


def assert_same(got, expected, dtype):
    assert_same_outputs(got, expected, tolerance(dtype))


def gated(x, gate, window, stride, output_size, gy=None):
    """Forward and backward of gated pooling through the CUDA launchers and through the loops:
    ((y, argmax, gx, ggate) of the launchers, the same of the loops)."""
    results = []
    for kernels in (cuda.KERNELS, loops.KERNELS):
        y, argmax = kernels["gated_max_ave_pool2d_forward"](x, gate, window, stride, output_size)
        g = np.ones_like(y) if gy is None else gy
        results.append((y, argmax, *kernels["gated_max_ave_pool2d_backward"](
            g, x, gate, argmax, window, stride)))
    return results


def tree(x, masks, window, stride, output_size, gy):
    """(y, gx, gleaf1, gleaf2, ggate) of the launchers, then of the loops."""
    results = []
    for kernels in (cuda.KERNELS, loops.KERNELS):
        y = kernels["tree_pool2d_forward"](x, *masks, window, stride, output_size)
        results.append((y, *kernels["tree_pool2d_backward"](gy, x, *masks, window, stride)))
    return results


# ---------------------------------------------------------------------------------------------
# Any geometry: windows larger or smaller than the stride, last windows clipped (ceil mode),
# an empty batch.

@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    n, c = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    output_size = (pool_output_size(h, kh, sh, 0, True), pool_output_size(w, kw, sw, 0, True))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, c, h, w), (kh, kw), (sh, sw), output_size, dtype, draw(st.integers(0, 2**16))


@given(case=pool_cases())
def test_gated_pooling_equals_the_loops(case):
    shape, window, stride, output_size, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    gate = rng.standard_normal(window).astype(dtype)
    gy = rng.standard_normal(shape[:2] + output_size).astype(dtype)
    ours, theirs = gated(x, gate, window, stride, output_size, gy)
    assert_same(ours, theirs, dtype)


@given(case=pool_cases())
def test_tree_pooling_equals_the_loops(case):
    shape, window, stride, output_size, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    masks = [rng.standard_normal(window).astype(dtype) for _ in range(3)]
    gy = rng.standard_normal(shape[:2] + output_size).astype(dtype)
    ours, theirs = tree(x, masks, window, stride, output_size, gy)
    assert_same(ours, theirs, dtype)


# ---------------------------------------------------------------------------------------------
# The masks' gradients: partial sums of several blocks, any launch shape.

@both_dtypes
@pytest.mark.parametrize("windows_per_block", [1, 5, 4096])
def test_mask_gradients_add_up_the_partial_sums_of_every_block(monkeypatch, windows_per_block,
                                                               dtype):
    """3 x 2 windows of 2 x 3 planes: 36 windows, summed in 36, 8 or 1 share(s)."""
    monkeypatch.setattr(launchers, "WINDOWS_PER_BLOCK", windows_per_block)
    rng = np.random.default_rng(windows_per_block)
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    masks = [rng.standard_normal((3, 3)).astype(dtype) for _ in range(3)]
    gy = rng.standard_normal((2, 3, 3, 2)).astype(dtype)
    ours, theirs = tree(x, masks, (3, 3), (2, 2), (3, 2), gy)
    assert_same(ours, theirs, dtype)
    ours, theirs = gated(x, masks[2], (3, 3), (2, 2), (3, 2), gy)
    assert_same(ours, theirs, dtype)


@pytest.mark.parametrize("blocks, threads", [(1, 1), (2, 7), (5, 64)])
def test_results_do_not_depend_on_the_launch_shape(harness_library, monkeypatch, blocks,
                                                   threads):
    monkeypatch.setattr(launchers, "WINDOWS_PER_BLOCK", 4)
    rng = np.random.default_rng(blocks)
    x = rng.standard_normal((2, 2, 6, 7))
    masks = [rng.standard_normal((2, 3)) for _ in range(3)]
    gy = rng.standard_normal((2, 2, 3, 3))
    with host.run_on_cpu(host.HostKernels(harness_library, blocks, threads)):
        ours, theirs = tree(x, masks, (2, 3), (2, 2), (3, 3), gy)
        assert_same(ours, theirs, np.float64)
        ours, theirs = gated(x, masks[2], (2, 3), (2, 2), (3, 3), gy)
        assert_same(ours, theirs, np.float64)


# ---------------------------------------------------------------------------------------------
# Ties and NaNs in a window; the argmax that backward is given.

@both_dtypes
def test_the_first_maximum_of_a_window_wins_a_tie(dtype):
    """Integers 0..2 in 3 x 3 windows that overlap: almost every window holds a tie."""
    x = np.random.default_rng(4).integers(0, 3, size=(2, 2, 7, 7)).astype(dtype)
    gate = np.random.default_rng(5).standard_normal((3, 3)).astype(dtype)
    ours, theirs = gated(x, gate, (3, 3), (2, 2), (3, 3))
    assert_same(ours, theirs, dtype)


@both_dtypes
def test_a_nan_is_the_maximum_of_its_window(dtype):
    """As in max pooling: the first NaN of a window is its maximum, placed after a larger
    number where a plain ``value > best`` would skip it; y is NaN there, and only there."""
    x = np.random.default_rng(6).standard_normal((1, 2, 5, 5)).astype(dtype)
    x[0, 0, 0, 0] = 5
    x[0, 0, 1, 1] = x[0, 0, 2, 0] = np.nan
    gate = np.full((3, 3), 0.1, dtype=dtype)
    y, argmax = cuda.KERNELS["gated_max_ave_pool2d_forward"](x, gate, (3, 3), (2, 2), (2, 2))
    y_loops, argmax_loops = loops.gated_max_ave_pool2d_forward(x, gate, (3, 3), (2, 2), (2, 2))
    np.testing.assert_array_equal(argmax, argmax_loops)
    assert argmax[0, 0, 0, 0] == 1 * 5 + 1 and argmax[0, 0, 1, 0] == 2 * 5 + 0
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_loops))
    assert np.isnan(y[0, 0]).sum() == 2 and not np.isnan(y[0, 1]).any()


@both_dtypes
def test_the_maximums_gradient_goes_where_argmax_points(dtype):
    """The gradient of the max term follows the argmax it is given, anywhere in the plane
    (here: other windows' elements, and one element picked by several windows)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 2, 5, 6)).astype(dtype)
    gate = rng.standard_normal((2, 2)).astype(dtype)
    gy = rng.standard_normal((2, 2, 3, 3)).astype(dtype)
    argmax = rng.integers(0, 30, size=gy.shape).astype(np.int32)
    argmax[0, 0] = 13
    args = (gy, x, gate, argmax, (2, 2), (2, 2))
    assert_same(cuda.KERNELS["gated_max_ave_pool2d_backward"](*args),
                loops.gated_max_ave_pool2d_backward(*args), dtype)


@pytest.mark.parametrize("value", [-1, 30, 2**31 - 1])
def test_an_argmax_outside_the_plane_is_refused(value):
    x = np.ones((1, 2, 5, 6))
    gate = np.ones((2, 2))
    argmax = np.zeros((1, 2, 3, 3), dtype=np.int32)
    argmax[0, 1, 2, 0] = value
    with pytest.raises(OpError, match=r"gated_max_ave_pool2d_backward: argmax .* holds 1 index "
                                      r"outside a plane of 5 x 6"):
        cuda.KERNELS["gated_max_ave_pool2d_backward"](np.ones((1, 2, 3, 3)), x, gate, argmax,
                                                     (2, 2), (2, 2))


def test_masks_of_another_dtype_or_shape_are_refused():
    x = np.ones((1, 2, 5, 5))
    with pytest.raises(OpError, match=r"tree_pool2d_forward: leaf2 must be a float64 array of "
                                      r"the window's shape \(3, 3\), got float32 leaf2"):
        cuda.KERNELS["tree_pool2d_forward"](x, np.ones((3, 3)), np.ones((3, 3), np.float32),
                                            np.ones((3, 3)), (3, 3), (2, 2), (2, 2))
    with pytest.raises(OpError, match=r"gated_max_ave_pool2d_forward: gate must be a float64 "
                                      r"array of the window's shape \(3, 3\), got float64 gate "
                                      r"\(3, 2\)"):
        cuda.KERNELS["gated_max_ave_pool2d_forward"](x, np.ones((3, 2)), (3, 3), (2, 2), (2, 2))
