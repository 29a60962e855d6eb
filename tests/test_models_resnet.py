"""ResNet, ResNeXt, wide ResNet and SENet: the state-dict keys, PyTorch's logits, stochastic
depth and the zero-initialised residual branches.

The PyTorch reference models below are written from the papers (He et al. 2016; Xie et al.
2017; Hu et al. 2018) with torchvision's module names for ResNet and the SENet port's for
SENet, so that the weights copy across by key.
"""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import models, nn
from cnnlite.models import resnet, senet
from model_parity import assert_same_logits

# The models with a PyTorch reference below: all registered ones but
# resnet152_stochastic_depth, which has resnet152's layers.
NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
         "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2", "se_resnet50",
         "se_resnext50_32x4d"]


# --- PyTorch references ---------------------------------------------------------------------

def torch_conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1):
    """A bias-free convolution that keeps the size at stride 1, and its batch norm."""
    conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                           padding=kernel_size // 2, groups=groups, bias=False)
    return conv, torch.nn.BatchNorm2d(out_channels)


class TorchSqueezeExcitation(torch.nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = torch.nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return gate * x


class TorchBasicBlock(torch.nn.Module):
    expansion = 1

    def __init__(self, in_channels, planes, stride=1):
        super().__init__()
        self.conv1, self.bn1 = torch_conv_bn(in_channels, planes, 3, stride)
        self.conv2, self.bn2 = torch_conv_bn(planes, planes, 3)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = torch.nn.Sequential(*torch_conv_bn(in_channels, planes, 1, stride))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchBottleneck(torch.nn.Module):
    """1x1 -> 3x3 (grouped, strided unless ``stride_in_1x1``) -> 1x1, optionally SE."""
    expansion = 4

    def __init__(self, in_channels, planes, stride=1, groups=1, width_per_group=64,
                 se=False, stride_in_1x1=False):
        super().__init__()
        width = planes * width_per_group // 64 * groups
        out_channels = 4 * planes
        stride1, stride2 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1, self.bn1 = torch_conv_bn(in_channels, width, 1, stride1)
        self.conv2, self.bn2 = torch_conv_bn(width, width, 3, stride2, groups)
        self.conv3, self.bn3 = torch_conv_bn(width, out_channels, 1)
        self.se_module = TorchSqueezeExcitation(out_channels) if se else None
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = torch.nn.Sequential(*torch_conv_bn(in_channels, out_channels, 1,
                                                                 stride))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se_module is not None:
            out = self.se_module(out)
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def torch_stages(block, layers, **block_args):
    """layer1 .. layer4 as (name, Sequential) pairs; the first block of layer2..4 strides."""
    stages, in_channels = [], 64
    for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        stage = []
        for number in range(blocks):
            stride = 2 if index > 0 and number == 0 else 1
            stage.append(block(in_channels, planes, stride, **block_args))
            in_channels = planes * block.expansion
        stages.append((f"layer{index + 1}", torch.nn.Sequential(*stage)))
    return stages


class TorchResNet(torch.nn.Module):
    """torchvision's layout: conv1, bn1, maxpool (pad 1), layer1..4, avgpool, fc."""

    def __init__(self, block, layers, num_classes=1000, **block_args):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        for name, stage in torch_stages(block, layers, **block_args):
            self.add_module(name, stage)
        self.fc = torch.nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class TorchSENet(torch.nn.Module):
    """The SENet port's layout: layer0 (conv1, bn1, relu1, pool in ceil mode without
    padding), layer1..4 of SE bottlenecks, global average, last_linear."""

    def __init__(self, layers, num_classes=1000, **block_args):
        super().__init__()
        self.layer0 = torch.nn.Sequential(OrderedDict([
            ("conv1", torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)),
            ("bn1", torch.nn.BatchNorm2d(64)), ("relu1", torch.nn.ReLU()),
            ("pool", torch.nn.MaxPool2d(3, 2, ceil_mode=True))]))
        for name, stage in torch_stages(TorchBottleneck, layers, se=True, **block_args):
            self.add_module(name, stage)
        self.last_linear = torch.nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))
        return self.last_linear(x.mean(dim=(2, 3)))


def torch_reference(name, num_classes=1000):
    """The PyTorch reference of the cnnlite model ``name``."""
    basic, bottleneck = TorchBasicBlock, TorchBottleneck
    resnext_32x4d = dict(groups=32, width_per_group=4)
    builders = {
        "resnet18": lambda: TorchResNet(basic, [2, 2, 2, 2], num_classes),
        "resnet34": lambda: TorchResNet(basic, [3, 4, 6, 3], num_classes),
        "resnet50": lambda: TorchResNet(bottleneck, [3, 4, 6, 3], num_classes),
        "resnet101": lambda: TorchResNet(bottleneck, [3, 4, 23, 3], num_classes),
        "resnet152": lambda: TorchResNet(bottleneck, [3, 8, 36, 3], num_classes),
        "resnext50_32x4d": lambda: TorchResNet(bottleneck, [3, 4, 6, 3], num_classes,
                                               **resnext_32x4d),
        "resnext101_32x8d": lambda: TorchResNet(bottleneck, [3, 4, 23, 3], num_classes,
                                                groups=32, width_per_group=8),
        "wide_resnet50_2": lambda: TorchResNet(bottleneck, [3, 4, 6, 3], num_classes,
                                               width_per_group=128),
        "wide_resnet101_2": lambda: TorchResNet(bottleneck, [3, 4, 23, 3], num_classes,
                                                width_per_group=128),
        "se_resnet50": lambda: TorchSENet([3, 4, 6, 3], num_classes),
        "se_resnext50_32x4d": lambda: TorchSENet([3, 4, 6, 3], num_classes, **resnext_32x4d),
    }
    return builders[name]()


# --- keys (the counts, forward and backward: tests/test_models.py) -------------------------

@pytest.mark.parametrize("name", NAMES)
def test_state_dict_has_the_reference_keys_and_shapes(name):
    """Key for key and shape for shape the PyTorch model's (built without memory on the
    meta device), so that its weights load unchanged; for ResNet in torchvision's order too
    (SENet's SE block comes after the shortcut, the port's before it)."""
    with nn.init.skip_init():  # only the keys and shapes are looked at
        model = models.get_model(name)
    with torch.device("meta"):
        reference = torch_reference(name)
    got = [(key, value.shape) for key, value in model.state_dict().items()]
    expected = [(key, tuple(value.shape)) for key, value in reference.state_dict().items()]
    assert dict(got) == dict(expected)
    if name.startswith(("resnet", "resnext", "wide")):
        assert got == expected


# --- the same logits as PyTorch -------------------------------------------------------------

@pytest.mark.parametrize("name, cl_model, size", [
    ("resnet18", lambda: resnet.resnet18(num_classes=10), 64),
    ("resnet50", lambda: resnet.resnet50(num_classes=10), 64),
    # SE blocks, grouped convolutions and the stem's pooling in ceil mode (16 -> 8 rounds up)
    ("se_resnext50_32x4d", lambda: senet.se_resnext50_32x4d(num_classes=10), 32),
], ids=["resnet18", "resnet50", "se_resnext50_32x4d"])
def test_logits_match_pytorch(name, cl_model, size):
    torch.manual_seed(0)
    assert_same_logits(cl_model(), torch_reference(name, num_classes=10), (2, 3, size, size))


# --- stochastic depth -----------------------------------------------------------------------

def residual_blocks(model):
    return [m for m in model.modules() if isinstance(m, (resnet.BasicBlock, resnet.Bottleneck))]


def test_stochastic_depth_probability_grows_linearly_with_depth():
    """Block l of L drops with probability l / L * p_drop (survival 1 - l / L (1 - p_L))."""
    blocks = residual_blocks(resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2],
                                           stochastic_depth_prob=0.5))
    assert [b.stochastic_depth.p for b in blocks] == pytest.approx(
        [0.5 * l / 8 for l in range(1, 9)])
    assert all(b.stochastic_depth.mode == "batch" for b in blocks)


def test_resnet152_stochastic_depth_is_the_papers_imagenet_setting():
    """Survival probability from 1 - 0.5 / 50 in the first block down to p_L = 0.5."""
    with nn.init.skip_init():  # only the blocks' settings are looked at
        blocks = residual_blocks(resnet.resnet152_stochastic_depth())
    assert len(blocks) == 50
    assert blocks[0].stochastic_depth.p == pytest.approx(0.5 / 50)
    assert blocks[-1].stochastic_depth.p == pytest.approx(0.5)


def test_stochastic_depth_drops_the_whole_branch_and_scales_survivors(rng):
    """In training a block's output is either relu(x) for the whole batch (branch dropped)
    or relu(F(x) / (1 - p) + x) (kept), and it is dropped with probability p."""
    p, trials = 0.3, 400
    block = resnet.BasicBlock(4, 4, stochastic_depth_prob=p)
    block.stochastic_depth.rng = np.random.default_rng(0)
    x = cl.tensor(rng.standard_normal((3, 4, 5, 5)).astype(np.float32))
    dropped_output = np.maximum(x.data, 0)
    kept_output = np.maximum(block.residual(x).data / (1 - p) + x.data, 0)
    dropped = 0
    for _ in range(trials):
        out = block(x).data
        if np.allclose(out, dropped_output, rtol=0, atol=1e-6):
            dropped += 1
        else:
            np.testing.assert_allclose(out, kept_output, rtol=1e-5, atol=1e-6)
    # Binomial(400, 0.3): standard deviation 9.2, so this band is 4 of them.
    assert abs(dropped - p * trials) < 37


def test_stochastic_depth_eval_is_deterministic_and_equal_to_no_dropping(rng):
    dropping = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=10,
                             stochastic_depth_prob=0.5)
    plain = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=10)
    plain.load_state_dict(dropping.state_dict())
    dropping.eval(), plain.eval()
    x = cl.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    with cl.no_grad():
        first, second, expected = dropping(x).data, dropping(x).data, plain(x).data
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, expected)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_stochastic_depth_probability_out_of_range_is_refused(p):
    with pytest.raises(ValueError, match="stochastic_depth_prob"):
        resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], stochastic_depth_prob=p)


# --- zero-initialised residual branches ------------------------------------------------------

@pytest.mark.parametrize("block", [resnet.BasicBlock, resnet.Bottleneck])
def test_zero_init_residual_makes_every_block_the_identity(block, rng):
    """With the last batch norm of every branch at scale 0, F(x) = 0: a block passes its
    (non-negative, post-ReLU) input through, or relu(downsample(x)) where it projects."""
    model = resnet.ResNet(block, [2, 1, 1, 1], num_classes=10, zero_init_residual=True)
    for module in residual_blocks(model):
        last_norm = module.bn3 if block is resnet.Bottleneck else module.bn2
        assert (last_norm.weight.data == 0).all()
        x = cl.tensor(np.abs(rng.standard_normal((2, module.conv1.in_channels, 6, 6)))
                      .astype(np.float32))
        shortcut = x if module.downsample is None else module.downsample(x)
        np.testing.assert_array_equal(module(x).data, np.maximum(shortcut.data, 0))


def test_without_zero_init_the_last_norm_starts_at_one():
    model = resnet.ResNet(resnet.Bottleneck, [1, 1, 1, 1], num_classes=10)
    assert all((b.bn3.weight.data == 1).all() for b in residual_blocks(model))


# --- blocks and options ---------------------------------------------------------------------

def test_convolutions_start_with_he_normal_fan_out():
    """Weights ~ N(0, 2 / fan_out); layer3's 3x3 convolutions have fan_out 256 * 9."""
    model = resnet.resnet18()
    assert model.layer3[1].conv2.weight.data.std() == pytest.approx(np.sqrt(2 / (256 * 9)),
                                                                    rel=0.02)
    assert (model.bn1.weight.data == 1).all() and (model.bn1.bias.data == 0).all()


def test_bottleneck_has_the_lecture_weight_count():
    """256-64-64-256: 69,632 weights, against 1,179,648 for two 3x3 convolutions on 256."""
    block = resnet.Bottleneck(256, 64)
    assert sum(getattr(block, f"conv{i}").weight.size for i in (1, 2, 3)) == 69_632
    two_3x3 = resnet.BasicBlock(256, 256)
    assert two_3x3.conv1.weight.size + two_3x3.conv2.weight.size == 1_179_648


def test_resnext_bottleneck_splits_the_3x3_convolution_into_groups():
    block = resnet.Bottleneck(256, 64, groups=32, base_width=4)
    assert block.conv2.groups == 32 and block.conv2.weight.shape == (128, 4, 3, 3)


def test_wide_bottleneck_doubles_the_inner_width_only():
    block = resnet.Bottleneck(256, 64, base_width=128)
    assert block.conv2.weight.shape == (128, 128, 3, 3)
    assert block.conv3.weight.shape == (256, 128, 1, 1)


def test_dilation_replaces_the_stride(rng):
    """layer3 and layer4 dilated instead of strided: the output stride is 8, not 32."""
    model = resnet.ResNet(resnet.Bottleneck, [1, 1, 1, 2], num_classes=10,
                          replace_stride_with_dilation=[False, True, True]).eval()
    first, second = model.layer4
    assert first.conv2.stride == (1, 1) and first.conv2.dilation == (2, 2)
    assert second.conv2.dilation == (4, 4)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1,
                         model.layer2, model.layer3, model.layer4)
    x = cl.tensor(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    with cl.no_grad():
        assert stem(x).shape == (1, 2048, 8, 8)


def test_basic_block_refuses_groups_and_dilation():
    with pytest.raises(ValueError, match="groups"):
        resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], groups=32, width_per_group=4)
    with pytest.raises(ValueError, match="dilation"):
        resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 2],
                      replace_stride_with_dilation=[False, False, True])


def test_senet_uses_the_ports_names():
    keys = senet.SENet([1, 1, 1, 1], num_classes=10).state_dict().keys()
    for key in ["layer0.conv1.weight", "layer0.bn1.num_batches_tracked",
                "layer1.0.se_module.fc1.weight", "layer1.0.se_module.fc2.bias",
                "layer2.0.downsample.0.weight", "layer4.0.bn3.running_var",
                "last_linear.weight"]:
        assert key in keys, key


def test_se_resnet_stride_position():
    """On the 3x3 convolution by default, on the first 1x1 with ``stride_in_1x1``."""
    default = senet.SEBottleneck(256, 128, stride=2)
    caffe = senet.SEBottleneck(256, 128, stride=2, stride_in_1x1=True)
    assert (default.conv1.stride, default.conv2.stride) == ((1, 1), (2, 2))
    assert (caffe.conv1.stride, caffe.conv2.stride) == ((2, 2), (1, 1))


def test_se_bottleneck_with_stride_in_1x1_matches_pytorch():
    """The port's SE-ResNet block: stride on the first 1x1 convolution, SE, projection."""
    downsample = nn.Sequential(resnet.conv1x1(256, 512, stride=2), nn.BatchNorm2d(512))
    block = senet.SEBottleneck(256, 128, 2, downsample, stride_in_1x1=True)
    torch.manual_seed(0)
    reference = TorchBottleneck(256, 128, 2, se=True, stride_in_1x1=True)
    assert_same_logits(block, reference, (2, 256, 7, 7))


def test_registry_entries():
    entries = {**resnet.MODELS, **senet.MODELS}
    assert entries.keys() == {*NAMES, "resnet152_stochastic_depth"}
    for name, entry in entries.items():
        assert entry.input_size == (224, 224) and entry.small_input == (32, 32)
        assert models.entry(name) == entry
