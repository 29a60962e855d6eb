"""``cnnlite assignment check DIR``: grade a student's folder with the checks of the op table.

The grader trusts only the files the student is meant to write. It builds a grading folder
(``cnnlite.assignment.grading``): a fresh copy of its own cnnlite with the assignment's files
(``reference/pool.py``, ...) taken from ``DIR``; the checks are the assignment's as shipped
with cnnlite, whatever ``DIR``'s copies of the op table, the grader or ``assignment.toml`` say
(an assignment of one's own: as ``DIR`` recorded it when it was made, or the instructor's file).

The student's code never runs in the grader's process. A worker process,

    python -m cnnlite.assignment.check --worker SPEC_JSON   (cwd GRADING, PYTHONPATH=GRADING:...)

imports ``cnnlite`` from the grading folder, runs each check through
``cnnlite.optable.check_op`` and prints one JSON line per result. The grader reads them
with a clock per check: a check that gives no result in time (an endless loop) is reported as
"timed out", the worker is stopped and a fresh one runs the checks that are left; a worker
that dies (a crash, ``sys.exit`` in the student's code) costs only the check it was running.

The report names the files graded and where the checks came from, then has one line per
check, its status and, when it failed, the worst element::

    graded:  cnnlite/reference/conv.py, cnnlite/reference/pool.py, cnnlite/reference/norm.py
             (only these files of hw1; the rest of cnnlite is the grader's own)
    checks:  assignment layers, shipped with cnnlite

    conv2d (direct loops)     passed
    max_pool2d (loops)        wrong gradient: input 0, element (0, 1, 2, 3): got 0.0,
                              expected 1.3 (12 of 72 elements off)
    batch_norm (loops)        not implemented: implement batch_norm_backward

    1 of 3 checks passed; to fix: max_pool2d (loops), batch_norm (loops)
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from cnnlite.assignment.grading import build_grading_folder, graded_assignment
from cnnlite.assignment.make import AssignmentError, Check

__all__ = ["STATUSES", "Outcome", "Report", "check_assignment", "run_worker"]

PASSED, NOT_IMPLEMENTED, ERROR, TIMED_OUT = "passed", "not implemented", "error", "timed out"
#: What a check can report: the op table's statuses, and "timed out" from the grader's clock.
STATUSES = (PASSED, "wrong values", "wrong gradient", NOT_IMPLEMENTED, ERROR, TIMED_OUT)
#: Seconds a worker may take to start and import the student's cnnlite.
STARTUP_TIMEOUT = 120.0
#: Every line the worker means for the grader starts with this; anything else a student's
#: code prints is not a result.
_PREFIX = "cnnlite-assignment-worker "
_REPORT_WIDTH = 96
_HEADER_COLUMN = 9


@dataclass
class Outcome:
    """One check's result: the check, a status of ``STATUSES``, one line of detail (the worst
    element, its index, got and expected) and that index (or None)."""

    check: Check
    status: str
    detail: str = ""
    index: tuple | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASSED


@dataclass
class Report:
    """The outcomes of an assignment's checks, in the file's order; ``files`` are the student's
    files that were graded (paths in the folder), ``folder`` the folder and ``checks_from``
    where the checks came from."""

    assignment: str
    outcomes: list[Outcome] = field(default_factory=list)
    files: tuple[str, ...] = ()
    folder: str = ""
    checks_from: str = ""

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)

    @property
    def exit_status(self) -> int:
        """0 when every check passed, 1 otherwise."""
        return 0 if self.passed else 1

    def _header(self, width: int) -> list[str]:
        """What was graded: the student's files, then where the checks came from."""
        def entry(name, text):
            return textwrap.wrap(text, width, initial_indent=f"{name}:".ljust(_HEADER_COLUMN),
                                 subsequent_indent=" " * _HEADER_COLUMN)

        scope = (f"(only these files of {self.folder or 'the folder'}; the rest of cnnlite is "
                 f"the grader's own)")
        return (entry("graded", ", ".join(self.files))
                + textwrap.wrap(scope, width, initial_indent=" " * _HEADER_COLUMN,
                                subsequent_indent=" " * _HEADER_COLUMN)
                + entry("checks", f"assignment {self.assignment}"
                                  + (f", {self.checks_from}" if self.checks_from else ""))
                + [""])

    def format(self, width: int = _REPORT_WIDTH) -> str:
        """The report as the command prints it: what was graded (when ``files`` are known),
        a line per check, wrapped under its status column, then the summary."""
        column = max(len(outcome.check.label) for outcome in self.outcomes) + 4
        lines = self._header(width) if self.files else []
        for outcome in self.outcomes:
            text = outcome.status + (f": {outcome.detail}" if outcome.detail else "")
            wrapped = textwrap.wrap(text, max(width - column, 30)) or [""]
            lines.append(outcome.check.label.ljust(column) + wrapped[0])
            lines += [" " * column + piece for piece in wrapped[1:]]
        failed = [outcome.check.label for outcome in self.outcomes if not outcome.passed]
        passed = len(self.outcomes) - len(failed)
        summary = (f"all {passed} checks passed" if not failed else
                   f"{passed} of {len(self.outcomes)} checks passed; to fix: "
                   + ", ".join(failed))
        return "\n".join(lines + [""] + textwrap.wrap(summary, width, subsequent_indent="  "))


# --- the worker: runs in the grading folder --------------------------------------------------

def _emit(channel, message: dict) -> None:
    channel.write(_PREFIX + json.dumps(message) + "\n")
    channel.flush()


def _where_it_failed(error: BaseException) -> str:
    """`` (at cnnlite/reference/pool.py:72 in max_pool2d_backward)``: the innermost frame of
    the traceback inside the cnnlite package, which is the student's file when the student's
    code raised."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if f"{os.sep}cnnlite{os.sep}" in frame.filename]
    if not frames:
        return ""
    frame = frames[-1]
    path = frame.filename[frame.filename.rindex(f"{os.sep}cnnlite{os.sep}") + 1:]
    return f" (at {path}:{frame.lineno} in {frame.name})"


def _run_one(optable, check: dict, dtype: str, seed: int) -> dict:
    """The op table's result for one check, as a JSON-able dict with status/detail/index."""
    try:
        result = optable.check_op(check["op"], check["implementation"], dtype=dtype,
                                  seed=seed).to_dict()
    except NotImplementedError as error:
        return {"status": NOT_IMPLEMENTED, "detail": str(error), "index": None}
    except Exception as error:  # a grader reports a crash as a result, and goes on
        return {"status": ERROR, "detail": f"{type(error).__name__}: {error}"
                                           f"{_where_it_failed(error)}", "index": None}
    return {"status": result["status"], "detail": result.get("detail") or "",
            "index": result.get("index")}


def run_worker(spec: dict) -> None:
    """The worker's side: import cnnlite (the grading folder's, first on the path), say where
    it came from, then run ``spec["checks"]`` one by one, a result line each.

    The student's ``print`` goes to stderr meanwhile, so that stdout carries only results.
    """
    results = sys.stdout
    sys.stdout = sys.stderr
    try:
        import cnnlite
        from cnnlite import optable
    except Exception as error:
        _emit(results, {"fatal": f"import failed: {type(error).__name__}: {error}"
                                 f"{_where_it_failed(error)}"})
        return
    _emit(results, {"ready": str(Path(cnnlite.__file__).resolve().parent)})
    for check in spec["checks"]:
        _emit(results, {"result": _run_one(optable, check, spec["dtype"], spec["seed"])})


# --- the grader: starts workers and reads their lines ----------------------------------------

class _Worker:
    """One worker process on a list of checks, in the grading folder; ``next_message(timeout)``
    is its next line as a dict, None when it has ended, or raises ``TimeoutError``."""

    def __init__(self, folder: Path, checks: list[Check], dtype: str, seed: int):
        spec = {"checks": [{"op": c.op, "implementation": c.implementation} for c in checks],
                "dtype": dtype, "seed": seed}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(folder)] + ([env["PYTHONPATH"]]
                                                              if env.get("PYTHONPATH") else []))
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        # cwd = the folder too: ``python -m`` puts the working directory first on sys.path.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnlite.assignment.check", "--worker", json.dumps(spec)],
            cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, encoding="utf-8", errors="replace")
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith(_PREFIX):
                self.lines.put(json.loads(line[len(_PREFIX):]))
        self.lines.put(None)

    def next_message(self, timeout: float):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None

    def how_it_ended(self) -> str:
        """Why the worker stopped early: its exit status, the last line of its stderr (the
        error) and the last place a traceback there names (``cnnlite/...py, line N``)."""
        status = self.process.wait()
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        places = [line for line in lines if line.startswith('File "')]
        place = ""
        if places:
            path, _, rest = places[-1][len('File "'):].partition('"')
            if f"{os.sep}cnnlite{os.sep}" in path:
                path = path[path.rindex(f"{os.sep}cnnlite{os.sep}") + 1:]
            place = f" ({path}{','.join(rest.split(',')[:2])})"
        return (f"the checking process ended with exit status {status}"
                + (f": {lines[-1]}{place}" if lines else ""))

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        # The pipe is closed only once the reader has seen its end (a process the student's
        # code started may still hold it open: then it is left to the garbage collector).
        self.reader.join(timeout=5)
        if not self.reader.is_alive():
            self.process.stdout.close()
        self.stderr.close()


def _outcome(check: Check, result: dict) -> Outcome:
    index = result.get("index")
    return Outcome(check, result["status"], result.get("detail") or "",
                   tuple(index) if index is not None else None)


def _run_checks(folder: Path, checks: list[Check], dtype: str, seed: int,
                timeout: float) -> list[Outcome]:
    outcomes = []
    pending = list(checks)
    while pending:
        worker = _Worker(folder, pending, dtype, seed)
        try:
            try:
                first = worker.next_message(STARTUP_TIMEOUT)
            except TimeoutError:
                first = {"fatal": f"importing cnnlite took over {STARTUP_TIMEOUT:.0f} s"}
            if first is None or "fatal" in first:
                why = first["fatal"] if first else worker.how_it_ended()
                return outcomes + [Outcome(check, ERROR, why) for check in pending]
            if Path(first["ready"]) != (folder / "cnnlite").resolve():
                raise AssignmentError(f"{folder}: the checks imported cnnlite from "
                                      f"{first['ready']}, not from {folder / 'cnnlite'}")
            while pending:
                check = pending.pop(0)
                started = time.monotonic()
                try:
                    message = worker.next_message(timeout)
                except TimeoutError:
                    outcomes.append(Outcome(check, TIMED_OUT, f"no result after "
                                            f"{time.monotonic() - started:.0f} s (an endless "
                                            f"loop?)"))
                    break
                if message is None:
                    outcomes.append(Outcome(check, ERROR, worker.how_it_ended()))
                    break
                outcomes.append(_outcome(check, message["result"]))
        finally:
            worker.close()
    return outcomes


def check_assignment(folder, timeout: float | None = None, *, assignment=None,
                     checks=None) -> Report:
    """Grade the student's files of ``folder`` with its assignment's checks, in a grading folder
    made of the grader's own cnnlite and only those files (``cnnlite.assignment.grading``).

    Parameters
    ----------
    folder : str or Path
        A folder made by ``cnnlite assignment make`` (and edited by the student).
    timeout : float, optional
        Seconds one check may run (default: the assignment's ``timeout``).
    assignment : str, Path or Assignment, optional
        Grade as this assignment (a shipped name, the instructor's TOML file, or a parsed one)
        rather than the one ``folder/assignment.toml`` names; a folder made for another is an
        ``AssignmentError``.
    checks : sequence of Check, optional
        Run these checks of the op table instead of the assignment's (for course tools and
        tests; the command line has no such option).

    Returns
    -------
    Report
        One ``Outcome`` per check, the files graded and where the checks came from;
        ``report.format()`` is the text the command prints.
    """
    folder = Path(folder).resolve()
    graded = graded_assignment(folder, assignment)
    if not (folder / "cnnlite").is_dir():
        raise AssignmentError(f"{folder} has no cnnlite/ folder with the files to check "
                              f"(expected {folder / 'cnnlite'})")
    if timeout is not None and not timeout > 0:
        raise AssignmentError(f"--timeout must be a number of seconds > 0, got {timeout}")
    spec = graded.assignment
    checks = list(spec.checks if checks is None else checks)
    # ignore_cleanup_errors: a process the student's code started may still hold a file open.
    with tempfile.TemporaryDirectory(prefix="cnnlite-grading-",
                                     ignore_cleanup_errors=True) as grading:
        build_grading_folder(spec, folder, grading)
        outcomes = _run_checks(Path(grading).resolve(), checks, spec.dtype, spec.seed,
                               spec.timeout if timeout is None else timeout)
    return Report(spec.name, outcomes, tuple(f"cnnlite/{name}" for name in spec.files),
                  str(folder), graded.checks_from)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--worker"] or len(sys.argv) != 3:
        sys.exit("usage: python -m cnnlite.assignment.check --worker SPEC_JSON (the grader "
                 "starts it; run `cnnlite assignment check DIR` instead)")
    run_worker(json.loads(sys.argv[2]))
