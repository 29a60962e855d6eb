"""cl.viz.draw_graph: the autograd graph as plain data (nodes, edges), folded into modules for
large models, and drawn by Graphviz's dot (faked here: a script on PATH) or by matplotlib."""
import itertools
import os
import shutil
import stat
import sys

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import functional as F
from cnnlite import models, nn
from cnnlite.viz import draw_graph

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def titles(drawing):
    return [(node.kind, node.title) for node in drawing.nodes]


def edge_titles(drawing):
    return [(title_of(drawing, e.source), title_of(drawing, e.target)) for e in drawing.edges]


def title_of(drawing, node_id):
    return next(n.title for n in drawing.nodes if n.id == node_id)


def node(drawing, title):
    (found,) = [n for n in drawing.nodes if n.title == title]
    return found


@pytest.fixture
def no_dot(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)


@pytest.fixture
def fake_dot(tmp_path, monkeypatch):
    """A ``dot`` on PATH that answers with an SVG holding the dot text it was given."""
    script = tmp_path / "dot"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "source = sys.stdin.buffer.read().decode()\n"
        "text = source.replace('&', '&amp;').replace('<', '&lt;')\n"
        "sys.stdout.write('<svg xmlns=\"http://www.w3.org/2000/svg\"><desc>' + text"
        " + '</desc></svg>')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    return script


@pytest.fixture
def small():
    """loss = sum(relu(x * w + b)) with named leaves."""
    rng = np.random.default_rng(0)
    x = cl.tensor(rng.standard_normal((2, 3)), requires_grad=True, name="x")
    w = cl.tensor(rng.standard_normal((2, 3)), requires_grad=True, name="w")
    b = cl.tensor(rng.standard_normal(3), requires_grad=True, name="b")
    return F.relu(x * w + b).sum()


@pytest.fixture(scope="module")
def resnet():
    """A ResNet-18 and its output on one 32x32 image (eval mode: a 1x1 map has no batch stats)."""
    model = models.resnet18(num_classes=10).eval()
    image = cl.tensor(np.random.default_rng(0).standard_normal((1, 3, 32, 32), np.float32))
    return model, model(image)


# --- the graph as data --------------------------------------------------------------------


def test_nodes_in_forward_order_with_kinds(small, no_dot):
    drawing = draw_graph(small)
    assert titles(drawing) == [("input", "x"), ("input", "w"), ("op", "Mul"), ("input", "b"),
                               ("op", "Add"), ("op", "ReLU"), ("output", "Sum")]


def test_edges_point_along_the_forward_pass(small, no_dot):
    drawing = draw_graph(small)
    assert edge_titles(drawing) == [("x", "Mul"), ("w", "Mul"), ("Mul", "Add"), ("b", "Add"),
                                    ("Add", "ReLU"), ("ReLU", "Sum")]


def test_labels_give_shapes_and_values(small, no_dot):
    drawing = draw_graph(small)
    assert node(drawing, "Mul").details[0] == "2x3"
    assert node(drawing, "b").details[0] == "3"
    assert node(drawing, "Sum").details == ("scalar", f"value {float(small.data):.4g}")
    assert node(drawing, "x").details[1].startswith("mean ")


def test_gradient_summary_once_backward_ran(small, no_dot):
    assert not any("grad" in line for line in node(draw_graph(small), "x").details)
    small.backward()
    x = node(draw_graph(small), "x")
    assert x.details[-1].startswith("grad mean ")


def test_unnamed_leaves_say_what_they_are(no_dot):
    x = cl.tensor(np.ones((2, 2)), requires_grad=True)
    weight = nn.Parameter(np.ones((2, 2)))
    drawing = draw_graph(x * weight * 2.0)
    assert [t for kind, t in titles(drawing) if kind != "op" and kind != "output"] == [
        "input", "parameter", "constant"]
    assert node(drawing, "parameter").kind == "parameter"


def test_shared_input_is_one_node_with_an_edge_to_each_user(no_dot):
    x = cl.tensor(np.ones(3), requires_grad=True, name="x")
    drawing = draw_graph(x * x + x)
    assert titles(drawing) == [("input", "x"), ("op", "Mul"), ("output", "Add")]
    assert edge_titles(drawing) == [("x", "Mul"), ("Mul", "Add"), ("x", "Add")]


def test_multi_output_op_is_one_node_and_edges_name_the_outputs(no_dot):
    x = cl.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, name="x")
    first, _, third = F.split(x, 3, axis=1)
    drawing = draw_graph(first * third)
    split = node(drawing, "Split")
    assert split.details[0] == "2x1, 2x1, 2x1"
    assert [(e.source, e.label) for e in drawing.edges if e.target == node(drawing, "Mul").id
            ] == [(split.id, "[0]"), (split.id, "[2]")]


def test_a_leaf_draws_as_a_single_node(no_dot):
    weight = nn.Parameter(np.ones((4, 3)))
    drawing = draw_graph(weight)
    assert titles(drawing) == [("parameter", "parameter")] and drawing.edges == []


def test_parameter_names_from_the_model(no_dot):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    drawing = draw_graph(model(cl.tensor(np.ones((1, 4), np.float32))), model=model)
    assert [t for kind, t in titles(drawing) if kind == "parameter"] == [
        "0.weight", "0.bias", "2.weight", "2.bias"]
    assert "in 1" in node(drawing, "ReLU").details


# --- folding into modules -----------------------------------------------------------------


def test_resnet18_folds_into_blocks(resnet, no_dot):
    model, output = resnet
    drawing = draw_graph(output, model=model, engine="dot-source")
    assert 15 <= len(drawing.nodes) <= 25
    blocks = [n for n in drawing.nodes if n.kind == "module"]
    assert [n.title for n in blocks] == [f"layer{i}.{j} (BasicBlock)"
                                         for i in range(1, 5) for j in range(2)]
    assert node(drawing, "layer1.0 (BasicBlock)").details == ("7 ops, out 1x64x8x8",)
    assert node(drawing, "layer2.0 (BasicBlock)").details == ("9 ops, out 1x128x4x4",)
    chain = list(zip([n.title for n in blocks], [n.title for n in blocks[1:]]))
    assert set(chain) <= set(edge_titles(drawing))
    # a block's parameters are inside its box; the stem's are drawn
    assert ("parameter", "conv1.weight") in titles(drawing)
    assert not any(t.startswith("layer") and t.endswith("weight") for _, t in titles(drawing))


def test_expand_shows_inside_one_block(resnet, no_dot):
    model, output = resnet
    drawing = draw_graph(output, model=model, expand=["layer1.0"], engine="dot-source")
    inside = sorted(n.title for n in drawing.nodes
                    if any(d == "in layer1.0" or d.startswith("in layer1.0.") for d in n.details))
    # its 64-channel 3x3 layers run as the direct convolution (conv_algorithms.py)
    assert inside == ["Add", "BatchNorm", "BatchNorm", "Conv2dSmall", "Conv2dSmall", "ReLU", "ReLU"]
    assert "layer1.0 (BasicBlock)" not in [n.title for n in drawing.nodes]
    assert "layer1.1 (BasicBlock)" in [n.title for n in drawing.nodes]
    assert "layer1.0.conv1.weight" in [n.title for n in drawing.nodes]
    # the shortcut: the block's input goes both to conv1 and to the add
    pool = node(drawing, "MaxPool2d").id
    assert {title_of(drawing, e.target) for e in drawing.edges if e.source == pool} == {
        "Conv2dSmall", "Add"}


def test_collapse_false_draws_every_op(resnet, no_dot):
    model, output = resnet
    drawing = draw_graph(output, collapse=False, engine="dot-source")
    assert sum(n.kind in ("op", "output") for n in drawing.nodes) == 69


def test_without_a_model_modules_are_class_names_with_a_counter(resnet, no_dot):
    _, output = resnet
    drawing = draw_graph(output, engine="dot-source")
    assert [n.title for n in drawing.nodes if n.kind == "module"] == [
        f"BasicBlock{k}" for k in range(1, 9)]
    expanded = draw_graph(output, expand="BasicBlock1", engine="dot-source")
    assert "BasicBlock1" not in [n.title for n in expanded.nodes]
    assert "Add" in [n.title for n in expanded.nodes]


class _Scaled(nn.Module):
    """Two ops per call: relu(2x)."""

    def forward(self, x):
        return F.relu(x * 2.0)


class _TwiceNet(nn.Module):
    """Calls one module twice with an op in between: two boxes, not one (that would draw a
    cycle: box -> Add -> box)."""

    def __init__(self):
        super().__init__()
        self.act = _Scaled()

    def forward(self, x):
        return self.act(self.act(x) + 1.0)


def test_a_module_called_twice_is_two_boxes(no_dot):
    model = _TwiceNet()
    drawing = draw_graph(model(cl.tensor(np.ones(3), requires_grad=True)), model=model,
                         collapse=True)
    assert [t for _, t in titles(drawing)] == ["input", "act (_Scaled)", "constant", "Add",
                                               "act (_Scaled)"]  # the 2.0 in the boxes hidden
    x, first, one, add, second = [n.id for n in drawing.nodes]
    assert [(e.source, e.target) for e in drawing.edges] == [
        (x, first), (first, add), (one, add), (add, second)]


# --- rendering ----------------------------------------------------------------------------


def test_without_dot_auto_draws_with_matplotlib(small, no_dot, tmp_path):
    drawing = draw_graph(small, path=tmp_path / "graph.png")
    assert drawing.engine == "matplotlib" and drawing._repr_svg_() is None
    assert drawing._repr_png_().startswith(PNG_MAGIC)
    assert (tmp_path / "graph.png").read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_without_dot_the_graphviz_engine_says_what_to_do(small, no_dot):
    with pytest.raises(RuntimeError, match="draw_graph: .*Install Graphviz.*"
                                           "engine='matplotlib'"):
        draw_graph(small, engine="graphviz")


def test_matplotlib_boxes_do_not_overlap(resnet, no_dot):
    from matplotlib.patches import FancyBboxPatch

    model, output = resnet
    drawing = draw_graph(output, model=model, expand=["layer1.0", "layer2.0"])
    boxes = [p.get_extents() for p in drawing.figure.axes[0].patches
             if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == len(drawing.nodes)
    overlapping = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    assert overlapping == []


def test_matplotlib_text_fits_in_its_box(small, no_dot):
    from matplotlib.patches import FancyBboxPatch

    figure = draw_graph(small).figure
    axes = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    boxes = [p.get_window_extent() for p in axes.patches if isinstance(p, FancyBboxPatch)]
    for text in axes.texts:
        extent = text.get_window_extent(renderer)
        assert any(box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0
                   and extent.y1 <= box.y1 for box in boxes), text.get_text()


def test_with_dot_auto_renders_svg_through_graphviz(small, fake_dot, tmp_path):
    drawing = draw_graph(small)
    assert drawing.engine == "graphviz" and drawing.figure is None
    svg = drawing._repr_svg_()
    assert svg.startswith("<svg") and "Mul" in svg
    assert drawing._repr_png_() is None
    drawing.save(tmp_path / "graph.svg")
    assert (tmp_path / "graph.svg").read_text().startswith("<svg")


def test_dot_source_has_every_node_and_edge(small, fake_dot):
    drawing = draw_graph(small, engine="graphviz")
    source = drawing.source
    for n in drawing.nodes:
        assert f"{n.id} [label=\"{n.title}\\n" in source
    for e in drawing.edges:
        assert f"{e.source} -> {e.target}" in source
    assert source.count("->") == len(drawing.edges) == 6


def test_dot_source_engine_renders_nothing(small, tmp_path):
    drawing = draw_graph(small, engine="dot-source")
    assert drawing.figure is None and drawing._repr_png_() is None
    drawing.save(tmp_path / "graph.dot")
    assert (tmp_path / "graph.dot").read_text() == drawing.source
    with pytest.raises(ValueError, match="GraphDrawing.save: .*dot-source"):
        drawing.save(tmp_path / "graph.png")


# --- bad input ----------------------------------------------------------------------------


def test_bad_arguments_name_draw_graph(small, resnet):
    with pytest.raises(TypeError, match="draw_graph: expected a Tensor, got ndarray"):
        draw_graph(np.ones(3))
    with pytest.raises(ValueError, match="draw_graph: engine must be one of"):
        draw_graph(small, engine="svg")
    with pytest.raises(ValueError, match="draw_graph: max_nodes"):
        draw_graph(small, max_nodes=0)
    chain = cl.tensor(np.ones(2), requires_grad=True)
    for _ in range(800):
        chain = chain * 1.0
    with pytest.raises(ValueError, match="draw_graph: 1601 boxes are too many .* matplotlib"):
        draw_graph(chain, engine="matplotlib")
    model, output = resnet
    with pytest.raises(ValueError, match=r"draw_graph: expand=\['layer9'\] names no module"):
        draw_graph(output, model=model, expand=["layer9"], engine="dot-source")
