"""VGG (Simonyan and Zisserman 2015): depth from stacks of 3x3 convolutions.

VGG's one idea: use only 3x3 convolutions (stride 1, padding 1, so they keep the map size)
and 2x2 max pooling (stride 2, halving it), and go deep. Two stacked 3x3 layers see a 5x5
patch, three a 7x7 patch, with fewer weights than one large kernel (three 3x3 layers of C
channels: 27 C^2 weights; one 7x7 layer: 49 C^2) and a ReLU between each.

Table 1 of the paper, the configurations A (11 weight layers), B (13), D (16) and E (19);
conv3-64 is a 3x3 convolution with 64 output channels, the maps' size in the first column::

    map        A (vgg11)     B (vgg13)     D (vgg16)     E (vgg19)
    224x224    conv3-64      conv3-64      conv3-64      conv3-64
                             conv3-64      conv3-64      conv3-64
               maxpool
    112x112    conv3-128     conv3-128     conv3-128     conv3-128
                             conv3-128     conv3-128     conv3-128
               maxpool
     56x56     conv3-256     conv3-256     conv3-256     conv3-256
               conv3-256     conv3-256     conv3-256     conv3-256
                                           conv3-256     conv3-256
                                                         conv3-256
               maxpool
     28x28     conv3-512 x2  conv3-512 x2  conv3-512 x3  conv3-512 x4
               maxpool
     14x14     conv3-512 x2  conv3-512 x2  conv3-512 x3  conv3-512 x4
               maxpool       (-> 512 x 7 x 7)
               FC-4096, FC-4096, FC-1000, soft-max
    params     132,863,336   133,047,848   138,357,544   143,667,240

Most parameters sit in the first fully connected layer (25088 x 4096 = 102.8 M of VGG-16's
138.4 M); nearly all multiply-adds in the convolutions (15.35 G of VGG-16's 15.47 G). The
``_bn`` variants put a batch norm after every convolution (not in the paper; torchvision's),
which lets them train from scratch without the paper's trick of starting the deeper nets
from the trained net A.

Activation memory of VGG-16, the lecture's per-layer list (values per image at 224 x 224,
forward pass only; ``activations_per_layer`` recounts it from the model)::

    input       224 x 224 x 3     150,528
    conv1_1/2   224 x 224 x 64    3,211,264 each
    pool1       112 x 112 x 64      802,816
    conv2_1/2   112 x 112 x 128   1,605,632 each
    pool2        56 x 56 x 128      401,408
    conv3_1/2/3  56 x 56 x 256      802,816 each
    pool3        28 x 28 x 256      200,704
    conv4_1/2/3  28 x 28 x 512      401,408 each
    pool4        14 x 14 x 512      100,352
    conv5_1/2/3  14 x 14 x 512      100,352 each
    pool5         7 x 7 x 512        25,088
    fc6, fc7, fc8                    4,096 + 4,096 + 1,000
                              total 15,237,608 values (about 61 MB in float32)

The slide's total reads "24M * 4 bytes ~ 96MB / image": an addition error; its own
per-layer values sum to 15.2 M. The list counts each convolution's output once (the ReLU
runs in place on it, as in Caffe and PyTorch's ``inplace=True``) and leaves out the layers
that only pass values on: the flatten (a reshape), torchvision's adaptive pooling (7 x 7 to
7 x 7 at 224) and dropout (the identity in evaluation). Training keeps these maps for the
backward pass, and their gradients need as much again.

Module names and state-dict keys are torchvision's (``features.N``, ``classifier.N``), so its
ImageNet weights load unchanged. Initialisation as torchvision's (``init_weights=True``):
convolutions ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (He et al. 2015) with
zero bias, batch norm scale 1 and shift 0, linear layers N(0, 0.01^2) with zero bias. (The
paper drew N(0, 0.01^2) for all weights and initialised the deeper nets from the trained
net A; He et al.'s scale removes the need.)
"""
from __future__ import annotations

import math

from cnnlite import nn
from cnnlite.models.registry import ModelEntry
from cnnlite.summary import summary

__all__ = ["VGG", "CONFIGS", "make_layers", "activations_per_layer", "vgg11", "vgg11_bn",
           "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]

#: Table 1 of the paper: output channels of each 3x3 convolution, "M" for a 2x2 max pooling.
CONFIGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(config: list, batch_norm: bool = False) -> nn.Sequential:
    """The convolutional part of a VGG from a ``CONFIGS`` entry: for each number c a 3x3
    convolution to c channels (padding 1), [batch norm,] ReLU; for each "M" a 2x2 max pooling
    with stride 2. x (N, 3, H, W) -> (N, 512, H / 32, W / 32) (sizes rounded down at each
    pooling)."""
    layers, in_channels = [], 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU())
        in_channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG network: ``features`` (from ``make_layers``), an adaptive average pooling to
    7 x 7, and the three fully connected layers.

    Parameters
    ----------
    features : nn.Sequential
        The convolutional part; ends with 512 channels.
    num_classes : int
    init_weights : bool
        torchvision's initialisation (see the module docstring); ``False`` keeps PyTorch's
        default.
    dropout : float
        Dropout probability after fc6 and fc7.

    Shapes: x (N, 3, H, W), H, W >= 32 (224 by design) -> (N, 512, 7, 7) after the adaptive
    pooling -> logits (N, num_classes).
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000,
                 init_weights: bool = True, dropout: float = 0.5):
        super().__init__()
        self.features = features
        # The identity at 224 x 224 (the map is 7 x 7 already); other sizes get the 7 x 7 the
        # first fully connected layer is built for.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            self._initialise()

    def _initialise(self):
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        features = self.avgpool(self.features(x))                  # (N, 512, 7, 7)
        return self.classifier(features.reshape(features.shape[0], -1))


def activations_per_layer(model: nn.Module, image_size: tuple = (224, 224)) -> list[tuple]:
    """The values each layer's output holds for one image, as the lecture lists them for
    VGG-16: the input, then every convolution, max pooling and fully connected layer.

    Parameters
    ----------
    model : nn.Module
        Taking 3-channel images.
    image_size : (H, W)

    Returns
    -------
    list of (name, shape, values)
        ``name`` as in the state dict ("input" for the image), ``shape`` without the batch
        axis, ``values`` its number of elements. For ``vgg16()`` at 224 x 224 they sum to
        15,237,608.
    """
    listed = ("Conv2d", "MaxPool2d", "Linear")
    image = (3, *image_size)
    rows = summary(model, image).rows       # traces one forward pass for the output shapes
    return [("input", image, math.prod(image))] + [
        (row.name, row.output_shape[1:], math.prod(row.output_shape[1:]))
        for row in rows if row.type in listed]


def _vgg(config: str, batch_norm: bool, num_classes: int, init_weights: bool,
         dropout: float) -> VGG:
    return VGG(make_layers(CONFIGS[config], batch_norm), num_classes=num_classes,
               init_weights=init_weights, dropout=dropout)


def vgg11(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-11, configuration A (132,863,336 parameters at 1000 classes)."""
    return _vgg("A", False, num_classes, init_weights, dropout)


def vgg11_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-11 with batch norm (132,868,840 parameters)."""
    return _vgg("A", True, num_classes, init_weights, dropout)


def vgg13(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-13, configuration B (133,047,848 parameters)."""
    return _vgg("B", False, num_classes, init_weights, dropout)


def vgg13_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-13 with batch norm (133,053,736 parameters)."""
    return _vgg("B", True, num_classes, init_weights, dropout)


def vgg16(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-16, configuration D (138,357,544 parameters)."""
    return _vgg("D", False, num_classes, init_weights, dropout)


def vgg16_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-16 with batch norm (138,365,992 parameters)."""
    return _vgg("D", True, num_classes, init_weights, dropout)


def vgg19(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-19, configuration E (143,667,240 parameters)."""
    return _vgg("E", False, num_classes, init_weights, dropout)


def vgg19_bn(num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5) -> VGG:
    """VGG-19 with batch norm (143,678,248 parameters)."""
    return _vgg("E", True, num_classes, init_weights, dropout)


MODELS = {
    name: ModelEntry(constructor, (224, 224), small_input=(32, 32))
    for name, constructor in [
        ("vgg11", vgg11), ("vgg11_bn", vgg11_bn), ("vgg13", vgg13), ("vgg13_bn", vgg13_bn),
        ("vgg16", vgg16), ("vgg16_bn", vgg16_bn), ("vgg19", vgg19), ("vgg19_bn", vgg19_bn),
    ]
}
