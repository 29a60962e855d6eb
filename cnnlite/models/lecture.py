"""The figures on the lecture slides about CNN architectures, recounted on cnnlite's models.

``lecture_figures()`` builds each model or block the slides talk about, counts with
``cl.summary`` (shapes, parameters, multiply-adds, activations, receptive fields) and returns
one ``Figure`` per claim: what the slide says, the exact count, whether they agree, and where
they do not, why. ``cnnlite models --lecture`` prints them. Nothing exact is typed in here:
every number in ``exact`` comes from a model.

Three of the slides' totals do not follow from their own terms:

* VGG-16's memory: the slide lists the values of each layer's output (input, convolutions,
  poolings, fully connected layers); they add up to 15.2 million, not the 24 million of its
  total (61 MB in float32, not 96 MB).
* The Inception module with 1x1 bottlenecks: its six convolutions cost 271 million
  multiply-adds; the slide's 358M does not follow from the terms it lists.
* The Inception modules' parameters: the slide's own terms add up to 1,089,536 and 346,112
  weights; its totals (108k and 33k) are ten times too small.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Figure", "lecture_figures", "format_figures"]


class Figure(NamedTuple):
    """One figure on a slide and its exact recount."""

    topic: str
    slide: str     # what the slide says
    exact: str     # cnnlite's count
    agrees: bool   # whether the slide's figure is right (to its rounding)
    note: str = ""  # why they differ, or how the count was made


def _weights(model) -> int:
    """Weights of the convolutions and fully connected layers (no biases, no batch norm): what
    the slides count as a block's parameters."""
    return sum(p.size for name, p in model.named_parameters()
               if name.endswith("weight") and p.ndim >= 2)


def _hwc(shape) -> str:
    """(1, 672, 28, 28) -> '28x28x672', the slides' way of writing a feature map."""
    return f"{shape[2]}x{shape[3]}x{shape[1]}"


def _alexnet_figures(summary, models):
    table = summary(models.alexnet_paper(), (3, 227, 227))
    conv1 = next(row for row in table.rows if row.type == "Conv2d")
    conv1_weights = _weights(models.alexnet_paper().features[0])
    sizes = [row.output_shape[2] for row in table.rows if row.type in ("Conv2d", "MaxPool2d")]
    ungrouped = summary(models.alexnet_paper(groups=1), (3, 227, 227)).total_params
    return [
        Figure("AlexNet conv1", "227x227x3 -> 55x55x96, 35K parameters",
               f"{'x'.join(map(str, conv1.output_shape[1:]))}, {conv1_weights:,} weights "
               f"(+{conv1.params - conv1_weights} biases)",
               conv1.output_shape[1:] == (96, 55, 55) and round(conv1_weights, -3) == 35_000,
               "11 * 11 * 3 * 96 weights"),
        Figure("AlexNet shapes", "55-27-27-13-13-13-13-6", "-".join(map(str, sizes)),
               sizes == [55, 27, 27, 13, 13, 13, 13, 6], "conv1, pool1, conv2, pool2, conv3-5, "
               "pool5"),
        Figure("AlexNet parameters", "60 million (the paper)",
               f"{table.total_params:,} with conv2/4/5 in two groups; {ungrouped:,} without",
               round(table.total_params, -7) == 60_000_000,
               "the groups are the two GPUs of the paper: each half of conv2, conv4 and conv5 "
               "sees only the channels on its own GPU"),
    ]


def _vgg_figures(summary, models):
    table = summary(models.vgg16(), (3, 224, 224))
    values = table.activations_of("Conv2d", "MaxPool2d", "Linear")
    return [
        Figure("VGG-16 parameters", "138M", f"{table.total_params:,}",
               round(table.total_params, -6) == 138_000_000),
        Figure("VGG-16 memory", "24M * 4 bytes ~ 96MB / image",
               f"{values:,} values ({values * 4 / 1e6:.0f} MB in float32)",
               round(values, -6) == 24_000_000,
               "the slide's own per-layer values (input, convolutions, poolings, fully "
               "connected) add up to this; its total is an addition error"),
    ]


def _inception_figures(summary, models):
    from cnnlite.models.googlenet import bottleneck_inception_module, naive_inception_module

    naive, bottleneck = naive_inception_module(), bottleneck_inception_module()
    naive_table = summary(naive, (256, 28, 28))
    bottleneck_table = summary(bottleneck, (256, 28, 28))
    googlenet = summary(models.googlenet(aux_logits=False), (3, 224, 224)).total_params
    alexnet = summary(models.alexnet_paper(), (3, 227, 227)).total_params
    return [
        Figure("naive Inception module on 28x28x256", "output 28x28x672, 854M ops",
               f"output {_hwc(naive_table.output_shape)}, {naive_table.total_macs:,} MACs",
               naive_table.output_shape[1:] == (672, 28, 28)
               and round(naive_table.total_macs, -6) == 854_000_000,
               "the slide's 'ops' are multiply-adds"),
        Figure("Inception module with 1x1 bottlenecks", "output 28x28x480, 358M ops",
               f"output {_hwc(bottleneck_table.output_shape)}, "
               f"{bottleneck_table.total_macs:,} MACs",
               round(bottleneck_table.total_macs, -6) == 358_000_000,
               "the sum of the six convolutions the slide lists; its total does not follow "
               "from its own terms"),
        Figure("Inception parameters", "naive 108k, with bottlenecks 33k",
               f"naive {_weights(naive):,}, with bottlenecks {_weights(bottleneck):,} weights",
               (round(_weights(naive), -3), round(_weights(bottleneck), -3))
               == (108_000, 33_000),
               "the slide's own terms add up to these; both totals are ten times too small"),
        Figure("GoogLeNet parameters", "only 5 million, 12x less than AlexNet",
               f"{googlenet:,}; AlexNet has {alexnet / googlenet:.1f}x as many",
               round(googlenet, -6) == 5_000_000 and round(alexnet / googlenet) == 12,
               "counted on torchvision's GoogLeNet (batch norm included; the auxiliary heads, "
               "which only exist in training, left out) and the paper's grouped AlexNet"),
    ]


def _resnet_figures(summary, models):
    from cnnlite import nn
    from cnnlite.models.resnet import Bottleneck

    bottleneck = _weights(Bottleneck(256, 64))
    two_3x3 = _weights(nn.Sequential(nn.Conv2d(256, 256, 3, bias=False),
                                     nn.Conv2d(256, 256, 3, bias=False)))
    vgg19 = summary(models.vgg19(), (3, 224, 224)).total_macs
    resnet152 = summary(models.resnet152(), (3, 224, 224)).total_macs
    return [
        Figure("ResNet bottleneck 256-64-64-256", "69,632 parameters vs 1,179,648 for two "
               "3x3x256 convs", f"{bottleneck:,} vs {two_3x3:,} weights",
               (bottleneck, two_3x3) == (69_632, 1_179_648)),
        Figure("VGG-19 and ResNet-152 cost", "19.6 and 11.3 billion FLOPs",
               f"{vgg19 / 1e9:.2f} G and {resnet152 / 1e9:.2f} G MACs",
               round(vgg19 / 1e9, 1) == 19.6 and round(resnet152 / 1e9, 1) == 11.3,
               "the slide's 'FLOPs' are multiply-adds; ResNet-152 (torchvision's, stride on "
               "the 3x3) has 11.51 G"),
    ]


def _receptive_field_figures(summary):
    from cnnlite import nn

    channels = 8
    three = nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1, bias=False)
                            for _ in range(3)])
    stacked = summary(three, (channels, 16, 16))
    strided = summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1),
                                    nn.Conv2d(1, 1, 3, stride=2, padding=1)), (1, 16, 16))
    (r1, j1), (r2, j2) = [(row.receptive_field[0], row.jump[0]) for row in strided.rows]
    seven = _weights(nn.Conv2d(channels, channels, 7, bias=False))
    return [
        Figure("three stacked 3x3 convs", "see 7x7; 27C^2 vs 49C^2 parameters",
               f"see {stacked.rows[-1].receptive_field[0]}x{stacked.rows[-1].receptive_field[1]}"
               f"; {_weights(three) // channels**2}C^2 vs {seven // channels**2}C^2",
               stacked.rows[-1].receptive_field == (7, 7)),
        Figure("two 3x3 stride-2 convs", "r1=3, j1=2, r2=7, j2=4",
               f"r1={r1}, j1={j1}, r2={r2}, j2={j2}", (r1, j1, r2, j2) == (3, 2, 7, 4),
               "r_out = r_in + (k - 1) j_in, j_out = j_in s"),
    ]


def lecture_figures() -> list[Figure]:
    """Every figure of the slides, recounted (builds AlexNet, VGG-16/19, GoogLeNet and
    ResNet-152, without drawing their weights)."""
    from cnnlite import models
    from cnnlite.nn.init import skip_init
    from cnnlite.summary import summary

    with skip_init():  # counting needs the shapes only, not random weights
        return (_alexnet_figures(summary, models) + _vgg_figures(summary, models)
                + _inception_figures(summary, models) + _resnet_figures(summary, models)
                + _receptive_field_figures(summary))


def format_figures(figures: list[Figure]) -> str:
    """The figures as text: topic, the slide's figure, the exact count and, where they
    differ, why."""
    lines = []
    for figure in figures:
        verdict = "agrees" if figure.agrees else "DIFFERS"
        lines += [f"{figure.topic}: {verdict}", f"    slide: {figure.slide}",
                  f"    exact: {figure.exact}"]
        if figure.note:
            lines.append(f"    note:  {figure.note}")
    return "\n".join(lines)
