"""``torch`` and ``torch.nn.functional`` imported on first use.

PyTorch is the reference of the parity checks, a test-only dependency: the table names its
functions (``torch.add``, ``TF.conv2d``) without importing it, so the grader and the library
work without PyTorch installed.
"""
import importlib


class _Lazy:
    def __init__(self, module_name):
        self._module_name = module_name

    def __getattr__(self, name):
        return getattr(importlib.import_module(self._module_name), name)


torch = _Lazy("torch")
TF = _Lazy("torch.nn.functional")
