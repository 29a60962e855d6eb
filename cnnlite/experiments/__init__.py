"""Experiment sweeps: one change at a time against a baseline, as in Mishkin et al.'s
systematic evaluation of CNN advances, with the results in one SQLite file.

>>> from cnnlite.experiments import load_sweep, run_sweep, report
>>> sweep = load_sweep("activations.toml")           # the baseline, the changes, the seeds
>>> run_sweep(sweep, "results.sqlite", workers=2)     # a Dask LocalCluster of 2 processes
>>> print(report("results.sqlite", out="reports"))    # the table; bar charts and curves as PNG

sweep     the sweep file (TOML) -> its runs, each with a stable id; every check before a run
store     the SQLite database: sweeps, runs and their status, per-epoch history
runner    one run (``train_run``) and the sweep, in-process or on Dask
report    the paper-style table, bar chart and learning curves
caffenet  CaffeNet128 with the paper's ablation axes, at any width
paper     the paper's published figures
cli       ``cnnlite sweep run | report | runs``
sweeps/   the paper's ablations as sweep files, against a small-scale baseline on the digits
"""
from cnnlite.experiments.caffenet import CaffeNet128, caffenet128, feature_sizes
from cnnlite.experiments.report import report, summarise
from cnnlite.experiments.runner import (SchedulerUnreachableError, SweepSummary, run_sweep,
                                        train_run)
from cnnlite.experiments.store import ResultStore
from cnnlite.experiments.sweep import Run, Sweep, SweepFileError, load_sweep, parse_sweep, run_id

__all__ = ["load_sweep", "parse_sweep", "run_id", "Run", "Sweep", "SweepFileError",
           "ResultStore", "run_sweep", "train_run", "SweepSummary", "SchedulerUnreachableError",
           "report", "summarise", "CaffeNet128", "caffenet128", "feature_sizes"]
