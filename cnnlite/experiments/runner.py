"""Running a sweep: each run trains one model, in this process or on Dask workers.

``run_sweep(sweep, "results.sqlite")`` records the sweep in the database, then trains every
run that is not ``done`` yet, one after the other, with a progress bar for the sweep and one
for the run. Three ways to run them:

* in-process (the default): simplest to follow and to debug;
* ``workers=N``: a Dask ``LocalCluster`` of N worker processes on this machine, one run at a
  time on each, with BLAS and numba limited to ``cores // N`` threads each so that the
  workers do not fight over the cores (N x threads <= cores);
* ``scheduler="tcp://host:port"``: the workers of an existing Dask cluster (``dask scheduler``
  on one machine, ``dask worker tcp://host:port`` on each of the others); the data must be
  where each worker looks for it.

Only this process writes the database: a worker trains and sends back the numbers (accuracy,
time, per-epoch history) or the error. When a worker process dies in the middle of a run,
Dask gives the run to another worker (up to ``distributed.scheduler.allowed-failures`` times)
and its one result is written once.

``train_run(config)`` is one run: the data set brought to the model's input size, the model
(``caffenet128`` with the run's axes, a cnnlite model, or a .prototxt), LSUV when asked,
Caffe's SGD (biases at twice the learning rate, without weight decay) or Adam, the
learning-rate policy stepped every iteration, ``cnnlite.train.fit``, then the accuracy on the
held-out test split.
"""
from __future__ import annotations

import importlib
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from cnnlite import models, optim
from cnnlite.backend import cpu_threads
from cnnlite.data import DataLoader, ImageFolder, Subset, random_split, transforms
from cnnlite.errors import OpError
from cnnlite.experiments.caffenet import caffenet128
from cnnlite.experiments.store import ResultStore
from cnnlite.experiments.sweep import CAFFENET, DATASETS, Sweep
from cnnlite.nn import lsuv_init
from cnnlite.train import History, evaluate, fit, seed_everything
from cnnlite.train.progress import tqdm

__all__ = ["run_sweep", "train_run", "SweepSummary", "SchedulerUnreachableError",
           "CONNECT_TIMEOUT"]

#: Seconds to wait for an existing Dask scheduler before giving up.
CONNECT_TIMEOUT = 5.0
_EVENT_TOPIC = "cnnlite-sweep-epoch"
_STEP_POLICY_FRACTION = 100 / 320  # the paper: x0.1 every 100K of 320K iterations
_LSUV_BATCH = 256
_FOLDER_TEST_FRACTION = 0.2
_FOLDER_SPLIT_SEED = 0


class SchedulerUnreachableError(OpError):
    """No Dask scheduler answered at the address given."""


class SweepSummary(NamedTuple):
    """What ``run_sweep`` did: runs already done before (skipped), then done and failed now."""

    skipped: int
    done: int
    failed: int


# --- one run ---------------------------------------------------------------------------------

def _input_size(config: dict) -> int:
    if config["input_size"]:
        return config["input_size"]
    if config["model"] == CAFFENET or config["model"].endswith(".prototxt"):
        return 128
    return models.input_size(config["model"])[0]


def _datasets(config: dict, size: int):
    """(train, val, test, channels, classes) of the run's data set at ``size`` x ``size``."""
    augment_rng = np.random.default_rng(config["seed"])
    if config["dataset"] in DATASETS:
        from cnnlite.cli import load_datasets  # the same data pipeline as ``cnnlite train``
        data = load_datasets(config["dataset"], (size, size), config["data_root"],
                             config["download"], config["val_fraction"], augment_rng)
        train, val, test, channels, classes = data
    else:
        steps = transforms.Compose([transforms.ResizeShortSide(size),
                                    transforms.CenterCrop(size), transforms.ToFloat()])
        images = ImageFolder(config["dataset"], transform=steps)
        rest, test = random_split(images, [1 - _FOLDER_TEST_FRACTION, _FOLDER_TEST_FRACTION],
                                  seed=_FOLDER_SPLIT_SEED)
        val_fraction = config["val_fraction"]
        train, val = (random_split(rest, [1 - val_fraction, val_fraction],
                                   seed=_FOLDER_SPLIT_SEED) if val_fraction else (rest, None))
        channels, classes = 3, len(images.classes)
    if config["train_samples"]:
        train = Subset(train, list(range(min(config["train_samples"], len(train)))))
    return train, val, test, channels, classes


def _model(config: dict, channels: int, classes: int, size: int):
    name = config["model"]
    if name == CAFFENET:
        return caffenet128(classes, channels, input_size=size, width=config["width"],
                           activation=config["activation"], batch_norm=config["batch_norm"],
                           pooling=config["pooling"], colour=config["colour"],
                           dropout=config["dropout"])
    if name.endswith(".prototxt"):
        # The definition is built for the data: its first layer takes the data's channels and
        # its fully connected layers the size. Its own classifier is kept (1,000 outputs for
        # the benchmark's ImageNet nets): the labels are indices into it.
        return importlib.import_module("cnnlite.io.caffe").load_prototxt(
            name, phase="TRAIN", input_shape=(channels, size, size), rng=config["seed"])
    return models.get_model(name, num_classes=classes, in_channels=channels)


def _optimizer(config: dict, model):
    lr, decay = config["lr"], config["weight_decay"]
    if config["optimizer"] == "adam":
        return optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
    return optim.SGD(optim.caffe_param_groups(model, lr=lr, weight_decay=decay), lr=lr,
                     momentum=config["momentum"], nesterov=config["optimizer"] == "nesterov")


def _schedule(config: dict, optimizer, total_steps: int):
    policy = config["lr_policy"]
    if policy == "fixed":
        return None
    if policy == "step":
        return optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, round(total_steps * _STEP_POLICY_FRACTION)), gamma=0.1)
    power = {"linear": 1.0, "square": 2.0, "sqrt": 0.5}[policy]
    return optim.lr_scheduler.PolyLR(optimizer, max_iter=total_steps, power=power)


def train_run(config: dict, threads: int | None = None,
              on_epoch: Callable[[str], None] | None = None) -> dict:
    """Train the run described by ``config`` (a ``Run.config``) and test it.

    ``threads`` limits BLAS and numba (None: their defaults); ``on_epoch`` receives fit's
    line after every epoch. Returns ``{"top1", "top5", "seconds", "history"}``, the history
    as ``History.FIELDS`` -> lists.
    """
    with cpu_threads(threads):
        started = time.perf_counter()
        seed, size = config["seed"], _input_size(config)
        seed_everything(seed)
        train, val, test, channels, classes = _datasets(config, size)
        model = _model(config, channels, classes, size)
        train_loader = DataLoader(train, batch_size=config["batch_size"], shuffle=True,
                                  seed=seed)
        val_loader = DataLoader(val, batch_size=256) if val is not None else None
        if config["init"] == "lsuv":
            batch = DataLoader(train, batch_size=min(_LSUV_BATCH, len(train)), shuffle=True,
                               seed=seed, prefetch=0)
            lsuv_init(model, batch=next(iter(batch))[0])
        optimizer = _optimizer(config, model)
        schedule = _schedule(config, optimizer, config["epochs"] * len(train_loader))
        history = fit(model, train_loader, val_loader, optimizer, schedule,
                      epochs=config["epochs"], seed=seed, progress=False, schedule_per="step",
                      log=on_epoch or (lambda line: None))
        test_metrics = evaluate(model, DataLoader(test, batch_size=256))
    return dict(top1=test_metrics.top1, top5=test_metrics.top5,
                seconds=time.perf_counter() - started,
                history={field: getattr(history, field) for field in History.FIELDS})


def _attempt(train: Callable, config: dict, threads, on_epoch) -> dict:
    """``train`` with its outcome as data: ``{"status": "done", ...}`` or ``{"status":
    "failed", "error": traceback}`` (an exception object might not survive the trip back
    from a worker)."""
    try:
        return {"status": "done", **train(config, threads=threads, on_epoch=on_epoch)}
    except Exception:
        return {"status": "failed", "error": traceback.format_exc()}


def _on_dask_worker(train: Callable, config: dict, run_id: str, threads) -> dict:
    """A run as a Dask task: epochs are reported to the client as events of the worker."""
    from distributed import get_worker

    worker = get_worker()
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // worker.state.nthreads)
    outcome = _attempt(train, config, threads, lambda line: worker.log_event(
        _EVENT_TOPIC, {"run_id": run_id, "line": line}))
    return {**outcome, "worker": worker.address}


# --- the sweep -------------------------------------------------------------------------------

def _record(store: ResultStore, run_id: str, outcome: dict) -> bool:
    """Write one outcome; True when the run is done."""
    worker = outcome.get("worker", "")
    if outcome["status"] == "done":
        store.record_done(run_id, outcome["top1"], outcome["top5"], outcome["seconds"],
                          outcome["history"], worker)
        return True
    store.record_failed(run_id, outcome["error"], worker)
    return False


def _run_in_process(store, todo, train, threads, sweep_bar, progress) -> tuple[int, int]:
    done = failed = 0
    for run_id, config in todo:
        store.mark_running(run_id, "in-process")
        with tqdm(total=config["epochs"], desc=_run_label(run_id, config), unit="epoch",
                  leave=False, disable=not progress, position=1) as run_bar:
            def on_epoch(line, bar=run_bar):
                bar.update()
                bar.set_postfix_str(line.split("|", 1)[-1].strip())
            ok = _record(store, run_id, _attempt(train, config, threads, on_epoch))
        done, failed = done + ok, failed + (not ok)
        sweep_bar.update()
    return done, failed


def _run_label(run_id: str, config: dict) -> str:
    return f"{run_id[:8]} seed {config['seed']}"


def _connect(scheduler: str | None, workers: int, connect_timeout: float):
    """A Dask client: on a new LocalCluster of ``workers`` processes, or on ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise OpError("running on Dask needs the distributed package: "
                      "pip install 'dask[distributed]'") from None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=connect_timeout), None
    except (OSError, TimeoutError) as error:
        raise SchedulerUnreachableError(
            f"no Dask scheduler answered at {scheduler} within {connect_timeout:g} s ({error}); "
            f"start one with `dask scheduler` and workers with `dask worker {scheduler}`, or "
            f"run without --scheduler") from None


def _run_on_dask(store, todo, train, threads, sweep_bar, progress, client) -> tuple[int, int]:
    from distributed import as_completed

    run_bars = {}

    def show_epoch(event):
        message = event[1]
        bar = run_bars.get(message["run_id"])
        if bar is not None:
            bar.update()
            bar.set_postfix_str(message["line"].split("|", 1)[-1].strip())

    client.subscribe_topic(_EVENT_TOPIC, show_epoch)
    futures = {}
    for position, (run_id, config) in enumerate(todo, 1):
        store.mark_running(run_id, client.scheduler.address)
        run_bars[run_id] = tqdm(total=config["epochs"], desc=_run_label(run_id, config),
                                unit="epoch", leave=False, disable=not progress,
                                position=position)
        future = client.submit(_on_dask_worker, train, config, run_id, threads, key=run_id,
                               pure=False)
        futures[future] = run_id
    done = failed = 0
    try:
        for future in as_completed(futures):
            run_id = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # KilledWorker: the run killed every worker it met
                outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            ok = _record(store, run_id, outcome)
            done, failed = done + ok, failed + (not ok)
            run_bars.pop(run_id).close()
            sweep_bar.update()
    finally:
        client.unsubscribe_topic(_EVENT_TOPIC)
        for bar in run_bars.values():
            bar.close()
    return done, failed


def run_sweep(sweep: Sweep, database, workers: int = 0, scheduler: str | None = None,
              progress: bool = True, threads: int | None = None,
              connect_timeout: float = CONNECT_TIMEOUT, train: Callable = train_run,
              log: Callable[[str], None] = print) -> SweepSummary:
    """Run every run of ``sweep`` that ``database`` does not hold as done.

    Parameters
    ----------
    sweep : Sweep
        From ``load_sweep``.
    database : path
        The SQLite file (created when missing); see ``cnnlite.experiments.store``.
    workers : int
        0 runs in this process; N >= 1 starts a Dask LocalCluster of N processes (at most
        one per core).
    scheduler : str, optional
        ``tcp://host:port`` of an existing Dask scheduler (instead of ``workers``).
    threads : int, optional
        BLAS and numba threads per run. Default: the libraries' own in-process,
        ``cores // workers`` on a LocalCluster, ``cores // worker threads`` of each worker
        of an existing cluster.
    connect_timeout : float
        Seconds to wait for ``scheduler``.
    train : callable
        ``train(config, threads=..., on_epoch=...) -> {"top1", "top5", "seconds",
        "history"}``; ``train_run`` unless a test or a study replaces it.
    """
    if workers and scheduler:
        raise OpError("run_sweep: give workers (a new LocalCluster) or scheduler (an existing "
                      "cluster), not both")
    cores = os.cpu_count() or 1
    if not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= cores:
        raise OpError(f"run_sweep: workers must be an int from 0 (in this process) to the "
                      f"{cores} cores of this machine, got {workers!r}")
    if workers and threads is None:
        threads = max(1, cores // workers)
    with ResultStore(database) as store:
        store.add_sweep(sweep)
        todo = store.unfinished(sweep.name)
        skipped = len(sweep.runs) - len(todo)
        if not todo:
            log(f"{sweep.name}: all {len(sweep.runs)} runs are done already ({database})")
            return SweepSummary(skipped, 0, 0)
        where = (f"the Dask cluster at {scheduler}" if scheduler else
                 f"a LocalCluster of {workers} workers x {threads} threads" if workers
                 else "this process")
        log(f"{sweep.name}: {len(todo)} of {len(sweep.runs)} runs to do, on {where}; "
            f"results in {Path(database)}")
        with tqdm(total=len(sweep.runs), initial=skipped, desc=sweep.name, unit="run",
                  disable=not progress, position=0) as sweep_bar:
            if not (workers or scheduler):
                done, failed = _run_in_process(store, todo, train, threads, sweep_bar, progress)
            else:
                client, cluster = _connect(scheduler, workers, connect_timeout)
                try:
                    done, failed = _run_on_dask(store, todo, train, threads, sweep_bar,
                                                progress, client)
                finally:
                    client.close()
                    if cluster is not None:
                        cluster.close()
    log(f"{sweep.name}: {done} runs done, {failed} failed, {skipped} were done before")
    return SweepSummary(skipped, done, failed)
