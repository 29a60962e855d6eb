"""Sweep files: a baseline and the changes to try, one axis at a time, in TOML.

A sweep file reads::

    name = "activations"                 # optional; the file's name without .toml otherwise
    description = "Mishkin et al., table 2"

    [baseline]                           # every run starts from these settings
    model = "caffenet128"                # or a name from cnnlite.models.list_models(), or a
    dataset = "digits"                   #   .prototxt file; digits | mnist | cifar10 | a folder
    epochs = 10
    batch_size = 64
    lr = 0.01
    seeds = [0, 1, 2]                    # every variant runs once per seed
    width = 0.25                         # caffenet128 only: its axes and sizes
    input_size = 128

    [[variation]]                        # one axis changed, everything else as the baseline
    name = "non-linearity"
    axis = "activation"
    values = ["tanh", "vlrelu", "elu"]

    [grid]                               # or every combination of several axes
    activation = ["relu", "elu"]
    batch_norm = ["none", "after"]

A run is the baseline with one change (or one grid point) and one seed; the baseline itself
runs too. Its ``config`` is the complete dict of settings, and its id the first 16 hex
digits of the SHA-256 of that dict as canonical JSON: the same settings give the same id in
any file, in any key order, on any machine, which is how a database knows a run it has done.
Varying ``batch_size`` scales the learning rate with it (``lr * batch_size / baseline
batch_size``), as the paper did.

Everything is checked before any run starts: unknown keys, values outside their choices, and
combinations that cannot be built (an axis of caffenet128 on another model, stochastic
pooling after an activation with negative outputs, an input too small for the structure).
Errors name the file, the line where the line can be found, the key and the allowed values.
"""
from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnlite import models
from cnnlite.errors import OpError
from cnnlite.experiments import caffenet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

__all__ = ["SweepFileError", "Run", "Sweep", "load_sweep", "parse_sweep", "run_id",
           "check_config", "DEFAULTS", "CAFFENET_DEFAULTS", "AXES", "DATASETS", "OPTIMIZERS",
           "LR_POLICIES", "INITS", "DATASET_IMAGE_SIZES"]

CAFFENET = "caffenet128"
DATASETS = ("digits", "mnist", "cifar10")
#: The side of each data set's images, from which the input size is reached.
DATASET_IMAGE_SIZES = {"digits": 8, "mnist": 28, "cifar10": 32}
OPTIMIZERS = ("sgd", "nesterov", "adam")
#: "step": x0.1 after 100/320 and 200/320 and 300/320 of the run, like the paper's 100K steps
#: of 320K; the others are Caffe's poly with power 1, 2 and 0.5; "fixed" keeps the rate.
LR_POLICIES = ("step", "linear", "square", "sqrt", "fixed")
INITS = ("default", "lsuv")

#: The settings of every model, with their defaults.
DEFAULTS = dict(model=CAFFENET, dataset="digits", data_root="data", download=False, epochs=10,
                batch_size=64, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                lr_policy="step", init="default", val_fraction=0.1, train_samples=0,
                input_size=0)
#: The settings of caffenet128 alone (its axes), with the defaults of the paper's baseline.
CAFFENET_DEFAULTS = dict(width=1.0, activation="relu", batch_norm="none", pooling="max",
                         colour="rgb", dropout=0.5)
#: The settings a variation or a grid may change (the data's location and the seeds stay).
AXES = tuple(key for key in (*DEFAULTS, *CAFFENET_DEFAULTS)
             if key not in ("data_root", "download"))
_TOP_LEVEL = ("name", "description", "baseline", "variation", "grid")
_VARIATION_KEYS = ("name", "axis", "values")


class SweepFileError(OpError):
    """A sweep file that cannot be run: its message names the file, the key and what is
    allowed."""


def _choice(allowed):
    def check(value):
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    return check


def _number(kind, minimum=None, above=None, below=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"must be {'an integer' if kind is int else 'a number'}, got "
                             f"{value!r}")
        if ((minimum is not None and value < minimum) or (above is not None and value <= above)
                or (below is not None and value >= below)):
            bounds = [f">= {minimum}" if minimum is not None else "",
                      f"> {above}" if above is not None else "",
                      f"< {below}" if below is not None else ""]
            raise ValueError(f"must be {' and '.join(b for b in bounds if b)}, got {value!r}")
        return float(value) if kind is not int else value
    return check


def _string(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _switch(value):
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


_REAL = (int, float)
#: key -> the check of one value (raises ValueError with the words after "key ...").
_CHECKS = dict(
    model=_string, dataset=_string, data_root=_string, download=_switch,
    epochs=_number(int, minimum=1), batch_size=_number(int, minimum=1),
    lr=_number(_REAL, above=0), optimizer=_choice(OPTIMIZERS),
    momentum=_number(_REAL, minimum=0, below=1), weight_decay=_number(_REAL, minimum=0),
    lr_policy=_choice(LR_POLICIES), init=_choice(INITS),
    val_fraction=_number(_REAL, minimum=0, below=1), train_samples=_number(int, minimum=0),
    input_size=_number(int, minimum=0), width=_number(_REAL, above=0),
    activation=_choice(caffenet.ACTIVATIONS), batch_norm=_choice(caffenet.BATCH_NORM),
    pooling=_choice(caffenet.POOLINGS), colour=_choice(caffenet.COLOURS),
    dropout=_number(_REAL, minimum=0, below=1),
)
_BASELINE_KEYS = (*DEFAULTS, *CAFFENET_DEFAULTS, "seeds")


def run_id(config: dict) -> str:
    """The id of a run: 16 hex digits of the SHA-256 of ``config`` as canonical JSON (keys
    sorted, no spaces), so the same settings always get the same id."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    """One training run of a sweep.

    group : the variation's name ("baseline" for the baseline, "grid" for grid points).
    variant : the change, as ``axis=value`` ("baseline" for none).
    changes : the settings that differ from the baseline, ``{axis: value}``.
    config : every setting of the run, the seed included; ``run_id`` hashes it.
    """

    group: str
    variant: str
    changes: dict
    seed: int
    config: dict

    @property
    def run_id(self) -> str:
        return run_id(self.config)


@dataclass
class Sweep:
    """A parsed sweep file: its name, text, baseline settings, seeds and runs (in order, each
    run id once)."""

    name: str
    source: str
    text: str
    baseline: dict
    seeds: list
    description: str = ""
    runs: list = field(default_factory=list)


def load_sweep(path) -> Sweep:
    """Read and check the sweep file at ``path`` (see the module's docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SweepFileError(f"{path}: cannot read the sweep file ({error.strerror or error})"
                             ) from None
    return parse_sweep(text, str(path))


class _Locator:
    """Finds the line of a key in the text, for error messages (TOML parsers do not keep
    lines): the first assignment to the key after the header of its table."""

    def __init__(self, text: str, source: str):
        self.lines, self.source = text.splitlines(), source

    def line(self, key: str | None, header: str | None = None, occurrence: int = 1) -> int | None:
        start = 0
        if header is not None:
            pattern = re.compile(r"^\s*" + re.escape(header) + r"\s*(#.*)?$")
            found = [i for i, line in enumerate(self.lines) if pattern.match(line)]
            if len(found) < occurrence:
                return None
            start = found[occurrence - 1]
            if key is None:
                return start + 1
        assignment = re.compile(r"^\s*[\"']?" + re.escape(str(key)) + r"[\"']?\s*=")
        for index in range(start, len(self.lines)):
            if index > start and header is not None and self.lines[index].lstrip().startswith("["):
                break
            if assignment.match(self.lines[index]):
                return index + 1
        return None

    def error(self, message: str, key=None, header=None, occurrence=1) -> SweepFileError:
        line = self.line(key, header, occurrence) if (key or header) else None
        where = f"{self.source}, line {line}" if line else self.source
        return SweepFileError(f"{where}: {message}")


def _check_keys(table: dict, allowed, where: str, locator, header, occurrence=1) -> None:
    for key in table:
        if key not in allowed:
            raise locator.error(f"{where}: unknown key {key!r}; allowed: "
                                f"{', '.join(allowed)}", key, header, occurrence)


def _checked_value(key, value, where, locator, header, occurrence=1):
    try:
        return _CHECKS[key](value)
    except ValueError as error:
        raise locator.error(f"{where}: {key} {error}", key, header, occurrence) from None


def parse_sweep(text: str, source: str = "<sweep>") -> Sweep:
    """Parse and check a sweep file's ``text``; ``source`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SweepFileError(f"{source}: not valid TOML: {error}") from None
    locate = _Locator(text, source)
    _check_keys(document, _TOP_LEVEL, "top level", locate, None)
    if not isinstance(document.get("baseline"), dict):
        raise locate.error("a [baseline] table is required (the settings every run starts "
                           "from)")
    baseline_table = dict(document["baseline"])
    _check_keys(baseline_table, _BASELINE_KEYS, "[baseline]", locate, "[baseline]")
    seeds = baseline_table.pop("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or len(set(map(repr, seeds))) != len(seeds)
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
        raise locate.error(f"[baseline]: seeds must be a non-empty list of distinct integers "
                           f">= 0, got {seeds!r}", "seeds", "[baseline]")
    baseline = {key: _checked_value(key, value, "[baseline]", locate, "[baseline]")
                for key, value in baseline_table.items()}
    name = document.get("name", Path(source).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.+-]+", name):
        raise locate.error(f"name must be letters, digits, '_', '-', '.' or '+', got {name!r}",
                           "name")
    sweep = Sweep(name, source, text, baseline, seeds, str(document.get("description", "")))
    changes = [("baseline", "baseline", {})]
    changes += _variations(document.get("variation", []), locate)
    changes += _grid(document.get("grid"), locate)
    seen = set()
    for group, variant, change in changes:
        settings = _settings(baseline, change)
        for seed in seeds:
            run = Run(group, variant, change, seed, {**settings, "seed": seed})
            problem = check_config(run.config)
            if problem:
                raise SweepFileError(f"{source}: {group}, {variant} (seed {seed}): {problem}")
            if run.run_id not in seen:
                seen.add(run.run_id)
                sweep.runs.append(run)
    return sweep


def _variations(entries, locate) -> list:
    if not isinstance(entries, list):
        raise locate.error("variation must be written as [[variation]] tables", "variation")
    changes = []
    for number, entry in enumerate(entries, 1):
        where, header = f"[[variation]] {number}", "[[variation]]"
        _check_keys(entry, _VARIATION_KEYS, where, locate, header, number)
        axis, values = entry.get("axis"), entry.get("values")
        if axis not in AXES:
            raise locate.error(f"{where}: axis must be one of {', '.join(AXES)}, got {axis!r}",
                               "axis" if "axis" in entry else None, header, number)
        if not isinstance(values, list) or not values:
            raise locate.error(f"{where}: values must be a non-empty list, got {values!r}",
                               "values" if "values" in entry else None, header, number)
        group = entry.get("name", axis)
        for value in values:
            value = _checked_value(axis, value, where, locate, header, number)
            changes.append((group, f"{axis}={value}", {axis: value}))
    return changes


def _grid(table, locate) -> list:
    if table is None:
        return []
    if not isinstance(table, dict) or not table:
        raise locate.error("[grid] must be a table of axis = [values]", "grid")
    axes = list(table)
    _check_keys(table, AXES, "[grid]", locate, "[grid]")
    for axis, values in table.items():
        if not isinstance(values, list) or not values:
            raise locate.error(f"[grid]: {axis} must be a non-empty list, got {values!r}",
                               axis, "[grid]")
    checked = [[_checked_value(axis, value, "[grid]", locate, "[grid]")
                for value in table[axis]] for axis in axes]
    return [("grid", ", ".join(f"{axis}={value}" for axis, value in zip(axes, point)),
             dict(zip(axes, point))) for point in itertools.product(*checked)]


def _settings(baseline: dict, change: dict) -> dict:
    """The complete settings of a run: defaults, then the baseline, then the change (and the
    learning rate scaled with a changed batch size)."""
    model = change.get("model", baseline.get("model", DEFAULTS["model"]))
    defaults = {**DEFAULTS, **(CAFFENET_DEFAULTS if model == CAFFENET else {})}
    settings = {**defaults, **baseline, **change}
    if "batch_size" in change and "lr" not in change:
        base_batch = baseline.get("batch_size", DEFAULTS["batch_size"])
        settings["lr"] = settings["lr"] * change["batch_size"] / base_batch
    return settings


def _data_image_size(dataset: str) -> int | None:
    """The side of the data set's images (None for a folder: its images are resized)."""
    if dataset in DATASET_IMAGE_SIZES:
        return DATASET_IMAGE_SIZES[dataset]
    if not Path(dataset).is_dir():
        raise OpError(f"dataset must be one of {', '.join(DATASETS)} or a folder of class "
                      f"folders, got {dataset!r} (no folder {Path(dataset).resolve()})")
    return None


def check_config(config: dict) -> str | None:
    """What makes a run's settings impossible, in words, or None when it can run.

    Relative paths (a data folder, a .prototxt) are found from the working directory.
    """
    model = config["model"]
    caffenet_keys = [key for key in CAFFENET_DEFAULTS if key in config]
    try:
        image_size = _data_image_size(config["dataset"])
        if model == CAFFENET:
            caffenet.check_axes(config["input_size"] or 128, config["activation"],
                                config["batch_norm"], config["pooling"], config["colour"])
        elif caffenet_keys:
            return (f"{caffenet_keys[0]} is an axis of model {CAFFENET!r} only (allowed for "
                    f"model {model!r}: {', '.join(k for k in DEFAULTS if k != 'model')})")
        elif model.endswith(".prototxt"):
            _check_prototxt(Path(model))
        else:
            models.entry(model)
        input_size = config["input_size"] or _model_input_size(model)
        if image_size is not None and not (input_size % image_size == 0 or (
                input_size >= image_size and (input_size - image_size) % 2 == 0)):
            return (f"input_size {input_size} cannot be reached from the {image_size}x"
                    f"{image_size} images of {config['dataset']}: use a multiple of "
                    f"{image_size} (pixels repeated) or {image_size} + an even number (zeros "
                    f"padded on every side)")
    except (OpError, KeyError) as error:
        return str(error.args[0]) if isinstance(error, KeyError) else str(error)
    if config["train_samples"] and config["batch_size"] > config["train_samples"]:
        return (f"batch_size {config['batch_size']} is larger than train_samples "
                f"{config['train_samples']}: no full batch would ever be drawn")
    return None


def _model_input_size(model: str) -> int:
    if model == CAFFENET or model.endswith(".prototxt"):
        return 128
    return models.input_size(model)[0]


def _check_prototxt(path: Path) -> None:
    if not path.is_file():
        raise OpError(f"model: no prototxt file {path.resolve()}")
    try:
        importlib.import_module("cnnlite.io.caffe").load_prototxt
    except (ImportError, AttributeError):
        raise OpError(f"model: {path} needs cnnlite.io.caffe.load_prototxt, which this "
                      f"installation does not have; use a cnnlite model") from None
