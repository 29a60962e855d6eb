"""Caffe solver files: learning-rate policies against Caffe's formulas, the optimiser with its
per-parameter multipliers, the data layer's transform, and errors that name the file and field."""
import doctest
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from cnnlite import nn
from cnnlite.data.transforms import resize_bilinear
from cnnlite.errors import OpError
from cnnlite.io import caffe_solver
from cnnlite.io.caffe_solver import SolverError, data_transform, load_solver
from cnnlite.io.prototxt import parse_prototxt
from cnnlite.optim import SGD, Adagrad, Adam, RMSprop

BENCHMARK = (Path(__file__).resolve().parents[2] / "shared" / "references"
             / "caffenet-benchmark" / "prototxt")
needs_benchmark = pytest.mark.skipif(not BENCHMARK.is_dir(), reason="benchmark files absent")

# caffenet128_lsuv's solver header (REFERENCES section 3), for tests without the files.
CAFFENET128_SOLVER = """
test_iter: 200  test_interval: 1000  base_lr: 0.01  lr_policy: "step"  gamma: 0.1
stepsize: 100000  display: 20  max_iter: 320000  momentum: 0.9  weight_decay: 0.0005
snapshot: 10000  iter_size: 1  solver_mode: GPU  solver_type: SGD
snapshot_prefix: "snapshots/caffenet128_lsuv"
"""

# Caffe's SGDSolver::GetLearningRate, written out again from its source, one line a policy.
FORMULAS = {
    "fixed": lambda t, p: p["base_lr"],
    "step": lambda t, p: p["base_lr"] * p["gamma"] ** math.floor(t / p["stepsize"]),
    "exp": lambda t, p: p["base_lr"] * p["gamma"] ** t,
    "inv": lambda t, p: p["base_lr"] * (1 + p["gamma"] * t) ** (-p["power"]),
    "multistep": lambda t, p: p["base_lr"] * p["gamma"] ** sum(v <= t for v in p["stepvalue"]),
    "poly": lambda t, p: p["base_lr"] * (1 - t / p["max_iter"]) ** p["power"],
    "sigmoid": lambda t, p: p["base_lr"] / (1 + math.exp(-p["gamma"] * (t - p["stepsize"]))),
}
SETTINGS = {
    "fixed": dict(base_lr=0.01),
    "step": dict(base_lr=0.01, gamma=0.1, stepsize=1000),
    "exp": dict(base_lr=0.01, gamma=0.9995),
    "inv": dict(base_lr=0.01, gamma=1e-4, power=0.75),
    "multistep": dict(base_lr=0.02, gamma=0.33, stepvalue=[800, 1500, 2600]),
    "poly": dict(base_lr=0.01, power=0.5, max_iter=3000),
    "sigmoid": dict(base_lr=0.01, gamma=-0.002, stepsize=1500),
}
# The boundaries of every step policy, and the ends.
ITERATIONS = [0, 1, 2, 799, 800, 801, 999, 1000, 1001, 1499, 1500, 1501, 1999, 2000, 2599, 2600,
              2999, 3000]


def solver_text(policy, **overrides):
    settings = {**SETTINGS[policy], **overrides}
    lines = [f'lr_policy: "{policy}"', "momentum: 0.9", "weight_decay: 0.0005"]
    for key, value in settings.items():
        values = value if isinstance(value, list) else [value]
        lines.extend(f"{key}: {v}" for v in values)
    return "\n".join(lines)


def tiny_model():
    """Two layers whose biases follow the benchmark's convention: lr x2, no weight decay."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    model.param_multipliers = {"0.weight": (1, 1), "0.bias": (2, 0), "3.weight": (1, 1),
                               "3.bias": (2, 0)}
    return model


# --- learning-rate policies ----------------------------------------------------------------

@pytest.mark.parametrize("policy", list(FORMULAS))
def test_every_policy_follows_caffes_formula_at_its_boundaries(policy):
    solver = load_solver(solver_text(policy))
    for t in ITERATIONS:
        assert solver.learning_rate(t) == pytest.approx(FORMULAS[policy](t, SETTINGS[policy]),
                                                        rel=1e-12, abs=0), (policy, t)


@given(policy=st.sampled_from(sorted(FORMULAS)), t=st.integers(0, 3000),
       gamma=st.floats(0.05, 0.999), power=st.floats(0.1, 3.0))
def test_every_policy_follows_caffes_formula_at_random_settings(policy, t, gamma, power):
    settings = dict(SETTINGS[policy])
    settings.update({key: value for key, value in (("gamma", gamma), ("power", power))
                     if key in settings})
    if policy == "sigmoid":
        settings["gamma"] = -gamma / 100
    solver = load_solver(solver_text(policy, **settings))
    assert solver.learning_rate(t) == pytest.approx(FORMULAS[policy](t, settings), rel=1e-12)


def test_step_and_multistep_change_exactly_at_their_boundaries():
    step = load_solver(solver_text("step"))
    assert [step.learning_rate(t) for t in (999, 1000, 1999, 2000)] == pytest.approx(
        [0.01, 0.001, 0.001, 0.0001], rel=1e-12)
    multistep = load_solver(solver_text("multistep"))
    assert [multistep.learning_rate(t) for t in (799, 800, 1499, 1500, 2599, 2600)] == \
        pytest.approx([0.02, 0.0066, 0.0066, 0.002178, 0.002178, 0.00071874], rel=1e-12)


def test_poly_reaches_zero_at_max_iter_and_stays_there():
    solver = load_solver(solver_text("poly", power=1.0))
    assert solver.learning_rate(1500) == pytest.approx(0.005, rel=1e-12)
    assert solver.learning_rate(3000) == 0.0
    assert solver.learning_rate(4000) == 0.0


def test_caffenet128_lsuv_solver_gives_the_hand_computed_sequence():
    solver = load_solver(CAFFENET128_SOLVER)
    by_hand = {0: 0.01, 99_999: 0.01, 100_000: 0.001, 199_999: 0.001, 200_000: 0.0001,
               299_999: 0.0001, 300_000: 0.00001, 319_999: 0.00001, 320_000: 0.00001}
    for t, lr in by_hand.items():
        assert solver.learning_rate(t) == pytest.approx(lr, rel=1e-12), t
    assert (solver.type, solver.base_lr, solver.momentum, solver.weight_decay) == \
        ("SGD", 0.01, 0.9, 0.0005)
    assert (solver.max_iter, solver.test_interval, solver.test_iter, solver.snapshot,
            solver.iter_size, solver.snapshot_prefix) == \
        (320_000, 1000, [200], 10_000, 1, "snapshots/caffenet128_lsuv")


@needs_benchmark
def test_caffenet128_lsuv_file_holds_the_same_solver():
    solver = load_solver(BENCHMARK / "caffenet128_lsuv.prototxt")
    header = load_solver(CAFFENET128_SOLVER)
    assert solver.policy == header.policy
    assert solver.net is not None and solver.net.get("name") == "CaffeNet"


@needs_benchmark
def test_every_solver_header_of_the_benchmark_loads():
    failures, loaded = [], 0
    for path in sorted(BENCHMARK.rglob("*.prototxt")):
        message = parse_prototxt(path.read_text(errors="replace"), str(path))
        if "base_lr" not in message:  # a network definition alone
            continue
        try:
            load_solver(message)
            loaded += 1
        except SolverError as error:
            failures.append(str(error))
    assert not failures
    assert loaded >= 170


# --- the scheduler -------------------------------------------------------------------------

@pytest.mark.parametrize("policy", list(FORMULAS))
def test_scheduler_gives_every_group_the_policy_times_its_lr_mult(policy):
    solver = load_solver(solver_text(policy))
    optimizer = solver.make_optimizer(tiny_model())
    scheduler = solver.make_scheduler(optimizer)
    for t in range(3001):
        weights, biases = (group["lr"] for group in optimizer.param_groups)
        assert weights == pytest.approx(solver.learning_rate(t), rel=1e-12)
        assert biases == pytest.approx(2 * solver.learning_rate(t), rel=1e-12)
        scheduler.step()


def test_scheduler_crosses_caffenet128s_first_step_at_iteration_100000():
    solver = load_solver(CAFFENET128_SOLVER)
    optimizer = solver.make_optimizer(tiny_model())
    scheduler = solver.make_scheduler(optimizer)
    scheduler.load_state_dict({"iteration": 99_998, "base_lrs": np.array([0.01, 0.02])})
    seen = []
    for _ in range(4):
        seen.append(scheduler.get_last_lr())
        scheduler.step()
    np.testing.assert_allclose(seen, [[0.01, 0.02], [0.01, 0.02], [0.001, 0.002],
                                      [0.001, 0.002]], rtol=1e-12)


# --- the optimiser -------------------------------------------------------------------------

def test_bias_gets_twice_the_lr_and_no_weight_decay_in_a_step():
    solver = load_solver(CAFFENET128_SOLVER.replace("momentum: 0.9", "momentum: 0"))
    model = tiny_model()
    optimizer = solver.make_optimizer(model)
    params = dict(model.named_parameters())
    before = {name: p.data.copy() for name, p in params.items()}
    for p in params.values():
        p.grad = np.ones_like(p.data)
    optimizer.step()
    for name in ("0.bias", "3.bias"):
        np.testing.assert_allclose(params[name].data, before[name] - 0.02 * 1.0, rtol=1e-6)
    for name in ("0.weight", "3.weight"):
        np.testing.assert_allclose(params[name].data,
                                   before[name] - 0.01 * (1.0 + 0.0005 * before[name]),
                                   rtol=1e-6)


def test_parameters_without_multipliers_get_caffes_default_one_one():
    solver = load_solver(CAFFENET128_SOLVER)
    optimizer = solver.make_optimizer(nn.Linear(3, 2).parameters())
    assert len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.01, 0.0005, 0.9)


def test_multipliers_for_a_parameter_the_model_lacks_are_refused():
    model = tiny_model()
    with pytest.raises(SolverError, match="fc9.bias"):
        load_solver(CAFFENET128_SOLVER).make_optimizer(model, {"fc9.bias": (2, 0)})


@needs_benchmark
def test_caffenet128_networks_multipliers_reach_the_optimiser():
    caffe = pytest.importorskip("cnnlite.io.caffe")
    net = caffe.load_prototxt(BENCHMARK / "caffenet128_lsuv.prototxt", phase="TRAIN")
    optimizer = load_solver(BENCHMARK / "caffenet128_lsuv.prototxt").make_optimizer(net)
    names = {id(p): name for name, p in net.named_parameters()}
    for group in optimizer.param_groups:
        kinds = {names[id(p)].rsplit(".", 1)[-1] for p in group["params"]}
        expected = (0.02, 0.0) if kinds == {"bias"} else (0.01, 0.0005)
        assert (group["lr"], group["weight_decay"]) == pytest.approx(expected), kinds


@pytest.mark.parametrize("spelling, cls, checks", [
    ('type: "Nesterov"', SGD, {"nesterov": True, "momentum": 0.9}),
    ("solver_type: NESTEROV", SGD, {"nesterov": True}),
    ('type: "Adam"\nmomentum2: 0.99\ndelta: 1e-6', Adam, {"betas": (0.9, 0.99), "eps": 1e-6,
                                                        "weight_decay": 0.0005}),
    ('type: "RMSProp"\nrms_decay: 0.95', RMSprop, {"alpha": 0.95, "eps": 1e-8}),
    ('type: "AdaGrad"', Adagrad, {"eps": 1e-8, "weight_decay": 0.0005}),
])
def test_solver_types_map_to_cnnlites_optimisers(spelling, cls, checks):
    text = CAFFENET128_SOLVER.replace("solver_type: SGD", spelling)
    if cls in (RMSprop, Adagrad):
        text = text.replace("momentum: 0.9", "")
    optimizer = load_solver(text).make_optimizer(nn.Linear(3, 2).parameters())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert {key: group[key] for key in checks} == checks


# --- errors --------------------------------------------------------------------------------

def test_unknown_policy_names_the_file_line_and_field(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text(CAFFENET128_SOLVER.replace('"step"', '"stpe"'))
    with pytest.raises(SolverError, match=r"solver\.prototxt:2: unknown lr_policy 'stpe' "
                                          r"\(did you mean 'step'\?\)"):
        load_solver(path)


def test_unknown_solver_type_names_the_file_line_and_field(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text(CAFFENET128_SOLVER.replace("solver_type: SGD", 'type: "LBFGS"'))
    with pytest.raises(SolverError, match=r"solver\.prototxt:\d+: unknown solver type 'LBFGS'"):
        load_solver(path)


def test_missing_field_of_the_policy_names_the_file_and_field(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text(CAFFENET128_SOLVER.replace("stepsize: 100000", ""))
    with pytest.raises(SolverError, match=r"solver\.prototxt:1: lr_policy 'step' needs the "
                                          r"field 'stepsize'"):
        load_solver(path)
    path.write_text(CAFFENET128_SOLVER.replace("base_lr: 0.01", ""))
    with pytest.raises(SolverError, match="'base_lr' is missing"):
        load_solver(path)


def test_misspelt_solver_field_is_refused_with_a_suggestion():
    with pytest.raises(SolverError, match=r"<text>:3: unknown solver field 'weigth_decay' "
                                          r"\(did you mean 'weight_decay'\?\)"):
        load_solver(CAFFENET128_SOLVER.replace("weight_decay", "weigth_decay"))


def test_a_bad_value_names_the_line_and_field():
    with pytest.raises(OpError, match=r"<text>:3: stepsize must be >= 1, got 0"):
        load_solver(CAFFENET128_SOLVER.replace("stepsize: 100000", "stepsize: 0"))


def test_stepvalues_out_of_order_are_refused():
    with pytest.raises(SolverError, match="stepvalue must increase"):
        load_solver(solver_text("multistep", stepvalue=[1500, 800]))


def test_what_cnnlite_lacks_is_named_when_the_optimiser_is_made():
    adadelta = load_solver(CAFFENET128_SOLVER.replace("solver_type: SGD", 'type: "AdaDelta"'))
    assert adadelta.learning_rate(100_000) == pytest.approx(0.001)
    with pytest.raises(SolverError, match="solver type 'AdaDelta'.*no AdaDelta"):
        adadelta.make_optimizer(nn.Linear(3, 2).parameters())
    l1 = load_solver(CAFFENET128_SOLVER + 'regularization_type: "L1"\n')
    with pytest.raises(SolverError, match=r"<text>:6: regularization_type 'L1'"):
        l1.make_optimizer(nn.Linear(3, 2).parameters())


def test_a_network_file_without_solver_header_is_named_as_such():
    with pytest.raises(SolverError, match="network definition without a solver header"):
        load_solver('name: "net"\nlayer { name: "fc" type: "InnerProduct" }')


def test_transform_without_a_network_says_how_to_give_one():
    with pytest.raises(SolverError, match="no net_param.*pass net="):
        load_solver(CAFFENET128_SOLVER).transform("TRAIN")


# --- the data layer's transform ------------------------------------------------------------

NET = """name: "tiny"
layer { name: "data" type: "Data" top: "data" include { phase: TRAIN }
  transform_param { scale: 0.04 mirror: true crop_size: 128
                    mean_value: 104 mean_value: 117 mean_value: 124 } }
layer { name: "data" type: "Data" top: "data" include { phase: TEST }
  transform_param { scale: 0.04 mirror: false crop_size: 128
                    mean_value: 104 mean_value: 117 mean_value: 123 } }
"""


def caffe_formula(image_rgb, top, left, mirror, means):
    """Caffe's DataTransformer on a BGR image: crop, mirror, then scale * (x - mean)."""
    bgr = image_rgb[::-1, top:top + 128, left:left + 128].astype(np.float64)
    if mirror:
        bgr = bgr[:, :, ::-1]
    return 0.04 * (bgr - np.array(means, dtype=np.float64).reshape(3, 1, 1))


def test_test_phase_transform_is_the_central_crop_formula(rng):
    image = rng.integers(0, 256, size=(3, 144, 150), dtype=np.uint8)
    output = data_transform(parse_prototxt(NET), "TEST")(image)
    assert output.dtype == np.float32 and output.shape == (3, 128, 128)
    np.testing.assert_allclose(output, caffe_formula(image, 8, 11, False, (104, 117, 123)),
                               rtol=1e-5, atol=1e-5)


def test_train_phase_transform_is_the_formula_at_one_crop_and_flip(rng):
    image = rng.integers(0, 256, size=(3, 136, 140), dtype=np.uint8)
    transform = data_transform(parse_prototxt(NET), "TRAIN", rng=np.random.default_rng(3))
    matches = set()
    for _ in range(12):
        output = transform(image)
        found = [(top, left, mirror) for top in range(9) for left in range(13)
                 for mirror in (False, True)
                 if np.allclose(output, caffe_formula(image, top, left, mirror, (104, 117, 124)),
                                rtol=1e-5, atol=1e-5)]
        assert len(found) == 1
        matches.update(found)
    assert len(matches) > 1 and {mirror for _, _, mirror in matches} == {False, True}


def test_bgr_input_is_not_reversed(rng):
    image = rng.integers(0, 256, size=(3, 128, 128), dtype=np.uint8)
    output = data_transform(parse_prototxt(NET), "TEST", input_order="bgr")(image)
    expected = 0.04 * (image.astype(np.float64) - np.reshape([104, 117, 123], (3, 1, 1)))
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)


@needs_benchmark
def test_caffenet128_transform_resizes_then_crops_with_its_phase_means(rng):
    solver = load_solver(BENCHMARK / "caffenet128_lsuv.prototxt")
    image = rng.integers(0, 256, size=(3, 144, 160), dtype=np.uint8)  # already 144 short side
    np.testing.assert_allclose(solver.transform("TEST")(image),
                               caffe_formula(image, 8, 16, False, (104, 117, 123)),
                               rtol=1e-5, atol=1e-5)
    train = repr(solver.transform("TRAIN"))
    assert "ResizeShortSide(144)" in train and "RandomCrop(size=(128, 128)" in train
    assert "RandomHorizontalFlip(p=0.5)" in train and "[104.0, 117.0, 124.0]" in train


def test_a_phase_without_data_layer_is_named():
    train_only = NET[:NET.index("layer", NET.index("phase: TRAIN"))]
    with pytest.raises(SolverError, match="no data layer for phase TEST"):
        data_transform(parse_prototxt(train_only), "TEST")


def test_a_net_file_named_by_the_solver_is_read_beside_it(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(CAFFENET128_SOLVER + 'net: "net.prototxt"\n')
    transform = load_solver(tmp_path / "solver.prototxt").transform("TEST")
    assert "CenterCrop(size=(128, 128))" in repr(transform)


def test_warp_resize_gives_the_fixed_size_and_a_random_scale_is_refused(rng):
    warp = NET.replace("crop_size: 128", "crop_size: 32 resize_param { resize_mode: WARP "
                                         "height: 38 width: 38 }")
    image = rng.integers(0, 256, size=(3, 50, 70), dtype=np.uint8)
    warped = resize_bilinear(image, (38, 38))[::-1, 3:35, 3:35]
    np.testing.assert_allclose(data_transform(parse_prototxt(warp), "TEST")(image),
                               0.04 * (warped - np.reshape([104, 117, 123], (3, 1, 1))),
                               rtol=1e-5, atol=1e-4)
    assert data_transform(parse_prototxt(warp), "TEST", resize=False)(image).shape == \
        (3, 32, 32)
    with pytest.raises(SolverError, match="WARP 38x38 with prob 0.5.*resize=False"):
        data_transform(parse_prototxt(warp.replace("WARP", "WARP prob: 0.5")), "TEST")


def test_module_examples_run():
    assert doctest.testmod(caffe_solver).failed == 0
