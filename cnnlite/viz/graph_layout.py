"""A layered drawing of the autograd graph with matplotlib, for when Graphviz is not installed.

``draw_graph`` hands over its boxes (in forward order) and its arrows; this module decides
where they go and draws them, in the four steps of the classic layered method (Sugiyama,
Tagawa and Toda, 1981):

1. Layers by longest path: a node sits one layer below the lowest of its inputs. Every arrow
   then points down, so the page reads top to bottom as the forward pass ran, and one pass
   over the nodes in forward order finds all the layers. A leaf (input, parameter) then moves
   down to just above its first user, so that a parameter sits beside the op that uses it.
2. Waypoints: an arrow that skips layers (a ResNet shortcut) gets a waypoint on every layer it
   crosses. A waypoint takes a slot in its layer like a very thin box, so long arrows go around
   the boxes instead of through them.
3. Order within a layer by barycentres: the order with the fewest crossings is NP-hard to find
   even between two layers, but sorting each layer by the mean slot of every node's neighbours
   on the layer above (sweeping down), then below (sweeping up), a few times over, is cheap and
   removes most crossings: a node lands between the nodes it is joined to.
4. Coordinates: x, each node as near the mean x of its neighbours as the boxes on its left
   allow, the layer then shifted to split the differences; y, the layers stacked with a gap.

Lengths are in inches, x to the right and y downwards (the way the layers go).
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["layered_layout", "layered_figure", "MAX_BOXES"]

#: The most boxes drawn: beyond this matplotlib takes minutes, and nobody can read the picture.
MAX_BOXES = 1500

# 8 pt monospace text is 0.6 em = 0.067 in per character; a line of it takes 0.15 in.
_FONT_SIZE, _CHAR_WIDTH, _LINE_HEIGHT = 8, 0.07, 0.15
_PADDING = 0.08  # between a box's edge and its text
_BOX_GAP, _LAYER_GAP, _MARGIN = 0.25, 0.4, 0.2  # between boxes, between layers, around all
_WAYPOINT_SIZE = (0.05, 0.0)  # (width, height): a thin slot, about an arrow wide
_DPI = 100
_MAX_PIXELS = 30000  # Agg refuses images of 2^16 pixels a side and more
_ORDERING_SWEEPS = 3  # rounds of the barycentre ordering, each one sweep down and one up


class _Waypoint(NamedTuple):
    """Where the arrow ``edges[edge]`` crosses ``layer``."""

    edge: int
    layer: int


def _box_size(node) -> tuple:
    """(width, height) in inches of a box that holds the node's label."""
    lines = node.label.split("\n")
    return (max(map(len, lines)) * _CHAR_WIDTH + 2 * _PADDING,
            len(lines) * _LINE_HEIGHT + 2 * _PADDING)


def _mean(values, default):
    """The mean of ``values``, or ``default`` when there are none."""
    values = list(values)
    return sum(values) / len(values) if values else default


def _layers(nodes, inputs_of, users_of) -> dict:
    """Step 1: {node id: layer}, layer 0 at the top."""
    layer = {}
    for node in nodes:  # in forward order: the layers of a node's inputs are known already
        layer[node.id] = 1 + max((layer[i] for i in inputs_of[node.id]), default=-1)
    for node in nodes:
        if not inputs_of[node.id] and users_of[node.id]:
            layer[node.id] = min(layer[u] for u in users_of[node.id]) - 1
    return layer


def _rows_and_chains(nodes, edges, layer, size):
    """Step 2: the layers as rows of slots (node ids and waypoints), each edge as the chain of
    slots it passes (source, waypoints, target), and every slot's neighbours along the chains
    on the row above and on the row below. Adds the waypoints' sizes to ``size``."""
    rows = [[] for _ in range(max(layer.values()) + 1)]
    for node in nodes:
        rows[layer[node.id]].append(node.id)
    above = {node.id: [] for node in nodes}
    below = {node.id: [] for node in nodes}
    chains = []
    for k, edge in enumerate(edges):
        waypoints = [_Waypoint(k, r) for r in range(layer[edge.source] + 1, layer[edge.target])]
        for waypoint in waypoints:
            rows[waypoint.layer].append(waypoint)
            size[waypoint], above[waypoint], below[waypoint] = _WAYPOINT_SIZE, [], []
        chain = [edge.source, *waypoints, edge.target]
        for upper, lower in zip(chain, chain[1:]):
            above[lower].append(upper)
            below[upper].append(lower)
        chains.append(chain)
    return rows, chains, above, below


def _order_rows(rows, above, below) -> None:
    """Step 3: sort every row (in place) by the mean slot of its members' neighbours."""
    slot = {v: k for row in rows for k, v in enumerate(row)}
    down = [(r, above) for r in range(1, len(rows))]
    up = [(r, below) for r in range(len(rows) - 2, -1, -1)]
    for _ in range(_ORDERING_SWEEPS):
        for r, neighbours in down + up:
            # A slot without neighbours on that side keeps its place; sort() is stable.
            rows[r].sort(key=lambda v: _mean((slot[n] for n in neighbours[v]), slot[v]))
            slot.update((v, k) for k, v in enumerate(rows[r]))


def _place_row(row, neighbours, x, size) -> None:
    """Move the slots of one row (in ``x``) towards the mean x of their neighbours, keeping
    their order and the gaps between them."""
    wanted = [_mean((x[n] for n in neighbours[v]), x[v]) for v in row]
    placed = []
    for k, v in enumerate(row):
        if k == 0:
            placed.append(wanted[0])
        else:
            leftmost = placed[-1] + (size[row[k - 1]][0] + size[v][0]) / 2 + _BOX_GAP
            placed.append(max(wanted[k], leftmost))
    # Boxes were only ever pushed right of where they wanted to be: shift the row back by the
    # mean push, so that the misses are shared out on both sides.
    shift = _mean((w - p for w, p in zip(wanted, placed)), 0.0)
    x.update((v, p + shift) for v, p in zip(row, placed))


def _x_centres(rows, above, below, sources, size) -> dict:
    """Step 4, across: {slot: x of its centre}."""
    x = {}
    for row in rows:  # start from the rows packed to the left
        cursor = 0.0
        for v in row:
            x[v] = cursor + size[v][0] / 2
            cursor += size[v][0] + _BOX_GAP
    # Going down, an op lines up under the ops feeding it, not under its parameters: the main
    # path of the forward pass stays straight and the parameters sit beside it.
    spine_above = {v: [n for n in upper if n not in sources] or upper
                   for v, upper in above.items()}
    down = [(r, spine_above) for r in range(1, len(rows))]
    up = [(r, below) for r in range(len(rows) - 2, -1, -1)]
    for r, neighbours in down + up + down:
        _place_row(rows[r], neighbours, x, size)
    return x


def _y_centres(rows, size) -> dict:
    """Step 4, down: {slot: y of its centre}; the boxes of a row share its middle line."""
    y, top = {}, 0.0
    for row in rows:
        height = max(size[v][1] for v in row)
        y.update((v, top + height / 2) for v in row)
        top += height + _LAYER_GAP
    return y


def layered_layout(nodes: list, edges: list) -> tuple[dict, dict, list]:
    """Where the boxes go and how the arrows run, in inches (x to the right, y down).

    Parameters
    ----------
    nodes : list of Node
        In forward order: every edge's source comes before its target.
    edges : list of Edge

    Returns
    -------
    centre : dict
        ``{node id: (x, y)}``, the centre of its box.
    size : dict
        ``{node id: (width, height)}`` of its box.
    routes : list
        For each edge, the points its arrow passes: from the bottom middle of the source's
        box, through its waypoints, to the top middle of the target's box.
    """
    size = {node.id: _box_size(node) for node in nodes}
    inputs_of = {node.id: [] for node in nodes}
    users_of = {node.id: [] for node in nodes}
    for edge in edges:
        inputs_of[edge.target].append(edge.source)
        users_of[edge.source].append(edge.target)
    layer = _layers(nodes, inputs_of, users_of)
    rows, chains, above, below = _rows_and_chains(nodes, edges, layer, size)
    _order_rows(rows, above, below)
    sources = {node.id for node in nodes if not inputs_of[node.id]}
    x = _x_centres(rows, above, below, sources, size)
    y = _y_centres(rows, size)

    def bottom_middle(v):
        return x[v], y[v] + size[v][1] / 2

    def top_middle(v):
        return x[v], y[v] - size[v][1] / 2

    routes = [[bottom_middle(chain[0]), *((x[w], y[w]) for w in chain[1:-1]),
               top_middle(chain[-1])] for chain in chains]
    return ({node.id: (x[node.id], y[node.id]) for node in nodes},
            {node.id: size[node.id] for node in nodes}, routes)


def layered_figure(nodes: list, edges: list, colours: dict):
    """The layered drawing on a matplotlib Figure, one unit an inch, ``colours[node.kind]``
    filling the boxes. Built without pyplot, so that a notebook keeps its own backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path

    centre, size, routes = layered_layout(nodes, edges)
    left = min(centre[n.id][0] - size[n.id][0] / 2 for n in nodes) - _MARGIN
    right = max(centre[n.id][0] + size[n.id][0] / 2 for n in nodes) + _MARGIN
    top = min(centre[n.id][1] - size[n.id][1] / 2 for n in nodes) - _MARGIN
    bottom = max(centre[n.id][1] + size[n.id][1] / 2 for n in nodes) + _MARGIN
    width, height = right - left, bottom - top
    figure = Figure(figsize=(width, height), dpi=min(_DPI, _MAX_PIXELS / max(width, height)))
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(left, right)
    axes.set_ylim(bottom, top)  # y grows downwards, as the layers do
    axes.set_axis_off()
    for edge, route in zip(edges, routes):
        axes.add_patch(FancyArrowPatch(path=Path(route), arrowstyle="-|>", mutation_scale=8,
                                       linewidth=0.8, color="#555555", zorder=1))
        if edge.label:
            axes.text(route[0][0] + 0.04, route[0][1] + 0.04, edge.label, fontsize=6,
                      va="top", color="#555555", zorder=3)
    text_style = {"ha": "center", "va": "top", "fontsize": _FONT_SIZE, "family": "monospace",
                  "zorder": 3}
    for node in nodes:
        (x, y), (w, h) = centre[node.id], size[node.id]
        axes.add_patch(FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.05",
            facecolor=colours[node.kind], edgecolor="#333333",
            linewidth=1.6 if node.kind == "output" else 0.8, zorder=2))
        axes.text(x, y - h / 2 + _PADDING, node.title, weight="bold", **text_style)
        if node.details:
            axes.text(x, y - h / 2 + _PADDING + _LINE_HEIGHT, "\n".join(node.details),
                      **text_style)
    return figure
