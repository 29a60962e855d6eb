"""Caffe network definitions (``.prototxt``) as cnnlite networks.

>>> net = load_prototxt("caffenet128_lsuv.prototxt")        # doctest: +SKIP
>>> logits = net(images)                                     # (N, 1000)  # doctest: +SKIP

``load_prototxt`` reads a network definition, or a solver file with a ``net_param { ... }``,
keeps the layers of the requested phase (``include``/``exclude { phase }``) and builds one
``cnnlite.nn`` module per layer, in file order (the per-type builders are in
``cnnlite.io.caffe_builders``). The network runs over named blobs like Caffe:
each layer reads its ``bottom`` blobs and writes its ``top`` blobs (in-place layers write the
blob they read).

What is not a module:

- the data layer: ``forward(x)`` takes its first top (the images); its shape comes from the
  data layer's ``crop_size`` (3 channels) unless ``input_shape`` is given;
- loss and accuracy layers (``SoftmaxWithLoss``, ``Accuracy``): they are left to the training
  loop, and ``forward(x)`` returns the blobs they read (the logits). ``net.loss_layers``
  lists them. In general ``forward`` returns every blob that no built layer reads, one tensor
  or a tuple in file order (GoogLeNet's three classifiers give three).

Caffe's conventions kept: pooling rounds output sizes up (ceil mode, a window must start inside
the image or its left/top padding); LRN divides alpha by the size; fillers and their fans
(``caffe_layers.fill``); ``lr_mult``/``decay_mult`` per parameter in ``net.param_multipliers``.

BatchNorm followed by Scale (the Scale reads the BatchNorm's top) is built as one
``nn.BatchNorm2d`` with ``affine=True`` under the BatchNorm layer's name: Caffe's Scale holds
the affine parameters that cnnlite's BatchNorm2d has, so the Scale layer has no module of its
own and its ``lr_mult``/``decay_mult`` go to ``<bn>.weight``/``<bn>.bias``. Caffe keeps
bias-corrected sums of the statistics with ``moving_average_fraction`` f; here the running
averages move with momentum 1 - f (the same average once many batches have been seen).
``use_global_stats: true`` (the default in the TEST phase) builds
``GlobalStatsBatchNorm2d`` (or 1d), which always uses the running averages.

RReLU's ``lb``/``ub`` bound the divisor a of ``y = x / a`` (Xu et al.); cnnlite's RReLU draws
the slope 1/a uniformly from [1/ub, 1/lb]. APL has one set of hinges per channel.
Layer names with '.' are registered with '_' instead (dots separate state-dict keys).

``benchmark_table(folder)`` builds every ``.prototxt`` of a folder and writes the Markdown table
of ``caffe_benchmark_files.md`` (which files build, their parameters and pooling shapes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlite import nn
from cnnlite.io.caffe_builders import LayerBuilder
from cnnlite.io.caffe_layers import CaffeError
from cnnlite.io.prototxt import Message, parse_prototxt, read_prototxt
from cnnlite.nn import init

__all__ = ["CaffeError", "CaffeNet", "load_prototxt", "describe_pooling_shapes",
           "benchmark_table", "SUPPORTED_TYPES"]

DATA_TYPES = {"Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "Input", "WindowData"}
LEFT_TO_TRAINING = {"SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss",
                    "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss", "Silence"}
POOLING_TYPES = {"Pooling", "SPP", "GatedMaxAve", "TreepoolMaxAve", "TreepoolKernel1L"}


@dataclass(frozen=True)
class CaffeStep:
    """One built layer: its module's key in the net, Caffe name and type, and its blobs."""

    key: str
    name: str
    type: str
    bottoms: tuple
    tops: tuple


class CaffeNet(nn.ModuleDict):
    """A network built from a Caffe definition: a ``ModuleDict`` of its layers (state-dict keys
    ``<layer name>.weight``) run over named blobs by ``forward``.

    Attributes
    ----------
    steps : list of CaffeStep, in the order they run
    input_blob : str, the data layer's first top (what ``forward(x)`` binds x to)
    input_shape : (C, H, W) the layers were sized for
    outputs : tuple of the blobs ``forward`` returns
    blob_shapes : dict blob -> shape without the batch axis, for ``input_shape``
    param_multipliers : dict parameter name -> (lr_mult, decay_mult), for every parameter
    loss_layers : list of (name, type, bottoms) of the loss and accuracy layers left out
    """

    def __init__(self, name: str, source: str):
        super().__init__()
        self.name, self.source = name, source
        self.steps: list[CaffeStep] = []
        self.input_blob, self.input_shape, self.outputs = "data", (), ()
        self.blob_shapes: dict[str, tuple] = {}
        self.param_multipliers: dict[str, tuple[float, float]] = {}
        self.loss_layers: list[tuple] = []
        self.definition, self.phase = Message(source), "TRAIN"

    def forward(self, x):
        blobs = {self.input_blob: x}
        for step in self.steps:
            out = self[step.key](*(blobs[b] for b in step.bottoms))
            if len(step.tops) == 1:
                blobs[step.tops[0]] = out
            else:
                blobs.update(zip(step.tops, out))
        results = tuple(blobs[b] for b in self.outputs)
        return results[0] if len(results) == 1 else results

    def extra_repr(self):
        return f"name={self.name!r}, input={self.input_blob!r} {self.input_shape}"


# --- reading the definition ----------------------------------------------------------------------

def _in_phase(layer: Message, phase: str) -> bool:
    includes, excludes = layer.all("include"), layer.all("exclude")
    if includes and not any(rule.get("phase", phase) == phase for rule in includes):
        return False
    return not any(rule.get("phase") == phase for rule in excludes)


SUPPORTED_TYPES = sorted({name for name in vars(LayerBuilder) if name[0].isupper()}
                         | DATA_TYPES | LEFT_TO_TRAINING)


# --- building the network ------------------------------------------------------------------------

def _definition(path_or_text) -> Message:
    """A parsed definition from a path or from the text itself (a definition has a '{')."""
    if isinstance(path_or_text, Message):
        return path_or_text
    if isinstance(path_or_text, Path) or "{" not in str(path_or_text):
        if not Path(path_or_text).is_file():
            raise CaffeError(f"load_prototxt: no such file {str(path_or_text)!r}")
        return read_prototxt(path_or_text)
    return parse_prototxt(str(path_or_text))


def _input_shape(net: Message, data: Message | None, input_shape, source: str) -> tuple:
    if input_shape is not None:
        return tuple(int(n) for n in input_shape)
    if data is not None:
        crop = data.message("transform_param").get("crop_size")
        if crop is not None:
            return (3, int(crop), int(crop))
    dims = net.message("input_shape").all("dim") or net.all("input_dim")
    if len(dims) == 4:
        return tuple(int(n) for n in dims[1:])
    raise CaffeError(f"{source}: the input size is not in the file (no crop_size in the data "
                     f"layer, no input_shape); pass input_shape=(C, H, W)")


def load_prototxt(path_or_text, phase: str = "TRAIN", input_shape=None,
                  rng: np.random.Generator | int | None = None,
                  fill_weights: bool = True) -> CaffeNet:
    """Build the network of a Caffe definition for ``phase``.

    Parameters
    ----------
    path_or_text : str or Path
        A ``.prototxt`` file (a network, or a solver with ``net_param { ... }``), or its text.
    phase : "TRAIN" or "TEST"
        Keeps the layers whose ``include``/``exclude`` rules admit the phase; a TEST net is
        returned in evaluation mode.
    input_shape : (C, H, W), optional
        The input the layers are sized for (fully connected layers depend on it). Default:
        3 channels and the data layer's ``crop_size``.
    rng : numpy Generator or seed, optional
        For the fillers, dropout, RReLU and stochastic pooling.
    fill_weights : bool
        ``False`` skips the fillers and leaves every parameter at zero, for loading trained
        weights next (drawing the 13M initial weights of CaffeNet128 takes most of the time).

    Raises
    ------
    PrototxtError for malformed text (file, line, column); CaffeError for a layer that cannot
    be built (an unknown type, a missing bottom blob, a bad shape), naming the file, the line
    and the layer.
    """
    if phase not in ("TRAIN", "TEST"):
        raise CaffeError(f"load_prototxt: phase must be 'TRAIN' or 'TEST', got {phase!r}")
    definition = _definition(path_or_text)
    spec = definition.message("net_param") if "net_param" in definition else definition
    source = spec.source
    all_layers = spec.all("layer") or spec.all("layers")
    if not all_layers:
        raise CaffeError(f"{source}: no layers (a solver file that names its net in "
                         f"'net: {definition.get('net', '...')}' has no net of its own)")
    chosen = [layer for layer in all_layers if _in_phase(layer, phase)]
    data = next((layer for layer in chosen if layer.get("type") in DATA_TYPES), None)
    net = CaffeNet(str(spec.get("name", "")), source)
    net.definition, net.phase = definition, phase
    net.input_shape = _input_shape(spec, data, input_shape, source)
    net.input_blob = data.all("top")[0] if data is not None else str(spec.get("input", "data"))
    net.blob_shapes[net.input_blob] = net.input_shape
    builder = LayerBuilder(net, phase, np.random.default_rng(rng), fill_weights)
    labels = set(data.all("top")[1:]) if data is not None else set()
    _build_layers(net, builder, chosen, labels)
    consumed = {b for step in net.steps for b in step.bottoms}
    produced = [net.input_blob] + [t for step in net.steps for t in step.tops]
    net.outputs = tuple(dict.fromkeys(b for b in produced if b not in consumed))
    return net.eval() if phase == "TEST" else net


def _build_layers(net: CaffeNet, builder: LayerBuilder, chosen: list, labels: set) -> None:
    skip_next = False
    for index, layer in enumerate(chosen):
        if skip_next:
            skip_next = False
            continue
        kind, name = layer.get("type"), str(layer.get("name", f"layer{index}"))
        bottoms, tops = tuple(layer.all("bottom")), tuple(layer.all("top"))
        if kind in DATA_TYPES:
            continue
        if kind in LEFT_TO_TRAINING:
            net.loss_layers.append((name, kind, bottoms))
            continue
        where = builder.where(layer)
        for blob in bottoms:
            if blob in labels:
                raise CaffeError(f"{where}: reads the labels {blob!r}; only loss and accuracy "
                                 f"layers may")
            if blob not in net.blob_shapes:
                raise CaffeError(f"{where}: bottom blob {blob!r} is not made by any layer "
                                 f"before it (known blobs: {sorted(net.blob_shapes)})")
        build = getattr(builder, kind, None) if kind and kind[0].isupper() else None
        if build is None:
            raise CaffeError(f"{where}: layer type {kind!r} is not supported; supported: "
                             f"{', '.join(SUPPORTED_TYPES)}")
        shapes = [net.blob_shapes[b] for b in bottoms]
        scale = _following_scale(chosen, index) if kind == "BatchNorm" else None
        try:
            # The fillers set the weights; the layers' own random initialisation is skipped.
            with init.skip_init():
                module, out_shapes = (build(layer, shapes, scale) if kind == "BatchNorm"
                                      else build(layer, shapes))
        except CaffeError:
            raise
        except (ValueError, TypeError, IndexError) as error:  # a layer's checks of its sizes
            raise CaffeError(f"{where}: cannot build it for input shapes "
                             f"{[(None, *s) for s in shapes]}: {error}") from error
        if scale is not None:
            tops, skip_next = tuple(scale.all("top")), True
        key = name.replace(".", "_")
        if key in net:
            raise CaffeError(f"{where}: a second layer named {name!r} in this phase")
        net[key] = module
        builder.multipliers(scale if scale is not None else layer, key, module)
        net.steps.append(CaffeStep(key, name, kind, bottoms, tops))
        if len(out_shapes) != len(tops):
            raise CaffeError(f"{where}: has {len(tops)} tops, makes {len(out_shapes)} blobs")
        for top, shape in zip(tops, out_shapes):
            if min(shape) < 1:
                raise CaffeError(f"{where}: output {top!r} would have shape {(None, *shape)} "
                                 f"for input shapes {[(None, *s) for s in shapes]}")
            net.blob_shapes[top] = tuple(shape)


def _following_scale(chosen: list, index: int) -> Message | None:
    """The Scale layer right after BatchNorm ``chosen[index]`` that reads its top, if the
    BatchNorm's top is read by nothing else (then the two are one affine BatchNorm)."""
    if index + 1 >= len(chosen):
        return None
    bn, scale = chosen[index], chosen[index + 1]
    top = bn.all("top")[0] if bn.all("top") else None
    if scale.get("type") != "Scale" or scale.all("bottom") != [top]:
        return None
    if scale.all("top") != [top] and any(top in later.all("bottom")
                                         for later in chosen[index + 2:]):
        return None
    return scale


def describe_pooling_shapes(net: CaffeNet, input_shape=None) -> list[tuple[str, tuple]]:
    """``(layer name, output shape without the batch)`` of every pooling layer (Pooling, SPP
    and the generalised poolings), for ``input_shape`` (default: the one the net was built
    for; another one rebuilds the definition, without running anything)."""
    if input_shape is not None and tuple(input_shape) != net.input_shape:
        net = load_prototxt(net.definition, net.phase, input_shape, fill_weights=False)
    return [(step.name, net.blob_shapes[step.tops[0]]) for step in net.steps
            if step.type in POOLING_TYPES]


# --- the table of a folder of definitions --------------------------------------------------------

def _crop_size(net: CaffeNet) -> str:
    """The ``crop_size`` of the net's data layer in its phase, or '-' when it has none."""
    spec = net.definition.message("net_param") if "net_param" in net.definition else net.definition
    for layer in spec.all("layer") or spec.all("layers"):
        if layer.get("type") in DATA_TYPES and _in_phase(layer, net.phase):
            crop = layer.message("transform_param").get("crop_size")
            return str(crop) if crop is not None else "-"
    return "-"


def _shape_text(shape: tuple) -> str:
    return "x".join(str(n) for n in shape)


def _table_row(name: str, path: Path, input_shape: tuple) -> tuple[bool, str]:
    """Whether ``path`` builds, and its Markdown row."""
    try:
        net = load_prototxt(path, "TRAIN", input_shape, fill_weights=False)
    except CaffeError as error:
        # The message starts with the file's path, which the row already names.
        why = str(error).removeprefix(f"{path}: ")
        return False, f"| `{name}` | no: {why} | | | |"
    parameters = sum(p.size for p in net.parameters())
    pools = ", ".join(f"{layer} {_shape_text(shape)}"
                      for layer, shape in describe_pooling_shapes(net)) or "-"
    return True, f"| `{name}` | yes | {_crop_size(net)} | {parameters:,} | {pools} |"


def benchmark_table(folder, input_shape=(3, 128, 128)) -> str:
    """The Markdown table of every ``.prototxt`` under ``folder`` built for ``input_shape``.

    One row per file, sorted by path: whether it builds in the TRAIN phase (and the reason when
    not), the data layer's ``crop_size``, the number of parameters and the output shape
    (C x H x W, without the batch) of every pooling layer. The nets are built without drawing
    their weights, so the benchmark's 182 nets take seconds.

    Parameters
    ----------
    folder : str or Path
        A folder of Caffe definitions, searched recursively (the benchmark's ``prototxt``).
    input_shape : (C, H, W)
        The input every net is sized for (fully connected layers depend on it).

    Returns
    -------
    str
        The text of ``caffe_benchmark_files.md``: a first line naming this call, a paragraph
        with the counts, and the table, ending in a newline.
    """
    folder, input_shape = Path(folder), tuple(int(n) for n in input_shape)
    size = "x".join(str(n) for n in input_shape[1:])
    rows = [_table_row(path.relative_to(folder).as_posix(), path, input_shape)
            for path in sorted(folder.rglob("*.prototxt"),
                               key=lambda p: p.relative_to(folder).as_posix())]
    built = sum(builds for builds, _ in rows)
    lines = [
        f"<!-- Generated by cnnlite.io.caffe.benchmark_table(folder, input_shape={input_shape}) "
        f"with folder = {folder.parent.name}/{folder.name}; regenerate it, do not edit it. -->",
        "",
        f"Mishkin et al.'s caffenet-benchmark: {len(rows)} prototxt files, {built} build "
        f"(`cnnlite.io.caffe.load_prototxt(path, 'TRAIN', input_shape={input_shape})`). "
        f"Parameters and pooling shapes are for a {_shape_text(input_shape)} input (fully "
        f"connected layers are sized for it; nets meant for another crop have other fc sizes at "
        f"their own crop).",
        "",
        f"| file | builds | crop | parameters ({size}) | pooling outputs at {size} (C x H x W) |",
        "|---|---|---|---|---|",
        *(row for _, row in rows),
    ]
    return "\n".join(lines) + "\n"
