"""benchmarks/bench_gpu.py on the CPU: the script imports without cupy, and what it times is
checked before it is timed. Its convolution, its op pairs and its residual network's training
step give the same numbers in cnnlite and PyTorch (the check it runs on the GPU before timing
each case), and a case where they differ stops it. The timing itself needs a GPU."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlite import functional as F

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (importing it runs nothing; it sets CUPY_TF32, restored here)."""
    tf32 = os.environ.get("CUPY_TF32")
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(script)
    except ModuleNotFoundError as error:
        if error.name != "cupy":
            raise
        pytest.skip("benchmarks/bench_gpu.py imports cupy")
    finally:
        if tf32 is None:
            os.environ.pop("CUPY_TF32", None)
        else:
            os.environ["CUPY_TF32"] = tf32
    return script


@pytest.mark.parametrize("layer, bias", [((2, 3, 9, 3, 4, 2, 1), True),
                                         ((2, 8, 7, 1, 5, 1, 0), False)],
                         ids=["3x3 s2 p1, bias", "1x1, no bias"])
def test_a_convolution_case_agrees_between_the_frameworks(bench, layer, bias):
    bench.check_agreement("conv2d", *bench.conv_pair(layer, "cpu", bias))


def test_an_op_case_agrees_between_the_frameworks(bench):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    gy = rng.standard_normal((2, 3, 4, 4), dtype=np.float32)
    bench.check_agreement("max_pool2d", *bench.op_pair(
        lambda t: F.max_pool2d(t, 3, 2, 1), lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1),
        x, gy, "cpu"))


def test_the_residual_network_takes_the_same_training_step_in_both_frameworks(bench):
    """Built in both frameworks from the same weights: one float64 step gives the same loss and
    the same gradient for every parameter (names as in PyTorch), as the benchmark checks."""
    ours, theirs, results = bench.training_step_pair("cpu", batch=4, dtype=np.float64)
    bench.check_agreement("training step", ours, theirs, results, rtol=bench.STEP_RTOL)
    names = [name for name, _ in bench.residual_network("torch").named_parameters()]
    assert list(results()) == ["loss"] + [f"dL/d {name}" for name in names]


def test_the_timed_float32_training_step_runs_in_both_frameworks(bench):
    ours, theirs, results = bench.training_step_pair("cpu", batch=4)
    ours()
    theirs()
    for name, (got, expected) in results().items():
        assert bench.as_numpy(got).dtype == bench.as_numpy(expected).dtype == np.float32, name
        assert np.isfinite(bench.as_numpy(got)).all(), name


def test_a_case_where_the_frameworks_differ_stops_the_benchmark(bench):
    """Average pooling timed against max pooling: the numbers differ, so nothing is timed."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 6), dtype=np.float32)
    gy = rng.standard_normal((1, 2, 3, 3), dtype=np.float32)
    pair = bench.op_pair(lambda t: F.avg_pool2d(t, 3, 2, 1),
                         lambda t: torch.nn.functional.max_pool2d(t, 3, 2, 1), x, gy, "cpu")
    with pytest.raises(bench.Disagreement, match=r"^pooling: y differs between cnnlite and "
                                                 r"PyTorch by up to [\d.e+-]+ \(largest \|value\|"):
        bench.check_agreement("pooling", *pair)


def test_the_tables_mark_a_missed_target(bench):
    assert (bench.met(True), bench.met(False)) == ("yes", "**no**")
