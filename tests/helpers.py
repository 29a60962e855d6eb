"""Shared checks for op tests: values against NumPy, gradients against central differences and
against PyTorch (the CPU build, a test-only dependency)."""
import numpy as np
import torch

import cnnlite as cl


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
    xs = tensors_from(arrays)
    y = fn(*xs)
    (y * cl.tensor(upstream)).sum().backward()
    return y, [x.grad if isinstance(x, cl.Tensor) and x.requires_grad else None for x in xs]


def check_op(fn, arrays, numpy_fn=None, torch_fn=None, rtol=1e-6, gradcheck=True):
    """The whole specification of a differentiable op on one input:

    * its value equals NumPy's (when ``numpy_fn`` is given),
    * its gradient passes the float64 central-difference check,
    * its gradient equals PyTorch's for the same random upstream gradient (when ``torch_fn``).
    """
    if numpy_fn is not None:
        expected = numpy_fn(*arrays)
        got = fn(*tensors_from(arrays, requires_grad=False)).data
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        assert got.shape == np.shape(expected)
    if gradcheck:
        cl.gradcheck(fn, tensors_from(arrays))
    if torch_fn is not None:
        assert_matches_torch(fn, torch_fn, arrays, rtol=rtol, atol=1e-10)


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
    return np.random.default_rng(7).standard_normal(shape).astype(dtype)


class Loops(cl.autograd.Function):
    """A Function made of reference loops, so that cl.gradcheck checks the loops themselves:
    ``forward_loops(*inputs, *settings)`` and ``backward_loops(*inputs, gy, *settings)``.
    Like every Function it is used once; ``loops_function`` makes a fresh one per call."""

    def __init__(self, forward_loops, backward_loops, *settings):
        self.forward_loops, self.backward_loops, self.settings = (forward_loops, backward_loops,
                                                                  settings)

    def forward(self, *arrays):
        self.save_for_backward(*arrays)
        return self.forward_loops(*arrays, *self.settings)

    def backward(self, gy):
        return self.backward_loops(*self.saved, gy, *self.settings)


def loops_function(forward_loops, backward_loops, *settings):
    """A function of tensors that runs the loops as a fresh ``Loops`` Function on each call,
    as ``cl.gradcheck`` needs (it calls the function again and again)."""
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
