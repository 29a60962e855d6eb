"""Course assignments made from cnnlite itself, and their grader.

The readable implementations in the package carry solution regions (``# BEGIN SOLUTION`` /
``# END SOLUTION``, ``cnnlite.assignment.regions``). ``make_assignment`` turns a shipped
assignment (``assignments/*.toml``: the files whose regions make it, and the checks that grade
it) into a student's folder, a copy of the package with those regions replaced by
``raise NotImplementedError("implement <function>")``; it also stubs a single file, a notebook
or a folder. ``check_assignment`` grades such a folder in a separate process with the checks of
the op table (``cnnlite.optable``), trusting only the assignment's files in it: they are copied
into a fresh copy of the grader's own package (``cnnlite.assignment.grading``), and the checks
are the shipped ones. On the command line::

    cnnlite assignment make layers --out hw1        # the student's folder
    cnnlite assignment check hw1                    # a line per check; exit status 0 if all pass
"""
from cnnlite.assignment.make import (Assignment, AssignmentError, Check, Made, load_assignment,
                                     make_assignment, parse_assignment, shipped_assignments)
from cnnlite.assignment.regions import (Region, RegionError, find_regions, stub_notebook,
                                        stub_source)

__all__ = ["Assignment", "AssignmentError", "Check", "Made", "Outcome", "Region", "RegionError",
           "Report", "check_assignment", "find_regions", "load_assignment", "make_assignment",
           "parse_assignment", "shipped_assignments", "stub_notebook", "stub_source"]


def __getattr__(name):
    """The grader's names, imported on first use: the grader's worker runs
    ``cnnlite.assignment.check`` as ``__main__``, and Python warns when a package has already
    imported the module it is asked to run."""
    if name in ("Outcome", "Report", "check_assignment"):
        from cnnlite.assignment import check
        return getattr(check, name)
    raise AttributeError(f"module 'cnnlite.assignment' has no attribute {name!r}")
