"""The grading folder: the grader's own cnnlite with only the student's assignment files in it.

A student's folder (``cnnlite assignment make``) holds a whole copy of cnnlite, the op table
and the grader included, and an ``assignment.toml``: all of it editable. So the grader reads
from it only what the student is meant to write::

    GRADING/cnnlite/    a copy of the grader's installed package (no ``__pycache__``), over
                        which the assignment's files (``reference/pool.py``, ...) are copied
                        from DIR/cnnlite/

and the checks run there. Which checks: ``DIR/assignment.toml`` only names the assignment. A
shipped name is graded by the shipped definition (files, checks, dtype, seed, timeout); the
rest of DIR's file is not read. Any other name is an assignment made from a TOML file of one's
own (``make`` refuses one with a shipped name), graded as DIR's file recorded it: the grader
cannot tell whether a student edited that, so an instructor passes the file itself
(``check_assignment(DIR, assignment="mine.toml")``, ``--assignment mine.toml``), which also
pins a shipped assignment (a folder whose file names another one is refused).

A file of the assignment that DIR lacks, or that does not compile, must neither crash the
grader nor leave the grader's own solution in its place: it becomes the grader's file with
every solution region raising why (``FileNotFoundError``, ``SyntaxError`` with its file and
line), so each check that calls one of its functions reports that error, and the others run.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from cnnlite.assignment.make import (ASSIGNMENT_FILE, Assignment, AssignmentError,
                                     copy_package, load_assignment, parse_assignment,
                                     shipped_assignments)
from cnnlite.assignment.regions import stub_source

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

__all__ = ["GRADER_PACKAGE", "Graded", "graded_assignment", "build_grading_folder"]

#: The package the grader itself is imported from: the trusted copy of cnnlite.
GRADER_PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Graded:
    """The assignment a folder is graded as, and where its checks came from (for the report:
    ``"shipped with cnnlite"``, or the file they were read from)."""

    assignment: Assignment
    checks_from: str


def _recorded_name(folder: Path) -> str:
    """The assignment name DIR's ``assignment.toml`` gives (the only key read from it for a
    shipped assignment)."""
    spec_file = folder / ASSIGNMENT_FILE
    if not spec_file.is_file():
        raise AssignmentError(f"{folder} has no {ASSIGNMENT_FILE}: is it a folder made by "
                              f"`cnnlite assignment make NAME --out DIR`?")
    try:
        name = tomllib.loads(spec_file.read_text(encoding="utf-8")).get("name")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise AssignmentError(f"{spec_file}: not valid TOML ({error}), so it does not say "
                              f"which assignment the folder is") from None
    if not isinstance(name, str) or not name.strip():
        raise AssignmentError(f"{spec_file}: no name, so it does not say which assignment the "
                              f"folder is")
    return name.strip()


def graded_assignment(folder, pinned=None) -> Graded:
    """The assignment ``folder`` is graded as, and where its checks came from.

    Parameters
    ----------
    folder : str or Path
        A student's folder.
    pinned : str, Path or Assignment, optional
        The assignment to grade as (a shipped name, an assignment file, or a parsed one)
        instead of the one DIR's ``assignment.toml`` names; a folder made for another
        assignment is an ``AssignmentError``.
    """
    folder = Path(folder)
    name = _recorded_name(folder)
    if pinned is not None:
        assignment = pinned if isinstance(pinned, Assignment) else load_assignment(pinned)
        if assignment.name != name:
            raise AssignmentError(f"{folder / ASSIGNMENT_FILE} names the assignment {name!r}, "
                                  f"not {assignment.name!r}, which it is to be graded as")
        shipped = not isinstance(pinned, Assignment) and str(pinned) in shipped_assignments()
        origin = "as given to the grader" if isinstance(pinned, Assignment) else str(pinned)
        return Graded(assignment, "shipped with cnnlite" if shipped else origin)
    if name in shipped_assignments():
        return Graded(load_assignment(name), "shipped with cnnlite")
    spec_file = folder / ASSIGNMENT_FILE
    return Graded(parse_assignment(spec_file.read_text(encoding="utf-8"), str(spec_file)),
                  f"{spec_file}, as recorded when the folder was made")


def _why_unusable(path: Path, label: str):
    """(exception, message) when the student's file cannot stand in for the grader's: missing,
    not a plain file, not UTF-8 or not compiling; None when it can."""
    if path.is_symlink() or not path.is_file():
        what = ("is not a plain file in" if path.exists() or path.is_symlink()
                else "is missing from")
        return "FileNotFoundError", f"{label} {what} the student's folder"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        return "SyntaxError", f"{label} is not UTF-8 text ({error.reason} at byte {error.start})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the student's warnings are not the grader's
            compile(text, label, "exec", dont_inherit=True)
    except SyntaxError as error:
        where = f", line {error.lineno}" if error.lineno else ""
        return "SyntaxError", f"{error.msg} ({label}{where})"
    except ValueError as error:  # null bytes, before Python 3.12
        return "SyntaxError", f"{error} ({label})"
    return None


def build_grading_folder(assignment: Assignment, student_folder, grading_folder) -> None:
    """Write ``grading_folder/cnnlite``: the grader's package with ``assignment.files`` taken
    from ``student_folder/cnnlite`` (a file that is missing or does not compile: the grader's
    file with every solution region raising why)."""
    student_folder, grading_folder = Path(student_folder), Path(grading_folder)
    package = grading_folder / "cnnlite"
    copy_package(GRADER_PACKAGE, package)
    for name in assignment.files:
        label = f"cnnlite/{name}"
        target = package / name
        if not target.is_file():
            raise AssignmentError(f"assignment {assignment.name}: {label} does not exist in "
                                  f"the grader's package ({GRADER_PACKAGE})")
        student_file = student_folder / "cnnlite" / name
        unusable = _why_unusable(student_file, label)
        if unusable is None:
            target.write_bytes(student_file.read_bytes())
            continue
        exception, message = unusable
        stand_in, regions = stub_source(target.read_text(encoding="utf-8"), label,
                                        fallback=target.name, raising=f"{exception}({message!r})")
        if not regions:  # the grader's file as it is would be the solution
            raise AssignmentError(f"assignment {assignment.name}: {label} has no solution "
                                  f"region in the grader's package ({GRADER_PACKAGE})")
        target.write_text(stand_in, encoding="utf-8")
