"""Experiment sweeps: sweep files, the SQLite store, running on Dask, the report."""
import functools
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

import cnnlite as cl
from cnnlite.experiments import (ResultStore, SchedulerUnreachableError, SweepFileError,
                                 caffenet128, feature_sizes, load_sweep, parse_sweep, report,
                                 run_id, run_sweep, summarise, train_run)
from cnnlite.experiments.cli import shipped_sweeps
from cnnlite.train import History

TINY = """
name = "tiny"
[baseline]
model = "caffenet128"
dataset = "digits"
input_size = 64
width = 0.0625
epochs = 1
batch_size = 32
train_samples = 64
seeds = [0, 1]

[[variation]]
name = "non-linearity"
axis = "activation"
values = ["tanh", "elu"]
"""
TINY_RUNS = 6  # the baseline and two activations, two seeds each


def test_caffenet128_at_width_1_has_the_papers_parameters_and_pool5():
    with cl.nn.init.skip_init():
        model = caffenet128()
    assert sum(p.size for p in model.parameters()) == 13_300_072
    assert feature_sizes(128)["pool5"] == 3


def test_a_sweep_file_makes_baseline_plus_one_change_per_run_and_seed():
    sweep = parse_sweep(TINY + '[[variation]]\naxis = "batch_size"\nvalues = [16]\n', "t.toml")
    variants = [(run.variant, run.seed) for run in sweep.runs]
    assert variants == [("baseline", 0), ("baseline", 1), ("activation=tanh", 0),
                        ("activation=tanh", 1), ("activation=elu", 0), ("activation=elu", 1),
                        ("batch_size=16", 0), ("batch_size=16", 1)]
    tanh = sweep.runs[2].config
    assert {k: v for k, v in tanh.items() if sweep.runs[0].config[k] != v} == \
        {"activation": "tanh"}
    assert sweep.runs[-1].config["lr"] == pytest.approx(0.01 * 16 / 32)  # lr scaled


def test_run_ids_are_the_hash_of_the_settings_in_any_key_order():
    reordered = TINY.replace('epochs = 1\nbatch_size = 32', 'batch_size = 32\nepochs = 1')
    first, second = parse_sweep(TINY, "a.toml"), parse_sweep(reordered, "b.toml")
    assert [r.run_id for r in first.runs] == [r.run_id for r in second.runs]
    assert len({r.run_id for r in first.runs}) == TINY_RUNS
    assert run_id({"b": 1, "a": 0.5}) == run_id({"a": 0.5, "b": 1}) == "0d51f1cc985d8c22"


@pytest.mark.parametrize("text, words", [
    (TINY.replace("epochs = 1", "epoch = 1"), ["line 8", "unknown key 'epoch'", "epochs"]),
    (TINY + "[[variation]]\naxis = \"activation\"\nvalue = [\"relu\"]\n",
     ["line 19", "unknown key 'value'", "name, axis, values"]),
    (TINY.replace('"tanh"', '"swish"'), ["activation must be one of", "relu, tanh", "swish"]),
    (TINY.replace('values = ["tanh", "elu"]', 'values = ["tanh"]\n[grid]\nactivation = ["tanh"]\n'
                  'pooling = ["stochastic"]'),
     ["stochastic pooling needs non-negative inputs", "activation 'tanh'"]),
    (TINY.replace('model = "caffenet128"', 'model = "lenet5"').replace("input_size = 64\n", "")
     .replace("width = 0.0625\n", ""), ["activation is an axis of model 'caffenet128' only"]),
    (TINY.replace("input_size = 64", "input_size = 40"), ["too small", "pool5"]),
    (TINY.replace("input_size = 64", "input_size = 71"), ["input_size 71 cannot be reached"]),
    (TINY.replace("seeds = [0, 1]", "seeds = []"), ["seeds must be a non-empty list"]),
    (TINY.replace("epochs = 1", "epochs = ["), ["not valid TOML", "line 9, column 1"]),
])
def test_a_bad_sweep_file_is_refused_before_any_run(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    database = tmp_path / "results.sqlite"
    with pytest.raises(SweepFileError) as caught:
        run_sweep(load_sweep(path), database, progress=False)
    for word in [str(path), *words]:
        assert word in str(caught.value)
    assert not database.exists()


def test_every_shipped_sweep_file_parses():
    files = shipped_sweeps()
    assert {Path(f).stem for f in files} >= {"activations", "batch_norm", "pooling",
                                             "lr_policy", "colour", "batch_size", "init"}
    for path in files:
        assert load_sweep(path).runs


def _fake_result(config, threads=None, on_epoch=None):
    """A training run's result without training: accuracy from the seed."""
    return dict(top1=0.5 + config["seed"] / 10, top5=0.9, seconds=0.1,
                history={f: [1 if f == "epoch" else 0.5] for f in History.FIELDS})


def test_a_second_run_on_a_finished_database_does_nothing(tmp_path):
    sweep, database = parse_sweep(TINY, "tiny.toml"), tmp_path / "r.sqlite"
    first = run_sweep(sweep, database, progress=False, train=_fake_result, log=lambda _: None)
    assert first.done == TINY_RUNS

    def must_not_run(config, threads=None, on_epoch=None):
        raise AssertionError("a done run was trained again")
    again = run_sweep(sweep, database, workers=2, progress=False, train=must_not_run,
                      log=lambda _: None)
    assert again == (TINY_RUNS, 0, 0)


def test_unfinished_runs_are_repeated_and_failed_ones_recorded(tmp_path):
    sweep, database = parse_sweep(TINY, "tiny.toml"), tmp_path / "r.sqlite"
    with ResultStore(database) as store:
        store.add_sweep(sweep)
        store.mark_running(sweep.runs[0].run_id)  # as a crash mid-run would leave it

    def fail_on_elu(config, threads=None, on_epoch=None):
        if config["activation"] == "elu":
            raise FloatingPointError("diverged")
        return _fake_result(config)
    summary = run_sweep(sweep, database, progress=False, train=fail_on_elu, log=lambda _: None)
    assert summary == (0, 4, 2)
    with ResultStore(database) as store:
        runs = store.runs("tiny")
    assert [r["status"] for r in runs] == ["done"] * 4 + ["failed"] * 2
    assert "FloatingPointError: diverged" in runs[-1]["error"]
    assert runs[0]["attempts"] == 2


def _train_killing_its_worker_once(config, marker, threads=None, on_epoch=None):
    """A real tiny run, except that the first attempt of one run kills its worker process."""
    if config["activation"] == "tanh" and config["seed"] == 1 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return train_run(config, threads=threads, on_epoch=on_epoch)


def test_a_sweep_on_two_workers_survives_a_killed_worker(tmp_path):
    sweep, database = parse_sweep(TINY, "tiny.toml"), tmp_path / "r.sqlite"
    marker = tmp_path / "killed"
    train = functools.partial(_train_killing_its_worker_once, marker=str(marker))
    summary = run_sweep(sweep, database, workers=2, progress=False, train=train,
                        log=lambda _: None)
    assert marker.exists()  # a worker did die
    assert summary == (0, TINY_RUNS, 0)
    connection = sqlite3.connect(database)
    rows = connection.execute("SELECT run_id, status, top1 FROM runs").fetchall()
    assert sorted(r[0] for r in rows) == sorted(r.run_id for r in sweep.runs)
    assert all(status == "done" and 0 <= top1 <= 1 for _, status, top1 in rows)
    epochs = connection.execute("SELECT run_id, COUNT(*) FROM epochs GROUP BY run_id").fetchall()
    assert sorted(epochs) == sorted((r.run_id, 1) for r in sweep.runs)
    workers = {row[0] for row in connection.execute("SELECT worker FROM runs")}
    assert len(workers) >= 2


def test_an_unreachable_scheduler_fails_within_seconds(tmp_path):
    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError, match=f"tcp://127.0.0.1:{port}"):
        run_sweep(parse_sweep(TINY, "tiny.toml"), tmp_path / "r.sqlite",
                  scheduler=f"tcp://127.0.0.1:{port}", connect_timeout=2, progress=False,
                  log=lambda _: None)
    assert time.perf_counter() - started < 15


def _fill(database, accuracies: dict):
    """A database holding the tiny sweep with the given top-1 per (variant, seed)."""
    sweep = parse_sweep(TINY, "tiny.toml")
    with ResultStore(database) as store:
        store.add_sweep(sweep)
        for run in sweep.runs:
            top1 = accuracies.get((run.variant, run.seed))
            if top1 is not None:
                history = {f: [1, 2] if f == "epoch" else [top1 / 2, top1] for f in History.FIELDS}
                assert store.record_done(run.run_id, top1, 1.0, 2.0, history)
                assert not store.record_done(run.run_id, top1, 1.0, 2.0, history)  # only once
    return sweep


def test_the_report_gives_mean_std_and_differences_beside_the_paper(tmp_path):
    database = tmp_path / "r.sqlite"
    _fill(database, {("baseline", 0): 0.80, ("baseline", 1): 0.90,
                     ("activation=tanh", 0): 0.70, ("activation=tanh", 1): 0.74,
                     ("activation=elu", 0): 0.95})
    with ResultStore(database) as store:
        rows = {r.variant: r for r in summarise(store, "tiny")}
    assert rows["baseline"].mean == pytest.approx(0.85)
    assert rows["baseline"].std == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert rows["activation=tanh"].diff == pytest.approx(0.72 - 0.85)
    assert rows["activation=tanh"].paper == 0.401
    assert rows["activation=tanh"].paper_diff == pytest.approx(0.401 - 0.471)
    assert (rows["activation=elu"].done, rows["activation=elu"].runs) == (1, 2)
    text = report(database, out=tmp_path / "charts")
    lines = {line.split()[1]: line.split() for line in text.splitlines()
             if line.startswith(("baseline", "non-linearity"))}
    assert lines["activation=tanh"][2:] == ["2/2", "0.720", "0.028", "-0.130", "0.401",
                                           "-0.070"]
    assert lines["activation=elu"][2:5] == ["1/2", "0.950", "0.000"]
    for name in ("tiny_bars.png", "tiny_curves.png"):
        assert (tmp_path / "charts" / name).read_bytes()[:4] == b"\x89PNG"


def test_the_store_keeps_the_sweep_file_and_configs(tmp_path):
    sweep = _fill(tmp_path / "r.sqlite", {})
    with ResultStore(tmp_path / "r.sqlite") as store:
        runs = store.runs("tiny")
        assert [json.dumps(r["config"], sort_keys=True) for r in runs] == \
            [json.dumps(r.config, sort_keys=True) for r in sweep.runs]
        assert store.status_counts("tiny")["pending"] == TINY_RUNS


PROTOTXT = """
name: "tiny"
layer { name: "data" type: "Data" top: "data" top: "label"
        transform_param { crop_size: 32 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 5 stride: 2
                            weight_filler { type: "msra" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def test_a_prototxt_baseline_trains_on_the_datas_channels(tmp_path):
    """A Caffe definition as the baseline: built for the grey digits (one channel) at the
    sweep's input size, trained for real."""
    (tmp_path / "tiny.prototxt").write_text(PROTOTXT)
    text = f"""
name = "prototxt"
[baseline]
model = "{tmp_path / 'tiny.prototxt'}"
dataset = "digits"
input_size = 32
epochs = 1
batch_size = 32
train_samples = 64
seeds = [0]

[[variation]]
name = "lr"
axis = "lr"
values = [0.02]
"""
    sweep, database = parse_sweep(text, "prototxt.toml"), tmp_path / "r.sqlite"
    summary = run_sweep(sweep, database, progress=False, log=lambda _: None)
    assert summary.done == 2 and summary.failed == 0
