"""The training loop: metrics, history and plots, exact resume, seeds, anomaly detection."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import checkpoint, nn, optim
from cnnlite import functional as F
from cnnlite.data import DataLoader, TensorDataset, transforms
from cnnlite.errors import OpError
from cnnlite.train import (AnomalyError, History, accuracy, evaluate, fit, random_generators,
                           seed_everything)

# --- accuracy ---------------------------------------------------------------------------------


def test_accuracy_on_a_worked_example():
    logits = np.array([[0.1, 0.7, 0.2],      # true 1: top-1
                       [0.5, 0.2, 0.3],      # true 2: second
                       [0.6, 0.3, 0.1]])     # true 2: third
    target = np.array([1, 2, 2])
    assert accuracy(logits, target, topk=(1, 2, 3)) == (1 / 3, 2 / 3, 1.0)
    assert accuracy(cl.tensor(logits), cl.tensor(target), topk=1) == 1 / 3


@given(st.integers(1, 6), st.integers(5, 9), st.integers(0, 2 ** 32 - 1))
def test_topk_accuracy_matches_pytorch_topk(n, classes, seed):
    rng = np.random.default_rng(seed)
    logits = rng.permutation(n * classes).reshape(n, classes).astype(np.float64)  # no ties
    target = rng.integers(0, classes, n)
    top = torch.tensor(logits).topk(5, dim=1).indices.numpy()
    expected = tuple(float((top[:, :k] == target[:, None]).any(axis=1).mean()) for k in (1, 5))
    assert accuracy(logits, target) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("logits_shape, target, topk, fragment", [
    ((4, 3), np.zeros(5, int), (1,), r"logits \(4, 3\) and target \(5,\)"),
    ((4,), np.zeros(4, int), (1,), r"logits \(4,\)"),
    ((4, 3), np.zeros(4, int), (1, 5), "C=3"),
    ((4, 3), np.array([0, 1, 2, 3]), (1,), r"\[0, 3\)"),
])
def test_accuracy_rejects_bad_input_naming_the_shapes(logits_shape, target, topk, fragment):
    with pytest.raises(OpError, match=fragment):
        accuracy(np.zeros(logits_shape), target, topk)


# --- a tiny problem to train on ---------------------------------------------------------------

def tiny_data(seed=1, n=40):
    """40 random 1x4x4 'images' whose class is the sign pattern of two pixel sums (learnable)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 1, 4, 4)).astype(np.float32)
    labels = (images[:, 0, :2].sum(axis=(1, 2)) > 0).astype(np.int64) + \
        (images[:, 0, 2:].sum(axis=(1, 2)) > 0).astype(np.int64)
    return images, labels


def tiny_run(init_seed=0, loader_seed=3, crop_seed=5, dtype=np.float64, dropout=0.3,
             dropout_seed=None):
    """Model (with dropout), loader (shuffled, random crops), SGD with momentum, a schedule.

    Dropout draws from cnnlite.functional.dropout's own generator, or from a generator of its
    own seeded with ``dropout_seed``."""
    seed_everything(init_seed)
    images, labels = tiny_data()
    crop = transforms.RandomCrop(4, padding=1, rng=np.random.default_rng(crop_seed))
    loader = DataLoader(TensorDataset(images, labels, transform=crop), batch_size=8,
                        shuffle=True, seed=loader_seed)
    dropout_rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(),
                          nn.Dropout(dropout, rng=dropout_rng), nn.Linear(8, 3)).to(dtype=dtype)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    schedule = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, loader, optimizer, schedule


def val_loader():
    images, labels = tiny_data(seed=2, n=16)
    return DataLoader(TensorDataset(images, labels), batch_size=16)


# --- evaluate and fit -------------------------------------------------------------------------

def test_evaluate_gives_the_mean_loss_and_accuracy_and_restores_the_mode():
    model, _, _, _ = tiny_run()
    images, labels = tiny_data(seed=2, n=16)
    loader = DataLoader(TensorDataset(images, labels), batch_size=5)   # uneven last batch
    model.train()
    metrics = evaluate(model, loader)
    model.eval()
    logits = model(cl.tensor(images.astype(np.float64)))
    assert metrics.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-12)
    assert metrics.top1 == pytest.approx(accuracy(logits, labels, topk=1))
    assert metrics.top5 == 1.0 and metrics.samples == 16   # top-k capped at the 3 classes
    model.train()
    assert all(module.training for module in model.modules())


def test_fit_lowers_the_loss_and_records_one_history_row_per_epoch():
    model, loader, optimizer, schedule = tiny_run(dropout=0.0)
    history = fit(model, loader, val_loader(), optimizer, schedule, epochs=4, progress=False)
    assert len(history) == 4 and history.epoch == [1, 2, 3, 4]
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.lr == [0.1, 0.05, 0.025, 0.0125]           # the lr each epoch trained with
    assert all(0 <= a <= 1 for a in history.train_acc + history.val_acc)
    assert all(math.isfinite(v) for v in history.val_loss + history.seconds)


def test_without_validation_the_validation_columns_are_nan():
    model, loader, optimizer, _ = tiny_run()
    history = fit(model, loader, None, optimizer, epochs=1, progress=False)
    assert math.isnan(history.val_loss[0]) and math.isnan(history.val_acc[0])


def test_progress_shows_loss_accuracy_lr_and_speed_and_a_line_per_epoch(capsys):
    model, loader, optimizer, _ = tiny_run()
    fit(model, loader, val_loader(), optimizer, epochs=2, progress=True)  # 5 batches: < 0.1 s
    out, err = capsys.readouterr()
    for field in ("loss=", "acc=", "lr=", "img_s="):
        assert field in err
    assert "epoch 1/2  train loss" in out and "epoch 2/2  train loss" in out
    assert "val loss" in out


def test_a_schedule_can_step_after_every_optimiser_step():
    model, loader, optimizer, schedule = tiny_run()
    fit(model, loader, None, optimizer, schedule, epochs=1, schedule_per="step", progress=False)
    assert schedule.iteration == len(loader) == 5


def test_fit_writes_a_checkpoint_after_every_epoch(tmp_path):
    model, loader, optimizer, schedule = tiny_run()
    fit(model, loader, None, optimizer, schedule, epochs=2, checkpoint=tmp_path / "run.npz",
        progress=False)
    state = checkpoint.load(tmp_path / "run.npz")
    assert state["progress"] == {"epoch": 2, "step": 10}
    np.testing.assert_array_equal(state["model"]["1.weight"], model.state_dict()["1.weight"])
    assert list(state["history"]["epoch"]) == [1, 2]


# --- exact resume -----------------------------------------------------------------------------

def assert_runs_identical(a, b):
    """Same weights, optimiser state, schedule and loader position, bit for bit."""
    (model_a, loader_a, opt_a, sched_a), (model_b, loader_b, opt_b, sched_b) = a, b
    for key, value in model_a.state_dict().items():
        np.testing.assert_array_equal(value, model_b.state_dict()[key], err_msg=key)
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)
    assert sched_a.state_dict()["iteration"] == sched_b.state_dict()["iteration"]
    assert loader_a.state_dict() == loader_b.state_dict()


def fit_run(run, epochs, validation=None, **options):
    model, loader, optimizer, schedule = run
    return fit(model, loader, validation, optimizer, schedule, epochs=epochs, progress=False,
               **options)


def test_two_epochs_equal_one_epoch_then_a_resumed_one_bit_for_bit(tmp_path):
    path = tmp_path / "epoch1.npz"
    straight = tiny_run()
    history = fit_run(straight, 2, val_loader())

    first = tiny_run()
    fit_run(first, 1, val_loader(), checkpoint=path)
    # A fresh process would start from other weights, another shuffle, other crops and other
    # dropout masks (seed_everything(99) reseeds dropout's generator): only the checkpoint
    # can make the second half equal.
    resumed = tiny_run(init_seed=99, loader_seed=98, crop_seed=97)
    resumed_history = fit_run(resumed, 2, val_loader(), resume=path)

    assert_runs_identical(straight, resumed)
    for field in History.FIELDS:
        if field != "seconds":
            assert getattr(resumed_history, field) == getattr(history, field), field


def test_resume_restores_a_generator_that_a_layer_holds_itself(tmp_path):
    path = tmp_path / "epoch1.npz"
    straight = tiny_run(dropout_seed=1)
    fit_run(straight, 2)
    fit_run(tiny_run(dropout_seed=1), 1, checkpoint=path)
    resumed = tiny_run(init_seed=99, dropout_seed=2)
    assert any(name.endswith(".rng") and name.startswith("model.")
               for name in random_generators(model=resumed[0]))
    fit_run(resumed, 2, resume=path)
    assert_runs_identical(straight, resumed)


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    path = tmp_path / "done.npz"
    done = tiny_run()
    fit_run(done, 1, checkpoint=path)
    again = tiny_run(init_seed=5)
    assert len(fit_run(again, 1, resume=path)) == 1
    assert_runs_identical(done, again)


# --- seeds ------------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_run_and_another_seed_another():
    def weights_after_one_epoch(seed):
        model, loader, optimizer, _ = tiny_run(init_seed=seed)
        fit(model, loader, None, optimizer, epochs=1, seed=seed, progress=False)
        return model.state_dict()["1.weight"]

    np.testing.assert_array_equal(weights_after_one_epoch(4), weights_after_one_epoch(4))
    assert not np.array_equal(weights_after_one_epoch(4), weights_after_one_epoch(5))


def test_fit_seed_fixes_dropout_and_shuffling_of_an_existing_model():
    def run(seed):
        model, loader, optimizer, _ = tiny_run(init_seed=0, loader_seed=None)
        return fit(model, loader, None, optimizer, epochs=1, seed=seed,
                   progress=False).train_loss[0]

    assert run(11) == run(11)
    assert run(11) != run(12)


# --- anomaly detection ------------------------------------------------------------------------

class OverflowAt(nn.Module):
    """Multiplies its input by inf from the ``step``-th forward call on (a planted overflow)."""

    def __init__(self, step):
        super().__init__()
        self.step, self.calls = step, 0

    def forward(self, x):
        self.calls += 1
        return x * (math.inf if self.calls >= self.step else 1.0)


def overflowing_run(step):
    model, loader, optimizer, _ = tiny_run(dropout=0.0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(),
                          nn.Sequential(nn.Linear(8, 8), OverflowAt(step)),
                          nn.Linear(8, 3)).double()
    return model, loader, optim.SGD(model.parameters(), lr=0.01)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the planted inf/NaN
def test_anomaly_detection_names_the_step_and_the_first_non_finite_layer():
    model, loader, optimizer = overflowing_run(step=7)
    with pytest.raises(AnomalyError) as info:
        fit(model, loader, None, optimizer, epochs=3, detect_anomaly=True, progress=False)
    message = str(info.value)
    assert info.value.step == 7 and info.value.layer == "3.1"
    assert "step 7 (epoch 2, batch 2)" in message
    assert "'3.1' (OverflowAt)" in message
    assert all(not module._forward_hooks for module in model.modules())  # hooks removed


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the planted inf/NaN
def test_without_anomaly_detection_a_non_finite_loss_still_stops_at_its_step():
    model, loader, optimizer = overflowing_run(step=3)
    with pytest.raises(AnomalyError, match=r"step 3 \(epoch 1, batch 3\).*detect_anomaly") \
            as info:
        fit(model, loader, None, optimizer, epochs=1, progress=False)
    assert info.value.layer is None


def test_a_loss_that_overflows_by_itself_is_told_apart_from_a_layer():
    model, loader, optimizer, _ = tiny_run()

    def exploding_loss(logits, labels):
        return F.cross_entropy(logits, labels) * math.inf

    with pytest.raises(AnomalyError, match="every layer's output was finite"):
        fit(model, loader, None, optimizer, loss_fn=exploding_loss, detect_anomaly=True,
            progress=False)


class SqrtOfZero(nn.Module):
    """sqrt(0 * x): a finite output (0) whose gradient 0.5 / sqrt(0) * 0 is NaN."""

    def forward(self, x):
        return x + F.sqrt(x * 0.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the planted inf/NaN
def test_anomaly_detection_catches_a_non_finite_gradient_under_a_finite_loss():
    _, loader, _, _ = tiny_run()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), SqrtOfZero(), nn.Linear(8, 3)).double()
    with pytest.raises(AnomalyError, match=r"step 1: the gradient of parameter '1\.(weight|bias)'"):
        fit(model, loader, None, optim.SGD(model.parameters(), lr=0.1), detect_anomaly=True,
            progress=False)


# --- history ----------------------------------------------------------------------------------

def test_history_plot_writes_a_png_with_loss_and_accuracy_panels(tmp_path):
    history = History()
    for epoch in range(1, 4):
        history.append(epoch=epoch, train_loss=1 / epoch, train_acc=0.5 + 0.1 * epoch,
                       val_loss=1.2 / epoch, val_acc=0.4 + 0.1 * epoch, lr=0.1)
    figure = history.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [axes.get_title() for axes in figure.axes] == ["loss", "accuracy"]
    assert [len(axes.lines) for axes in figure.axes] == [2, 2]


def test_history_round_trips_through_its_state_dict():
    history = History()
    history.append(epoch=1, train_loss=0.5, lr=0.1)
    restored = History()
    restored.load_state_dict(history.state_dict())
    assert restored.row() == pytest.approx(history.row(), nan_ok=True)
    with pytest.raises(KeyError, match="unknown fields"):
        history.append(epoch=2, accuracy=0.3)
