"""Caffe network definitions built as cnnlite networks (``cnnlite.io.caffe``): the CaffeNet128
baseline's numbers, equality with the same net built from layers, blob plumbing, phases,
BatchNorm + Scale, fillers, errors, and every file of Mishkin et al.'s benchmark."""
import os
from pathlib import Path

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import nn
from cnnlite.io.caffe import CaffeError, benchmark_table, describe_pooling_shapes, load_prototxt
from cnnlite.io.caffe_layers import CaffeSpatialPyramidPool2d, GlobalStatsBatchNorm2d
from cnnlite.io.prototxt import PrototxtError

# The benchmark's 182 definitions: 181 under prototxt/ and FitNet4 beside that folder.
BENCHMARK = Path(__file__).resolve().parents[2] / "shared" / "references" / "caffenet-benchmark"
THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
needs_benchmark = pytest.mark.skipif(not BENCHMARK.is_dir(),
                                     reason="the caffenet-benchmark prototxt files are not here")

# Files of the benchmark that cannot be built, and why.
KNOWN_UNSUPPORTED = {
    "prototxt/contrib/solver_bn2.prototxt": "a solver only: its net is another file ('net: ...')",
}
# Files without a crop_size, and the input they are built for here.
INPUT_SHAPES = {"prototxt/resnetbn_56_in_place.prototxt": (3, 32, 32)}   # a CIFAR ResNet-56
# The quick profile runs forward + backward on these (between them every layer type).
QUICK = [
    # LRN, the baseline
    "prototxt/caffenet128_lsuv.prototxt",
    # Slice, Eltwise MAX
    "prototxt/colorspace/caffenet128_lsuv_3_to_10_to_3maxout.prototxt",
    # SPP
    "prototxt/architectures/caffenet128_lsuv_relu_spp.prototxt",
    # Log, Concat
    "prototxt/colorspace/caffenet_lsuv_color_and_log_vlrelu.prototxt",
    # BNLL, Power
    "prototxt/activations/caffenet128_lsuv_bnll_minus_log2.prototxt",
    # APL
    "prototxt/activations/caffenet128_lsuv_APL2.prototxt",
    # BN, EltwiseAffine
    "prototxt/caffenet128_lsuv_no_lrn_BatchNormBeforeReLU_EltwiseAffine.prototxt",
    # GatedMaxAve
    "prototxt/pool/gen_pool/caffenet_lsuv_treepool_gated.prototxt",
    # STOCHASTIC pooling
    "prototxt/pool/caffenet128_relu_stoch_pool.prototxt",
    # Concat, global pool
    "prototxt/architectures/SqueezeNet128_lsuv.prototxt",
]


def _benchmark_files():
    if not BENCHMARK.is_dir():
        return []
    return sorted(str(p.relative_to(BENCHMARK)) for p in BENCHMARK.rglob("*.prototxt"))


def _uniform(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).uniform(0.1, 1.0, size=shape).astype(dtype)


# --- the baseline --------------------------------------------------------------------------------

@needs_benchmark
def test_caffenet128_has_the_published_parameters_and_pool5_shape():
    net = load_prototxt(BENCHMARK / "prototxt" / "caffenet128_lsuv.prototxt", fill_weights=False)
    table = cl.summary(net, (1, 3, 128, 128))
    assert table.total_params == 13_300_072
    shapes = {row.name: row.output_shape for row in table.rows}
    assert shapes["pool1"] == (1, 96, 15, 15) and shapes["pool2"] == (1, 256, 7, 7)
    assert shapes["pool5"] == (1, 256, 3, 3)
    assert table.output_shape == (1, 1000)
    assert describe_pooling_shapes(net) == [("pool1", (96, 15, 15)), ("pool2", (256, 7, 7)),
                                            ("pool5", (256, 3, 3))]
    assert net.loss_layers[0][:2] == ("loss", "SoftmaxWithLoss")


@needs_benchmark
def test_caffenet128_multipliers_give_biases_twice_the_rate_and_no_decay():
    net = load_prototxt(BENCHMARK / "prototxt" / "caffenet128_lsuv.prototxt", fill_weights=False)
    assert net.param_multipliers["conv1.weight"] == (1.0, 1.0)
    assert net.param_multipliers["conv1.bias"] == (2.0, 0.0)
    assert set(net.param_multipliers) == {name for name, _ in net.named_parameters()}


# --- equality with the same net built from layers ------------------------------------------------

THREE_LAYERS = """
name: "three"
layer { name: "data" type: "Data" top: "data" top: "label" transform_param { crop_size: 6 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "gaussian" std: 0.3 }
                            bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""


def test_a_three_layer_definition_equals_the_net_built_from_layers():
    net = load_prototxt(THREE_LAYERS, rng=1).double()
    # 6x6 -> conv 6x6 -> Caffe's ceil-mode pool 3x3 (floor mode would give 2x2) -> 36 -> 5
    twin = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(3, 2, ceil_mode=True), nn.Flatten(), nn.Linear(36, 5))
    twin.double().load_state_dict({"0.weight": net["conv1"].weight.numpy(),
                                   "0.bias": net["conv1"].bias.numpy(),
                                   "4.weight": net["ip1"].weight.numpy(),
                                   "4.bias": net["ip1"].bias.numpy()})
    x = _uniform((2, 3, 6, 6)) - 0.5
    xa, xb = cl.tensor(x, requires_grad=True), cl.tensor(x, requires_grad=True)
    ya, yb = net(xa), twin(xb)
    np.testing.assert_allclose(ya.numpy(), yb.numpy(), rtol=1e-12, atol=1e-12)
    (ya * ya).sum().backward()
    (yb * yb).sum().backward()
    np.testing.assert_allclose(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net["conv1"].weight.grad, twin[0].weight.grad, rtol=1e-12)
    assert list(net.state_dict()) == ["conv1.weight", "conv1.bias", "ip1.weight", "ip1.bias"]
    assert net.outputs == ("ip1",) and net.input_shape == (3, 6, 6)


# --- blobs: in place, Split, Slice, Concat, Eltwise, Power, Log, Scale, Bias ---------------------

PLUMBING = """
layer { name: "data" type: "Data" top: "data" top: "label" transform_param { crop_size: 3 } }
layer { name: "split" type: "Split" bottom: "data" top: "a" top: "b" }
layer { name: "cut" type: "Slice" bottom: "a" top: "a1" top: "a2"
        slice_param { axis: 1 slice_point: 1 } }
layer { name: "sq" type: "Power" bottom: "a2" top: "a2"
        power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "log" type: "Log" bottom: "b" top: "logb" log_param { base: 2 shift: 1 } }
layer { name: "join" type: "Concat" bottom: "a1" bottom: "a2" top: "joined" }
layer { name: "scale" type: "Scale" bottom: "joined" top: "joined"
        scale_param { bias_term: true filler { type: "constant" value: 2 }
                      bias_filler { type: "constant" value: -1 } } }
layer { name: "bias" type: "Bias" bottom: "logb" top: "logb"
        bias_param { filler { type: "constant" value: 0.5 } } }
layer { name: "sum" type: "Eltwise" bottom: "joined" bottom: "logb" top: "sum"
        eltwise_param { operation: SUM coeff: 1 coeff: -3 } }
layer { name: "prod" type: "Eltwise" bottom: "sum" bottom: "b" top: "prod"
        eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "prod" bottom: "logb" top: "max"
        eltwise_param { operation: MAX } }
"""


def _plumbing_by_hand(x):
    a1, a2 = x[:, :1], (1 + 0.5 * x[:, 1:]) ** 2
    joined = 2 * np.concatenate([a1, a2], axis=1) - 1
    logb = np.log2(1 + x) + 0.5
    return np.maximum((joined - 3 * logb) * x, logb)


def test_split_slice_concat_eltwise_power_log_scale_bias_compute_what_caffe_does():
    net = load_prototxt(PLUMBING).double()
    x = _uniform((2, 3, 3, 3))
    np.testing.assert_allclose(net(cl.tensor(x)).numpy(), _plumbing_by_hand(x), rtol=1e-12)
    assert net.outputs == ("max",)


def test_gradients_through_the_blob_graph_match_central_differences():
    net = load_prototxt(PLUMBING).double()
    x = cl.tensor(_uniform((2, 3, 3, 3), seed=3), requires_grad=True)
    assert cl.gradcheck(net, [x])


def test_a_blob_read_by_two_layers_gets_both_gradients():
    # "data" is read by Split (two tops) and nothing else; x's gradient sums over every path.
    net = load_prototxt(PLUMBING).double()
    x = cl.tensor(_uniform((1, 3, 3, 3)), requires_grad=True)
    net(x).sum().backward()
    eps, x0 = 1e-6, _uniform((1, 3, 3, 3))
    bumped = x0.copy()
    bumped[0, 2, 1, 1] += eps
    lowered = x0.copy()
    lowered[0, 2, 1, 1] -= eps
    numeric = (_plumbing_by_hand(bumped).sum() - _plumbing_by_hand(lowered).sum()) / (2 * eps)
    assert x.grad[0, 2, 1, 1] == pytest.approx(numeric, rel=1e-6)


def test_spp_uses_caffes_padded_windows():
    x = _uniform((1, 2, 7, 7), seed=5)
    y = CaffeSpatialPyramidPool2d(3)(cl.tensor(x)).numpy()
    assert y.shape == (1, 2 * (1 + 4 + 16))
    np.testing.assert_allclose(y[0, :2], x.max(axis=(2, 3))[0])
    # level 2 (4 x 4 bins of a 7 x 7 map): kernel 2, stride 2, padding 1 -> rows -1..0, 1..2, ...
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    level2 = np.array([[[padded[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max() for j in range(4)]
                        for i in range(4)] for c in range(2)])
    np.testing.assert_allclose(y[0, 2 * 5:], level2.reshape(-1))


ACTIVATIONS = """
layer { name: "data" type: "Data" top: "data" transform_param { crop_size: 7 } }
layer { name: "vlrelu" type: "ReLU" bottom: "data" top: "data" relu_param { negative_slope: 0.3 } }
layer { name: "prelu" type: "PReLU" bottom: "data" top: "data"
        prelu_param { channel_shared: true } }
layer { name: "rrelu" type: "RReLU" bottom: "data" top: "data" rrelu_param { lb: 10 ub: 30 } }
layer { name: "elu" type: "ELU" bottom: "data" top: "data" elu_param { alpha: 0.5 } }
layer { name: "lrn" type: "LRN" bottom: "data" top: "data"
        lrn_param { local_size: 3 alpha: 0.1 beta: 0.5 k: 2 } }
layer { name: "ave" type: "Pooling" bottom: "data" top: "ave"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "global" type: "Pooling" bottom: "ave" top: "global"
        pooling_param { pool: MAX global_pooling: true } }
"""


def test_caffe_parameters_reach_the_cnnlite_layers():
    net = load_prototxt(ACTIVATIONS)
    assert type(net["vlrelu"]) is nn.LeakyReLU and net["vlrelu"].negative_slope == 0.3
    assert net["prelu"].num_parameters == 1 and net["prelu"].weight.numpy()[0] == 0.25
    assert (net["rrelu"].lower, net["rrelu"].upper) == pytest.approx((1 / 30, 1 / 10))
    assert net["elu"].alpha == 0.5
    lrn = net["lrn"]
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.alpha_over_size) == (3, 0.1, 0.5, 2, True)
    assert type(net["ave"]) is nn.AvgPool2d and net["ave"].ceil_mode
    assert net.blob_shapes["ave"] == (3, 3, 3) and net.blob_shapes["global"] == (3, 1, 1)
    assert net(cl.tensor(_uniform((2, 3, 7, 7), dtype=np.float32))).shape == (2, 3, 1, 1)


# --- phases, BatchNorm + Scale, fillers ----------------------------------------------------------

PHASES = """
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { crop_size: 8 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { crop_size: 4 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" include { phase: TRAIN }
        batch_norm_param { use_global_stats: false moving_average_fraction: 0.9 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" include { phase: TEST }
        batch_norm_param { use_global_stats: true } }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv"
        param { lr_mult: 3 decay_mult: 0 } param { lr_mult: 4 decay_mult: 0 }
        scale_param { bias_term: true } }
layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" exclude { phase: TEST } }
layer { name: "acc" type: "Accuracy" bottom: "conv" bottom: "label" top: "acc" }
"""


def test_include_and_exclude_keep_the_layers_of_the_phase():
    train, test = load_prototxt(PHASES, "TRAIN"), load_prototxt(PHASES, "TEST")
    assert list(train.keys()) == ["conv", "bn", "drop"] and train.training
    assert list(test.keys()) == ["conv", "bn"] and not test.training
    assert train.input_shape == (3, 8, 8) and test.input_shape == (3, 4, 4)


def test_batchnorm_followed_by_scale_is_one_affine_batchnorm():
    train, test = load_prototxt(PHASES, "TRAIN"), load_prototxt(PHASES, "TEST")
    bn = train["bn"]
    assert type(bn) is nn.BatchNorm2d and bn.affine and bn.momentum == pytest.approx(0.1)
    assert "scale" not in train
    assert train.param_multipliers["bn.weight"] == (3.0, 0.0)
    assert train.param_multipliers["bn.bias"] == (4.0, 0.0)
    assert type(test["bn"]) is GlobalStatsBatchNorm2d


def test_use_global_stats_normalises_with_the_running_averages_even_in_training():
    bn = GlobalStatsBatchNorm2d(2, affine=False)
    bn.running_mean.data[:] = [1.0, -1.0]
    bn.running_var.data[:] = [4.0, 0.25]
    x = _uniform((3, 2, 2, 2), dtype=np.float32)
    expected = (x - np.array([1, -1]).reshape(1, 2, 1, 1)) / np.sqrt(
        np.array([4, 0.25]).reshape(1, 2, 1, 1) + bn.eps)
    np.testing.assert_allclose(bn.train()(cl.tensor(x)).numpy(), expected, rtol=1e-5)
    assert bn.running_mean.numpy().tolist() == [1.0, -1.0]


def _conv_with_filler(filler):
    text = ('layer { name: "data" type: "Data" top: "data" transform_param { crop_size: 5 } }\n'
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
            'convolution_param { num_output: 256 kernel_size: 3 group: 1 '
            f'weight_filler {{ {filler} }} bias_filler {{ type: "constant" value: 0.2 }} }} }}')
    return load_prototxt(text, input_shape=(16, 5, 5), rng=7)["conv"]


@pytest.mark.parametrize("filler, mean, variance", [
    ('type: "gaussian" mean: 0.5 std: 0.2', 0.5, 0.04),
    ('type: "uniform" min: -0.3 max: 0.1', -0.1, 0.4 ** 2 / 12),
    ('type: "xavier"', 0.0, 1.0 / 144),                           # fan_in = 16 * 3 * 3
    ('type: "xavier" variance_norm: AVERAGE', 0.0, 1.0 / ((144 + 256 * 9) / 2)),
    ('type: "msra"', 0.0, 2.0 / 144),
])
def test_fillers_draw_with_caffes_mean_and_variance(filler, mean, variance):
    conv = _conv_with_filler(filler)
    weights = conv.weight.numpy()
    assert weights.mean() == pytest.approx(mean, abs=0.05 * np.sqrt(variance) + 1e-3)
    assert weights.var() == pytest.approx(variance, rel=0.05)
    assert np.all(conv.bias.numpy() == np.float32(0.2))


def test_constant_filler_and_uniform_bounds():
    assert np.all(_conv_with_filler('type: "constant" value: 0.25').weight.numpy() == 0.25)
    weights = _conv_with_filler('type: "uniform" min: -0.3 max: 0.1').weight.numpy()
    assert weights.min() >= -0.3 and weights.max() <= 0.1


def test_fill_weights_false_leaves_zeros_and_the_same_seed_the_same_weights():
    assert not load_prototxt(THREE_LAYERS, fill_weights=False)["ip1"].weight.numpy().any()
    first, second = load_prototxt(THREE_LAYERS, rng=4), load_prototxt(THREE_LAYERS, rng=4)
    np.testing.assert_array_equal(first["ip1"].weight.numpy(), second["ip1"].weight.numpy())


# --- errors --------------------------------------------------------------------------------------

def test_an_unknown_type_names_the_layer_its_type_and_the_file(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(THREE_LAYERS.replace('"ReLU"', '"Swish"'))
    with pytest.raises(CaffeError, match=r"net\.prototxt:8: layer 'relu1' \(type 'Swish'\): "
                                         r"layer type 'Swish' is not supported"):
        load_prototxt(path)


def test_a_missing_bottom_names_the_blob():
    with pytest.raises(CaffeError, match=r"layer 'pool1' .*bottom blob 'conv9' is not made"):
        load_prototxt(THREE_LAYERS.replace('bottom: "conv1" top: "pool1"',
                                           'bottom: "conv9" top: "pool1"'))


def test_a_malformed_file_names_the_line_and_column(tmp_path):
    path = tmp_path / "broken.prototxt"
    path.write_text(THREE_LAYERS.replace("num_output: 5", "num_output 5"))
    with pytest.raises(PrototxtError, match=r"broken\.prototxt:12:42: expected ':' or '\{'"):
        load_prototxt(path)


def test_labels_read_by_a_built_layer_and_bad_phases_are_refused():
    with pytest.raises(CaffeError, match="reads the labels 'label'"):
        load_prototxt(THREE_LAYERS.replace('bottom: "pool1" top: "ip1"',
                                           'bottom: "label" top: "ip1"'))
    with pytest.raises(CaffeError, match="phase must be 'TRAIN' or 'TEST'"):
        load_prototxt(THREE_LAYERS, phase="train")


def test_a_net_without_input_size_asks_for_input_shape():
    text = THREE_LAYERS.replace("transform_param { crop_size: 6 }", "")
    with pytest.raises(CaffeError, match=r"pass input_shape=\(C, H, W\)"):
        load_prototxt(text)
    assert load_prototxt(text, input_shape=(3, 6, 6)).input_shape == (3, 6, 6)


def test_a_missing_file_is_named():
    with pytest.raises(CaffeError, match="no such file 'nowhere.prototxt'"):
        load_prototxt("nowhere.prototxt")


def test_a_shape_that_collapses_names_the_layer():
    with pytest.raises(CaffeError, match=r"layer 'conv1' .*input shapes \[\(None, 3, 2, 2\)\]"):
        load_prototxt(THREE_LAYERS.replace("pad: 1", "pad: 0"), input_shape=(3, 2, 2))


# --- every file of the benchmark -----------------------------------------------------------------

@needs_benchmark
@pytest.mark.parametrize("name", _benchmark_files())
def test_every_benchmark_file_builds_or_is_known_unsupported(name):
    if name in KNOWN_UNSUPPORTED:
        with pytest.raises(CaffeError, match="no layers"):
            load_prototxt(BENCHMARK / name)
        return
    net = load_prototxt(BENCHMARK / name, input_shape=(3, 128, 128), fill_weights=False)
    assert len(net.steps) > 0 and net.outputs
    assert sum(p.size for p in net.parameters()) > 0


def _forward_backward_cases():
    runnable = [n for n in _benchmark_files() if n not in KNOWN_UNSUPPORTED]
    return [pytest.param(n, marks=() if THOROUGH or n in QUICK else pytest.mark.skip(
        reason="slow: runs with HYPOTHESIS_PROFILE=thorough")) for n in runnable]


@needs_benchmark
@pytest.mark.parametrize("name", _forward_backward_cases())
def test_train_nets_run_forward_and_backward(name):
    net = load_prototxt(BENCHMARK / name, "TRAIN", input_shape=INPUT_SHAPES.get(name), rng=0)
    x = cl.tensor(_uniform((2, *net.input_shape), dtype=np.float32))
    outputs = net(x)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = outputs[0].sum() * 0
    for y in outputs:
        total = total + (y * y).mean()
    total.backward()
    for name_, param in net.named_parameters():
        assert param.grad is not None, f"{name_} got no gradient"
        assert np.isfinite(param.grad).all(), f"{name_} has a non-finite gradient"


@needs_benchmark
def test_the_docs_table_of_the_benchmark_files_is_what_benchmark_table_writes():
    documented = Path(cl.__file__).parent / "io" / "caffe_benchmark_files.md"
    table = benchmark_table(BENCHMARK, input_shape=(3, 128, 128))
    assert table.encode("utf-8") == documented.read_bytes()
