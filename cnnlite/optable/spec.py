"""What the table says about one differentiable op: ``OpSpec``.

A spec is a description, not a test: how to call the op, how to make inputs for it that keep
away from its kinks and ties, its parameters (a few fixed examples and a hypothesis strategy
for more), its readable reference, its PyTorch equivalent and the tolerances that separate
rounding from a bug. ``cnnlite.optable.checks`` turns a spec into checks; the test suite and
the grader of ``cnnlite assignment check`` both run those checks.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

#: float32 results are compared with the float64 reference within these bounds; float64 ones
#: (the same arithmetic in another order) within the first.
DEFAULT_TOLERANCE = {"float64": (1e-9, 1e-10), "float32": (2e-4, 1e-5)}

#: Central differences with eps = 1e-6 in float64 are good to a few 1e-9 on the table's inputs
#: (rounding of L over eps, plus eps^2 times the third derivative): (rtol, atol) a hundred times
#: wider than that, and still tight enough to catch a gradient off by a factor 1.0001 (a
#: tolerance of 1e-3 let such a bug through, unless PyTorch parity happened to catch it).
DEFAULT_GRADCHECK_TOLERANCE = (1e-5, 1e-7)


@dataclass(frozen=True)
class OpSpec:
    """One differentiable op of ``cnnlite.functional``.

    Attributes
    ----------
    name : str
        The op's name in the table ("conv2d").
    call : callable
        ``call(*tensors, **params) -> Tensor``: the op as a user calls it.
    inputs : callable
        ``inputs(rng, **params) -> tuple of NumPy arrays``: float64 arrays (the gradient is
        checked for every float input listed in ``grad_inputs``) and integer arrays (class
        targets), with values chosen away from the op's kinks and ties (see ``avoid``).
    examples : tuple of dict
        Fixed parameter sets that every run checks. Keys that start with "shape" size the
        inputs (``inputs`` reads them); the others go to the op, its references and PyTorch.
    params : callable or None
        ``params() -> hypothesis strategy`` of parameter dicts, for the property tests
        (hypothesis is imported only when it is called).
    implementations : tuple of str
        Where the op can run (``cnnlite.optable.implementations``): "numpy" for ops made of
        NumPy expressions; "loops", "numba", "cuda-host", "gpu" for ops that dispatch kernels;
        "direct" when ``direct`` gives a Function made of the readable loops themselves.
    numpy : callable or None
        ``numpy(*arrays, **params) -> array``: the value, as a NumPy formula.
    torch : callable or None
        ``torch(*torch_tensors, **params) -> torch.Tensor``: PyTorch's equivalent, for the
        parity check of values and gradients (float64).
    direct : callable or None
        ``direct(**params) -> Function``: a fresh Function whose forward and backward are the
        readable loops of ``cnnlite.reference`` (the classic exercises).
    grad_inputs : tuple of int or None
        The inputs whose gradient is checked (default: every float input).
    avoid : str
        What ``inputs`` keeps away from (kinks, ties, singularities), said for the reader.
    tolerance : dict
        dtype name -> (rtol, atol) against the float64 reference.
    gradcheck_tolerance : (rtol, atol)
        For the central-difference check (ops with large third derivatives need more).
    dtypes : tuple of str
        The dtypes the op is checked in.
    topic : str
        The module of ``cnnlite.functional`` the op belongs to.
    """

    name: str
    call: Callable
    inputs: Callable
    examples: tuple = ({},)
    params: Callable | None = None
    implementations: tuple = ("numpy",)
    numpy: Callable | None = None
    torch: Callable | None = None
    direct: Callable | None = None
    grad_inputs: tuple | None = None
    avoid: str = ""
    tolerance: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    gradcheck_tolerance: tuple = DEFAULT_GRADCHECK_TOLERANCE
    dtypes: tuple = ("float64", "float32")
    topic: str = ""

    def __repr__(self):
        return f"OpSpec({self.name!r}, implementations={self.implementations})"

    @staticmethod
    def op_params(params: dict) -> dict:
        """The parameters that go to the op: all but the input sizes (keys "shape...", which
        only ``inputs`` reads)."""
        return {k: v for k, v in params.items() if not k.startswith("shape")}

    def make_inputs(self, seed: int, params: dict) -> tuple:
        """The inputs for ``params`` from a generator seeded with ``seed``; ``inputs`` gets
        the parameters it names (all of them if it takes ``**kwargs``)."""
        import numpy as np
        accepted = inspect.signature(self.inputs).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            params = {k: v for k, v in params.items() if k in accepted}
        return tuple(self.inputs(np.random.default_rng(seed), **params))

    def checked_inputs(self, arrays) -> tuple:
        """Indices of the inputs whose gradient is checked."""
        if self.grad_inputs is not None:
            return self.grad_inputs
        return tuple(i for i, a in enumerate(arrays) if a.dtype.kind == "f")
