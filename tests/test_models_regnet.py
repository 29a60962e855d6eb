"""RegNetY-400MF: the stages its four parameters give, torchvision's state-dict layout,
the blocks' behaviour, the initialisation, and PyTorch's logits.

The PyTorch reference below is written from the paper (Radosavovic et al. 2020) and
torchvision's definition, with the stage table spelled out, and torchvision's module names, so
that the weights copy across by key.
"""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite.models.regnet import BlockParams, ResBottleneckBlock, regnet_y_400mf
from model_parity import assert_same_logits

# (blocks, width) of RegNetY-400MF's four stages; group width 8, SE ratio 0.25.
REGNET_Y_400MF_STAGES = [(1, 48), (3, 104), (6, 208), (6, 440)]


# --- PyTorch reference ----------------------------------------------------------------------

def torch_conv_bn(in_channels, out_channels, kernel, stride=1, groups=1, relu=True):
    """conv (same padding, no bias) -> batch norm [-> ReLU], keys 0, 1, 2."""
    layers = [torch.nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2,
                              groups=groups, bias=False),
              torch.nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class TorchSqueezeExcitation(torch.nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc1 = torch.nn.Conv2d(channels, squeeze, 1)
        self.fc2 = torch.nn.Conv2d(squeeze, channels, 1)
        self.activation = torch.nn.ReLU()
        self.scale_activation = torch.nn.Sigmoid()

    def forward(self, x):
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class TorchYBlock(torch.nn.Module):
    """relu(shortcut(x) + c(se(b(a(x))))): 1x1, grouped 3x3 / stride, SE (squeeze = a quarter
    of the input width), 1x1; a 1x1 projection shortcut where the shape changes."""

    def __init__(self, in_channels, width, stride, group_width=8):
        super().__init__()
        self.proj = (torch_conv_bn(in_channels, width, 1, stride, relu=False)
                     if stride != 1 or in_channels != width else None)
        self.f = torch.nn.Sequential(OrderedDict([
            ("a", torch_conv_bn(in_channels, width, 1)),
            ("b", torch_conv_bn(width, width, 3, stride, groups=width // group_width)),
            ("se", TorchSqueezeExcitation(width, in_channels // 4)),
            ("c", torch_conv_bn(width, width, 1, relu=False)),
        ]))
        self.activation = torch.nn.ReLU()

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class TorchRegNetY400MF(torch.nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.stem = torch_conv_bn(3, 32, 3, 2)
        stages, channels = OrderedDict(), 32
        for i, (blocks, width) in enumerate(REGNET_Y_400MF_STAGES, start=1):
            stage = OrderedDict()
            for j in range(blocks):
                stage[f"block{i}-{j}"] = TorchYBlock(channels, width, 2 if j == 0 else 1)
                channels = width
            stages[f"block{i}"] = torch.nn.Sequential(stage)
        self.trunk_output = torch.nn.Sequential(stages)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.trunk_output(self.stem(x))), 1))


@pytest.fixture(scope="module")
def model():
    return regnet_y_400mf()


# --- the design space: four numbers -> stages -------------------------------------------------

def test_regnet_y_400mf_parameters_give_the_stage_table():
    params = BlockParams.from_init_params(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8,
                                          se_ratio=0.25)
    assert params.depths == [blocks for blocks, _ in REGNET_Y_400MF_STAGES]
    assert params.widths == [width for _, width in REGNET_Y_400MF_STAGES]
    assert params.group_widths == [8, 8, 8, 8]
    assert params.se_ratio == 0.25


def test_widths_are_rounded_to_multiples_of_the_group_width():
    # RegNetX-1.6GF (torchvision's regnet_x_1_6gf): the grid gives widths 80, 176, 408, 912;
    # with g = 24 the first two become 72 and 168.
    params = BlockParams.from_init_params(depth=18, w_0=80, w_a=34.01, w_m=2.25, group_width=24)
    assert params.depths == [2, 4, 10, 2]
    assert params.widths == [72, 168, 408, 912]
    assert params.se_ratio is None


@pytest.mark.parametrize("settings", [dict(w_0=50, w_a=27.89, w_m=2.09),
                                      dict(w_0=48, w_a=-1.0, w_m=2.09),
                                      dict(w_0=48, w_a=27.89, w_m=1.0)])
def test_invalid_design_parameters_are_refused(settings):
    with pytest.raises(ValueError, match="RegNet"):
        BlockParams.from_init_params(depth=16, group_width=8, **settings)


# --- torchvision's layout -----------------------------------------------------------------------

def test_state_dict_has_torchvision_keys_and_shapes(model):
    state = model.state_dict()
    assert len(state) == 384
    expected = {
        "stem.0.weight": (32, 3, 3, 3),
        "stem.1.num_batches_tracked": (),
        "trunk_output.block1.block1-0.proj.0.weight": (48, 32, 1, 1),
        "trunk_output.block1.block1-0.f.a.0.weight": (48, 32, 1, 1),
        "trunk_output.block1.block1-0.f.b.0.weight": (48, 8, 3, 3),
        "trunk_output.block1.block1-0.f.se.fc1.weight": (8, 48, 1, 1),
        "trunk_output.block1.block1-0.f.se.fc2.bias": (48,),
        "trunk_output.block1.block1-0.f.c.1.running_var": (48,),
        "trunk_output.block2.block2-0.f.se.fc1.weight": (12, 104, 1, 1),
        "trunk_output.block2.block2-1.f.se.fc1.weight": (26, 104, 1, 1),
        "trunk_output.block4.block4-5.f.b.0.weight": (440, 8, 3, 3),
        "trunk_output.block4.block4-5.f.se.fc2.weight": (440, 110, 1, 1),
        "fc.weight": (1000, 440),
        "fc.bias": (1000,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert "trunk_output.block2.block2-1.proj.0.weight" not in state


def test_parameter_count(model):
    assert sum(p.data.size for p in model.parameters()) == 4_344_144


def test_num_classes_sizes_the_classifier():
    assert regnet_y_400mf(num_classes=10).fc.weight.shape == (10, 440)


# --- the block ----------------------------------------------------------------------------------

def test_block_projects_the_shortcut_only_when_the_shape_changes():
    assert ResBottleneckBlock(48, 48, 1, 8, 0.25).proj is None
    assert ResBottleneckBlock(48, 48, 2, 8, 0.25).proj is not None
    assert ResBottleneckBlock(48, 104, 1, 8, 0.25).proj is not None


def test_block_without_se_ratio_has_no_se_block():
    assert "se" not in dict(ResBottleneckBlock(48, 48, 1, 8).f.named_children())


def test_block_halves_the_map_with_stride_two():
    block = ResBottleneckBlock(16, 24, 2, 8, 0.25)
    x = cl.tensor(np.random.default_rng(0).standard_normal((1, 16, 7, 7)).astype(np.float32))
    assert block(x).shape == (1, 24, 4, 4)


# --- initialisation -----------------------------------------------------------------------------

def test_initialisation_follows_torchvision():
    model = regnet_y_400mf()
    conv = model.trunk_output.block4[1].f.c[0].weight.data          # (440, 440, 1, 1)
    assert conv.std() == pytest.approx(np.sqrt(2.0 / 440), rel=0.02)
    grouped = model.trunk_output.block3[1].f.b[0].weight.data      # (208, 8, 3, 3)
    assert grouped.std() == pytest.approx(np.sqrt(2.0 / (208 * 9)), rel=0.05)
    assert model.fc.weight.data.std() == pytest.approx(0.01, rel=0.02)
    assert not model.fc.bias.data.any()
    norm = model.trunk_output.block2[0].f.b[1]
    assert (norm.weight.data == 1).all() and not norm.bias.data.any()


# --- PyTorch parity -----------------------------------------------------------------------------

def test_logits_match_pytorch(model):
    torch.manual_seed(0)
    assert_same_logits(model, TorchRegNetY400MF(), (2, 3, 64, 64))


def test_smallest_input_gives_logits():
    model = regnet_y_400mf(num_classes=7).eval()
    x = cl.tensor(np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32))
    with cl.no_grad():
        assert model(x).shape == (1, 7)
