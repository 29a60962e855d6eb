"""The report of a sweep: the paper's table, a bar chart and the learning curves.

For every variant: how many of its runs are done, the mean and standard deviation of their
top-1 accuracy over the seeds (the sample standard deviation, n - 1), the difference of the
mean from the baseline's, and the paper's figure and difference beside them where the paper
has that run (``cnnlite.experiments.paper``). The paper trained on ImageNet for days; a small
sweep on the digits is not expected to give its numbers, only, where it reproduces, the
same order and sign of the differences.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlite.errors import OpError
from cnnlite.experiments.paper import SOURCE, paper_top1
from cnnlite.experiments.store import ResultStore

__all__ = ["VariantResult", "summarise", "format_table", "plot_bars", "plot_curves", "report"]


class VariantResult(NamedTuple):
    """One line of the table; accuracies are fractions, ``nan`` where nothing is done."""

    group: str
    variant: str
    changes: dict
    done: int
    runs: int
    mean: float
    std: float
    diff: float
    paper: float | None
    paper_diff: float | None
    run_ids: tuple


def _mean_std(values: list) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(store: ResultStore, sweep: str) -> list[VariantResult]:
    """The sweep's variants in file order, the baseline first."""
    runs = store.runs(sweep)
    if not runs:
        raise OpError(f"report: the database {store.path} has no sweep {sweep!r}; it has: "
                      f"{', '.join(store.sweeps()) or 'none'}")
    variants: dict = {}
    for run in runs:
        variants.setdefault((run["group"], run["variant"]), []).append(run)
    baseline_runs = variants.get(("baseline", "baseline"), [])
    batch_norm = (baseline_runs[0]["config"].get("batch_norm", "none") if baseline_runs
                  else "none")
    base_mean, _ = _mean_std([r["top1"] for r in baseline_runs if r["status"] == "done"])
    paper_base = paper_top1({}, batch_norm)
    results = []
    for (group, variant), members in variants.items():
        accuracies = [r["top1"] for r in members if r["status"] == "done"]
        mean, std = _mean_std(accuracies)
        changes = members[0]["changes"]
        paper = paper_top1(changes, batch_norm)
        results.append(VariantResult(
            group, variant, changes, len(accuracies), len(members), mean, std,
            mean - base_mean, paper,
            None if paper is None or paper_base is None else paper - paper_base,
            tuple(r["run_id"] for r in members)))
    return results


def _number(value, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def format_table(results: list[VariantResult], title: str = "") -> str:
    """The table as text: one line per variant (see the module's docstring)."""
    header = ("group", "variant", "runs", "top-1 mean", "std", "vs base", "paper",
              "paper vs base")
    lines = [(r.group, r.variant, f"{r.done}/{r.runs}", _number(r.mean), _number(r.std),
              "-" if r.group == "baseline" else _number(r.diff, signed=True), _number(r.paper),
              "-" if r.group == "baseline" else _number(r.paper_diff, signed=True))
             for r in results]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    aligned = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  " +
               "  ".join(f"{cell:>{w}}" for cell, w in zip(row[2:], widths[2:]))
               for row in [header, *lines]]
    rule = "-" * len(aligned[0])
    return "\n".join([title, rule, aligned[0], rule, *aligned[1:], rule,
                      f"paper: {SOURCE}"] if title else [aligned[0], rule, *aligned[1:]])


def _figure(width, height):
    import matplotlib
    matplotlib.use("Agg")  # files only: no window, no display needed
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(width, height))


def _wrapped(title: str, width: int = 60) -> str:
    """The title on lines of at most ``width`` characters: a figure does not widen for it."""
    return textwrap.fill(title, width)


def plot_bars(results: list[VariantResult], path, title: str = "") -> Path:
    """Mean top-1 per variant with the standard deviation as error bars, the paper's figure
    as a dot on the same axis; written to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    figure, axis = _figure(max(6.0, 0.6 * len(results) + 2), 4.5)
    positions = np.arange(len(results))
    axis.bar(positions, [r.mean for r in results], yerr=[r.std for r in results],
             color=["tab:grey" if r.group == "baseline" else "tab:blue" for r in results],
             capsize=3, label="this sweep (mean, std over seeds)")
    papers = [(i, r.paper) for i, r in enumerate(results) if r.paper is not None]
    if papers:
        axis.plot(*zip(*papers), "o", color="tab:red", label="paper (ImageNet)")
    axis.set_xticks(positions, [r.variant for r in results], rotation=45, ha="right")
    axis.set_ylabel("top-1 accuracy")
    axis.set_title(_wrapped(title))
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_curves(store: ResultStore, results: list[VariantResult], path, title: str = "") -> Path:
    """Validation accuracy per epoch (training accuracy where there is no validation
    split), the mean over each variant's done runs; written to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    figure, axis = _figure(8.0, 5.0)
    for result in results:
        curves = []
        for run_id in result.run_ids:
            history = store.history(run_id)
            values = [math.nan if v is None else v for v in history["val_acc"]]
            if values and all(math.isnan(v) for v in values):
                values = history["train_acc"]
            if values:
                curves.append(values)
        if curves:
            length = min(len(curve) for curve in curves)
            mean = np.mean([curve[:length] for curve in curves], axis=0)
            axis.plot(np.arange(1, length + 1), mean, label=result.variant,
                      linewidth=2.5 if result.group == "baseline" else 1.2)
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation accuracy (mean over seeds)")
    axis.set_title(_wrapped(title))
    axis.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def _title(sweep: str, results: list[VariantResult], store: ResultStore) -> str:
    config = next((run["config"] for run in store.runs(sweep)), {})
    model = config.get("model", "?")
    if "width" in config:
        model += f" width {config['width']:g}"
    size = config.get("input_size") or "its own size"
    return (f"sweep {sweep}: {model} on {config.get('dataset', '?')} at {size}, "
            f"{config.get('epochs', '?')} epochs, top-1 on the test split")


def report(database, out=None, sweeps=None) -> str:
    """The tables of ``sweeps`` (default: every sweep in ``database``) as text; with ``out``
    a folder, also ``<sweep>_bars.png`` and ``<sweep>_curves.png`` in it."""
    if not Path(database).is_file():
        raise OpError(f"report: no database {database}")
    with ResultStore(database) as store:
        names = list(sweeps or store.sweeps())
        texts = []
        for name in names:
            results = summarise(store, name)
            title = _title(name, results, store)
            texts.append(format_table(results, title))
            if out is not None:
                folder = Path(out)
                folder.mkdir(parents=True, exist_ok=True)
                plot_bars(results, folder / f"{name}_bars.png", title)
                plot_curves(store, results, folder / f"{name}_curves.png", title)
                texts.append(f"wrote {folder / f'{name}_bars.png'} and "
                             f"{folder / f'{name}_curves.png'}")
    return "\n\n".join(texts)
