"""``cnnlite assignment make``: the student version of an assignment, a file, a notebook or a
folder.

A shipped assignment (``cnnlite/assignment/assignments/NAME.toml``) names the library files
whose solution regions (``cnnlite.assignment.regions``) make the assignment, and the checks
that grade it. Its student version is a folder::

    DIR/cnnlite/        a full copy of the installed package, only the assignment's files stubbed
    DIR/assignment.toml the assignment's file: says which assignment the folder is
    DIR/README.md       what to implement, where, how to check it and what the grader reads

so that ``import cnnlite`` with ``DIR`` first on ``sys.path`` imports the student's copy.
The grader (``cnnlite.assignment.grading``) takes only the assignment's files from ``DIR``. For
a shipped assignment it reads nothing but the name from ``DIR/assignment.toml``; an assignment
made from a TOML file of one's own is graded as that file was recorded in ``DIR``, so it may
not take a shipped assignment's name.
A path instead of a name stubs every region of a ``.py`` file, a notebook, or every ``.py`` and
``.ipynb`` file of a folder (the folder's other files are copied as they are); notebooks lose
their outputs. ``solution=True`` makes the same folder without stubbing anything: the version
the checks must pass, for whoever sets the assignment.

Nothing is written before every stubbed file has been made and parsed, so an error (a file
without regions, a marker out of place) leaves ``DIR`` as it was.
"""
from __future__ import annotations

import json
import math
import shutil
import textwrap
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

import cnnlite
from cnnlite.assignment.regions import Region, stub_notebook, stub_source
from cnnlite.errors import OpError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

__all__ = ["AssignmentError", "Check", "Assignment", "Made", "shipped_assignments",
           "parse_assignment", "load_assignment", "make_assignment"]

ASSIGNMENT_FILE = "assignment.toml"
# Left out of every copy: compiled bytecode (and numba's caches, which live beside it), and
# the folders Jupyter and git keep for themselves.
_SKIPPED = ("__pycache__", "*.pyc", ".ipynb_checkpoints", ".git")
_TOP_LEVEL_KEYS = {"name", "title", "instructions", "files", "dtype", "seed", "timeout",
                   "checks"}
_CHECK_KEYS = {"label", "op", "implementation"}


class AssignmentError(OpError):
    """A bad assignment file, source or output folder; the message names it."""


@dataclass(frozen=True)
class Check:
    """One line of the grader's report: ``op`` checked in ``implementation`` of the op table."""

    label: str
    op: str
    implementation: str


@dataclass(frozen=True)
class Assignment:
    """A parsed assignment file. ``files`` are paths inside the cnnlite package; ``timeout`` is
    the seconds one check may run; ``text`` is the file itself (copied into the student's
    folder as ``assignment.toml``)."""

    name: str
    title: str
    instructions: str
    files: tuple[str, ...]
    checks: tuple[Check, ...]
    dtype: str = "float64"
    seed: int = 0
    timeout: float = 60.0
    text: str = field(default="", repr=False)


@dataclass
class Made:
    """What ``make_assignment`` wrote: the folder and, per stubbed file (relative to it), its
    regions (for a notebook: per cell)."""

    out: Path
    regions: dict[str, list[Region]]

    @property
    def functions(self) -> dict[str, list[str]]:
        """Per file, the names of the functions to implement, in order, each once."""
        return {path: list(dict.fromkeys(region.function or "(module level)"
                                         for region in regions))
                for path, regions in self.regions.items()}


def shipped_assignments() -> list[str]:
    """The names of the assignments that come with cnnlite."""
    folder = resources.files("cnnlite.assignment") / "assignments"
    return sorted(entry.name[:-len(".toml")] for entry in folder.iterdir()
                  if entry.name.endswith(".toml"))


def _string_list(value, key, source) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v
                                                           for v in value):
        raise AssignmentError(f"{source}: {key} must be a non-empty list of strings, got "
                              f"{value!r:.80}")
    return tuple(value)


def _text(document, key, source, required=True) -> str:
    value = document.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise AssignmentError(f"{source}: {key} must be a non-empty string, got {value!r:.80}")
    return value.strip()


def parse_assignment(text: str, source: str = "<assignment>") -> Assignment:
    """Parse and check an assignment file's ``text``; ``source`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AssignmentError(f"{source}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
    if unknown:
        raise AssignmentError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(sorted(_TOP_LEVEL_KEYS))}")
    tables = document.get("checks")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict)
                                                             for t in tables):
        raise AssignmentError(f"{source}: at least one [[checks]] table is required")
    checks = []
    for number, table in enumerate(tables, start=1):
        where = f"{source}: check {number}"
        if set(table) != _CHECK_KEYS:
            raise AssignmentError(f"{where} must have exactly the keys "
                                  f"{', '.join(sorted(_CHECK_KEYS))}; it has "
                                  f"{', '.join(sorted(table)) or 'none'}")
        checks.append(Check(*(_text(table, key, where)
                              for key in ("label", "op", "implementation"))))
    dtype = document.get("dtype", "float64")
    if dtype not in ("float32", "float64"):
        raise AssignmentError(f"{source}: dtype must be 'float32' or 'float64', got {dtype!r}")
    seed = document.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise AssignmentError(f"{source}: seed must be an integer >= 0, got {seed!r}")
    timeout = document.get("timeout", 60)
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout) or timeout <= 0):
        raise AssignmentError(f"{source}: timeout must be a number of seconds > 0, got "
                              f"{timeout!r}")
    files = _string_list(document.get("files"), "files", source)
    for name in files:
        # The grader writes the student's copy of each file over its own: a path that leaves
        # the package would let a folder's assignment.toml overwrite any file.
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name:
            raise AssignmentError(f"{source}: files must be paths inside the cnnlite package "
                                  f"(like 'reference/pool.py'), got {name!r}")
    return Assignment(_text(document, "name", source), _text(document, "title", source),
                      _text(document, "instructions", source, required=False), files,
                      tuple(checks), dtype, seed, float(timeout), text)


def load_assignment(name_or_path) -> Assignment:
    """A shipped assignment by name (``"layers"``), or an assignment file by its path."""
    if str(name_or_path) in shipped_assignments():
        entry = resources.files("cnnlite.assignment") / "assignments" / f"{name_or_path}.toml"
        return parse_assignment(entry.read_text(encoding="utf-8"), f"{name_or_path}.toml")
    path = Path(name_or_path)
    if not path.is_file():
        raise AssignmentError(f"no assignment {str(name_or_path)!r}: neither a shipped one "
                              f"({', '.join(shipped_assignments())}) nor a file")
    return parse_assignment(path.read_text(encoding="utf-8"), str(path))


# --- making the student's files, in memory first ---------------------------------------------

def _student_python(path: Path, label: str, stub: bool):
    """(text, regions) of a .py file's student version."""
    text = path.read_text(encoding="utf-8")
    if not stub:
        return text, []
    return stub_source(text, label, fallback=path.name)


def _student_notebook(path: Path, label: str, stub: bool):
    """(JSON text, regions) of a notebook's student version: stubbed and without outputs."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise AssignmentError(f"{label}: not a notebook (invalid JSON at line {error.lineno}: "
                              f"{error.msg})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise AssignmentError(f"{label}: not a notebook (no list of cells)")
    student, by_cell = stub_notebook(notebook, label, stub=stub)
    regions = [region for number in sorted(by_cell) for region in by_cell[number]]
    return json.dumps(student, indent=1, ensure_ascii=False) + "\n", regions


def _student_file(path: Path, label: str, stub: bool):
    if path.suffix == ".ipynb":
        return _student_notebook(path, label, stub)
    return _student_python(path, label, stub)


def _package_files(assignment: Assignment, package: Path, stub: bool):
    """{path inside DIR: student text}, {path: regions} for a shipped assignment's files."""
    texts, regions = {}, {}
    for name in assignment.files:
        path = package / name
        label = f"cnnlite/{name}"
        if not path.is_file():
            raise AssignmentError(f"assignment {assignment.name}: {label} does not exist in "
                                  f"the installed package ({package})")
        original = path.read_text(encoding="utf-8")
        stubbed, found = stub_source(original, label, fallback=path.name)
        if not found:
            raise AssignmentError(f"assignment {assignment.name}: {label} has no solution "
                                  f"region (no # BEGIN SOLUTION / # END SOLUTION lines)")
        texts[label] = stubbed if stub else original
        regions[label] = found
    return texts, regions


def _source_files(source: Path, stub: bool):
    """{path inside DIR: student text}, {path: regions} for a .py file, a notebook or a folder.
    Files of a folder that are neither stay out of the dict: they are copied as they are."""
    if source.is_file():
        if source.suffix not in (".py", ".ipynb"):
            raise AssignmentError(f"{source}: make takes a .py file, a .ipynb notebook, a "
                                  f"folder or an assignment's name "
                                  f"({', '.join(shipped_assignments())})")
        text, found = _student_file(source, str(source), stub)
        return {source.name: text}, ({source.name: found} if found else {})
    texts, regions = {}, {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if (path.is_file() and path.suffix in (".py", ".ipynb")
                and not any(part in ("__pycache__", ".ipynb_checkpoints", ".git")
                            for part in relative.parts)):
            texts[relative.as_posix()], found = _student_file(path, str(path), stub)
            if found:
                regions[relative.as_posix()] = found
    return texts, regions


# --- writing DIR ----------------------------------------------------------------------------

def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise AssignmentError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise AssignmentError(f"--out {out} is not empty; pass --force to write into it "
                              f"(its cnnlite/ copy is replaced)")
    out.mkdir(parents=True, exist_ok=True)


def _write_all(out: Path, texts: dict) -> None:
    for relative, text in texts.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def copy_package(package: Path, target: Path) -> None:
    """The installed package without bytecode; the CUDA sources too, which an editable install
    keeps outside the package (as ``kernels/`` of the checkout)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(package, target, ignore=shutil.ignore_patterns(*_SKIPPED))
    if not (target / "kernels").exists():
        try:
            kernels = resources.files("cnnlite.kernels")
        except ModuleNotFoundError:
            return
        shutil.copytree(str(kernels), target / "kernels",
                        ignore=shutil.ignore_patterns(*_SKIPPED))


def _wrapped(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, 92, subsequent_indent=indent, break_on_hyphens=False)


def _grading_note(assignment: Assignment, recorded_from: str | None) -> list[str]:
    """What the grader reads from the student's folder, for the README."""
    files = ", ".join(f"`cnnlite/{name}`" for name in assignment.files)
    lines = _wrapped(f"The grader takes only these files from your folder: {files}. Everything "
                     f"else (the rest of `cnnlite/`, this `{ASSIGNMENT_FILE}`) is the grader's "
                     f"own copy, so changing it changes nothing in your grade.")
    if recorded_from is None:
        lines += [""] + _wrapped(f"The checks are the ones cnnlite ships for the assignment "
                                 f"`{assignment.name}`; `{ASSIGNMENT_FILE}` here only says "
                                 f"which assignment this folder is.")
    else:
        lines += [""] + _wrapped(f"The files and the checks are the ones `{ASSIGNMENT_FILE}` "
                                 f"recorded when this folder was made (from "
                                 f"`{recorded_from}`).")
    return lines


def student_readme(assignment: Assignment, made: Made, solution: bool,
                   recorded_from: str | None = None) -> str:
    """The README.md of an assignment's folder; ``recorded_from`` is the TOML file an
    assignment of one's own was made from (None for a shipped one)."""
    lines = [f"# {assignment.title}", ""]
    if solution:
        lines += ["*The solution version (made with `--solution`): nothing is stubbed; every "
                  "check should pass.*", ""]
    if assignment.instructions:
        lines += [assignment.instructions, ""]
    lines += ["## What to implement", "",
              *_wrapped("Each of these functions raises `NotImplementedError(\"implement "
                        "<name>\")` until you write its body (the docstring above it has the "
                        "formula and the shapes):"), ""]
    for path, names in made.functions.items():
        lines += _wrapped(f"- `{path}`: " + ", ".join(f"`{name}`" for name in names), "  ")
    lines += ["", "## How to check", "",
              "From this folder (`import cnnlite` here imports your copy, in `cnnlite/`):", "",
              "    cnnlite assignment check .", "",
              *_wrapped("It runs these checks on your code and prints, for each, `passed` or "
                        "what is wrong (the worst element, its index, what was expected, how "
                        "many are off):"), ""]
    lines += [f"- {check.label}" for check in assignment.checks]
    lines += ["", "The exit status is 0 when every check passes.", "", "## How it is graded", ""]
    lines += _grading_note(assignment, recorded_from) + [""]
    return "\n".join(lines)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def make_assignment(source, out, *, force: bool = False, solution: bool = False) -> Made:
    """Make the student version of ``source`` in folder ``out``.

    Parameters
    ----------
    source : str or Path
        A shipped assignment's name (``"layers"``, ``"autograd"``; see
        ``shipped_assignments()``) or an assignment file of one's own (``.toml``, the same
        keys, a name no shipped assignment has), or the path of a ``.py`` file, a ``.ipynb``
        notebook or a folder. A name wins over a folder of the same name: write ``./layers``
        for the folder.
    out : str or Path
        The folder to write; it must be empty or new unless ``force``.
    force : bool
        Write into a non-empty ``out`` (a shipped assignment's ``cnnlite/`` copy is replaced).
    solution : bool
        Copy without stubbing (notebooks still lose their outputs): the version that passes.

    Returns
    -------
    Made
        The folder and, per stubbed file, its regions.
    """
    out = Path(out)
    shipped = str(source) in shipped_assignments()
    if shipped or str(source).endswith(".toml"):
        assignment = load_assignment(source)
        if not shipped and assignment.name in shipped_assignments():
            raise AssignmentError(f"{source}: name {assignment.name!r} is a shipped "
                                  f"assignment's; the grader would grade the folder as that "
                                  f"one: choose another name")
        package = Path(cnnlite.__file__).resolve().parent
        if _inside(out.resolve(), package):
            raise AssignmentError(f"--out {out} lies inside the package it copies ({package})")
        texts, regions = _package_files(assignment, package, stub=not solution)
        made = Made(out, regions)
        _prepare_out(out, force)
        copy_package(package, out / "cnnlite")
        _write_all(out, texts)
        (out / ASSIGNMENT_FILE).write_text(assignment.text, encoding="utf-8")
        readme = student_readme(assignment, made, solution,
                                None if shipped else Path(source).name)
        (out / "README.md").write_text(readme, encoding="utf-8")
        return made
    path = Path(source)
    if not path.exists():
        raise AssignmentError(f"no assignment or file {str(source)!r} (the shipped "
                              f"assignments: {', '.join(shipped_assignments())})")
    if path.is_dir() and _inside(out.resolve(), path.resolve()):
        raise AssignmentError(f"--out {out} lies inside the folder it copies ({path})")
    texts, regions = _source_files(path, stub=not solution)
    _prepare_out(out, force)
    if path.is_dir():
        shutil.copytree(path, out, ignore=shutil.ignore_patterns(*_SKIPPED), dirs_exist_ok=True)
    _write_all(out, texts)
    return Made(out, regions)

