"""benchmarks/bench_models.py, its machinery (the timing itself is not tested): a quick run writes
the table with both frameworks, each model's batch and size, and their ratio; a memory child
reports its peak; every PyTorch twin of ``torch_models.py`` agrees with cnnlite's model on the
same weights, and the agreement check stops the benchmark on a model that computes something
else or whose weights do not load by key; each model runs at its own setting unless --batch or
--size replace it; each framework's cases run, and a training step changes the weights."""
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import script_as_module

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_models.py"


@pytest.fixture(scope="module")
def bench():
    with script_as_module(SCRIPT, "bench_models") as script:
        yield script


@pytest.fixture
def lenet(bench, monkeypatch):
    """LeNet-5 at batch 2, its input channels filled in as the agreement check does; what a
    test writes into the configuration variable is undone after it."""
    monkeypatch.setenv(bench.CONFIG_VARIABLE, "")
    return bench.Config(("lenet5",), {"lenet5": bench.Setting(2, 32)}, channels={"lenet5": 1})


#: Every model of ``torch_models.py``: the six networks of the benchmark and LeNet-5.
TWINS = ["lenet5", "resnet20", "resnet18", "resnet50", "vgg16", "mobilenet_v2", "densenet121"]


def table_rows(text: str) -> dict:
    """{(model, case): {column: cell}} of the results file's first table."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))

    def cells(line):
        return [cell.strip() for cell in line.strip("|").split("|")]
    header = cells(table[0])
    rows = [dict(zip(header, cells(line))) for line in table[2:]]
    return {(row["model"], row["case"]): row for row in rows if row["case"]}


def test_a_quick_run_writes_both_frameworks_and_their_ratio(tmp_path):
    out = tmp_path / "models.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--models", "lenet5",
                           "--batch", "2", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Whole networks, inference and training step: cnnlite vs PyTorch\n")
    rows = table_rows(text)
    assert list(rows) == [("lenet5", "inference"), ("lenet5", "training step")]
    for row in rows.values():
        assert (row["batch"], row["size"]) == ("2", "32 x 32")  # --batch, and LeNet-5's size
        ours, theirs = float(row["cnnlite ms"]), float(row["PyTorch ms"])
        assert ours > 0 and theirs > 0
        # The ratio comes from the unrounded times; the table shows them to 0.1 ms, so at a
        # tiny LeNet-5 step the shown times bound it only within half a unit each way.
        half = 0.05
        low = (ours - half) / (theirs + half)
        high = (ours + half) / max(theirs - half, 1e-9)
        assert low * 0.99 - 0.01 <= float(row["ratio"]) <= high * 1.01 + 0.01
    assert re.search(r"differ by at most .*: lenet5 \d\.\de-\d\d", text)
    assert "Peak memory: not measured (``--quick``)." in text
    assert "PyTorch children: " in text and "cnnlite children: " in text


def test_the_peak_memory_is_that_of_a_child_that_ran_the_case(bench, lenet):
    lenet.to_environment()
    peaks = bench.peak_memory(["lenet5, inference"], keep_openblas_env=False,
                              sides=bench.SIDES[:1])
    assert list(peaks) == ["cnnlite"] and list(peaks["cnnlite"]) == ["lenet5, inference"]
    assert 50 < peaks["cnnlite"]["lenet5, inference"] < 2000  # MiB: numpy, numba, cnnlite


def test_every_twin_has_a_setting_and_the_default_run_has_the_six_networks(bench):
    import torch_models

    assert list(torch_models.MODELS) == TWINS
    assert list(bench.SETTINGS) == TWINS[1:] + ["lenet5"]
    assert bench.DEFAULT_MODELS == tuple(TWINS[1:])


def test_each_model_runs_at_its_own_batch_and_size(bench):
    config = bench.Config.for_models(bench.DEFAULT_MODELS)
    assert config.settings == {"resnet20": (64, 32), "resnet18": (8, 224),
                               "resnet50": (8, 224), "vgg16": (4, 224),
                               "mobilenet_v2": (8, 224), "densenet121": (8, 224)}


def test_batch_and_size_replace_every_models_own(bench):
    models = ("resnet20", "vgg16")
    assert bench.Config.for_models(models, batch=2).settings == {"resnet20": (2, 32),
                                                                  "vgg16": (2, 224)}
    assert bench.Config.for_models(models, size=64).settings == {"resnet20": (64, 64),
                                                                  "vgg16": (4, 64)}
    assert bench.Config.for_models(models, 1, 48).settings == {"resnet20": (1, 48),
                                                               "vgg16": (1, 48)}


def test_a_model_without_a_setting_needs_batch_and_size(bench):
    with pytest.raises(SystemExit, match=r"'alexnet' has no setting of its own .*: give it "
                                         r"--batch and --size"):
        bench.Config.for_models(["alexnet"], batch=2)
    assert bench.Config.for_models(["alexnet"], 2, 227).settings == {"alexnet": (2, 227)}


@pytest.mark.parametrize("option", ["--batch", "--size"])
def test_a_batch_or_size_below_one_is_refused(bench, option, capsys):
    with pytest.raises(SystemExit):
        bench.parse_options([option, "0"])
    assert f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("name", TWINS)
def test_the_twin_agrees_with_cnnlite_on_the_same_weights(bench, name):
    """At batch 1 and the smallest input the model takes (32 x 32 for all of them): every
    weight copied by key, batch norms randomised, the logits compared."""
    from cnnlite import models

    size, _ = models.entry(name).small_input or models.entry(name).input_size
    result = bench.check_agreement(bench.Config.for_models([name], batch=1, size=size))
    assert result[name]["channels"] == models.entry(name).in_channels
    assert 0 <= result[name]["difference"] <= bench.RTOL


def test_a_model_that_computes_something_else_stops_the_benchmark(bench, monkeypatch):
    """The same layers and keys with tanh instead of the last ReLU: the weights load, the
    logits differ, and nothing is timed."""
    import torch_models

    def other_lenet5():
        model = torch_models.lenet5()
        model.classifier[3] = torch.nn.Tanh()
        return model
    monkeypatch.setitem(torch_models.MODELS, "lenet5", other_lenet5)
    with pytest.raises(SystemExit, match=r"^lenet5: the logits of cnnlite and PyTorch differ "
                                         r"by [\d.e+-]+ of the largest one"):
        bench.check_agreement(bench.Config.for_models(["lenet5"], batch=2))


def test_a_batch_norm_out_of_place_stops_the_benchmark(bench, monkeypatch):
    """ResNet-20 with the stem's ReLU before its batch norm: with fresh statistics an eval-mode
    batch norm is nearly the identity and the two orders agree; the check randomises them."""
    import torch_models

    def relu_before_batch_norm(self, x):
        x = self.bn1(self.relu(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
    monkeypatch.setattr(torch_models.CifarResNet, "forward", relu_before_batch_norm)
    with pytest.raises(SystemExit, match=r"^resnet20: the logits of cnnlite and PyTorch differ"):
        bench.check_agreement(bench.Config.for_models(["resnet20"], batch=1))


def test_a_twin_whose_weights_do_not_load_by_key_stops_the_benchmark(bench, monkeypatch):
    import torch_models

    def lenet5_with_an_extra_layer():
        model = torch_models.lenet5()
        model.extra = torch.nn.Linear(1, 1)
        return model
    monkeypatch.setitem(torch_models.MODELS, "lenet5", lenet5_with_an_extra_layer)
    with pytest.raises(SystemExit, match=r"^lenet5: the weights of torch_models.lenet5\(\) do "
                                         r"not load into cnnlite's model by key: "
                                         r"(?s:.*)unexpected keys: extra\.weight"):
        bench.check_agreement(bench.Config.for_models(["lenet5"], batch=2))


def test_a_model_torch_models_lacks_is_named(bench):
    with pytest.raises(SystemExit, match=r"torch_models.py has no model 'alexnet' \(it has "
                                         r"lenet5, resnet20, resnet18, resnet50, vgg16, "
                                         r"mobilenet_v2, densenet121\)"):
        bench.check_agreement(bench.Config.for_models(["alexnet"], batch=2, size=32))


def test_the_children_take_their_configuration_from_the_environment(bench, lenet, monkeypatch):
    monkeypatch.delenv(bench.CONFIG_VARIABLE)
    with pytest.raises(SystemExit, match=bench.CONFIG_VARIABLE):
        bench.Config.from_environment()
    lenet.to_environment()
    assert bench.Config.from_environment() == lenet
    assert list(bench.cases(bench.torch_case)) == ["lenet5, inference", "lenet5, training step"]


def test_the_inputs_are_the_same_in_every_process(bench, lenet):
    images, labels = lenet.inputs("lenet5", 1)
    again, labels_again = lenet.inputs("lenet5", 1)
    assert images.shape == (2, 1, 32, 32) and images.dtype == np.float32
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)


def test_each_models_inputs_have_its_own_batch_and_size(bench):
    config = bench.Config.for_models(["resnet20", "vgg16"])
    images, labels = config.inputs("resnet20", 3)
    assert images.shape == (64, 3, 32, 32) and labels.shape == (64,)
    images, labels = config.inputs("vgg16", 3)
    assert images.shape == (4, 3, 224, 224) and labels.shape == (4,)
    assert 0 <= labels.min() and labels.max() < 10


def recorded_models(framework: str, monkeypatch) -> list:
    """The list every LeNet-5 that ``framework``'s cases build is appended to."""
    built = []
    if framework == "cnnlite":
        from cnnlite import models
        build = models.get_model

        def get_model(name):
            built.append(build(name))
            return built[-1]
        monkeypatch.setattr(models, "get_model", get_model)
    else:
        import torch_models

        def lenet5():
            built.append(torch_models.lenet5())
            return built[-1]
        monkeypatch.setitem(torch_models.MODELS, "lenet5", lenet5)
    return built


@pytest.mark.parametrize("framework", ["cnnlite", "torch"])
def test_a_training_step_changes_the_weights_and_inference_does_not(bench, lenet, framework,
                                                                   monkeypatch):
    """Each case builds its own model on its first call and runs its step on every call."""
    built = recorded_models(framework, monkeypatch)
    lenet.to_environment()
    steps = bench.cases(getattr(bench, f"{framework}_case"))
    assert built == []  # nothing is built before a case runs

    def first_weight(model):
        weight = model.state_dict()["features.0.weight"]  # numpy in cnnlite, a tensor in torch
        return np.array(weight if isinstance(weight, np.ndarray) else weight.numpy())

    steps["lenet5, inference"]()
    before = first_weight(built[0])
    steps["lenet5, inference"]()
    np.testing.assert_array_equal(first_weight(built[0]), before)
    steps["lenet5, training step"]()
    before = first_weight(built[1])
    steps["lenet5, training step"]()
    assert not np.array_equal(first_weight(built[1]), before)
    assert len(built) == 2
