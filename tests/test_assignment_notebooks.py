"""The teaching notebooks are also assignments: their exercises are marked as solution regions,
and ``cnnlite assignment make notebooks --out DIR`` gives the student version, in which each
exercise is a ``raise NotImplementedError("implement <function>")`` and running the notebook
from the top stops at the first one with that message (not with a NameError)."""
import ast
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest

from cnnlite.assignment import find_regions, make_assignment, regions

NOTEBOOK_FOLDER = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_FOLDER.glob("*.ipynb"))

#: The exercises of each notebook, in the order the student meets them in the cells.
EXERCISES = {
    "01_autograd_from_scratch.ipynb": [
        "Value.__add__.backward_step", "Value.__mul__.backward_step",
        "Value.__pow__.backward_step", "Value.tanh.backward_step", "Value.relu.backward_step",
        "topological_order", "backward", "sum_to"],
    "02_convolution.ipynb": ["conv2d_im2col"],
    "04_gradient_checking.ipynb": ["numerical_grad"],
    "05_batch_norm_and_lrn.ipynb": ["batch_norm_backward"],
}
#: Run from the top, the student version stops here: the first exercise a cell calls.
FIRST_STOP = {
    "01_autograd_from_scratch.ipynb": "backward",
    "02_convolution.ipynb": "conv2d_im2col",
    "04_gradient_checking.ipynb": "numerical_grad",
    "05_batch_norm_and_lrn.ipynb": "batch_norm_backward",
}


def python_view(source: str) -> str:
    """A code cell as plain Python (IPython's ``%magic`` and ``!shell`` lines become ``pass``)."""
    return regions.python_view(source, notebook=True)


def code_cells(notebook):
    """(cell number from 1, source) of the Python code cells (a ``%%`` cell magic is not)."""
    return [(number, cell.source) for number, cell in enumerate(notebook.cells, start=1)
            if cell.cell_type == "code" and not cell.source.lstrip().startswith("%%")]


def marked_functions(path):
    """The functions named by the solution regions of a notebook, cell by cell, in order."""
    notebook = nbformat.read(path, as_version=4)
    return [region.function
            for number, source in code_cells(notebook)
            for region in find_regions(source, f"{path.name}, cell {number}", notebook=True)]


def stubs_with_their_scope(tree):
    """(message, scope) of every ``raise NotImplementedError("implement ...")`` in ``tree``;
    the scope lists (name, is a function) of the enclosing defs and classes, outermost first."""
    found = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + [(child.name, not isinstance(child, ast.ClassDef))])
                continue
            if (isinstance(child, ast.Raise) and isinstance(child.exc, ast.Call)
                    and getattr(child.exc.func, "id", None) == "NotImplementedError"
                    and len(child.exc.args) == 1
                    and isinstance(message := child.exc.args[0], ast.Constant)
                    and str(message.value).startswith("implement ")):
                found.append((message.value, scope))
            visit(child, scope)

    visit(tree, [])
    return found


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """The student version of the whole notebooks folder, and what make_assignment reported."""
    out = tmp_path_factory.mktemp("student") / "notebooks"
    return out, make_assignment(NOTEBOOK_FOLDER, out)


@pytest.mark.parametrize("name", EXERCISES)
def test_notebook_marks_its_exercises(name):
    assert marked_functions(NOTEBOOK_FOLDER / name) == EXERCISES[name]


def test_every_marked_notebook_gets_its_stubs(student):
    out, made = student
    marked = {path.name: functions for path in NOTEBOOKS
              if (functions := marked_functions(path))}
    assert set(EXERCISES) <= set(marked)
    assert made.functions == {name: list(dict.fromkeys(functions))
                              for name, functions in marked.items()}
    for name, functions in marked.items():
        notebook = nbformat.read(out / name, as_version=4)
        code = "".join(source for _, source in code_cells(notebook))
        assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code, name
        for function in functions:
            assert f'raise NotImplementedError("implement {function}")' in code, function


@pytest.mark.parametrize("name", EXERCISES)
def test_student_cells_parse_with_each_stub_in_its_function(student, name):
    """A stub is the body of the function it names: a region that spilled out of its function
    (a marker at the wrong indentation) would raise when the cell runs, not when it is called."""
    out, _ = student
    notebook = nbformat.read(out / name, as_version=4)
    stubs = []
    for number, source in code_cells(notebook):
        stubs += stubs_with_their_scope(ast.parse(python_view(source), f"{name}, cell {number}"))
    assert [message for message, _ in stubs] == [f"implement {function}"
                                                 for function in EXERCISES[name]]
    for message, scope in stubs:
        assert scope and scope[-1][1], f"{message}: not inside a function"
        assert message == "implement " + ".".join(scope_name for scope_name, _ in scope)


@pytest.mark.parametrize("name", FIRST_STOP)
def test_student_notebook_stops_at_its_first_exercise(student, name, tmp_path, monkeypatch):
    out, _ = student
    monkeypatch.chdir(tmp_path)
    notebook = nbformat.read(out / name, as_version=4)
    namespace = {"__name__": "__main__"}
    try:
        with pytest.raises(NotImplementedError) as stop:
            for number, source in code_cells(notebook):
                exec(compile(python_view(source), f"{name}, cell {number}", "exec"), namespace)
    finally:
        plt.close("all")
    assert str(stop.value) == f"implement {FIRST_STOP[name]}"
