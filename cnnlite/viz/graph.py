r"""Draw the autograd graph behind a tensor: ``draw_graph(loss)``.

Every Tensor made by an op remembers its creator Function, and every Function its inputs, so
the graph can be read backwards from any tensor. ``draw_graph`` turns it around and draws it
the way the forward pass ran, top to bottom::

    x     w               one box per leaf tensor (an input or a parameter) and per Function,
     \   /                with its output shape (2x3x8x8) and a summary of its values; an arrow
      Mul    b            from every input to the op that used it
        \   /
         Add
          |
         ReLU             the output: the op that made the tensor drawn

A ResNet forward pass runs hundreds of ops, too many to read one by one. Every Function
remembers the modules that were running when it ran (``Function.scope``), so the drawing can
fold the ops of one module call into one box: "layer1.0 (BasicBlock)  7 ops, out 1x64x8x8".
Containers (``Sequential``, ``ModuleList``, ``ModuleDict``) only hand their input along, so
the folding looks through them to the modules they hold.

The picture is drawn by Graphviz's ``dot`` program when it is installed (SVG in a notebook),
else by matplotlib with a layered layout of our own (``cnnlite.viz.graph_layout``).
"""
from __future__ import annotations

import heapq
import io
import os
import shutil
from collections import Counter
from dataclasses import dataclass

from cnnlite.autograd import Function
from cnnlite.checkpoint import atomic_write
from cnnlite.nn.container import ModuleDict, ModuleList, Sequential
from cnnlite.nn.parameter import Parameter
from cnnlite.tensor import Tensor
from cnnlite.viz.graph_layout import MAX_BOXES, layered_figure

__all__ = ["draw_graph", "GraphDrawing", "Node", "Edge"]

#: What ``draw_graph(engine=...)`` accepts.
ENGINES = ("auto", "graphviz", "matplotlib", "dot-source")
#: Fill colour of the boxes of each kind of node.
COLOURS = {"input": "#cfe2f3", "parameter": "#fce5cd", "op": "#eeeeee",
           "module": "#d9d2e9", "output": "#b6d7a8"}
# Modules that only hand their input to the modules they hold: folding looks through them.
_CONTAINERS = (Sequential, ModuleList, ModuleDict)


@dataclass(frozen=True)
class Node:
    """One box of the drawing.

    ``id``: "n7" for the leaf or op that came 7th (from 0) in forward order, drawn alone; "m7"
    for the box of a module call whose first op came 7th. ``kind``: "input" or "parameter"
    (leaf tensors), "op" (one Function), "module" (the ops of one module call, folded into one
    box) or "output" (the op or box that made the tensor drawn).
    """

    id: str
    kind: str
    title: str
    details: tuple = ()

    @property
    def label(self) -> str:
        return "\n".join((self.title, *self.details))


@dataclass(frozen=True)
class Edge:
    """An arrow in the direction of the forward pass. ``label`` says which output of an op with
    several outputs the arrow carries ("[1]": its second)."""

    source: str
    target: str
    label: str = ""


def _shape_text(shape) -> str:
    """``(2, 3, 8, 8)`` -> "2x3x8x8"; ``()`` -> "scalar"."""
    return "x".join(str(n) for n in shape) if len(shape) else "scalar"


def _summary(array, prefix="") -> str:
    """One line about the values: the value of a single number, else their mean and std."""
    if array.size == 0:
        return f"{prefix}empty"
    if array.size == 1:
        return f"{prefix}value {float(array.reshape(-1)[0]):.4g}"
    return f"{prefix}mean {float(array.mean()):.3g} std {float(array.std()):.3g}"


def _value_lines(tensor) -> tuple:
    """The values of a tensor, and of its gradient once backward has run."""
    lines = (_summary(tensor.data),)
    return lines if tensor.grad is None else lines + (_summary(tensor.grad, "grad "),)


def _producer(tensor):
    """What a tensor comes from in the drawing: its creator op, or itself when it is a leaf."""
    return tensor if tensor.creator is None else tensor.creator


def _forward_order(root) -> list:
    """The leaves and Functions behind ``root``, each after everything it depends on.

    An iterative depth-first walk (a chain of 20,000 ops would exhaust Python's recursion): a
    Function is listed once all its inputs are, so the list reads as the forward pass ran.
    """
    order, seen, stack = [], set(), [(_producer(root), False)]
    while stack:
        item, inputs_listed = stack.pop()
        if inputs_listed:
            order.append(item)
        elif id(item) not in seen:
            seen.add(id(item))
            if isinstance(item, Function):
                stack.append((item, True))
                stack.extend((_producer(t), False) for t in reversed(item.inputs))
            else:
                order.append(item)
    return order


class _ModuleNames:
    """Module names: dotted ones from ``model.named_modules()``, else the class name with a
    counter in forward order (Conv2d1, Conv2d2, ...)."""

    def __init__(self, model):
        self.from_model = {} if model is None else {
            id(m): name for name, m in model.named_modules() if name}
        self.numbered, self.count_per_class = {}, {}

    def __call__(self, module) -> str:
        key = id(module)
        if key in self.from_model:
            return self.from_model[key]
        if key not in self.numbered:
            cls = type(module).__name__
            self.count_per_class[cls] = self.count_per_class.get(cls, 0) + 1
            self.numbered[key] = f"{cls}{self.count_per_class[cls]}"
        return self.numbered[key]

    def title(self, module) -> str:
        """A box's title: a name from the model says its class too, "layer1.0 (BasicBlock)"."""
        name = self(module)
        return f"{name} ({type(module).__name__})" if id(module) in self.from_model else name

    def known(self) -> set:
        """Every name given so far: what ``expand`` may name."""
        return set(self.from_model.values()) | set(self.numbered.values())


class _Graph:
    """The graph behind a tensor, as positions in forward order.

    ``items``: leaf Tensors and Functions; ``links``: (producer, consumer, tensor) for every
    input of every Function, as positions in ``items``; ``ops``: the positions of the
    Functions; ``module_paths[i]``: the modules op ``i`` ran in, outermost first, below the
    top-level one (``model`` when given, else the outermost module), containers left out.
    """

    def __init__(self, root, model):
        self.root, self.model = root, model
        self.items = _forward_order(root)
        self.position = {id(item): i for i, item in enumerate(self.items)}
        self.links = [(self.position[id(_producer(t))], i, t)
                      for i, item in enumerate(self.items) if isinstance(item, Function)
                      for t in item.inputs]
        self.ops = [i for i, item in enumerate(self.items) if isinstance(item, Function)]
        self.names = _ModuleNames(model)
        self.module_paths = {i: self._module_path(self.items[i].scope) for i in self.ops}
        for path in self.module_paths.values():  # number them all now, in forward order:
            for module in path:                  # "BasicBlock3" must not depend on expand
                self.names(module)

    def _module_path(self, scope) -> tuple:
        """The modules of ``scope`` (outermost first) below the top-level one, no containers."""
        top = next((i for i, m in enumerate(scope) if m is self.model), 0)
        return tuple(m for m in scope[top + 1:] if type(m) not in _CONTAINERS)

    def fold(self, expand):
        """Which ops go into which box: ({op position: box}, {box: its module}); a box is
        named by the position of its first op.

        An op goes into the box of the outermost module on its path that is not expanded, and
        the ops of one box are those joined by edges. So one module called twice (a block that
        uses its ReLU twice) makes two boxes, unless one call feeds the next directly: then
        the two calls share one box.
        """
        # The modules (as ids) from the top down to the one an op is folded into. An op with
        # no such module (it ran outside every module, or in expanded ones only) is drawn alone.
        folding_path = {}
        for i in self.ops:
            path = self.module_paths[i]
            depth = next((d for d, m in enumerate(path) if self.names(m) not in expand), None)
            if depth is not None:
                folding_path[i] = tuple(map(id, path[:depth + 1]))
        # Union-find: every op starts as a box of its own; an edge between two ops with the
        # same folding path joins their boxes, and a box's root is its earliest op.
        parent = {i: i for i in folding_path}

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]  # path halving keeps the walks short
                i = parent[i]
            return i

        for source, target, _ in self.links:
            if source in folding_path and folding_path.get(target) == folding_path[source]:
                first, later = sorted((root(source), root(target)))
                parent[later] = first
        box_of = {i: root(i) for i in folding_path}
        return box_of, {box: self.module_paths[box][len(folding_path[box]) - 1]
                        for box in set(box_of.values())}


def _topological_order(ids, pairs):
    """Order ``ids`` so that every pair (source, target) has its source first.

    Kahn's algorithm: list a node once everything before it is listed, taking the earliest in
    ``ids`` among the ready ones, so the order stays as near the forward pass as it can.
    Returns (order, the ids never listed: those on a cycle or after one).
    """
    rank = {node: i for i, node in enumerate(ids)}
    successors = {node: [] for node in ids}
    waiting = dict.fromkeys(ids, 0)
    for source, target in pairs:
        successors[source].append(target)
        waiting[target] += 1
    ready = [(rank[n], n) for n in ids if waiting[n] == 0]
    order = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for target in successors[node]:
            waiting[target] -= 1
            if waiting[target] == 0:
                heapq.heappush(ready, (rank[target], target))
    return order, {n for n in ids if waiting[n] > 0}


def _boxes_without_cycles(graph, box_of):
    """Settle which boxes are drawn, and the node each position is drawn as.

    Returns (box_of, node_of, order, ops_per_box): ``box_of`` less the boxes of a single op
    (drawn as that op) and the boxes that would be drawn on a cycle; ``node_of[i]``, the id
    of the node position ``i`` is drawn as; the node ids in an order the edges agree with.
    """
    while True:
        ops_per_box = Counter(box_of.values())
        box_of = {i: box for i, box in box_of.items() if ops_per_box[box] > 1}
        node_of = [f"m{box_of[i]}" if i in box_of else f"n{i}" for i in range(len(graph.items))]
        node_ids = list(dict.fromkeys(node_of))
        node_pairs = list(dict.fromkeys((node_of[s], node_of[t]) for s, t, _ in graph.links
                                        if node_of[s] != node_of[t]))
        order, on_cycle = _topological_order(node_ids, node_pairs)
        if not on_cycle:
            return box_of, node_of, order, ops_per_box
        # A box fed by something computed from its own output would be drawn as a cycle:
        # show the ops of such boxes one by one.
        box_of = {i: box for i, box in box_of.items() if node_of[i] not in on_cycle}


def _hidden_leaves(graph, box_of, module_of, node_of) -> set:
    """The leaves a box hides as its inner workings: the parameters of its own module, and the
    constants only it uses (the 2 of x * 2)."""
    owner = {}  # id of a parameter -> the box of the module that holds it
    for box in set(box_of.values()):
        for parameter in module_of[box].parameters():
            owner.setdefault(id(parameter), node_of[box])
    users_of = {}
    for source, target, _ in graph.links:
        users_of.setdefault(source, set()).add(node_of[target])
    hidden = set()
    for i, item in enumerate(graph.items):
        users = users_of.get(i, set())
        if isinstance(item, Function) or len(users) != 1:
            continue
        (user,) = users
        used_by_a_box = user.startswith("m")
        if user == owner.get(id(item)) or _is_constant(item) and used_by_a_box:
            hidden.add(node_of[i])
    return hidden


def _nodes_and_edges(graph, box_of, module_of):
    """The drawing's nodes (in forward order) and edges, ops folded into boxes per ``box_of``
    (op position -> box), ``module_of`` naming each box's module."""
    box_of, node_of, order, ops_per_box = _boxes_without_cycles(graph, box_of)
    hidden = _hidden_leaves(graph, box_of, module_of, node_of)
    parameter_names = {} if graph.model is None else {
        id(p): name for name, p in graph.model.named_parameters()}
    output = node_of[graph.position[id(_producer(graph.root))]]
    nodes = {}
    for i, item in enumerate(graph.items):
        node_id = node_of[i]
        if node_id in hidden or node_id in nodes:
            continue
        if i in box_of:
            outputs = ", ".join(_box_outputs(graph, node_of, node_id))
            node = Node(node_id, "module", graph.names.title(module_of[box_of[i]]),
                        (f"{ops_per_box[box_of[i]]} ops, out {outputs}",))
        elif isinstance(item, Function):
            node = _op_node(node_id, item, graph)
        else:
            node = _leaf_node(node_id, item, parameter_names)
        if node_id == output and graph.root.creator is not None:
            node = Node(node.id, "output", node.title, node.details)
        nodes[node_id] = node

    edges = []
    for source, target, tensor in graph.links:
        a, b = node_of[source], node_of[target]
        if a != b and a not in hidden:
            producer = graph.items[source]
            # Only an op drawn alone says which of its outputs an arrow carries; a box lists
            # the shapes it hands on in its own text.
            names_output = a.startswith("n") and isinstance(producer, Function) and len(
                producer.outputs) > 1
            label = f"[{_output_index(producer, tensor)}]" if names_output else ""
            edges.append(Edge(a, b, label))
    return [nodes[n] for n in order if n in nodes], list(dict.fromkeys(edges))


def _output_index(function, tensor) -> int:
    """Which of ``function``'s outputs ``tensor`` is (0 for the first)."""
    return next(k for k, ref in enumerate(function.outputs) if ref() is tensor)


def _box_outputs(graph, node_of, box_id) -> list:
    """Shapes of the tensors a box hands on: used outside it, or the tensor drawn."""
    shapes = [_shape_text(t.shape) for source, target, t in graph.links
              if node_of[source] == box_id and node_of[target] != box_id]
    if node_of[graph.position[id(_producer(graph.root))]] == box_id:
        shapes.append(_shape_text(graph.root.shape))
    return list(dict.fromkeys(shapes))


def _op_node(node_id, function, graph) -> Node:
    """An op: its name, output shape(s), where it ran (given a model), its values."""
    shapes = ", ".join(_shape_text(shape) for shape, _ in function.output_specs)
    details = [shapes]
    path = graph.module_paths[graph.position[id(function)]]
    if path and id(path[-1]) in graph.names.from_model:
        details.append(f"in {graph.names(path[-1])}")
    outputs = [ref() for ref in function.outputs]
    if len(outputs) == 1 and outputs[0] is not None:  # an unused output may be collected
        details.extend(_value_lines(outputs[0]))
    return Node(node_id, "op", function.name, tuple(details))


def _is_constant(tensor) -> bool:
    """A number in a formula (the 2 of x * 2): one value, no name, no gradient."""
    return (tensor.size == 1 and not tensor.requires_grad and tensor.name is None
            and not isinstance(tensor, Parameter))


def _leaf_node(node_id, tensor, parameter_names) -> Node:
    """A leaf: the model's name for it, its own ``name``, else what it is; shape and values."""
    is_parameter = isinstance(tensor, Parameter) or id(tensor) in parameter_names
    title = parameter_names.get(id(tensor)) or tensor.name or (
        "parameter" if is_parameter else "constant" if _is_constant(tensor) else "input")
    details = (_shape_text(tensor.shape),) + _value_lines(tensor)
    return Node(node_id, "parameter" if is_parameter else "input", str(title), details)


# ---------------------------------------------------------------------------------------------
# Pictures: Graphviz's dot language here; the matplotlib drawing is in graph_layout.


def _dot_graph(nodes, edges):
    """The drawing in the dot language (a ``graphviz.Digraph``; ``.source`` is the text)."""
    import graphviz

    dot = graphviz.Digraph(
        "autograd", graph_attr={"rankdir": "TB", "nodesep": "0.25", "ranksep": "0.35"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                   "fontsize": "10"},
        edge_attr={"fontsize": "9", "color": "#555555"})
    for node in nodes:
        lines = (line.replace("\\", "\\\\") for line in (node.title, *node.details))
        dot.node(node.id, graphviz.nohtml("\\n".join(lines)), fillcolor=COLOURS[node.kind],
                 penwidth="2" if node.kind == "output" else "1")
    for edge in edges:
        dot.edge(edge.source, edge.target, label=edge.label or None)
    return dot


def _figure_bytes(figure, format) -> bytes:
    """The figure as the bytes of an image file in ``format`` ("png", "svg", ...)."""
    image = io.BytesIO()
    figure.savefig(image, format=format, dpi=figure.dpi)
    return image.getvalue()


class GraphDrawing:
    """What ``draw_graph`` returns: the graph as plain data, and its picture.

    Jupyter shows it inline: as SVG when Graphviz drew it, as PNG when matplotlib did.

    Attributes
    ----------
    nodes : list of Node
        The boxes in forward order (inputs first): ``id``, ``kind``, ``title``, ``details``.
    edges : list of Edge
        The arrows, ``source`` -> ``target`` (ids) in the direction of the forward pass.
    engine : str
        "graphviz", "matplotlib" or "dot-source" (the dot text only, nothing rendered).
    graphviz : graphviz.Digraph
        The drawing in the dot language; ``source`` is its text, with or without ``dot``.
    figure : matplotlib.figure.Figure or None
        The matplotlib drawing (engine "matplotlib").
    """

    def __init__(self, nodes, edges, engine):
        self.nodes, self.edges, self.engine = nodes, edges, engine
        self.graphviz = _dot_graph(nodes, edges)
        self.figure = layered_figure(nodes, edges, COLOURS) if engine == "matplotlib" else None

    @property
    def source(self) -> str:
        return self.graphviz.source

    def _repr_svg_(self):
        if self.engine != "graphviz":
            return None
        return self.graphviz.pipe(format="svg", encoding="utf-8")

    def _repr_png_(self):
        return None if self.figure is None else _figure_bytes(self.figure, "png")

    def save(self, path) -> None:
        """Write the drawing to ``path`` (atomically), in the format its suffix names.

        ".dot"/".gv" write the dot text; other suffixes (".svg", ".png", ".pdf", ...) are
        rendered by the engine; without a suffix: SVG from Graphviz, PNG from matplotlib.
        """
        format = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
        if format in ("dot", "gv"):
            data = self.source.encode("utf-8")
        elif self.engine == "graphviz":
            import graphviz
            format = format or "svg"
            _check_format(format, graphviz.FORMATS, self.engine)
            data = self.graphviz.pipe(format=format)
        elif self.figure is not None:
            format = format or "png"
            _check_format(format, self.figure.canvas.get_supported_filetypes(), self.engine)
            data = _figure_bytes(self.figure, format)
        else:
            raise ValueError(f"GraphDrawing.save: engine='dot-source' renders no picture, so "
                             f"only .dot or .gv files can be written, not {os.fspath(path)!r}; "
                             f"draw with engine='matplotlib' or 'graphviz' for an image")
        atomic_write(path, lambda file: file.write(data))

    def __repr__(self):
        return (f"<GraphDrawing: {len(self.nodes)} nodes, {len(self.edges)} edges, "
                f"engine={self.engine!r}>")


def _check_format(format, supported, engine):
    if format not in supported:
        raise ValueError(f"GraphDrawing.save: engine={engine!r} cannot write {format!r} files; "
                         f"it writes {', '.join(sorted(supported))}, and .dot/.gv give the "
                         f"dot text")


def draw_graph(tensor: Tensor, model=None, expand=(), collapse: bool | None = None,
               engine: str = "auto", path=None, max_nodes: int = 60) -> GraphDrawing:
    """Draw the autograd graph behind ``tensor``, in the direction of the forward pass.

    Parameters
    ----------
    tensor : Tensor
        Usually a loss or a model's output; a leaf (no graph) draws as a single box.
    model : nn.Module, optional
        Names the parameters ("layer1.0.conv1.weight") and modules ("layer1.0") in the drawing;
        without it, leaves are "input"/"parameter" and modules "BasicBlock3".
    expand : str or iterable of str
        Names of modules to show inside when ops are folded into modules: their children are
        folded one level further down (expand those too, to go deeper).
    collapse : bool, optional
        Fold the ops of each module call into one box (True), never (False), or only when the
        graph has more than ``max_nodes`` ops (None).
    engine : {"auto", "graphviz", "matplotlib", "dot-source"}
        "auto" renders with Graphviz when its ``dot`` program is installed, else matplotlib;
        "dot-source" renders nothing (the dot text is in ``.source``).
    path : str or PathLike, optional
        Also write the drawing there (see ``GraphDrawing.save``).
    max_nodes : int
        The most ops drawn one by one when ``collapse`` is None.

    Returns
    -------
    GraphDrawing
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor, got {type(tensor).__name__}")
    if model is not None and not hasattr(model, "named_modules"):
        raise TypeError(f"draw_graph: model must be an nn.Module, got {type(model).__name__}")
    if engine not in ENGINES:
        raise ValueError(f"draw_graph: engine must be one of {ENGINES}, got {engine!r}")
    if collapse not in (None, True, False):
        raise TypeError(f"draw_graph: collapse must be True, False or None, got {collapse!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"draw_graph: max_nodes must be a positive int, got {max_nodes!r}")
    expand = {expand} if isinstance(expand, str) else set(expand)
    if engine in ("auto", "graphviz"):
        has_dot = shutil.which("dot") is not None
        if engine == "graphviz" and not has_dot:
            raise RuntimeError(
                "draw_graph: engine='graphviz' needs Graphviz's 'dot' program, which is not on "
                "PATH. Install Graphviz (https://graphviz.org/download/: apt install graphviz, "
                "brew install graphviz or conda install graphviz) or use engine='matplotlib'.")
        engine = "graphviz" if has_dot else "matplotlib"

    graph = _Graph(tensor, model)
    unknown = sorted(expand - graph.names.known())
    if unknown:
        raise ValueError(f"draw_graph: expand={unknown} names no module of this graph; its "
                         f"modules include {sorted(graph.names.known())[:12]}")
    fold = collapse if collapse is not None else len(graph.ops) > max_nodes
    box_of, module_of = graph.fold(expand) if fold else ({}, {})
    nodes, edges = _nodes_and_edges(graph, box_of, module_of)
    if engine == "matplotlib" and len(nodes) > MAX_BOXES:
        raise ValueError(
            f"draw_graph: {len(nodes)} boxes are too many to draw with matplotlib (at most "
            f"{MAX_BOXES}); fold the ops into modules (collapse=True), draw a smaller part of "
            f"the graph, or take the dot text with engine='dot-source'")
    drawing = GraphDrawing(nodes, edges, engine)
    if path is not None:
        drawing.save(path)
    return drawing
