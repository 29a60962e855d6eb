"""What every benchmark here shares: cnnlite and PyTorch timed in processes of their own, and the
results file.

Why separate processes. Both frameworks keep worker threads: numpy's OpenBLAS (so cnnlite's
GEMMs) and PyTorch's OpenMP. After each call those workers spin for a while before they sleep,
and on 2 cores a spinning worker of one framework takes a core from the other. Timed in one
process, interleaved, the same code measured 0.56x PyTorch back to back, 1.41x with a 0.3 s pause
before each run and 2.9x in another harness: the protocol decided the figure, not the code. Here
each framework runs alone, in a child process that imports only that framework, as it would in a
user's program.

The protocol (``main``), for the cases of one ``bench_*.py`` (a ``Suite``):

- rounds: in each, for each case, one child process per column (a ``Side``: cnnlite, PyTorch,
  ...), one after the other, cnnlite first in even rounds and PyTorch first in odd ones (the
  order reversed), so that neither always runs on a machine the other has just left busy;
- in a child: the same float32 inputs as in every other child (the suite draws them from a
  seeded RNG), ``warmup`` runs of its case (numba compiles or loads its kernels on the first
  call), then ``repeats`` timed runs, summarised by their median, which a few slow outliers do
  not move; the child prints its median as JSON;
- one case per child, because a process remembers what ran before: the memory allocator's
  state (glibc's adaptive mmap threshold) decides whether a large temporary array reuses pages
  or is mapped and zeroed afresh. Timed after five other layers in the same process, cnnlite's
  1x1 convolution took 43-57 ms per step, alone 30-35 ms;
- in the parent, which imports neither framework: the best (minimum) of the rounds' medians per
  column and case, since other work on the machine can only slow a round down; the ratios
  cnnlite / PyTorch are taken between those.

``time_side_by_side`` is the in-process timer of the GPU benchmark alone: there every timed call
ends with a device synchronisation, and what is timed is the GPU's work.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

#: The framework a child may import, and the one it must not.
OTHER_FRAMEWORK = {"cnnlite": "torch", "torch": "cnnlite"}

#: OpenBLAS tuning variables that some machines set (the kernels OpenBLAS picks, the cache size
#: its blocking assumes) and a user's machine does not: removed from the children's
#: environment unless ``--keep-openblas-env``, so that the figures are the user's.
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

#: The role of the child that takes a suite's cnnlite-only measurements (``Suite.profile``).
PROFILE = "profile"


@dataclass(frozen=True)
class Side:
    """One column of timings, measured in child processes of its own.

    ``steps()`` returns {case name: a function that runs the case once}, on inputs drawn from
    the suite's seeded RNG. It imports its framework itself: a script's top level imports
    neither, since the other side's child runs the same script.
    """
    key: str
    label: str
    framework: str  # "cnnlite" or "torch"
    steps: Callable[[], dict]


@dataclass(frozen=True)
class Suite:
    """The columns of one benchmark script and how its results file is laid out.

    ``sides``: cnnlite's first and PyTorch's (key "torch") last; even rounds run them in this
    order, odd rounds in the reverse one. ``summarise(run)`` returns the header, rows and notes
    of the results file. ``profile(repeats, warmup)``, if given, measures cnnlite alone (where
    its time goes) in one more cnnlite child after the rounds; what it returns (JSON) is
    ``run.profile``.
    """
    title: str
    script: Path
    sides: tuple
    summarise: Callable
    profile: Callable | None = None

    @property
    def results(self) -> Path:
        """``bench_conv.py`` writes ``results_conv.md`` next to it."""
        return self.script.with_name(self.script.stem.replace("bench_", "results_") + ".md")

    def side(self, key: str) -> Side:
        return next(side for side in self.sides if side.key == key)


@dataclass(frozen=True)
class Run:
    """What the parent measured. ``best[side key][case]``: the best of the rounds' medians in
    seconds; ``rounds[side key][case]``: every round's median; ``environments[side key]``:
    what that side's last child reported about itself."""
    args: argparse.Namespace
    best: dict
    rounds: dict
    environments: dict
    profile: object
    load: tuple

    def ratio(self, key: str, case: str) -> float:
        """cnnlite / PyTorch: the best median of side ``key`` over PyTorch's, for ``case``."""
        return self.best[key][case] / self.best["torch"][case]

    def ratios(self, key: str) -> list:
        return [self.ratio(key, case) for case in self.best[key]]


# ---------------------------------------------------------------------------------------------
# The parent: rounds of child processes, best of the rounds, the results file.

def main(suite: Suite, argv=None):
    """Run the suite and write its results file, or, with ``--child``, be one of its children."""
    args = parse_args(suite, argv)
    if args.child:
        print(json.dumps(run_child(suite, args)))
        return None
    run = measure(suite, args)
    header, rows, notes = suite.summarise(run)
    text = write_results(args.out, suite.title, header, rows,
                         method(suite, run) + "\n\n" + notes.strip(),
                         measured_on=f"{cpu_model()}, {os.cpu_count()} cores",
                         warning=threading_warning(suite, run))
    print(text)
    print(f"wrote {args.out}")
    return text


def parse_args(suite: Suite, argv):
    parser = argparse.ArgumentParser(description=suite.title)
    parser.add_argument("--rounds", type=int, default=3,
                        help="child processes per column; the best of their medians is kept")
    parser.add_argument("--repeats", type=int, default=11, help="timed runs per case and child")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per case first")
    parser.add_argument("--out", type=Path, default=suite.results, help="the results file")
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help=f"keep {' and '.join(OPENBLAS_VARIABLES)} in the children's "
                             f"environment (removed by default: a user's machine does not set "
                             f"them)")
    roles = [side.key for side in suite.sides] + ([PROFILE] if suite.profile else [])
    parser.add_argument("--child", choices=roles, help="(internal) run as one child: time one "
                        "column's cases, print the medians as JSON")
    parser.add_argument("--round", type=int, default=0, help="(internal) the child's round")
    parser.add_argument("--case", help="(internal) the one case the child times")
    parser.add_argument("--list-cases", action="store_true",
                        help="(internal) the child prints its case names and stops")
    return parser.parse_args(argv)


def measure(suite: Suite, args) -> Run:
    """Every round's children, one per column and case, in alternating order, then the profile
    child; the best medians."""
    env = child_environment(args.keep_openblas_env)
    load_before = os.getloadavg()[0]
    cases = spawn(suite, suite.sides[0].key, 0, args, env, list_cases=True)["cases"]
    medians = {side.key: {case: [] for case in cases} for side in suite.sides}
    environments = {}
    for round_ in range(args.rounds):
        order = suite.sides if round_ % 2 == 0 else suite.sides[::-1]
        for case in cases:
            for side in order:
                report = spawn(suite, side.key, round_, args, env, case=case)
                medians[side.key][case].append(report["medians"][case])
                environments[side.key] = report["environment"]
    profile = spawn(suite, PROFILE, 0, args, env)["profile"] if suite.profile else None
    best = {key: {case: min(rounds) for case, rounds in by_case.items()}
            for key, by_case in medians.items()}
    return Run(args, best, medians, environments, profile, (load_before, os.getloadavg()[0]))


def child_environment(keep_openblas: bool) -> dict:
    """The parent's environment, less OpenBLAS's tuning variables unless they are kept."""
    env = dict(os.environ)
    if not keep_openblas:
        for name in OPENBLAS_VARIABLES:
            env.pop(name, None)
    return env


def spawn(suite: Suite, role: str, round_: int, args, env, case=None, list_cases=False):
    """Run one child to its end and return its report (its last line of output, JSON).

    ``case``: the one case the child times; ``list_cases``: the child only names its cases.
    Its other output (progress, warnings, errors) goes to the parent's stderr as it comes.
    """
    command = [sys.executable, str(suite.script), "--child", role, "--round", str(round_),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if case is not None:
        command += ["--case", case]
        print(f"round {round_ + 1}/{args.rounds}: {role} child, {case}", file=sys.stderr,
              flush=True)
    if list_cases:
        command.append("--list-cases")
    if role == PROFILE:
        print("cnnlite alone: profile child", file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the {role} child of round {round_} failed with exit status "
                         f"{done.returncode} (its error is above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def method(suite: Suite, run: Run) -> str:
    """The Method and Environment sections of a results file."""
    return "\n\n".join(["## Method", method_paragraph(suite, run), spread_table(suite, run),
                        "## Environment",
                        "\n".join([openblas_line(run.args), *environment_lines(suite, run)])])


def spread_table(suite: Suite, run: Run) -> str:
    """Each round's median, per case and column: how far apart processes of the same code land
    (a figure above is the least of its row)."""
    header = ["case"] + [side.label for side in suite.sides]
    rows = [[case] + [" / ".join(ms(t) for t in run.rounds[side.key][case])
                      for side in suite.sides] for case in run.best[suite.sides[0].key]]
    return ("Each round's median (ms), in round order:\n\n" + markdown_table(header, rows))


def method_paragraph(suite: Suite, run: Run) -> str:
    args, labels = run.args, [side.label for side in suite.sides]
    sentences = [
        f"Every column comes from child processes of its own ({'; '.join(labels)}): in each of "
        f"{args.rounds} rounds one process per column and case, one after the other, never two "
        f"at once, {labels[0]} first in even rounds and {labels[-1]} first in odd ones.",
        f"A child imports only its own framework (it stops if the other one is loaded), builds "
        f"the same float32 inputs from the same seeded RNG, runs its one case {args.warmup} times "
        f"to warm up (numba compiles or loads its kernels on the first call), then "
        f"{args.repeats} times timed, and reports the median.",
        f"A figure here is the best (minimum) of the {args.rounds} rounds' medians, in ms; "
        f"ratio = cnnlite / PyTorch of those figures (below 1: cnnlite is faster).",
        "What is measured of cnnlite alone (where its time goes) comes from one more cnnlite "
        "child after the rounds." if suite.profile else "",
        "Why not one process: there each framework's worker threads (OpenBLAS's, PyTorch's "
        "OpenMP) spin after a call and take a core from the other, and on 2 cores the figure "
        "then depends on the protocol more than on the code (``benchmarks/common.py``).",
        f"1-minute load average {run.load[0]:.2f} before the run, {run.load[1]:.2f} after.",
    ]
    return " ".join(filter(None, sentences))


def openblas_line(args) -> str:
    """Whether the children ran with OpenBLAS's tuning variables, and what the parent had."""
    if args.keep_openblas_env:
        policy = "kept in the children's environment (``--keep-openblas-env``)"
    else:
        policy = ("removed from the children's environment (the default: a user's machine does "
                  "not set them; ``--keep-openblas-env`` keeps them)")
    return (f"- {' and '.join(OPENBLAS_VARIABLES)}: {policy}; in the parent: "
            f"{openblas_settings(os.environ)}.")


def environment_lines(suite: Suite, run: Run) -> list:
    """One line per distinct child environment, naming the columns whose children reported it."""
    described = {}
    for side in suite.sides:
        facts = run.environments[side.key]
        text = "; ".join(f"{name} {value}" for name, value in facts.items())
        described.setdefault(text, []).append(side.label)
    return [f"- {'; '.join(labels)} children: {text}." for text, labels in described.items()]


def threading_warning(suite: Suite, run: Run) -> str:
    """A loud line when a cnnlite child ran numba on anything but TBB, else nothing."""
    layers = {run.environments[side.key]["numba threading layer"] for side in suite.sides
              if side.framework == "cnnlite"}
    if layers <= {"tbb"}:
        return ""
    return (f"**WARNING: numba ran on the threading layer {', '.join(sorted(layers))}, not on "
            f"TBB, in cnnlite's children: cnnlite's times here are not those of an install with "
            f"TBB (on OpenMP, idle workers spin and take cores from BLAS: see cnnlite/tbb.py).**")


# ---------------------------------------------------------------------------------------------
# A child: one column's cases, timed in a process that has only that column's framework.

def run_child(suite: Suite, args) -> dict:
    """Time one side's case (or run the suite's profile) and describe this process."""
    if args.child == PROFILE:
        framework = "cnnlite"
        report = {"profile": suite.profile(args.repeats, args.warmup)}
    else:
        side = suite.side(args.child)
        framework = side.framework
        steps = side.steps()
        if args.list_cases:
            return {"cases": list(steps)}
        steps = {case: step for case, step in steps.items() if case == args.case}
        if not steps:
            raise SystemExit(f"{side.label}: no case named {args.case!r}")
        report = {"medians": median_times(steps, args.repeats, args.warmup,
                                          f"{side.label}, round {args.round + 1}")}
    report["environment"] = describe(framework)
    forbid(OTHER_FRAMEWORK[framework], framework)
    return report


def median_times(steps: dict, repeats: int, warmup: int, who: str = "") -> dict:
    """{case: median seconds of ``repeats`` runs of its step, after ``warmup`` runs}, one case
    after the other, as a training loop runs one layer's step again and again."""
    medians = {}
    for case, step in steps.items():
        for _ in range(warmup):
            step()
        medians[case] = statistics.median(seconds(step) for _ in range(repeats))
        if who:
            print(f"  {who}: {case}: {ms(medians[case])} ms", file=sys.stderr, flush=True)
    return medians


def seconds(step) -> float:
    """How long one call of ``step()`` takes."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def forbid(module: str, framework: str) -> None:
    """Stop the child when the other framework is loaded: its threads would share the cores."""
    if module in sys.modules:
        raise SystemExit(f"the {framework} child imported {module}: a child must load only its "
                         f"own framework (look for a top-level import in the benchmark script)")


def describe(framework: str) -> dict:
    """What this child runs on, in its own words: versions, threads, BLAS, OpenBLAS variables.

    Called after the timed runs: numba chooses its threading layer at its first parallel loop.
    """
    from threadpoolctl import threadpool_info

    facts = {"Python": platform.python_version(), "numpy": np.__version__}
    if framework == "cnnlite":
        import cnnlite
        import numba
        facts.update({"cnnlite": cnnlite.__version__, "numba": numba.__version__,
                      "numba threading layer": numba_threading_layer(),
                      "numba threads": numba.get_num_threads()})
    else:
        import torch
        facts.update({"torch": torch.__version__, "torch threads": torch.get_num_threads(),
                      "torch's own BLAS": torch_blas(torch)})
    facts["thread pools (threadpoolctl)"] = ", ".join(sorted(map(pool_line, threadpool_info())))
    facts["OpenBLAS variables"] = openblas_settings(os.environ)
    return facts


def numba_threading_layer() -> str:
    import numba
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel loop has run in this process
        return "none (no parallel loop ran)"


def torch_blas(torch) -> str:
    """The BLAS PyTorch was built with (linked in: threadpoolctl does not see it)."""
    for setting in torch.__config__.show().replace(",", " ").split():
        if setting.startswith("BLAS_INFO="):
            return setting.split("=", 1)[1]
    return "unknown"


def pool_line(pool: dict) -> str:
    """One threadpoolctl pool, e.g. 'openblas 0.3.31 (pthreads, 2 threads, SkylakeX,
    numpy.libs/libscipy_openblas64_.so)': the folder tells numpy's library from scipy's."""
    details = [pool.get("threading_layer"), f"{pool['num_threads']} threads",
               pool.get("architecture"), "/".join(Path(pool["filepath"]).parts[-2:])]
    name = " ".join(filter(None, [pool["internal_api"], pool.get("version")]))
    return f"{name} ({', '.join(filter(None, details))})"


def openblas_settings(environ) -> str:
    return ", ".join(f"{name}={environ[name]}" for name in OPENBLAS_VARIABLES
                     if name in environ) or "not set"


# ---------------------------------------------------------------------------------------------
# Shared by every benchmark, the GPU one included.

def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def geometric_mean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the CPU, its core count and the library versions of this process (the
    GPU benchmark's, which has both frameworks loaded)."""
    import numba
    import torch
    return (f"{cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__}, numba "
            f"{numba.__version__} (numba threading layer {numba_threading_layer()}), torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads)")


def time_side_by_side(ours, theirs, repeats: int = 7, warmup: int = 2):
    """Median seconds of ``ours()`` and ``theirs()``, run alternately ``repeats`` times in this
    process after ``warmup`` runs of each.

    For the GPU benchmark only, whose calls each end with a device synchronisation: the CPU
    benchmarks time each framework in a process of its own (``main``), since on a small CPU
    each framework's spinning worker threads slow the other one down.
    """
    for _ in range(warmup):
        ours()
        theirs()
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        ours_times.append(seconds(ours))
        theirs_times.append(seconds(theirs))
    return statistics.median(ours_times), statistics.median(theirs_times)


def write_results(path, title: str, header, rows, notes: str = "", measured_on: str | None = None,
                  warning: str = "") -> str:
    """Write a markdown table with the date and the machine (``machine()`` unless
    ``measured_on`` names it), a warning above the table if any; return the text."""
    lines = [f"# {title}", "",
             f"Measured {datetime.date.today().isoformat()} on {measured_on or machine()}.", ""]
    lines += [warning, ""] if warning else []
    text = "\n".join(lines + [markdown_table(header, rows)]) + "\n"
    text += f"\n{notes.strip()}\n" if notes else ""
    Path(path).write_text(text)
    return text


def markdown_table(header, rows) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
                     + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
