"""Optimisers and learning-rate policies: step-for-step agreement with torch.optim, parameter
groups, saving and loading, and every schedule against PyTorch's scheduler or its formula."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import functional as F
from cnnlite import nn, optim
from cnnlite.optim import lr_scheduler as sched


# --- a small regression problem solved by both frameworks ---------------------------------

def problem(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(3),
            "x": rng.standard_normal((6, 4)), "y": rng.standard_normal((6, 3))}


def cnnlite_params(data):
    return [nn.Parameter(data["w"].copy()), nn.Parameter(data["b"].copy())]


def torch_params(data):
    return [torch.tensor(data["w"], requires_grad=True), torch.tensor(data["b"], requires_grad=True)]


def cnnlite_loss(params, data):
    w, b = params
    return F.mse_loss(F.linear(cl.tensor(data["x"]), w, b), cl.tensor(data["y"]))


def torch_loss(params, data):
    w, b = params
    return torch.nn.functional.mse_loss(torch.tensor(data["x"]) @ w.T + b,
                                        torch.tensor(data["y"]))


def run_cnnlite(optimizer, params, data, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        cnnlite_loss(params, data).backward()
        optimizer.step()


def run_torch(optimizer, params, data, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        torch_loss(params, data).backward()
        optimizer.step()


CASES = [
    ("SGD", "SGD", dict(lr=0.1)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    ("SGD", "SGD", dict(lr=0.1, weight_decay=0.05)),
    ("Adam", "Adam", dict(lr=0.05)),
    ("Adam", "Adam", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05)),
    ("RMSprop", "RMSprop", dict(lr=0.01)),
    ("RMSprop", "RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.8, weight_decay=0.05)),
    ("RMSprop", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adagrad", "Adagrad", dict(lr=0.1)),
    ("Adagrad", "Adagrad", dict(lr=0.1, lr_decay=0.2, weight_decay=0.05,
                                initial_accumulator_value=0.3, eps=1e-6)),
]


@pytest.mark.parametrize("ours, theirs, settings", CASES,
                         ids=[f"{c[0]}-{'-'.join(c[2])}" for c in CASES])
def test_optimizer_matches_torch_over_five_steps(ours, theirs, settings):
    data = problem()
    mine, reference = cnnlite_params(data), torch_params(data)
    run_cnnlite(getattr(optim, ours)(mine, **settings), mine, data, 5)
    run_torch(getattr(torch.optim, theirs)(reference, **settings), reference, data, 5)
    for p, q in zip(mine, reference):
        assert not np.allclose(p.data, data["w"] if p.ndim == 2 else data["b"])
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-12)


@given(lr=st.floats(1e-3, 0.5), momentum=st.floats(0.0, 0.99), dampening=st.floats(0.0, 0.5),
       weight_decay=st.floats(0.0, 0.1), nesterov=st.booleans())
def test_sgd_matches_torch_for_any_settings(lr, momentum, dampening, weight_decay, nesterov):
    if nesterov:
        momentum, dampening = max(momentum, 0.1), 0.0
    settings = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                    nesterov=nesterov)
    data = problem(seed=1)
    mine, reference = cnnlite_params(data), torch_params(data)
    run_cnnlite(optim.SGD(mine, **settings), mine, data, 5)
    run_torch(torch.optim.SGD(reference, **settings), reference, data, 5)
    for p, q in zip(mine, reference):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-12)


def test_adam_and_rmsprop_keep_float32_parameters_float32():
    data = problem()
    for make in (lambda p: optim.Adam(p, lr=0.01), lambda p: optim.RMSprop(p, momentum=0.9)):
        params = [nn.Parameter(data["w"].astype(np.float32))]
        params[0].grad = np.ones((3, 4), np.float32)
        make(params).step()
        assert params[0].dtype == np.float32


# --- parameter groups ---------------------------------------------------------------------

def test_caffe_param_groups_give_biases_twice_the_lr_and_no_decay():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model.double()
    groups = optim.caffe_param_groups(model, lr=0.1, weight_decay=0.5)
    assert [id(p) for p in groups[0]["params"]] == [id(model[0].weight), id(model[2].weight)]
    assert [id(p) for p in groups[1]["params"]] == [id(model[0].bias), id(model[2].bias)]
    assert (groups[0]["lr"], groups[0]["weight_decay"]) == (0.1, 0.5)
    assert (groups[1]["lr"], groups[1]["weight_decay"]) == (0.2, 0.0)

    optimizer = optim.SGD(groups, lr=0.1)
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = np.ones(p.shape)
    optimizer.step()
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            expected = before[name] - 0.2 * 1.0
        else:
            expected = before[name] - 0.1 * (1.0 + 0.5 * before[name])
        np.testing.assert_allclose(p.data, expected, rtol=1e-12)


def test_param_groups_match_torch_with_per_group_settings():
    data = problem()
    mine, reference = cnnlite_params(data), torch_params(data)
    settings = dict(lr=0.1, momentum=0.9, weight_decay=0.01)
    run_cnnlite(optim.SGD([{"params": [mine[0]]},
                           {"params": [mine[1]], "lr": 0.2, "weight_decay": 0.0}], **settings),
                mine, data, 5)
    run_torch(torch.optim.SGD([{"params": [reference[0]]},
                               {"params": [reference[1]], "lr": 0.2, "weight_decay": 0.0}],
                              **settings), reference, data, 5)
    for p, q in zip(mine, reference):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-12)


def test_step_skips_parameters_without_gradient_and_zero_grad_clears():
    data = problem()
    params = cnnlite_params(data)
    optimizer = optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = np.ones((3, 4))
    optimizer.step()
    np.testing.assert_array_equal(params[1].data, data["b"])
    optimizer.zero_grad()
    assert params[0].grad is None
    params[0].grad = np.ones((3, 4))
    optimizer.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(params[0].grad, np.zeros((3, 4)))


def test_step_with_closure_returns_the_loss():
    data = problem()
    params = cnnlite_params(data)
    optimizer = optim.SGD(params, lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = cnnlite_loss(params, data)
        loss.backward()
        return loss

    first = optimizer.step(closure).item()
    assert optimizer.step(closure).item() < first


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD(p, lr=-1.0), "lr must be >= 0"),
    (lambda p: optim.SGD(p), "needs \\['lr'\\]"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov"),
    (lambda p: optim.SGD([{"params": p, "mommentum": 0.9}], lr=0.1), "mommentum"),
    (lambda p: optim.SGD([p[0], p[0]], lr=0.1), "more than once"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), "betas"),
    (lambda p: optim.SGD([], lr=0.1), "empty"),
])
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make(cnnlite_params(problem()))


def test_non_leaf_tensors_cannot_be_optimised():
    w = cl.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        optim.SGD([w * 2], lr=0.1)


# --- saving and loading -------------------------------------------------------------------

MAKERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: optim.Adam(p, lr=0.05, betas=(0.8, 0.95)),
    "rmsprop": lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1, lr_decay=0.1),
}


@pytest.mark.parametrize("name", MAKERS)
def test_state_dict_round_trips_through_npz(name, tmp_path):
    data = problem()
    straight = cnnlite_params(data)
    run_cnnlite(MAKERS[name](straight), straight, data, 5)

    first = cnnlite_params(data)
    optimizer = MAKERS[name](first)
    run_cnnlite(optimizer, first, data, 3)
    np.savez(tmp_path / "opt.npz", **optimizer.state_dict())

    resumed = [nn.Parameter(p.data.copy()) for p in first]
    fresh = MAKERS[name](resumed)
    fresh.param_groups[0]["lr"] = 123.0
    fresh.load_state_dict(np.load(tmp_path / "opt.npz"))
    assert fresh.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert type(fresh.param_groups[0]["lr"]) is float
    run_cnnlite(fresh, resumed, data, 2)
    for p, q in zip(resumed, straight):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12)


def test_state_dict_is_flat_arrays_and_scalars():
    data = problem()
    params = cnnlite_params(data)
    optimizer = optim.Adam(params, lr=0.01)
    run_cnnlite(optimizer, params, data, 1)
    state = optimizer.state_dict()
    assert state["state.0.step"] == 1
    assert state["state.1.exp_avg"].shape == (3,)
    np.testing.assert_array_equal(state["param_groups.0.params"], [0, 1])
    np.testing.assert_array_equal(state["param_groups.0.betas"], [0.9, 0.999])
    assert all(isinstance(v, (np.ndarray, int, float, bool)) for v in state.values())


def test_load_state_dict_checks_before_changing_anything():
    data = problem()
    params = cnnlite_params(data)
    optimizer = optim.SGD(params, lr=0.1, momentum=0.9)
    run_cnnlite(optimizer, params, data, 1)
    saved = optimizer.state_dict()

    other = optim.SGD([params[0]], lr=0.5, momentum=0.9)
    with pytest.raises(ValueError, match="saved with 2 parameters"):
        other.load_state_dict(saved)
    assert other.param_groups[0]["lr"] == 0.5 and other.state == {}

    bad = dict(saved)
    bad["state.0.momentum_buffer"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match="shape"):
        optimizer.load_state_dict(bad)
    assert optimizer.state[0]["momentum_buffer"].shape == (3, 4)


# --- learning-rate policies ---------------------------------------------------------------

def sgd_with_groups(lrs=(0.1, 0.2)):
    return optim.SGD([{"params": [nn.Parameter(np.zeros(2))], "lr": lr} for lr in lrs], lr=0.1)


def torch_sgd_with_groups(lrs=(0.1, 0.2)):
    return torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                            for lr in lrs], lr=0.1)


TORCH_SCHEDULES = [
    (lambda o: sched.StepLR(o, step_size=7, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    (lambda o: sched.MultiStepLR(o, milestones=[12, 5, 20], gamma=0.3),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[5, 12, 20], gamma=0.3)),
    (lambda o: sched.ExponentialLR(o, gamma=0.9),
     lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    (lambda o: sched.PolyLR(o, max_iter=25, power=2.0),
     lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=25, power=2.0)),
    (lambda o: sched.PolyLR(o, max_iter=25, power="linear"),
     lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=25, power=1.0)),
    (lambda o: sched.CosineAnnealingLR(o, T_max=20, eta_min=0.01),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.01)),
    (lambda o: sched.LinearWarmup(sched.StepLR(o, step_size=10, gamma=0.1), warmup_iters=6,
                                  start_factor=0.25),
     lambda o: torch.optim.lr_scheduler.ChainedScheduler([
         torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=6),
         torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.1)])),
]


@pytest.mark.parametrize("ours, theirs", TORCH_SCHEDULES,
                         ids=["step", "multistep", "exponential", "poly2", "poly-linear",
                              "cosine", "warmup-step"])
def test_schedule_matches_torch(ours, theirs):
    optimizer, reference_optimizer = sgd_with_groups(), torch_sgd_with_groups()
    scheduler, reference = ours(optimizer), theirs(reference_optimizer)
    for _ in range(30):
        np.testing.assert_allclose(scheduler.get_last_lr(), reference.get_last_lr(),
                                   rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose([g["lr"] for g in optimizer.param_groups],
                                   reference.get_last_lr(), rtol=1e-9, atol=1e-15)
        optimizer.step()
        reference_optimizer.step()
        scheduler.step()
        reference.step()


def test_poly_powers_of_mishkin_et_al():
    for name, power in (("linear", 1), ("square", 2), ("square_root", 0.5)):
        assert sched.poly_lr(0, 0.01, 320_000, name) == 0.01
        assert sched.poly_lr(80_000, 0.01, 320_000, name) == pytest.approx(0.01 * 0.75 ** power)
        assert sched.poly_lr(320_000, 0.01, 320_000, name) == 0.0
        assert sched.poly_lr(400_000, 0.01, 320_000, name) == 0.0
    with pytest.raises(ValueError, match="cubic"):
        sched.poly_lr(1, 0.01, 10, "cubic")


def test_poly_square_root_scheduler_follows_its_formula():
    optimizer = sgd_with_groups()
    scheduler = sched.PolyLR(optimizer, max_iter=25, power="square_root")
    for t in range(30):
        expected = [base * math.sqrt(1 - min(t, 25) / 25) for base in (0.1, 0.2)]
        np.testing.assert_allclose(scheduler.get_last_lr(), expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose([g["lr"] for g in optimizer.param_groups], expected,
                                   rtol=1e-12, atol=1e-15)
        scheduler.step()


def linear_cosine_reference(step, base, decay_steps, num_periods, alpha, beta):
    """Bello et al.'s linear cosine decay, written as in their paper's definition."""
    step = min(step, decay_steps)
    linear_decay = (decay_steps - step) / decay_steps
    cosine_decay = 0.5 * (1 + math.cos(math.pi * 2 * num_periods * step / decay_steps))
    return base * ((alpha + linear_decay) * cosine_decay + beta)


@pytest.mark.parametrize("num_periods, alpha, beta", [(0.5, 0.0, 0.001), (2.0, 0.1, 0.0)])
def test_linear_cosine_follows_its_formula(num_periods, alpha, beta):
    optimizer = sgd_with_groups()
    scheduler = sched.LinearCosineLR(optimizer, decay_steps=40, num_periods=num_periods,
                                     alpha=alpha, beta=beta)
    for t in range(50):
        expected = [linear_cosine_reference(t, base, 40, num_periods, alpha, beta)
                    for base in (0.1, 0.2)]
        np.testing.assert_allclose(scheduler.get_last_lr(), expected, rtol=1e-12, atol=1e-15)
        scheduler.step()


def test_warmup_alone_rises_linearly_then_stays():
    optimizer = sgd_with_groups((0.4,))
    scheduler = sched.LinearWarmup(optimizer, warmup_iters=4)
    got = []
    for _ in range(7):
        got.append(scheduler.get_last_lr()[0])
        scheduler.step()
    np.testing.assert_allclose(got, [0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4], atol=1e-15)


def test_lr_at_is_pure_and_agrees_with_stepping():
    optimizer = sgd_with_groups()
    scheduler = sched.StepLR(optimizer, step_size=3)
    assert scheduler.lr_at(7) == pytest.approx([0.1 * 0.01, 0.2 * 0.01])
    assert scheduler.get_last_lr() == [0.1, 0.2] and scheduler.iteration == 0
    for t in range(10):
        assert scheduler.get_last_lr() == scheduler.lr_at(t)
        assert scheduler.lr_at(t)[0] == sched.step_lr(t, 0.1, 3)
        scheduler.step()


def test_scheduler_state_dict_resumes(tmp_path):
    optimizer = sgd_with_groups()
    scheduler = sched.CosineAnnealingLR(optimizer, T_max=10)
    for _ in range(4):
        scheduler.step()
    np.savez(tmp_path / "s.npz", **scheduler.state_dict())
    resumed = sched.CosineAnnealingLR(sgd_with_groups((0.5, 0.5)), T_max=10)
    resumed.load_state_dict(np.load(tmp_path / "s.npz"))
    assert resumed.iteration == 4
    assert resumed.get_last_lr() == scheduler.get_last_lr()
    assert [g["lr"] for g in resumed.optimizer.param_groups] == scheduler.get_last_lr()


def test_scheduler_keeps_bias_lr_at_twice_the_weight_lr():
    model = nn.Linear(3, 2)
    optimizer = optim.SGD(optim.caffe_param_groups(model, 0.01, 5e-4), lr=0.01, momentum=0.9)
    scheduler = sched.PolyLR(optimizer, max_iter=100, power="square")
    for _ in range(30):
        scheduler.step()
    weights, biases = scheduler.get_last_lr()
    assert biases == pytest.approx(2 * weights) and weights == pytest.approx(0.01 * 0.7 ** 2)


def test_plot_lr_schedule_draws_every_group_and_saves(tmp_path):
    scheduler = sched.MultiStepLR(sgd_with_groups(), milestones=[5, 8])
    figure = cl.viz.plot_lr_schedule(scheduler, 12, path=tmp_path / "lr.png")
    lines = figure.axes[0].get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), [scheduler.lr_at(t)[1] for t in range(12)])
    assert (tmp_path / "lr.png").stat().st_size > 0
    assert scheduler.iteration == 0

    curve = cl.viz.plot_lr_schedule(lambda t: sched.poly_lr(t, 0.1, 20, 0.5), range(0, 20, 2))
    np.testing.assert_allclose(curve.axes[0].get_lines()[0].get_xdata(), range(0, 20, 2))
