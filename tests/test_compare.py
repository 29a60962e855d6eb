"""compare: a cnnlite model and its PyTorch twin agree layer by layer; a difference planted in one
layer is named as the first divergence; shapes that differ, names that differ and tuple
outputs are reported, not crashed on."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

from cnnlite import nn
from cnnlite.models.compare import compare, torch_reference

LAYERS = ["0", "1", "2", "3", "4", "5", "6", "7", "8"]


def cnnlite_net(ceil_mode=False):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=ceil_mode),
        nn.Conv2d(4, 8, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def torch_net():
    """The same network in PyTorch, written independently (same keys and shapes). Its first
    ReLU works in place, as torchvision's do: the recorded outputs must not be overwritten."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(inplace=True), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 8, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
    with torch.no_grad():  # running statistics far from (0, 1), so that BatchNorm matters
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


@pytest.fixture
def twins():
    reference = torch_net()
    model = cnnlite_net()
    model.load_state_dict(reference.state_dict())
    return model, reference


def test_twins_agree_on_every_layer_in_execution_order(twins, x):
    model, reference = twins
    report = compare(model, torch_reference(reference), x)
    assert report.ok and report.first_divergence is None
    assert [layer.name for layer in report.layers] == LAYERS
    assert report.output.shape == (2, 5) and report.output.relative_error < 1e-5
    assert report.only_in_model == [] and report.only_in_reference == []


def test_a_torch_module_is_accepted_directly_as_the_reference(twins, x):
    model, reference = twins
    assert compare(model, reference, x).ok


@pytest.mark.parametrize("layer, tensor", [("4", "weight"), ("1", "running_var"),
                                           ("8", "bias")])
def test_a_difference_planted_in_one_layer_is_the_first_divergence(twins, x, layer, tensor):
    model, reference = twins
    planted = getattr(model[int(layer)], tensor)
    planted.data[0] = planted.data[0] * 1.5 + 0.1
    report = compare(model, torch_reference(reference), x)
    assert report.first_divergence.name == layer
    position = LAYERS.index(layer)
    assert all(row.ok for row in report.layers[:position])
    assert not report.ok and not report.output.ok
    assert "first divergence" in str(report)


def test_shapes_that_differ_are_a_divergence_with_both_shapes(x):
    reference = torch_net()
    model = cnnlite_net(ceil_mode=True)
    model.load_state_dict(reference.state_dict())
    odd = np.random.default_rng(1).standard_normal((1, 3, 9, 9)).astype(np.float32)
    report = compare(model, torch_reference(reference), odd)
    first = report.first_divergence
    assert first.name == "3" and first.note == "shapes differ"
    assert first.shape == (1, 4, 5, 5) and first.reference_shape == (1, 4, 4, 4)
    assert "(1, 4, 5, 5) vs reference (1, 4, 4, 4)" in str(report)


def test_a_names_mapping_lines_up_layers_named_differently(x):
    torch.manual_seed(0)
    reference = torch.nn.Sequential(OrderedDict(
        conv=torch.nn.Conv2d(3, 2, 3), act=torch.nn.ReLU(), flat=torch.nn.Flatten()))
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten())
    model.load_state_dict({key.replace("conv", "0"): value
                           for key, value in reference.state_dict().items()})
    unmapped = compare(model, reference, x)
    assert unmapped.layers == [] and unmapped.output.ok
    assert unmapped.only_in_model == ["0", "1", "2"]
    assert unmapped.only_in_reference == ["conv", "act", "flat"]
    mapped = compare(model, reference, x, names={"0": "conv", "1": "act", "2": "flat"})
    assert [layer.name for layer in mapped.layers] == ["0", "1", "2"] and mapped.ok


class TwoHeads(nn.Module):
    """Returns the logits and an auxiliary output, as Inception's auxiliary classifier does."""

    def __init__(self):
        super().__init__()
        self.main = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 2)

    def forward(self, x):
        return self.main(x), self.aux(x)


class WithTwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = TwoHeads()

    def forward(self, x):
        logits, _ = self.heads(x)
        return logits


def test_a_tuple_output_is_compared_on_its_first_element_and_says_so():
    model = WithTwoHeads()
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    weights = {key: value.astype(np.float64) for key, value in model.state_dict().items()}

    def reference(inputs):
        """Any callable returning name -> output; the aux head is made wrong on purpose."""
        main = inputs @ weights["heads.main.weight"].T + weights["heads.main.bias"]
        aux = np.zeros((2, 2))
        return OrderedDict([("heads.main", main), ("heads.aux", aux), ("heads", (main, aux)),
                            ("", main)])

    report = compare(model, reference, x)
    rows = {layer.name: layer for layer in report.layers}
    assert rows["heads"].ok and rows["heads"].note == "first of 2 outputs"
    assert rows["heads.main"].ok and not rows["heads.aux"].ok
    assert report.first_divergence.name == "heads.aux"


def test_a_nan_output_is_never_ok(twins, x):
    model, reference = twins
    model[4].weight.data[0, 0, 0, 0] = np.nan
    assert compare(model, reference, x).first_divergence.name == "4"


def test_both_models_run_in_eval_mode_and_get_their_mode_back(twins, x):
    model, reference = twins
    model.train()
    reference.train()
    report = compare(model, reference, x)  # in training mode BatchNorm would use batch stats
    assert report.ok
    assert model.training and reference.training
    assert reference[1].num_batches_tracked.item() == 0


def test_the_report_reads_as_a_table_and_as_html(twins, x):
    model, reference = twins
    model[0].bias.data[:] += 1
    report = compare(model, reference, x)
    text = str(report)
    assert text.splitlines()[0].split()[:5] == ["layer", "type", "shape", "max", "abs"]
    assert "first divergence at '0' (Conv2d)" in text
    page = report._repr_html_()
    assert page.startswith("<table>") and page.count("<tr") == len(LAYERS) + 2
    assert 'style="background:#fdd"' in page
