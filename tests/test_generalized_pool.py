"""Gated max-average pooling, tree pooling (Lee, Gallagher and Tu 2016) and the per-channel
affine map: gradients by central differences on both paths (reference loops and numba), the
numba kernels equal to the loops in float32 and float64, the limiting cases (max, average and
max+avg pooling), Caffe's ceil-mode output sizes, the layers' parameters in the prototxt's
order, and bad input.
"""
import contextlib
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import backend, nn
from cnnlite import functional as F
from cnnlite.cpu import generalized_pool as numba_kernels
from cnnlite.errors import OpError
from cnnlite.functional.generalized_pool import eltwise_affine, gated_max_ave_pool2d, tree_pool2d
from cnnlite.functional.pool import pool_output_size
from cnnlite.nn.generalized_pool import (EltwiseAffine, GatedMaxAvePool2d, TreePool2d,
                                         TreePoolMaxAve2d)
from cnnlite.reference import generalized_pool as loops

BENCHMARK = (Path(__file__).resolve().parents[2] / "shared" / "references"
             / "caffenet-benchmark" / "prototxt")

both_paths = pytest.mark.parametrize("path", ["reference", "numba"])
both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64],
                                      ids=["float32", "float64"])


def on_path(path):
    """The reference loops inside ``use_reference()``, else the numba kernels."""
    return backend.use_reference() if path == "reference" else contextlib.nullcontext()


def tensors(*arrays):
    return [cl.tensor(a, requires_grad=True) for a in arrays]


def untied(rng, shape):
    """Distinct values well apart (at least 1e-3), so that no step of a central difference
    changes which element is a window's maximum."""
    values = rng.permutation(np.prod(shape)).astype(np.float64) * 1e-2
    return (values - values.mean()).reshape(shape) / 4


# ---------------------------------------------------------------------------------------------
# Gradients, float64 central differences, on both paths. 7 x 6 with k = 3, s = 2 has clipped
# last windows along W (ceil mode); the non-square case clips both axes.

GEOMETRIES = [((2, 3, 7, 6), (3, 3), 2), ((1, 2, 5, 7), (2, 3), (2, 2))]


@both_paths
@pytest.mark.parametrize("shape, window, stride", GEOMETRIES)
def test_gated_max_ave_pool2d_gradients(path, shape, window, stride, rng):
    x, gate = untied(rng, shape), rng.standard_normal(window)
    with on_path(path):
        assert cl.gradcheck(lambda a, g: gated_max_ave_pool2d(a, g, stride), tensors(x, gate))


@both_paths
@pytest.mark.parametrize("shape, window, stride", GEOMETRIES)
def test_tree_pool2d_gradients(path, shape, window, stride, rng):
    x = rng.standard_normal(shape)
    leaf1, leaf2, gate = (rng.standard_normal(window) for _ in range(3))
    with on_path(path):
        assert cl.gradcheck(lambda *a: tree_pool2d(*a, stride), tensors(x, leaf1, leaf2, gate))


@pytest.mark.parametrize("x_shape, channels", [((2, 3, 4, 2), 3), ((4, 5), 5),
                                               ((2, 3, 4), 1)])
def test_eltwise_affine_gradients(x_shape, channels, rng):
    x, slope, bias = (rng.standard_normal(s) for s in (x_shape, channels, channels))
    assert cl.gradcheck(eltwise_affine, tensors(x, slope, bias))


# ---------------------------------------------------------------------------------------------
# numba == reference loops, forward and backward, float32 and float64.

@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, 9)), draw(st.integers(kw, 9))
    n, c = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    output_size = (pool_output_size(h, kh, sh, 0, True), pool_output_size(w, kw, sw, 0, True))
    return (n, c, h, w), (kh, kw), (sh, sw), output_size, draw(st.integers(0, 2**16))


def assert_close(got, expected, dtype):
    tolerance = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11,
                                                                              atol=1e-12)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tolerance)


@both_dtypes
@given(case=pool_cases())
def test_gated_kernels_equal_loops(dtype, case):
    shape, window, stride, output_size, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    gate = rng.standard_normal(window).astype(dtype)
    y, argmax = numba_kernels.gated_max_ave_pool2d_forward(x, gate, window, stride, output_size)
    y_loops, argmax_loops = loops.gated_max_ave_pool2d_forward(x, gate, window, stride,
                                                               output_size)
    assert_close(y, y_loops, dtype)
    np.testing.assert_array_equal(argmax, argmax_loops)
    gy = rng.standard_normal(y.shape).astype(dtype)
    for got, expected in zip(
            numba_kernels.gated_max_ave_pool2d_backward(gy, x, gate, argmax, window, stride),
            loops.gated_max_ave_pool2d_backward(gy, x, gate, argmax, window, stride)):
        assert_close(got, expected, dtype)


@both_dtypes
@given(case=pool_cases())
def test_tree_kernels_equal_loops(dtype, case):
    shape, window, stride, output_size, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    masks = [rng.standard_normal(window).astype(dtype) for _ in range(3)]
    y = numba_kernels.tree_pool2d_forward(x, *masks, window, stride, output_size)
    assert_close(y, loops.tree_pool2d_forward(x, *masks, window, stride, output_size), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    for got, expected in zip(numba_kernels.tree_pool2d_backward(gy, x, *masks, window, stride),
                             loops.tree_pool2d_backward(gy, x, *masks, window, stride)):
        assert_close(got, expected, dtype)


@both_dtypes
def test_eltwise_affine_equals_its_loops(dtype, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    slope, bias = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    x_t, slope_t, bias_t = tensors(x, slope, bias)
    y = eltwise_affine(x_t, slope_t, bias_t)
    assert_close(y.data, loops.eltwise_affine_forward(x, slope, bias), dtype)
    gy = rng.standard_normal(x.shape).astype(dtype)
    (y * cl.tensor(gy)).sum().backward()
    for got, expected in zip((x_t.grad, slope_t.grad, bias_t.grad),
                             loops.eltwise_affine_backward(gy, x, slope)):
        assert_close(got, expected, dtype)


# ---------------------------------------------------------------------------------------------
# Limiting cases: the gate picks max or average pooling; equal average leaves are average
# pooling.

def positive(rng, shape):
    """Positive inputs (as after a ReLU), so that an infinite gate gives s = 0 or 1 exactly."""
    return rng.uniform(0.1, 2.0, size=shape)


@both_paths
def test_gate_of_plus_infinity_is_max_pooling(path, rng):
    x = positive(rng, (2, 3, 9, 8))
    with on_path(path):
        y = gated_max_ave_pool2d(cl.tensor(x), cl.tensor(np.full((3, 3), np.inf)), 2)
        expected = F.max_pool2d(cl.tensor(x), 3, 2, ceil_mode=True)
    np.testing.assert_allclose(y.data, expected.data, rtol=1e-15)


@both_paths
def test_gate_of_minus_infinity_is_average_pooling(path, rng):
    x = positive(rng, (2, 3, 9, 8))
    with on_path(path):
        y = gated_max_ave_pool2d(cl.tensor(x), cl.tensor(np.full((3, 3), -np.inf)), 2)
        expected = F.avg_pool2d(cl.tensor(x), 3, 2, ceil_mode=True)  # clipped windows too
    np.testing.assert_allclose(y.data, expected.data, rtol=1e-14)


def test_zero_gate_is_half_of_max_plus_average(rng):
    x = rng.standard_normal((2, 3, 7, 7))
    y = gated_max_ave_pool2d(cl.tensor(x), cl.tensor(np.zeros((3, 3))), 2)
    expected = F.max_avg_pool2d(cl.tensor(x), 3, 2, ceil_mode=True).data / 2
    np.testing.assert_allclose(y.data, expected, rtol=1e-14)


@both_paths
def test_tree_with_average_leaves_is_average_pooling(path, rng):
    # 9 = 3 + 3 * 2: every window is whole (a clipped one would sum, not average).
    x = rng.standard_normal((2, 3, 9, 9))
    average = np.full((3, 3), 1 / 9)
    gate = rng.standard_normal((3, 3))
    with on_path(path):
        y = tree_pool2d(*[cl.tensor(a) for a in (x, average, average, gate)], 2)
    np.testing.assert_allclose(y.data, F.avg_pool2d(cl.tensor(x), 3, 2).data, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# Output sizes: Caffe's ceil mode.

def test_caffenet_pooling_stages_have_caffes_sizes(rng):
    x = cl.tensor(rng.standard_normal((1, 2, 30, 30)).astype(np.float32))
    sizes = []
    for _ in range(3):  # pool1, pool2, pool5 of CaffeNet128: 30 -> 15 -> 7 -> 3
        x = GatedMaxAvePool2d(3, 2)(x)
        sizes.append(x.shape[2:])
    assert sizes == [(15, 15), (7, 7), (3, 3)]


@given(size=st.integers(3, 40), kernel=st.integers(1, 3), stride=st.integers(1, 3))
def test_output_size_is_ceil_of_caffe(size, kernel, stride):
    x = cl.tensor(np.ones((1, 1, size, size)))
    y = tree_pool2d(x, *[cl.tensor(np.ones((kernel, kernel)))] * 3, stride)
    caffe = -(-(size - kernel) // stride) + 1
    if (caffe - 1) * stride >= size:  # a window starting beyond the input (stride > kernel)
        caffe -= 1
    assert y.shape == (1, 1, caffe, caffe)


# ---------------------------------------------------------------------------------------------
# Layers: parameters, their order (the prototxt's), initial values, dtypes.

def test_layers_list_their_parameters_in_caffes_order():
    assert [n for n, _ in GatedMaxAvePool2d(3, 2).named_parameters()] == ["gate"]
    assert [n for n, _ in TreePoolMaxAve2d(3, 2).named_parameters()] == ["gate"]
    assert [n for n, _ in TreePool2d(3, 2).named_parameters()] == ["leaf1", "leaf2", "gate"]
    assert [n for n, _ in EltwiseAffine(4).named_parameters()] == ["slope", "bias"]


def test_layers_start_from_the_benchmarks_fillers():
    np.testing.assert_array_equal(GatedMaxAvePool2d((2, 3)).gate.data, np.full((2, 3), 0.5))
    affine = EltwiseAffine(4)
    np.testing.assert_array_equal(affine.slope.data, np.ones(4))
    np.testing.assert_array_equal(affine.bias.data, np.zeros(4))
    assert EltwiseAffine(4, channel_shared=True).slope.shape == (1,)
    nn.init.manual_seed(0)
    tree = TreePool2d(3, 2, std=0.1)
    assert all(m.shape == (3, 3) and m.dtype == np.float32 and 0 < m.data.std() < 0.3
               for m in (tree.leaf1, tree.leaf2, tree.gate))


def test_tree_pool_max_ave_is_gated_max_ave_pooling(rng):
    x = cl.tensor(rng.standard_normal((2, 3, 7, 7)).astype(np.float32))
    tree, gated = TreePoolMaxAve2d(3, 2), GatedMaxAvePool2d(3, 2)
    gated.gate.data[...] = tree.gate.data
    np.testing.assert_array_equal(tree(x).data, gated(x).data)


def test_layers_learn_through_backward(rng):
    x = cl.tensor(rng.standard_normal((2, 4, 7, 7)).astype(np.float32))
    model = nn.Sequential(TreePool2d(3, 2), EltwiseAffine(4), GatedMaxAvePool2d(2))
    y = model(x)
    assert y.shape == (2, 4, 2, 2) and y.dtype == np.float32
    y.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


@pytest.mark.skipif(not BENCHMARK.is_dir(), reason="the benchmark's prototxt files are absent")
def test_layers_have_as_many_parameters_as_the_prototxt_gives_them():
    layers = {"GatedMaxAve": GatedMaxAvePool2d(3, 2), "TreepoolMaxAve": TreePoolMaxAve2d(3, 2),
              "TreepoolKernel1L": TreePool2d(3, 2), "EltwiseAffine": EltwiseAffine(8)}
    seen = set()
    for path in BENCHMARK.rglob("*.prototxt"):
        text = re.sub(r"#.*", "", path.read_text())  # commented-out layers do not count
        for block in re.split(r"\blayer\s*\{", text)[1:]:
            kind = re.search(r'type:\s*"(\w+)"', block)
            if kind and kind.group(1) in layers:
                params = len(re.findall(r"^\s*param\s*\{", block, flags=re.M))
                assert params == len(list(layers[kind.group(1)].parameters())), (path, kind)
                seen.add(kind.group(1))
    assert seen == set(layers)


# ---------------------------------------------------------------------------------------------
# Bad input: errors name the op (or layer) and the shapes.

@pytest.mark.parametrize("call, words", [
    (lambda: gated_max_ave_pool2d(np.ones((3, 7, 7)), np.ones((3, 3))),
     ["gated_max_ave_pool2d", "(N, C, H, W)", "(3, 7, 7)"]),
    (lambda: gated_max_ave_pool2d(np.ones((1, 1, 2, 7)), np.ones((3, 3))),
     ["gated_max_ave_pool2d", "larger than", "(1, 1, 2, 7)"]),
    (lambda: gated_max_ave_pool2d(np.ones((1, 1, 7, 7)), np.ones((1, 3, 3))),
     ["gated_max_ave_pool2d", "gate (1, 3, 3)", "(kh, kw)"]),
    (lambda: tree_pool2d(np.ones((1, 1, 7, 7)), np.ones((3, 3)), np.ones((2, 3)),
                         np.ones((3, 3))),
     ["tree_pool2d", "leaf2 (2, 3)", "leaf1 (3, 3)", "x (1, 1, 7, 7)"]),
    (lambda: gated_max_ave_pool2d(np.ones((1, 1, 7, 7)), np.ones((3, 3)), 0),
     ["gated_max_ave_pool2d", "stride"]),
    (lambda: eltwise_affine(np.ones((2, 3, 4)), np.ones(4), np.ones(4)),
     ["eltwise_affine", "slope (4,)", "(2, 3, 4)"]),
    (lambda: eltwise_affine(np.ones(3), np.ones(1), np.ones(1)), ["eltwise_affine", "(3,)"]),
    (lambda: eltwise_affine(np.ones((2, 3)), np.ones(3), np.ones(1)),
     ["eltwise_affine", "bias (1,)", "slope (3,)"]),
    (lambda: TreePool2d(3, 2)(np.ones((2, 3, 7))), ["TreePool2d(k=3, s=2)", "(2, 3, 7)"]),
    (lambda: EltwiseAffine(4)(np.ones((2, 3, 5, 5))), ["EltwiseAffine(4)", "(2, 3, 5, 5)"]),
    (lambda: GatedMaxAvePool2d(True), ["GatedMaxAvePool2d", "kernel_size"]),
    (lambda: TreePool2d(3, std=-1.0), ["TreePool2d", "std"]),
])
def test_bad_input_is_refused_with_names_and_shapes(call, words):
    with pytest.raises(OpError) as error:
        call()
    assert all(word in str(error.value) for word in words), str(error.value)


@pytest.mark.parametrize("kernels", [numba_kernels, loops], ids=["numba", "reference"])
def test_kernels_refuse_arguments_that_would_leave_their_arrays(kernels, rng):
    x = rng.standard_normal((1, 2, 5, 5))
    gate = rng.standard_normal((3, 3))
    with pytest.raises(OpError, match="gate must be a float64 array of the window's shape"):
        kernels.gated_max_ave_pool2d_forward(x, gate.astype(np.float32), (3, 3), (2, 2), (2, 2))
    with pytest.raises(OpError, match="last window starts beyond the input"):
        kernels.tree_pool2d_forward(x, gate, gate, gate, (3, 3), (2, 2), (4, 2))
    y, argmax = kernels.gated_max_ave_pool2d_forward(x, gate, (3, 3), (2, 2), (2, 2))
    argmax[0, 1, 1, 0] = 25
    with pytest.raises(OpError, match="argmax .* holds 1 index outside a plane of 5 x 5"):
        kernels.gated_max_ave_pool2d_backward(np.ones_like(y), x, gate, argmax, (3, 3), (2, 2))
    with pytest.raises(OpError, match=r"expected gy of shape"):
        kernels.tree_pool2d_backward(np.ones((1, 3, 2, 2)), x, gate, gate, gate, (3, 3), (2, 2))
