"""Course assignments: solution regions, ``cnnlite assignment make`` and ``check``.

The grading tests run the real checks of ``cnnlite.optable`` in worker processes against
folders made from the package itself: the student version (every check "not implemented"),
the solution version (every check passes) and copies of the solution with one bug planted;
and folders a student tampered with outside the assignment's files, which must change nothing.
"""
import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from cnnlite.assignment import (AssignmentError, Check, RegionError, find_regions,
                                make_assignment, parse_assignment, shipped_assignments,
                                stub_notebook, stub_source)
from cnnlite.assignment.check import Outcome, Report, check_assignment
from cnnlite.assignment.cli import main

# --- regions ---------------------------------------------------------------------------------

METHOD = textwrap.dedent('''\
    class Mul:
        def backward(self, gy):
            """dy/da = b."""
            # BEGIN SOLUTION
            a, b = self.saved
            return gy * b, gy * a
            # END SOLUTION
''')


def test_a_region_becomes_one_raise_at_the_markers_indentation():
    stubbed, regions = stub_source(METHOD, "math.py")
    assert stubbed == textwrap.dedent('''\
        class Mul:
            def backward(self, gy):
                """dy/da = b."""
                raise NotImplementedError("implement Mul.backward")
    ''')
    assert [(r.begin, r.end, r.function) for r in regions] == [(4, 7, "Mul.backward")]


def test_each_region_names_its_enclosing_def_or_the_fallback_at_module_level():
    source = textwrap.dedent('''\
        def outer(x):
            def inner(y):
                # BEGIN SOLUTION
                return y
                # END SOLUTION
            ### BEGIN SOLUTION
            return inner(x)
            ### END SOLUTION

        # BEGIN SOLUTION
        ANSWER = 42
        # END SOLUTION
    ''')
    stubbed, regions = stub_source(source, "f.py", fallback="f.py")
    assert [r.function for r in regions] == ["outer.inner", "outer", ""]
    assert 'raise NotImplementedError("implement f.py")' in stubbed
    assert 'raise NotImplementedError("implement outer")' in stubbed
    with pytest.raises(NotImplementedError, match="implement f.py"):
        exec(compile(stubbed, "f.py", "exec"), {})


def test_markers_inside_strings_and_after_code_are_not_markers():
    source = textwrap.dedent('''\
        def f():
            """Mark the answer with
            # BEGIN SOLUTION
            """
            x = 1  # BEGIN SOLUTION
            return "# END SOLUTION"
    ''')
    assert find_regions(source, "f.py") == []
    assert stub_source(source, "f.py")[0] == source


@pytest.mark.parametrize("body, message", [
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n# END SOLUTION\n",
     r"f\.py, line 2: BEGIN SOLUTION inside the region opened at line 1"),
    ("x = 1\n# END SOLUTION\n", r"f\.py, line 2: END SOLUTION without a BEGIN"),
    ("def f():\n    # BEGIN SOLUTION\n    return 1\n",
     r"f\.py, line 2: BEGIN SOLUTION is never closed"),
])
def test_nested_and_unbalanced_markers_are_errors_with_file_and_line(body, message):
    with pytest.raises(RegionError, match=message):
        stub_source(body, "f.py")


def test_a_student_version_that_does_not_parse_is_an_error_at_the_region():
    # The markers sit at the def's indentation, not the body's: the stub leaves the if empty.
    source = "def f(x):\n    if x:\n# BEGIN SOLUTION\n        return 1\n# END SOLUTION\n"
    with pytest.raises(RegionError, match=r"f\.py, line 3: the student version does not "
                                          r"parse .* region at line 3"):
        stub_source(source, "f.py")


def _notebook(*cells):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}


def _code(source, outputs=("answer: 42",)):
    return {"cell_type": "code", "execution_count": 3, "metadata": {},
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [o]}
                        for o in outputs],
            "source": source.splitlines(keepends=True)}


def test_a_notebook_loses_its_outputs_and_its_regions_and_keeps_the_rest():
    text = {"cell_type": "markdown", "metadata": {}, "source": ["# BEGIN SOLUTION is text here"]}
    magic = _code("%matplotlib inline\n!echo hi\nprint(2)")
    exercise = _code("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n"
                     "    ### END SOLUTION\n")
    loose = _code("# BEGIN SOLUTION\nanswer = 42\n# END SOLUTION\nprint(answer)")
    original = _notebook(text, magic, exercise, loose)
    student, regions = stub_notebook(original, "lab.ipynb")
    assert sorted(regions) == [3, 4]
    cells = student["cells"]
    assert cells[0] == text and cells[1]["source"] == magic["source"]
    assert "".join(cells[2]["source"]) == ('def square(x):\n'
                                           '    raise NotImplementedError("implement square")\n')
    assert "".join(cells[3]["source"]).startswith('raise NotImplementedError("implement this '
                                                  'cell")\n')
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells[1:])
    assert original["cells"][2]["outputs"], "the argument is left as it was"


def test_a_marker_out_of_place_in_a_notebook_names_the_cell():
    notebook = _notebook(_code("x = 1"), _code("def f():\n    # END SOLUTION\n    return 1\n"))
    with pytest.raises(RegionError, match=r"lab\.ipynb, cell 2, line 2: END SOLUTION"):
        stub_notebook(notebook, "lab.ipynb")


# --- make ------------------------------------------------------------------------------------

EXPECTED_FUNCTIONS = {
    "layers": {"cnnlite/reference/conv.py": ["conv2d_forward", "conv2d_backward"],
               "cnnlite/reference/pool.py": ["max_pool2d_forward", "max_pool2d_backward"],
               "cnnlite/reference/norm.py": ["batch_norm_statistics", "batch_norm_forward",
                                             "batch_norm_grad_statistics",
                                             "batch_norm_backward"]},
    "autograd": {"cnnlite/functional/math.py": ["sum_to", "Mul.backward", "Exp.backward",
                                                "MatMul.backward"],
                 "cnnlite/functional/reduction.py": ["Sum.backward"],
                 "cnnlite/autograd.py": ["iter_backward"]},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """{(name, "student" | "solution"): folder} for both shipped assignments."""
    root = tmp_path_factory.mktemp("assignments")
    folders = {}
    for name in shipped_assignments():
        for version in ("student", "solution"):
            folder = root / f"{name}-{version}"
            result = make_assignment(name, folder, solution=version == "solution")
            assert result.functions == EXPECTED_FUNCTIONS[name]
            folders[name, version] = folder
    return folders


def test_both_assignments_ship():
    assert shipped_assignments() == ["autograd", "layers"]


@pytest.mark.parametrize("name", ["layers", "autograd"])
def test_the_student_folder_is_the_package_with_only_the_assignment_stubbed(made, name):
    folder = made[name, "student"]
    assert (folder / "cnnlite" / "__init__.py").is_file()
    assert not list(folder.rglob("__pycache__"))
    assert "[[checks]]" in (folder / "assignment.toml").read_text()
    readme = (folder / "README.md").read_text()
    assert "cnnlite assignment check ." in readme
    for path, functions in EXPECTED_FUNCTIONS[name].items():
        text = (folder / path).read_text()
        ast.parse(text)
        assert "BEGIN SOLUTION\n" not in text
        for function in functions:
            assert f'raise NotImplementedError("implement {function}")' in text
            assert f"`{function}`" in readme
    untouched = "cnnlite/reference/linear.py"
    assert (folder / untouched).read_text() == (made[name, "solution"] / untouched).read_text()


def test_make_refuses_a_non_empty_folder_unless_forced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AssignmentError, match="is not empty; pass --force"):
        make_assignment("layers", tmp_path)
    made = make_assignment("layers", tmp_path, force=True)
    assert (made.out / "assignment.toml").is_file() and (tmp_path / "notes.txt").is_file()


def test_an_assignment_file_naming_a_file_without_regions_is_refused(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text('name = "mine"\ntitle = "Linear"\nfiles = ["reference/linear.py"]\n'
                    '[[checks]]\nlabel = "linear"\nop = "linear"\nimplementation = "loops"\n')
    with pytest.raises(AssignmentError, match=r"cnnlite/reference/linear\.py has no solution "
                                              r"region"):
        make_assignment(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_make_of_a_notebook_stubs_its_cells_and_clears_outputs(tmp_path):
    lab = tmp_path / "lab.ipynb"
    lab.write_text(json.dumps(_notebook(_code("def f():\n    # BEGIN SOLUTION\n    return 1\n"
                                              "    # END SOLUTION\n"))))
    made = make_assignment(lab, tmp_path / "student")
    cell = json.loads((tmp_path / "student" / "lab.ipynb").read_text())["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None
    assert "".join(cell["source"]) == 'def f():\n    raise NotImplementedError("implement f")\n'
    assert made.functions == {"lab.ipynb": ["f"]}


def test_make_of_a_folder_stubs_every_python_file_and_copies_the_rest(tmp_path):
    source = tmp_path / "course"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (source / "pkg" / "ops.py").write_text(METHOD)
    (source / "data.csv").write_text("1,2\n")
    make_assignment(source, tmp_path / "out")
    assert "implement Mul.backward" in (tmp_path / "out" / "pkg" / "ops.py").read_text()
    assert (tmp_path / "out" / "data.csv").read_text() == "1,2\n"
    assert not (tmp_path / "out" / "pkg" / "__pycache__").exists()
    assert (source / "pkg" / "ops.py").read_text() == METHOD


def test_the_command_line_reports_a_bad_marker_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    # BEGIN SOLUTION\n    return 1\n")
    assert main(["make", str(bad), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bad.py, line 2: BEGIN SOLUTION is never closed" in error


# --- check -----------------------------------------------------------------------------------

def _report_lines(output):
    """The check lines and the summary of the command's output: what follows the header."""
    body = output[output.index("\n\n") + 2:]
    return [line for line in body.splitlines() if line and not line.startswith(" ")]


@pytest.mark.parametrize("name", ["layers", "autograd"])
def test_the_student_version_fails_every_check_as_not_implemented(made, name, capsys):
    assert main(["check", str(made[name, "student"])]) == 1
    lines = _report_lines(capsys.readouterr().out)
    checks = lines[:-1]
    assert checks and all("not implemented: implement " in line for line in checks)
    assert lines[-1].startswith(f"0 of {len(checks)} checks passed; to fix: ")


@pytest.mark.parametrize("name", ["layers", "autograd"])
def test_the_solution_passes_every_check(made, name, capsys):
    assert main(["check", str(made[name, "solution"])]) == 0
    output = capsys.readouterr().out
    lines = _report_lines(output)
    assert all(line.endswith("passed") for line in lines[:-1])
    assert lines[-1] == f"all {len(lines) - 1} checks passed"
    header = " ".join(output[:output.index("\n\n")].split())
    graded = ", ".join(EXPECTED_FUNCTIONS[name])
    assert header.startswith(f"graded: {graded} (only these files of {made[name, 'solution']};")
    assert header.endswith(f"checks: assignment {name}, shipped with cnnlite")


def _planted(made, name, tmp_path, path, correct, wrong):
    """A copy of the solution folder with ``correct`` replaced by ``wrong`` in ``path``."""
    folder = tmp_path / f"{name}-planted"
    shutil.copytree(made[name, "solution"], folder)
    text = (folder / path).read_text()
    assert text.count(correct) == 1
    (folder / path).write_text(text.replace(correct, wrong))
    return folder


def test_a_max_pool_backward_that_sends_the_gradient_to_the_wrong_element_is_found(made, tmp_path):
    folder = _planted(made, "layers", tmp_path, "cnnlite/reference/pool.py",
                      "gx[planes, argmax[:, :, i, j].reshape(-1)]",
                      "gx[planes, (argmax[:, :, i, j].reshape(-1) + 1) % (h * w)]")
    outcomes = {o.check.label: o for o in check_assignment(folder).outcomes}
    assert {label: o.status for label, o in outcomes.items()} == {
        "conv2d (direct loops)": "passed", "max_pool2d (loops)": "wrong gradient",
        "batch_norm (loops)": "passed"}
    wrong = outcomes["max_pool2d (loops)"]
    assert wrong.detail.startswith("input 0, element ") and wrong.index is not None


def test_a_mul_backward_that_swaps_its_factors_is_found_at_mul(made, tmp_path):
    folder = _planted(made, "autograd", tmp_path, "cnnlite/functional/math.py",
                      "return self.reduce_grads(gy * b, gy * a)",
                      "return self.reduce_grads(gy * a, gy * b)")
    statuses = {o.check.label: o.status for o in check_assignment(folder).outcomes}
    assert statuses.pop("mul") == "wrong gradient"
    statuses.pop("backward walk")  # the walk's graph multiplies too
    assert set(statuses.values()) == {"passed"}


def test_an_endless_loop_times_out_a_crash_is_an_error_and_the_rest_still_run(made, tmp_path):
    folder = _planted(made, "autograd", tmp_path, "cnnlite/functional/math.py",
                      "        (y,) = self.saved\n        return gy * y",
                      "        while True:\n            pass")
    math_py = folder / "cnnlite" / "functional" / "math.py"
    math_py.write_text(math_py.read_text().replace(
        "        a, b = self.saved\n        xp = backend.array_module(gy)",
        "        import os\n        os._exit(3)"))
    checks = [Check(op, op, "numpy") for op in ("exp", "matmul", "sum")]
    outcomes = check_assignment(folder, timeout=3, checks=checks).outcomes
    assert [o.status for o in outcomes] == ["timed out", "error", "passed"]
    assert "no result after 3 s" in outcomes[0].detail
    assert "exit status 3" in outcomes[1].detail


def test_a_syntax_error_in_the_students_file_is_the_error_of_its_functions_only(made, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(made["layers", "student"], folder)
    pool = folder / "cnnlite" / "reference" / "pool.py"
    stub = '    raise NotImplementedError("implement max_pool2d_forward")'
    line = pool.read_text().splitlines().index(stub) + 1
    pool.write_text(pool.read_text().replace(stub, "    y = max(x"))
    conv, max_pool, norm = check_assignment(folder).outcomes
    assert max_pool.status == "error"
    assert max_pool.detail == (f"SyntaxError: '(' was never closed "
                               f"(cnnlite/reference/pool.py, line {line})")
    assert conv.detail == "implement conv2d_forward"
    assert norm.detail == "implement batch_norm_statistics"


def test_a_missing_file_is_an_error_and_never_the_graders_own_solution(made, tmp_path):
    folder = tmp_path / "missing"
    shutil.copytree(made["layers", "solution"], folder)
    (folder / "cnnlite" / "reference" / "pool.py").unlink()
    statuses = {o.check.label: (o.status, o.detail) for o in check_assignment(folder).outcomes}
    assert statuses == {
        "conv2d (direct loops)": ("passed", ""),
        "max_pool2d (loops)": ("error", "FileNotFoundError: cnnlite/reference/pool.py is "
                                        "missing from the student's folder"),
        "batch_norm (loops)": ("passed", "")}


# --- what the grader trusts ------------------------------------------------------------------

ALWAYS_PASS = textwrap.dedent("""

    def run_check(spec, check, implementation, params=None, dtype="float64", *args, **kwargs):
        return CheckResult(spec.name, implementation, check, PASSED, dtype=dtype)
""")


def _check_op_in(folder, op, implementation):
    """The status ``optable.check_op`` gives with ``folder``'s own copy of cnnlite imported."""
    code = (f"from cnnlite import optable; "
            f"print(optable.check_op({op!r}, {implementation!r}).status)")
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(folder)}, check=True)
    return result.stdout.strip()


def test_a_student_who_rewrites_the_op_tables_checks_to_pass_still_gets_the_real_report(
        made, tmp_path):
    folder = tmp_path / "tampered"
    shutil.copytree(made["layers", "student"], folder)
    with open(folder / "cnnlite" / "optable" / "checks.py", "a") as checks:
        checks.write(ALWAYS_PASS)
    assert _check_op_in(folder, "max_pool2d", "loops") == "passed", "the tampering works"
    report = check_assignment(folder)
    assert [o.status for o in report.outcomes] == ["not implemented"] * 3
    assert report.exit_status == 1


def test_a_student_who_drops_the_failing_checks_from_assignment_toml_still_gets_them(
        made, tmp_path, capsys):
    folder = _planted(made, "layers", tmp_path, "cnnlite/reference/pool.py",
                      "gx[planes, argmax[:, :, i, j].reshape(-1)]",
                      "gx[planes, (argmax[:, :, i, j].reshape(-1) + 1) % (h * w)]")
    toml = (folder / "assignment.toml").read_text()
    kept = toml[:toml.index("[[checks]]")].replace("timeout = 60", "timeout = 0.001")
    (folder / "assignment.toml").write_text(
        kept + '[[checks]]\nlabel = "add"\nop = "add"\nimplementation = "numpy"\n')
    assert main(["check", str(folder)]) == 1
    lines = _report_lines(capsys.readouterr().out)
    assert [line.split()[0] for line in lines[:3]] == ["conv2d", "max_pool2d", "batch_norm"]
    assert "max_pool2d (loops)       wrong gradient" in lines[1]
    assert lines[-1] == "2 of 3 checks passed; to fix: max_pool2d (loops)"


def test_edits_to_files_the_assignment_does_not_name_have_no_effect(made, tmp_path):
    folder = tmp_path / "elsewhere"
    shutil.copytree(made["layers", "solution"], folder)
    (folder / "cnnlite" / "__init__.py").write_text("raise SystemExit('not the grader')\n")
    (folder / "cnnlite" / "assignment" / "check.py").write_text("this is not Python\n")
    report = check_assignment(folder)
    assert [o.status for o in report.outcomes] == ["passed"] * 3
    assert report.files == ("cnnlite/reference/conv.py", "cnnlite/reference/pool.py",
                            "cnnlite/reference/norm.py")


def test_a_folder_that_claims_another_assignment_is_refused_when_the_grader_names_it(
        made, tmp_path, capsys):
    folder = tmp_path / "renamed"
    shutil.copytree(made["layers", "student"], folder)
    toml = folder / "assignment.toml"
    toml.write_text(toml.read_text().replace('name = "layers"', 'name = "autograd"'))
    assert main(["check", str(folder), "--assignment", "layers"]) == 2
    assert "names the assignment 'autograd', not 'layers'" in capsys.readouterr().err


POOLING = """\
name = "pooling"
title = "Max pooling by hand"
files = ["reference/pool.py"]

[[checks]]
label = "max_pool2d"
op = "max_pool2d"
implementation = "loops"
"""


def test_an_assignment_of_ones_own_is_graded_as_recorded_or_by_the_instructors_file(
        tmp_path):
    spec = tmp_path / "pooling.toml"
    spec.write_text(POOLING)
    folder = tmp_path / "hw"
    make_assignment(spec, folder)
    readme = " ".join((folder / "README.md").read_text().split())
    assert "recorded when this folder was made (from `pooling.toml`)" in readme
    recorded = check_assignment(folder)
    assert [o.status for o in recorded.outcomes] == ["not implemented"]
    assert recorded.checks_from.endswith("assignment.toml, as recorded when the folder was made")
    toml = folder / "assignment.toml"
    toml.write_text(POOLING.replace('"max_pool2d"', '"add"').replace('"loops"', '"numpy"'))
    assert [o.status for o in check_assignment(folder).outcomes] == ["passed"]
    pinned = check_assignment(folder, assignment=spec)
    assert [(o.check.op, o.status) for o in pinned.outcomes] == [("max_pool2d",
                                                                  "not implemented")]
    assert pinned.checks_from == str(spec)


@pytest.mark.parametrize("path", ["/etc/passwd", "../setup.py", "reference/../../x.py",
                                  "reference\\pool.py"])
def test_an_assignment_file_may_only_name_files_inside_the_package(path):
    with pytest.raises(AssignmentError, match="files must be paths inside the cnnlite package"):
        parse_assignment(POOLING.replace('"reference/pool.py"', json.dumps(path)))


def test_an_assignment_of_ones_own_may_not_take_a_shipped_name(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text(POOLING.replace('"pooling"', '"layers"'))
    with pytest.raises(AssignmentError, match="name 'layers' is a shipped assignment's"):
        make_assignment(spec, tmp_path / "out")


def test_the_report_has_a_line_per_check_with_details_wrapped_under_the_status():
    checks = [Check("conv2d (direct loops)", "conv2d", "direct"),
              Check("max_pool2d (loops)", "max_pool2d", "loops")]
    report = Report("layers", [
        Outcome(checks[0], "passed"),
        Outcome(checks[1], "wrong gradient", "input 0, element (0, 1, 2, 3): got 0.0, expected "
                "1.3 (12 of 72 elements off)", (0, 1, 2, 3))])
    assert report.format(width=76) == textwrap.dedent("""\
        conv2d (direct loops)    passed
        max_pool2d (loops)       wrong gradient: input 0, element (0, 1, 2, 3): got
                                 0.0, expected 1.3 (12 of 72 elements off)

        1 of 2 checks passed; to fix: max_pool2d (loops)""")
    assert report.exit_status == 1


def test_check_refuses_a_folder_that_is_not_an_assignment(tmp_path):
    with pytest.raises(AssignmentError, match="has no assignment.toml"):
        check_assignment(tmp_path)
