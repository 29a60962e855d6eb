"""benchmarks/bench_models.py, its machinery on LeNet-5 (the timing itself is not tested): a quick
run writes the table with both frameworks and their ratio; a memory child reports its peak;
the agreement check passes on the same weights and stops the benchmark on a model that
computes something else; each framework's cases run, and a training step changes the
weights."""
import importlib.util
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_models.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (importing it runs nothing), in sys.modules while the tests run:
    its dataclass looks its module up there."""
    spec = importlib.util.spec_from_file_location("bench_models", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    sys.modules["bench_models"] = script
    try:
        spec.loader.exec_module(script)
        yield script
    finally:
        del sys.modules["bench_models"]


@pytest.fixture
def lenet(bench, monkeypatch):
    """LeNet-5 at batch 2, its input channels filled in as the agreement check does; what a
    test writes into the configuration variable is undone after it."""
    monkeypatch.setenv(bench.CONFIG_VARIABLE, "")
    return bench.Config(("lenet5",), batch=2, size=32, channels={"lenet5": 1})


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
                           "--size", "32", "--batch", "2", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Whole networks, inference and training step: cnnlite vs PyTorch "
                           "(batch 2, 32 x 32, float32)")
    rows = table_rows(text)
    assert list(rows) == [("lenet5", "inference"), ("lenet5", "training step")]
    for row in rows.values():
        ours, theirs = float(row["cnnlite ms"]), float(row["PyTorch ms"])
        assert ours > 0 and theirs > 0
        assert float(row["ratio"]) == pytest.approx(ours / theirs, abs=0.01, rel=0.05)
    assert re.search(r"differ by at most .*: lenet5 \d\.\de-\d\d", text)
    assert "Peak memory: not measured (``--quick``)." in text
    assert "PyTorch children: " in text and "cnnlite children: " in text


def test_the_peak_memory_is_that_of_a_child_that_ran_the_case(bench, lenet):
    lenet.to_environment()
    peaks = bench.peak_memory(["lenet5, inference"], keep_openblas_env=False,
                              sides=bench.SIDES[:1])
    assert list(peaks) == ["cnnlite"] and list(peaks["cnnlite"]) == ["lenet5, inference"]
    assert 50 < peaks["cnnlite"]["lenet5, inference"] < 2000  # MiB: numpy, numba, cnnlite


def test_the_agreement_check_passes_on_the_same_weights(bench):
    config = bench.Config(("lenet5",), batch=2, size=32)
    result = bench.check_agreement(config)["lenet5"]
    assert result["channels"] == 1
    assert 0 <= result["difference"] <= bench.RTOL


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
        bench.check_agreement(bench.Config(("lenet5",), batch=2, size=32))


def test_a_model_torch_models_lacks_is_named(bench):
    with pytest.raises(SystemExit, match=r"torch_models.py has no model 'alexnet' \(it has "
                                         r"lenet5, resnet50, vgg16\)"):
        bench.check_agreement(bench.Config(("alexnet",), batch=2, size=32))


def test_the_children_take_their_configuration_from_the_environment(bench, lenet, monkeypatch):
    monkeypatch.delenv(bench.CONFIG_VARIABLE)
    with pytest.raises(SystemExit, match=bench.CONFIG_VARIABLE):
        bench.Config.from_environment()
    lenet.to_environment()
    assert bench.Config.from_environment() == lenet
    assert list(bench.cases(bench.torch_case)) == ["lenet5, inference", "lenet5, training step"]


def test_the_inputs_are_the_same_in_every_process(bench, lenet):
    images, labels = lenet.inputs(1)
    again, labels_again = lenet.inputs(1)
    assert images.shape == (2, 1, 32, 32) and images.dtype == np.float32
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)


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
