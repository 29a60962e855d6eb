"""What several test files share: tensors and gradients for hand-written checks, parity with
PyTorch (the CPU build, a test-only dependency) in values and gradients, the reference loops as
a Function for ``cl.gradcheck``, the comparison of kernel outputs, and the kernel families a
test runs its op as (``running_as``), the benchmark scripts imported as modules.

The generic checks of every op (values, float64 gradients, PyTorch parity on each
implementation) come from the op table, ``cnnlite.optable``; these helpers serve the tests of
what is special about one op.
"""
import contextlib
import faulthandler
import importlib.util
import os
import pickle
import resource
import signal
import sys

import numpy as np
import pytest
import torch

import cnnlite as cl
from cnnlite import optable
from cnnlite.optable import implementations
from cnnlite.optable.loops import Loops


# --- values and gradients, against PyTorch ----------------------------------------------------

def tensors_from(arrays, requires_grad=True):
    """float64 cnnlite tensors for the float arrays; other arrays pass through untouched."""
    return [cl.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f")
            if isinstance(a, np.ndarray) else a for a in arrays]


def torch_grads(torch_fn, arrays, upstream):
    """Gradients of sum(upstream * torch_fn(*arrays)) with respect to the float arrays."""
    ts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray)
          else a for a in arrays]
    y = torch_fn(*ts)
    (y * torch.tensor(upstream)).sum().backward()
    return [t.grad.numpy() if isinstance(t, torch.Tensor) and t.requires_grad else None
            for t in ts]


def cnnlite_grads(fn, arrays, upstream):
    """fn's output and the gradients of sum(upstream * fn(*arrays)) with respect to the float
    arrays (None for the others)."""
    xs = tensors_from(arrays)
    y = fn(*xs)
    (y * cl.tensor(upstream)).sum().backward()
    return y, [x.grad if isinstance(x, cl.Tensor) and x.requires_grad else None for x in xs]


def assert_matches_torch(fn, torch_fn, arrays_in, rtol=1e-6, atol=1e-12):
    """Value and gradients (for one random upstream gradient) equal PyTorch's, in float64.

    Integer arrays (class targets) reach both sides as integer tensors, without gradient.
    """
    y = fn(*tensors_from(arrays_in, requires_grad=False))
    expected = torch_fn(*[torch.tensor(a) for a in arrays_in]).detach().numpy()
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.data, expected, rtol=rtol, atol=atol)
    upstream = np.random.default_rng(7).standard_normal(y.shape)
    _, ours = cnnlite_grads(fn, arrays_in, upstream)
    theirs = torch_grads(torch_fn, arrays_in, upstream)
    for mine, expected_grad in zip(ours, theirs):
        if expected_grad is not None:
            np.testing.assert_allclose(mine, expected_grad, rtol=rtol, atol=atol)


# --- ops against their reference loops --------------------------------------------------------

LOOPS_TOLERANCE = {np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12),
                   np.dtype(np.float32): dict(rtol=1e-6, atol=1e-6)}


def assert_equal_to_loops(got, expected):
    """An op's result equals its reference loops': same dtype and shape, values to rounding."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **LOOPS_TOLERANCE[expected.dtype])


def random_upstream(shape, dtype):
    """A fixed random upstream gradient (seed 7) of ``shape`` and ``dtype``."""
    return np.random.default_rng(7).standard_normal(shape).astype(dtype)


def loops_function(forward_loops, backward_loops, *settings):
    """A function of tensors that runs a pair of reference loops,
    ``forward_loops(*inputs, *settings)`` and ``backward_loops(*inputs, gy, *settings)``, as a
    fresh ``cnnlite.optable.loops.Loops`` Function on each call: a Function is used once, and
    ``cl.gradcheck`` calls the function again and again."""
    return lambda *tensors: Loops(forward_loops, backward_loops, *settings)(*tensors)


def assert_same_outputs(got, expected, tolerance):
    """A kernel's outputs (an array or a tuple of arrays) equal the expected ones: the same
    shapes and dtypes, floats within ``tolerance`` (assert_allclose's rtol/atol), integers
    exactly."""
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        if e.dtype.kind == "f":
            np.testing.assert_allclose(g, e, **tolerance)
        else:
            np.testing.assert_array_equal(g, e)


# --- kernel families --------------------------------------------------------------------------

#: The implementations a hot op's special cases are tested on (the GPU has its own tests).
KERNEL_FAMILIES = ("loops", "numba", "cuda-host")
every_family = pytest.mark.parametrize("family", KERNEL_FAMILIES)


def running_as(family):
    """The context that runs the hot ops as the loops, the numba kernels or the CUDA kernels
    through the host harness (the op table's implementations); skips where it cannot run."""
    ok, why = optable.available(family)
    if not ok:
        pytest.skip(why)
    return implementations.running(family)


# --- the benchmark scripts as modules ------------------------------------------------------------

@contextlib.contextmanager
def script_as_module(path, name):
    """A script of benchmarks/ imported as module ``name`` (importing it runs nothing), kept in
    sys.modules while the block runs: its dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    sys.modules[name] = script
    try:
        spec.loader.exec_module(script)
        yield script
    finally:
        del sys.modules[name]


def run_forked(calls: dict) -> dict:
    """{key: the outcome of calls[key]()}, each call (a function of no argument) in a forked
    child process, and all of them in one child as long as none crashes: forking a process
    that has torch loaded takes tens of milliseconds. A call's outcome is ("returned", value),
    ("raised", "ErrorType: message") or ("crashed", what ended its child); the next child
    takes up the calls after a crash, so that one crash hides none of them."""
    outcomes, pending = {}, list(calls)
    while pending:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read)
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash writes no core file
                faulthandler.disable()  # an expected crash prints no Python traceback
                with os.fdopen(write, "wb") as pipe:
                    for key in pending:
                        pickle.dump((key, calls[key]()), pipe)
                        pipe.flush()  # what a crash of the next call cannot take back
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            while True:
                try:
                    key, outcome = pickle.load(pipe)
                except EOFError:
                    break
                outcomes[key] = outcome
        _, status = os.waitpid(pid, 0)
        pending = [key for key in pending if key not in outcomes]
        if pending:  # the child ended in the first call that has no outcome
            ended = (signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status)
                     else f"exit status {os.waitstatus_to_exitcode(status)}")
            outcomes[pending.pop(0)] = ("crashed", ended)
    return outcomes
