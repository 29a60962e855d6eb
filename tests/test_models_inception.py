"""GoogLeNet, Inception-v3, Inception-v4, Inception-ResNet-v2 and Xception: sizes with the
auxiliary heads, the ports' state-dict keys, PyTorch's logits, the auxiliary heads while
training. (The default models' counts, forward and backward: test_models.py.)

The PyTorch references below are written from the papers (Szegedy et al. 2014 and 2015) with
torchvision's module names, so that the weights copy across by key. Inception-v4,
Inception-ResNet-v2 and Xception are checked against the keys and sizes of the widely used
PyTorch port (Cadene's ``pretrainedmodels``).
"""
import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import nn
from cnnlite.errors import OpError
from cnnlite.models.googlenet import (MODELS as GOOGLENET_MODELS, bottleneck_inception_module,
                                      googlenet, naive_inception_module,
                                      transform_imagenet_input)
from cnnlite.models.inception import MODELS as INCEPTION_V3_MODELS, InceptionAux, inception_v3
from cnnlite.models.inception_v4 import (MODELS as INCEPTION_V4_MODELS, InceptionResNetA,
                                         inception_resnet_v2, inception_v4)
from cnnlite.models.xception import MODELS as XCEPTION_MODELS, SeparableConv2d, xception
from model_parity import assert_same_logits, copy_weights, randomise_batch_norm

MODELS = {**GOOGLENET_MODELS, **INCEPTION_V3_MODELS, **INCEPTION_V4_MODELS, **XCEPTION_MODELS}

# The default models' counts are tested with every registered model (test_models.py); with
# their auxiliary heads, googlenet and inception_v3 counted on torchvision's definitions (the
# heads do not run in evaluation, so add no multiply-adds): name -> (parameters, multiply-adds).
WITH_AUX_HEADS = {
    "googlenet": (13_004_888, 1_498_376_192),
    "inception_v3": (27_161_264, 5_713_216_096),
}


@pytest.mark.parametrize("name", WITH_AUX_HEADS)
def test_counts_with_the_auxiliary_heads(name):
    entry = MODELS[name]
    with nn.init.skip_init():  # the counts need no random weights
        model = entry.constructor(aux_logits=True)
    table = cl.summary(model, (3, *entry.input_size))
    assert (table.total_params, table.total_macs) == WITH_AUX_HEADS[name]


def test_the_lecture_inception_modules_have_the_recounted_figures():
    """REFERENCES section 2: on 28x28x256 the naive module costs 854,196,224 multiply-adds and
    1,089,536 weights; with 1x1 bottlenecks 271,351,808 and 346,112."""
    naive = cl.summary(naive_inception_module(), (256, 28, 28))
    bottleneck = cl.summary(bottleneck_inception_module(), (256, 28, 28))
    assert (naive.total_params, naive.total_macs) == (1_089_536, 854_196_224)
    assert (bottleneck.total_params, bottleneck.total_macs) == (346_112, 271_351_808)
    with cl.no_grad():
        x = cl.tensor(np.zeros((1, 256, 28, 28), dtype=np.float32))
        assert naive_inception_module()(x).shape == (1, 672, 28, 28)
        assert bottleneck_inception_module()(x).shape == (1, 480, 28, 28)


# name -> (number of state-dict entries, some keys and their shapes): the port's, for its
# pretrained weights to load.
PORT_KEYS = {
    "inception_v4": (inception_v4, 896, {
        "features.3.conv.conv.weight": (96, 64, 3, 3),
        "features.10.branch1.2.conv.weight": (256, 224, 3, 3),
        "features.21.branch2_3b.bn.num_batches_tracked": (),
        "last_linear.weight": (1000, 1536)}),
    "inception_resnet_v2": (inception_resnet_v2, 1306, {
        "mixed_5b.branch3.1.conv.weight": (64, 192, 1, 1),
        "repeat_1.19.conv2d.weight": (1088, 384, 1, 1),
        "mixed_7a.branch2.2.conv.weight": (320, 288, 3, 3),
        "block8.conv2d.bias": (2080,),
        "conv2d_7b.bn.running_var": (1536,)}),
    "xception": (xception, 276, {
        "block1.rep.0.conv1.weight": (64, 1, 3, 3),
        "block1.rep.0.pointwise.weight": (128, 64, 1, 1),
        "block1.skip.weight": (128, 64, 1, 1),
        "block4.rep.1.conv1.weight": (728, 1, 3, 3),
        "block12.rep.4.pointwise.weight": (1024, 728, 1, 1),
        "bn4.num_batches_tracked": (),
        "last_linear.weight": (1000, 2048)}),
}


@pytest.mark.parametrize("name", PORT_KEYS)
def test_state_dict_keys_are_the_ports(name):
    constructor, entries, keys = PORT_KEYS[name]
    with nn.init.skip_init():  # only the keys and shapes are looked at
        state = constructor().state_dict()
    assert len(state) == entries
    assert {key: state[key].shape for key in keys} == keys


def test_xception_middle_flow_blocks_add_their_input_unchanged():
    """Only blocks that change the depth or the size have a 1x1 convolution on the shortcut."""
    state = xception(num_classes=10).state_dict()
    with_skip = [i for i in range(1, 13) if f"block{i}.skip.weight" in state]
    assert with_skip == [1, 2, 3, 12]


def test_separable_convolution_is_depthwise_then_pointwise():
    """C * 3 * 3 depthwise weights plus C * C_out pointwise ones, against C * C_out * 9 for a
    full convolution: 728 -> 728 costs 536,536 weights instead of 4,769,856."""
    layer = SeparableConv2d(728, 728)
    assert sum(p.size for p in layer.parameters()) == 728 * 9 + 728 * 728
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 5)).astype(np.float32)
    small = SeparableConv2d(4, 6)
    expected = cl.functional.conv2d(
        cl.functional.conv2d(cl.tensor(x), small.conv1.weight, padding=1, groups=4),
        small.pointwise.weight)
    np.testing.assert_allclose(small(cl.tensor(x)).data, expected.data, rtol=1e-6)


def test_inception_resnet_block_adds_the_scaled_branch_to_its_input():
    """With scale 0 the block is relu(x) (without its ReLU: x itself), whatever the branches;
    with scale s the residual's share grows in proportion."""
    x = cl.tensor(np.random.default_rng(0).standard_normal((1, 320, 3, 3)).astype(np.float32))
    with cl.no_grad():
        np.testing.assert_array_equal(InceptionResNetA(scale=0.0)(x).data,
                                      np.maximum(x.data, 0))
        np.testing.assert_array_equal(InceptionResNetA(scale=0.0, activate=False)(x).data,
                                      x.data)
        block = InceptionResNetA(scale=0.17, activate=False).eval()
        residual = block(x).data - x.data
        block.scale = 0.34
        np.testing.assert_allclose(block(x).data - x.data, 2 * residual, rtol=1e-4, atol=1e-6)


def test_transform_input_rescales_imagenet_normalisation_to_minus_one_one():
    """A pixel p normalised with ImageNet's (mean, std) becomes (p - 0.5) / 0.5."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = np.random.default_rng(0).uniform(0, 1, (2, 3, 4, 4))
    normalised = (pixels - mean[:, None, None]) / std[:, None, None]
    got = transform_imagenet_input(cl.tensor(normalised)).data
    np.testing.assert_allclose(got, (pixels - 0.5) / 0.5, rtol=1e-5, atol=1e-6)


# --- PyTorch references ---------------------------------------------------------------------

class TorchBasicConv2d(torch.nn.Module):
    """conv (no bias) -> batch norm (eps 0.001) -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                    bias=False)
        self.bn = torch.nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class TorchGoogLeNetInception(torch.nn.Module):
    def __init__(self, c_in, c1, c3_reduce, c3, c5_reduce, c5, pool_proj):
        super().__init__()
        self.branch1 = TorchBasicConv2d(c_in, c1, 1)
        self.branch2 = torch.nn.Sequential(TorchBasicConv2d(c_in, c3_reduce, 1),
                                           TorchBasicConv2d(c3_reduce, c3, 3, padding=1))
        # torchvision's "5x5" branch has a 3x3 kernel.
        self.branch3 = torch.nn.Sequential(TorchBasicConv2d(c_in, c5_reduce, 1),
                                           TorchBasicConv2d(c5_reduce, c5, 3, padding=1))
        self.branch4 = torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                           TorchBasicConv2d(c_in, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TorchGoogLeNetAux(torch.nn.Module):
    def __init__(self, c_in, num_classes):
        super().__init__()
        self.conv = TorchBasicConv2d(c_in, 128, 1)
        self.fc1 = torch.nn.Linear(2048, 1024)
        self.fc2 = torch.nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.conv(torch.nn.functional.adaptive_avg_pool2d(x, 4)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))        # dropout left out: tested at p = 0


# The paper's Table 1: name, input depth, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_TABLE = [
    ("3a", 192, 64, 96, 128, 16, 32, 32), ("3b", 256, 128, 128, 192, 32, 96, 64),
    ("4a", 480, 192, 96, 208, 16, 48, 64), ("4b", 512, 160, 112, 224, 24, 64, 64),
    ("4c", 512, 128, 128, 256, 24, 64, 64), ("4d", 512, 112, 144, 288, 32, 64, 64),
    ("4e", 528, 256, 160, 320, 32, 128, 128), ("5a", 832, 256, 160, 320, 32, 128, 128),
    ("5b", 832, 384, 192, 384, 48, 128, 128)]


class TorchGoogLeNet(torch.nn.Module):
    """Returns (logits, aux2, aux1) while training, the logits in evaluation."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = TorchBasicConv2d(3, 64, 7, stride=2, padding=3)
        self.conv2 = TorchBasicConv2d(64, 64, 1)
        self.conv3 = TorchBasicConv2d(64, 192, 3, padding=1)
        for name, *widths in GOOGLENET_TABLE:
            self.add_module(f"inception{name}", TorchGoogLeNetInception(*widths))
        self.aux1 = TorchGoogLeNetAux(512, num_classes)
        self.aux2 = TorchGoogLeNetAux(528, num_classes)
        self.fc = torch.nn.Linear(1024, num_classes)

    def forward(self, x):
        pool = torch.nn.functional.max_pool2d
        x = pool(self.conv1(x), 3, 2, ceil_mode=True)
        x = pool(self.conv3(self.conv2(x)), 3, 2, ceil_mode=True)
        aux = {}
        for name, *_ in GOOGLENET_TABLE:
            x = getattr(self, f"inception{name}")(x)
            if name == "3b":
                x = pool(x, 3, 2, ceil_mode=True)
            if name == "4e":
                x = pool(x, 2, 2, ceil_mode=True)
            if name in ("4a", "4d"):
                aux[name] = (self.aux1 if name == "4a" else self.aux2)(x)
        logits = self.fc(x.mean(dim=(2, 3)))
        return (logits, aux["4d"], aux["4a"]) if self.training else logits


def test_googlenet_matches_pytorch():
    torch.manual_seed(0)
    assert_same_logits(googlenet(num_classes=10), TorchGoogLeNet(10), (2, 3, 64, 64))


def test_googlenet_training_returns_the_auxiliary_logits_as_pytorch():
    """While training (dropout 0, batch statistics): (logits, aux_logits2, aux_logits1). At
    32 x 32 the heads see 2 x 2 maps, which their adaptive pooling spreads over 4 x 4. In
    float64: batch statistics of the last 1 x 1 maps come from two values each, which
    magnifies float32 rounding past 1e-4."""
    torch.manual_seed(0)
    reference = TorchGoogLeNet(10).double().train()
    randomise_batch_norm(reference)
    model = googlenet(num_classes=10, dropout=0.0, dropout_aux=0.0).double().train()
    copy_weights(reference, model)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    outputs = model(cl.tensor(x))
    assert outputs._fields == ("logits", "aux_logits2", "aux_logits1")
    for got, expected in zip(outputs, reference(torch.from_numpy(x))):
        expected = expected.detach().numpy()
        assert np.abs(got.data - expected).max() < 1e-4 * np.abs(expected).max()
    (outputs.logits.sum() + 0.3 * (outputs.aux_logits1.sum() + outputs.aux_logits2.sum())
     ).backward()
    assert model.aux1.fc2.weight.grad is not None and model.aux2.conv.conv.weight.grad is not None


def test_googlenet_without_aux_logits_returns_logits_while_training():
    model = googlenet(num_classes=10, aux_logits=False).train()
    logits = model(cl.tensor(np.zeros((2, 3, 32, 32), dtype=np.float32)))
    assert isinstance(logits, cl.Tensor) and logits.shape == (2, 10)
    assert not any(key.startswith("aux") for key in model.state_dict())


class TorchMixed(torch.nn.Module):
    """An Inception-v3 module from its convolutions and its branches.

    convs: name -> (in, out, kernel, padding, stride) of a BasicConv2d. branches: lists of
    steps, run in turn from the input: a conv's name, a tuple of names (run side by side on
    the same input and concatenated), "avg" (3x3/1 average pooling) or "max" (3x3/2 max
    pooling). The output is the branches' concatenation.
    """

    def __init__(self, convs, branches):
        super().__init__()
        for name, (c_in, c_out, kernel, padding, *stride) in convs.items():
            self.add_module(name, TorchBasicConv2d(c_in, c_out, kernel, *stride,
                                                   padding=padding))
        self.branches = branches

    def step(self, x, step):
        if step == "avg":
            return torch.nn.functional.avg_pool2d(x, 3, 1, 1)
        if step == "max":
            return torch.nn.functional.max_pool2d(x, 3, 2)
        if isinstance(step, tuple):
            return torch.cat([getattr(self, name)(x) for name in step], 1)
        return getattr(self, step)(x)

    def forward(self, x):
        outputs = []
        for branch in self.branches:
            y = x
            for step in branch:
                y = self.step(y, step)
            outputs.append(y)
        return torch.cat(outputs, 1)


def mixed_a(c_in, pool_features):
    return TorchMixed(
        {"branch1x1": (c_in, 64, 1, 0), "branch5x5_1": (c_in, 48, 1, 0),
         "branch5x5_2": (48, 64, 5, 2), "branch3x3dbl_1": (c_in, 64, 1, 0),
         "branch3x3dbl_2": (64, 96, 3, 1), "branch3x3dbl_3": (96, 96, 3, 1),
         "branch_pool": (c_in, pool_features, 1, 0)},
        [["branch1x1"], ["branch5x5_1", "branch5x5_2"],
         ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], ["avg", "branch_pool"]])


def mixed_b(c_in):
    return TorchMixed(
        {"branch3x3": (c_in, 384, 3, 0, 2), "branch3x3dbl_1": (c_in, 64, 1, 0),
         "branch3x3dbl_2": (64, 96, 3, 1), "branch3x3dbl_3": (96, 96, 3, 0, 2)},
        [["branch3x3"], ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"], ["max"]])


def mixed_c(c_in, c7):
    row, column = ((1, 7), (0, 3)), ((7, 1), (3, 0))         # (kernel, padding)
    return TorchMixed(
        {"branch1x1": (c_in, 192, 1, 0), "branch7x7_1": (c_in, c7, 1, 0),
         "branch7x7_2": (c7, c7, *row), "branch7x7_3": (c7, 192, *column),
         "branch7x7dbl_1": (c_in, c7, 1, 0), "branch7x7dbl_2": (c7, c7, *column),
         "branch7x7dbl_3": (c7, c7, *row), "branch7x7dbl_4": (c7, c7, *column),
         "branch7x7dbl_5": (c7, 192, *row), "branch_pool": (c_in, 192, 1, 0)},
        [["branch1x1"], ["branch7x7_1", "branch7x7_2", "branch7x7_3"],
         [f"branch7x7dbl_{i}" for i in range(1, 6)], ["avg", "branch_pool"]])


def mixed_d(c_in):
    return TorchMixed(
        {"branch3x3_1": (c_in, 192, 1, 0), "branch3x3_2": (192, 320, 3, 0, 2),
         "branch7x7x3_1": (c_in, 192, 1, 0), "branch7x7x3_2": (192, 192, (1, 7), (0, 3)),
         "branch7x7x3_3": (192, 192, (7, 1), (3, 0)), "branch7x7x3_4": (192, 192, 3, 0, 2)},
        [["branch3x3_1", "branch3x3_2"], [f"branch7x7x3_{i}" for i in range(1, 5)], ["max"]])


def mixed_e(c_in):
    row, column = ((1, 3), (0, 1)), ((3, 1), (1, 0))
    return TorchMixed(
        {"branch1x1": (c_in, 320, 1, 0), "branch3x3_1": (c_in, 384, 1, 0),
         "branch3x3_2a": (384, 384, *row), "branch3x3_2b": (384, 384, *column),
         "branch3x3dbl_1": (c_in, 448, 1, 0), "branch3x3dbl_2": (448, 384, 3, 1),
         "branch3x3dbl_3a": (384, 384, *row), "branch3x3dbl_3b": (384, 384, *column),
         "branch_pool": (c_in, 192, 1, 0)},
        [["branch1x1"], ["branch3x3_1", ("branch3x3_2a", "branch3x3_2b")],
         ["branch3x3dbl_1", "branch3x3dbl_2", ("branch3x3dbl_3a", "branch3x3dbl_3b")],
         ["avg", "branch_pool"]])


class TorchInceptionV3(torch.nn.Module):
    """Inception-v3 in evaluation (its auxiliary head is built, for the keys, but not run)."""

    def __init__(self, num_classes):
        super().__init__()
        self.Conv2d_1a_3x3 = TorchBasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = TorchBasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = TorchBasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = TorchBasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = TorchBasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = (mixed_a(192, 32), mixed_a(256, 64),
                                                       mixed_a(288, 64))
        self.Mixed_6a = mixed_b(288)
        self.Mixed_6b = mixed_c(768, 128)
        self.Mixed_6c, self.Mixed_6d = mixed_c(768, 160), mixed_c(768, 160)
        self.Mixed_6e = mixed_c(768, 192)
        self.AuxLogits = torch.nn.Module()
        self.AuxLogits.conv0 = TorchBasicConv2d(768, 128, 1)
        self.AuxLogits.conv1 = TorchBasicConv2d(128, 768, 5)
        self.AuxLogits.fc = torch.nn.Linear(768, num_classes)
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = mixed_d(768), mixed_e(1280), mixed_e(2048)
        self.fc = torch.nn.Linear(2048, num_classes)

    def forward(self, x):
        pool = torch.nn.functional.max_pool2d
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(pool(x, 3, 2))), 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_inception_v3_matches_pytorch_at_its_smallest_input():
    torch.manual_seed(0)
    assert_same_logits(inception_v3(num_classes=10), TorchInceptionV3(10), (1, 3, 75, 75))


def test_inception_v3_auxiliary_head_trains_on_the_17x17_map():
    """The head's 5x5/3 pooling and 5x5 convolution take 17 x 17 (the map of a 299 x 299
    input) down to 1 x 1; a 16 x 16 map is refused with a message saying what to do."""
    head = InceptionAux(768, 10).train()
    x = cl.tensor(np.random.default_rng(0).standard_normal((2, 768, 17, 17)).astype(np.float32))
    logits = head(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in head.parameters())
    with pytest.raises(OpError, match="aux_logits=False"):
        head(cl.tensor(np.zeros((2, 768, 16, 16), dtype=np.float32)))
