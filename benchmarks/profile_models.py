"""Where a training step's time goes, per network: each op's forward and backward, the autograd
walk, the optimiser and the rest.

    PYTHONPATH=. python3 benchmarks/profile_models.py     # writes benchmarks/results_profile.md
    PYTHONPATH=. python3 benchmarks/profile_models.py --models resnet20 --steps 2 \
        --out benchmarks/_scratch/profile.md              # one network, a short look

A training step is what ``bench_models.py`` times: train mode, ``zero_grad``, forward,
cross-entropy loss, backward, SGD with momentum 0.9, on one seeded batch of float32 images.

How it is measured, without changing the library: ``Profiler`` replaces the ``forward`` and
``backward`` of every ``Function`` subclass with a timed wrapper while it is active. The time
of a call is *exclusive*: a Function whose forward calls another Function keeps only its own
time, the inner one's goes to the inner op (a stack of open calls, each subtracting its
children). Around the phases of the step, wall-clock timers give what lies outside the
Functions:

- autograd walk = the backward phase's time less the time inside Functions' methods (the heap,
  gradient accumulation, the checks of ``_run_backward``);
- forward outside Functions = the same for the forward pass (modules, ``Function.apply``,
  making Tensors);
- optimiser = ``optimizer.step()`` less any Function inside it;
- rest = the step less all of the above (``zero_grad``, freeing the graph).

Each network runs in a child process of its own (a process remembers the allocator state of
what ran before it, ``common.py``), one untimed step first (numba compiles or loads its
kernels), then ``--steps`` timed ones; every row is the median of its own per-step values, so
the rows add up to the median step only approximately. The process that measures has neither
of OpenBLAS's tuning variables (``common.OPENBLAS_VARIABLES``): if they are set, the script
starts itself again without them.

Nothing here imports cnnlite at the top: the parent only starts children and writes the file.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import markdown_table, ms  # noqa: E402

SCRIPT = Path(__file__).resolve()
RESULTS = SCRIPT.with_name("results_profile.md")

#: The networks and their (batch, image side), as in the speed work on whole networks.
NETWORKS = {"resnet20": (64, 32), "resnet18": (8, 224), "resnet50": (8, 224),
            "mobilenet_v2": (8, 224), "densenet121": (8, 224), "vgg16": (4, 224)}

#: Batch of a network not in ``NETWORKS`` (its image side is the one it was designed for).
OTHER_BATCH = 8

LEARNING_RATE, MOMENTUM = 0.01, 0.9
METHODS = ("forward", "backward")


# ---------------------------------------------------------------------------------------------
# Exclusive timing of every Function's forward and backward.

@dataclass
class _Call:
    """An open call of a Function's method: when it started, and the time of the calls nested
    in it (subtracted from its own)."""
    function: object
    method: str
    start: float
    children: float = 0.0


class Profiler:
    """While active (``with Profiler() as profiler:``), every Function subclass's ``forward``
    and ``backward`` are timed, exclusive of nested Function calls.

    ``profiler.times[(op, method)]`` is the exclusive seconds of that op's method (op: the
    Function's class name, method: "forward" or "backward") and ``profiler.calls`` their
    number, since the last ``reset()``; ``profiler.inside`` their sum, which grows only while a
    Function's method runs. ``instrument()`` wraps classes defined since the profiler started
    (modules that cnnlite imports on first use, such as Winograd's convolution); leaving the
    ``with`` block puts every original method back.
    """

    def __init__(self):
        self.originals = []  # (class, method name, the function it had), to put back
        self.open_calls = []
        self.reset()

    def reset(self):
        self.times = defaultdict(float)
        self.calls = defaultdict(int)
        self.inside = 0.0

    def __enter__(self):
        self.instrument()
        return self

    def __exit__(self, *exc_info):
        for cls, method, original in reversed(self.originals):
            setattr(cls, method, original)
        self.originals.clear()

    def instrument(self) -> int:
        """Wrap the methods of every Function subclass not wrapped yet; return how many."""
        from cnnlite.autograd import Function

        wrapped = {(cls, method) for cls, method, _ in self.originals}
        added = 0
        for cls in _subclasses(Function):
            for method in METHODS:
                if method in vars(cls) and (cls, method) not in wrapped:
                    original = vars(cls)[method]
                    self.originals.append((cls, method, original))
                    setattr(cls, method, self._timed(original, method))
                    added += 1
        return added

    def _timed(self, original, method):
        @functools.wraps(original)
        def timed(function, *args, **kwargs):
            top = self.open_calls[-1] if self.open_calls else None
            if top is not None and top.function is function and top.method == method:
                # super().forward(...) from a subclass's forward: the same call, timed once.
                return original(function, *args, **kwargs)
            call = _Call(function, method, time.perf_counter())
            self.open_calls.append(call)
            try:
                return original(function, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - call.start
                self.open_calls.pop()
                own = elapsed - call.children
                if self.open_calls:
                    self.open_calls[-1].children += elapsed
                key = (type(function).__name__, method)
                self.times[key] += own
                self.calls[key] += 1
                self.inside += own
        return timed


def _subclasses(cls):
    """Every class below ``cls``, each once."""
    seen, stack = [], list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        if sub not in seen:
            seen.append(sub)
            stack.extend(sub.__subclasses__())
    return seen


# ---------------------------------------------------------------------------------------------
# One training step, split into its parts.

#: The rows below the ops, in the table's order: (key, label).
PARTS = (("forward_outside", "forward outside Functions (modules, Function.apply, Tensors)"),
         ("walk", "autograd walk (backward outside Functions' backward)"),
         ("optimiser", "optimiser (SGD step, outside Functions)"),
         ("rest", "rest (zero_grad, freeing the graph)"))


@dataclass
class StepProfile:
    """One step: ``ops[(op, method)] = (seconds, calls)``; ``parts[key]`` seconds for each key
    of ``PARTS``; ``total`` the step's seconds. The ops and parts add up to ``total``."""
    ops: dict
    parts: dict
    total: float


def profile_step(profiler: Profiler, model, x, labels, optimizer) -> StepProfile:
    """Run one training step and measure where its time went."""
    from cnnlite import functional as F

    profiler.reset()
    start = time.perf_counter()
    optimizer.zero_grad()
    with _Outside(profiler) as forward:
        loss = F.cross_entropy(model(x), labels)
    with _Outside(profiler) as backward:
        loss.backward()
    with _Outside(profiler) as optimiser:
        optimizer.step()
    del loss  # frees the graph inside the step
    total = time.perf_counter() - start
    parts = {"forward_outside": forward.seconds, "walk": backward.seconds,
             "optimiser": optimiser.seconds}
    parts["rest"] = total - profiler.inside - sum(parts.values())
    ops = {key: (seconds, profiler.calls[key]) for key, seconds in profiler.times.items()}
    return StepProfile(ops, parts, total)


class _Outside:
    """``with _Outside(profiler) as phase:``: afterwards ``phase.seconds`` is the block's
    wall-clock time less the time spent inside Functions' methods during it."""

    def __init__(self, profiler: Profiler):
        self.profiler = profiler
        self.seconds = 0.0

    def __enter__(self):
        self.started, self.inside_before = time.perf_counter(), self.profiler.inside
        return self

    def __exit__(self, *exc_info):
        self.seconds = ((time.perf_counter() - self.started)
                        - (self.profiler.inside - self.inside_before))


def profile_training(model, images, labels, steps: int) -> list:
    """One untimed training step of ``model`` on ``images`` (N, C, H, W) and ``labels`` (N,),
    then ``steps`` profiled ones: a ``StepProfile`` for each."""
    import cnnlite as cl
    from cnnlite import optim

    model.train()
    optimizer = optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    x = cl.tensor(images)
    with Profiler() as profiler:
        profile_step(profiler, model, x, labels, optimizer)
        profiler.instrument()  # the classes the first step imported (Winograd, ...)
        profiles = [profile_step(profiler, model, x, labels, optimizer) for _ in range(steps)]
        if profiler.instrument():
            raise RuntimeError("profile_training: Function classes were first defined during "
                               "the timed steps, so their time was counted outside Functions")
    return profiles


def summarise(profiles: list) -> dict:
    """Medians over the steps: {"ops": [[op, calls forward, calls backward, forward s,
    backward s], ...] (slowest first), "parts": {key: s}, "total": s}."""
    names = sorted({op for profile in profiles for op, _ in profile.ops})
    ops = []
    for op in names:
        row = [op]
        per_method = {m: [p.ops.get((op, m), (0.0, 0)) for p in profiles] for m in METHODS}
        row += [per_method[m][-1][1] for m in METHODS]
        row += [statistics.median(seconds for seconds, _ in per_method[m]) for m in METHODS]
        ops.append(row)
    ops.sort(key=lambda row: -(row[3] + row[4]))
    parts = {key: statistics.median(p.parts[key] for p in profiles) for key, _ in PARTS}
    return {"ops": ops, "parts": parts, "total": statistics.median(p.total for p in profiles)}


# ---------------------------------------------------------------------------------------------
# A child: one network.

def settings(name: str, batch: int | None, size: int | None) -> tuple:
    """(batch, image side) of a network: the options if given, else ``NETWORKS``'s."""
    from cnnlite import models

    default_batch, default_size = NETWORKS.get(name, (OTHER_BATCH, models.input_size(name)[0]))
    return batch or default_batch, size or default_size


def profile_network(name: str, steps: int, batch: int | None, size: int | None) -> dict:
    """Build ``name`` from ``cnnlite.models`` and profile its training step; the summary, the
    settings and this process's environment, for JSON."""
    import numpy as np

    from cnnlite import models

    batch, size = settings(name, batch, size)
    model = models.get_model(name)
    rng = np.random.default_rng(0)
    channels = models.entry(name).in_channels
    images = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    labels = rng.integers(0, 10, size=batch)
    report = summarise(profile_training(model, images, labels, steps))
    report.update(model=name, batch=batch, size=size, steps=steps,
                  environment=common.describe("cnnlite"))
    return report


def run_child(name: str, options) -> dict:
    command = [sys.executable, str(SCRIPT), "--child", name, "--steps", str(options.steps)]
    for option in ("batch", "size"):
        if getattr(options, option):
            command += [f"--{option}", str(getattr(options, option))]
    print(f"profiling {name}", file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the child profiling {name} failed with exit status "
                         f"{done.returncode} (its error is above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The results file.

def share(seconds: float, total: float) -> str:
    return f"{100 * seconds / total:.1f}%"


def network_table(report: dict) -> str:
    """The markdown of one network: its op rows, the parts, the total."""
    total = report["total"]
    rows = []
    for op, calls_forward, calls_backward, forward, backward in report["ops"]:
        calls = (str(calls_forward) if calls_forward == calls_backward
                 else f"{calls_forward} / {calls_backward}")
        rows.append([op, calls, ms(forward), ms(backward), share(forward + backward, total)])
    labels = dict(PARTS)
    for key, seconds in report["parts"].items():
        rows.append([labels[key], "", "", "", share(seconds, total)
                     + f" ({ms(seconds)} ms)"])
    added = sum(f + b for *_, f, b in report["ops"]) + sum(report["parts"].values())
    rows.append(["**total** (median step)", "", "", "", f"**{ms(total)} ms**"])
    heading = (f"## {report['model']}: batch {report['batch']}, {report['size']} x "
               f"{report['size']}, float32")
    return "\n".join([heading, "", markdown_table(
        ["op", "calls", "forward ms", "backward ms", "share of the step"], rows), "",
        f"The rows add up to {ms(added)} ms ({share(added, total)} of the median step; each "
        f"row is a median of its own over {report['steps']} "
        f"step{'s' if report['steps'] > 1 else ''})."])


def results_text(reports: list) -> str:
    environment = reports[0]["environment"]
    steps = reports[0]["steps"]
    lines = [
        "# Where a training step's time goes, per network (cnnlite, CPU)", "",
        f"Measured {datetime.date.today().isoformat()} on {common.cpu_model()}, "
        f"{os.cpu_count()} cores.", "",
        f"Threads: numba {environment['numba threads']} (threading layer "
        f"{environment['numba threading layer']}); "
        f"{environment['thread pools (threadpoolctl)']}. OpenBLAS variables in the measured "
        f"process: {environment['OpenBLAS variables']}. Python {environment['Python']}, numpy "
        f"{environment['numpy']}, numba {environment['numba']}, cnnlite "
        f"{environment['cnnlite']}.", "",
        f"Method: one child process per network; a training step is train mode, zero_grad, "
        f"forward, cross-entropy loss, backward, SGD (lr {LEARNING_RATE}, momentum "
        f"{MOMENTUM}) on one seeded batch of float32 images and labels. One untimed step, then "
        f"{steps} timed ones; every row is the median of its own per-step values. Every "
        f"Function subclass's forward and backward are wrapped with a timer (the library "
        f"unchanged); an op's time excludes the Functions it calls (a stack of open calls). "
        f"'calls' counts forward calls per step ('forward / backward' where they differ); an op "
        f"is a Function class. The parts below the ops are wall-clock time outside Functions' "
        f"methods: the forward pass's (modules, Function.apply, making Tensors), the backward "
        f"pass's (the autograd walk), the optimiser step's, and the rest of the step; the "
        f"timers' own cost (about a microsecond per call) lands in those parts.", ""]
    return "\n".join(lines + [network_table(report) + "\n" for report in reports])


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Where a training step's time goes, per network and per op.",
        allow_abbrev=False)
    parser.add_argument("--models", nargs="+", default=list(NETWORKS),
                        help="names in cnnlite.models (default: " + " ".join(NETWORKS) + ")")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after an untimed one")
    parser.add_argument("--batch", type=int, help="batch for every network (default: its own)")
    parser.add_argument("--size", type=int, help="image side for every network (default: its "
                                                 "own)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    parser.add_argument("--child", metavar="MODEL",
                        help="(internal) profile one network, print the summary as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def without_openblas_variables(argv) -> None:
    """Start this script again without OpenBLAS's tuning variables if any is set (OpenBLAS reads
    them when it loads; the measured process must see a user's environment)."""
    if any(name in os.environ for name in common.OPENBLAS_VARIABLES):
        env = common.child_environment(keep_openblas=False)
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, str(SCRIPT), *argv], env)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    without_openblas_variables(argv)
    if args.child:
        print(json.dumps(profile_network(args.child, args.steps, args.batch, args.size)))
        return None
    text = results_text([run_child(name, args) for name in args.models])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return text


if __name__ == "__main__":
    main()
