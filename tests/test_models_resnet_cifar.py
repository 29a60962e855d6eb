"""The CIFAR ResNets, stochastic depth, pre-activation ResNets and Wide ResNets: the exact
sizes beside the papers' rounded figures, PyTorch's logits, training steps with the options no
registered model has, and the block-dropping statistics of stochastic depth.

The PyTorch reference models below are written from the papers (He et al. 2016, "Deep
Residual Learning" section 4.2 and "Identity Mappings"; Zagoruyko and Komodakis 2016) with
the module names of cnnlite's models, so that the weights copy across by key.
"""
import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import models, nn
from cnnlite.models import preact_resnet, resnet_cifar, wide_resnet
from model_parity import assert_same_logits

# The exact counts of the default models are tested with every registered model
# (test_models.py). Here: that they round to the papers' figures, name -> (millions of
# parameters, decimals). He et al. 2016 table 6 (CIFAR ResNets, option A); He et al. 2016b
# ("Identity Mappings") table 4 (pre-activation); Zagoruyko and Komodakis 2016 (WRN-28-10).
PAPER_MILLIONS = {
    "resnet20": (0.27, 2), "resnet32": (0.46, 2), "resnet44": (0.66, 2), "resnet56": (0.85, 2),
    "resnet110": (1.7, 1), "preact_resnet110": (1.7, 1), "preact_resnet164": (1.7, 1),
    "wrn28_10": (36.5, 1),
}


def count_parameters(model):
    return sum(p.data.size for p in model.parameters())


# --- PyTorch references ---------------------------------------------------------------------

def torch_conv(in_channels, out_channels, kernel_size, stride=1):
    return torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                           padding=kernel_size // 2, bias=False)


class TorchCifarBlock(torch.nn.Module):
    """He et al.'s CIFAR unit: relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x)))))), with the
    shortcut subsampling and zero-padding channels (A) or projecting (B)."""

    def __init__(self, in_channels, channels, stride, shortcut):
        super().__init__()
        self.conv1, self.bn1 = torch_conv(in_channels, channels, 3, stride), \
            torch.nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = torch_conv(channels, channels, 3), torch.nn.BatchNorm2d(channels)
        self.stride, self.extra_channels = stride, channels - in_channels
        self.reshapes = stride != 1 or in_channels != channels
        if self.reshapes and shortcut == "B":
            self.downsample = torch.nn.Sequential(torch_conv(in_channels, channels, 1, stride),
                                                  torch.nn.BatchNorm2d(channels))
        else:
            self.downsample = None

    def shortcut(self, x):
        if self.downsample is not None:
            return self.downsample(x)
        if not self.reshapes:
            return x
        subsampled = x[:, :, ::self.stride, ::self.stride]
        zeros = subsampled.new_zeros(x.shape[0], self.extra_channels, *subsampled.shape[2:])
        return torch.cat([subsampled, zeros], dim=1)

    def forward(self, x):
        branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(self.shortcut(x) + branch)


class TorchCifarResNet(torch.nn.Module):
    def __init__(self, depth, shortcut="A", num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1, self.bn1 = torch_conv(3, 16, 3), torch.nn.BatchNorm2d(16)
        widths = [16, 16, 32, 64]
        for stage in range(1, 4):
            units = [TorchCifarBlock(widths[stage - 1] if i == 0 else widths[stage],
                                     widths[stage], 2 if stage > 1 and i == 0 else 1, shortcut)
                     for i in range(n)]
            setattr(self, f"layer{stage}", torch.nn.Sequential(*units))
        self.fc = torch.nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


class TorchPreActUnit(torch.nn.Module):
    """BN-ReLU before every convolution; an identity shortcut carries x, a projection
    shortcut (1x1, no batch norm) the pre-activated x. ``bottleneck``: 1x1, 3x3, 1x1 (x4)."""

    def __init__(self, in_channels, channels, stride, preactivate, bottleneck):
        super().__init__()
        out_channels = channels * (4 if bottleneck else 1)
        self.bn1 = torch.nn.BatchNorm2d(in_channels) if preactivate else None
        if bottleneck:
            self.conv1 = torch_conv(in_channels, channels, 1)
            self.bn2, self.conv2 = torch.nn.BatchNorm2d(channels), torch_conv(channels,
                                                                               channels, 3, stride)
            self.bn3, self.conv3 = torch.nn.BatchNorm2d(channels), torch_conv(channels,
                                                                               out_channels, 1)
        else:
            self.conv1 = torch_conv(in_channels, channels, 3, stride)
            self.bn2, self.conv2 = torch.nn.BatchNorm2d(channels), torch_conv(channels,
                                                                               channels, 3)
        self.bottleneck = bottleneck
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = torch_conv(in_channels, out_channels, 1, stride)

    def forward(self, x):
        pre = x if self.bn1 is None else torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(pre))))
        if self.bottleneck:
            out = self.conv3(torch.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(pre))


class TorchPreActResNet(torch.nn.Module):
    """Stem conv1-BN-ReLU (7x7/2 and max pool for ImageNet, 3x3 for CIFAR), units whose first
    one borrows the stem's activation, final BN-ReLU, average pool, fc. ``stem_activation``
    False: Wide ResNet's stem, a bare conv1, and every unit pre-activates."""

    def __init__(self, layers, channels, bottleneck, cifar, num_classes,
                 stem_activation=True, stem_channels=None):
        super().__init__()
        stem = stem_channels or (16 if cifar else 64)
        self.conv1 = torch_conv(3, stem, 3) if cifar else torch.nn.Conv2d(3, stem, 7, 2, 3,
                                                                          bias=False)
        self.pool = torch.nn.Identity() if cifar else torch.nn.MaxPool2d(3, 2, 1)
        self.bn1 = torch.nn.BatchNorm2d(stem) if stem_activation else None
        expansion = 4 if bottleneck else 1
        in_channels = stem
        for index, (count, width) in enumerate(zip(layers, channels)):
            units = []
            for i in range(count):
                first_of_network = index == 0 and i == 0
                units.append(TorchPreActUnit(in_channels, width, 2 if index and not i else 1,
                                             not (first_of_network and stem_activation),
                                             bottleneck))
                in_channels = width * expansion
            setattr(self, f"layer{index + 1}", torch.nn.Sequential(*units))
        self.stages = len(layers)
        self.final_bn = torch.nn.BatchNorm2d(in_channels)
        self.fc = torch.nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.pool(torch.relu(self.bn1(x)))
        for index in range(1, self.stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(torch.relu(self.final_bn(x)).mean(dim=(2, 3)))


# --- sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PAPER_MILLIONS)
def test_exact_sizes_round_to_the_papers_figures(name):
    millions, decimals = PAPER_MILLIONS[name]
    assert round(models.reference(name).params / 1e6, decimals) == millions


def test_option_b_adds_the_projections_and_their_batch_norms():
    # 16->32 and 32->64, 1x1: 512 + 2,048 weights, plus 2 * (32 + 64) batch-norm values.
    with nn.init.skip_init():  # the count needs no random weights
        model = resnet_cifar.resnet20(shortcut="B")
    assert count_parameters(model) == models.reference("resnet20").params + 2_752


def test_preact_resnet1001_is_the_papers_10_2m_without_batch_norm():
    with nn.init.skip_init():
        model = preact_resnet.preact_resnet1001()
    batch_norm = sum(p.data.size for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                     for p in m.parameters())
    assert count_parameters(model) == 10_327_706
    assert batch_norm == 149_216
    assert round((count_parameters(model) - batch_norm) / 1e6, 1) == 10.2


@pytest.mark.parametrize("bad", [
    lambda: resnet_cifar.CifarResNet(21),
    lambda: resnet_cifar.resnet20(shortcut="C"),
    lambda: preact_resnet.preact_resnet_cifar(100, bottleneck=True),
    lambda: wide_resnet.wide_resnet_cifar(27, 10),
])
def test_impossible_depths_and_options_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


# --- PyTorch's logits -----------------------------------------------------------------------

@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_matches_pytorch(shortcut):
    torch.manual_seed(0)
    assert_same_logits(resnet_cifar.resnet20(shortcut=shortcut),
                       TorchCifarResNet(20, shortcut), (2, 3, 32, 32))


def test_preact_resnet18_matches_pytorch():
    torch.manual_seed(0)
    reference = TorchPreActResNet((2, 2, 2, 2), (64, 128, 256, 512), bottleneck=False,
                                  cifar=False, num_classes=1000)
    assert_same_logits(preact_resnet.preact_resnet18(), reference, (2, 3, 32, 32))


def test_preact_cifar_bottleneck_matches_pytorch():
    """Depth 20 = 9 * 2 + 2: the units of preact_resnet164 and 1001, two per stage."""
    torch.manual_seed(0)
    reference = TorchPreActResNet((2, 2, 2), (16, 32, 64), bottleneck=True, cifar=True,
                                  num_classes=10)
    assert_same_logits(preact_resnet.preact_resnet_cifar(20), reference, (2, 3, 32, 32))


def test_wide_resnet_matches_pytorch():
    """WRN-10-2 (one unit per group): a bare conv1, every unit pre-activated."""
    torch.manual_seed(0)
    reference = TorchPreActResNet((1, 1, 1), (32, 64, 128), bottleneck=False, cifar=True,
                                  num_classes=10, stem_activation=False)
    model = wide_resnet.wide_resnet_cifar(10, 2, dropout=0.3)
    assert_same_logits(model, reference, (2, 3, 32, 32))


# --- training steps -------------------------------------------------------------------------

# The settings no registered model has, at 32 x 32, batch 2 (the registered models:
# test_models.py): option-B shortcuts, basic pre-activation units on CIFAR, dropout in a
# Wide ResNet.
TRAINABLE = {
    "resnet20_option_b": lambda: resnet_cifar.resnet20(shortcut="B"),
    "preact_cifar_basic_20": lambda: preact_resnet.preact_resnet_cifar(20, bottleneck=False),
    "wrn_10_2_dropout": lambda: wide_resnet.wide_resnet_cifar(10, 2, dropout=0.3),
}


@pytest.mark.parametrize("name", TRAINABLE)
def test_forward_and_backward_at_32x32(name):
    model = TRAINABLE[name]()
    x = cl.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 10)
    cl.functional.cross_entropy(logits, np.array([1, 7])).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and np.isfinite(param.grad).all(), param_name


# --- stochastic depth -----------------------------------------------------------------------

def residual_blocks(model):
    return [block for stage in (model.layer1, model.layer2, model.layer3) for block in stage]


def test_stochastic_depth_decays_linearly_to_half():
    """Huang et al.: block l of L is skipped with probability (l / L) (1 - p_L), p_L = 0.5."""
    blocks = residual_blocks(resnet_cifar.resnet110_stochastic_depth())
    assert len(blocks) == 54
    for l, block in enumerate(blocks, start=1):
        assert block.stochastic_depth.mode == "batch"
        assert block.stochastic_depth.p == pytest.approx(0.5 * l / 54)


def test_blocks_are_skipped_as_often_as_their_probability():
    """Each block's stochastic depth in the training model, drawing from the model's seeded
    generator: how often it zeroes a branch (for the whole batch, the survivors scaled by
    1 / p_l), against 1 - p_l = (l / L) * 0.5."""
    model = resnet_cifar.resnet110_stochastic_depth(rng=np.random.default_rng(0)).train()
    branch = cl.tensor(np.ones((2, 1, 1, 1), np.float32))
    expected = 0.5 * np.arange(1, 55) / 54
    trials = 300
    frequency = np.zeros(54)
    for index, block in enumerate(residual_blocks(model)):
        outputs = np.stack([block.stochastic_depth(branch).data for _ in range(trials)])
        skipped = ~outputs.reshape(trials, -1).any(axis=1)
        np.testing.assert_allclose(outputs[~skipped], 1 / (1 - block.stochastic_depth.p))
        frequency[index] = skipped.mean()
    # Every block within 4 standard deviations; the total within 3 of its own.
    assert np.all(np.abs(frequency - expected) <= 4 * np.sqrt(expected * (1 - expected) / trials))
    total_sd = np.sqrt(np.sum(expected * (1 - expected)) * trials)
    assert abs(frequency.sum() - expected.sum()) * trials <= 3 * total_sd


def test_a_skipped_block_passes_its_shortcut_on():
    block = resnet_cifar.CifarBasicBlock(16, 32, stride=2, drop_prob=1.0).train()
    x = np.abs(np.random.default_rng(0).standard_normal((2, 16, 8, 8))).astype(np.float32)
    expected = np.concatenate([x[:, :, ::2, ::2], np.zeros((2, 16, 4, 4), np.float32)], axis=1)
    np.testing.assert_array_equal(block(cl.tensor(x)).data, expected)


def test_evaluation_is_deterministic_and_the_plain_network():
    model = resnet_cifar.resnet110_stochastic_depth(rng=np.random.default_rng(0)).eval()
    plain = resnet_cifar.resnet110().eval()
    plain.load_state_dict(model.state_dict())
    x = cl.tensor(np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32))
    with cl.no_grad():
        first, second, without = model(x).data, model(x).data, plain(x).data
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, without)
