"""The backward stepper: steps, cards, the Stepper loop, ``Function.apply`` on the class, and
the student version of ``iter_backward`` (its SOLUTION region replaced by a raise)."""
import ast
import html.parser
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import autograd
from cnnlite import functional as F
from cnnlite.autograd import Function, iter_backward
from cnnlite.functional.activation import LeakyReLU
from cnnlite.functional.conv import Conv2d
from cnnlite.viz import Stepper


class Square(Function):
    """y = x^2;  dy/dx = 2x."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, gy):
        x, = self.saved
        return 2 * x * gy


class SplitInTwo(Function):
    """(a, b) = the two halves of x."""

    def forward(self, x):
        half = x.shape[0] // 2
        return x[:half].copy(), x[half:].copy()

    def backward(self, ga, gb):
        return np.concatenate([ga, gb])


def leaf(values, name=None):
    return cl.tensor(np.asarray(values, dtype=np.float64), requires_grad=True, name=name)


def stepped_and_backward(build, leaves):
    """Run ``build`` twice on copies of the leaves: once through a Stepper, once through
    ``backward()``. Returns (stepper, stepped leaves, backward leaves)."""
    stepped = [leaf(x) for x in leaves]
    plain = [leaf(x) for x in leaves]
    stepper = Stepper(build(*stepped))
    stepper.run()
    build(*plain).backward()
    return stepper, stepped, plain


def assert_same_grads(stepped, plain):
    for a, b in zip(stepped, plain):
        np.testing.assert_array_equal(a.grad, b.grad)


def visited(stepper):
    return [step.function for step in stepper.steps]


# --- the walk: every Function once, gradients as backward() leaves them ------------------------

def test_diamond_graph_visits_each_function_once_with_backwards_gradients():
    def diamond(x):
        a = x * 3.0
        return (a.exp() + a * a).sum()
    stepper, stepped, plain = stepped_and_backward(diamond, [[0.5, -1.0]])
    functions = visited(stepper)
    assert len(functions) == len({id(f) for f in functions}) == stepper.total == 5
    assert [step.index for step in stepper.steps] == [1, 2, 3, 4, 5]
    assert_same_grads(stepped, plain)


def test_shared_inputs_get_the_sum_of_their_gradients():
    def shared(x, w):
        return (x * w + x * x + w).sum()
    stepper, stepped, plain = stepped_and_backward(shared, [[1.0, 2.0], [3.0, -4.0]])
    assert len(visited(stepper)) == len({id(f) for f in visited(stepper)}) == stepper.total
    assert_same_grads(stepped, plain)
    np.testing.assert_array_equal(stepped[0].grad, [3.0 + 2.0, -4.0 + 4.0])


def test_an_unused_output_gets_a_zero_gradient_and_its_function_runs_once():
    x = leaf([1.0, 2.0, 3.0, 4.0])
    first, _ = SplitInTwo()(x)
    stepper = Stepper(Square()(first).sum())
    steps = stepper.run()
    assert [s.function.name for s in steps] == ["Sum", "Square", "SplitInTwo"]
    np.testing.assert_array_equal(steps[-1].grad_outputs[1], [0.0, 0.0])
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 0.0, 0.0])


def small_cnn(x, w, b, v, c):
    """conv -> relu -> max pool -> linear -> cross entropy, on 2 images of 1x6x6."""
    h = F.max_pool2d(F.relu(F.conv2d(x, w, b)), 2)
    logits = F.linear(h.reshape(2, -1), v, c)
    return F.cross_entropy(logits, np.array([1, 0]))


def cnn_leaves(rng):
    return [rng.standard_normal(shape) for shape in
            [(2, 1, 6, 6), (2, 1, 3, 3), (2,), (3, 8), (3,)]]


def test_small_cnn_stepper_leaves_exactly_the_gradients_of_backward(rng):
    stepper, stepped, plain = stepped_and_backward(small_cnn, cnn_leaves(rng))
    names = [s.function.name for s in stepper.steps]
    assert len(set(map(id, visited(stepper)))) == len(names) == stepper.total
    assert {"ReLU", "MaxPool2d", "Linear"} <= set(names)
    assert any(name.startswith("Conv2d") for name in names)  # conv2d's chosen Function
    assert_same_grads(stepped, plain)
    for step in stepper.steps:
        assert_well_formed(step._repr_html_())
        assert str(step).startswith(f"step {step.index} of {stepper.total}: {step.function.name}")


def test_hooks_and_retain_grad_run_as_in_backward(rng):
    def with_hooks(calls):
        x = leaf([1.0, -2.0, 3.0])
        hidden = x * 2.0
        hidden.retain_grad()
        hidden.register_hook(lambda g: calls.append("hidden") or g * 10.0)
        x.register_hook(lambda g: calls.append("x"))
        return x, hidden, (hidden * hidden).sum()

    calls_stepped, calls_plain = [], []
    x1, hidden1, loss1 = with_hooks(calls_stepped)
    Stepper(loss1).run()
    x2, hidden2, loss2 = with_hooks(calls_plain)
    loss2.backward()
    assert calls_stepped == calls_plain == ["hidden", "x"]
    np.testing.assert_array_equal(hidden1.grad, hidden2.grad)
    np.testing.assert_array_equal(x1.grad, x2.grad)


def test_leaf_gradients_are_set_with_the_last_step_and_not_before():
    x = leaf([1.0, 2.0])
    stepper = Stepper((x.exp() * 2.0).sum())
    stepper.next()
    stepper.next()
    assert x.grad is None and not stepper.done
    stepper.next()
    assert stepper.done
    np.testing.assert_allclose(x.grad, 2 * np.exp([1.0, 2.0]))


def test_total_counts_the_functions_before_walking(rng):
    tensors = [leaf(a) for a in cnn_leaves(rng)]
    loss = small_cnn(*tensors)
    total = autograd.count_functions(loss)
    steps = list(iter_backward(loss))
    assert total == len(steps) and {s.total for s in steps} == {total}
    assert [s.index for s in steps] == list(range(1, total + 1))


def test_the_count_skips_the_graph_behind_a_tensor_that_stopped_requiring_grad():
    x = leaf([1.0, 2.0])
    frozen = (x * 2.0).requires_grad_(False)   # keeps its creator, gets no gradient
    loss = (frozen * x).sum()
    assert autograd.count_functions(loss) == len(list(iter_backward(loss))) == 2


# --- the Stepper loop ------------------------------------------------------------------------

def test_next_after_the_end_raises_stop_iteration_with_a_message():
    stepper = Stepper((leaf([1.0]) * 2.0).sum())
    assert len(stepper) == stepper.total == 2
    stepper.run()
    with pytest.raises(StopIteration, match="backward pass is over.*2 of 2"):
        stepper.next()
    assert stepper.run() == [] and stepper.done


def test_iterating_a_stepper_continues_where_next_left_off():
    stepper = Stepper((leaf([1.0, 2.0]).exp() * 3.0).sum())
    first = stepper.next()
    rest = [step for step in stepper]
    assert [s.index for s in [first] + rest] == [1, 2, 3]
    assert stepper.steps == [first] + rest


def test_a_leaf_root_has_no_steps_and_gets_its_gradient_at_once():
    x = leaf(2.0)
    stepper = Stepper(x)
    assert stepper.done and stepper.total == 0 and stepper.steps == []
    np.testing.assert_array_equal(x.grad, 1.0)


def test_stepper_takes_the_upstream_gradient_and_retain_graph():
    x = leaf([1.0, 2.0])
    y = Square()(x)
    Stepper(y, grad=np.array([1.0, 10.0]), retain_graph=True).run()
    np.testing.assert_array_equal(x.grad, [2.0, 40.0])
    y.backward(np.array([1.0, 1.0]))        # the graph was kept
    np.testing.assert_array_equal(x.grad, [4.0, 44.0])


def test_a_root_without_grad_is_refused_when_the_stepper_is_made():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Stepper(cl.tensor([1.0, 2.0]))


def test_history_lists_the_steps_taken_so_far():
    stepper = Stepper((leaf([1.0, 2.0]).exp() * 3.0).sum())
    stepper.next()
    assert "1 of 3 steps taken" in stepper.history_html() and "next: step 2" in repr(stepper)
    stepper.run()
    page = stepper._repr_html_()
    assert_well_formed(page)
    assert all(name in page for name in ("Sum", "Mul", "Exp")) and "3 of 3" in page


# --- cards and text --------------------------------------------------------------------------

class StrictParser(html.parser.HTMLParser):
    """Checks that every element opened is closed, in order."""

    def __init__(self):
        super().__init__()
        self.open = []

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open}"
        self.open.pop()


def assert_well_formed(page):
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    assert "<script" not in page


def test_card_names_the_step_the_op_and_the_shapes():
    x = leaf(np.arange(6.0).reshape(2, 3), name="x")
    w = leaf(np.ones(3))
    steps = list(iter_backward((x * w).sum()))
    card = steps[1]._repr_html_()
    assert_well_formed(card)
    assert "step 2 of 2: Mul" in card
    assert "(2, 3)" in card and "(3,)" in card
    assert "y = a * b" in card                     # the op's docstring, first line
    assert "leaf &#x27;x&#x27;" in card            # where the first gradient goes
    assert "[[0, 1, 2], [3, 4, 5]]" in card        # a small array shows its values


def test_card_of_a_large_array_shows_a_heat_strip_and_statistics():
    x = leaf(np.linspace(-1.0, 1.0, 100))
    step = next(iter_backward((x * 1.0).sum()))        # Sum: (100,) -> ()
    card = step._repr_html_()
    assert_well_formed(card)
    assert card.count("display: inline-block; width: 4px") == 2 * 48   # input and its grad
    assert "-1</td>" in card and ">1</td>" in card          # min and max of the input


def test_card_escapes_names_and_docstrings():
    class Evil(Function):
        """y = x if a < b & c > d else <script>"""

        def forward(self, x):
            return x

        def backward(self, gy):
            return gy

    x = leaf([1.0], name="<img src=x>")
    step = next(iter_backward(Evil().named("<b>op</b>")(x)))
    card = step._repr_html_()
    assert_well_formed(card)
    assert "<b>op</b>" not in card and "&lt;b&gt;op&lt;/b&gt;" in card
    assert "a &lt; b &amp; c &gt; d" in card and "<img" not in card


def test_parameters_are_named_after_their_module():
    model = cl.nn.Sequential(cl.nn.Linear(3, 2))
    loss = model(cl.tensor(np.ones((1, 3), np.float32))).sum()
    linear_step = list(iter_backward(loss))[-1]
    assert linear_step.destinations == ("constant (needs no gradient)", "parameter 0.weight",
                                        "parameter 0.bias")
    assert "in 0 (Linear)" in str(linear_step)


def test_repr_is_one_line_and_str_a_few():
    x = leaf([1.0, 2.0, 3.0], name="x")
    steps = list(iter_backward((Square()(x) * x).sum()))
    assert repr(steps[1]) == "<step 2/3 Mul: grad outputs [(3,)] -> grad inputs [(3,), (3,)]>"
    text = str(steps[1]).splitlines()
    assert text[0] == "step 2 of 3: Mul  (y = a * b;  dy/da = b, dy/db = a.)"
    assert any(re.search(r"dL/d input 0 +\(3,\) float64 \[1, 2, 3\]  to output of Square", line)
               for line in text)
    assert any("to leaf 'x'" in line for line in text)


# --- Function.apply on the class -------------------------------------------------------------

def test_square_apply_on_the_class_makes_a_fresh_function():
    x = leaf([1.0, -3.0])
    y = Square.apply(x)
    assert isinstance(y.creator, Square)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, -6.0])
    assert Square.apply(x).creator is not y.creator


def test_calling_and_applying_an_instance_still_work(rng):
    x = leaf([2.0])
    np.testing.assert_array_equal(Square()(x).data, [4.0])
    np.testing.assert_array_equal(Square().apply(x).data, [4.0])
    image, kernel = cl.tensor(rng.standard_normal((1, 1, 5, 5))), cl.tensor(np.ones((1, 1, 3, 3)))
    assert Conv2d(stride=2)(image, kernel).shape == (1, 1, 2, 2)
    assert Conv2d.apply(image, kernel).shape == (1, 1, 3, 3)     # all arguments have defaults


def test_apply_on_a_class_that_needs_constructor_arguments_says_to_construct_it():
    with pytest.raises(TypeError, match=r"LeakyReLU\(negative_slope\).*construct it first"):
        LeakyReLU.apply(leaf([1.0]))


# --- the student version of iter_backward ------------------------------------------------------

AUTOGRAD_SOURCE = Path(autograd.__file__).read_text()


def student_version(source):
    """The source with every SOLUTION region replaced by the raise nbgrader-style tools put."""
    lines, out, inside = source.splitlines(), [], False
    for line in lines:
        if line.strip() == "# BEGIN SOLUTION":
            assert not inside
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out.append(f'{indent}raise NotImplementedError("implement iter_backward")')
        elif line.strip() == "# END SOLUTION":
            assert inside and line[:len(line) - len(line.lstrip())] == indent
            inside = False
        elif not inside:
            out.append(line)
    assert not inside
    return "\n".join(out) + "\n"


def test_the_solution_region_is_the_body_of_the_walk_in_iter_backward():
    markers = [line for line in AUTOGRAD_SOURCE.splitlines() if "SOLUTION" in line]
    assert [m.strip() for m in markers] == ["# BEGIN SOLUTION", "# END SOLUTION"]
    tree = ast.parse(AUTOGRAD_SOURCE)
    walk = next(node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "iter_backward")
    begin = AUTOGRAD_SOURCE.splitlines().index(markers[0]) + 1
    assert walk.lineno < begin < walk.end_lineno
    region = AUTOGRAD_SOURCE.split(markers[0])[1].split(markers[1])[0]
    for piece in ("heapq.heappop", "_run_backward", "_accumulate", "heapq.heappush"):
        assert piece in region


def test_the_student_version_parses_and_stays_a_generator_that_raises(monkeypatch):
    stub = student_version(AUTOGRAD_SOURCE)
    tree = ast.parse(stub)
    walk = next(node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "iter_backward")
    assert any(isinstance(node, ast.Yield) for node in ast.walk(walk))
    module = types.ModuleType("student_autograd")
    monkeypatch.setitem(sys.modules, module.__name__, module)   # dataclasses look it up
    exec(compile(tree, "student_autograd.py", "exec"), module.__dict__)
    x = leaf([1.0, 2.0])
    walk = module.iter_backward((x * 2.0).sum())
    assert isinstance(walk, types.GeneratorType)
    with pytest.raises(NotImplementedError, match="implement iter_backward"):
        next(walk)
