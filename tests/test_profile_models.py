"""benchmarks/profile_models.py: a training step split per op (its timings are not tested).
The parts of a step add up to the step; an op that calls another keeps only its own time; the
library's methods are back as they were afterwards; the script writes a table per network from
a process without OpenBLAS's tuning variables."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import models
from cnnlite.autograd import Function
from cnnlite.functional.activation import ReLU

from helpers import script_as_module

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "profile_models.py"

#: What the nested ops below sleep, in seconds: long against the timer's own cost.
OUTER_OWN, INNER_OWN = 0.02, 0.06


@pytest.fixture(scope="module")
def profiling():
    with script_as_module(SCRIPT, "profile_models") as script:
        yield script


class Inner(Function):
    """y = x, after a pause, forward and backward."""
    def forward(self, x):
        time.sleep(INNER_OWN)
        return x.copy()

    def backward(self, gy):
        time.sleep(INNER_OWN)
        return gy


class Outer(Function):
    """y = x through ``Inner``: its forward applies Inner, its backward calls Inner's backward."""
    def forward(self, x):
        time.sleep(OUTER_OWN)
        return Inner.apply(cl.tensor(x)).data

    def backward(self, gy):
        time.sleep(OUTER_OWN)
        return Inner().backward(gy)


class OuterSubclass(Outer):
    """The same op, reaching its parent's methods through super()."""
    def forward(self, x):
        return super().forward(x)

    def backward(self, gy):
        return super().backward(gy)


@pytest.mark.parametrize("op", [Outer, OuterSubclass])
def test_an_op_calling_another_keeps_only_its_own_time(profiling, op):
    x = cl.tensor(np.ones(3), requires_grad=True)
    with profiling.Profiler() as profiler:
        op.apply(x).sum().backward()
    name = op.__name__
    for method in ("forward", "backward"):
        assert profiler.calls[(name, method)] == 1
        assert profiler.calls[("Inner", method)] == 1
        assert OUTER_OWN <= profiler.times[(name, method)] < OUTER_OWN + 0.03
        assert INNER_OWN <= profiler.times[("Inner", method)] < INNER_OWN + 0.03


def test_leaving_the_profiler_puts_the_methods_back(profiling):
    forward, backward = Outer.forward, ReLU.backward
    with profiling.Profiler():
        assert Outer.forward is not forward and ReLU.backward is not backward
    assert Outer.forward is forward and ReLU.backward is backward


def test_the_parts_of_a_lenet_step_add_up_to_the_step(profiling):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 1, 32, 32), dtype=np.float32)
    (step,) = profiling.profile_training(models.get_model("lenet5"), images,
                                         np.array([3, 7]), steps=1)
    assert {op for op, _ in step.ops} >= {"Conv2d", "MaxPool2d", "ReLU", "Linear",
                                          "CrossEntropy"}
    assert step.ops[("Conv2d", "forward")][1] == step.ops[("Conv2d", "backward")][1] == 2
    assert all(seconds >= 0 for seconds in step.parts.values())
    added = sum(seconds for seconds, _ in step.ops.values()) + sum(step.parts.values())
    assert added == pytest.approx(step.total, rel=0.05)


def test_the_script_writes_a_table_per_network_without_openblas_variables(tmp_path):
    out = tmp_path / "profile.md"
    environment = {**os.environ, "OPENBLAS_CORETYPE": "Haswell",
                   "OPENBLAS_L2_SIZE": "1048576"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--models", "lenet5", "--steps", "1",
                           "--batch", "2", "--out", str(out)],
                          capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "OpenBLAS variables in the measured process: not set" in text
    assert "## lenet5: batch 2, 32 x 32, float32" in text
    for row in ("| Conv2d | 2 |", "| autograd walk", "| optimiser", "| rest", "| **total**"):
        assert row in text
