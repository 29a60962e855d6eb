"""cnnlite's own counts of each architecture, beside the published ones.

``count(name)`` builds the model and counts its parameters and multiply-adds with
``cl.summary`` at the input size of its reference figures; ``compare_counts`` lines these up
with ``reference(name)`` (what ``cnnlite models --compare`` prints). Nothing here is copied from
the reference table: every cnnlite number comes from the model itself.
"""
from __future__ import annotations

from typing import NamedTuple

from cnnlite.models.reference import REFERENCES

__all__ = ["Counts", "count", "CountComparison", "compare_counts", "format_comparison"]


class Counts(NamedTuple):
    params: int
    macs: int
    input_size: tuple  # (C, H, W)


def count(name: str, input_size: tuple | None = None) -> Counts:
    """Parameters and multiply-adds of the model ``name`` for one input of ``input_size``
    (default: that of its reference figures, else the size the architecture was built for),
    built with the settings of its reference figures (GoogLeNet without its auxiliary
    classifiers)."""
    from cnnlite import models
    from cnnlite.nn.init import skip_init
    from cnnlite.summary import summary

    built_for, figures = models.entry(name), REFERENCES.get(name)
    if input_size is None:
        input_size = (figures.input_size if figures
                      else (built_for.in_channels, *built_for.input_size))
    with skip_init():  # counting needs the shapes only
        model = models.get_model(name, **(figures.settings if figures else {}))
    table = summary(model, input_size)
    return Counts(table.total_params, table.total_macs, tuple(input_size))


class CountComparison(NamedTuple):
    name: str
    ours: Counts
    reference: object  # a Reference

    @property
    def matches(self) -> bool:
        return (self.ours.params == self.reference.params
                and self.ours.macs == self.reference.macs)


def compare_counts(names=None) -> list[CountComparison]:
    """cnnlite's counts beside the reference figures, for ``names`` (default: every model that
    has reference figures)."""
    from cnnlite import models

    if names is None:
        names = [name for name in models.list_models() if name in REFERENCES]
    return [CountComparison(name, count(name), models.reference(name)) for name in names]


def _accuracy(accuracy) -> str:
    if accuracy is None or accuracy.top1 is None:
        return "-"
    return f"{accuracy.top1:.1f}"


def format_comparison(rows: list[CountComparison]) -> str:
    """A text table: our counts, the reference counts, whether they agree, and the top-1
    accuracy of the paper and of torchvision's weights."""
    header = ("model", "params", "reference", "MACs", "reference", "same", "top-1 paper",
              "top-1 weights")
    body = [(row.name, f"{row.ours.params:,}", f"{row.reference.params:,}",
             f"{row.ours.macs:,}", f"{row.reference.macs:,}",
             "yes" if row.matches else "NO", _accuracy(row.reference.paper),
             _accuracy(row.reference.weights)) for row in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [header] + body]
    same = sum(row.matches for row in rows)
    sources = sorted({row.reference.counted_on for row in rows})
    return "\n".join(lines + [f"{same} of {len(rows)} models have exactly the reference counts "
                              f"(MACs of one image; counted on: {'; '.join(sources)})"])
