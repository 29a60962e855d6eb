"""The ``cnnlite`` command turns every user error into one line on stderr and exit status 2,
never a traceback; ``cnnlite`` alone prints the help, ``cnnlite --version`` the version."""
import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlite as cl
from cnnlite.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def command(*argv, timeout=120):
    """``python -m cnnlite *argv`` in a child process: what a user sees."""
    return subprocess.run([sys.executable, "-m", "cnnlite", *argv], capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))


def short_run(out, *extra):
    return ["train", "--dataset", "digits", "--epochs", "1", "--threads", "1", "--out", str(out),
            "--no-progress", *extra]


def assert_one_error_line(err, prefix):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err


BAD_OPTIONS = {
    "--epochs 0": (["--epochs", "0"], "--epochs: the number of epochs must be >= 1, got 0"),
    "--epochs -3": (["--epochs", "-3"], "--epochs: the number of epochs must be >= 1"),
    "--lr -0.1": (["--lr", "-0.1"], "--lr: the learning rate must be >= 0.0, got -0.1"),
    "--lr nan": (["--lr", "nan"], "--lr: the learning rate must be finite"),
    "--lr inf": (["--lr", "inf"], "--lr: the learning rate must be finite"),
    "--seed -1": (["--seed", "-1"], "--seed: the seed must be >= 0, got -1"),
    "--batch-size 0": (["--batch-size", "0"], "--batch-size: the batch size must be >= 1"),
    "--val-fraction 1": (["--val-fraction", "1"], "--val-fraction: the validation fraction "
                                                  "must be < 1.0"),
    "--val-fraction -0.1": (["--val-fraction", "-0.1"], "--val-fraction: the validation "
                                                        "fraction must be >= 0.0"),
    "--val-fraction nan": (["--val-fraction", "nan"], "--val-fraction: the validation fraction "
                                                      "must be finite"),
    "--threads 0": (["--threads", "0"], "--threads: the number of threads must be >= 1"),
    "--momentum -1": (["--momentum", "-1"], "--momentum: the momentum must be >= 0.0"),
    "--weight-decay -1": (["--weight-decay", "-1"], "--weight-decay: the weight decay must be"),
}


@pytest.mark.parametrize("option, message", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_a_train_option_out_of_range_is_one_line_and_status_2(tmp_path, capsys, option, message):
    assert main(short_run(tmp_path, *option)) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, f"cnnlite train: error: {message}")
    assert not any(tmp_path.iterdir())                         # refused before any work


@pytest.mark.parametrize("option, message", [
    (["--epochs", "0"], "--epochs: the number of epochs must be >= 1"),
    (["--seed", "-1"], "--seed: the seed must be >= 0"),
])
def test_a_demo_option_out_of_range_is_one_line_and_status_2(tmp_path, capsys, option, message):
    assert main(["demo", "--out", str(tmp_path), "--no-progress", *option]) == 2
    assert_one_error_line(capsys.readouterr().err, f"cnnlite demo: error: {message}")


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--epochs", "many"], "argument --epochs: invalid int value: 'many'"),
    (["train", "--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["train", "--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["fly"], "argument COMMAND: invalid choice: 'fly'"),
])
def test_a_malformed_command_line_is_one_line_and_status_2(capsys, argv, fragment):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "cnnlite")
    assert fragment in err and "--help" in err


def test_a_missing_data_set_is_one_line_and_status_2(tmp_path, capsys):
    assert main(short_run(tmp_path, "--dataset", "mnist", "--data-root", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "cnnlite train: error: MNIST: cannot find")
    assert "--download" in err


def test_a_damaged_data_file_is_named_in_one_line_with_status_2(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    pixels = gzip.compress(b"\x00\x00\x08\x03" + os.urandom(4000))
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (root / name).write_bytes(pixels[:len(pixels) // 2])       # a download cut short
    assert main(short_run(tmp_path / "out", "--dataset", "mnist", "--data-root", str(root))) == 2
    assert_one_error_line(capsys.readouterr().err,
                          f"cnnlite train: error: {root / 'train-images-idx3-ubyte.gz'}: cannot "
                          f"be decompressed")


def test_a_checkpoint_with_a_bad_hyper_parameter_is_one_line_and_status_2(tmp_path, capsys):
    from cnnlite import checkpoint
    source = tmp_path / "source"
    assert main(short_run(source)) == 0
    state = checkpoint.load(source / "checkpoint.npz")
    state["optimizer"]["param_groups.0.lr"] = float("nan")
    checkpoint.save(tmp_path / "bad.npz", state)
    capsys.readouterr()
    assert main(short_run(tmp_path / "run", "--resume", str(tmp_path / "bad.npz"))) == 2
    assert_one_error_line(capsys.readouterr().err,
                          f"cnnlite train: error: {tmp_path / 'bad.npz'}: could not restore")


def test_an_output_folder_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    assert main(short_run(taken)) == 2
    assert_one_error_line(capsys.readouterr().err,
                          f"cnnlite train: error: the output folder {taken} is a file")
    assert taken.read_text() == "keep me"


def test_resuming_from_a_folder_says_it_is_a_folder(tmp_path, capsys):
    assert main(short_run(tmp_path / "run", "--resume", str(tmp_path))) == 2
    assert_one_error_line(capsys.readouterr().err,
                          f"cnnlite train: error: {tmp_path}: a folder, not a checkpoint file")


def test_the_bare_command_prints_the_help_and_succeeds():
    result = command()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cnnlite") and "demo" in result.stdout
    assert result.stderr == ""


def test_version_prints_the_version():
    result = command("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cnnlite {cl.__version__}"


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--epochs", "x"],
                                  ["train", "--lr", "-1", "--seed", "-5"]])
def test_the_real_command_shows_no_traceback(argv):
    result = command(*argv)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, "cnnlite")
    assert result.stdout == ""
