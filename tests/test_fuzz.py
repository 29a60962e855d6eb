"""Fuzzing the public API with bad and unusual arguments: no crash, no silently wrong answer.

For every public op of ``cnnlite.functional``, every layer of ``cnnlite.nn``, every optimiser
and learning-rate schedule, the hooks and ``.grad``, ``load_state_dict``, the containers, the
``DataLoader``, the data sets and transforms, ``fit``/``evaluate`` and the ``cnnlite`` command,
hypothesis draws cases from the catalogue in ``tests/fuzz_cases.py``. A case takes a valid call
and changes one thing in it: an argument to a value of the wrong kind or out of range (a bool or
a float for an int, 2**63, NaN, a string for a bool, an axis past the rank, a wrong shape), or
an input to another dtype (bool, uint8, ints, float16, complex, object), memory layout
(transposed, strided, negative strides, broadcast, read-only), form (a list, a NumPy array) or
shape (an empty batch, a zero-sized axis, one axis more or less), or it asks for an output
larger than the machine's memory. It then asserts what must happen (``fuzz_cases`` says it in
full): a clear error (a ValueError, TypeError or IndexError, or a cnnlite error, naming the op,
layer or option, not NumPy's own message), or a result equal to the valid call's on a
contiguous float64 copy of the inputs, values and gradients; an empty batch works forward and
backward; the command line ends a user error with one line and exit status 2, before training.

Every case runs in a worker process whose address space is limited (RLIMIT_AS), so a segfault,
a hang or a runaway allocation fails that one case and a fresh worker takes the next.

Profiles (``tests/conftest.py``): each test draws the profile's ``max_examples`` cases per
spec, over the 154 specs (``fuzz_cases.FAMILIES``):

* quick, ``CI=true`` (the ``ci`` profile, derandomised, so every CI run draws the same cases):
  10 per spec, 1,540 cases; 30-60 s on two busy cores, less once every case passes (hypothesis
  re-runs a failing one while it shrinks it);
* ``dev``, the default without CI: 30 per spec, 4,620 cases;
* long, on demand, ``HYPOTHESIS_PROFILE=thorough pytest tests/test_fuzz.py``: 300 per spec,
  46,200 cases, about 13 minutes.

Each slot of a spec (an argument, an input, the empty batch, ...) is drawn with equal chance,
then one of its listed wrong or equivalent values, or one that hypothesis generates (any
float for an int, integers past the limits, text for a switch). ``python tests/fuzz_cases.py``
is the worker, not a script to run by hand.
"""
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import fuzz_cases
from fuzz_cases import FAMILIES

#: Seconds the parent waits for one case before it kills the worker (the worker prints where
#: it was after fuzz_cases.CASE_SECONDS). Generous: numba compiles a kernel again for each new
#: kind of array (float32 or float64, contiguous or strided, writeable or read-only), which on
#: a cold cache and a busy machine takes tens of seconds.
HANG_SECONDS = 2 * fuzz_cases.CASE_SECONDS


class Worker:
    """The worker process (``python tests/fuzz_cases.py``), started on first use and again
    after it dies. ``run(case)`` gives the worker's verdict, or says how the worker died."""

    def __init__(self):
        self.process = self.log = None
        self.cases = 0
        self.folder = tempfile.TemporaryDirectory()

    def start(self):
        if self.log is not None:
            self.log.close()
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(fuzz_cases.__file__))], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, cwd=self.folder.name,
            start_new_session=True)
        self.cases = 0

    def stderr_tail(self, limit=3000):
        """What the worker printed last: from faulthandler's report of a crash or a hang
        (innermost frame first) when there is one."""
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        start = max(text.rfind("Fatal Python error"), text.rfind("Timeout ("))
        return text[start:start + limit] if start >= 0 else text[-limit:]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def run(self, case):
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.cases += 1
        before = f"(the worker had run {self.cases - 1} cases before this one)"
        data = pickle.dumps(case)
        try:
            self.process.stdin.write(len(data).to_bytes(8, "little") + data)
            self.process.stdin.flush()
            ready, _, _ = select.select([self.process.stdout], [], [], HANG_SECONDS)
            answer = fuzz_cases.receive(self.process.stdout) if ready else "hung"
        except BrokenPipeError:
            answer = None
        if answer == "hung":
            tail = self.stderr_tail()
            self.stop()
            return "fail", f"hung: no answer after {HANG_SECONDS} s {before}; where it was:\n{tail}"
        if answer is None:
            status = self.process.wait()
            how = (f"killed by {signal.Signals(-status).name}" if status < 0
                   else f"exit status {status}")
            tail = self.stderr_tail()
            self.process = None
            return "fail", f"crashed: the worker process died, {how} {before}:\n{tail}"
        return answer


@pytest.fixture(scope="module")
def worker():
    running = Worker()
    yield running
    running.stop()
    running.folder.cleanup()
    if running.log is not None:
        running.log.close()


def check(worker, case):
    verdict, text = worker.run(case)
    assert verdict == "ok", f"{case['family']} {case['spec']}: {text}"


# --- every public entry has a spec ----------------------------------------------------------

def test_the_case_counts_in_this_docstring_are_those_of_the_catalogue():
    assert sum(len(names) for names in FAMILIES.values()) == 154


def test_every_public_op_of_functional_has_a_fuzz_spec():
    import inspect
    from cnnlite import functional
    public = {name for name, value in vars(functional).items()
              if not name.startswith("_") and inspect.isfunction(value)}
    assert public == set(fuzz_cases.FUNCTIONAL)


def test_every_public_layer_optimiser_and_schedule_has_a_fuzz_spec():
    import inspect
    from cnnlite import nn, optim
    from cnnlite.optim import lr_scheduler
    layers = {n for n in nn.__all__ if inspect.isclass(getattr(nn, n))}
    assert layers == set(fuzz_cases.LAYERS) | set(fuzz_cases.NOT_LAYERS)
    optimisers = {n for n in optim.__all__ if inspect.isclass(getattr(optim, n))
                  and issubclass(getattr(optim, n), optim.Optimizer)} - {"Optimizer"}
    assert optimisers == set(fuzz_cases.OPTIMIZERS) | set(fuzz_cases.OPTIMIZER_ALIASES)
    schedules = {n for n in lr_scheduler.__all__ if inspect.isclass(getattr(lr_scheduler, n))
                 and issubclass(getattr(lr_scheduler, n), lr_scheduler.LRScheduler)}
    assert schedules - {"LRScheduler"} == set(fuzz_cases.SCHEDULES)


def test_every_data_set_and_transform_has_a_fuzz_spec():
    import inspect
    from cnnlite import data
    from cnnlite.data import transforms
    datasets = {n for n in data.__all__ if inspect.isclass(getattr(data, n))
                and issubclass(getattr(data, n), data.Dataset)} - {"Dataset", "ArrayDataset"}
    assert datasets | {"random_split"} == set(fuzz_cases.DATASETS)
    classes = {n for n in transforms.__all__ if inspect.isclass(getattr(transforms, n))}
    assert classes - {"Compose"} == set(fuzz_cases.TRANSFORMS)


# --- the fuzz cases -------------------------------------------------------------------------

def _fuzz_test(family):
    @pytest.mark.parametrize("name", FAMILIES[family])
    @given(data=st.data())
    def test(worker, name, data):
        check(worker, data.draw(fuzz_cases.case_strategy(family, name), label="case"))
    return test


test_functional_ops_refuse_bad_arguments_and_compute_unusual_inputs = _fuzz_test("functional")
test_layers_refuse_bad_arguments_and_compute_unusual_inputs = _fuzz_test("layer")
test_optimisers_refuse_bad_hyper_parameters_gradients_and_parameters = _fuzz_test("optimizer")
test_schedules_refuse_bad_arguments = _fuzz_test("schedule")
test_hooks_grad_and_backward_refuse_gradients_of_another_shape_or_dtype = _fuzz_test("gradient")
test_load_state_dict_refuses_bad_entries_before_writing_anything = _fuzz_test("state_dict")
test_containers_refuse_what_is_not_a_module = _fuzz_test("container")
test_data_loader_refuses_bad_arguments_and_loads_unusual_data = _fuzz_test("loader")
test_data_sets_refuse_bad_arguments_and_damaged_files_naming_the_file = _fuzz_test("dataset")
test_transforms_refuse_bad_arguments_and_images = _fuzz_test("transform")
test_fit_and_evaluate_refuse_empty_loaders_and_bad_epochs = _fuzz_test("train")
test_command_line_ends_a_user_error_with_one_line_and_status_2 = _fuzz_test("cli")
