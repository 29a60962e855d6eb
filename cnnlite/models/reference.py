"""The published figures each architecture is compared against, with the source of each.

``reference(name)`` gives a ``Reference``: the exact parameter count and multiply-adds (MACs of
the convolutions and fully connected layers for one image, as ``cl.summary`` counts them), the
input they were counted at, and the ImageNet (or CIFAR) accuracy reported by the paper and
reached by torchvision's pretrained weights. ``cnnlite models --compare`` prints cnnlite's own
counts beside them.

Where the counts come from:

* torchvision's models: counted on torchvision's own definitions (GoogLeNet and Inception-v3
  without their auxiliary classifiers, which only exist in training). These are the numbers a
  cnnlite model of the same name must reproduce exactly, and does (tests/test_models.py).
* models torchvision does not have: counted on the widely used PyTorch ports that follow the
  papers, or exactly on cnnlite's model where no port is in wide use; the paper's own rounded
  figure is given in ``note`` where it states one.

Accuracies are top-1 / top-5 in percent. The papers report them under different protocols (one
centre crop, ten crops, several scales); ``source`` says which table and which protocol.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Accuracy", "Reference", "reference", "REFERENCES"]


class Accuracy(NamedTuple):
    """A reported accuracy: top-1 and top-5 in percent (None where not reported)."""

    top1: float | None
    top5: float | None
    dataset: str
    source: str


class Reference(NamedTuple):
    """The published figures of one architecture."""

    params: int
    macs: int
    input_size: tuple          # (C, H, W) the counts were made at
    counted_on: str            # whose definition the counts were made on
    paper: Accuracy | None     # what the paper reports
    weights: Accuracy | None   # what torchvision's pretrained weights reach
    note: str = ""             # the paper's own rounded figures, where they differ in form
    settings: dict = {}        # constructor settings the counts were made with


_TORCHVISION = "torchvision's definition (torchvision.models)"
_TV_WEIGHTS = "torchvision's IMAGENET1K_V1 weights, one 224 centre crop (299 for Inception-v3)"


def _weights(top1, top5):
    return Accuracy(top1, top5, "ImageNet-1K val", _TV_WEIGHTS)


def _paper(top1, top5, source, dataset="ImageNet-1K val"):
    return Accuracy(top1, top5, dataset, source)


# name -> (params, MACs, (H, W), weights' top-1/top-5): counted on torchvision's definitions.
_TORCHVISION_TABLE = {
    "alexnet": (61_100_840, 714_188_480, (224, 224), (56.522, 79.066)),
    "vgg11": (132_863_336, 7_609_090_048, (224, 224), (69.02, 88.628)),
    "vgg11_bn": (132_868_840, 7_609_090_048, (224, 224), (70.37, 89.81)),
    "vgg13": (133_047_848, 11_308_466_176, (224, 224), (69.928, 89.246)),
    "vgg16": (138_357_544, 15_470_264_320, (224, 224), (71.592, 90.382)),
    "vgg16_bn": (138_365_992, 15_470_264_320, (224, 224), (73.36, 91.516)),
    "vgg19": (143_667_240, 19_632_062_464, (224, 224), (72.376, 90.876)),
    "vgg19_bn": (143_678_248, 19_632_062_464, (224, 224), (74.218, 91.842)),
    "googlenet": (6_624_904, 1_498_376_192, (224, 224), (69.778, 89.53)),
    "inception_v3": (23_834_568, 5_713_216_096, (299, 299), (77.294, 93.45)),
    "resnet18": (11_689_512, 1_814_073_344, (224, 224), (69.758, 89.078)),
    "resnet34": (21_797_672, 3_663_761_408, (224, 224), (73.314, 91.42)),
    "resnet50": (25_557_032, 4_089_184_256, (224, 224), (76.13, 92.862)),
    "resnet101": (44_549_160, 7_801_405_440, (224, 224), (77.374, 93.546)),
    "resnet152": (60_192_808, 11_513_626_624, (224, 224), (78.312, 94.046)),
    "densenet121": (7_978_856, 2_834_161_664, (224, 224), (74.434, 91.972)),
    "densenet161": (28_681_000, 7_727_907_072, (224, 224), (77.138, 93.56)),
    "densenet169": (14_149_480, 3_359_843_328, (224, 224), (75.6, 92.806)),
    "densenet201": (20_013_928, 4_291_365_888, (224, 224), (76.896, 93.37)),
    "resnext50_32x4d": (25_028_904, 4_230_479_872, (224, 224), (77.618, 93.698)),
    "resnext101_32x8d": (88_791_336, 16_414_015_488, (224, 224), (79.312, 94.526)),
    "wide_resnet50_2": (68_883_240, 11_398_021_120, (224, 224), (78.468, 94.086)),
    "wide_resnet101_2": (126_886_696, 22_753_050_624, (224, 224), (78.848, 94.284)),
    "mobilenet_v2": (3_504_872, 300_774_272, (224, 224), (71.878, 90.286)),
    "mobilenet_v3_large": (5_483_032, 216_589_760, (224, 224), (74.042, 91.34)),
    "mobilenet_v3_small": (2_542_856, 56_510_400, (224, 224), (67.668, 87.402)),
    "squeezenet1_0": (1_248_424, 818_924_576, (224, 224), (58.092, 80.42)),
    "squeezenet1_1": (1_235_496, 349_151_936, (224, 224), (58.178, 80.624)),
    "shufflenet_v2_x0_5": (1_366_792, 40_476_448, (224, 224), (60.552, 81.746)),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992, (224, 224), (69.362, 88.316)),
    "efficientnet_b0": (5_288_548, 385_814_752, (224, 224), (77.692, 93.532)),
    "regnet_y_400mf": (4_344_144, 401_842_848, (224, 224), (74.046, 91.716)),
}

# What the papers report for the torchvision-named models (error rates turned into accuracy).
_PAPERS = {
    "googlenet": _paper(None, 89.93, "Szegedy et al. 2015, Table 3: one model, one crop "
                                     "(top-5 error 10.07%)"),
    "inception_v3": _paper(78.8, 94.4, "Szegedy et al. 2016 (Rethinking the Inception "
                                       "architecture), Table 3: one model, one crop (errors "
                                       "21.2% / 5.6%)"),
    "resnet50": _paper(77.15, 93.29, "He et al. 2016, Table 3: 10 crops (errors 22.85% / "
                                     "6.71%)"),
    "resnet101": _paper(78.25, 93.95, "He et al. 2016, Table 3: 10 crops (errors 21.75% / "
                                      "6.05%)"),
    "resnet152": _paper(78.57, 94.29, "He et al. 2016, Table 3: 10 crops (errors 21.43% / "
                                      "5.71%)"),
    "resnext50_32x4d": _paper(77.8, None, "Xie et al. 2017, Table 3: one 224 crop (top-1 error "
                                          "22.2%)"),
    "densenet121": _paper(74.98, 92.29, "Huang et al. 2017, Table 3: one crop (errors 25.02% / "
                                        "7.71%)"),
    "densenet161": _paper(77.67, 93.85, "Huang et al. 2017, Table 3: one crop (errors 22.33% / "
                                        "6.15%)"),
    "densenet169": _paper(76.2, 93.15, "Huang et al. 2017, Table 3: one crop (errors 23.80% / "
                                       "6.85%)"),
    "densenet201": _paper(77.42, 93.66, "Huang et al. 2017, Table 3: one crop (errors 22.58% / "
                                        "6.34%)"),
    "mobilenet_v2": _paper(72.0, None, "Sandler et al. 2018, Table 4"),
    "mobilenet_v3_large": _paper(75.2, None, "Howard et al. 2019, Table 3"),
    "mobilenet_v3_small": _paper(67.4, None, "Howard et al. 2019, Table 3"),
    "squeezenet1_0": _paper(57.5, 80.3, "Iandola et al. 2016, Table 2"),
    "shufflenet_v2_x0_5": _paper(60.3, None, "Ma et al. 2018, Table 8 (top-1 error 39.7%)"),
    "shufflenet_v2_x1_0": _paper(69.4, None, "Ma et al. 2018, Table 8 (top-1 error 30.6%)"),
    "efficientnet_b0": _paper(77.1, 93.3, "Tan & Le 2019, Table 2"),
    "regnet_y_400mf": _paper(74.1, None, "Radosavovic et al. 2020, mobile regime (top-1 error "
                                         "25.9%)"),
}

_TV_DEFINITION_ONLY = ("torchvision's definition (torchvision.models); MACs counted with hooks "
                       "on it at 3x224x224")

_PORTS = ("the widely used PyTorch port (pretrainedmodels, Cadene), which follows the paper; "
          "3x299x299")

# Models torchvision does not have (or has without a row in the table above): counted as
# ``counted_on`` says.
_OTHERS = {
    "se_resnet50": Reference(
        28_088_024, 4_091_699_200, (3, 224, 224),
        "the PyTorch port of SENet (pretrainedmodels, Cadene) with the stride on the 3x3 "
        "convolution (an SE layer's two 1x1 convolutions counted as the fully connected "
        "layers they are)",
        _paper(76.71, 93.38, "Hu et al. 2018, Table 2: one 224 crop (errors 23.29% / 6.62%)"),
        None, note="the authors' weights put the stride on the first 1x1 convolution "
                   "(se_resnet50(stride_in_1x1=True)): 3,860,488,192 MACs, the paper's 3.87 "
                   "GFLOPs"),
    "se_resnext50_32x4d": Reference(
        27_559_896, 4_232_994_816, (3, 224, 224),
        "the PyTorch port of SENet (pretrainedmodels, Cadene): resnext50_32x4d with SE blocks",
        _paper(78.9, 94.51, "Hu et al. 2018, Table 2: one 224 crop (errors 21.10% / 5.49%)"),
        None),
    "resnet152_stochastic_depth": Reference(
        60_192_808, 11_513_626_624, (3, 224, 224),
        "resnet152 (stochastic depth adds no weights and is the identity in evaluation)",
        None, None),
    "alexnet_paper": Reference(
        60_965_224, 724_406_816, (3, 227, 227),
        "the paper's network as Caffe defines it (bvlc_alexnet: conv2/4/5 in two groups, LRN)",
        _paper(59.3, 81.8, "Krizhevsky et al. 2012, Table 2: one CNN, 10 crops (errors 40.7% / "
                           "18.2%)"),
        Accuracy(57.1, 80.2, "ImageNet-1K val", "Caffe's bvlc_alexnet weights, one centre crop "
                                                "(the model's readme)"),
        note="the paper: 60 million parameters"),
    "caffenet": Reference(
        60_965_224, 724_406_816, (3, 227, 227),
        "Caffe's bvlc_reference_caffenet (AlexNet with pooling before normalisation)", None,
        Accuracy(57.4, 80.4, "ImageNet-1K val", "Caffe's bvlc_reference_caffenet weights, one "
                                                "centre crop (the model's readme)")),
    "zfnet": Reference(
        62_357_608, 1_168_032_896, (3, 224, 224),
        "cnnlite's model of the paper's Figure 3 (conv1 padding 1 and rounded-up pooling give "
        "its 110-55-26-13 maps; the paper states neither)",
        _paper(61.6, 83.5, "Zeiler & Fergus 2014, Table 2: one convnet as in Figure 3 (errors "
                           "38.4% / 16.5%)"), None),
    "nin": Reference(
        7_595_176, 1_100_188_800, (3, 224, 224),
        "the ImageNet model of the Caffe model zoo (four mlpconv blocks, global average "
        "pooling)", None,
        Accuracy(59.36, None, "ImageNet-1K val", "the Caffe model zoo's NiN ImageNet model "
                                                 "page")),
    "nin_cifar": Reference(
        966_986, 222_486_528, (3, 32, 32), "the paper's CIFAR-10 network (Lin et al. 2014)",
        _paper(89.59, None, "Lin et al. 2014, Table 2: CIFAR-10 test error 10.41% without data "
                            "augmentation (8.81% with)", "CIFAR-10 test"), None),
    "vgg13_bn": Reference(
        133_053_736, 11_308_466_176, (3, 224, 224), _TV_DEFINITION_ONLY, None,
        _weights(71.586, 90.374)),
    "inception_v4": Reference(
        42_679_816, 12_253_974_624, (3, 299, 299), _PORTS,
        _paper(80.0, 95.0, "Szegedy et al. 2017 (Inception-v4, Inception-ResNet), Table 2: one "
                           "model, one crop (errors 20.0% / 5.0%)"), None),
    "inception_resnet_v2": Reference(
        55_843_464, 13_155_794_016, (3, 299, 299), _PORTS,
        _paper(80.1, 95.1, "Szegedy et al. 2017, Table 2: one model, one crop (errors 19.9% / "
                           "4.9%)"), None),
    "xception": Reference(
        22_855_952, 8_357_403_496, (3, 299, 299), _PORTS,
        _paper(79.0, 94.5, "Chollet 2017, Table 1: one model, one crop"), None,
        note="the paper's Table 3: 22,855,952 parameters"),
    "mobilenet_v1": Reference(
        4_231_976, 568_740_352, (3, 224, 224),
        "the paper's Table 1 built exactly (width 1.0, 224), as the widely used PyTorch ports",
        _paper(70.6, None, "Howard et al. 2017, Table 8 (1.0 MobileNet-224)"), None,
        note="the paper: 4.2 million parameters, 569 million mult-adds"),
    "shufflenet_v2_x1_5": Reference(
        3_503_624, 295_759_392, (3, 224, 224), _TV_DEFINITION_ONLY,
        _paper(72.6, None, "Ma et al. 2018, Table 8 (top-1 error 27.4%)"),
        _weights(72.996, 91.086)),
    "shufflenet_v2_x2_0": Reference(
        7_393_996, 583_253_464, (3, 224, 224), _TV_DEFINITION_ONLY,
        _paper(74.9, None, "Ma et al. 2018, Table 8 (top-1 error 25.1%)"),
        _weights(76.23, 93.006)),
    "lenet5": Reference(
        61_706, 416_520, (1, 32, 32),
        "cnnlite's LeNet-5 (every C3 map sees every S2 map; plain pooling; a linear output)",
        _paper(99.05, None, "LeCun et al. 1998, section III.C: 0.95% test error", "MNIST test"),
        None, note="the 1998 network has about 60,000 trainable parameters: its C3 maps see "
                   "only some of S2's, its pooling layers learn a scale and a bias, and its "
                   "output is 84 -> 10 RBF units"),
}

def _cifar(params, macs, top1, source, note=""):
    return Reference(params, macs, (3, 32, 32), _OURS, _paper(top1, None, source, "CIFAR-10 test"),
                     None, note)


_OURS = "cnnlite's model, built from the paper's description"

# The CIFAR-10 ResNets (He et al. 2016, section 4.2), their pre-activation versions (He et al.
# 2016b, "Identity mappings in deep residual networks") and the wide ResNet: the papers give
# only rounded parameter counts (in ``note``); accuracy = 100 - the paper's error.
_CIFAR = {
    "resnet20": _cifar(269_722, 40_551_040, 91.25, "He et al. 2016, Table 6 (error 8.75%)",
                       "the paper: 0.27M"),
    "resnet32": _cifar(464_154, 68_862_592, 92.49, "He et al. 2016, Table 6 (error 7.51%)",
                       "the paper: 0.46M"),
    "resnet44": _cifar(658_586, 97_174_144, 92.83, "He et al. 2016, Table 6 (error 7.17%)",
                       "the paper: 0.66M"),
    "resnet56": _cifar(853_018, 125_485_696, 93.03, "He et al. 2016, Table 6 (error 6.97%)",
                       "the paper: 0.85M"),
    "resnet110": _cifar(1_727_962, 252_887_680, 93.57, "He et al. 2016, Table 6 (error 6.43%, "
                        "best of 5 runs; mean 6.61%)", "the paper: 1.7M"),
    "resnet110_stochastic_depth": _cifar(
        1_727_962, 252_887_680, 94.75, "Huang et al. 2016, Table 1 (CIFAR-10+, error 5.25%)",
        "the same network as resnet110; only training differs"),
    "preact_resnet110": _cifar(1_730_522, 253_149_824, 93.63,
                               "He et al. 2016b, Table 3 (error 6.37%)", "the paper: 1.7M"),
    "preact_resnet164": _cifar(1_703_258, 247_646_720, 94.54,
                               "He et al. 2016b, Table 4 (error 5.46%)", "the paper: 1.7M"),
    "preact_resnet1001": _cifar(10_327_706, 1_490_995_712, 95.08,
                                "He et al. 2016b, Table 4 (error 4.92%)",
                                "the paper: 10.2M, the count without batch norm "
                                "(10,178,490)"),
    "wrn28_10": _cifar(36_479_194, 5_243_328_768, 96.0,
                       "Zagoruyko & Komodakis 2016, CIFAR-10 results (error 4.00%; 3.89% "
                       "with dropout)",
                       "the paper: 36.5M"),
}

# Pre-activation ResNets at the ImageNet depths: no published counts; these are cnnlite's own
# (the same MACs as ResNet, a few batch norm parameters fewer).
_PREACT_IMAGENET = {
    name: Reference(params, macs, (3, 224, 224), _OURS, None, None)
    for name, params, macs in [
        ("preact_resnet18", 11_687_720, 1_814_073_344),
        ("preact_resnet34", 21_795_880, 3_663_761_408),
        ("preact_resnet50", 25_549_352, 4_089_184_256),
        ("preact_resnet101", 44_541_480, 7_801_405_440),
        ("preact_resnet152", 60_185_128, 11_513_626_624),
    ]
}


# Their auxiliary classifiers only exist in training; the counts leave them out.
_SETTINGS = {"googlenet": {"aux_logits": False}, "inception_v3": {"aux_logits": False}}

REFERENCES: dict[str, Reference] = {
    **{name: Reference(params, macs, (3, *size), _TORCHVISION, _PAPERS.get(name),
                       _weights(*accuracy), settings=_SETTINGS.get(name, {}))
       for name, (params, macs, size, accuracy) in _TORCHVISION_TABLE.items()},
    **_OTHERS, **_CIFAR, **_PREACT_IMAGENET,
}


def reference(name: str) -> Reference:
    """The published figures of the architecture ``name`` (the names: ``REFERENCES``)."""
    from cnnlite.models import unknown_name_error

    try:
        return REFERENCES[name]
    except KeyError:
        raise unknown_name_error(name, REFERENCES, "cnnlite.models.reference.REFERENCES") from None
