"""The ``cnnlite sweep`` command: run a sweep file, report a database.

    cnnlite sweep run SWEEP.toml [--db results.sqlite] [--workers N | --scheduler tcp://HOST:PORT]
    cnnlite sweep report results.sqlite [--sweep NAME] [--out reports/]
    cnnlite sweep runs SWEEP.toml      # the runs a file makes, with their ids; trains nothing

``run`` again on the same database skips the runs that are done and repeats the others.
"""
from __future__ import annotations

import argparse
from importlib import resources

from cnnlite.experiments.report import report
from cnnlite.experiments.runner import CONNECT_TIMEOUT, run_sweep
from cnnlite.experiments.sweep import load_sweep

__all__ = ["add_sweep_commands", "run_sweep_command", "shipped_sweeps"]


def shipped_sweeps() -> list[str]:
    """The paper's ablations that come with cnnlite, as paths to their sweep files."""
    folder = resources.files("cnnlite.experiments") / "sweeps"
    return sorted(str(entry) for entry in folder.iterdir() if entry.name.endswith(".toml"))


def add_sweep_commands(commands) -> None:
    """Add ``sweep run``, ``sweep report`` and ``sweep runs`` to the ``cnnlite`` parser's
    sub-commands."""
    sweep = commands.add_parser("sweep", help="run a sweep of training runs (one change at a "
                                              "time) and report it")
    actions = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="train every run of a sweep file not yet done")
    run.add_argument("sweep_file", metavar="SWEEP.toml",
                     help=f"a sweep file; cnnlite's own: {', '.join(shipped_sweeps())}")
    run.add_argument("--db", default="sweeps.sqlite",
                     help="the SQLite results file (default: %(default)s)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0,
                       help="run on a Dask LocalCluster of N processes (default: in this "
                            "process)")
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="run on the workers of an existing Dask cluster")
    run.add_argument("--threads", type=int, default=None,
                     help="BLAS and numba threads per run (default: cores / workers)")
    run.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT,
                     help="seconds to wait for --scheduler (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    show = actions.add_parser("report", help="the table of each sweep in a database, bar "
                                             "charts and learning curves")
    show.add_argument("db", metavar="DB", help="the SQLite results file")
    show.add_argument("--sweep", action="append", default=None,
                      help="only this sweep (repeatable; default: all)")
    show.add_argument("--out", default=None, help="folder for the PNG charts (default: none)")
    runs = actions.add_parser("runs", help="list the runs a sweep file makes (trains nothing)")
    runs.add_argument("sweep_file", metavar="SWEEP.toml")


def _run_list(path) -> str:
    sweep = load_sweep(path)
    lines = [f"{sweep.name}: {len(sweep.runs)} runs"]
    lines += [f"{run.run_id}  {run.group:<16} {run.variant:<28} seed {run.seed}"
              for run in sweep.runs]
    return "\n".join(lines)


def run_sweep_command(args: argparse.Namespace) -> None:
    """Do what ``cnnlite sweep ...`` was asked (errors are ``OpError``s, one line each)."""
    if args.sweep_command == "run":
        run_sweep(load_sweep(args.sweep_file), args.db, workers=args.workers,
                  scheduler=args.scheduler, progress=not args.no_progress,
                  threads=args.threads, connect_timeout=args.connect_timeout)
    elif args.sweep_command == "report":
        print(report(args.db, args.out, args.sweep))
    else:
        print(_run_list(args.sweep_file))
