"""The ``cnnlite assignment`` command: make a student version, check a student's folder.

    cnnlite assignment make layers --out hw1            # a shipped assignment (or: autograd)
    cnnlite assignment make lab.ipynb --out student/    # a notebook, a .py file or a folder
    cnnlite assignment make layers --out key --solution # nothing stubbed: the version that passes
    cnnlite assignment check hw1                        # a line per check; exit 0 if all pass
    cnnlite assignment check hw1 --assignment layers    # refuse a folder made for another one

``check`` grades only the assignment's files of the folder, with the grader's own cnnlite and
the assignment's checks as shipped (``cnnlite.assignment.grading``).

Errors (a file without regions, a marker out of place, a non-empty ``--out``) are
``OpError``s with one line that names the file and the line; ``cnnlite`` prints them as
``cnnlite assignment: error: ...`` with exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from cnnlite.assignment.check import check_assignment
from cnnlite.assignment.make import make_assignment, shipped_assignments
from cnnlite.errors import OpError

__all__ = ["add_assignment_commands", "add_actions", "run_assignment_command", "main"]


def add_assignment_commands(commands) -> None:
    """Add ``assignment make`` and ``assignment check`` to the ``cnnlite`` parser's
    sub-commands."""
    assignment = commands.add_parser("assignment", help="make a course assignment from cnnlite's "
                                                        "code, or check a student's folder")
    add_actions(assignment)


def add_actions(parser: argparse.ArgumentParser) -> None:
    """The ``make`` and ``check`` actions, with their options, on ``parser``."""
    actions = parser.add_subparsers(dest="assignment_command", metavar="ACTION", required=True)
    make = actions.add_parser("make", help="write the student version: solution regions "
                                           "replaced by raise NotImplementedError")
    make.add_argument("source", metavar="SRC",
                      help=f"a shipped assignment ({', '.join(shipped_assignments())}), or a "
                           f".py file, a .ipynb notebook or a folder")
    make.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    make.add_argument("--force", action="store_true",
                      help="write into a non-empty DIR (its cnnlite/ copy is replaced)")
    make.add_argument("--solution", action="store_true",
                      help="stub nothing: the version every check passes (for instructors)")
    check = actions.add_parser("check", help="run the assignment's checks against a student's "
                                             "folder; exit status 0 when all pass")
    check.add_argument("folder", metavar="DIR", help="a folder made by `assignment make`")
    check.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="seconds one check may run (default: the assignment's own)")
    check.add_argument("--assignment", default=None, metavar="NAME|FILE",
                       help="grade as this assignment (a shipped name, or the .toml file an "
                            "assignment of one's own was made from) instead of trusting the "
                            "name and, for one's own, the checks in DIR/assignment.toml")


def _made_summary(made) -> str:
    functions = made.functions
    count = sum(len(names) for names in functions.values())
    lines = [f"wrote {made.out}: {count} function(s) to implement in {len(functions)} file(s)"]
    lines += [f"  {path}: {', '.join(names)}" for path, names in functions.items()]
    return "\n".join(lines)


def run_assignment_command(args: argparse.Namespace) -> int:
    """Do what ``cnnlite assignment ...`` was asked; returns the exit status (``check``: 0 when
    every check passed, 1 otherwise). Errors are ``OpError``s, one line each."""
    if args.assignment_command == "make":
        made = make_assignment(args.source, args.out, force=args.force, solution=args.solution)
        print(_made_summary(made))
        return 0
    report = check_assignment(args.folder, timeout=args.timeout, assignment=args.assignment)
    print(report.format())
    return report.exit_status


def main(argv=None) -> int:
    """``python -m cnnlite.assignment.cli make|check ...``: the same command on its own."""
    parser = argparse.ArgumentParser(prog="cnnlite assignment")
    add_actions(parser)
    args = parser.parse_args(argv)
    try:
        return run_assignment_command(args)
    except (OpError, OSError) as error:
        print(f"cnnlite assignment: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
