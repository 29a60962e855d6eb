"""nn: Module bookkeeping (registration, state dicts, modes, devices, hooks), containers, and
every layer against its PyTorch twin given identical weights."""
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import nn
from cnnlite.errors import OpError


class Block(nn.Module):
    """conv -> BN -> ReLU -> pool -> flatten -> linear, with a buffer of its own."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(4 * 2 * 2, 5)
        self.register_buffer("scale", np.array([2.0], np.float32))

    def forward(self, x):
        h = self.features(x)
        return self.classifier(h.reshape(h.shape[0], -1)) * self.scale


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1),
                                            torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                            torch.nn.MaxPool2d(2))
        self.classifier = torch.nn.Linear(4 * 2 * 2, 5)
        self.register_buffer("scale", torch.tensor([2.0]))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1)) * self.scale


def numpy_state(torch_module):
    return OrderedDict((k, v.detach().numpy().copy()) for k, v in torch_module.state_dict().items())


# --- registration -----------------------------------------------------------------------------

def test_attributes_register_parameters_buffers_and_children():
    block = Block()
    assert [name for name, _ in block.named_children()] == ["features", "classifier"]
    assert [name for name, _ in block.named_parameters()] == [
        "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
        "classifier.weight", "classifier.bias"]
    assert [name for name, _ in block.named_buffers()] == [
        "scale", "features.1.running_mean", "features.1.running_var",
        "features.1.num_batches_tracked"]
    assert all(p.requires_grad for p in block.parameters())
    assert not any(b.requires_grad for b in block.buffers())
    assert [name for name, _ in block.named_modules()] == [
        name for name, _ in TorchBlock().named_modules()]


def test_plain_attributes_are_not_registered_and_deleting_unregisters():
    layer = nn.Linear(2, 3)
    layer.note = np.zeros(3)
    layer.helper = [nn.Linear(1, 1)]
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    del layer.bias
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert not hasattr(layer, "bias")


def test_a_shared_parameter_is_listed_once():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    assert len(list(model.parameters())) == 3
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_assigning_a_non_parameter_to_a_parameter_slot_is_refused():
    layer = nn.Linear(2, 3)
    with pytest.raises(TypeError, match="nn.Parameter"):
        layer.weight = np.zeros((3, 2))
    layer.bias = None
    assert layer.bias is None and "bias" not in layer.state_dict()


def test_assignment_before_init_says_what_to_do():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


def test_non_persistent_buffers_stay_out_of_the_state_dict():
    module = nn.Module()
    module.register_buffer("kept", np.ones(2))
    module.register_buffer("scratch", np.ones(2), persistent=False)
    assert list(module.state_dict()) == ["kept"]
    assert [name for name, _ in module.named_buffers()] == ["kept", "scratch"]


# --- state dicts ------------------------------------------------------------------------------

def test_state_dict_keys_and_shapes_match_torch():
    ours, theirs = Block().state_dict(), numpy_state(TorchBlock())
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape and ours[k].dtype == theirs[k].dtype
               for k in ours)


def test_state_dict_holds_copies():
    layer = nn.Linear(2, 3)
    state = layer.state_dict()
    state["weight"][...] = 7.0
    assert not np.any(layer.weight.data == 7.0)


def test_loading_torch_weights_gives_torch_outputs_in_both_modes():
    torch.manual_seed(0)
    theirs = TorchBlock().double()
    with torch.no_grad():
        theirs.features[1].running_mean.uniform_(-1, 1)
        theirs.features[1].running_var.uniform_(0.5, 2)
    ours = Block().double()
    report = ours.load_state_dict(numpy_state(theirs))
    assert report.ok
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    for training in (False, True):
        ours.train(training)
        theirs.train(training)
        expected = theirs(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(ours(cl.tensor(x)).data, expected, rtol=1e-10, atol=1e-12)
    for key, value in numpy_state(theirs).items():
        np.testing.assert_allclose(ours.state_dict()[key], value, rtol=1e-10, atol=1e-12)


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    model = Block()
    before = model.state_dict()
    bad = numpy_state(TorchBlock())
    del bad["features.0.bias"]
    bad["features.9.weight"] = np.zeros(3)
    bad["classifier.weight"] = np.zeros((5, 15), np.float32)
    bad["features.0.weight"] = np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(nn.StateDictError) as error:
        model.load_state_dict(bad)
    message = str(error.value)
    assert "features.0.bias" in message and "features.9.weight" in message
    assert "classifier.weight (model (5, 16), given (5, 15))" in message
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_non_strict_loading_loads_what_fits_and_reports_the_rest():
    model = Block()
    source = numpy_state(TorchBlock())
    source["classifier.weight"] = np.zeros((7, 16), np.float32)
    del source["classifier.bias"]
    report = model.load_state_dict(source, strict=False)
    assert report.missing_keys == ["classifier.bias"]
    assert report.unexpected_keys == []
    assert report.mismatched_keys == [("classifier.weight", (5, 16), (7, 16))]
    np.testing.assert_array_equal(model.features[0].weight.data, source["features.0.weight"])
    assert not np.all(model.classifier.weight.data == 0)


def test_load_state_dict_keeps_parameter_objects_and_dtypes():
    layer = nn.Linear(2, 3)
    weight = layer.weight
    layer.load_state_dict({"weight": np.ones((3, 2)), "bias": np.zeros(3)})
    assert layer.weight is weight and weight.dtype == np.float32
    np.testing.assert_array_equal(weight.data, np.ones((3, 2)))


def test_saved_npz_round_trip(tmp_path):
    model, copy = Block(), Block()
    np.savez(tmp_path / "model.npz", **model.state_dict())
    copy.load_state_dict(np.load(tmp_path / "model.npz"))
    x = cl.tensor(np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32))
    model.eval()
    copy.eval()
    np.testing.assert_array_equal(model(x).data, copy(x).data)


# --- modes, devices, utilities ----------------------------------------------------------------

def test_train_and_eval_reach_every_module():
    block = Block()
    assert block.eval() is block
    assert not any(m.training for m in block.modules())
    block.train()
    assert all(m.training for m in block.modules())


def test_dropout_drops_in_training_and_passes_through_in_evaluation():
    layer = nn.Dropout(0.25, rng=np.random.default_rng(0))
    x = cl.tensor(np.ones((200, 50)))
    y = layer(x).data
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)


def test_batch_norm_uses_batch_statistics_only_in_training():
    bn = nn.BatchNorm2d(2).double()
    x = cl.tensor(np.random.default_rng(2).normal(3.0, 2.0, (4, 2, 3, 3)))
    y = bn(x).data
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 1
    running = bn.running_mean.data.copy()
    bn.eval()
    y = bn(x).data
    np.testing.assert_allclose(y, (x.data - running[None, :, None, None])
                               / np.sqrt(bn.running_var.data[None, :, None, None] + 1e-5))
    np.testing.assert_array_equal(bn.running_mean.data, running)
    assert int(bn.num_batches_tracked.item()) == 1


def test_batch_norm_momentum_none_averages_all_batches_like_torch():
    ours, theirs = nn.BatchNorm1d(3, momentum=None).double(), torch.nn.BatchNorm1d(
        3, momentum=None).double()
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.normal(1.0, 2.0, (5, 3))
        ours(cl.tensor(x))
        theirs(torch.tensor(x))
    for key, value in numpy_state(theirs).items():
        np.testing.assert_allclose(ours.state_dict()[key], value, rtol=1e-12)


def test_double_casts_floating_tensors_only_and_keeps_objects():
    block = Block()
    weight, counter = block.classifier.weight, block.features[1].num_batches_tracked
    block.double()
    assert block.classifier.weight is weight and weight.dtype == np.float64
    assert block.features[1].running_var.dtype == np.float64
    assert counter.dtype == np.int64
    assert block.float().classifier.weight.dtype == np.float32


def test_to_cpu_is_a_no_op_and_unknown_devices_are_refused():
    layer = nn.Linear(2, 2)
    data = layer.weight.data
    assert layer.to("cpu") is layer and layer.weight.data is data
    with pytest.raises(ValueError, match="unknown device"):
        layer.to("tpu")


@pytest.mark.skipif(not cl.cuda.is_available(), reason="needs a CUDA GPU and cupy")
def test_to_cuda_moves_parameters_buffers_and_gradients():
    block = Block()
    block.classifier.weight.grad = np.ones((5, 16), np.float32)
    block.to("cuda")
    assert all(t.device == "cuda" for t in [*block.parameters(), *block.buffers()])
    assert type(block.classifier.weight.grad).__module__.startswith("cupy")
    state = block.to("cpu").state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())


def test_apply_visits_modules_in_torchs_order():
    ours = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Tanh()), nn.Sigmoid())
    theirs = torch.nn.Sequential(torch.nn.Linear(2, 2),
                                 torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()),
                                 torch.nn.Sigmoid())
    visited, expected = [], []
    assert ours.apply(lambda m: visited.append(type(m).__name__)) is ours
    theirs.apply(lambda m: expected.append(type(m).__name__))
    assert visited == expected


def test_zero_grad_and_requires_grad():
    layer = nn.Linear(2, 2)
    layer(cl.tensor(np.ones((1, 2), np.float32))).sum().backward()
    assert layer.weight.grad is not None
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None
    layer.requires_grad_(False)
    out = layer(cl.tensor(np.ones((1, 2), np.float32)))
    assert not out.requires_grad


def test_forward_hooks_see_and_may_replace_the_output():
    layer = nn.Linear(2, 2)
    seen = []
    handle = layer.register_forward_hook(lambda m, inputs, out: seen.append((m, inputs, out)))
    x = cl.tensor(np.ones((1, 2), np.float32))
    y = layer(x)
    assert seen[0][0] is layer and seen[0][1][0] is x and seen[0][2] is y
    handle.remove()
    layer(x)
    assert len(seen) == 1
    layer.register_forward_hook(lambda m, inputs, out: out * 0)
    layer.register_forward_pre_hook(lambda m, inputs: inputs[0] * 2)
    np.testing.assert_array_equal(layer(x).data, np.zeros((1, 2)))


def test_repr_matches_torch_for_common_layers():
    ours = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                         nn.BatchNorm1d(8, affine=False), nn.ReLU(), nn.Sequential(nn.Linear(8, 4)), nn.Conv2d(8, 8, 3, groups=2))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                 torch.nn.BatchNorm2d(8),
                                 torch.nn.BatchNorm1d(8, affine=False), torch.nn.ReLU(),
                                 torch.nn.Sequential(torch.nn.Linear(8, 4)),
                                 torch.nn.Conv2d(8, 8, 3, groups=2))
    assert repr(ours) == repr(theirs)


# --- containers -------------------------------------------------------------------------------

def test_sequential_indexing_slicing_and_names():
    a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    seq = nn.Sequential(a, b, c)
    assert seq[0] is a and seq[-1] is c and len(seq) == 3 and list(seq) == [a, b, c]
    assert list(seq[1:]) == [b, c]
    with pytest.raises(IndexError):
        seq[3]
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"]
    with pytest.raises(TypeError, match="expected a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_module_list_and_dict_register_their_modules():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    layers.append(nn.Linear(2, 1))
    layers.insert(0, nn.Linear(2, 2, bias=False))
    assert len(layers) == 4 and layers[-1].out_features == 1
    assert [name for name, _ in layers.named_parameters()][:3] == ["0.weight", "1.weight",
                                                                   "1.bias"]
    heads = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(2, 4)})
    assert "a" in heads and list(heads.keys()) == ["a", "b"] and len(heads) == 2
    assert list(heads.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]


# --- layers against PyTorch -------------------------------------------------------------------

def compare_with_torch(ours, theirs, x, training=True, rtol=1e-9):
    """Same weights (loaded from torch's state dict), same input and upstream gradient: the
    outputs, the input gradients and every parameter gradient must agree."""
    theirs = theirs.double().train(training)
    ours.double().train(training)
    ours.load_state_dict(numpy_state(theirs))
    tx = torch.tensor(x, requires_grad=True)
    cx = cl.tensor(x, requires_grad=True)
    ty, cy = theirs(tx), ours(cx)
    np.testing.assert_allclose(cy.data, ty.detach().numpy(), rtol=rtol, atol=1e-12)
    upstream = np.random.default_rng(5).standard_normal(ty.shape)
    (ty * torch.tensor(upstream)).sum().backward()
    (cy * cl.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(cx.grad, tx.grad.numpy(), rtol=rtol, atol=1e-12)
    reference = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad, reference[name].grad.numpy(), rtol=rtol,
                                   atol=1e-12, err_msg=name)
    for key, value in numpy_state(theirs).items():
        np.testing.assert_allclose(ours.state_dict()[key], value, rtol=rtol, atol=1e-12)


class TorchFunction(torch.nn.Module):
    """A reference written with torch ops, for layers PyTorch does not have."""

    def __init__(self, fn, **params):
        super().__init__()
        self.fn = fn
        for name, value in params.items():
            self.register_parameter(name, torch.nn.Parameter(torch.as_tensor(value)))

    def forward(self, x):
        return self.fn(self, x)


tf = torch.nn.functional


def torch_maxout(x, pieces):
    return x.reshape(x.shape[0], x.shape[1] // pieces, pieces, *x.shape[2:]).amax(2)


def torch_apl(module, x):
    a, b = module.a[:, None, :, None, None], module.b[:, None, :, None, None]
    return tf.relu(x) + (a * tf.relu(b - x)).sum(0)


def torch_spp(module, x):
    return torch.cat([tf.adaptive_max_pool2d(x, n).flatten(1) for n in (1, 2, 3)], 1)


apl_a = np.random.default_rng(8).uniform(-0.5, 0.5, (2, 3))
apl_b = np.random.default_rng(9).normal(0, 0.5, (2, 3))

LAYERS = {
    "conv": (lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
             lambda: torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2),
                                     groups=2), (2, 4, 7, 6)),
    "conv-no-bias": (lambda: nn.Conv2d(3, 2, 1, bias=False),
                     lambda: torch.nn.Conv2d(3, 2, 1, bias=False), (2, 3, 3, 3)),
    "linear": (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), (4, 5)),
    "maxpool-ceil": (lambda: nn.MaxPool2d(3, 2, ceil_mode=True),
                     lambda: torch.nn.MaxPool2d(3, 2, ceil_mode=True), (2, 3, 6, 6)),
    "avgpool-pad": (lambda: nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
                    lambda: torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
                    (2, 3, 5, 5)),
    "adaptive-avg": (lambda: nn.AdaptiveAvgPool2d((2, 3)),
                     lambda: torch.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
    "adaptive-max": (lambda: nn.AdaptiveMaxPool2d(2), lambda: torch.nn.AdaptiveMaxPool2d(2),
                     (2, 3, 5, 5)),
    "global-avg": (lambda: nn.GlobalAvgPool2d(), lambda: torch.nn.AdaptiveAvgPool2d(1),
                   (2, 3, 4, 5)),
    "max+avg": (lambda: nn.MaxAvgPool2d(2, 2),
                lambda: TorchFunction(lambda m, x: tf.max_pool2d(x, 2) + tf.avg_pool2d(x, 2)),
                (2, 3, 4, 4)),
    "spp": (lambda: nn.SpatialPyramidPool2d((1, 2, 3)), lambda: TorchFunction(torch_spp),
            (2, 3, 6, 7)),
    "bn1d": (lambda: nn.BatchNorm1d(3, momentum=0.3), lambda: torch.nn.BatchNorm1d(
        3, momentum=0.3), (5, 3)),
    "bn1d-seq": (lambda: nn.BatchNorm1d(3), lambda: torch.nn.BatchNorm1d(3), (2, 3, 4)),
    "bn2d": (lambda: nn.BatchNorm2d(3, eps=1e-3), lambda: torch.nn.BatchNorm2d(3, eps=1e-3),
             (2, 3, 4, 4)),
    "bn2d-no-affine": (lambda: nn.BatchNorm2d(3, affine=False),
                       lambda: torch.nn.BatchNorm2d(3, affine=False), (2, 3, 2, 2)),
    "bn2d-no-bias": (lambda: nn.BatchNorm2d(3, bias=False),
                     lambda: torch.nn.BatchNorm2d(3, bias=False), (2, 3, 2, 2)),
    "bn2d-batch-stats-only": (lambda: nn.BatchNorm2d(3, track_running_stats=False),
                              lambda: torch.nn.BatchNorm2d(3, track_running_stats=False),
                              (2, 3, 2, 2)),
    "lrn": (lambda: nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=2.0),
            lambda: torch.nn.LocalResponseNorm(3, alpha=0.1, beta=0.75, k=2.0), (2, 5, 3, 3)),
    "relu": (nn.ReLU, torch.nn.ReLU, (2, 3, 4)),
    "leaky": (lambda: nn.LeakyReLU(1 / 3), lambda: torch.nn.LeakyReLU(1 / 3), (2, 3, 4)),
    "prelu": (lambda: nn.PReLU(3, init=0.1), lambda: torch.nn.PReLU(3, init=0.1), (2, 3, 4, 2)),
    "prelu-shared": (nn.PReLU, torch.nn.PReLU, (2, 3, 4)),
    "elu": (lambda: nn.ELU(0.7), lambda: torch.nn.ELU(0.7), (2, 3, 4)),
    "selu": (nn.SELU, torch.nn.SELU, (2, 3, 4)),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, (2, 3, 4)),
    "tanh": (nn.Tanh, torch.nn.Tanh, (2, 3, 4)),
    "scaled-tanh": (nn.ScaledTanh, lambda: TorchFunction(
        lambda m, x: 1.7159 * torch.tanh(2 * x / 3)), (2, 3, 4)),
    "softplus": (lambda: nn.Softplus(2.0, 1.0), lambda: torch.nn.Softplus(2.0, 1.0), (2, 3, 4)),
    "shifted-softplus": (nn.ShiftedSoftplus, lambda: TorchFunction(
        lambda m, x: tf.softplus(x) - math.log(2)), (2, 3, 4)),
    "maxout": (lambda: nn.Maxout(3), lambda: TorchFunction(lambda m, x: torch_maxout(x, 3)),
               (2, 6, 2, 3)),
    "apl": (lambda: nn.APL(3, hinges=2), lambda: TorchFunction(torch_apl, a=apl_a, b=apl_b),
            (2, 3, 2, 2)),
    "softmax": (nn.Softmax, lambda: torch.nn.Softmax(1), (3, 5)),
    "log-softmax": (nn.LogSoftmax, lambda: torch.nn.LogSoftmax(1), (2, 4, 3)),
    "flatten": (nn.Flatten, torch.nn.Flatten, (2, 3, 2, 2)),
    "identity": (nn.Identity, torch.nn.Identity, (2, 3)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_matches_torch(name):
    ours, theirs, shape = LAYERS[name]
    x = np.random.default_rng(4).standard_normal(shape)
    compare_with_torch(ours(), theirs(), x)


@pytest.mark.parametrize("name", ["bn1d", "bn2d", "bn2d-batch-stats-only", "rrelu", "dropout"])
def test_layer_matches_torch_in_evaluation(name):
    layers = {**LAYERS, "rrelu": (nn.RReLU, torch.nn.RReLU, (2, 3, 4)),
              "dropout": (nn.Dropout, torch.nn.Dropout, (2, 3))}
    ours, theirs, shape = layers[name]
    reference = theirs()
    if getattr(reference, "track_running_stats", False):
        with torch.no_grad():
            reference.running_mean.uniform_(-1, 1)
            reference.running_var.uniform_(0.5, 2)
    compare_with_torch(ours(), reference, np.random.default_rng(6).standard_normal(shape),
                       training=False)


@given(groups=st.sampled_from([1, 2]), kernel=st.integers(1, 3), stride=st.integers(1, 2),
       padding=st.integers(0, 1), bias=st.booleans(), size=st.integers(3, 6))
def test_conv2d_matches_torch_for_any_settings(groups, kernel, stride, padding, bias, size):
    x = np.random.default_rng(size).standard_normal((2, 2 * groups, size, size + 1))
    compare_with_torch(nn.Conv2d(2 * groups, 2, kernel, stride, padding, groups=groups, bias=bias),
                       torch.nn.Conv2d(2 * groups, 2, kernel, stride, padding, groups=groups,
                                       bias=bias), x)


def test_learnable_maxout_is_a_wide_conv_then_the_channel_max():
    conv = torch.nn.Conv2d(2, 6, 3)
    reference = TorchFunction(lambda m, x: torch_maxout(m.conv(x), 3))
    reference.conv = conv
    compare_with_torch(nn.MaxoutConv2d(2, 2, 3, pieces=3), reference,
                       np.random.default_rng(7).standard_normal((2, 2, 5, 5)))
    layer = nn.MaxoutLinear(4, 3, pieces=2)
    assert layer.linear.weight.shape == (6, 4)
    assert layer(cl.tensor(np.ones((5, 4), np.float32))).shape == (5, 3)


def test_stochastic_pooling_in_evaluation_is_the_probability_weighted_mean():
    x = np.random.default_rng(8).uniform(0.1, 2.0, (2, 3, 4, 4))
    reference = TorchFunction(lambda m, x: tf.avg_pool2d(x * x, 2) / tf.avg_pool2d(x, 2))
    compare_with_torch(nn.StochasticPool2d(2), reference, x, training=False)


def test_stochastic_pooling_in_training_picks_window_elements():
    layer = nn.StochasticPool2d(2, rng=np.random.default_rng(0))
    x = np.random.default_rng(9).uniform(0.1, 2.0, (1, 2, 4, 4))
    y = layer(cl.tensor(x)).data
    windows = x.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 2, 2, 4)
    assert np.all(np.any(np.isclose(windows, y[..., None]), axis=-1))


def test_rrelu_slopes_in_training_lie_between_lower_and_upper():
    layer = nn.RReLU(0.1, 0.3, rng=np.random.default_rng(0))
    x = -np.linspace(1, 2, 200)
    slopes = layer(cl.tensor(x)).data / x
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.03


def test_losses_match_torch():
    rng = np.random.default_rng(10)
    logits, target = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    cases = [(nn.CrossEntropyLoss(label_smoothing=0.1),
              torch.nn.CrossEntropyLoss(label_smoothing=0.1)),
             (nn.CrossEntropyLoss(reduction="sum"), torch.nn.CrossEntropyLoss(reduction="sum")),
             (nn.NLLLoss(reduction="none"), torch.nn.NLLLoss(reduction="none"))]
    for ours, theirs in cases:
        cx, tx = cl.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
        cy, ty = ours(cx, target), theirs(tx, torch.tensor(target))
        np.testing.assert_allclose(cy.data, ty.detach().numpy(), rtol=1e-10)
        cy.sum().backward()
        ty.sum().backward()
        np.testing.assert_allclose(cx.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)
    other = rng.standard_normal((4, 5))
    np.testing.assert_allclose(nn.MSELoss()(cl.tensor(logits), cl.tensor(other)).item(),
                               np.mean((logits - other) ** 2), rtol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="average")


def test_a_small_model_passes_the_gradient_check():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ELU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 2)).double()
    x = cl.tensor(np.random.default_rng(11).standard_normal((2, 2, 4, 4)), requires_grad=True)
    cl.gradcheck(lambda x, *params: model(x), [x, *model.parameters()])


def test_conv_and_linear_default_init_is_pytorchs():
    cl.nn.init.manual_seed(0)
    conv = nn.Conv2d(16, 64, 3)
    bound = 1 / math.sqrt(16 * 9)
    for values in (conv.weight.data, conv.bias.data):
        assert np.abs(values).max() <= bound
    assert conv.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    linear = nn.Linear(400, 300)
    assert linear.weight.data.std() == pytest.approx(1 / math.sqrt(400) / math.sqrt(3), rel=0.05)
    assert linear.weight.dtype == np.float32


# --- errors name the layer ----------------------------------------------------------------------

@pytest.mark.parametrize("layer, shape, message", [
    (lambda: nn.Conv2d(3, 64, 3), (8, 1, 28, 28),
     "Conv2d(3->64, k=3): expected input (N, 3, H, W), got (8, 1, 28, 28)"),
    (lambda: nn.Conv2d(3, 8, (1, 5)), (8, 3, 28), "Conv2d(3->8, k=(1, 5)): expected input"),
    (lambda: nn.Linear(4096, 1000), (8, 9216),
     "Linear(4096->1000): expected input (N, 4096), got (8, 9216)"),
    (lambda: nn.BatchNorm2d(16), (8, 8, 4, 4),
     "BatchNorm2d(16): expected input (N, 16, H, W), got (8, 8, 4, 4)"),
    (lambda: nn.BatchNorm1d(16), (8, 16, 4, 4), "BatchNorm1d(16): expected input (N, 16)"),
    (lambda: nn.MaxPool2d(3, 2), (8, 16), "MaxPool2d(k=3, s=2): expected input (N, C, H, W)"),
    (lambda: nn.GlobalAvgPool2d(), (8, 16), "GlobalAvgPool2d(): expected input (N, C, H, W)"),
    (lambda: nn.PReLU(4), (8, 3), "PReLU(num_parameters=4): expected input (N, 4, ...)"),
    (lambda: nn.Maxout(3), (8, 4), "Maxout(pieces=3): expected input (N, C, ...) with C "
     "divisible by 3, got (8, 4)"),
    (lambda: nn.Flatten(2), (8, 4), "Flatten(start_axis=2, end_axis=-1): expected input"),
])
def test_bad_input_raises_an_error_naming_the_layer(layer, shape, message):
    with pytest.raises(OpError) as error:
        layer()(cl.tensor(np.zeros(shape, np.float32)))
    assert message in str(error.value)


def test_bad_layer_settings_are_refused():
    with pytest.raises(ValueError, match="divisible by groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(3, 4, (3, 3, 3))
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.5)
