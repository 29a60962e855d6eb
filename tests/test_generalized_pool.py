"""Gated max-average pooling, tree pooling (Lee, Gallagher and Tu 2016) and the per-channel
affine map: what is special about them. The generic checks (values against the NumPy formulas,
float64 gradients by central differences for x and the masks, float32 and non-contiguous
gradients, over drawn windows and strides with clipped ceil-mode windows, on the loops, numba,
the CUDA kernels through the host harness and the GPU; the affine map per channel and shared,
against its loops) live in the op table (``cnnlite/optable/table_pool.py``, run by
tests/test_optable.py).

Here: the limiting cases (max, average and max+avg pooling), an empty batch, Caffe's ceil-mode
output sizes, the layers' parameters in the prototxt's order, and bad input.
"""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import nn
from cnnlite import functional as F
from cnnlite.cpu import generalized_pool as numba_kernels
from cnnlite.errors import OpError
from cnnlite.functional.generalized_pool import eltwise_affine, gated_max_ave_pool2d, tree_pool2d
from cnnlite.nn.generalized_pool import (EltwiseAffine, GatedMaxAvePool2d, TreePool2d,
                                         TreePoolMaxAve2d)
from cnnlite.reference import generalized_pool as loops
from helpers import every_family, running_as

BENCHMARK = (Path(__file__).resolve().parents[2] / "shared" / "references"
             / "caffenet-benchmark" / "prototxt")


# ---------------------------------------------------------------------------------------------
# Limiting cases: the gate picks max or average pooling; equal average leaves are average
# pooling.

def positive(rng, shape):
    """Positive inputs (as after a ReLU), so that an infinite gate gives s = 0 or 1 exactly."""
    return rng.uniform(0.1, 2.0, size=shape)


@every_family
def test_gate_of_plus_infinity_is_max_pooling(family, rng):
    x = positive(rng, (2, 3, 9, 8))
    with running_as(family):
        y = gated_max_ave_pool2d(cl.tensor(x), cl.tensor(np.full((3, 3), np.inf)), 2)
        expected = F.max_pool2d(cl.tensor(x), 3, 2, ceil_mode=True)
    np.testing.assert_allclose(y.data, expected.data, rtol=1e-15)


@every_family
def test_gate_of_minus_infinity_is_average_pooling(family, rng):
    x = positive(rng, (2, 3, 9, 8))
    with running_as(family):
        y = gated_max_ave_pool2d(cl.tensor(x), cl.tensor(np.full((3, 3), -np.inf)), 2)
        expected = F.avg_pool2d(cl.tensor(x), 3, 2, ceil_mode=True)  # clipped windows too
    np.testing.assert_allclose(y.data, expected.data, rtol=1e-14)


def test_zero_gate_is_half_of_max_plus_average(rng):
    x = rng.standard_normal((2, 3, 7, 7))
    y = gated_max_ave_pool2d(cl.tensor(x), cl.tensor(np.zeros((3, 3))), 2)
    expected = F.max_avg_pool2d(cl.tensor(x), 3, 2, ceil_mode=True).data / 2
    np.testing.assert_allclose(y.data, expected, rtol=1e-14)


@every_family
def test_tree_with_average_leaves_is_average_pooling(family, rng):
    # 9 = 3 + 3 * 2: every window is whole (a clipped one would sum, not average).
    x = rng.standard_normal((2, 3, 9, 9))
    average = np.full((3, 3), 1 / 9)
    gate = rng.standard_normal((3, 3))
    with running_as(family):
        y = tree_pool2d(*[cl.tensor(a) for a in (x, average, average, gate)], 2)
    np.testing.assert_allclose(y.data, F.avg_pool2d(cl.tensor(x), 3, 2).data, rtol=1e-13)


@every_family
def test_an_empty_batch_gives_empty_outputs_and_zero_mask_gradients(family):
    x = cl.tensor(np.ones((0, 2, 5, 5)), requires_grad=True)
    masks = [cl.tensor(np.ones((3, 3)), requires_grad=True) for _ in range(3)]  # leaves, gate
    with running_as(family):
        for y in (gated_max_ave_pool2d(x, masks[2], 2), tree_pool2d(x, *masks, 2)):
            y.sum().backward()
            assert y.shape == (0, 2, 2, 2)
    assert x.grad.shape == x.shape
    for mask in masks:
        np.testing.assert_array_equal(mask.grad, np.zeros((3, 3)))


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
