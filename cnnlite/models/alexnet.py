"""AlexNet (Krizhevsky, Sutskever and Hinton 2012), its Caffe replications and ZFNet.

The network that won ILSVRC 2012: five convolutions, three max poolings, three fully
connected layers, ReLU everywhere, dropout in the first two fully connected layers and local
response normalisation (LRN) after the first two convolutions. Trained on two GTX 580 GPUs
of 3 GB each, it was split in two halves: conv2, conv4 and conv5 only see the channels on
their own GPU (``groups=2``), conv3 and the fully connected layers see both.

The paper's architecture (``alexnet_paper``; input 3 x 227 x 227: the paper writes 224, but
only 227 gives its 55 x 55 maps)::

    layer   kernel / stride / pad   groups   output         parameters
    conv1   96 @ 11x11 / 4 / 0        1      96 x 55 x 55       34,944
    norm1   LRN, 5 channels                  96 x 55 x 55
    pool1   max 3x3 / 2                      96 x 27 x 27
    conv2   256 @ 5x5 / 1 / 2         2     256 x 27 x 27      307,456
    norm2   LRN, 5 channels                 256 x 27 x 27
    pool2   max 3x3 / 2                     256 x 13 x 13
    conv3   384 @ 3x3 / 1 / 1         1     384 x 13 x 13      885,120
    conv4   384 @ 3x3 / 1 / 1         2     384 x 13 x 13      663,936
    conv5   256 @ 3x3 / 1 / 1         2     256 x 13 x 13      442,624
    pool5   max 3x3 / 2                     256 x  6 x  6
    fc6     9216 -> 4096, dropout                           37,752,832
    fc7     4096 -> 4096, dropout                           16,781,312
    fc8     4096 -> 1000                                     4,097,000
                                                     total  60,965,224

With ``groups=1`` (every convolution sees all channels) conv2, conv4 and conv5 have twice
the weights: 62,378,344 parameters. Overlapping pooling (3x3 windows, stride 2) was one of
the paper's points: it lowered the top-1 error by 0.4% against 2x2 windows.

LRN. ``b[c] = a[c] / (k + alpha * sum of a[j]^2 over the n channels around c)^beta`` with
k = 2, n = 5, alpha = 1e-4, beta = 0.75 in the paper. Caffe's bvlc_alexnet (and PyTorch's
``LocalResponseNorm``, and cnnlite's) divide alpha by n, and Caffe's file uses k = 1: a
weaker normalisation than the paper's. The models here default to Caffe's settings, whose
trained weights exist; ``lrn_k=2.0, lrn_alpha_over_size=False`` gives the paper's formula.

The variants:

* ``alexnet``: torchvision's, after Krizhevsky's "One weird trick" (2014): 64-192-384-256-256
  channels, no LRN, no groups, conv1 padded by 2, an adaptive average pooling to 6 x 6 (so
  it takes 224 x 224 and smaller images) and dropout *before* fc6 and fc7. 61,100,840
  parameters; state-dict keys ``features.N`` / ``classifier.N`` as torchvision's.
* ``caffenet``: Caffe's bvlc_reference_caffenet, AlexNet with pooling *before* normalisation
  (the same parameters; LRN on the smaller pooled maps is cheaper).
* ``zfnet``: Zeiler and Fergus (2013), AlexNet adjusted after looking at its filters:
  conv1 7x7 with stride 2 instead of 11x11 with stride 4 (fewer dead and aliased filters),
  conv2 with stride 2, no groups (one GPU). See ``ZFNet``.

The Caffe-style models name their layers as the Caffe files do (``features.conv1``,
``features.norm1``, ``classifier.fc6``, ...), so that those files' weights map by name.
"""
from __future__ import annotations

from collections import OrderedDict

from cnnlite import nn
from cnnlite.models.blocks import check_input_size
from cnnlite.models.registry import ModelEntry

__all__ = ["AlexNet", "CaffeAlexNet", "ZFNet", "alexnet", "alexnet_paper", "caffenet", "zfnet"]


class AlexNet(nn.Module):
    """AlexNet as torchvision builds it (64-192-384-256-256, no LRN, no groups).

    Parameters
    ----------
    num_classes : int
        Outputs of the last layer.
    dropout : float
        Dropout probability before fc6 and fc7.

    Shapes: x (N, 3, H, W), H, W >= 63 (224 by design) -> features (N, 256, 6, 6) after the
    adaptive pooling -> logits (N, num_classes). Initialisation: PyTorch's default, as in
    torchvision.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),   # 55 x 55
            nn.MaxPool2d(kernel_size=3, stride=2),                              # 27 x 27
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),                              # 13 x 13
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),                              # 6 x 6
        )
        # At 224 x 224 the map is already 6 x 6 and this pooling does nothing; it lets
        # smaller or larger images reach the fully connected layers with the size they need.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        features = self.avgpool(self.features(x))                  # (N, 256, 6, 6)
        return self.classifier(features.reshape(features.shape[0], -1))


def _caffe_classifier(num_classes: int, dropout: float) -> nn.Sequential:
    """fc6 - fc7 - fc8 of the Caffe models: dropout after the ReLUs of fc6 and fc7 (the
    paper's "dropout in the first two fully-connected layers"), none on the conv features."""
    return nn.Sequential(OrderedDict([
        ("fc6", nn.Linear(256 * 6 * 6, 4096)), ("relu6", nn.ReLU()),
        ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Linear(4096, 4096)), ("relu7", nn.ReLU()),
        ("drop7", nn.Dropout(dropout)),
        ("fc8", nn.Linear(4096, num_classes)),
    ]))


def _gaussian_init(model: nn.Module, ones_bias: tuple = ()) -> None:
    """Weights ~ N(0, 0.01^2); biases 1 for the layers named in ``ones_bias``, 0 for the rest."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.constant_(module.bias, 1.0 if name.split(".")[-1] in ones_bias else 0.0)


class CaffeAlexNet(nn.Module):
    """AlexNet as in the paper and Caffe's bvlc_alexnet (see the module's table), or, with
    ``pool_before_norm=True``, Caffe's bvlc_reference_caffenet.

    Parameters
    ----------
    num_classes : int
    groups : int
        Channel groups of conv2, conv4 and conv5: 2 as on the paper's two GPUs, 1 for
        full connections between all channels (62,378,344 instead of 60,965,224 parameters).
    lrn_k, lrn_alpha_over_size : float, bool
        The LRN's k and whether alpha is divided by the window size n. Defaults: Caffe's
        (k = 1, alpha / n); the paper's formula is k = 2 without the division.
    pool_before_norm : bool
        CaffeNet's order (conv, ReLU, pool, LRN) instead of AlexNet's (conv, ReLU, LRN, pool).
    dropout : float
        Dropout probability after fc6 and fc7.
    init_weights : bool
        The paper's initialisation: weights ~ N(0, 0.01^2), biases 1 in conv2, conv4, conv5,
        fc6 and fc7 (so that their ReLUs start with positive inputs) and 0 elsewhere. Caffe's
        files use 0.1 instead of 1 and N(0, 0.005^2) for fc6 and fc7. ``False`` keeps
        PyTorch's default.

    Shapes: x (N, 3, 227, 227) only (the fully connected layers are sized for it; any other
    size raises an OpError) -> logits (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, groups: int = 2, lrn_k: float = 1.0,
                 lrn_alpha_over_size: bool = True, pool_before_norm: bool = False,
                 dropout: float = 0.5, init_weights: bool = True):
        super().__init__()
        self.model_name = "CaffeNet" if pool_before_norm else "AlexNet"

        def normalise_and_pool(index: int) -> list:
            norm = (f"norm{index}", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=lrn_k,
                                                         alpha_over_size=lrn_alpha_over_size))
            pool = (f"pool{index}", nn.MaxPool2d(kernel_size=3, stride=2))
            return [pool, norm] if pool_before_norm else [norm, pool]

        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 96, kernel_size=11, stride=4)), ("relu1", nn.ReLU()),
            *normalise_and_pool(1),
            ("conv2", nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=groups)),
            ("relu2", nn.ReLU()),
            *normalise_and_pool(2),
            ("conv3", nn.Conv2d(256, 384, kernel_size=3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=groups)),
            ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=groups)),
            ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(kernel_size=3, stride=2)),
        ]))
        self.classifier = _caffe_classifier(num_classes, dropout)
        if init_weights:
            _gaussian_init(self, ones_bias=("conv2", "conv4", "conv5", "fc6", "fc7"))

    def forward(self, x):
        check_input_size(self.model_name, x, 3, (227, 227))
        features = self.features(x)                                 # (N, 256, 6, 6)
        return self.classifier(features.reshape(features.shape[0], -1))


class ZFNet(nn.Module):
    """ZFNet (Zeiler and Fergus, "Visualizing and understanding convolutional networks",
    2013), the network of their Fig. 3; input 3 x 224 x 224::

        layer   kernel / stride / pad   output          parameters
        conv1   96 @ 7x7 / 2 / 1        96 x 110 x 110      14,208
        pool1   max 3x3 / 2, LRN        96 x  55 x  55
        conv2   256 @ 5x5 / 2 / 0      256 x  26 x  26     614,656
        pool2   max 3x3 / 2, LRN       256 x  13 x  13
        conv3   384 @ 3x3 / 1 / 1      384 x  13 x  13     885,120
        conv4   384 @ 3x3 / 1 / 1      384 x  13 x  13   1,327,488
        conv5   256 @ 3x3 / 1 / 1      256 x  13 x  13     884,992
        pool5   max 3x3 / 2            256 x   6 x   6
        fc6, fc7, fc8 as AlexNet's                      58,631,144
                                                 total  62,357,608

    The paper gives the map sizes of its figure but neither the padding nor a parameter
    total; the total above is counted on this model. Its 110 - 55 - 26 - 13 - 6 maps follow
    from padding conv1 by 1 and rounding the pooled sizes up, as Caffe does (``ceil_mode``;
    rounding down would give 54 and 12). The "contrast normalisation across feature maps"
    after pool1 and pool2 is AlexNet's LRN here, with CaffeNet's settings.

    Initialisation as in the paper: weights ~ N(0, 0.01^2), biases 0 (``init_weights``).
    (During training the paper also renormalised every conv filter whose RMS exceeded 0.1
    back to 0.1; that belongs to the training loop, not the model.)

    Shapes: x (N, 3, 224, 224) only (any other size raises an OpError) -> (N, num_classes).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5,
                 init_weights: bool = True):
        super().__init__()

        def pool_and_normalise(index: int) -> list:
            return [(f"pool{index}", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)),
                    (f"norm{index}", nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))]

        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 96, kernel_size=7, stride=2, padding=1)), ("relu1", nn.ReLU()),
            *pool_and_normalise(1),
            ("conv2", nn.Conv2d(96, 256, kernel_size=5, stride=2)), ("relu2", nn.ReLU()),
            *pool_and_normalise(2),
            ("conv3", nn.Conv2d(256, 384, kernel_size=3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(384, 384, kernel_size=3, padding=1)), ("relu4", nn.ReLU()),
            ("conv5", nn.Conv2d(384, 256, kernel_size=3, padding=1)), ("relu5", nn.ReLU()),
            ("pool5", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)),
        ]))
        self.classifier = _caffe_classifier(num_classes, dropout)
        if init_weights:
            _gaussian_init(self)

    def forward(self, x):
        check_input_size("ZFNet", x, 3, (224, 224))
        features = self.features(x)                                 # (N, 256, 6, 6)
        return self.classifier(features.reshape(features.shape[0], -1))


def alexnet(num_classes: int = 1000, dropout: float = 0.5) -> AlexNet:
    """torchvision's AlexNet (61,100,840 parameters at 1000 classes); see ``AlexNet``."""
    return AlexNet(num_classes=num_classes, dropout=dropout)


def alexnet_paper(num_classes: int = 1000, groups: int = 2, lrn_k: float = 1.0,
                  lrn_alpha_over_size: bool = True, dropout: float = 0.5,
                  init_weights: bool = True) -> CaffeAlexNet:
    """AlexNet as in the 2012 paper and Caffe's bvlc_alexnet: 227 x 227 input, LRN before
    pooling, two groups (60,965,224 parameters); see ``CaffeAlexNet``."""
    return CaffeAlexNet(num_classes=num_classes, groups=groups, lrn_k=lrn_k,
                        lrn_alpha_over_size=lrn_alpha_over_size, dropout=dropout,
                        init_weights=init_weights)


def caffenet(num_classes: int = 1000, groups: int = 2, dropout: float = 0.5,
             init_weights: bool = True) -> CaffeAlexNet:
    """Caffe's bvlc_reference_caffenet: AlexNet with pooling before LRN; see
    ``CaffeAlexNet``."""
    return CaffeAlexNet(num_classes=num_classes, groups=groups, pool_before_norm=True,
                        dropout=dropout, init_weights=init_weights)


def zfnet(num_classes: int = 1000, dropout: float = 0.5, init_weights: bool = True) -> ZFNet:
    """Zeiler and Fergus's network (62,357,608 parameters at 1000 classes); see ``ZFNet``."""
    return ZFNet(num_classes=num_classes, dropout=dropout, init_weights=init_weights)


MODELS = {
    "alexnet": ModelEntry(alexnet, (224, 224), small_input=(64, 64)),
    "alexnet_paper": ModelEntry(alexnet_paper, (227, 227)),
    "caffenet": ModelEntry(caffenet, (227, 227)),
    "zfnet": ModelEntry(zfnet, (224, 224)),
}
