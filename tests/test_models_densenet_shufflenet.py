"""DenseNet and ShuffleNet V2: exact sizes, the blocks' behaviour, and PyTorch's logits.

The PyTorch reference models below are written from the papers (DenseNet-BC, Huang et al.
2017; ShuffleNet V2, Ma et al. 2018) with torchvision's module names, so that the weights copy
across by key.
"""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import nn
from cnnlite.models import densenet, shufflenet
from cnnlite.models.blocks import channel_shuffle
from model_parity import assert_same_logits


# --- PyTorch references ---------------------------------------------------------------------

class TorchDenseLayer(torch.nn.Module):
    def __init__(self, in_channels, growth_rate, bn_size=4):
        super().__init__()
        self.norm1 = torch.nn.BatchNorm2d(in_channels)
        self.relu1 = torch.nn.ReLU()
        self.conv1 = torch.nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = torch.nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1,
                                     bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TorchDenseBlock(torch.nn.ModuleDict):
    def __init__(self, num_layers, in_channels, growth_rate):
        super().__init__({f"denselayer{i + 1}": TorchDenseLayer(in_channels + i * growth_rate,
                                                                growth_rate)
                          for i in range(num_layers)})

    def forward(self, x):
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TorchDenseNet(torch.nn.Module):
    def __init__(self, growth_rate, block_config, num_init_features, num_classes):
        super().__init__()
        self.features = torch.nn.Sequential(OrderedDict([
            ("conv0", torch.nn.Conv2d(3, num_init_features, 7, 2, 3, bias=False)),
            ("norm0", torch.nn.BatchNorm2d(num_init_features)),
            ("relu0", torch.nn.ReLU()),
            ("pool0", torch.nn.MaxPool2d(3, 2, 1)),
        ]))
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{i}",
                                     TorchDenseBlock(num_layers, channels, growth_rate))
            channels += num_layers * growth_rate
            if i < len(block_config):
                self.features.add_module(f"transition{i}", torch.nn.Sequential(OrderedDict([
                    ("norm", torch.nn.BatchNorm2d(channels)), ("relu", torch.nn.ReLU()),
                    ("conv", torch.nn.Conv2d(channels, channels // 2, 1, bias=False)),
                    ("pool", torch.nn.AvgPool2d(2, 2))])))
                channels //= 2
        self.features.add_module("norm5", torch.nn.BatchNorm2d(channels))
        self.classifier = torch.nn.Linear(channels, num_classes)

    def forward(self, x):
        x = torch.relu(self.features(x)).mean(dim=(2, 3))
        return self.classifier(x)


def torch_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class TorchShuffleUnit(torch.nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        half = out_channels // 2
        self.stride = stride
        if stride == 2:
            self.branch1 = torch.nn.Sequential(
                torch.nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels,
                                bias=False),
                torch.nn.BatchNorm2d(in_channels),
                torch.nn.Conv2d(in_channels, half, 1, bias=False), torch.nn.BatchNorm2d(half),
                torch.nn.ReLU())
        self.branch2 = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels if stride == 2 else half, half, 1, bias=False),
            torch.nn.BatchNorm2d(half), torch.nn.ReLU(),
            torch.nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False),
            torch.nn.BatchNorm2d(half),
            torch.nn.Conv2d(half, half, 1, bias=False), torch.nn.BatchNorm2d(half),
            torch.nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)
            out = torch.cat([left, self.branch2(right)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return torch_shuffle(out, 2)


class TorchShuffleNetV2(torch.nn.Module):
    def __init__(self, repeats, channels, num_classes):
        super().__init__()
        self.conv1 = torch.nn.Sequential(torch.nn.Conv2d(3, channels[0], 3, 2, 1, bias=False),
                                         torch.nn.BatchNorm2d(channels[0]), torch.nn.ReLU())
        self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
        width = channels[0]
        for stage, (count, out) in enumerate(zip(repeats, channels[1:4]), start=2):
            units = [TorchShuffleUnit(width, out, 2)]
            units += [TorchShuffleUnit(out, out, 1) for _ in range(count - 1)]
            setattr(self, f"stage{stage}", torch.nn.Sequential(*units))
            width = out
        self.conv5 = torch.nn.Sequential(torch.nn.Conv2d(width, channels[4], 1, bias=False),
                                         torch.nn.BatchNorm2d(channels[4]), torch.nn.ReLU())
        self.fc = torch.nn.Linear(channels[4], num_classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean(dim=(2, 3)))


# --- shapes (the counts: tests/test_models.py) ---------------------------------------------

def test_densenet121_stages_have_the_shapes_of_table_1():
    with nn.init.skip_init():  # only the shapes are looked at
        model = densenet.densenet121()
    rows = {row.name: row.output_shape[1:] for row in cl.summary(model, (3, 224, 224)).rows}
    assert rows["features.conv0"] == (64, 112, 112)
    assert rows["features.pool0"] == (64, 56, 56)
    # A transition's batch norm sees the whole output of the block before it.
    assert rows["features.transition1.norm"] == (256, 56, 56)
    assert rows["features.transition1.pool"] == (128, 28, 28)
    assert rows["features.transition2.norm"] == (512, 28, 28)
    assert rows["features.transition2.pool"] == (256, 14, 14)
    assert rows["features.transition3.norm"] == (1024, 14, 14)
    assert rows["features.transition3.pool"] == (512, 7, 7)
    assert rows["features.norm5"] == (1024, 7, 7)
    assert rows["classifier"] == (1000,)


# --- the blocks ---------------------------------------------------------------------------------

def test_channel_shuffle_interleaves_the_groups():
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)       # channels 0..5
    assert channel_shuffle(cl.tensor(x), 2).data.ravel().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(cl.tensor(x), 3).data.ravel().tolist() == [0, 2, 4, 1, 3, 5]


def test_channel_shuffle_sends_each_gradient_back_to_its_channel():
    x = cl.tensor(np.zeros((1, 6, 1, 1), np.float32), requires_grad=True)
    upstream = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    (channel_shuffle(x, 2) * cl.tensor(upstream)).sum().backward()
    # Output channel j holds input channel [0, 3, 1, 4, 2, 5][j].
    assert x.grad.ravel().tolist() == [0, 2, 4, 1, 3, 5]


def test_dense_block_keeps_its_input_and_adds_growth_rate_maps_per_layer(rng):
    block = densenet.DenseBlock(num_layers=3, in_channels=5, growth_rate=4, bn_size=2)
    x = rng.standard_normal((2, 5, 6, 6)).astype(np.float32)
    out = block(cl.tensor(x)).data
    assert out.shape == (2, 5 + 3 * 4, 6, 6)
    np.testing.assert_array_equal(out[:, :5], x)


def test_dense_layer_drops_new_maps_in_training_only(rng):
    layer = densenet.DenseLayer(in_channels=4, growth_rate=64, bn_size=1, drop_rate=0.5)
    x = cl.tensor(rng.standard_normal((2, 4, 8, 8)).astype(np.float32))
    dropped = np.mean(layer(x).data == 0)
    assert 0.4 < dropped < 0.6
    assert np.mean(layer.eval()(x).data == 0) == 0


def test_transition_halves_channels_and_size():
    out = densenet.Transition(8, 4)(cl.tensor(np.ones((1, 8, 6, 6), np.float32)))
    assert out.shape == (1, 4, 3, 3)


def test_basic_shuffle_unit_passes_half_its_input_to_the_even_channels(rng):
    unit = shufflenet.ShuffleUnit(8, 8, stride=1)
    x = rng.standard_normal((2, 8, 5, 5)).astype(np.float32)
    out = unit(cl.tensor(x)).data
    np.testing.assert_array_equal(out[:, 0::2], x[:, :4])


def test_down_sampling_shuffle_unit_halves_the_size():
    unit = shufflenet.ShuffleUnit(8, 16, stride=2)
    assert unit(cl.tensor(np.ones((1, 8, 6, 6), np.float32))).shape == (1, 16, 3, 3)


def test_basic_shuffle_unit_needs_equal_widths():
    with pytest.raises(ValueError, match="stride 1"):
        shufflenet.ShuffleUnit(8, 12, stride=1)


@pytest.mark.parametrize("repeats, channels", [([4, 8], [24, 48, 96, 192, 1024]),
                                               ([4, 8, 4], [24, 48, 96, 1024])])
def test_shufflenet_needs_three_stages_and_five_widths(repeats, channels):
    with pytest.raises(ValueError, match="ShuffleNetV2"):
        shufflenet.ShuffleNetV2(repeats, channels)


def test_densenet_initialisation_is_torchvisions():
    model = densenet.DenseNet(growth_rate=32, block_config=(2, 2, 2, 2))
    conv = model.features.denseblock1.denselayer1.conv1.weight.data      # (128, 64, 1, 1)
    assert abs(conv.std() - np.sqrt(2 / 64)) < 0.1 * np.sqrt(2 / 64)
    assert np.all(model.features.norm5.weight.data == 1)
    assert np.all(model.features.norm5.bias.data == 0)
    assert np.all(model.classifier.bias.data == 0)


# --- against PyTorch ----------------------------------------------------------------------------

def test_densenet121_logits_equal_pytorch():
    torch.manual_seed(0)
    reference = TorchDenseNet(32, (6, 12, 24, 16), 64, num_classes=10)
    assert_same_logits(densenet.densenet121(num_classes=10), reference, (2, 3, 32, 32))


def test_shufflenet_v2_x0_5_logits_equal_pytorch():
    torch.manual_seed(0)
    reference = TorchShuffleNetV2([4, 8, 4], [24, 48, 96, 192, 1024], num_classes=10)
    assert_same_logits(shufflenet.shufflenet_v2_x0_5(num_classes=10), reference,
                       (2, 3, 64, 64))
