"""The ``cnnlite`` command (also ``python -m cnnlite``).

    cnnlite demo                    # LeNet-5 on the 8x8 digits, on the CPU, in well under a minute
    cnnlite train --model lenet5 --dataset mnist --data-root data --epochs 5 --lr 0.05
    cnnlite train ... --resume runs/train/checkpoint.npz --epochs 10   # continue exactly
    cnnlite models                  # the architectures get_model knows
    cnnlite models --compare        # their parameters and multiply-adds beside the published ones
    cnnlite models --lecture        # the lecture slides' figures, recounted exactly
    cnnlite summary resnet50        # per-layer table: shapes, parameters, MACs, receptive fields
    cnnlite info                    # versions, threading layer, BLAS, CPU, GPU: for bug reports
    cnnlite sweep run cnnlite/experiments/sweeps/activations.toml --workers 2   # an ablation
    cnnlite predict runs/demo/checkpoint.npz digit.png --top 3   # classify image files
    cnnlite assignment make layers --out hw1; cnnlite assignment check hw1  # for a course

Every run writes into its ``--out`` folder: ``checkpoint.npz`` (after every epoch; see
``cnnlite.checkpoint``), ``curves.png`` (loss and accuracy per epoch) and ``results.json``
(the history and the test accuracy). The last line printed is ``test accuracy: NN.N%``, measured
on the data set's held-out test split, which training never sees.

``cnnlite`` alone prints the help; ``cnnlite --version`` the version. Every error a user can
cause (an option out of range, a missing or damaged data file or checkpoint, a GPU that is not
there, a run that diverges) is one line on stderr, ``cnnlite COMMAND: error: ...``, and exit
status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlite import models, optim
from cnnlite.backend import DeviceError, check_device, cpu_threads
from cnnlite.checkpoint import CheckpointError, atomic_write
from cnnlite.data import CIFAR10, MNIST, DataLoader, Digits, random_split, transforms
from cnnlite.data.download import DataFileError
from cnnlite.data.preprocessing import Preprocessing, preprocessing_for
from cnnlite.errors import OpError
from cnnlite.experiments.cli import add_sweep_commands, run_sweep_command
from cnnlite.info import format_report
from cnnlite.nn import StateDictError
from cnnlite.predict import predict
from cnnlite.train import AnomalyError, History, evaluate, fit, seed_everything
from cnnlite.validate import integer, real

DATASETS = ("digits", "mnist", "cifar10")
VALIDATION_SPLIT_SEED = 0  # fixed, so that a resumed run validates on the same samples


class DataSplits(NamedTuple):
    train: object
    val: object
    test: object
    channels: int
    classes: int


def load_datasets(name: str, target_size: tuple, data_root="data", download=False,
                  val_fraction: float = 0.1, augment_rng=None) -> DataSplits:
    """Train / validation / test datasets of ``name``, brought to ``target_size``.

    The validation part is carved out of the training split (the test split stays untouched
    until the end). ``augment_rng`` seeds CIFAR-10's random crops and flips.
    """
    if name not in DATASETS:
        raise OpError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    preprocessing = preprocessing_for(name, target_size)
    test_steps = preprocessing.transform().transforms
    if name == "digits":  # the digits come in [0, 1] already
        train_set = Digits(train=True, transform=transforms.Compose(test_steps))
        test_set = Digits(train=False, transform=transforms.Compose(test_steps))
    else:
        dataset = MNIST if name == "mnist" else CIFAR10
        test_steps = [transforms.ToFloat()] + test_steps  # uint8 pixels to [0, 1]
        train_steps = test_steps
        if name == "cifar10":
            train_steps = [transforms.RandomCrop(target_size, padding=4, rng=augment_rng),
                           transforms.RandomHorizontalFlip(rng=augment_rng)] + test_steps
        train_set = dataset(data_root, train=True, download=download,
                            transform=transforms.Compose(train_steps))
        test_set = dataset(data_root, train=False, download=download,
                           transform=transforms.Compose(test_steps))
    channels = np.asarray(train_set[0][0]).shape[0]
    val_fraction = real("load_datasets", "val_fraction", val_fraction, minimum=0.0, below=1.0)
    if val_fraction > 0:
        train_set, val_set = random_split(train_set, [1 - val_fraction, val_fraction],
                                          seed=VALIDATION_SPLIT_SEED)
    else:
        val_set = None
    return DataSplits(train_set, val_set, test_set, channels, len(preprocessing.classes))


def build_optimizer(name: str, model, lr: float, momentum: float, weight_decay: float):
    if name == "sgd":
        return optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                         weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise OpError(f"unknown optimizer {name!r}; known: sgd, adam")


def build_schedule(name: str, optimizer, total_steps: int):
    """An LR schedule stepped after every optimiser step (``total_steps`` in the run)."""
    if name == "none":
        return None
    if name == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "linear":
        return optim.lr_scheduler.PolyLR(optimizer, max_iter=total_steps, power="linear")
    raise OpError(f"unknown schedule {name!r}; known: none, cosine, linear")


def inference_record(model: str, num_classes: int, preprocessing: Preprocessing) -> dict:
    """What ``cnnlite predict`` needs besides the weights, kept in every checkpoint of a run:
    the model's registry name and its constructor's sizes, and how images were prepared."""
    return {"model": model, "num_classes": int(num_classes),
            "in_channels": int(preprocessing.channels),
            "preprocessing": preprocessing.to_dict()}


class RunResult(NamedTuple):
    history: History
    test_accuracy: float
    test_top5: float
    seconds: float
    out: Path


def _write_results(out: Path, history: History, test, seconds: float, **settings) -> None:
    """curves.png, results.json, and the closing lines (the last: the test accuracy)."""
    history.plot(out / "curves.png")
    results = {**settings, "test_accuracy": test.top1, "test_top5": test.top5,
               "test_loss": test.loss, "test_samples": test.samples, "seconds": seconds,
               "history": {field: getattr(history, field) for field in History.FIELDS}}
    atomic_write(out / "results.json",
                 lambda file: file.write(json.dumps(results, indent=2).encode()))
    print(f"wrote {out / 'checkpoint.npz'}, {out / 'curves.png'} and {out / 'results.json'} "
          f"({seconds:.1f} s in all)")
    print(f"test accuracy: {100 * test.top1:.1f}%", flush=True)


def run_training(*, model="lenet5", dataset="digits", epochs=10, lr=0.05, batch_size=32,
                 optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="cosine",
                 device="cpu", resume=None, out="runs/train", seed=0, data_root="data",
                 download=False, val_fraction=0.1, detect_anomaly=False, progress=True,
                 threads=None) -> RunResult:
    """Build everything from the arguments, train, test, write the run's files.

    This is what ``cnnlite train`` and ``cnnlite demo`` do; it is a function so that tests
    (and notebooks) can run it without a shell. ``threads`` limits the CPU threads (see
    ``cnnlite.backend.cpu_threads``).
    """
    with cpu_threads(threads):
        started = time.perf_counter()
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise OpError(f"the output folder {out} is a file; name a folder (it is created "
                          f"when missing)")
        check_device(device)  # before minutes of data loading, not after
        seed_everything(seed)
        augment_rng = np.random.default_rng(seed)
        input_size = models.input_size(model)
        data = load_datasets(dataset, input_size, data_root, download, val_fraction,
                             augment_rng)
        net = models.get_model(model, num_classes=data.classes, in_channels=data.channels)
        train_loader = DataLoader(data.train, batch_size=batch_size, shuffle=True, seed=seed,
                                  device=device)
        val_loader = (DataLoader(data.val, batch_size=256, device=device)
                      if data.val is not None else None)
        test_loader = DataLoader(data.test, batch_size=256, device=device)
        opt = build_optimizer(optimizer, net, lr, momentum, weight_decay)
        sched = build_schedule(schedule, opt, epochs * len(train_loader))
        print(f"{model} on {dataset}: {len(data.train)} training, "
              f"{len(data.val) if data.val is not None else 0} validation and {len(data.test)} "
              f"test images; {sum(p.size for p in net.parameters()):,} parameters; "
              f"{optimizer}, lr {lr}, batch size {batch_size}, epochs: {epochs}, "
              f"device: {device}", flush=True)

        history = fit(net, train_loader, val_loader, opt, sched, epochs=epochs, device=device,
                      checkpoint=out / "checkpoint.npz", resume=resume, seed=None,
                      inference=inference_record(model, data.classes,
                                                 preprocessing_for(dataset, input_size)),
                      detect_anomaly=detect_anomaly, progress=progress, schedule_per="step",
                      log=lambda line: print(line, flush=True))
        test = evaluate(net, test_loader, device=device)
        seconds = time.perf_counter() - started
        _write_results(out, history, test, seconds, model=model, dataset=dataset,
                       epochs=epochs, seed=seed)
        return RunResult(history, test.top1, test.top5, seconds, out)


# The demo's settings: LeNet-5 (ReLU, max pooling) on the digits brought to 32x32, SGD with
# Nesterov momentum and a cosine schedule, one CPU thread. Reaches about 98-99% test accuracy.
DEMO_SETTINGS = dict(model="lenet5", dataset="digits", epochs=20, lr=0.05, batch_size=32,
                     optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="cosine",
                     device="cpu", val_fraction=0.1, threads=1)


def run_demo(out="runs/demo", epochs=None, seed=0, progress=True) -> RunResult:
    """The main job: train LeNet-5 on the digits on the CPU and report the test accuracy."""
    settings = dict(DEMO_SETTINGS, out=out, seed=seed, progress=progress)
    if epochs is not None:
        settings["epochs"] = epochs
    return run_training(**settings)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error reported in one line (as cnnlite's other errors are)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from cnnlite import __version__

    parser = _Parser(
        prog="cnnlite", description="cnnlite: a small, readable CNN framework for learning.")
    parser.add_argument("--version", action="version", version=f"cnnlite {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="train LeNet-5 on the 8x8 digits (the main job)",
                               description=run_demo.__doc__)
    demo.add_argument("--out", default="runs/demo", help="folder for the checkpoint, the "
                      "curves and results.json (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=DEMO_SETTINGS["epochs"],
                      help="at least 1 (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="an int >= 0 (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")

    train = commands.add_parser("train", help="train a model on a data set")
    train.add_argument("--model", default="lenet5", choices=models.list_models())
    train.add_argument("--dataset", default="digits", choices=DATASETS)
    train.add_argument("--data-root", default="data",
                       help="folder with the MNIST / CIFAR-10 files (default: %(default)s)")
    train.add_argument("--download", action="store_true",
                       help="download a missing MNIST / CIFAR-10 into --data-root")
    train.add_argument("--epochs", type=int, default=10, help="at least 1 (default: %(default)s)")
    train.add_argument("--lr", type=float, default=0.05, help="(default: %(default)s)")
    train.add_argument("--batch-size", type=int, default=32,
                       help="at least 1 (default: %(default)s)")
    train.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"))
    train.add_argument("--momentum", type=float, default=0.9, help="SGD's (default: %(default)s)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="(default: %(default)s)")
    train.add_argument("--schedule", default="cosine", choices=("none", "cosine", "linear"),
                       help="learning-rate policy over the whole run (default: %(default)s)")
    train.add_argument("--val-fraction", type=float, default=0.1,
                       help="share of the training split used for validation, in [0, 1) "
                            "(default: %(default)s)")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument("--resume", default=None, metavar="PATH",
                       help="continue from this checkpoint; keep the other arguments as they "
                            "were (--epochs too: the schedule spans the whole run)")
    train.add_argument("--out", default="runs/train", help="(default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="an int >= 0 (default: %(default)s)")
    train.add_argument("--threads", type=int, default=None,
                       help="CPU threads for BLAS and the kernels (default: one per core; "
                            "1 is fastest for small models)")
    train.add_argument("--detect-anomaly", action="store_true",
                       help="name the first layer whose output becomes NaN/inf")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    models_command = commands.add_parser(
        "models", help="list the models get_model knows; --compare: their counts beside the "
                       "published figures")
    models_command.add_argument("names", nargs="*", metavar="MODEL",
                                help="only these models (default: all)")
    models_command.add_argument("--compare", action="store_true",
                                help="parameters and multiply-adds counted by cnnlite beside "
                                     "the reference figures, and the published accuracy")
    models_command.add_argument("--lecture", action="store_true",
                                help="the lecture slides' figures (shapes, parameters, "
                                     "multiply-adds, receptive fields) recounted exactly")
    summary = commands.add_parser("summary", help="per-layer table of a model: output shapes, "
                                                  "parameters, multiply-adds, receptive fields")
    summary.add_argument("model", metavar="MODEL")
    summary.add_argument("--input", default=None, metavar="C,H,W",
                         help="input shape (default: 3 channels at the model's own size)")
    predict_command = commands.add_parser(
        "predict", help="classify image files with a trained model's checkpoint",
        description="Print the most probable classes of each image (PNG, JPEG, ...), prepared "
                    "as the model's training images were (see cnnlite.predict).")
    predict_command.add_argument(
        "checkpoint", metavar="CHECKPOINT",
        help="a checkpoint of cnnlite train or demo (runs/demo/checkpoint.npz)")
    predict_command.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict_command.add_argument(
        "--top", type=int, default=5,
        help="classes shown per image, at least 1 (default: %(default)s)")
    commands.add_parser("info", help="versions, threading layer, BLAS, CPU and GPU of this "
                                     "installation (paste it into a bug report)")
    add_sweep_commands(commands)
    # Imported here, not at the top: the assignment tools are only needed by this parser and
    # by the command itself (``cnnlite assignment make|check``).
    from cnnlite.assignment.cli import add_assignment_commands

    add_assignment_commands(commands)
    return parser


def _input_shape(text: str | None, model: str) -> tuple:
    """``--input C,H,W`` as a tuple; default: the input the model was built for."""
    if text is None:
        built_for = models.entry(model)
        return (built_for.in_channels, *built_for.input_size)
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise OpError(f"--input: expected three positive sizes C,H,W such as 3,224,224, got "
                      f"{text!r}")
    return shape


def model_summary(model: str, input_text: str | None) -> str:
    """The text of ``cnnlite summary MODEL``."""
    from cnnlite.summary import summary

    net = models.get_model(model)
    return str(summary(net, _input_shape(input_text, model)))


def model_list(names: list, compare: bool, lecture: bool = False) -> str:
    """The text of ``cnnlite models``: the names; with ``--compare`` the counts table; with
    ``--lecture`` the slides' figures recounted."""
    from cnnlite.models.counts import compare_counts, format_comparison
    from cnnlite.models.lecture import format_figures, lecture_figures

    if lecture:
        return format_figures(lecture_figures())
    for name in names:
        models.entry(name)  # an unknown name fails here, with the close names
    if not compare:
        return "\n".join(names or models.list_models())
    known = [name for name in names or models.list_models() if name in models.REFERENCES]
    return format_comparison(compare_counts(known))


def format_predictions(images: list, predictions: list) -> str:
    """The text of ``cnnlite predict``: one line per image, ``digit.png: 3 97.2%, 8 1.5%``."""
    return "\n".join(f"{image}: " + ", ".join(f"{name} {100 * probability:.1f}%"
                                             for name, probability in classes)
                     for image, classes in zip(images, predictions))


# What each numeric option must be, checked by cnnlite.validate before anything is loaded:
# option -> (its words in a message, the check, its bounds).
_OPTION_CHECKS = {
    "epochs": ("the number of epochs", integer, dict(minimum=1)),
    "seed": ("the seed", integer, dict(minimum=0, maximum=None)),
    "batch_size": ("the batch size", integer, dict(minimum=1)),
    "threads": ("the number of threads", integer, dict(minimum=1)),
    "lr": ("the learning rate", real, dict(minimum=0.0)),
    "momentum": ("the momentum", real, dict(minimum=0.0)),
    "weight_decay": ("the weight decay", real, dict(minimum=0.0)),
    "val_fraction": ("the validation fraction", real, dict(minimum=0.0, below=1.0)),
    "top": ("the number of classes shown", integer, dict(minimum=1)),
}


def check_options(args: argparse.Namespace) -> None:
    """Raise ``OpError`` for the first numeric option out of its range, as
    ``--epochs: the number of epochs must be >= 1, got 0``."""
    for option, (words, check, bounds) in _OPTION_CHECKS.items():
        value = getattr(args, option, None)
        if value is not None:
            check(f"--{option.replace('_', '-')}", words, value, **bounds)


# The errors a user can cause (bad options, missing or damaged files, a GPU that is not there,
# a diverging run, a batch too large for memory): reported in one line, exit status 2.
USER_ERRORS = (CheckpointError, AnomalyError, DeviceError, OpError, DataFileError,
               StateDictError, OSError, MemoryError, models.UnknownModelError)


def _one_line(error: BaseException) -> str:
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv=None) -> int:
    """Run the command in ``argv`` (default: the command line); returns the exit status:
    0 on success, 2 for any error the user can fix (one line on stderr, no traceback),
    130 when interrupted. Without a command it prints the help."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        check_options(args)
        if args.command == "demo":
            run_demo(out=args.out, epochs=args.epochs, seed=args.seed,
                     progress=not args.no_progress)
        elif args.command == "train":
            run_training(model=args.model, dataset=args.dataset, epochs=args.epochs,
                         lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                         momentum=args.momentum, weight_decay=args.weight_decay,
                         schedule=args.schedule, device=args.device, resume=args.resume,
                         out=args.out, seed=args.seed, data_root=args.data_root,
                         download=args.download, val_fraction=args.val_fraction,
                         detect_anomaly=args.detect_anomaly, progress=not args.no_progress,
                         threads=args.threads)
        elif args.command == "info":
            print(format_report())
        elif args.command == "summary":
            print(model_summary(args.model, args.input))
        elif args.command == "sweep":
            run_sweep_command(args)
        elif args.command == "predict":
            print(format_predictions(args.images, predict(args.checkpoint, args.images,
                                                          top=args.top)))
        elif args.command == "assignment":
            from cnnlite.assignment.cli import run_assignment_command

            return run_assignment_command(args)
        else:
            print(model_list(args.names, args.compare, args.lecture))
    except USER_ERRORS as error:
        hint = (" (on the command line: --download)"
                if isinstance(error, FileNotFoundError) and "download=True" in str(error) else "")
        print(f"cnnlite {args.command}: error: {_one_line(error)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = Path(getattr(args, "out", ".")) / "checkpoint.npz"
        how = (f"; continue with the same arguments and --resume {saved}"
               if args.command == "train" and saved.exists() else "")
        print(f"cnnlite {args.command}: interrupted{how}", file=sys.stderr)
        return 130  # the shell's status for a program stopped by Ctrl-C
    return 0
