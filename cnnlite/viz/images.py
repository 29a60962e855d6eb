"""Pictures of what a convolution sees and makes: its filters, its feature maps, and the
im2col matrix behind it.

=====================  ==========================================================================
``plot_filters``       the filters of a convolution as one image grid (AlexNet's conv1 figure)
``plot_feature_maps``  the feature maps of one image after a layer, one grey image per channel
``plot_im2col``        a small input beside its im2col column matrix, one receptive field and
                       its column outlined in the same colour
=====================  ==========================================================================

All three draw on matplotlib's Agg canvas (see ``cnnlite.viz.plots``), return the Figure and,
given ``path``, write it as a PNG atomically.
"""
from __future__ import annotations

import math

import numpy as np

from cnnlite import validate
from cnnlite.errors import OpError
from cnnlite.viz.plots import as_numpy, new_figure, save_figure

__all__ = ["plot_filters", "plot_feature_maps", "plot_im2col", "filter_mosaic"]

#: The colour of the outlined receptive field and of its column.
HIGHLIGHT = "tab:red"

#: plot_im2col draws every entry of the column matrix; beyond this many rows or columns the
#: numbers no longer fit on a page.
MAX_IM2COL_SIZE = 64


# --- filters ----------------------------------------------------------------------------------

def _normalise_each(tiles: np.ndarray) -> np.ndarray:
    """Min-max normalise every tile (axis 0) on its own to [0, 1]; a constant tile becomes 0.5.

    One scale for all filters would let the strongest filter wash the others out: what a
    filter picture shows is the pattern, not its magnitude.
    """
    flat = tiles.reshape(len(tiles), -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    spread = flat.max(axis=1, keepdims=True) - low
    scaled = np.divide(flat - low, spread, out=np.full_like(flat, 0.5), where=spread > 0)
    return scaled.reshape(tiles.shape)


def filter_mosaic(tiles: np.ndarray, ncols: int, gap: int = 1) -> np.ndarray:
    """Lay out ``tiles`` (O, kh, kw, 3), values in [0, 1], as one RGBA image.

    Tile k goes to row k // ncols, column k % ncols; ``gap`` transparent pixels separate the
    tiles, so the figure's background shows between them.

    Returns
    -------
    ndarray, (rows*(kh+gap)-gap, ncols*(kw+gap)-gap, 4), float64
    """
    count, kh, kw, _ = tiles.shape
    rows = math.ceil(count / ncols)
    mosaic = np.zeros((rows * (kh + gap) - gap, ncols * (kw + gap) - gap, 4))
    for k, tile in enumerate(tiles):
        top, left = (k // ncols) * (kh + gap), (k % ncols) * (kw + gap)
        mosaic[top:top + kh, left:left + kw, :3] = tile
        mosaic[top:top + kh, left:left + kw, 3] = 1.0
    return mosaic


def plot_filters(weight, channels="rgb", ncols: int | None = None, path=None):
    """The filters of a convolution as an image grid, one tile per output channel.

    Parameters
    ----------
    weight : Tensor, Parameter, array or Conv2d
        The weights, (out, in, kh, kw) (a layer gives its ``.weight``).
    channels : "rgb", "mean" or int
        ``"rgb"``: with 3 input channels each filter is a colour image (channel 0 red, 1 green,
        2 blue), as in AlexNet's picture of its first layer; with any other number of input
        channels it falls back to ``"mean"``. ``"mean"``: the mean over the input channels, in
        grey. An int: that input channel alone, in grey.
    ncols : int, optional
        Tiles per row; by default about the square root of the number of filters.
    path : str or PathLike, optional
        Where to write the figure as a PNG.

    Every filter is min-max normalised on its own (its smallest weight black, its largest
    white), which the title says.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes with one image: the mosaic ``filter_mosaic`` makes.
    """
    if hasattr(weight, "weight") and not hasattr(weight, "shape"):  # a layer
        weight = weight.weight
    weights = as_numpy("plot_filters", "weight", weight)
    if weights.ndim != 4:
        raise OpError(f"plot_filters: expected weights of shape (out, in, kh, kw), got "
                      f"{weights.shape}")
    if weights.dtype.kind not in "biuf":
        raise OpError(f"plot_filters: expected real-valued weights, got dtype {weights.dtype} "
                      f"of shape {weights.shape}")
    out_channels, in_channels, kh, kw = weights.shape
    if out_channels == 0 or in_channels == 0:
        raise OpError(f"plot_filters: weights of shape {weights.shape} hold no filter")
    if isinstance(channels, str):
        if channels not in ("rgb", "mean"):
            raise OpError(f"plot_filters: channels must be 'rgb', 'mean' or an input channel "
                          f"number, got {channels!r}")
        if channels == "rgb" and in_channels == 3:
            tiles = weights.transpose(0, 2, 3, 1)  # (O, kh, kw, RGB)
            shown = "RGB"
        else:
            grey = weights.mean(axis=1)
            shown = "grey" if in_channels == 1 else f"mean of {in_channels} input channels"
    else:
        channel = validate.integer("plot_filters", "channels", channels, minimum=0,
                                   maximum=in_channels - 1)
        grey = weights[:, channel]
        shown = f"input channel {channel} of {in_channels}"
    if shown != "RGB":
        tiles = np.repeat(grey[..., None], 3, axis=-1)
    if ncols is None:
        ncols = math.ceil(math.sqrt(out_channels))
    ncols = validate.integer("plot_filters", "ncols", ncols, minimum=1)
    ncols = min(ncols, out_channels)
    mosaic = filter_mosaic(_normalise_each(tiles), ncols)
    rows = math.ceil(out_channels / ncols)
    scale = min(10 / ncols, 8 / rows, 1.0)  # inches per tile: large filters fit the page
    figure = new_figure(max(3.0, ncols * scale), max(2.5, rows * scale + 0.6))
    axes = figure.add_subplot()
    axes.imshow(mosaic, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(f"{out_channels} filters {kh}x{kw}, {shown}; each min-max normalised "
                   f"on its own", fontsize=9)
    save_figure(figure, path)
    return figure


# --- feature maps -----------------------------------------------------------------------------

class _StopForward(Exception):
    """Raised by the capturing hook: the layers after the chosen one need not run."""


def _layer_output(model, image, layer) -> np.ndarray:
    """The output of ``model``'s module named ``layer`` for one ``image``, by a forward hook,
    in evaluation mode and without a graph (the model's modes are restored afterwards)."""
    from cnnlite.autograd import no_grad
    from cnnlite.tensor import tensor

    modules = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in modules:
        names = [name for name in modules if name]
        raise OpError(f"plot_feature_maps: {type(model).__name__} has no layer {layer!r}; its "
                      f"layers: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    x = as_numpy("plot_feature_maps", "image", image)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or len(x) != 1:
        raise OpError(f"plot_feature_maps: expected one image (C, H, W) or (1, C, H, W), got "
                      f"{x.shape}")
    captured = []

    def capture(module, inputs, output):
        captured.append(as_numpy("plot_feature_maps", f"output of {layer!r}", output))
        raise _StopForward

    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # one image: batch norm must use its running statistics, not the image's
    handle = modules[layer].register_forward_hook(capture)
    try:
        with no_grad():
            model(tensor(x))
    except _StopForward:
        pass
    finally:
        handle.remove()
        for module, training in modes:
            object.__setattr__(module, "training", training)
    if not captured:
        raise OpError(f"plot_feature_maps: the forward pass never reached layer {layer!r}")
    return captured[0]


def plot_feature_maps(model_or_layer_output, image=None, layer: str | None = None,
                      max_maps: int = 32, path=None):
    """The feature maps of one image after a layer: a grid of grey images, one per channel.

    Two forms::

        plot_feature_maps(maps)                        # maps: (C, H, W) or (1, C, H, W)
        plot_feature_maps(model, image, "features.0")  # the output of that layer

    In the second form a forward hook on the named module (a name from
    ``model.named_modules()``) grabs its output for ``image`` ((C, H, W) or (1, C, H, W)); the
    model runs in evaluation mode under ``cl.no_grad()`` and stops after that layer.

    Parameters
    ----------
    max_maps : int
        Show the first ``max_maps`` channels at most.
    path : str or PathLike, optional
        Where to write the figure as a PNG.

    Each map is scaled on its own (darkest black, brightest white).

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per shown channel, titled with the channel number; the image of each holds
        that channel's values.
    """
    from cnnlite.nn.module import Module

    max_maps = validate.integer("plot_feature_maps", "max_maps", max_maps, minimum=1)
    if isinstance(model_or_layer_output, Module):
        if image is None or layer is None:
            raise OpError("plot_feature_maps: with a model, give the image and the layer name "
                          "too: plot_feature_maps(model, image, 'layer')")
        maps = _layer_output(model_or_layer_output, image, layer)
        source = f" after {layer!r}"
    else:
        if image is not None or layer is not None:
            raise OpError("plot_feature_maps: image and layer go with a model; feature maps "
                          "come alone")
        maps = as_numpy("plot_feature_maps", "feature maps", model_or_layer_output)
        source = ""
    if maps.ndim == 4 and len(maps) == 1:
        maps = maps[0]
    if maps.ndim != 3 or maps.dtype.kind not in "biuf":
        raise OpError(f"plot_feature_maps: expected feature maps of shape (C, H, W) or "
                      f"(1, C, H, W), got {maps.shape}")
    channels, height, width = maps.shape
    shown = min(channels, max_maps)
    ncols = math.ceil(math.sqrt(shown))
    rows = math.ceil(shown / ncols)
    tile = min(1.6, 10 / ncols)
    figure = new_figure(max(3.0, ncols * tile), rows * tile * height / width + 0.7)
    for c in range(shown):
        axes = figure.add_subplot(rows, ncols, c + 1)
        axes.imshow(maps[c], cmap="gray", interpolation="nearest")
        axes.set_title(str(c), fontsize=8)
        axes.set_axis_off()
    first = f", the first {shown}" if shown < channels else ""
    figure.suptitle(f"feature maps{source} ({channels} channels of {height}x{width}{first})",
                    fontsize=10)
    save_figure(figure, path)
    return figure


# --- im2col -----------------------------------------------------------------------------------

def _number(value: float) -> str:
    """A cell's text: whole numbers without decimals, others with two."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _draw_table(axes, values: np.ndarray, shade: np.ndarray | None = None):
    """``values`` (R, Q) as a grid of white cells with their numbers (the Axes' first image
    holds ``values``); cells where ``shade`` is True (the zero padding) in light grey."""
    from matplotlib.colors import ListedColormap

    axes.imshow(values, cmap=ListedColormap(["white"]), interpolation="nearest")
    if shade is not None and shade.any():
        axes.imshow(np.ma.masked_where(~shade, np.ones(shade.shape)),
                    cmap=ListedColormap(["#dddddd"]), interpolation="nearest")
    for (r, q), value in np.ndenumerate(values):
        axes.text(q, r, _number(value), ha="center", va="center", fontsize=8)
    axes.set_xticks(np.arange(values.shape[1] + 1) - 0.5, minor=True)
    axes.set_yticks(np.arange(values.shape[0] + 1) - 0.5, minor=True)
    axes.grid(which="minor", color="#999999", linewidth=0.5)
    axes.tick_params(which="minor", length=0)


def _outline(axes, left: float, top: float, width: int, height: int):
    """A rectangle over cells in the highlight colour, filled faintly so the numbers show."""
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    axes.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, linewidth=2.5,
                             edgecolor=HIGHLIGHT, facecolor=to_rgba(HIGHLIGHT, 0.15)))


def plot_im2col(x, kernel_size, stride=1, padding=0, highlight: int = 0, path=None):
    """A small input beside its im2col column matrix, one receptive field and its column
    outlined in the same colour.

    The numbers come from ``cnnlite.reference.conv.im2col``, whose layout is::

        col: (C*kh*kw, N*OH*OW)
        row    r = (c*kh + i)*kw + j          channel c, kernel offset (i, j)
        column q = (n*OH + oh)*OW + ow        sample n, output position (oh, ow)

    so column q holds the receptive field of output position (oh, ow) of sample n, read channel
    by channel, row by row.

    Parameters
    ----------
    x : (H, W), (C, H, W) or (N, C, H, W) Tensor or array
        A small input, e.g. ``np.arange(16).reshape(1, 1, 4, 4)``.
    kernel_size, stride, padding : int or (rows, columns)
    highlight : int
        The column q to outline (and its receptive field).
    path : str or PathLike, optional
        Where to write the figure as a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        Left, one Axes per input channel of the highlighted sample (zero padding in grey);
        right, the column matrix (the last Axes; its image's array is ``col``). The title
        gives the matrix shape.
    """
    from cnnlite.reference.conv import im2col, output_size

    where = "plot_im2col"
    array = as_numpy(where, "x", x)
    if array.ndim not in (2, 3, 4):
        raise OpError(f"{where}: expected x of shape (H, W), (C, H, W) or (N, C, H, W), got "
                      f"{array.shape}")
    if array.dtype.kind not in "biuf":
        raise OpError(f"{where}: expected x of numbers (bool, integers or floats), got dtype "
                      f"{array.dtype}")
    array = array.reshape((1,) * (4 - array.ndim) + array.shape).astype(np.float64)
    kh, kw = validate.pair(where, "kernel_size", kernel_size, minimum=1)
    sh, sw = validate.pair(where, "stride", stride, minimum=1)
    ph, pw = validate.pair(where, "padding", padding, minimum=0)
    N, C, H, W = array.shape
    OH, OW = output_size(H, kh, sh, ph, 1), output_size(W, kw, sw, pw, 1)
    if OH < 1 or OW < 1:
        raise OpError(f"{where}: a {kh}x{kw} kernel does not fit x {array.shape} with padding "
                      f"({ph}, {pw})")
    rows, columns = C * kh * kw, N * OH * OW
    if max(rows, columns) > MAX_IM2COL_SIZE:
        raise OpError(f"{where}: x {array.shape} with a {kh}x{kw} kernel makes a ({rows}, "
                      f"{columns}) column matrix; draw inputs whose matrix has at most "
                      f"{MAX_IM2COL_SIZE} rows and columns")
    q = validate.integer(where, "highlight", highlight, minimum=0, maximum=columns - 1)
    col = im2col(array, kh, kw, (sh, sw), (ph, pw), (1, 1))
    n, oh, ow = q // (OH * OW), (q // OW) % OH, q % OW

    cell = 0.42  # inches per table cell
    padded_h, padded_w = H + 2 * ph, W + 2 * pw
    width = max(8.0, (C * padded_w + columns) * cell + 2.5)
    height = max(padded_h, rows) * cell + 1.8
    figure = new_figure(width, height)
    grid = figure.add_gridspec(1, C + 1, width_ratios=[padded_w] * C + [columns])
    for c in range(C):
        axes = figure.add_subplot(grid[0, c])
        plane = np.pad(array[n, c], ((ph, ph), (pw, pw)))
        padding_cells = np.ones(plane.shape, bool)
        padding_cells[ph:ph + H, pw:pw + W] = False
        _draw_table(axes, plane, padding_cells)
        _outline(axes, ow * sw, oh * sh, kw, kh)
        axes.set_xticks(np.arange(padded_w), np.arange(padded_w) - pw, fontsize=7)
        axes.set_yticks(np.arange(padded_h), np.arange(padded_h) - ph, fontsize=7)
        axes.set_title(f"x[{n}, {c}]" + (f", padded by ({ph}, {pw})" if ph or pw else ""),
                       fontsize=9)
    axes = figure.add_subplot(grid[0, C])
    _draw_table(axes, col)
    _outline(axes, q, 0, 1, rows)
    row_names = [f"({c},{i},{j})" for c in range(C) for i in range(kh) for j in range(kw)]
    column_names = [f"({m},{r},{s})" for m in range(N) for r in range(OH) for s in range(OW)]
    axes.set_yticks(np.arange(rows), row_names, fontsize=7)
    axes.set_xticks(np.arange(columns), column_names, fontsize=7, rotation=90)
    axes.set(xlabel="column (n, oh, ow)", ylabel="row (c, i, j)")
    axes.set_title(f"col, column {q}: the field of output ({n}, {oh}, {ow})",
                   fontsize=9)
    figure.suptitle(f"im2col of x {tuple(array.shape)}, kernel {kh}x{kw}, stride ({sh}, {sw}), "
                    f"padding ({ph}, {pw}) -> col of shape ({rows}, {columns})", fontsize=10)
    save_figure(figure, path)
    return figure
