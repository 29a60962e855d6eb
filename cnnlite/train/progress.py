"""The progress bar class: a notebook widget where Jupyter can draw one, plain text elsewhere.

``tqdm.auto`` picks the widget bar whenever it runs inside a Jupyter kernel, and when the
widgets package (``ipywidgets``) is not installed it warns, on import, "IProgress not found.
Please update jupyter and ipywidgets", then falls back to the text bar anyway. A student who
only typed ``import cnnlite`` should not meet that warning, so the choice is made here, before
``tqdm.auto`` is imported: without ``ipywidgets`` the text bar is used directly (it prints to
stderr, which Jupyter shows under the cell).

>>> from cnnlite.train.progress import tqdm
>>> for batch in tqdm(loader, desc="epoch 1"): ...
"""
from __future__ import annotations

import importlib.util

__all__ = ["tqdm", "notebook_widgets_available"]


def notebook_widgets_available() -> bool:
    """Whether ``ipywidgets`` is installed (looked up, not imported: importing it is slow)."""
    return importlib.util.find_spec("ipywidgets") is not None


if notebook_widgets_available():
    from tqdm.auto import tqdm
else:
    from tqdm.std import tqdm
