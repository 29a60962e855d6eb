"""Solution regions: the marked code a student version leaves out.

A region is a run of lines between two marker comments, each alone on its line, at the
indentation of the code they enclose (course staff know the convention from nbgrader)::

    def max_pool2d_backward(gy, argmax, input_size):
        contracts.max_pool2d_backward(gy, argmax, input_size)
        # BEGIN SOLUTION
        ...the loops...
        return gx
        # END SOLUTION

``### BEGIN SOLUTION`` (any number of ``#``) is accepted too. The student version replaces the
region, markers included, with one line at the marker's indentation::

        raise NotImplementedError("implement max_pool2d_backward")

naming the enclosing ``def`` (``Class.method`` for a method), so every stubbed function says what
to implement. Only real comments are markers: a marker inside a string (a docstring that shows
the convention, as this one does) is text. Regions do not nest; a marker out of place is an
error that names the file (or notebook cell) and the line.

Notebooks are JSON: each code cell's source is a small Python file of its own (IPython's
``%magic`` and ``!shell`` lines are read as ``pass``); the student version also loses every
output, so no answer is left in a printed result.
"""
from __future__ import annotations

import ast
import copy
import io
import re
import tokenize
from dataclasses import dataclass

from cnnlite.errors import OpError

__all__ = ["RegionError", "Region", "find_regions", "stub_source", "stub_notebook",
           "notebook_sources"]

_MARKER = re.compile(r"#+\s*(BEGIN|END) SOLUTION\s*$")


class RegionError(OpError):
    """A marker out of place (nested, unbalanced), or a student version that no longer parses.

    The message starts with the place: ``path, line N`` or ``path, cell K, line N``.
    """


@dataclass(frozen=True)
class Region:
    """One solution region: 1-based line numbers of its two markers, the indentation of the
    ``BEGIN`` marker, and the enclosing function (``"Class.method"``; the class for a region
    in a class body; ``""`` at module level)."""

    begin: int
    end: int
    indent: str
    function: str

    def stub(self, fallback: str, raising: str | None = None) -> str:
        """The line that replaces the region (``fallback`` names the place when no ``def``
        encloses it); ``raising``, an exception expression, replaces the usual
        ``NotImplementedError("implement <function>")``."""
        if raising is None:
            raising = f'NotImplementedError("implement {self.function or fallback}")'
        return f"{self.indent}raise {raising}"


def _markers_by_tokens(source: str):
    """(line, kind) of every marker comment: the first token on its line and nothing after."""
    lines = source.splitlines()
    markers = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        row, column = token.start
        if lines[row - 1][:column].strip():
            continue  # a trailing comment after code is not a marker
        match = _MARKER.match(token.string)
        if match:
            markers.append((row, match.group(1)))
    return markers


def _markers_by_lines(source: str):
    """The same, line by line: for text the tokenizer refuses (unclosed brackets or strings,
    which the parse check then reports with their line)."""
    return [(row, match.group(1))
            for row, line in enumerate(source.splitlines(), start=1)
            if (match := _MARKER.match(line.strip()))]


def python_view(source: str, notebook: bool) -> str:
    """``source`` as plain Python: in a notebook cell, IPython's ``%magic`` and ``!command``
    lines become ``pass`` at their indentation (line numbers are kept)."""
    if not notebook:
        return source
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[:len(line) - len(stripped)] + "pass"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _enclosing_names(tree: ast.AST):
    """(first line, last line, dotted name) of every def and class, outermost first."""
    scopes = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                scopes.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return scopes


def _parse(source: str, where: str, what: str) -> ast.AST:
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise RegionError(f"{where}, line {error.lineno}: {what} does not parse: "
                          f"{error.msg}") from None


def find_regions(source: str, where: str = "<source>", *, notebook: bool = False) -> list[Region]:
    """Every solution region of ``source`` (Python text), in order.

    ``where`` names the source in errors (a path, or ``"path, cell K"``); ``notebook=True``
    reads IPython's magic and shell lines as ``pass``. Raises ``RegionError`` for a marker
    out of place, and for source that does not parse when it has regions.
    """
    view = python_view(source, notebook)
    try:
        markers = _markers_by_tokens(view)
    except (tokenize.TokenError, SyntaxError):
        markers = _markers_by_lines(view)
    spans = []
    open_at = None
    for row, kind in markers:
        if kind == "BEGIN":
            if open_at is not None:
                raise RegionError(f"{where}, line {row}: BEGIN SOLUTION inside the region opened "
                                  f"at line {open_at}; regions do not nest (close it first)")
            open_at = row
        else:
            if open_at is None:
                raise RegionError(f"{where}, line {row}: END SOLUTION without a BEGIN SOLUTION "
                                  f"before it")
            spans.append((open_at, row))
            open_at = None
    if open_at is not None:
        raise RegionError(f"{where}, line {open_at}: BEGIN SOLUTION is never closed (no "
                          f"END SOLUTION after it)")
    if not spans:
        return []
    scopes = _enclosing_names(_parse(view, where, "the source"))
    lines = view.splitlines()
    regions = []
    for begin, end in spans:
        inside = [name for first, last, name in scopes if first < begin <= last]
        marker_line = lines[begin - 1]
        indent = marker_line[:len(marker_line) - len(marker_line.lstrip())]
        regions.append(Region(begin, end, indent, inside[-1] if inside else ""))
    return regions


def stub_source(source: str, where: str = "<source>", *, fallback: str = "this part",
                notebook: bool = False, raising: str | None = None) -> tuple[str, list[Region]]:
    """The student version of ``source``: every region replaced by its ``raise
    NotImplementedError("implement <function>")`` line. Returns (text, regions).

    ``fallback`` names a region outside any def; ``raising`` (Python source of an exception,
    such as ``'SyntaxError("...")'``) is raised by every stub instead. The result is parsed
    again: a region whose removal breaks the code (markers at the wrong indentation) is a
    ``RegionError`` at the region's line.
    """
    regions = find_regions(source, where, notebook=notebook)
    if not regions:
        return source, regions
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines[0].endswith("\r\n") else "\n"
    pieces, taken = [], 0
    for region in regions:
        pieces += lines[taken:region.begin - 1]
        pieces.append(region.stub(fallback, raising) + newline)
        taken = region.end
    pieces += lines[taken:]
    stubbed = "".join(pieces)
    try:
        ast.parse(python_view(stubbed, notebook))
    except SyntaxError as error:
        raise RegionError(f"{where}, line {_original_line(error.lineno, regions)}: the student "
                          f"version does not parse ({error.msg}); are the markers of the region "
                          f"at line {_nearest_region(error.lineno, regions).begin} at the "
                          f"indentation of the code they enclose?") from None
    return stubbed, regions


def _original_line(stubbed_line: int, regions: list[Region]) -> int:
    """The line of ``source`` that line ``stubbed_line`` of the student version came from (a
    stub line maps to its region's BEGIN marker)."""
    shift = 0
    for region in regions:
        stub_line = region.begin - shift
        if stubbed_line < stub_line:
            break
        if stubbed_line == stub_line:
            return region.begin
        shift += region.end - region.begin
    return stubbed_line + shift


def _nearest_region(stubbed_line: int, regions: list[Region]) -> Region:
    """The last region that starts at or before ``stubbed_line`` (the first one otherwise)."""
    original = _original_line(stubbed_line, regions)
    before = [region for region in regions if region.begin <= original]
    return before[-1] if before else regions[0]


def notebook_sources(notebook: dict):
    """(cell number from 1, source text) of every code cell of a notebook (nbformat 4 JSON)."""
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            yield number, source if isinstance(source, str) else "".join(source)


def stub_notebook(notebook: dict, where: str = "<notebook>", *,
                  stub: bool = True) -> tuple[dict, dict[int, list[Region]]]:
    """The student version of a notebook (nbformat 4 JSON, as a dict): regions stubbed in every
    code cell (unless ``stub=False``) and every output and execution count cleared.

    Returns (new notebook, {cell number: its regions}); the argument is not changed. A cell run
    by a cell magic (``%%bash``...) is not Python and is left as it is.
    """
    student = copy.deepcopy(notebook)
    found = {}
    for number, source in notebook_sources(notebook):
        cell = student["cells"][number - 1]
        cell["outputs"] = []
        cell["execution_count"] = None
        if not stub or source.lstrip().startswith("%%"):
            continue
        text, regions = stub_source(source, f"{where}, cell {number}", fallback="this cell",
                                    notebook=True)
        if regions:
            found[number] = regions
            cell["source"] = text.splitlines(keepends=True)
    return student, found
