"""cl.summary: per-layer shapes, parameters, multiply-adds and receptive fields, computed
without running the convolutions, checked against counts made by hand."""
import numpy as np
import pytest

import cnnlite as cl
from cnnlite import nn
from cnnlite.functional import conv as conv_ops
from cnnlite.models import lenet5


def test_lenet5_rows_are_the_hand_counts():
    table = cl.summary(lenet5(), (1, 32, 32))
    rows = {row.name: row for row in table.rows}
    # conv1: 6 maps of 28x28, each output a 5x5 dot product over 1 channel
    assert rows["features.0"].output_shape == (1, 6, 28, 28)
    assert rows["features.0"].params == 6 * 25 + 6
    assert rows["features.0"].macs == 6 * 28 * 28 * 25
    # conv2: 16 maps of 10x10, each a 5x5 dot product over 6 channels
    assert rows["features.3"].macs == 16 * 10 * 10 * 6 * 25
    assert rows["classifier.0"].macs == 400 * 120
    assert table.total_params == 61_706
    assert table.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert table.total_activations == sum(int(np.prod(row.output_shape)) for row in table.rows)


def test_receptive_field_and_jump_follow_the_recurrence():
    """r_out = r_in + (k - 1) j_in, j_out = j_in s: two 3x3 stride-2 convs see 3, then 7."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1),
                          nn.Conv2d(4, 4, 3, stride=2, padding=1))
    rows = cl.summary(model, (3, 16, 16)).rows
    assert [(row.receptive_field, row.jump) for row in rows] == [((3, 3), (2, 2)),
                                                                 ((7, 7), (4, 4))]


def test_three_stacked_3x3_convolutions_see_7x7_with_27_c_squared_weights():
    c = 8
    stack = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)])
    single = nn.Conv2d(c, c, 7, padding=3, bias=False)
    stacked, one = cl.summary(stack, (c, 16, 16)), cl.summary(single, (c, 16, 16))
    assert stacked.rows[-1].receptive_field == one.rows[-1].receptive_field == (7, 7)
    assert stacked.total_params == 27 * c * c and one.total_params == 49 * c * c


def test_dilation_and_pooling_widen_the_field():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2), nn.MaxPool2d(2),
                          nn.AvgPool2d(3, stride=1))
    rows = cl.summary(model, (1, 20, 20)).rows
    assert [row.receptive_field[0] for row in rows] == [5, 6, 10]
    assert [row.jump[0] for row in rows] == [1, 2, 2]


class TwoBranches(nn.Module):
    """y = conv3x3(conv3x3(x)) + conv1x1(x): the sum sees what its widest branch sees."""

    def __init__(self):
        super().__init__()
        self.deep = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1))
        self.shortcut = nn.Conv2d(2, 2, 1)
        self.out = nn.ReLU()

    def forward(self, x):
        return self.out(self.deep(x) + self.shortcut(x))


def test_branches_meeting_keep_the_larger_field():
    rows = {row.name: row for row in cl.summary(TwoBranches(), (2, 8, 8)).rows}
    assert rows["shortcut"].receptive_field == (1, 1)
    assert rows["out"].receptive_field == (5, 5)


def test_fully_connected_layers_see_everything():
    rows = cl.summary(lenet5(), (1, 32, 32)).rows
    assert rows[-1].receptive_field == rows[-1].jump == "all"


def test_convolutions_are_not_computed(monkeypatch):
    def refuse(*args):
        raise AssertionError("summary ran a convolution")
    monkeypatch.setattr(conv_ops.Conv2d, "forward", refuse)
    assert cl.summary(lenet5(), (1, 32, 32)).total_macs == 416_520


def test_summary_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    model.train()
    before = {key: value.copy() for key, value in model.state_dict().items()}
    cl.summary(model, (1, 8, 8))
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_batch_counts_every_sample():
    one, four = cl.summary(lenet5(), (1, 32, 32)), cl.summary(lenet5(), (4, 1, 32, 32))
    assert four.total_macs == 4 * one.total_macs
    assert four.total_params == one.total_params


def test_text_and_html_show_every_layer_and_the_totals():
    table = cl.summary(lenet5(), (1, 32, 32))
    text, page = str(table), table._repr_html_()
    for row in table.rows:
        assert row.name in text and row.name in page
    assert "61,706" in text and "416,520" in text and "<table>" in page


@pytest.mark.parametrize("shape", [(32, 32), (0, 1, 32, 32), (1, 1, 1, 32, 32)])
def test_bad_input_shapes_are_named(shape):
    with pytest.raises(ValueError, match="summary: expected input_shape"):
        cl.summary(lenet5(), shape)


def test_a_wrong_input_size_names_the_layer():
    with pytest.raises(cl.OpError, match="Linear"):
        cl.summary(lenet5(), (1, 28, 28))
