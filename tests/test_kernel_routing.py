"""Dropout, softmax, log-softmax, cross-entropy and the SGD / Adam updates go through the kernel
registry: the fast CPU kernels equal the reference loops, dropout masks are the counter
generator's numbers for the seed the op draws, the ops pass their gradient checks on both
paths (``backend.use_reference()`` and the fast one), and the optimisers still equal
torch.optim step for step. The GPU side of the same kernels is in test_cuda_gpu.py (on a GPU,
and everywhere through a stand-in for cupy) and test_cuda_kernels_host.py.
"""
import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cnnlite as cl
from cnnlite import backend, cpu, nn, optim, reference
from cnnlite import functional as F
from cnnlite.reference.dropout import counter_uniforms
from cnnlite.testing import arrays, shapes

DTYPES = [np.float32, np.float64]
both_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
NEW_KERNELS = ["dropout_forward", "softmax_forward", "log_softmax_forward", "softmax_backward",
               "log_softmax_backward", "cross_entropy_forward", "cross_entropy_backward",
               "sgd_momentum_update", "adam_update"]


def tolerance(dtype):
    """Both sum in float64; float32 results may differ by the rounding of a few operations."""
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Every new kernel, fast == loops, on one input each (also used by test_cuda_gpu.py).

def kernel_cases(rng, dtype):
    """(name, args) for every new kernel, as NumPy arrays of ``dtype``."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x = normal(2, 3, 4) * 3
    gy = normal(2, 3, 4)
    logits = normal(2, 5, 3) * 3
    target = rng.integers(0, 5, size=(2, 3))
    log_probs = reference.softmax.cross_entropy_forward(logits, target, 0.1)[1]
    param, grad, buffer = normal(3, 4), normal(3, 4), normal(3, 4)
    exp_avg, exp_avg_sq = normal(3, 4) * 0.1, np.abs(normal(3, 4)) * 0.1
    return [
        ("dropout_forward", (x, 0.3, 2**63 - 5)),
        ("dropout_forward", (x, 1.0, 7)),
        ("softmax_forward", (x, 1)),
        ("softmax_forward", (x, 0)),
        ("log_softmax_forward", (x, -1)),
        ("softmax_backward", (reference.softmax.softmax_forward(x, 1), gy, 1)),
        ("log_softmax_backward", (reference.softmax.log_softmax_forward(x, 2), gy, 2)),
        ("cross_entropy_forward", (logits, target, 0.0)),
        ("cross_entropy_forward", (logits, target, 0.1)),
        ("cross_entropy_forward", (normal(6), np.array(2), 0.2)),  # one sample (K,)
        ("cross_entropy_backward", (log_probs, target, normal(2, 3), 0.1)),
        ("cross_entropy_backward", (log_probs, target, normal(), 0.0)),  # gloss broadcasts
        ("sgd_momentum_update", (param, grad, buffer, 0.1, 0.9, 0.1, 0.01, False, True)),
        ("sgd_momentum_update", (param, grad, buffer, 0.1, 0.8, 0.0, 0.0, True, False)),
        ("sgd_momentum_update", (param, grad, buffer, 0.05, 0.0, 0.0, 0.01, False, False)),
        ("adam_update", (param, grad, exp_avg, exp_avg_sq, 3, 0.01, 0.8, 0.99, 1e-6, 0.01)),
    ]


CASE_NAMES = [name for name, _ in kernel_cases(np.random.default_rng(0), np.float64)]


def call(kernels, name, args, to_device=np.copy):
    """Run kernel ``name`` of ``kernels`` on copies of ``args`` (made by ``to_device``); the
    results as a tuple. An in-place update returns nothing: its results are the arrays it was
    given, afterwards."""
    arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    args = [to_device(a) if i in arrays else a for i, a in enumerate(args)]
    result = kernels[name](*args)
    if result is None:
        return tuple(args[i] for i in arrays)
    return result if isinstance(result, tuple) else (result,)


def test_every_new_kernel_has_a_loop_and_a_fast_version():
    for name in NEW_KERNELS:
        assert name in reference.KERNELS and name in cpu.KERNELS, name
    assert {name for name, _ in kernel_cases(np.random.default_rng(0), np.float64)} \
        == set(NEW_KERNELS)


@both_dtypes
@pytest.mark.parametrize("index", range(len(CASE_NAMES)), ids=CASE_NAMES)
def test_fast_kernel_equals_the_loops(index, dtype):
    name, args = kernel_cases(np.random.default_rng(index), dtype)[index]
    got, expected = call(cpu.KERNELS, name, args), call(reference.KERNELS, name, args)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype == dtype, (g.shape, g.dtype, e.shape)
        np.testing.assert_allclose(g, e, **tolerance(dtype))


@st.composite
def array_and_axis(draw):
    x = draw(arrays(draw(shapes(min_dims=1, max_dims=4, max_side=4)), low=-30.0, high=30.0))
    return x, draw(st.integers(-x.ndim, x.ndim - 1))


@given(inputs=array_and_axis(), dtype=st.sampled_from(DTYPES))
def test_fast_softmaxes_equal_the_loops_for_any_shape_and_axis(inputs, dtype):
    x, axis = inputs
    x = x.astype(dtype)
    gy = np.random.default_rng(x.size).standard_normal(x.shape).astype(dtype)
    for forward, backward in (("softmax_forward", "softmax_backward"),
                              ("log_softmax_forward", "log_softmax_backward")):
        y = reference.KERNELS[forward](x, axis)
        np.testing.assert_allclose(cpu.KERNELS[forward](x, axis), y, **tolerance(dtype))
        np.testing.assert_allclose(cpu.KERNELS[backward](y, gy, axis),
                                   reference.KERNELS[backward](y, gy, axis), **tolerance(dtype))


@pytest.mark.parametrize("kernels", [cpu, reference], ids=["fast", "reference"])
def test_in_place_updates_refuse_a_state_they_cannot_write_into(kernels):
    param = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(cl.OpError, match=r"adam_update: exp_avg must be a contiguous float32 "
                                         r"array of param's shape \(2, 3\).*got \(2, 3\) float64"):
        kernels.KERNELS["adam_update"](param, param, np.zeros((2, 3)), np.zeros_like(param), 1,
                                       0.1)
    with pytest.raises(cl.OpError, match=r"sgd_momentum_update: momentum_buffer must be .*"
                                         r"got \(2, 3\) float32, not contiguous"):
        kernels.KERNELS["sgd_momentum_update"](param, param, np.zeros((3, 2), np.float32).T,
                                               0.1, 0.9)


@pytest.mark.parametrize("kernels", [cpu, reference], ids=["fast", "reference"])
def test_softmax_kernels_name_a_bad_axis_and_a_bad_target(kernels):
    with pytest.raises(cl.OpError, match=r"softmax: axis 2 is out of range for an array of "
                                         r"shape \(2, 3\)"):
        kernels.KERNELS["softmax_forward"](np.zeros((2, 3)), 2)
    with pytest.raises(cl.OpError, match=r"cross_entropy: expected target of shape \(4,\) for "
                                         r"logits \(4, 3\), got \(3,\)"):
        kernels.KERNELS["cross_entropy_forward"](np.zeros((4, 3)), np.zeros(3, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Dropout masks: the counter generator's numbers, thresholded and scaled.

def expected_mask(seed, p, shape, dtype):
    scale = 1 / (1 - p) if p < 1 else 0.0
    return np.where(counter_uniforms(seed, int(np.prod(shape))) >= p, scale, 0) \
        .reshape(shape).astype(dtype)


@both_dtypes
@pytest.mark.parametrize("kernels", [cpu, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 2024, 2**63 - 1])
def test_dropout_mask_is_the_counter_generator_for_the_seed(kernels, p, seed, dtype):
    x = np.random.default_rng(1).standard_normal((3, 7, 5)).astype(dtype)
    y, mask = kernels.KERNELS["dropout_forward"](x, p, seed)
    np.testing.assert_array_equal(mask, expected_mask(seed, p, x.shape, dtype))
    np.testing.assert_array_equal(y, x * mask)
    assert y.dtype == mask.dtype == dtype


def test_the_loops_hash_equals_the_whole_array_twin():
    """The reference draws u_t by Python-integer arithmetic, counter_uniforms by NumPy uint64:
    two independent writings of the same hash."""
    for seed in (0, 1, 2**64 - 1):
        np.testing.assert_array_equal(
            counter_uniforms(seed, 50),
            [reference.dropout.counter_uniform(seed, t) for t in range(50)])


PATHS = {"reference": backend.use_reference, "fast": contextlib.nullcontext}


@pytest.fixture(params=list(PATHS))
def path(request):
    """Run the test once inside ``backend.use_reference()`` and once on the fast kernels."""
    with PATHS[request.param]():
        yield request.param


def test_f_dropout_draws_one_seed_from_its_generator(path):
    """F.dropout's mask is the counter generator's for seed = rng.integers(2**63), so a seeded
    generator gives the same mask on every path and device. A transposed x is masked in the
    C order of its own shape."""
    x = np.random.default_rng(2).standard_normal((5, 4)).T
    y = F.dropout(cl.tensor(x), 0.4, rng=np.random.default_rng(11))
    seed = int(np.random.default_rng(11).integers(2**63))
    np.testing.assert_array_equal(y.data, x * expected_mask(seed, 0.4, x.shape, x.dtype))


def test_f_dropout_drops_integers_as_the_same_values_in_float32():
    """The dtype policy (cnnlite.dtypes) promotes integers; the mask is the same."""
    x = np.arange(6).reshape(2, 3)
    y = F.dropout(cl.tensor(x), 0.5, rng=np.random.default_rng(11))
    expected = F.dropout(cl.tensor(x.astype(np.float32)), 0.5, rng=np.random.default_rng(11))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, expected.data)


# ---------------------------------------------------------------------------------------------
# The ops call the kernels, and pass their gradient checks on both paths.

def recording_kernels(monkeypatch, calls):
    """Wrap the new kernels of both CPU families so that every call appends its name."""
    for family in (cpu, reference):
        for name in NEW_KERNELS:
            def recorded(*args, _name=name, _kernel=family.KERNELS[name]):
                calls.append(_name)
                return _kernel(*args)
            monkeypatch.setitem(family.KERNELS, name, recorded)


def sgd_step(w):
    optim.SGD([w], lr=0.1, momentum=0.9).step()


def adam_step(w):
    optim.Adam([w], lr=0.1).step()


@pytest.mark.parametrize("run, expected", [
    (lambda x: F.dropout(x, 0.5).sum().backward(), ["dropout_forward"]),
    (lambda x: (F.softmax(x) * x).sum().backward(), ["softmax_forward", "softmax_backward"]),
    (lambda x: (F.log_softmax(x, axis=(0, 1)) * x).sum().backward(),
     ["log_softmax_forward", "log_softmax_backward"]),
    (lambda x: F.cross_entropy(x, [0, 2], label_smoothing=0.1).backward(),
     ["cross_entropy_forward", "cross_entropy_backward"]),
    (sgd_step, ["sgd_momentum_update"]),
    (adam_step, ["adam_update"]),
], ids=["dropout", "softmax", "log_softmax", "cross_entropy", "SGD", "Adam"])
def test_ops_run_through_the_registry(monkeypatch, path, run, expected):
    calls = []
    recording_kernels(monkeypatch, calls)
    x = nn.Parameter(np.random.default_rng(3).standard_normal((2, 3)))
    x.grad = np.ones(x.shape)
    run(x)
    assert calls == expected


@given(inputs=array_and_axis())
def test_softmaxes_pass_gradcheck_on_both_paths(inputs):
    x, axis = inputs
    # At most 3 per side (cheap loops), logits within +-3 (gradients not all ~0).
    x = x[tuple(slice(0, 3) for _ in x.shape)] / 10
    for enter in PATHS.values():
        with enter():
            for op in (F.softmax, F.log_softmax):
                cl.gradcheck(lambda t: op(t, axis=axis), [cl.tensor(x, requires_grad=True)])


def merged_softmax(op, x, axis):
    """PyTorch's softmax of x over ``axis`` (two axes, all axes or none), by merging them."""
    torch_op = getattr(torch, op.__name__)
    if axis == ():  # every element is its own distribution
        return torch_op(torch.tensor(x)[..., None], -1).numpy()[..., 0]
    if axis is None:
        return torch_op(torch.tensor(x).reshape(-1), 0).numpy().reshape(x.shape)
    # axis (0, 2) of (A, B, C): softmax over the rows of the (B, A*C) view
    moved = torch.tensor(x.transpose(1, 0, 2))
    y = torch_op(moved.reshape(moved.shape[0], -1), 1).reshape(moved.shape)
    return y.numpy().transpose(1, 0, 2)


@pytest.mark.parametrize("axis", [(0, 2), None, ()], ids=["two axes", "all axes", "no axis"])
@pytest.mark.parametrize("op", [F.softmax, F.log_softmax], ids=lambda op: op.__name__)
def test_softmax_over_several_axes_equals_torch_and_passes_gradcheck(path, op, axis):
    """The kernels reduce along one axis; several are merged into one first."""
    x = np.random.default_rng(4).standard_normal((2, 3, 2))
    np.testing.assert_allclose(op(cl.tensor(x), axis=axis).data, merged_softmax(op, x, axis),
                               rtol=1e-12, atol=1e-15)
    cl.gradcheck(lambda t: op(t, axis=axis), [cl.tensor(x, requires_grad=True)])


@st.composite
def logits_and_target(draw):
    """logits (N, K), (N, K, d1[, d2]) or (K,), and class indices of the matching shape."""
    n, k = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    extra = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    shape = draw(st.sampled_from([(n, k) + extra, (k,)]))
    target_shape = shape[:1] + shape[2:] if len(shape) >= 2 else ()
    target = draw(hnp.arrays(np.int64, target_shape, elements=st.integers(0, k - 1)))
    return draw(arrays(shape, low=-5.0, high=5.0)), np.asarray(target)


@given(inputs=logits_and_target(), label_smoothing=st.sampled_from([0.0, 0.2]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_passes_gradcheck_and_equals_torch_on_both_paths(inputs, label_smoothing,
                                                                      reduction):
    logits, target = inputs
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(logits), torch.tensor(target), label_smoothing=label_smoothing,
        reduction=reduction).numpy()
    for enter in PATHS.values():
        with enter():
            def loss(t):
                return F.cross_entropy(t, target, label_smoothing, reduction)
            value = loss(cl.tensor(logits)).data
            assert value.shape == expected.shape
            np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)
            cl.gradcheck(loss, [cl.tensor(logits, requires_grad=True)])


@pytest.mark.parametrize("path_name", list(PATHS))
@given(x=shapes(min_dims=0, max_dims=3, max_side=4).flatmap(arrays),
       p=st.floats(0.01, 0.99), seed=st.integers(0, 2**16))
def test_dropout_passes_gradcheck(path_name, x, p, seed):
    """Any shape (a 0-d x too), p across (0, 1); the seeded generator fixes the mask."""
    with PATHS[path_name]():
        cl.gradcheck(lambda t: F.dropout(t, p, rng=np.random.default_rng(seed)),
                     [cl.tensor(x, requires_grad=True)])


@both_dtypes
def test_ops_give_the_same_values_and_gradients_on_both_paths(dtype):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((3, 5, 2)).astype(dtype)
    target = rng.integers(0, 5, size=(3, 2))

    weights = rng.standard_normal(logits.shape).astype(dtype)

    def run():
        x = cl.tensor(logits, requires_grad=True)
        total = (F.cross_entropy(x, target, 0.1, "sum") + (F.softmax(x, axis=1) * weights).sum()
                 + (F.log_softmax(x, axis=-1) * F.dropout(x, 0.3, rng=np.random.default_rng(8)))
                 .sum())
        total.backward()
        return total.data, x.grad

    with backend.use_reference():
        expected = run()
    for got, want in zip(run(), expected):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **tolerance(dtype))


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax,
                                lambda x: F.cross_entropy(x, [0, 1])],
                         ids=["softmax", "log_softmax", "cross_entropy"])
def test_softmaxes_compute_integers_as_the_same_values_in_float32(op):
    """The dtype policy (cnnlite.dtypes) promotes integers to float32."""
    values = np.arange(6).reshape(2, 3) % 2
    got = op(cl.tensor(values))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.data, op(cl.tensor(values.astype(np.float32))).data)


# ---------------------------------------------------------------------------------------------
# The optimisers through their kernels, against torch.optim.

OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05)),
]


def regression(params, x, y, lib):
    w, b = params
    prediction = x @ w.T + b
    return ((prediction - y) ** 2).mean() if lib is torch \
        else F.mse_loss(prediction, cl.tensor(y))


@pytest.mark.parametrize("name, settings", OPTIMIZERS,
                         ids=[f"{n}-{'-'.join(s)}" for n, s in OPTIMIZERS])
def test_optimizer_through_its_kernel_equals_torch_over_six_steps(path, name, settings):
    rng = np.random.default_rng(9)
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    ours = [nn.Parameter(w.copy()), nn.Parameter(b.copy())]
    theirs = [torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)]
    ours_optimizer = getattr(optim, name)(ours, **settings)
    theirs_optimizer = getattr(torch.optim, name)(theirs, **settings)
    for _ in range(6):
        ours_optimizer.zero_grad()
        regression(ours, cl.tensor(x), y, cl).backward()
        ours_optimizer.step()
        theirs_optimizer.zero_grad()
        regression(theirs, torch.tensor(x), torch.tensor(y), torch).backward()
        theirs_optimizer.step()
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: optim.Adam(p, lr=0.1)], ids=["SGD", "Adam"])
def test_a_step_bumps_the_version_so_a_stale_graph_is_caught(path, make):
    w = nn.Parameter(np.random.default_rng(10).standard_normal(3))
    y = (w * w).sum()  # saves w for its backward
    w.grad = np.ones(3)
    version = w._version
    make([w]).step()
    assert w._version == version + 1
    with pytest.raises(RuntimeError, match=r"modified in place after the forward pass"):
        y.backward()


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: optim.Adam(p, lr=0.1)], ids=["SGD", "Adam"])
def test_a_strided_parameter_is_updated_in_its_own_memory(path, make):
    """The kernels write into contiguous memory; a transposed view is updated through a copy
    that is written back, so the array it views changes too."""
    base = np.random.default_rng(11).standard_normal((4, 3))
    strided, contiguous = nn.Parameter(base.T), nn.Parameter(base.T.copy())
    optimizers = [make([strided]), make([contiguous])]
    for step in range(3):
        gradient = np.random.default_rng(step).standard_normal((3, 4))
        for param, optimizer in zip((strided, contiguous), optimizers):
            param.grad = gradient
            optimizer.step()
    assert np.shares_memory(strided.data, base)
    np.testing.assert_array_equal(base.T, contiguous.data)


def test_optimizers_keep_float32_parameters_float32_and_accept_0d_ones(path):
    w = nn.Parameter(np.ones((2, 2), np.float32))
    scale = nn.Parameter(np.array(2.0))
    w.grad, scale.grad = np.ones((2, 2)), np.array(0.5)  # a float64 gradient for float32 w
    for optimizer in (optim.SGD([w, scale], lr=0.1, momentum=0.5), optim.Adam([w, scale])):
        optimizer.step()
        optimizer.step()
    assert w.dtype == np.float32 and scale.shape == ()
    assert optimizer.state[0]["exp_avg"].dtype == np.float32
