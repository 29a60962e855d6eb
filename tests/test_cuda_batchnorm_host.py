"""The batch-norm CUDA kernels (kernels/batchnorm.cu), run on the CPU through the harness of
kernels/host: the two-pass reductions equal cnnlite's CPU kernels (cnnlite/cpu/norm.py) when a
channel is cut into several pieces, for rows long and short (BatchNorm1d's L = 1, read by
columns), in float32 and float64; every launcher returns what the CPU path returns for empty
inputs, without reading an element; the same input gives the same bits on every run and on
any grid; and float32 results stay within a bound of a float64 computation on realistic shapes.

The harness runs 3 blocks of 32 threads, but how a channel is cut into pieces is the
launcher's choice (``reduction_plan``), made for a GPU: every case below says which plan it
exercises, and checks that the launcher makes it.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnlite import cuda, reference
from cnnlite.cpu import norm as cpu_norm
from cnnlite.cuda import host
from cnnlite.cuda import norm as launchers

pytestmark = pytest.mark.usefixtures("on_harness")

DTYPES = [np.float32, np.float64]
both_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
EPS = 1e-5


def batch(rng, shape, dtype):
    """x ~ N(1, 2^2) and gy ~ N(0.1, 1): a mean away from 0, and sums of gy that do not cancel
    to nothing."""
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    gy = (rng.standard_normal(shape) + 0.1).astype(dtype)
    return x, gy


def reductions(kernels, x, gy, mean, inv_std):
    """mean, var, grad_bias, grad_weight by ``kernels`` (cnnlite.cuda.KERNELS or the CPU's),
    the gradient's sums at the given mean and inv_std (the same for both families)."""
    return (*kernels["batch_norm_statistics"](x),
            *kernels["batch_norm_grad_statistics"](gy, x, mean, inv_std))


def scales(x, gy, mean, inv_std):
    """What each reduction's error is measured against, per channel: the standard deviation
    for the mean, the variance for itself, and the sum of the magnitudes of the terms for the
    gradient's sums (a sum that cancels can be no more exact than that, in any order)."""
    x, gy = x.astype(np.float64), gy.astype(np.float64)
    centred = x - mean.astype(np.float64)[None, :, None]
    var = x.var(axis=(0, 2))
    return (np.sqrt(var), var, np.abs(gy).sum(axis=(0, 2)),
            np.abs(gy * centred).sum(axis=(0, 2)) * inv_std)


def assert_within(got, expected, scale, bound, what):
    """|got - expected| <= bound * scale, element by element."""
    error = np.abs(got.astype(np.float64) - expected.astype(np.float64)) / scale
    assert error.max() <= bound, f"{what}: error {error.max():.2e} of the scale > {bound:.0e}"


NAMES = ("mean", "var", "grad_bias", "grad_weight")

# (shape, MIN_BLOCK_VALUES or None for the launcher's own, the plan that the launcher makes:
# (by_columns, pieces, parts)).
CASES = [
    ((2, 3, 8192), None, (False, 4, 1)),     # rows of L >= 32: 4 pieces of 4096 values
    ((3, 4, 40), None, (False, 1, 1)),       # one piece, as the launch-shape test has it
    ((16384, 3, 1), None, (True, 12, 1)),    # BatchNorm1d, read by columns: 12 pieces
    ((300, 5, 7), None, (True, 2, 7)),       # short rows: 7 partials per channel and piece
    ((2, 70, 3), None, (True, 1, 3)),        # 210 columns: 7 tiles of the harness's 32 lanes
    ((5, 2, 45), 7, (False, 32, 1)),         # pieces of 7 values, most of them across rows
    ((64, 2, 31), 1, (True, 64, 31)),        # 1984 partials per channel for pass 2's threads
]


@both_dtypes
@pytest.mark.parametrize("family", ["numba", "loops"])
@pytest.mark.parametrize("shape, min_block_values, plan", CASES,
                         ids=[f"{'x'.join(map(str, c[0]))}" for c in CASES])
def test_reductions_equal_the_cpu_kernels_and_the_loops(monkeypatch, shape, min_block_values,
                                                        plan, family, dtype):
    if min_block_values is not None:
        monkeypatch.setattr(launchers, "MIN_BLOCK_VALUES", min_block_values)
    assert launchers.reduction_plan(shape)[:3] == plan
    x, gy = batch(np.random.default_rng(7), shape, dtype)
    mean, var = cpu_norm.batch_norm_statistics(x)
    inv_std = (1 / np.sqrt(var + EPS)).astype(dtype)
    got = reductions(cuda.KERNELS, x, gy, mean, inv_std)
    expected = reductions({"numba": cpu_norm.KERNELS, "loops": reference.KERNELS}[family],
                          x, gy, mean, inv_std)
    # float32: the kernels accumulate in float, the CPU kernels in double (measured: up to
    # 1.2e-7 of the scale; float64: 1.1e-14).
    bound = 5e-7 if dtype == np.float32 else 1e-13
    for g, e, scale, name in zip(got, expected, scales(x, gy, mean, inv_std), NAMES):
        assert g.dtype == dtype and g.shape == (shape[1],)
        assert_within(g, e, scale, bound, name)


@given(n=st.integers(1, 5), c=st.integers(1, 4), length=st.sampled_from([1, 2, 5, 31, 32, 45]),
       min_block_values=st.sampled_from([1, 3, 50]), dtype=st.sampled_from(DTYPES))
def test_reductions_over_any_cut_equal_the_cpu_kernels(n, c, length, min_block_values, dtype):
    """Small inputs cut into pieces down to single values or rows, by either kernel; at most 24
    blocks' worth of pieces, which keeps the harness quick."""
    x, gy = batch(np.random.default_rng(n * 100 + c * 10 + length), (n, c, length), dtype)
    mean, var = cpu_norm.batch_norm_statistics(x)
    inv_std = (1 / np.sqrt(var + EPS)).astype(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launchers, "MIN_BLOCK_VALUES", min_block_values)
        patch.setattr(launchers, "REDUCTION_BLOCKS", 24)
        got = reductions(cuda.KERNELS, x, gy, mean, inv_std)
    expected = reductions(cpu_norm.KERNELS, x, gy, mean, inv_std)
    bound = 1e-6 if dtype == np.float32 else 1e-13
    for g, e, scale, name in zip(got, expected, scales(x, gy, mean, inv_std), NAMES):
        # One value per channel has no spread to measure the mean's error against.
        assert_within(g, e, np.maximum(scale, 1e-3), bound, name)


# --- empty inputs --------------------------------------------------------------------------

def launcher_arguments(name, x):
    """The arguments of launcher ``name`` for input x: (N, C, L), its channel vectors as the
    training step has them (the CPU's statistics of x: NaN for an empty batch)."""
    C = x.shape[1]
    mean, var = cpu_norm.batch_norm_statistics(x)
    inv_std = (1 / np.sqrt(var + EPS)).astype(x.dtype)
    ones = np.ones(C, dtype=x.dtype)
    return {"batch_norm_statistics": (x,),
            "batch_norm_forward": (x, mean, inv_std, ones, ones),
            "batch_norm_grad_statistics": (x, x, mean, inv_std),
            "batch_norm_backward": (x, x, mean, inv_std, ones, ones, ones)}[name]


@both_dtypes
@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4), (2, 3, 0)],
                         ids=["no_samples", "no_channels", "no_positions"])
@pytest.mark.parametrize("name", ["batch_norm_statistics", "batch_norm_forward",
                                  "batch_norm_grad_statistics", "batch_norm_backward"])
def test_empty_inputs_give_what_the_cpu_gives_without_a_launch(on_harness, name, shape, dtype):
    """NaN statistics for no values, zero sums (times inv_std) for the gradient's, empty arrays
    for no elements or no channels. The harness passes an empty array as a null pointer, as
    cupy does: a kernel that read one would crash here as on a GPU; none is even launched."""
    x = np.ones(shape, dtype=dtype)
    arguments = launcher_arguments(name, x)
    got = cuda.KERNELS[name](*arguments)
    expected = cpu_norm.KERNELS[name](*arguments)
    got, expected = (r if isinstance(r, tuple) else (r,) for r in (got, expected))
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        np.testing.assert_array_equal(g, e)
    assert not on_harness.launched


# --- determinism ---------------------------------------------------------------------------

@both_dtypes
@pytest.mark.parametrize("shape", [(2, 3, 8192), (16384, 3, 1)], ids=["long_rows", "columns"])
def test_the_same_input_gives_the_same_bits_on_every_run_and_grid(harness_library, shape,
                                                                  dtype):
    """Each piece is reduced by one block in a fixed order and the pieces are combined in a
    fixed order, whichever block takes which piece: runs and grids of 1, 3 and 5 blocks agree
    to the bit."""
    assert launchers.reduction_plan(shape).pieces > 1
    x, gy = batch(np.random.default_rng(5), shape, dtype)
    mean, var = cpu_norm.batch_norm_statistics(x)
    inv_std = (1 / np.sqrt(var + EPS)).astype(dtype)
    runs = []
    for blocks in (1, 3, 3, 5):
        with host.run_on_cpu(host.HostKernels(harness_library, max_blocks=blocks)):
            runs.append(np.concatenate(reductions(cuda.KERNELS, x, gy, mean, inv_std)))
    for run in runs[1:]:
        assert run.tobytes() == runs[0].tobytes()


# --- float32 precision ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 4, 112 * 112), (256, 64, 1)], ids=["image", "vector"])
@pytest.mark.parametrize("outlier", [False, True], ids=["normal", "first_value_outlying"])
def test_float32_reductions_are_within_the_bound_of_float64(shape, outlier):
    """The float32 kernels accumulate in float (kernels/batchnorm.cu): ResNet's first batch
    norm (per channel) and BatchNorm1d, against float64 NumPy on the same float32 data. Also
    with every channel's first value at 101, 50 (image) or 15 (vector) std away: a variance
    from shifted float sums (sum(d^2)/M - (sum(d)/M)^2, d = x - that first value) would be
    off by 1 + 50^2 or 1 + 15^2 times more."""
    x, gy = batch(np.random.default_rng(11), shape, np.float32)
    if outlier:
        x[0, :, 0] = 101.0
    x64, gy64 = x.astype(np.float64), gy.astype(np.float64)
    mean = x64.mean(axis=(0, 2)).astype(np.float32)
    inv_std = (1 / np.sqrt(x64.var(axis=(0, 2)) + EPS)).astype(np.float32)
    centred = x64 - mean.astype(np.float64)[None, :, None]
    expected = (x64.mean(axis=(0, 2)), x64.var(axis=(0, 2)), gy64.sum(axis=(0, 2)),
                (gy64 * centred).sum(axis=(0, 2)) * inv_std)
    got = reductions(cuda.KERNELS, x, gy, mean, inv_std)
    # Measured here (3 blocks of 32 threads, so 8 times as many values per thread as on a GPU):
    # mean 1.2e-7, var 1.6e-7 (4.0e-7 with the outlier), the sums 1.4e-7.
    bounds = (3e-7, 1e-6, 3e-7, 3e-7)
    for g, e, scale, bound, name in zip(got, expected, scales(x, gy, mean, inv_std), bounds, NAMES):
        assert_within(g, e, scale, bound, name)
