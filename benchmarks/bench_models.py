"""Whole networks, cnnlite vs PyTorch: inference and one training step of six networks, each at
a batch and image size of its own, each framework in processes of its own.

    PYTHONPATH=. python3 benchmarks/bench_models.py      # writes benchmarks/results_models.md
    PYTHONPATH=. python3 benchmarks/bench_models.py --quick --models resnet20 \
        --out benchmarks/_scratch/models.md               # a smoke run of the machinery

The networks (``SETTINGS``; their names in ``cnnlite.models``), on float32 images with 3
channels:

    model          batch   size       what it exercises
    resnet20          64   32 x 32    the CIFAR ResNet-20 (10 classes): many small convolutions
    resnet18           8   224 x 224  basic blocks
    resnet50           8   224 x 224  bottlenecks
    vgg16              4   224 x 224  large 3x3 convolutions, 138 M parameters
    mobilenet_v2       8   224 x 224  depthwise convolutions
    densenet121        8   224 x 224  concatenations

``--batch`` and ``--size`` replace every chosen model's batch or image size. LeNet-5 (``lenet5``,
64 x 1 x 32 x 32) is there for smoke runs and the tests, not in the default run.

Two cases per model, on one batch of its images:

- inference: eval mode, no gradient, one forward pass;
- training step: train mode, forward, cross-entropy loss, backward, SGD with momentum 0.9.

They are timed by the protocol of ``common.py``: rounds of child processes, one per framework
and case, each importing only its own framework; the median of a child's runs, the best of the
rounds. Before that:

1. agreement: one process that imports both frameworks builds each model in PyTorch
   (``torch_models.py``, written from torch.nn with cnnlite's state-dict keys), gives its batch
   norms random statistics and affine parameters, copies every weight into cnnlite's model by
   key (a missing, extra or mis-shaped key stops it) and compares the logits in eval mode on
   the model's benchmark batch. A difference above ``RTOL`` of the largest logit stops the
   benchmark: what is timed must compute the same thing.
2. peak memory: one more child per framework and case runs the case twice, and the parent
   reads that child's maximum resident set size from the kernel (``os.wait4``); a ``--quick``
   run leaves this out.

``common.py`` hands its children only the protocol's own options, so the models and their
settings reach them in the environment variable ``BENCH_MODELS`` (JSON), set by the parent.

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
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import geometric_mean, ms  # noqa: E402

SCRIPT = Path(__file__).resolve()
CONFIG_VARIABLE = "BENCH_MODELS"
KINDS = ("inference", "training step")


class Setting(NamedTuple):
    """What one model runs on: ``batch`` images of ``size`` x ``size`` pixels."""
    batch: int
    size: int


#: Each model's batch and image size: the size it was designed for (CIFAR's 32 x 32 for
#: ResNet-20, ImageNet's 224 x 224 for the others); batch 8, but 4 for VGG-16 (15.5 G
#: multiply-adds per image, the most here) and 64 for ResNet-20 (41 M per image, a CIFAR
#: training batch of the paper's size, 128, halved).
SETTINGS = {
    "resnet20": Setting(64, 32),
    "resnet18": Setting(8, 224),
    "resnet50": Setting(8, 224),
    "vgg16": Setting(4, 224),
    "mobilenet_v2": Setting(8, 224),
    "densenet121": Setting(8, 224),
    "lenet5": Setting(64, 32),  # for smoke runs and the tests, not in the default run
}

#: The models of a run without ``--models``.
DEFAULT_MODELS = ("resnet20", "resnet18", "resnet50", "vgg16", "mobilenet_v2", "densenet121")

#: Logits of the two frameworks may differ by this fraction of the largest |logit| (float32
#: sums in another order, through dozens of layers).
RTOL = 1e-4

#: Rounds, timed runs and warm-up runs per child, for the full run and for ``--quick``; given
#: on the command line, ``--rounds`` etc. win. On 2 cores a training step takes seconds (VGG-16
#: at batch 4: some 5 s in either framework; ResNet-20 at batch 64 in cnnlite: some 9 s), so a
#: child of the full run makes one untimed run, which also builds the model, and three timed
#: ones. Every case then runs 14 times per framework (3 rounds of 4, and the memory child's 2)
#: in 4 children of its own: the six networks take roughly 20-25 minutes on a quiet 2-core
#: machine, the agreement check included (an estimate: the last full run's ResNet-50 and VGG-16
#: figures, the others scaled by their multiply-adds, and a quick ResNet-20 run).
FULL_PROTOCOL = ["--rounds", "3", "--repeats", "3", "--warmup", "1"]
QUICK_PROTOCOL = ["--rounds", "1", "--repeats", "2", "--warmup", "1"]

LEARNING_RATE, MOMENTUM = 0.01, 0.9


def case_name(model: str, kind: str) -> str:
    return f"{model}, {kind}"


@dataclass(frozen=True)
class Config:
    """What the cases run on: the models (by their names in ``cnnlite.models``), each model's
    ``Setting``, and each model's input channels (from cnnlite's registry, filled in by the
    agreement check: the parent imports neither framework)."""
    models: tuple
    settings: dict
    channels: dict | None = None

    @classmethod
    def for_models(cls, models, batch: int | None = None, size: int | None = None) -> "Config":
        """``models`` at their ``SETTINGS``, with ``batch`` or ``size`` (when given) in place of
        every model's own."""
        settings = {}
        for model in models:
            if model not in SETTINGS and (batch is None or size is None):
                raise SystemExit(f"bench_models.py: {model!r} has no setting of its own (there "
                                 f"are settings for {', '.join(SETTINGS)}): give it --batch "
                                 f"and --size")
            default = SETTINGS.get(model, Setting(batch, size))
            settings[model] = Setting(default.batch if batch is None else batch,
                                      default.size if size is None else size)
        return cls(tuple(models), settings)

    def to_environment(self) -> None:
        """Hand the configuration to the children this process starts from now on."""
        os.environ[CONFIG_VARIABLE] = json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> "Config":
        if CONFIG_VARIABLE not in os.environ:
            raise SystemExit(f"{CONFIG_VARIABLE} is not set: run benchmarks/bench_models.py "
                             f"itself, which sets it for its children")
        config = json.loads(os.environ[CONFIG_VARIABLE])
        settings = {model: Setting(*setting) for model, setting in config["settings"].items()}
        return cls(tuple(config["models"]), settings, config["channels"])

    def case_names(self) -> list:
        return [case_name(model, kind) for model in self.models for kind in KINDS]

    def inputs(self, model: str, channels: int):
        """The batch every child of every framework uses for ``model``: float32 images
        (batch, channels, size, size) of its setting and class labels in [0, 10) (every model
        here has at least 10 classes), from a seeded RNG."""
        batch, size = self.settings[model]
        rng = np.random.default_rng(0)
        images = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
        return images, rng.integers(0, 10, size=batch)


# ---------------------------------------------------------------------------------------------
# The cases, in each framework.

def cnnlite_case(config: Config, model_name: str, training: bool):
    """One case's step in cnnlite: a forward pass under ``no_grad`` in eval mode, or a training
    step in train mode."""
    import cnnlite as cl
    from cnnlite import functional as F
    from cnnlite import models, optim

    model = models.get_model(model_name)
    images, labels = config.inputs(model_name, config.channels[model_name])
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
    images, labels = config.inputs(model_name, config.channels[model_name])
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

def randomise_batch_norm(model, seed: int = 0) -> None:
    """Give every batch norm of a PyTorch ``model`` random running statistics and affine
    parameters, in place. Fresh ones (mean 0, variance 1, scale 1, shift 0) make an eval-mode
    batch norm nearly the identity, so a twin with a batch norm missing or in the wrong place
    would pass the agreement check; random ones show it in the logits."""
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                channels = module.num_features
                for tensor, values in [(module.running_mean, rng.normal(0, 0.1, channels)),
                                       (module.running_var, rng.uniform(0.5, 1.5, channels)),
                                       (module.weight, rng.uniform(0.5, 1.5, channels)),
                                       (module.bias, rng.normal(0, 0.1, channels))]:
                    tensor.copy_(torch.from_numpy(values))


def check_agreement(config: Config) -> dict:
    """For each model: {"channels": its input channels, "difference": max |cnnlite logit -
    PyTorch logit| / max |PyTorch logit|} on the model's benchmark batch, with PyTorch's
    weights (batch norms randomised) in both; SystemExit when a key does not load or the
    difference is above ``RTOL``. Runs in a process of its own: it imports both frameworks."""
    import torch

    import cnnlite as cl
    import torch_models
    from cnnlite import models, nn

    results = {}
    for name in config.models:
        if name not in torch_models.MODELS:
            raise SystemExit(f"benchmarks/torch_models.py has no model {name!r} (it has "
                             f"{', '.join(torch_models.MODELS)})")
        theirs = torch_models.MODELS[name]().eval()
        randomise_batch_norm(theirs)
        ours = models.get_model(name).eval()
        try:
            ours.load_state_dict({key: value.numpy()
                                  for key, value in theirs.state_dict().items()})
        except nn.StateDictError as error:
            raise SystemExit(f"{name}: the weights of torch_models.{name}() do not load into "
                             f"cnnlite's model by key: {error}") from error
        channels = models.entry(name).in_channels
        images, _ = config.inputs(name, channels)
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
    header = (["model", "batch", "size", "case", "cnnlite ms", "PyTorch ms", "ratio"]
              + [f"{side.label} peak MiB" for side in memory_sides])
    rows = []
    for model in config.models:
        batch, size = config.settings[model]
        for kind in KINDS:
            case = case_name(model, kind)
            rows.append([model, batch, f"{size} x {size}", kind, ms(run.best["cnnlite"][case]),
                         ms(run.best["torch"][case]), f"{run.ratio('cnnlite', case):.2f}"]
                        + [f"{peaks[side.key][case]:.0f}" for side in memory_sides])
    rows.append([f"geometric mean, {len(rows)} cases", "", "", "", "", "",
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
        f"Each model at its own batch and image size (the columns batch and size), float32 "
        f"images. Inference: eval mode, no gradient, one forward pass. Training step: train "
        f"mode, forward, cross-entropy loss, backward, SGD (lr {LEARNING_RATE}, momentum "
        f"{MOMENTUM}); dropout and batch norm as in training. ratio = cnnlite / PyTorch (lower "
        f"is better). cnnlite's models are ``cnnlite.models.get_model(name)``, PyTorch's those "
        f"of ``benchmarks/torch_models.py``, written from torch.nn with cnnlite's state-dict "
        f"keys (torchvision's architectures and keys where torchvision has the model; "
        f"torchvision itself is not a dependency).\n\n"
        f"Agreement, before timing: PyTorch's weights, batch norms randomised, copied into "
        f"cnnlite's model by key, the logits in eval mode on the model's benchmark batch differ "
        f"by at most (max |difference| / max |logit|): {differences} (the benchmark stops above "
        f"{RTOL:g}).\n\n{memory}")
    return header, rows, notes


def make_suite(config: Config | None = None, agreement: dict | None = None,
               peaks: dict | None = None) -> common.Suite:
    """The suite of ``common.py``; a child needs only its sides, the parent its summary."""
    return common.Suite("Whole networks, inference and training step: cnnlite vs PyTorch",
                        SCRIPT, SIDES, lambda run: summarise(run, config, agreement, peaks))


def positive_integer(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a batch, an image size)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_options(argv):
    """This script's own options; the rest (``--rounds``, ``--out``, ...) are common.py's."""
    parser = argparse.ArgumentParser(
        description="Whole networks, inference and one training step: cnnlite vs PyTorch, "
                    "each in processes of its own.", allow_abbrev=False,
        epilog="The protocol's options (common.py): --rounds N, --repeats N, --warmup N, "
               "--out PATH, --keep-openblas-env; defaults here: " + " ".join(FULL_PROTOCOL))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="names in cnnlite.models that benchmarks/torch_models.py also has "
                             "(default: " + " ".join(DEFAULT_MODELS) + ")")
    parser.add_argument("--batch", type=positive_integer,
                        help="images per batch for every model (default: each model's own: "
                             + ", ".join(f"{name} {setting.batch}"
                                         for name, setting in SETTINGS.items()) + ")")
    parser.add_argument("--size", type=positive_integer,
                        help="image height and width for every model (default: each model's "
                             "own: " + ", ".join(f"{name} {setting.size}"
                                                 for name, setting in SETTINGS.items()) + ")")
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
    config = Config.for_models(options.models, options.batch, options.size)
    config.to_environment()
    agreement = run_agreement_check(config)
    config = replace(config, channels={name: result["channels"]
                                       for name, result in agreement.items()})
    config.to_environment()
    peaks = None if options.quick else peak_memory(config.case_names(), args.keep_openblas_env)
    return common.main(make_suite(config, agreement, peaks), protocol)


if __name__ == "__main__":
    main()
