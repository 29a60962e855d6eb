"""The README runs as written: every ```python block runs (each in a fresh namespace, in a
temporary working directory, since blocks write files), every command it shows exists with the
options it shows, and it links the notebooks in their order."""
import argparse
import importlib
import importlib.metadata
import importlib.util
import re
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from cnnlite.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# A block that imports PyTorch is skipped without it (the README says which lines need it).
# Without a working torchvision, the test stands in for it: the ResNet-18 that the model tests
# write from torchvision's definition (the same modules, state-dict keys and outputs).
OPTIONAL_PACKAGES = ("torch", "torchvision")

NOTEBOOKS = ["01_autograd_from_scratch.ipynb", "02_convolution.ipynb",
             "03_backprop_step_by_step.ipynb", "04_gradient_checking.ipynb",
             "05_batch_norm_and_lrn.ipynb", "06_classic_architectures.ipynb",
             "07_initialisation_and_lsuv.ipynb", "08_training_lenet5.ipynb",
             "09_cuda_kernels.ipynb"]


def _blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block in ``language``."""
    found = []
    for match in re.finditer(rf"^```{language}\n(.*?)^```", README, re.M | re.S):
        found.append((README.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


PYTHON_BLOCKS = _blocks("python")
BASH_BLOCKS = _blocks("bash")


def _imported_packages(code: str) -> set[str]:
    return set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, re.M))


def _unavailable(package: str) -> str | None:
    """Why ``package`` cannot be imported here (None when it can)."""
    try:
        importlib.import_module(package)
    except Exception as error:  # a broken install raises more than ImportError
        return f"{type(error).__name__}: {error}"
    return None


# What some blocks promise in their comments, checked on the namespace they leave behind.
def _first_look(names, printed):
    assert names["x"].grad.shape == (2, 3, 8, 8)
    assert printed.splitlines()[-1] == "True"


def _stepper(names, printed):
    steps = [line for line in printed.splitlines() if line.startswith("<")]
    assert len(steps) == 2 and "Sum" in steps[0] and "Mul" in steps[1]
    np.testing.assert_array_equal(names["a"].grad, [4.0, 5.0, 6.0])
    assert Path("graph.svg").exists()


def _square(names, printed):
    gradient, checked = printed.splitlines()
    assert gradient == "[ 2. -4.  6.]" and checked == "True"


def _training(names, printed):
    assert len(names["history"].train_loss) == 5
    assert Path("run.npz").exists() and Path("curves.png").exists()


def _zoo(names, printed):
    assert "25,557,032" in printed  # ResNet-50's parameters, as published


def _torch(names, printed):
    assert printed.strip() == "None"


PROMISES = {"cl.gradcheck(lambda x, w": _first_look, "iter_backward(loss": _stepper,
            "class Square(Function)": _square, "cl.train.fit(": _training,
            'get_model("resnet50")': _zoo, "torch.save(": _torch}


def _stand_in_torchvision(monkeypatch) -> None:
    from test_models_resnet import torch_reference

    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.SimpleNamespace(resnet18=lambda: torch_reference("resnet18"))
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)


@pytest.mark.parametrize("line, code", PYTHON_BLOCKS,
                         ids=[f"line {line}" for line, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_written(line, code, tmp_path, monkeypatch, capsys):
    needed = _imported_packages(code) & set(OPTIONAL_PACKAGES)
    if "torch" in needed and _unavailable("torch"):
        pytest.skip(f"README.md line {line} needs PyTorch ({_unavailable('torch')})")
    if "torchvision" in needed and _unavailable("torchvision"):
        _stand_in_torchvision(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    names = {"__name__": "__readme__"}
    exec(compile(code, f"README.md, block at line {line}", "exec"), names)
    printed = capsys.readouterr().out
    for marker, promise in PROMISES.items():
        if marker in code:
            promise(names, printed)


def test_every_promise_names_a_block():
    """A reworded block must not silently lose its check."""
    for marker in PROMISES:
        assert any(marker in code for _, code in PYTHON_BLOCKS), marker


# --- commands ---------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _command_parser(words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser that ``cnnlite WORDS...`` reaches, and the words after its name."""
    parser, rest = build_parser(), list(words)
    while rest and rest[0] in _subcommands(parser):
        parser = _subcommands(parser)[rest.pop(0)]
    return parser, rest


def _check_cnnlite_words(words: list[str], text: str) -> None:
    """The sub-command exists and knows every option named (placeholders such as SRC or
    ``[--workers N | ...]`` are allowed around them)."""
    parser, rest = _command_parser(words)
    if _subcommands(parser) and rest and not rest[0].startswith("-"):
        raise AssertionError(f"README: {text!r}: {parser.prog} has no command {rest[0]!r}")
    for word in rest:
        option = word.strip("[]|").split("=")[0]
        if option.startswith("--"):
            assert option in parser._option_string_actions, \
                f"README: {text!r}: {parser.prog} has no option {option}"


def _check_command(command: str) -> None:
    words = shlex.split(command, comments=True)
    program, arguments = words[0], words[1:]
    if program == "cnnlite":
        _check_cnnlite_words(arguments, command)
        build_parser().parse_args(arguments)  # concrete values too (an unknown --model exits)
    elif program == "pip":
        extras = set(importlib.metadata.metadata("cnnlite").get_all("Provides-Extra") or ())
        assert arguments[:2] == ["install", "-e"], command
        wanted = re.fullmatch(r"\.(?:\[(.*)\])?", arguments[2]).group(1)
        assert set(filter(None, (wanted or "").split(","))) <= extras, command
    elif program == "python":
        assert arguments[0] == "-m" and importlib.util.find_spec(arguments[1]), command
    elif program == "bash":
        assert (ROOT / arguments[0]).is_file(), command
    else:
        raise AssertionError(f"README shows a command this test does not know: {command!r}")


@pytest.mark.parametrize("line, code", BASH_BLOCKS, ids=[f"line {line}" for line, _ in BASH_BLOCKS])
def test_bash_block_names_real_commands_and_options(line, code):
    for command_line in code.strip().splitlines():
        for command in command_line.split("&&"):
            _check_command(command.strip())


def test_inline_commands_name_real_subcommands_and_options():
    spans = re.findall(r"`((?:cnnlite|bash) [^`]*)`", README)
    assert len(spans) >= 8
    for span in spans:
        words = span.split()
        if words[0] == "bash":
            assert (ROOT / words[1]).is_file(), span
        else:
            _check_cnnlite_words(words[1:], span)


def test_the_download_option_is_spelled_as_the_command_spells_it():
    assert "--dataset mnist" in README and "--download" in README
    build_parser().parse_args(["train", "--dataset", "mnist", "--download"])


# --- notebooks and pictures -------------------------------------------------------------------


def test_the_notebooks_are_linked_in_order_with_a_line_each():
    section = README.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    linked = re.findall(r"^\d+\. \[([\w.]+)\]\(notebooks/\1\): \S.*$", section, re.M)
    assert linked == NOTEBOOKS


def test_the_graph_picture_is_there():
    assert "![The graph of a small CNN](docs/graph.png)" in README
    assert (ROOT / "docs" / "graph.png").read_bytes().startswith(b"\x89PNG")


def test_teaching_section_names_the_tools():
    section = README.split("## Teaching with cnnlite", 1)[1].split("\n## ", 1)[0]
    for tool in ("cl.viz.Stepper", "cl.viz.draw_graph", "cnnlite.optable",
                 "cnnlite assignment make layers --out hw1", "cnnlite assignment check hw1"):
        assert tool in section
