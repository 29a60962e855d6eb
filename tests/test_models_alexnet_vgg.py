"""AlexNet and its relatives, NiN, VGG and SqueezeNet: exact sizes, shapes and PyTorch's logits.

The PyTorch reference models below are written from the papers and torchvision's definitions
(AlexNet's paper and Caffe files for the grouped version), with the same module names, so
that the weights copy across by key.
"""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import models, nn
from cnnlite.errors import OpError
from cnnlite.models import squeezenet, vgg
from cnnlite.models.alexnet import (MODELS as ALEXNET_MODELS, alexnet, alexnet_paper, caffenet,
                                    zfnet)
from cnnlite.models.nin import MODELS as NIN_MODELS, nin_cifar
from model_parity import assert_same_logits

# The slide's per-layer activation values of VGG-16 (CS231n): input, 13 convolutions, 5
# poolings, 3 fully connected layers.
VGG16_ACTIVATIONS = [150_528, 3_211_264, 3_211_264, 802_816, 1_605_632, 1_605_632, 401_408,
                     802_816, 802_816, 802_816, 200_704, 401_408, 401_408, 401_408, 100_352,
                     100_352, 100_352, 100_352, 25_088, 4_096, 4_096, 1_000]


def build_unfilled(constructor, **kwargs):
    """The model without random weights: the tests below only count them or overwrite them
    all, and drawing 138 million random numbers for a VGG takes seconds."""
    with nn.init.skip_init():
        return constructor(**kwargs)


@pytest.fixture(scope="module")
def paper_alexnet():
    return build_unfilled(alexnet_paper)


@pytest.fixture(scope="module")
def vgg16_model():
    return build_unfilled(vgg.vgg16)


# --- PyTorch references ---------------------------------------------------------------------

class TorchAlexNet(torch.nn.Module):
    """torchvision's AlexNet: 64-192-384-256-256, adaptive pooling to 6x6, dropout first."""

    def __init__(self, num_classes):
        super().__init__()
        tnn = torch.nn
        self.features = tnn.Sequential(
            tnn.Conv2d(3, 64, 11, stride=4, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
            tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
            tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(),
            tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(),
            tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2))
        self.avgpool = tnn.AdaptiveAvgPool2d(6)
        self.classifier = tnn.Sequential(
            tnn.Dropout(), tnn.Linear(9216, 4096), tnn.ReLU(),
            tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchPaperAlexNet(torch.nn.Module):
    """bvlc_alexnet: LRN(5, 1e-4, 0.75, k=1) before pool1 and pool2, conv2/4/5 in 2 groups."""

    def __init__(self, num_classes):
        super().__init__()
        tnn = torch.nn

        def lrn():
            return tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)

        self.features = tnn.Sequential(OrderedDict([
            ("conv1", tnn.Conv2d(3, 96, 11, stride=4)), ("relu1", tnn.ReLU()),
            ("norm1", lrn()), ("pool1", tnn.MaxPool2d(3, 2)),
            ("conv2", tnn.Conv2d(96, 256, 5, padding=2, groups=2)), ("relu2", tnn.ReLU()),
            ("norm2", lrn()), ("pool2", tnn.MaxPool2d(3, 2)),
            ("conv3", tnn.Conv2d(256, 384, 3, padding=1)), ("relu3", tnn.ReLU()),
            ("conv4", tnn.Conv2d(384, 384, 3, padding=1, groups=2)), ("relu4", tnn.ReLU()),
            ("conv5", tnn.Conv2d(384, 256, 3, padding=1, groups=2)), ("relu5", tnn.ReLU()),
            ("pool5", tnn.MaxPool2d(3, 2))]))
        self.classifier = tnn.Sequential(OrderedDict([
            ("fc6", tnn.Linear(9216, 4096)), ("relu6", tnn.ReLU()), ("drop6", tnn.Dropout()),
            ("fc7", tnn.Linear(4096, 4096)), ("relu7", tnn.ReLU()), ("drop7", tnn.Dropout()),
            ("fc8", tnn.Linear(4096, num_classes))]))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class TorchVGG(torch.nn.Module):
    """torchvision's VGG for a list of channels and "M"s (Table 1 of the paper)."""

    def __init__(self, config, batch_norm, num_classes):
        super().__init__()
        tnn = torch.nn
        layers, channels = [], 3
        for item in config:
            if item == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers.append(tnn.Conv2d(channels, item, 3, padding=1))
                layers += [tnn.BatchNorm2d(item)] if batch_norm else []
                layers.append(tnn.ReLU())
                channels = item
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d(7)
        self.classifier = tnn.Sequential(
            tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(),
            tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchFire(torch.nn.Module):
    def __init__(self, in_channels, squeeze, expand1x1, expand3x3):
        super().__init__()
        self.squeeze = torch.nn.Conv2d(in_channels, squeeze, 1)
        self.expand1x1 = torch.nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = torch.nn.Conv2d(squeeze, expand3x3, 3, padding=1)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)


class TorchSqueezeNet11(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        tnn = torch.nn

        def pool():
            return tnn.MaxPool2d(3, 2, ceil_mode=True)

        self.features = tnn.Sequential(
            tnn.Conv2d(3, 64, 3, stride=2), tnn.ReLU(), pool(),
            TorchFire(64, 16, 64, 64), TorchFire(128, 16, 64, 64), pool(),
            TorchFire(128, 32, 128, 128), TorchFire(256, 32, 128, 128), pool(),
            TorchFire(256, 48, 192, 192), TorchFire(384, 48, 192, 192),
            TorchFire(384, 64, 256, 256), TorchFire(512, 64, 256, 256))
        self.classifier = tnn.Sequential(tnn.Dropout(), tnn.Conv2d(512, num_classes, 1),
                                         tnn.ReLU(), tnn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class TorchNiNCifar(torch.nn.Module):
    """The paper's CIFAR-10 NiN: three mlpconv blocks, Caffe's rounded-up poolings."""

    def __init__(self, num_classes):
        super().__init__()
        tnn = torch.nn

        def block(in_channels, channels, kernel_size):
            a, b, c = channels
            return tnn.Sequential(OrderedDict([
                ("conv", tnn.Conv2d(in_channels, a, kernel_size, padding=kernel_size // 2)),
                ("relu", tnn.ReLU()), ("cccp1", tnn.Conv2d(a, b, 1)), ("relu1", tnn.ReLU()),
                ("cccp2", tnn.Conv2d(b, c, 1)), ("relu2", tnn.ReLU())]))

        self.features = tnn.Sequential(OrderedDict([
            ("mlpconv1", block(3, (192, 160, 96), 5)),
            ("pool1", tnn.MaxPool2d(3, 2, ceil_mode=True)), ("dropout1", tnn.Dropout()),
            ("mlpconv2", block(96, (192, 192, 192), 5)),
            ("pool2", tnn.AvgPool2d(3, 2, ceil_mode=True)), ("dropout2", tnn.Dropout()),
            ("mlpconv3", block(192, (192, 192, num_classes), 3))]))

    def forward(self, x):
        return self.features(x).mean(dim=(2, 3))


# --- sizes (the default models' counts: tests/test_models.py) --------------------------------

def test_alexnet_paper_without_groups_has_62_378_344_parameters():
    model = build_unfilled(alexnet_paper, groups=1)
    assert sum(p.size for p in model.parameters()) == 62_378_344


def test_every_family_module_registers_its_models_at_their_reference_size():
    registered = {**ALEXNET_MODELS, **NIN_MODELS, **vgg.MODELS, **squeezenet.MODELS}
    for name, entry in registered.items():
        assert models.entry(name) == entry
        assert (3, *entry.input_size) == models.reference(name).input_size
    assert registered["alexnet_paper"].small_input is None


# --- shapes ---------------------------------------------------------------------------------

def _map_sizes(model, size):
    """Height of every convolution's and pooling's output, in order."""
    rows = cl.summary(model, (3, size, size)).rows
    return [row.output_shape[2] for row in rows if row.type in ("Conv2d", "MaxPool2d")]


def test_alexnet_paper_maps_are_55_27_27_13_13_13_13_6(paper_alexnet):
    assert _map_sizes(paper_alexnet, 227) == [55, 27, 27, 13, 13, 13, 13, 6]


def test_zfnet_maps_are_those_of_its_figure():
    assert _map_sizes(build_unfilled(zfnet), 224) == [110, 55, 26, 13, 13, 13, 13, 6]


@pytest.mark.parametrize("size", [224, 228])
def test_alexnet_paper_says_it_expects_227x227(paper_alexnet, size):
    with pytest.raises(OpError, match=r"AlexNet: expected input of shape \(N, 3, 227, 227\)"
                                      r".*227x227.*got \(1, 3, " + str(size)):
        paper_alexnet(np.zeros((1, 3, size, size), dtype=np.float32))


def test_caffenet_pools_before_it_normalises():
    names = [name for name, _ in build_unfilled(caffenet).features.named_children()]
    assert names[2:4] == ["pool1", "norm1"] and names[6:8] == ["pool2", "norm2"]


def test_paper_lrn_is_k_2_with_alpha_not_divided_by_the_window():
    """The paper's formula equals PyTorch's (Caffe's) with alpha multiplied by n = 5."""
    model = build_unfilled(alexnet_paper, lrn_k=2.0, lrn_alpha_over_size=False)
    x = np.random.default_rng(0).normal(0, 30, (1, 96, 5, 5)).astype(np.float32)
    expected = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(torch.from_numpy(x))
    np.testing.assert_allclose(model.features.norm1(cl.tensor(x)).data, expected.numpy(),
                               rtol=1e-5)


def test_vgg16_activations_per_layer_are_the_slides(vgg16_model):
    table = vgg.activations_per_layer(vgg16_model)
    assert [values for _, _, values in table] == VGG16_ACTIVATIONS
    assert sum(VGG16_ACTIVATIONS) == 15_237_608
    assert table[1] == ("features.0", (64, 224, 224), 3_211_264)
    assert table[-1] == ("classifier.6", (1000,), 1_000)


# --- PyTorch parity -------------------------------------------------------------------------

def test_alexnet_matches_pytorch_on_a_small_input():
    torch.manual_seed(0)
    assert_same_logits(build_unfilled(alexnet, num_classes=10), TorchAlexNet(10),
                       (2, 3, 64, 64))


def test_alexnet_paper_matches_pytorch_with_lrn_and_groups():
    torch.manual_seed(0)
    model = build_unfilled(alexnet_paper, num_classes=10)
    assert_same_logits(model, TorchPaperAlexNet(10), (1, 3, 227, 227))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg11_matches_pytorch(batch_norm):
    torch.manual_seed(0)
    model = build_unfilled(vgg.vgg11_bn if batch_norm else vgg.vgg11, num_classes=10)
    assert_same_logits(model, TorchVGG(vgg.CONFIGS["A"], batch_norm, 10), (2, 3, 32, 32))


def test_squeezenet1_1_matches_pytorch():
    torch.manual_seed(0)
    assert_same_logits(squeezenet.squeezenet1_1(num_classes=10), TorchSqueezeNet11(10),
                       (2, 3, 64, 64))


def test_nin_cifar_matches_pytorch():
    torch.manual_seed(0)
    assert_same_logits(nin_cifar(), TorchNiNCifar(10), (2, 3, 32, 32))


def test_fire_concatenates_the_1x1_maps_before_the_3x3_maps():
    fire = squeezenet.Fire(8, 4, 3, 5)
    x = cl.tensor(np.random.default_rng(0).normal(size=(1, 8, 6, 6)).astype(np.float32))
    squeezed = cl.functional.relu(fire.squeeze(x))
    out = fire(x).data
    assert out.shape == (1, 8, 6, 6)
    np.testing.assert_allclose(out[:, :3], cl.functional.relu(fire.expand1x1(squeezed)).data)
    np.testing.assert_allclose(out[:, 3:], cl.functional.relu(fire.expand3x3(squeezed)).data)
