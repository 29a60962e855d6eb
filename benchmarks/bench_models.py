"""Whole networks, cnnlite vs PyTorch: inference and one training step of ResNet-50 and VGG-16,
each framework in processes of its own.

    PYTHONPATH=. python3 benchmarks/bench_models.py      # writes benchmarks/results_models.md
    PYTHONPATH=. python3 benchmarks/bench_models.py --quick --models lenet5 --size 32 \
        --batch 2 --out benchmarks/_scratch/models.md   # a smoke run of the machinery

Two cases per model, on one batch of float32 images (8 x 3 x 224 x 224 by default):

- inference: eval mode, no gradient, one forward pass;
- training step: train mode, forward, cross-entropy loss, backward, SGD with momentum 0.9.

They are timed by the protocol of ``common.py``: rounds of child processes, one per framework
and case, each importing only its own framework; the median of a child's runs, the best of the
rounds. Before that:

1. agreement: one process that imports both frameworks builds each model in PyTorch
   (``torch_models.py``, torchvision's state-dict keys), copies its weights into cnnlite's model
   by key and compares the logits in eval mode on the benchmark's batch. A difference above
   ``RTOL`` of the largest logit stops the benchmark: what is timed must compute the same thing.
2. peak memory: one more child per framework and case runs the case twice, and the parent
   reads that child's maximum resident set size from the kernel (``os.wait4``); a ``--quick``
   run leaves this out.

``common.py`` hands its children only the protocol's own options, so the models, batch and
image size reach them in the environment variable ``BENCH_MODELS`` (JSON), set by the parent.

Nothing here imports cnnlite or torch at the top: the functions that need one import it, so
that each child loads only its own framework.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import geometric_mean, ms  # noqa: E402

SCRIPT = Path(__file__).resolve()
CONFIG_VARIABLE = "BENCH_MODELS"
KINDS = ("inference", "training step")

#: Logits of the two frameworks may differ by this fraction of the largest |logit| (float32
#: sums in another order, through dozens of layers).
RTOL = 1e-4

#: Rounds, timed runs and warm-up runs per child, for the full run and for ``--quick``; given
#: on the command line, ``--rounds`` etc. win. On 2 cores a training step at batch 8 takes
#: seconds (VGG-16 in cnnlite: some 15-20 s), so a child of the full run makes one untimed
#: run, which also builds the model, and three timed ones: ResNet-50 and VGG-16 then take
#: about 12-14 minutes, the agreement check and the memory children included (estimated from
#: single steps on a busy machine).
FULL_PROTOCOL = ["--rounds", "3", "--repeats", "3", "--warmup", "1"]
QUICK_PROTOCOL = ["--rounds", "1", "--repeats", "2", "--warmup", "1"]

LEARNING_RATE, MOMENTUM = 0.01, 0.9


def case_name(model: str, kind: str) -> str:
    return f"{model}, {kind}"


@dataclass(frozen=True)
class Config:
    """What the cases run on: the models (by their names in ``cnnlite.models``), the batch, the
    image size, and each model's input channels (from cnnlite's registry, filled in by the
    agreement check: the parent imports neither framework)."""
    models: tuple
    batch: int
    size: int
    channels: dict | None = None

    def to_environment(self) -> None:
        """Hand the configuration to the children this process starts from now on."""
        os.environ[CONFIG_VARIABLE] = json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> "Config":
        if CONFIG_VARIABLE not in os.environ:
            raise SystemExit(f"{CONFIG_VARIABLE} is not set: run benchmarks/bench_models.py "
                             f"itself, which sets it for its children")
        config = json.loads(os.environ[CONFIG_VARIABLE])
        return cls(tuple(config["models"]), config["batch"], config["size"], config["channels"])

    def case_names(self) -> list:
        return [case_name(model, kind) for model in self.models for kind in KINDS]

    def inputs(self, channels: int):
        """The batch every child of every framework uses: float32 images (N, C, size, size) and
        class labels in [0, 10) (every model here has at least 10 classes), from a seeded RNG."""
        rng = np.random.default_rng(0)
        images = rng.standard_normal((self.batch, channels, self.size, self.size),
                                     dtype=np.float32)
        return images, rng.integers(0, 10, size=self.batch)


# ---------------------------------------------------------------------------------------------
# The cases, in each framework.

def cnnlite_case(config: Config, model_name: str, training: bool):
    """One case's step in cnnlite: a forward pass under ``no_grad`` in eval mode, or a training
    step in train mode."""
    import cnnlite as cl
    from cnnlite import functional as F
    from cnnlite import models, optim

    model = models.get_model(model_name)
    images, labels = config.inputs(config.channels[model_name])
    x = cl.tensor(images)
    if not training:
        model.eval()

        def infer():
            with cl.no_grad():
                model(x)
        return infer

    model.train()
    optimizer = optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def train_step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()
    return train_step


def torch_case(config: Config, model_name: str, training: bool):
    """The same case in PyTorch, on the model of ``torch_models.py``."""
    import torch

    import torch_models

    torch.manual_seed(0)
    model = torch_models.MODELS[model_name]()
    images, labels = config.inputs(config.channels[model_name])
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    if not training:
        model.eval()

        def infer():
            with torch.no_grad():
                model(x)
        return infer

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def train_step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return train_step


def built_on_first_call(make_case, config: Config, model_name: str, training: bool):
    """A step that builds its case (model, optimiser, batch) on its first call, a warm-up run,
    and runs it on every call: a child builds only the one case it times, so neither its time
    nor its memory includes the other cases' models."""
    step = None

    def run():
        nonlocal step
        if step is None:
            step = make_case(config, model_name, training)
        step()
    return run


def cases(make_case) -> dict:
    """The steps of one column: {case name: step}, for the configuration in the environment."""
    config = Config.from_environment()
    return {case_name(model, kind): built_on_first_call(make_case, config, model,
                                                        kind == "training step")
            for model in config.models for kind in KINDS}


#: The columns: cnnlite's first, PyTorch's last (common.Suite).
SIDES = (common.Side("cnnlite", "cnnlite", "cnnlite", lambda: cases(cnnlite_case)),
         common.Side("torch", "PyTorch", "torch", lambda: cases(torch_case)))


# ---------------------------------------------------------------------------------------------
# Before the timing: the agreement check and the peak memory.

def check_agreement(config: Config) -> dict:
    """For each model: {"channels": its input channels, "difference": max |cnnlite logit -
    PyTorch logit| / max |PyTorch logit|} with PyTorch's weights in both; SystemExit above
    ``RTOL``. Runs in a process of its own: it imports both frameworks."""
    import torch

    import cnnlite as cl
    import torch_models
    from cnnlite import models

    results = {}
    for name in config.models:
        if name not in torch_models.MODELS:
            raise SystemExit(f"benchmarks/torch_models.py has no model {name!r} (it has "
                             f"{', '.join(torch_models.MODELS)})")
        theirs = torch_models.MODELS[name]().eval()
        ours = models.get_model(name).eval()
        ours.load_state_dict({key: value.numpy() for key, value in theirs.state_dict().items()})
        channels = models.entry(name).in_channels
        images, _ = config.inputs(channels)
        with torch.no_grad():
            expected = theirs(torch.from_numpy(images)).numpy()
        with cl.no_grad():
            got = ours(cl.tensor(images)).data
        difference = float(np.abs(got - expected).max() / np.abs(expected).max())
        if not difference <= RTOL:
            raise SystemExit(f"{name}: the logits of cnnlite and PyTorch differ by "
                             f"{difference:.2e} of the largest one (at most {RTOL:g} allowed) "
                             f"for the same weights: nothing is timed")
        results[name] = {"channels": channels, "difference": difference}
    return results


def run_agreement_check(config: Config) -> dict:
    """``check_agreement`` in a child process (the parent imports neither framework)."""
    print("agreement check: both frameworks, the same weights", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, str(SCRIPT), "--check-agreement"],
                          stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the agreement check failed with exit status {done.returncode} "
                         f"(its error is above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_memory(case_names: list, keep_openblas_env: bool, sides: tuple = SIDES) -> dict:
    """{side key: {case: MiB}}: the maximum resident set size of a child that builds the case
    and runs it twice (a warm-up run and a timed one), as the kernel reports it when the child
    ends. It includes the interpreter and the framework's own libraries."""
    env = common.child_environment(keep_openblas_env)
    peaks = {side.key: {} for side in sides}
    for case in case_names:
        for side in sides:
            print(f"peak memory: {side.key} child, {case}", file=sys.stderr, flush=True)
            child = subprocess.Popen([sys.executable, str(SCRIPT), "--child", side.key, "--case",
                                      case, "--repeats", "1", "--warmup", "1"],
                                     stdout=subprocess.DEVNULL, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0:
                raise SystemExit(f"the {side.key} memory child of {case!r} failed with exit "
                                 f"status {child.returncode} (its error is above)")
            peaks[side.key][case] = usage.ru_maxrss / 1024  # Linux reports KiB
    return peaks


# ---------------------------------------------------------------------------------------------
# The results file.

def summarise(run, config: Config, agreement: dict, peaks: dict | None):
    """The header and rows of the table, and the notes below it; ``peaks`` None (``--quick``)
    leaves out the memory columns."""
    memory_sides = () if peaks is None else SIDES
    header = (["model", "case", "cnnlite ms", "PyTorch ms", "ratio"]
              + [f"{side.label} peak MiB" for side in memory_sides])
    rows = []
    for model in config.models:
        for kind in KINDS:
            case = case_name(model, kind)
            rows.append([model, kind, ms(run.best["cnnlite"][case]), ms(run.best["torch"][case]),
                         f"{run.ratio('cnnlite', case):.2f}"]
                        + [f"{peaks[side.key][case]:.0f}" for side in memory_sides])
    rows.append([f"geometric mean, {len(rows)} cases", "", "", "",
                 f"**{geometric_mean(run.ratios('cnnlite')):.2f}**"] + [""] * len(memory_sides))
    differences = "; ".join(f"{name} {result['difference']:.1e}"
                            for name, result in agreement.items())
    memory = ("Peak memory: the maximum resident set size of one more child per framework and "
              "case, which builds the case and runs it twice (warm-up and one timed run), as "
              "the kernel reports it when the child ends (``os.wait4``). It includes the "
              "interpreter and the framework's own libraries, which for PyTorch are larger than "
              "cnnlite's." if peaks is not None else
              "Peak memory: not measured (``--quick``).")
    notes = (
        f"Batch {config.batch}, {config.size} x {config.size} images, float32. Inference: eval "
        f"mode, no gradient, one forward pass. Training step: train mode, forward, "
        f"cross-entropy loss, backward, SGD (lr {LEARNING_RATE}, momentum {MOMENTUM}); "
        f"dropout and batch norm as in training. ratio = cnnlite / PyTorch (lower is better). "
        f"cnnlite's models are ``cnnlite.models.get_model(name)``, PyTorch's those of "
        f"``benchmarks/torch_models.py`` (torchvision's architecture and state-dict keys; "
        f"torchvision itself is not a dependency).\n\n"
        f"Agreement, before timing: PyTorch's weights copied into cnnlite's model by key, the "
        f"logits in eval mode on the benchmark's batch differ by at most (max |difference| / "
        f"max |logit|): {differences} (the benchmark stops above {RTOL:g}).\n\n{memory}")
    return header, rows, notes


def make_suite(config: Config | None = None, agreement: dict | None = None,
               peaks: dict | None = None) -> common.Suite:
    """The suite of ``common.py``; a child needs only its sides, the parent its summary."""
    title = "Whole networks, inference and training step: cnnlite vs PyTorch"
    if config is not None:
        title += f" (batch {config.batch}, {config.size} x {config.size}, float32)"
    return common.Suite(title, SCRIPT, SIDES, lambda run: summarise(run, config, agreement, peaks))


def parse_options(argv):
    """This script's own options; the rest (``--rounds``, ``--out``, ...) are common.py's."""
    parser = argparse.ArgumentParser(
        description="Whole networks, inference and one training step: cnnlite vs PyTorch, "
                    "each in processes of its own.", allow_abbrev=False,
        epilog="The protocol's options (common.py): --rounds N, --repeats N, --warmup N, "
               "--out PATH, --keep-openblas-env; defaults here: " + " ".join(FULL_PROTOCOL))
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16"],
                        help="names in cnnlite.models that benchmarks/torch_models.py also has")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {' '.join(QUICK_PROTOCOL)} unless given, and no "
                             f"memory children")
    parser.add_argument("--check-agreement", action="store_true",
                        help="(internal) compare the logits of both frameworks, print JSON")
    return parser.parse_known_args(argv)


def main(argv=None):
    """Check, measure the memory, time (``common.main``) and write the results file; or be one
    of the children."""
    argv = sys.argv[1:] if argv is None else list(argv)
    options, protocol = parse_options(argv)
    if "--child" in protocol:
        return common.main(make_suite(), protocol)
    if options.check_agreement:
        print(json.dumps(check_agreement(Config.from_environment())))
        return None
    protocol = (QUICK_PROTOCOL if options.quick else FULL_PROTOCOL) + protocol
    args = common.parse_args(make_suite(), protocol)  # a misspelt option stops here
    if args.warmup < 1:
        raise SystemExit("--warmup must be at least 1: the first run builds the model")
    config = Config(tuple(options.models), options.batch, options.size)
    config.to_environment()
    agreement = run_agreement_check(config)
    config = replace(config, channels={name: result["channels"]
                                       for name, result in agreement.items()})
    config.to_environment()
    peaks = None if options.quick else peak_memory(config.case_names(), args.keep_openblas_env)
    return common.main(make_suite(config, agreement, peaks), protocol)


if __name__ == "__main__":
    main()
