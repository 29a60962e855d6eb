"""nn.init: gains and fans as PyTorch, the statistics of every scheme, orthonormality, and LSUV
(every conv/linear output of a deep plain ReLU network at unit variance)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import nn
from cnnlite.nn import init


def parameter(shape, dtype=np.float32):
    return nn.Parameter(np.zeros(shape, dtype))


# --- gains and fans ---------------------------------------------------------------------------

@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(
        torch.nn.init.calculate_gain(nonlinearity, param), rel=1e-12)


def test_unknown_nonlinearity_is_refused():
    with pytest.raises(ValueError, match="softsign"):
        init.calculate_gain("softsign")


@pytest.mark.parametrize("shape", [(5, 3), (64, 3, 11, 11), (8, 4, 1, 1), (2, 6, 3, 5)])
def test_fans_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fan_in_and_fan_out(shape) == expected


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(parameter((5,)))


# --- statistics -------------------------------------------------------------------------------

SHAPE = (128, 64, 3, 3)          # fan_in 576, fan_out 1152, 73,728 values
FAN_IN, FAN_OUT = 64 * 9, 128 * 9


@pytest.mark.parametrize("fill, std, bound", [
    (lambda t, r: init.xavier_uniform_(t, rng=r), math.sqrt(2 / (FAN_IN + FAN_OUT)),
     math.sqrt(6 / (FAN_IN + FAN_OUT))),
    (lambda t, r: init.xavier_uniform_(t, gain=5 / 3, rng=r),
     5 / 3 * math.sqrt(2 / (FAN_IN + FAN_OUT)), 5 / 3 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    (lambda t, r: init.xavier_normal_(t, rng=r), math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    (lambda t, r: init.kaiming_uniform_(t, nonlinearity="relu", rng=r), math.sqrt(2 / FAN_IN),
     math.sqrt(6 / FAN_IN)),
    (lambda t, r: init.kaiming_uniform_(t, a=math.sqrt(5), rng=r), 1 / math.sqrt(3 * FAN_IN),
     1 / math.sqrt(FAN_IN)),
    (lambda t, r: init.kaiming_normal_(t, nonlinearity="relu", rng=r), math.sqrt(2 / FAN_IN),
     None),
    (lambda t, r: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu", rng=r),
     math.sqrt(2 / FAN_OUT), None),
    (lambda t, r: init.kaiming_normal_(t, a=0.2, rng=r), math.sqrt(2 / 1.04 / FAN_IN), None),
    (lambda t, r: init.normal_(t, 0.0, 0.01, rng=r), 0.01, None),
    (lambda t, r: init.uniform_(t, -0.3, 0.3, rng=r), 0.3 / math.sqrt(3), 0.3),
])
def test_scheme_has_its_standard_deviation(fill, std, bound, rng):
    weight = parameter(SHAPE)
    assert fill(weight, rng) is weight
    values = weight.data.astype(np.float64)
    assert weight.dtype == np.float32
    assert abs(values.mean()) < 0.02 * std
    assert values.std() == pytest.approx(std, rel=0.01)
    if bound is not None:
        assert np.abs(values).max() <= bound * (1 + 1e-6)
        assert np.abs(values).max() > 0.99 * bound


@pytest.mark.parametrize("alias, scheme", [
    ("glorot_uniform_", "xavier_uniform_"), ("glorot_normal_", "xavier_normal_"),
    ("he_uniform_", "kaiming_uniform_"), ("he_normal_", "kaiming_normal_"),
    ("msra_uniform_", "kaiming_uniform_"), ("msra_normal_", "kaiming_normal_")])
def test_the_other_names_of_a_scheme_are_the_same_function(alias, scheme):
    assert getattr(init, alias) is getattr(init, scheme)
    assert alias in init.__all__


def test_constant_zeros_ones():
    weight = parameter((3, 4))
    np.testing.assert_array_equal(init.constant_(weight, 0.5).data, np.full((3, 4), 0.5))
    np.testing.assert_array_equal(init.ones_(weight).data, np.ones((3, 4)))
    np.testing.assert_array_equal(init.zeros_(weight).data, np.zeros((3, 4)))


def test_initialisers_work_while_the_graph_is_recorded_and_bump_the_version():
    weight = parameter((4, 4))
    version = weight._version
    assert cl.is_grad_enabled()
    init.kaiming_normal_(weight)
    assert weight._version > version


def test_seeds_make_initialisation_repeatable():
    a, b = parameter((6, 5)), parameter((6, 5))
    init.xavier_normal_(a, rng=np.random.default_rng(3))
    init.xavier_normal_(b, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.data, b.data)
    init.manual_seed(11)
    first = nn.Conv2d(2, 3, 3).weight.data.copy()
    init.manual_seed(11)
    np.testing.assert_array_equal(nn.Conv2d(2, 3, 3).weight.data, first)



@pytest.mark.parametrize("shape", [(37, 5, 3, 3), (300,), ()], ids=["conv", "vector", "scalar"])
@pytest.mark.parametrize("fill", [lambda t, rng: init.normal_(t, 0.5, 2.0, rng=rng),
                                  lambda t, rng: init.uniform_(t, -3.0, 1.0, rng=rng)],
                         ids=["normal", "uniform"])
def test_weights_drawn_in_blocks_are_those_of_one_draw(shape, fill, monkeypatch):
    """Large weights are drawn a block of rows at a time (no float64 copy of a whole VGG-16
    classifier weight); a block of 100 values cuts these into pieces, and the numbers must be
    those of one draw of the whole shape, cast to the tensor's dtype."""
    monkeypatch.setattr(init, "DRAW_BLOCK", 100)
    blocked = parameter(shape)
    fill(blocked, np.random.default_rng(7))
    monkeypatch.setattr(init, "DRAW_BLOCK", 10**9)
    whole = parameter(shape)
    fill(whole, np.random.default_rng(7))
    assert blocked.dtype == np.float32
    np.testing.assert_array_equal(blocked.data, whole.data)
    assert np.unique(blocked.data).size == blocked.size  # every value drawn, none left at 0

@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(1, 3),
                      st.integers(1, 3)) | st.tuples(st.integers(1, 40), st.integers(1, 40)))
def test_orthogonal_matrices_are_orthonormal(shape):
    weight = init.orthogonal_(parameter(shape, np.float64), rng=np.random.default_rng(0))
    matrix = weight.data.reshape(shape[0], -1)
    if matrix.shape[0] <= matrix.shape[1]:
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(matrix.shape[0]), atol=1e-12)
    else:
        np.testing.assert_allclose(matrix.T @ matrix, np.eye(matrix.shape[1]), atol=1e-12)


def test_orthogonal_gain_scales_the_singular_values(rng):
    weight = init.orthogonal_(parameter((8, 20), np.float64), gain=math.sqrt(2), rng=rng)
    np.testing.assert_allclose(np.linalg.svd(weight.data, compute_uv=False), math.sqrt(2))


# --- LSUV -------------------------------------------------------------------------------------

def plain_conv_net(depth=20, channels=8):
    layers = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def plain_linear_net(depth=20, width=32):
    layers = [nn.Linear(12, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def layer_output_variances(model, x, layer_types=(nn.Conv2d, nn.Linear)):
    """Variance of every conv/linear output (before its ReLU), measured by forward hooks."""
    variances = {}

    def record(name):
        def hook(module, inputs, output):
            variances.setdefault(name, float(output.data.var()))
        return hook

    handles = [module.register_forward_hook(record(name))
               for name, module in model.named_modules() if isinstance(module, layer_types)]
    with cl.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return variances


@pytest.mark.parametrize("make, shape", [(plain_conv_net, (16, 3, 8, 8)),
                                         (plain_linear_net, (64, 12))])
def test_lsuv_gives_every_layer_unit_output_variance(make, shape, rng):
    model = make()
    x = cl.tensor(rng.standard_normal(shape).astype(np.float32))
    before = layer_output_variances(model, x)
    assert min(before.values()) < 0.01          # PyTorch's default init shrinks the signal
    report = nn.lsuv_init(model, x, tol=0.1, rng=np.random.default_rng(0))
    after = layer_output_variances(model, x)
    assert len(after) == 20
    assert all(abs(v - 1) < 0.1 for v in after.values()), after
    assert [layer.name for layer in report] == list(after)
    for layer in report:
        assert layer.var_after == pytest.approx(after[layer.name], rel=1e-4)
        assert abs(layer.var_after - 1) < 0.1 and 0 <= layer.iterations <= 10
    assert any(layer.iterations > 0 for layer in report)
    assert all(np.all(m.bias.data == 0) for m in model.modules() if hasattr(m, "bias"))


def test_lsuv_starts_from_orthonormal_weights_and_reports_their_variance(rng):
    model = plain_conv_net(depth=3)
    x = cl.tensor(rng.standard_normal((8, 3, 6, 6)))
    model.double()
    report = nn.lsuv_init(model, x, rng=np.random.default_rng(5))
    first = np.random.default_rng(5)
    orthonormal = init.svd_orthonormal((8, 3, 3, 3), rng=first)
    expected = cl.functional.conv2d(x, cl.tensor(orthonormal), padding=1).data.var()
    assert report[0].var_before == pytest.approx(expected, rel=1e-10)
    matrix = model[0].weight.data.reshape(8, -1)
    scale = np.linalg.svd(matrix, compute_uv=False)
    np.testing.assert_allclose(scale, scale[0], rtol=1e-10)   # still a multiple of orthonormal


def test_lsuv_never_rescales_biases_and_only_scales_weights(rng):
    model = plain_linear_net(depth=4)
    x = cl.tensor(rng.standard_normal((32, 12)).astype(np.float32))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            init.normal_(module.bias, 0.0, 0.1, rng=rng)
    biases = [m.bias.data.copy() for m in model.modules() if isinstance(m, nn.Linear)]
    weights = [m.weight.data.copy() for m in model.modules() if isinstance(m, nn.Linear)]
    nn.lsuv_init(model, x, tol=0.02, max_iter=20, orthonormal=False)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for layer, bias, weight in zip(layers, biases, weights):
        np.testing.assert_array_equal(layer.bias.data, bias)
        ratio = layer.weight.data / weight
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-4)
    assert all(abs(v - 1) < 0.02 for v in layer_output_variances(model, x).values())


def test_lsuv_follows_the_forward_order_not_the_definition_order(rng):
    class Reordered(nn.Module):
        def __init__(self):
            super().__init__()
            self.second = nn.Linear(6, 6)
            self.first = nn.Linear(5, 6)

        def forward(self, x):
            return self.second(cl.functional.relu(self.first(x)))

    report = nn.lsuv_init(Reordered(), cl.tensor(rng.standard_normal((20, 5))))
    assert [layer.name for layer in report] == ["first", "second"]


def test_lsuv_with_fresh_batches_draws_one_per_forward_pass(rng):
    model = plain_linear_net(depth=5)
    drawn = []

    def next_batch():
        drawn.append(1)
        return rng.standard_normal((256, 12)).astype(np.float32)

    report = nn.lsuv_init(model, fresh_batches=next_batch, **nn.REFERENCE_SCRIPT)
    assert len(drawn) == 1 + sum(layer.iterations + 1 for layer in report)
    assert all(abs(layer.var_after - 1) < 0.02 or layer.iterations == 20 for layer in report)
    loader = [(rng.standard_normal((64, 12)), np.zeros(64, np.int64)) for _ in range(100)]
    assert len(nn.lsuv_init(plain_linear_net(depth=2), fresh_batches=loader)) == 2


def test_lsuv_measures_in_evaluation_mode_and_restores_modes(rng):
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model[1].eval()
    seen = []
    model[2].register_forward_hook(lambda m, inputs, out: seen.append(model[1].training))
    nn.lsuv_init(model, cl.tensor(rng.standard_normal((16, 4)).astype(np.float32)))
    assert seen and not any(seen)
    assert model.training and model[0].training and not model[1].training
    seen.clear()
    nn.lsuv_init(model, cl.tensor(rng.standard_normal((16, 4)).astype(np.float32)),
                 train_mode=True)
    assert all(seen) and not model[1].training


def test_lsuv_report_prints_a_table(rng):
    report = nn.lsuv_init(plain_conv_net(depth=2), cl.tensor(rng.standard_normal((4, 3, 5, 5))))
    lines = str(report).splitlines()
    assert lines[0].split() == ["layer", "var", "before", "var", "after", "iterations"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "2"]
    assert float(lines[1].split()[2]) == pytest.approx(report[0].var_after, rel=1e-5)


def test_lsuv_refuses_unusable_input(rng):
    x = cl.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="not both"):
        nn.lsuv_init(nn.Linear(3, 2), x, fresh_batches=lambda: x)
    with pytest.raises(ValueError, match="no layer"):
        nn.lsuv_init(nn.Sequential(nn.ReLU()), x)
    with pytest.raises(RuntimeError, match="variance 0"):
        nn.lsuv_init(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2)), cl.tensor(np.zeros((4, 3))))


def test_skip_init_leaves_weights_zero_and_ends_with_the_block():
    with nn.init.skip_init():
        conv = nn.Conv2d(3, 4, 3)
        linear = nn.Linear(5, 6)
        for draw in (nn.init.normal_, nn.init.uniform_, nn.init.kaiming_normal_,
                     nn.init.orthogonal_):
            draw(linear.weight)
    assert not conv.weight.data.any() and not linear.weight.data.any()
    assert nn.Linear(5, 6).weight.data.any()
