"""MobileNet v1, v2, v3 and EfficientNet-B0: the width multipliers' sizes, the blocks' behaviour, and
PyTorch's logits.

The PyTorch reference models below are written from the papers (MobileNetV2, Sandler et al.
2018; MobileNetV3, Howard et al. 2019; EfficientNet, Tan and Le 2019) with torchvision's
module names, so that the weights copy across by key.
"""
from functools import partial

import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import nn
from cnnlite.models import efficientnet, mobilenet, mobilenet_v3
from model_parity import assert_same_logits


# --- PyTorch references ---------------------------------------------------------------------

def torch_conv_bn(in_channels, out_channels, kernel, stride=1, groups=1, activation=None,
                  eps=1e-5, momentum=0.1):
    """conv (same padding, no bias) -> batch norm -> activation, keys 0, 1, 2."""
    layers = [torch.nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2,
                              groups=groups, bias=False),
              torch.nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)]
    if activation is not None:
        layers.append(activation())
    return torch.nn.Sequential(*layers)


def round_to_8(value):
    """The TensorFlow reference's channel rounding (nearest multiple of 8, at most 10 % down)."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


class TorchSqueezeExcitation(torch.nn.Module):
    def __init__(self, channels, squeeze, activation, gate):
        super().__init__()
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc1 = torch.nn.Conv2d(channels, squeeze, 1)
        self.fc2 = torch.nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = gate()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class TorchMobileNetV2Block(torch.nn.Module):
    """Expand 1x1 (ReLU6), depthwise 3x3 (ReLU6), linear projection 1x1."""

    def __init__(self, in_channels, out_channels, stride, t):
        super().__init__()
        hidden = in_channels * t
        layers = [torch_conv_bn(in_channels, hidden, 1, activation=torch.nn.ReLU6)] if t > 1 \
            else []
        layers += [torch_conv_bn(hidden, hidden, 3, stride, hidden, torch.nn.ReLU6),
                   torch.nn.Conv2d(hidden, out_channels, 1, bias=False),
                   torch.nn.BatchNorm2d(out_channels)]
        self.conv = torch.nn.Sequential(*layers)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.conv(x) if self.shortcut else self.conv(x)


class TorchMobileNetV2(torch.nn.Module):
    """Table 2 of the paper: rows t, c, n, s."""

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [torch_conv_bn(3, 32, 3, 2, activation=torch.nn.ReLU6)]
        channels = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(TorchMobileNetV2Block(channels, c, s if i == 0 else 1, t))
                channels = c
        layers.append(torch_conv_bn(channels, 1280, 1, activation=torch.nn.ReLU6))
        self.features = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.2),
                                              torch.nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class TorchMobileNetV3Block(torch.nn.Module):
    def __init__(self, in_channels, kernel, expanded, out_channels, se, activation, stride):
        super().__init__()
        bn = dict(eps=0.001, momentum=0.01)
        layers = []
        if expanded != in_channels:
            layers.append(torch_conv_bn(in_channels, expanded, 1, activation=activation, **bn))
        layers.append(torch_conv_bn(expanded, expanded, kernel, stride, expanded, activation,
                                    **bn))
        if se:
            layers.append(TorchSqueezeExcitation(expanded, round_to_8(expanded // 4),
                                                 torch.nn.ReLU, torch.nn.Hardsigmoid))
        layers.append(torch_conv_bn(expanded, out_channels, 1, **bn))
        self.block = torch.nn.Sequential(*layers)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.block(x) if self.shortcut else self.block(x)


RE, HS = torch.nn.ReLU, torch.nn.Hardswish
# kernel, exp size, #out, SE, NL, s: Table 1 (large) and Table 2 (small) of the paper.
V3_LARGE_ROWS = [(3, 16, 16, False, RE, 1), (3, 64, 24, False, RE, 2),
                 (3, 72, 24, False, RE, 1), (5, 72, 40, True, RE, 2),
                 (5, 120, 40, True, RE, 1), (5, 120, 40, True, RE, 1),
                 (3, 240, 80, False, HS, 2), (3, 200, 80, False, HS, 1),
                 (3, 184, 80, False, HS, 1), (3, 184, 80, False, HS, 1),
                 (3, 480, 112, True, HS, 1), (3, 672, 112, True, HS, 1),
                 (5, 672, 160, True, HS, 2), (5, 960, 160, True, HS, 1),
                 (5, 960, 160, True, HS, 1)]
V3_SMALL_ROWS = [(3, 16, 16, True, RE, 2), (3, 72, 24, False, RE, 2),
                 (3, 88, 24, False, RE, 1), (5, 96, 40, True, HS, 2),
                 (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
                 (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1),
                 (5, 288, 96, True, HS, 2), (5, 576, 96, True, HS, 1),
                 (5, 576, 96, True, HS, 1)]


class TorchMobileNetV3(torch.nn.Module):
    """Stem, the bottleneck rows, a 1x1 conv to 6x the last width, pooling, and two fully
    connected layers (``hidden`` wide) with hard swish and dropout between them."""

    def __init__(self, rows, hidden, num_classes=1000):
        super().__init__()
        layers = [torch_conv_bn(3, 16, 3, 2, activation=HS, eps=0.001, momentum=0.01)]
        channels = 16
        for kernel, expanded, out, se, activation, stride in rows:
            layers.append(TorchMobileNetV3Block(channels, kernel, expanded, out, se,
                                                activation, stride))
            channels = out
        layers.append(torch_conv_bn(channels, 6 * channels, 1, activation=HS, eps=0.001,
                                    momentum=0.01))
        self.features = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Sequential(torch.nn.Linear(6 * channels, hidden), HS(),
                                              torch.nn.Dropout(0.2),
                                              torch.nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class TorchMBConv(torch.nn.Module):
    """Expand (SiLU), depthwise (SiLU), SE (input channels / 4, SiLU, sigmoid), project.
    Stochastic depth is the identity in evaluation, so it is left out."""

    def __init__(self, in_channels, out_channels, kernel, stride, t):
        super().__init__()
        expanded = in_channels * t
        silu = torch.nn.SiLU
        layers = [torch_conv_bn(in_channels, expanded, 1, activation=silu)] if t > 1 else []
        layers += [torch_conv_bn(expanded, expanded, kernel, stride, expanded, silu),
                   TorchSqueezeExcitation(expanded, max(1, in_channels // 4), silu,
                                          torch.nn.Sigmoid),
                   torch_conv_bn(expanded, out_channels, 1)]
        self.block = torch.nn.Sequential(*layers)
        self.shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.block(x) if self.shortcut else self.block(x)


class TorchEfficientNetB0(torch.nn.Module):
    """Table 1 of the paper: MBConv t, kernel, stride, channels, layers per stage."""

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [torch_conv_bn(3, 32, 3, 2, activation=torch.nn.SiLU)]
        channels = 32
        for t, kernel, stride, out, repeats in [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2),
                                                (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                                                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                                                (6, 3, 1, 320, 1)]:
            stage = []
            for i in range(repeats):
                stage.append(TorchMBConv(channels, out, kernel, stride if i == 0 else 1, t))
                channels = out
            layers.append(torch.nn.Sequential(*stage))
        layers.append(torch_conv_bn(320, 1280, 1, activation=torch.nn.SiLU))
        self.features = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Sequential(torch.nn.Dropout(0.2),
                                              torch.nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


# --- width multipliers (the default models' counts: tests/test_models.py) -----------------

def test_width_multiplier_thins_mobilenet_v1_as_the_paper_says():
    # alpha = 0.5: every layer int(0.5 * channels); the paper's Table 6 gives 1.3 M
    # parameters and 149 M multiply-adds.
    with nn.init.skip_init():  # only the widths and counts are looked at
        model = mobilenet.mobilenet_v1(width_mult=0.5)
    assert model.features[0][0].out_channels == 16
    assert model.classifier[1].in_features == 512
    table = cl.summary(model, (3, 224, 224))
    assert (table.total_params, table.total_macs) == (1_331_592, 149_497_088)


def test_width_multiplier_rounds_mobilenet_v2_to_multiples_of_8():
    # 0.35 * 32 = 11.2 -> 16; the last layer stays 1280. 1,677,128 params, as torchvision 0.28.
    with nn.init.skip_init():
        model = mobilenet.mobilenet_v2(width_mult=0.35)
    assert model.features[0][0].out_channels == 16
    assert model.last_channel == 1280
    assert sum(p.size for p in model.parameters()) == 1_677_128


@pytest.mark.parametrize("value, expected", [(32, 32), (11.2, 16), (20, 24), (12, 16),
                                             (33.6, 32), (4, 8), (1280 * 0.75, 960)])
def test_make_divisible_rounds_to_the_nearest_multiple_of_8(value, expected):
    assert mobilenet.make_divisible(value) == expected


# --- blocks -----------------------------------------------------------------------------------

def test_depthwise_separable_block_filters_each_channel_then_mixes():
    block = mobilenet.DepthwiseSeparableConv(32, 64, stride=2)
    depthwise, pointwise = block.depthwise[0], block.pointwise[0]
    assert depthwise.groups == 32 and depthwise.weight.shape == (32, 1, 3, 3)
    assert pointwise.weight.shape == (64, 32, 1, 1)
    out = block(cl.tensor(np.ones((2, 32, 8, 8), np.float32)))
    assert out.shape == (2, 64, 4, 4)


@pytest.mark.parametrize("in_channels, out_channels, stride, residual",
                         [(16, 16, 1, True), (16, 24, 1, False), (16, 16, 2, False)])
def test_inverted_residual_adds_the_input_only_when_shapes_allow(in_channels, out_channels,
                                                                 stride, residual):
    block = mobilenet.InvertedResidual(in_channels, out_channels, stride, expand_ratio=6)
    assert block.use_residual is residual
    block.eval()
    # A zero scale in the projection's batch norm makes the branch output 0: what remains
    # is the shortcut.
    nn.init.zeros_(block.conv[3].weight)
    x = np.random.default_rng(0).standard_normal((2, in_channels, 8, 8)).astype(np.float32)
    with cl.no_grad():
        out = block(cl.tensor(x)).data
    if residual:
        np.testing.assert_allclose(out, x, rtol=1e-6)
    else:
        assert np.allclose(out, 0.0)


def test_inverted_residual_expands_six_times_and_projects_without_activation():
    block = mobilenet.InvertedResidual(24, 32, 2, expand_ratio=6)
    expand, depthwise = block.conv[0], block.conv[1]
    assert expand[0].weight.shape == (144, 24, 1, 1)
    assert depthwise[0].groups == 144 and depthwise[0].stride == (2, 2)
    assert isinstance(expand[2], nn.ReLU6)
    assert [type(m) for m in block.conv][2:] == [nn.Conv2d, nn.BatchNorm2d]


def test_mobilenet_v3_bottleneck_puts_the_hard_gated_se_after_the_depthwise_conv():
    block = mobilenet_v3.InvertedResidualSE(40, 5, 120, 40, True, "HS", 1)
    se = block.block[2]
    assert se.fc1.weight.shape == (32, 120, 1, 1)          # make_divisible(120 / 4) = 32
    assert isinstance(se.scale_activation, nn.Hardsigmoid)
    assert isinstance(block.block[0][2], nn.Hardswish)
    assert block.block[0][1].eps == 0.001 and block.block[0][1].momentum == 0.01


def test_mobilenet_v3_dilated_reduced_tail_keeps_resolution_and_halves_the_last_stage():
    model = mobilenet_v3.mobilenet_v3_large(dilated=True, reduced_tail=True)
    model.eval()
    with cl.no_grad():
        features = model.features(cl.tensor(np.zeros((1, 3, 64, 64), np.float32)))
    assert features.shape == (1, 6 * 80, 4, 4)               # output stride 16, not 32
    assert model.classifier[0].out_features == 640


def test_mbconv_squeezes_to_a_quarter_of_its_input_channels():
    block = efficientnet.MBConv(40, 80, kernel=3, stride=2, expand_ratio=6,
                                stochastic_depth_prob=0.0)
    se = block.block[2]
    assert se.fc1.weight.shape == (10, 240, 1, 1)
    assert isinstance(se.activation, nn.SiLU) and isinstance(se.scale_activation, nn.Sigmoid)


def test_efficientnet_stochastic_depth_rises_linearly_over_the_blocks():
    model = efficientnet.efficientnet_b0(stochastic_depth_prob=0.2)
    blocks = [block for stage in list(model.features)[1:-1] for block in stage]
    assert len(blocks) == 16
    np.testing.assert_allclose([block.stochastic_depth.p for block in blocks],
                               [0.2 * i / 16 for i in range(16)])
    assert all(block.stochastic_depth.mode == "row" for block in blocks)


def test_efficientnet_depth_and_width_multipliers_scale_the_stages():
    model = efficientnet.EfficientNet(width_mult=1.1, depth_mult=1.2, num_classes=10)
    stages = list(model.features)[1:-1]
    assert [len(stage) for stage in stages] == [2, 3, 3, 4, 4, 5, 2]     # ceil(1.2 n)
    assert model.features[0][0].out_channels == 32                       # 35.2 -> 32
    assert model.classifier[1].in_features == 1408                       # 4 * 352


# --- parity with PyTorch ----------------------------------------------------------------------

@pytest.mark.parametrize("constructor, reference", [
    (mobilenet.mobilenet_v2, TorchMobileNetV2),
    (mobilenet_v3.mobilenet_v3_large, partial(TorchMobileNetV3, V3_LARGE_ROWS, 1280)),
    (mobilenet_v3.mobilenet_v3_small, partial(TorchMobileNetV3, V3_SMALL_ROWS, 1024)),
    (efficientnet.efficientnet_b0, TorchEfficientNetB0),
], ids=["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0"])
def test_logits_match_pytorch(constructor, reference):
    torch.manual_seed(0)
    # float32 agrees to about 1e-6; a wrong batch-norm eps (1e-3 for 1e-5) shows as 5e-4.
    assert_same_logits(constructor(num_classes=10), reference(num_classes=10), (2, 3, 64, 64),
                       rtol=1e-5)
