"""The ``cnnlite`` command: the demo reaches its promised accuracy, ``train`` trains, resumes
and reports errors; LeNet-5 and the model registry behind them."""
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import checkpoint, models, nn
from cnnlite.cli import main
from cnnlite.data.preprocessing import to_size
from cnnlite.errors import OpError
from cnnlite.train import loop

REPO_ROOT = Path(__file__).resolve().parents[1]

# --- the main job -----------------------------------------------------------------------------


def test_the_demo_reaches_97_percent_test_accuracy_and_writes_its_files(tmp_path, capsys):
    """The full demo, exactly as ``cnnlite demo`` runs it (10-25 s on one busy core), within
    its promised two minutes."""
    started = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    elapsed = time.perf_counter() - started
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    match = re.fullmatch(r"test accuracy: (\d+\.\d)%", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) >= 97.0
    assert "epoch 20/20" in out
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.npz", "curves.png",
                                                     "results.json"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_accuracy"] == pytest.approx(float(match.group(1)) / 100, abs=5e-4)
    assert results["test_samples"] == 359
    assert results["seconds"] < 120 and elapsed < 120
    assert checkpoint.load(tmp_path / "checkpoint.npz")["progress"]["epoch"] == 20


# --- cnnlite train ----------------------------------------------------------------------------

def train_args(out, *extra):
    """A short digits run; later options override earlier ones (argparse keeps the last)."""
    return ["train", "--dataset", "digits", "--epochs", "1", "--batch-size", "16",
            "--threads", "1", "--out", str(out), "--no-progress", *extra]


def test_train_runs_one_short_epoch_on_the_digits(tmp_path, capsys):
    assert main(train_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1  train loss" in out
    assert re.search(r"^test accuracy: \d+\.\d%$", out, re.MULTILINE)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["epochs"] == 1 and len(results["history"]["train_loss"]) == 1
    assert results["test_accuracy"] > 0.5                       # chance: 0.1
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_run_resumed_ends_where_an_uninterrupted_one_ends(tmp_path, capsys,
                                                                        monkeypatch):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(train_args(straight, "--epochs", "2")) == 0

    train_epoch, calls = loop._train_epoch, []

    def ctrl_c_in_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_epoch(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "_train_epoch", ctrl_c_in_the_second_epoch)
        assert main(train_args(interrupted, "--epochs", "2")) == 130
    saved = interrupted / "checkpoint.npz"
    assert f"interrupted; continue with the same arguments and --resume {saved}" in \
        capsys.readouterr().err
    assert main(train_args(interrupted, "--epochs", "2", "--resume", str(saved))) == 0
    assert "resumed from" in capsys.readouterr().out

    a, b = checkpoint.load(straight / "checkpoint.npz"), checkpoint.load(saved)
    for key, value in a["model"].items():
        np.testing.assert_array_equal(value, b["model"][key], err_msg=key)
    for key, value in a["optimizer"].items():
        np.testing.assert_array_equal(value, b["optimizer"][key], err_msg=key)
    assert list(b["history"]["epoch"]) == [1, 2]
    assert b["history"]["train_loss"].tolist() == a["history"]["train_loss"].tolist()


def test_resuming_from_a_missing_checkpoint_fails_with_a_message(tmp_path, capsys):
    missing = tmp_path / "nothing.npz"
    assert main(train_args(tmp_path, "--resume", str(missing))) == 2
    assert f"error: checkpoint {missing} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_resuming_from_a_corrupted_checkpoint_fails_clearly_and_overwrites_nothing(
        tmp_path, capsys, damage):
    saved = tmp_path / "checkpoint.npz"                      # where this run would write
    if damage == "garbage":
        content = b"\x00 these bytes are no checkpoint \xff" * 40
    else:
        checkpoint.save(saved, {"model": {"w": np.arange(2000.0)}, "epoch": 1})
        content = saved.read_bytes()[:1000]
    saved.write_bytes(content)
    assert main(train_args(tmp_path, "--resume", str(saved))) == 2
    err = capsys.readouterr().err
    assert re.search(f"^cnnlite train: error: {re.escape(str(saved))}: .*(damaged|corrupted)",
                     err, re.MULTILINE), err
    assert "pickle" not in err
    assert saved.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]   # no results, no curves


def test_resuming_from_a_checkpoint_of_another_model_shape_fails_clearly_and_overwrites_nothing(
        tmp_path, capsys):
    source, run = tmp_path / "digits", tmp_path / "run"
    assert main(train_args(source)) == 0
    # The same run's checkpoint, but with the weights of LeNet-5 for CIFAR-10's colour images.
    state = checkpoint.load(source / "checkpoint.npz")
    state["model"] = models.get_model("lenet5", in_channels=3).state_dict()
    saved = run / "checkpoint.npz"
    checkpoint.save(saved, state)
    content = saved.read_bytes()
    capsys.readouterr()
    assert main(train_args(run, "--resume", str(saved))) == 2
    err = capsys.readouterr().err
    assert f"cnnlite train: error: {saved}: the checkpoint does not fit the model" in err
    assert "features.0.weight: checkpoint (6, 3, 5, 5) vs model (6, 1, 5, 5)" in err
    assert saved.read_bytes() == content
    assert [p.name for p in run.iterdir()] == ["checkpoint.npz"]


def test_the_learning_rate_option_reaches_the_optimiser(tmp_path, capsys):
    assert main(train_args(tmp_path, "--lr", "0.123")) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["history"]["lr"] == [pytest.approx(0.123)]   # the optimiser's lr at step 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_detect_anomaly_names_the_first_layer_that_overflowed(tmp_path, capsys):
    """A learning rate of 1e20 blows the weights up after one step; without the option the
    error could only suggest it."""
    assert main(train_args(tmp_path, "--lr", "1e20", "--detect-anomaly")) == 2
    err = capsys.readouterr().err
    assert re.search(r"step \d+ .*the loss is nan; the first non-finite output in this step "
                     r"came from 'features\.\d+' \(\w+\)", err), err


def test_a_missing_data_set_says_how_to_get_it(tmp_path, capsys):
    assert main(train_args(tmp_path, "--dataset", "mnist", "--data-root", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert "MNIST: cannot find" in err and "--download" in err


def test_asking_for_a_gpu_that_is_not_there_fails_before_loading_data(tmp_path, capsys):
    if cl.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(train_args(tmp_path, "--device", "cuda")) == 2
    assert "device 'cuda' is not available" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.parametrize("argv", [["train", "--dataset", "imagenet"], ["train", "--model", "x"],
                                  ["train", "--epochs", "many"]])
def test_bad_arguments_exit_with_status_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == models.list_models()


def test_python_dash_m_cnnlite_runs_the_same_command():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-m", "cnnlite", "models"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == models.list_models()


def test_info_names_the_versions_the_threading_layer_in_use_and_the_blas(capsys):
    import numba
    assert main(["info"]) == 0
    report = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    report = {name: value.strip() for name, value in report.items()}
    assert report["cnnlite"].startswith(cl.__version__)
    assert report["numpy"] == np.__version__
    assert report["numba"].startswith(f"{numba.__version__}, threading layer "
                                      f"{numba.threading_layer()}, ")
    assert "blas" in report and "threads" in report["blas"]
    assert {"Python", "CPU", "numba kernel cache", "cupy"} <= set(report)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="TBB wheels exist for x86-64 only")
def test_python_dash_m_cnnlite_info_reports_numba_on_tbb():
    result = subprocess.run([sys.executable, "-m", "cnnlite", "info"], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 0, result.stderr
    (numba_line,) = [line for line in result.stdout.splitlines() if line.startswith("numba:")]
    assert "threading layer tbb" in numba_line


def test_python_dash_m_cnnlite_trains_and_ends_with_the_test_accuracy(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-m", "cnnlite", *train_args(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"test accuracy: \d+\.\d%", result.stdout.strip().splitlines()[-1])
    assert (tmp_path / "results.json").exists()


# --- bringing images to the model's input size ------------------------------------------------

def test_the_8x8_digits_are_upsampled_by_repeating_each_pixel_into_a_4x4_block():
    image = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
    big = to_size((8, 8), (32, 32))(image)
    assert big.shape == (1, 32, 32)
    np.testing.assert_array_equal(big[0, 4:8, 8:12], np.full((4, 4), image[0, 1, 2]))
    np.testing.assert_array_equal(big[:, ::4, ::4], image)


def test_mnist_is_zero_padded_from_28_to_32():
    image = np.ones((1, 28, 28), np.float32)
    padded = to_size((28, 28), (32, 32))(image)
    assert padded.shape == (1, 32, 32)
    assert padded.sum() == 28 * 28 and padded[0, :2].sum() == 0 and padded[0, :, -2:].sum() == 0


def test_images_already_the_right_size_need_no_transform_and_odd_sizes_are_refused():
    assert to_size((32, 32), (32, 32)) is None
    with pytest.raises(OpError, match="cannot bring images of 27x27"):
        to_size((27, 27), (32, 32))


# --- LeNet-5 and the registry -----------------------------------------------------------------

def test_lenet5_maps_32x32_images_to_10_scores_with_61706_parameters():
    model = models.get_model("lenet5")
    logits = model(cl.tensor(np.zeros((2, 1, 32, 32), np.float32)))
    assert logits.shape == (2, 10)
    assert sum(p.size for p in model.parameters()) == 61_706
    assert list(model.state_dict())[:2] == ["features.0.weight", "features.0.bias"]
    assert model.state_dict()["classifier.4.weight"].shape == (10, 84)


def test_the_classic_lenet5_uses_tanh_and_average_pooling():
    model = models.lenet5(classic=True, in_channels=3, num_classes=7)
    kinds = {type(m) for m in model.modules()}
    assert nn.Tanh in kinds and nn.AvgPool2d in kinds and nn.ReLU not in kinds
    assert model(cl.tensor(np.zeros((1, 3, 32, 32), np.float32))).shape == (1, 7)


def test_an_unknown_model_name_lists_the_close_ones():
    with pytest.raises(KeyError, match="unknown model 'lenet7'; did you mean lenet5"):
        models.get_model("lenet7")
    with pytest.raises(KeyError, match="unknown model 'resnet5'; did you mean resnet56, resnet50"):
        models.reference("resnet5")
    assert models.input_size("lenet5") == (32, 32)


def test_summary_prints_the_table_of_a_model(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "features.0" in out and "61,706" in out and "416,520" in out


@pytest.mark.parametrize("argv, message", [
    (["summary", "lenet"], "unknown model 'lenet'; did you mean lenet5"),
    (["summary", "lenet5", "--input", "1,32"], "--input: expected three positive sizes"),
    (["summary", "lenet5", "--input", "1,28,28"], "Linear"),
    (["models", "resnet"], "unknown model 'resnet'"),
])
def test_summary_and_models_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_models_compare_prints_our_counts_beside_the_reference(capsys):
    assert main(["models", "--compare", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "61,706" in out and "416,520" in out and "1 of 1 models have exactly" in out


def test_summary_takes_another_input_size(capsys):
    assert main(["summary", "resnet18", "--input", "3,64,64"]) == 0
    out = capsys.readouterr().out
    assert "input 1x3x64x64, output 1x1000" in out and "11,689,512" in out


# --- a model given an input it cannot take --------------------------------------------------


@pytest.mark.parametrize("name, shape, expected", [
    ("alexnet", (1, 3, 32, 32), "(N, 3, 224, 224)"),
    ("lenet5", (1, 1, 28, 28), "(N, 1, 32, 32)"),
    ("nin", (1, 3, 16, 16), "(N, 3, 224, 224)"),
    ("densenet121", (1, 3, 16, 16), "(N, 3, 224, 224)"),
    ("googlenet", (1, 3, 16, 16), "(N, 3, 224, 224)"),
    ("squeezenet1_0", (1, 3, 16, 16), "(N, 3, 224, 224)"),
    ("inception_v3", (1, 3, 64, 64), "(N, 3, 299, 299)"),
])
def test_an_input_too_small_names_the_model_and_the_size_it_expects(name, shape, expected):
    model = models.get_model(name).eval()
    with cl.no_grad(), pytest.raises(OpError) as raised:
        model(cl.tensor(np.zeros(shape, dtype=np.float32)))
    message = str(raised.value)
    assert message.startswith(f"{name}: cannot run on an input of shape {shape}")
    assert f"expects {expected}" in message
    assert "inside the model: " in message  # and what failed where, for the curious


def test_the_constructors_check_the_input_size_too():
    with pytest.raises(OpError, match=r"^lenet5: .* expects \(N, 1, 32, 32\)"):
        models.lenet5()(cl.tensor(np.zeros((2, 1, 28, 28), dtype=np.float32)))


def test_the_expected_channels_follow_the_model_as_built():
    model = models.get_model("lenet5", in_channels=3)
    with pytest.raises(OpError, match=r"expects \(N, 3, 32, 32\)"):
        model(cl.tensor(np.zeros((1, 3, 28, 28), dtype=np.float32)))


def test_an_error_at_the_designed_input_size_passes_unchanged():
    """Only an input of another size gets the model's words: a wrong dtype is not a size."""
    model = models.get_model("lenet5")
    with pytest.raises(OpError) as raised:
        model(cl.tensor(np.zeros((1, 1, 32, 32), dtype=np.float16)))
    assert not str(raised.value).startswith("lenet5:")


def test_a_copied_model_runs_its_own_forward():
    import copy

    model = models.get_model("lenet5").eval()
    twin = copy.deepcopy(model)
    for param in twin.parameters():
        param.data[...] = 0
    x = cl.tensor(np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32))
    with cl.no_grad():
        assert not np.allclose(model(x).data, twin(x).data)
        np.testing.assert_array_equal(twin(x).data, twin.forward(x).data)


# --- cnnlite assignment and cnnlite predict are sub-commands ----------------------------------


def test_the_assignment_command_is_wired_in(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["assignment", "make", "--help"])
    assert exited.value.code == 0 and "--out" in capsys.readouterr().out
    assert main(["assignment", "make", "no_such_assignment", "--out", str(tmp_path / "hw")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cnnlite assignment: error: ") and error.count("\n") == 1


def test_the_predict_command_is_listed_in_the_help(capsys):
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert "predict" in listed and "assignment" in listed
