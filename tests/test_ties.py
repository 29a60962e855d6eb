"""Ops that select break ties as PyTorch does, on every implementation.

Max pooling, with its adaptive, max+avg and pyramid forms, and maxout send each output's
gradient to one element of the values it compares; APL's hinges (and the ReLU inside it)
have a kink where the gradient is one side's or the other's. PyTorch's CPU kernels send the
gradient to the *first* maximum in scan order (rows top to bottom, each left to right; only a
strictly larger value replaces the best so far, so a window of equal values gives it to its
first element) and take the slope of max(0, t) at t = 0 as 0. cnnlite follows both rules.

The other test modules draw distinct values on purpose (no window holds a tie, so no central
difference can move a maximum), and there a kernel that sends the gradient to the last
maximum passes everything. Here the inputs are tied: all ones, all equal and negative (below
the padding's zero of average pooling, above max pooling's -inf), small integers, and ReLU
outputs with their zeros; the windows overlap, cover padding and hang past the input in ceil
mode; adaptive bins share their border elements or repeat elements.

Implementations: the loops (``backend.use_reference()``), the numba kernels (the default) and
the CUDA kernels, run on the CPU through the harness of kernels/host. Adaptive and pyramid
pooling, maxout and APL have one vectorised version for every device (adaptive max pooling's
backward is the max pooling kernel of each family) and ground-truth loops in
``cnnlite.reference``: both are compared with PyTorch.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlite as cl
from cnnlite import backend, cpu, cuda, reference
from cnnlite import functional as F
from cnnlite.cuda import host


@pytest.fixture(autouse=True)
def torch_on_one_thread():
    """A busy machine makes torch's threads wait for each other; results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: The pooling kernels the functional ops call; the "cuda" implementation swaps in the CUDA
#: launchers for the numba ones, so that F.max_pool2d runs the CUDA kernels end to end.
POOLING_KERNELS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                   "avg_pool2d_backward")


@pytest.fixture(params=["loops", "numba", "cuda"])
def implementation(request, monkeypatch):
    """Run the test's ops through one family of kernels."""
    if request.param == "loops":
        with backend.use_reference():
            yield
    elif request.param == "numba":
        yield
    else:
        with host.run_on_cpu(request.getfixturevalue("harness")):
            for name in POOLING_KERNELS:
                monkeypatch.setitem(cpu.KERNELS, name, cuda.KERNELS[name])
            yield


def relu_outputs(shape, rng):
    return np.maximum(rng.standard_normal(shape), 0)


#: Tied inputs, drawn for a shape.
TIES = {
    "all_ones": lambda shape, rng: np.ones(shape),
    "all_minus_two": lambda shape, rng: np.full(shape, -2.0),
    "small_integers": lambda shape, rng: rng.integers(0, 3, shape).astype(np.float64),
    "relu_outputs": relu_outputs,
}
tied = pytest.mark.parametrize("ties", list(TIES))

#: (kernel_size, stride, padding, ceil_mode) of max pooling.
WINDOWS = {
    "2x2_apart": (2, 2, 0, False),
    "3x3_overlapping": (3, 1, 0, False),
    "3x3_padded": (3, 2, 1, False),
    "3x3_padded_ceil": (3, 2, 1, True),
    "2x3_overlapping_padded_ceil": ((2, 3), (1, 2), (1, 1), True),
}
windows = pytest.mark.parametrize("window", list(WINDOWS))

SHAPE = (2, 2, 5, 6)


def upstream_for(y_shape):
    """A random upstream gradient: each output's gradient differs, so where it goes shows."""
    return np.random.default_rng(7).standard_normal(y_shape)


def ours(op, *arrays):
    """op's value and the gradients of all its inputs, for ``upstream_for`` its output."""
    xs = [cl.tensor(a, requires_grad=True) for a in arrays]
    y = op(*xs)
    y.backward(upstream_for(y.shape))
    return y.data, [x.grad for x in xs]


def pytorch(op, *arrays):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = op(*ts)
    y.backward(torch.tensor(upstream_for(tuple(y.shape))))
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


def assert_same(got, expected):
    (y, grads), (t_y, t_grads) = got, expected
    np.testing.assert_allclose(y, t_y, rtol=1e-12, atol=1e-12)
    for grad, t_grad in zip(grads, t_grads, strict=True):
        np.testing.assert_allclose(grad, t_grad, rtol=1e-12, atol=1e-12)


def tied_input(ties, shape=SHAPE):
    return TIES[ties](shape, np.random.default_rng(3))


# --- max pooling and max+avg pooling, through each family's kernels --------------------------

@tied
@windows
def test_max_pooling_sends_the_gradient_to_the_first_maximum(implementation, ties, window):
    kernel, stride, padding, ceil_mode = WINDOWS[window]
    x = tied_input(ties)
    assert_same(ours(lambda t: F.max_pool2d(t, kernel, stride, padding, ceil_mode), x),
                pytorch(lambda t: TF.max_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode),
                        x))


@tied
@windows
def test_max_plus_average_pooling_sends_the_gradient_to_the_first_maximum(implementation,
                                                                          ties, window):
    kernel, stride, padding, ceil_mode = WINDOWS[window]
    x = tied_input(ties)
    assert_same(ours(lambda t: F.max_avg_pool2d(t, kernel, stride, padding, ceil_mode), x),
                pytorch(lambda t: TF.max_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode)
                        + TF.avg_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode,
                                        count_include_pad=True), x))


# --- adaptive and pyramid max pooling: one forward, each family's backward kernel, the loops --

#: Output sizes on a 5 x 6 input: bins that share border elements (3, 4 on 5 and 6), that tile
#: exactly (x 2 on 6), and more bins than elements (7 > 5: bins repeat elements).
ADAPTIVE = {"2x3": (2, 3), "3x4": (3, 4), "4x4": (4, 4), "7x8": (7, 8)}
adaptive_sizes = pytest.mark.parametrize("output_size", list(ADAPTIVE))
LEVELS = (1, 2, 3, 4)


def pyramid_in_pytorch(t):
    return torch.cat([TF.adaptive_max_pool2d(t, n).flatten(1) for n in LEVELS], dim=1)


@tied
@adaptive_sizes
def test_adaptive_max_pooling_sends_the_gradient_to_the_first_maximum(implementation, ties,
                                                                      output_size):
    x = tied_input(ties)
    size = ADAPTIVE[output_size]
    assert_same(ours(lambda t: F.adaptive_max_pool2d(t, size), x),
                pytorch(lambda t: TF.adaptive_max_pool2d(t, size), x))


@tied
@adaptive_sizes
def test_adaptive_max_pooling_loops_send_the_gradient_to_the_first_maximum(ties, output_size):
    x = tied_input(ties)
    y, argmax = reference.pool.adaptive_max_pool2d_forward(x, ADAPTIVE[output_size])
    gx = reference.pool.adaptive_max_pool2d_backward(upstream_for(y.shape), argmax, x.shape[2:])
    assert_same((y, [gx]), pytorch(lambda t: TF.adaptive_max_pool2d(t, ADAPTIVE[output_size]), x))


@tied
def test_pyramid_max_pooling_sends_the_gradient_to_the_first_maximum(implementation, ties):
    x = tied_input(ties)
    assert_same(ours(lambda t: F.spatial_pyramid_pool2d(t, LEVELS, "max"), x),
                pytorch(pyramid_in_pytorch, x))


@tied
def test_pyramid_max_pooling_loops_send_the_gradient_to_the_first_maximum(ties):
    x = tied_input(ties)
    y = reference.pool.spatial_pyramid_pool2d_forward(x, LEVELS, "max")
    gx = reference.pool.spatial_pyramid_pool2d_backward(upstream_for(y.shape), x, LEVELS, "max")
    assert_same((y, [gx]), pytorch(pyramid_in_pytorch, x))


# --- maxout and APL: the vectorised op and the loops ------------------------------------------

def maxout_loops(x, pieces):
    y = reference.activation.maxout_forward(x, pieces)
    return y, [reference.activation.maxout_backward(x, upstream_for(y.shape), pieces)]


def maxout_in_pytorch(pieces):
    def maxout(t):
        n, c = t.shape[:2]
        return t.reshape(n, c // pieces, pieces, *t.shape[2:]).max(dim=2).values
    return maxout


@tied
@pytest.mark.parametrize("pieces", [2, 3])
@pytest.mark.parametrize("version", ["vectorised", "loops"])
def test_maxout_sends_the_gradient_to_the_first_maximum(version, ties, pieces):
    x = tied_input(ties, (2, 6, 3, 2))
    got = ours(lambda t: F.maxout(t, pieces), x) if version == "vectorised" \
        else maxout_loops(x, pieces)
    assert_same(got, pytorch(maxout_in_pytorch(pieces), x))


def apl_loops(x, a, b):
    y = reference.activation.apl_forward(x, a, b)
    return y, list(reference.activation.apl_backward(x, a, b, upstream_for(y.shape)))


def apl_in_pytorch(t, a, b):
    """y = relu(x) + sum_s a_s relu(b_s - x), with relu's slope 0 at 0."""
    view = (a.shape[0], 1, a.shape[1]) + (1,) * (t.ndim - 2)
    return torch.relu(t) + (a.reshape(view) * torch.relu(b.reshape(view) - t)).sum(dim=0)


@pytest.mark.parametrize("version", ["vectorised", "loops"])
def test_apl_takes_the_slope_of_each_kink_as_pytorch_does(version):
    """x is 0 at the ReLU's kink and equals a hinge b_s at that hinge's kink, many times."""
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, (2, 3, 4, 4)).astype(np.float64)
    a = rng.standard_normal((2, 3))
    b = rng.integers(-1, 2, (2, 3)).astype(np.float64)
    assert (x == 0).any() and any((x[:, c] == b[s, c]).any() for s in range(2) for c in range(3))
    got = ours(F.apl, x, a, b) if version == "vectorised" else apl_loops(x, a, b)
    assert_same(got, pytorch(apl_in_pytorch, x, a, b))
