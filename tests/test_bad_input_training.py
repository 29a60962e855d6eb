"""Bad input on the training side never crashes and never gives a silently wrong answer.

Gradients are checked where a kernel would read them next to a parameter (``.grad``
assignment, hooks, ``backward(grad)``, every optimiser step); ``load_state_dict`` checks
everything before it writes anything; the optimisers, schedulers, data loader, datasets,
transforms and the training loop refuse bad arguments through ``cnnlite.validate``, naming
themselves; damaged data files are reported with their path.
"""
import gzip
import pickle
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import cnnlite as cl
from cnnlite import nn, optim
from cnnlite.data import (CIFAR10, MNIST, DataLoader, Digits, ImageFolder, Subset,
                          TensorDataset, random_split, read_idx)
from cnnlite.data import transforms as T
from cnnlite.data.download import DataFileError
from cnnlite.errors import ArgumentTypeError, OpError
from cnnlite.optim import lr_scheduler as sched
from cnnlite.train import accuracy, evaluate, fit, seed_everything

OPTIMISERS = {"SGD": lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
              "Adam": lambda p: optim.Adam(p, lr=0.1),
              "Adagrad": lambda p: optim.Adagrad(p, lr=0.1),
              "RMSprop": lambda p: optim.RMSprop(p, lr=0.1)}


def small_dataset(n=6):
    images = np.random.default_rng(0).standard_normal((n, 1, 2, 2)).astype(np.float32)
    return TensorDataset(images, np.arange(n) % 3)


def small_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


# ---------------------------------------------------------------------------------------------
# Gradients where the kernels read them

NOT_A_GRADIENT = {
    "other shape": np.ones(4, np.float32),
    "one element": np.ones(1, np.float32),
    "one more axis": np.ones((1, 3), np.float32),
    "integers": np.ones(3, np.int64),
    "bools": np.ones(3, bool),
    "complex": np.ones(3, np.complex64),
    "a list": [1.0, 1.0, 1.0],
    "a string": "1 1 1",
}


@pytest.mark.parametrize("bad", NOT_A_GRADIENT.values(), ids=NOT_A_GRADIENT.keys())
def test_assigning_a_gradient_that_does_not_fit_the_tensor_is_refused(bad):
    w = nn.Parameter(np.zeros(3, np.float32))
    w.grad = np.full(3, 7.0, np.float32)
    with pytest.raises(OpError, match=r"Tensor\.grad: the gradient must be a floating-point "
                                      r"array of shape \(3,\)"):
        w.grad = bad
    np.testing.assert_array_equal(w.grad, np.full(3, 7.0))


@given(st.lists(st.integers(0, 4), max_size=3).map(tuple),
       st.lists(st.integers(0, 4), max_size=3).map(tuple))
def test_a_gradient_of_any_other_shape_is_refused(param_shape, grad_shape):
    assume(grad_shape != param_shape)
    w = nn.Parameter(np.zeros(param_shape))
    with pytest.raises(OpError, match=rf"of shape {re.escape(str(param_shape))} on cpu, got "
                                      rf"shape {re.escape(str(grad_shape))}"):
        w.grad = np.ones(grad_shape)
    assert w.grad is None


@pytest.mark.parametrize("value", [None, np.ones(3, np.float64), np.ones(3, np.float16),
                                   cl.tensor(np.ones(3, np.float32))],
                         ids=["None", "float64", "float16", "a Tensor"])
def test_none_or_a_floating_gradient_of_the_right_shape_is_accepted(value):
    w = nn.Parameter(np.zeros(3, np.float32))
    w.grad = value
    assert w.grad is None if value is None else w.grad.shape == (3,)


@pytest.mark.parametrize("name", OPTIMISERS)
def test_a_step_refuses_a_gradient_left_from_before_the_parameter_was_replaced(name):
    """The kernels read the gradient element by element next to the parameter: a gradient of
    10 for a parameter of 20 elements was read past its end."""
    w = nn.Parameter(np.zeros(10, np.float32))
    optimiser = OPTIMISERS[name]([w])
    w.grad = np.ones(10, np.float32)
    w.data = np.zeros(20, np.float32)
    with pytest.raises(OpError, match=rf"{name}\.step: parameter 0: the gradient must be a "
                                      rf"floating-point array of shape \(20,\).*got shape \(10,\)"):
        optimiser.step()
    np.testing.assert_array_equal(w.data, np.zeros(20))


@pytest.mark.parametrize("name", OPTIMISERS)
def test_a_step_refuses_state_left_from_before_the_parameter_was_replaced(name):
    w = nn.Parameter(np.zeros(10, np.float32))
    optimiser = OPTIMISERS[name]([w])
    w.grad = np.ones(10, np.float32)
    optimiser.step()
    w.data = np.zeros(20, np.float32)
    w.grad = np.ones(20, np.float32)
    with pytest.raises(OpError, match=rf"{name}\.step: parameter 0: its state .* is \(10,\)"):
        optimiser.step()


def test_a_step_with_one_bad_gradient_changes_no_parameter():
    first, second = nn.Parameter(np.zeros(3)), nn.Parameter(np.zeros(4))
    optimiser = optim.SGD([first, second], lr=0.1)
    first.grad, second.grad = np.ones(3), np.ones(4)
    second.data = np.zeros(5)
    with pytest.raises(OpError, match="parameter 1"):
        optimiser.step()
    np.testing.assert_array_equal(first.data, np.zeros(3))


def test_the_reported_segfault_is_a_clear_error(tmp_path):
    """The issue's example, in a child process: a gradient of one element for a parameter of
    ten million was read past its end (a segfault, or garbage written into the parameter)."""
    script = textwrap.dedent("""
        import numpy as np
        from cnnlite import nn, optim
        for make in (lambda p: optim.SGD(p, lr=1), lambda p: optim.Adam(p, lr=1)):
            p = nn.Parameter(np.zeros(10**7, np.float32))
            optimiser = make([p])
            try:
                p.grad = np.ones(1, np.float32)
            except ValueError as error:
                print("refused:", error)
            p._grad = np.ones(1, np.float32)      # past the setter, as a stale gradient is
            try:
                optimiser.step()
            except ValueError as error:
                print("refused:", error)
            assert not p.data.any()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused:") == 4
    assert "parameter 0: the gradient must be a floating-point array of shape (10000000,)" \
        in result.stdout


@pytest.mark.parametrize("data", [np.zeros(3, np.int64), np.zeros(3, np.float16),
                                  np.zeros(3, np.complex128)], ids=["int64", "float16", "complex"])
def test_optimisers_refuse_parameters_their_kernels_do_not_update(data):
    """An integer parameter would be stepped by a learning rate rounded to 0."""
    with pytest.raises(ArgumentTypeError, match=rf"SGD: can only optimise float32 and float64 "
                                                rf"parameters, got one of dtype {data.dtype}"):
        optim.SGD([cl.Tensor(data)], lr=0.1)


# ---------------------------------------------------------------------------------------------
# Hooks and the upstream gradient

def _wrong_shape(g):
    return np.ones(g.size + 1, g.dtype)


def _wider(g):
    return g.astype(np.float64)


def _integers(g):
    return np.ones(g.shape, np.int64)


def _a_list(g):
    return g.tolist()


@pytest.mark.parametrize("hook", [_wrong_shape, _wider, _integers, _a_list])
@pytest.mark.parametrize("where", ["leaf", "non-leaf"])
def test_a_hook_returning_something_that_is_not_the_gradient_is_refused_naming_it(hook, where):
    x = cl.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = x * 2
    (x if where == "leaf" else y).register_hook(hook)
    with pytest.raises(OpError, match=rf"hook '{hook.__name__}' of a tensor of shape \(2, 3\): "
                                      rf"the gradient must be .*float32"):
        y.sum().backward()
    assert x.grad is None


def test_a_hook_returning_a_fitting_gradient_replaces_it():
    x = cl.tensor(np.ones(3, np.float32), requires_grad=True)
    x.register_hook(lambda g: g * 3)
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 6.0))


@pytest.mark.parametrize("grad, fragment", [
    (np.ones(3, np.complex64), "real numbers, got dtype complex64"),
    (np.array(["a", "b", "c"]), "real numbers, got dtype <U1"),
    ([[1.0], [1.0, 2.0]], "an array of numbers"),
    (np.ones(4), r"shape \(4,\) given for a tensor of shape \(3,\)"),
])
def test_backward_refuses_an_upstream_gradient_that_is_not_one(grad, fragment):
    y = cl.tensor(np.ones(3, np.float32), requires_grad=True) * 2
    with pytest.raises(OpError, match=rf"backward\(\): .*{fragment}"):
        y.backward(grad)


def test_backward_gives_the_upstream_gradient_the_root_s_dtype():
    x = cl.tensor(np.ones(3, np.float32), requires_grad=True)
    x.backward(cl.tensor(np.ones(3, np.float64)))
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_requires_grad_is_a_real_boolean(value):
    with pytest.raises(ArgumentTypeError, match="requires_grad must be True or False"):
        cl.tensor([1.0], requires_grad=value)


def test_complex_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        cl.tensor(np.ones(2, np.complex128), requires_grad=True)


# ---------------------------------------------------------------------------------------------
# load_state_dict: everything checked, then everything written

@pytest.mark.parametrize("bad_bias, fragment", [
    (np.array(["a", "b", "c"]), "bias has dtype <U1"),
    (np.array([1, None, 3], dtype=object), "bias has dtype object"),
    (np.ones(3, np.complex128), "bias has dtype complex128"),
], ids=["strings", "objects", "complex"])
@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_with_an_unusable_entry_loads_nothing(bad_bias, fragment, strict):
    layer = nn.Linear(2, 3)
    before = layer.state_dict()
    with pytest.raises(nn.StateDictError, match=rf"Linear\.load_state_dict: nothing was loaded"
                                                rf".*{fragment}"):
        layer.load_state_dict({"weight": np.ones((3, 2)), "bias": bad_bias}, strict=strict)
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("count", [2.7, np.nan, np.inf])
def test_load_state_dict_does_not_cut_floats_into_an_integer_buffer(count):
    bn = nn.BatchNorm2d(2)
    state = {**bn.state_dict(), "num_batches_tracked": np.array(count)}
    with pytest.raises(nn.StateDictError, match="num_batches_tracked holds fractions or "
                                                "non-finite values, the model's tensor is int64"):
        bn.load_state_dict(state)
    assert int(bn.num_batches_tracked.item()) == 0


def test_load_state_dict_takes_whole_floats_for_an_integer_buffer():
    bn = nn.BatchNorm2d(2)
    bn.load_state_dict({**bn.state_dict(), "num_batches_tracked": np.array(7.0, np.float16)})
    assert bn.num_batches_tracked.item() == 7


@pytest.mark.parametrize("given, error", [([("weight", 1)], TypeError), (3, TypeError)])
def test_load_state_dict_wants_a_mapping(given, error):
    with pytest.raises(error, match=r"Linear\.load_state_dict: expected a dict"):
        nn.Linear(2, 3).load_state_dict(given)


def test_load_state_dict_strict_is_a_real_boolean():
    layer = nn.Linear(2, 3)
    with pytest.raises(ArgumentTypeError, match="strict must be True or False"):
        layer.load_state_dict(layer.state_dict(), strict="no")


def _trained_sgd():
    w = nn.Parameter(np.zeros(3))
    optimiser = optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = np.ones(3)
    optimiser.step()
    return w, optimiser


@pytest.mark.parametrize("key, value, fragment", [
    ("param_groups.0.lr", np.array(np.nan), "lr must be finite"),
    ("param_groups.0.momentum", np.array(-1.0), "momentum must be >= 0"),
    ("param_groups.0.nesterov", np.array("yes"), "nesterov must be True or False"),
    ("param_groups.0.bogus", np.array(1.0), r"unknown hyper-parameter\(s\) \['bogus'\]"),
    ("state.0.momentum_buffer", np.ones(3, np.complex128), "dtype complex128"),
    ("state.0.momentum_buffer", np.ones(4), r"shape \(4,\)"),
])
def test_optimiser_load_state_dict_checks_everything_before_changing_anything(key, value,
                                                                              fragment):
    _, optimiser = _trained_sgd()
    saved = optimiser.state_dict()
    saved["param_groups.0.lr"] = 0.5           # a good change that must not land either
    saved[key] = value
    _, target = _trained_sgd()
    with pytest.raises(OpError, match=fragment):
        target.load_state_dict(saved)
    assert target.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(target.state[0]["momentum_buffer"], np.ones(3))


# ---------------------------------------------------------------------------------------------
# Optimiser and scheduler arguments

@pytest.mark.parametrize("make, fragment", [
    (lambda p: optim.SGD(p, lr=float("nan")), "SGD: lr must be finite"),
    (lambda p: optim.SGD(p, lr=float("inf")), "SGD: lr must be finite"),
    (lambda p: optim.SGD(p, lr=-0.1), "SGD: lr must be >= 0"),
    (lambda p: optim.SGD(p, lr="0.1"), "SGD: lr must be a real number"),
    (lambda p: optim.SGD(p, lr=True), "SGD: lr must be a real number"),
    (lambda p: optim.SGD(p, lr=None), "SGD: lr must be a real number"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "SGD: momentum must be >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, dampening=1.5), "SGD: dampening must be <= 1"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "SGD: weight_decay must be >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov="yes"),
     "SGD: nesterov must be True or False"),
    (lambda p: optim.Adam(p, betas=(0.9,)), "Adam: betas must be two numbers"),
    (lambda p: optim.Adam(p, betas="ab"), "Adam: betas must be two numbers"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.9)), r"Adam: betas\[0\] must be < 1"),
    (lambda p: optim.Adam(p, betas=(0.9, float("nan"))), r"Adam: betas\[1\] must be finite"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Adam: eps must be >= 0"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), "Adagrad: lr_decay must be >= 0"),
    (lambda p: optim.Adagrad(p, initial_accumulator_value=float("nan")),
     "Adagrad: initial_accumulator_value must be finite"),
    (lambda p: optim.RMSprop(p, alpha=1.5), "RMSprop: alpha must be <= 1"),
    (lambda p: optim.RMSprop(p, centered=1), "RMSprop: centered must be True or False"),
    (lambda p: optim.SGD([{"params": p, "lr": float("nan")}], lr=0.1), "SGD: lr must be finite"),
])
def test_optimisers_refuse_bad_hyper_parameters_naming_them(make, fragment):
    with pytest.raises(OpError, match=fragment):
        make([nn.Parameter(np.zeros(3))])


@pytest.mark.parametrize("model", [nn.Linear(2, 3), nn.Sequential(nn.Linear(2, 3))],
                         ids=["Linear", "Sequential"])
def test_passing_the_model_instead_of_its_parameters_says_what_to_pass(model):
    with pytest.raises(TypeError, match=rf"SGD: params is a {type(model).__name__} module; "
                                        r"pass model\.parameters\(\)"):
        optim.SGD(model, lr=0.1)


@pytest.mark.parametrize("params, fragment", [
    (5, "params must be an iterable of Tensors or of parameter-group dicts, got int"),
    (["w"], "parameters must be Tensors, got str"),
    ([{"lr": 0.1}], "a parameter group is a dict with a 'params' entry"),
    ((p for p in []), "empty list of parameters .*used up after one pass"),
])
def test_optimisers_say_what_params_must_be(params, fragment):
    with pytest.raises(OpError, match=fragment):
        optim.SGD(params, lr=0.1)


def test_caffe_param_groups_wants_the_model():
    with pytest.raises(ArgumentTypeError, match="caffe_param_groups: model must be an "
                                                "nn.Module, got list"):
        optim.caffe_param_groups([nn.Parameter(np.zeros(2))], lr=0.1, weight_decay=0.0)


def test_zero_grad_and_step_check_their_arguments():
    w = nn.Parameter(np.zeros(3))
    optimiser = optim.SGD([w], lr=0.1)
    with pytest.raises(ArgumentTypeError, match="SGD.zero_grad: set_to_none must be True"):
        optimiser.zero_grad(set_to_none="no")
    with pytest.raises(ArgumentTypeError, match="SGD.step: closure must be a function"):
        optimiser.step(closure=1.0)


def _optimiser():
    return optim.SGD([nn.Parameter(np.zeros(3))], lr=0.1)


@pytest.mark.parametrize("make, fragment", [
    (lambda o: sched.StepLR(o, step_size=0), "StepLR: step_size must be >= 1"),
    (lambda o: sched.StepLR(o, step_size=2.5), "StepLR: step_size must be an int"),
    (lambda o: sched.StepLR(o, step_size=True), "StepLR: step_size must be an int"),
    (lambda o: sched.StepLR(o, step_size=2, gamma=-0.1), "StepLR: gamma must be >= 0"),
    (lambda o: sched.ExponentialLR(o, gamma=float("nan")), "ExponentialLR: gamma must be finite"),
    (lambda o: sched.MultiStepLR(o, milestones=[1.5]), "MultiStepLR: milestones must be an int"),
    (lambda o: sched.MultiStepLR(o, milestones=[-1]), "MultiStepLR: milestones must be >= 0"),
    (lambda o: sched.MultiStepLR(o, milestones=5), "MultiStepLR: milestones must be a list"),
    (lambda o: sched.PolyLR(o, max_iter=0), "PolyLR: max_iter must be >= 1"),
    (lambda o: sched.PolyLR(o, max_iter=10, power=-1), "PolyLR: power must be >= 0"),
    (lambda o: sched.PolyLR(o, max_iter=10, power="cube"), "PolyLR: unknown power 'cube'"),
    (lambda o: sched.CosineAnnealingLR(o, T_max=0), "CosineAnnealingLR: T_max must be >= 1"),
    (lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=float("nan")),
     "CosineAnnealingLR: eta_min must be finite"),
    (lambda o: sched.LinearCosineLR(o, decay_steps=0), "LinearCosineLR: decay_steps must be >= 1"),
    (lambda o: sched.LinearCosineLR(o, decay_steps=5, beta=-0.1),
     "LinearCosineLR: beta must be >= 0"),
    (lambda o: sched.LinearWarmup(o, warmup_iters=-1), "LinearWarmup: warmup_iters must be >= 0"),
    (lambda o: sched.LinearWarmup(o, warmup_iters=2.5), "LinearWarmup: warmup_iters must be an"),
    (lambda o: sched.LinearWarmup(o, warmup_iters=5, start_factor=1.5),
     "LinearWarmup: start_factor must be <= 1"),
    (lambda o: sched.StepLR(object(), step_size=2), "StepLR: expected an Optimizer"),
])
def test_schedulers_refuse_bad_arguments_naming_them(make, fragment):
    with pytest.raises(OpError, match=fragment):
        make(_optimiser())


@pytest.mark.parametrize("policy, arguments", [
    (sched.step_lr, dict(step_size=0)), (sched.poly_lr, dict(max_iter=0)),
    (sched.cosine_lr, dict(T_max=0)), (sched.linear_cosine_lr, dict(decay_steps=0)),
])
def test_a_policy_with_no_iterations_is_an_error_not_a_division_by_zero(policy, arguments):
    with pytest.raises(OpError, match="must be >= 1, got 0"):
        policy(3, 0.1, **arguments)


@pytest.mark.parametrize("state, fragment", [
    ({"iteration": -1, "base_lrs": np.array([0.1])}, "iteration must be >= 0"),
    ({"iteration": 2.5, "base_lrs": np.array([0.1])}, "iteration must be an int"),
    ({"iteration": 3, "base_lrs": np.array([np.nan])}, "base_lrs must be finite"),
    ({"iteration": 3, "base_lrs": np.array(["0.1"])}, "base_lrs must be numbers"),
])
def test_a_scheduler_state_is_checked_before_it_is_loaded(state, fragment):
    scheduler = sched.StepLR(_optimiser(), step_size=2)
    with pytest.raises(OpError, match=fragment):
        scheduler.load_state_dict(state)
    assert scheduler.iteration == 0 and scheduler.base_lrs == [0.1]


# ---------------------------------------------------------------------------------------------
# The data loader, datasets and transforms

@pytest.mark.parametrize("arguments, fragment", [
    (dict(batch_size=2.5), "DataLoader: batch_size must be an int, got float 2.5"),
    (dict(batch_size=True), "DataLoader: batch_size must be an int, got bool"),
    (dict(batch_size="4"), "DataLoader: batch_size must be an int, got str"),
    (dict(batch_size=-1), "DataLoader: batch_size must be >= 1"),
    (dict(shuffle="yes"), "DataLoader: shuffle must be True or False"),
    (dict(shuffle=1), "DataLoader: shuffle must be True or False"),
    (dict(drop_last="no"), "DataLoader: drop_last must be True or False"),
    (dict(prefetch=-1), "DataLoader: prefetch must be >= 0"),
    (dict(prefetch=1.5), "DataLoader: prefetch must be an int"),
    (dict(seed=-1), "DataLoader: seed must be >= 0"),
    (dict(seed=0.5), "DataLoader: seed must be an int"),
    (dict(transform=3), "DataLoader: transform must be callable"),
    (dict(collate_fn="stack"), "DataLoader: collate_fn must be callable"),
    (dict(device="gpu"), "DataLoader: unknown device 'gpu'"),
    (dict(device=0), "DataLoader: device must be a string"),
])
def test_the_loader_refuses_bad_arguments_instead_of_rounding_them(arguments, fragment):
    with pytest.raises(OpError, match=fragment):
        DataLoader(small_dataset(), **arguments)


@given(st.one_of(st.floats(), st.booleans(), st.integers(max_value=0), st.text(max_size=3),
                 st.none()))
def test_the_loader_takes_only_a_whole_positive_batch_size(batch_size):
    with pytest.raises(OpError, match="DataLoader: batch_size"):
        DataLoader(small_dataset(), batch_size=batch_size)


def test_the_loader_wants_a_dataset():
    with pytest.raises(ArgumentTypeError, match="DataLoader: dataset must have len"):
        DataLoader(5)


@pytest.mark.parametrize("state, fragment", [
    ({"batches_done": 99, "generator": None}, "batches_done must be <= 6"),
    ({"batches_done": 1.5, "generator": None}, "batches_done must be an int"),
    ({"batches_done": 0, "generator": {"bit_generator": "MT19937"}}, "does not fit"),
])
def test_a_loader_state_is_checked_before_it_is_loaded(state, fragment):
    loader = DataLoader(small_dataset(), batch_size=1, shuffle=True, seed=0)
    before = loader.state_dict()
    with pytest.raises(OpError, match=fragment):
        loader.load_state_dict(state)
    assert loader.state_dict()["generator"] == before["generator"]


@pytest.mark.parametrize("lengths, seed, fragment", [
    ([0.5, float("nan")], 0, r"lengths\[1\] must be finite"),
    ([True, False], 0, r"lengths\[0\] must be a real number"),
    ([0.5, "0.5"], 0, r"lengths\[1\] must be a real number"),
    ([1.5, -0.5], 0, r"lengths\[0\] must be <= 1"),
    (5, 0, "lengths must be a list of counts or fractions"),
    ([3, 3], -1, "random_split: seed must be >= 0"),
])
def test_random_split_refuses_bad_lengths_and_seeds(lengths, seed, fragment):
    with pytest.raises(OpError, match=fragment):
        random_split(small_dataset(), lengths, seed)


@pytest.mark.parametrize("indices", [[0.5, 1.5], np.array([True, False, True])],
                         ids=["floats", "a boolean mask"])
def test_subset_indices_are_integers_not_cut_floats_or_masks(indices):
    with pytest.raises(OpError, match="Subset: indices must be integers"):
        Subset(small_dataset(), indices)


@pytest.mark.parametrize("index", [1.0, True, "1"])
def test_a_dataset_index_is_an_int(index):
    with pytest.raises(ArgumentTypeError, match="TensorDataset: index must be an int"):
        small_dataset()[index]


def test_tensor_dataset_refuses_images_that_are_not_real_numbers():
    with pytest.raises(OpError, match="TensorDataset: images must be real numbers, got dtype "
                                      "complex128"):
        TensorDataset(np.ones((2, 1, 2, 2), np.complex128), np.arange(2))


@pytest.mark.parametrize("make, fragment", [
    (lambda: T.RandomCrop(2.5), "RandomCrop: size must be an int or a pair"),
    (lambda: T.RandomCrop(True), "RandomCrop: size must be an int or a pair"),
    (lambda: T.RandomCrop((4, 0)), r"RandomCrop: size\[1\] must be >= 1"),
    (lambda: T.RandomCrop(4, padding=-1), "RandomCrop: padding must be >= 0"),
    (lambda: T.RandomCrop(4, padding=1.5), "RandomCrop: padding must be an int"),
    (lambda: T.RandomCrop(4, rng=0), "RandomCrop: rng must be a numpy.random.Generator"),
    (lambda: T.CenterCrop(0), r"CenterCrop: size\[0\] must be >= 1"),
    (lambda: T.CenterCrop((2,)), "CenterCrop: size must be an int or a pair"),
    (lambda: T.ResizeShortSide(2.5), "ResizeShortSide: size must be an int"),
    (lambda: T.RandomHorizontalFlip(p=1.5), "RandomHorizontalFlip: p must be <= 1"),
    (lambda: T.RandomHorizontalFlip(p="0.5"), "RandomHorizontalFlip: p must be a real number"),
    (lambda: T.Normalize(0.5, 0.0), "Normalize: std must be > 0"),
    (lambda: T.Normalize(float("nan"), 1.0), "Normalize: mean must be finite"),
    (lambda: T.Normalize("a", 1.0), "Normalize: mean must be a number or a list"),
    (lambda: T.ToFloat(scale=float("inf")), "ToFloat: scale must be finite"),
    (lambda: T.CaffeTransform(mean_bgr=(1.0, 2.0)), "CaffeTransform: mean_bgr must hold 3"),
    (lambda: T.Compose([T.ToFloat(), 1]), r"Compose: transforms\[1\] must be callable"),
])
def test_transforms_refuse_bad_arguments_naming_them(make, fragment):
    with pytest.raises(OpError, match=fragment):
        make()


def test_a_transform_refuses_an_image_that_is_not_numbers():
    with pytest.raises(OpError, match="ToFloat: expected an image of real numbers"):
        T.ToFloat()(np.full((1, 2, 2), "x"))


@pytest.mark.parametrize("make, fragment", [
    (lambda root: MNIST(root, train="no"), "MNIST: train must be True or False"),
    (lambda root: CIFAR10(root, download=1), "CIFAR10: download must be True or False"),
    (lambda root: Digits(train="no"), "Digits: train must be True or False"),
    (lambda root: Digits(test_fraction=1.0), "Digits: test_fraction must be < 1"),
    (lambda root: Digits(seed=-1), "Digits: seed must be >= 0"),
    (lambda root: MNIST(None), "MNIST: root must be a folder path"),
    (lambda root: CIFAR10(5), "CIFAR10: root must be a folder path"),
    (lambda root: ImageFolder(root, mode="rgb"), "ImageFolder: mode must be one of L, RGB, RGBA"),
    (lambda root: ImageFolder(root, transform="flip"), "ImageFolder: transform must be callable"),
])
def test_data_sets_check_their_arguments(tmp_path, make, fragment):
    with pytest.raises(OpError, match=fragment):
        make(tmp_path)


# ---------------------------------------------------------------------------------------------
# Damaged data files

def _write_pickle(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=2))


def _cifar_batch(data=None, labels=None):
    return {b"data": np.zeros((2, 3072), np.uint8) if data is None else data,
            b"labels": [0, 0] if labels is None else labels}


DAMAGED_CIFAR = {
    "garbage": (b"\x00 these bytes are no pickle \xff" * 20, "cannot be unpickled"),
    "truncated": (pickle.dumps(_cifar_batch(), protocol=2)[:500], "cannot be unpickled"),
    "a list": ([1, 2, 3], "it holds a list, not a dict"),
    "no data": ({b"labels": [0]}, r"no b'data' entry"),
    "float pixels": (_cifar_batch(data=np.full((2, 3072), 0.5)),
                     r"b'data' entry must hold integers in \[0, 255\], got dtype float64"),
    "pixels over 255": (_cifar_batch(data=np.full((2, 3072), 300)),
                        r"got values 300\.\.300"),
    "label 10": (_cifar_batch(labels=[0, 10]), r"integers in \[0, 9\]"),
    "short rows": (_cifar_batch(data=np.zeros((2, 100), np.uint8)),
                   r"expected data \(N, 3072\) and N labels, got data \(2, 100\)"),
}


@pytest.mark.parametrize("content, fragment", DAMAGED_CIFAR.values(), ids=DAMAGED_CIFAR.keys())
def test_a_damaged_cifar_batch_is_reported_with_its_path(tmp_path, content, fragment):
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    if isinstance(content, bytes):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    else:
        _write_pickle(path, content)
    with pytest.raises(DataFileError, match=rf"{re.escape(str(path))}: .*{fragment}"):
        CIFAR10(tmp_path, train=False)


def _idx(array):
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape) + array.tobytes()


_GZIPPED = gzip.compress(_idx(np.random.default_rng(0).integers(0, 256, (5, 28, 28),
                                                                 dtype=np.uint8)))
DAMAGED_GZ = {
    "not gzip": b"these bytes were never compressed" * 10,
    "truncated": _GZIPPED[:len(_GZIPPED) // 2],
    "bad checksum": _GZIPPED[:-8] + b"\0" * 8,
}


@pytest.mark.parametrize("content", DAMAGED_GZ.values(), ids=DAMAGED_GZ.keys())
def test_a_damaged_gz_file_is_reported_with_its_path(tmp_path, content):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=rf"{re.escape(str(path))}: cannot be decompressed, "
                                            r"the \.gz file "
                                            r"is corrupt or truncated"):
        read_idx(path)


def test_an_idx_file_that_ends_inside_its_header_is_reported(tmp_path):
    path = tmp_path / "cut-idx"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00")   # three dimensions announced, none given
    with pytest.raises(DataFileError, match=rf"{re.escape(str(path))}: the header announces 3"):
        read_idx(path)


def test_a_damaged_image_is_reported_with_its_path(tmp_path):
    (tmp_path / "cat").mkdir()
    path = tmp_path / "cat" / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 5)
    with pytest.raises(DataFileError, match=rf"{re.escape(str(path))}: cannot be decoded"):
        ImageFolder(tmp_path)[0]


# ---------------------------------------------------------------------------------------------
# The training loop

EMPTY_LOADERS = {
    "empty dataset": lambda: DataLoader(small_dataset(0), batch_size=4),
    "drop_last with too few samples": lambda: DataLoader(small_dataset(3), batch_size=4,
                                                         drop_last=True),
    "a list of no batches": lambda: [],
}


@pytest.mark.parametrize("make", EMPTY_LOADERS.values(), ids=EMPTY_LOADERS.keys())
def test_evaluate_on_an_empty_loader_is_an_error_not_nan_and_zero_percent(make):
    with pytest.raises(OpError, match="evaluate: the loader gave no samples"):
        evaluate(small_model(), make())


@pytest.mark.parametrize("make", EMPTY_LOADERS.values(), ids=EMPTY_LOADERS.keys())
def test_fit_on_an_empty_loader_is_an_error_naming_it(make):
    model = small_model()
    with pytest.raises(OpError, match="fit: train_loader gave no samples"):
        fit(model, make(), None, optim.SGD(model.parameters(), lr=0.1), progress=False)


def test_the_empty_loader_error_gives_the_dataset_size_and_batching():
    loader = EMPTY_LOADERS["drop_last with too few samples"]()
    with pytest.raises(OpError, match=r"DataLoader over a dataset of 3 samples \(batch_size=4, "
                                      r"drop_last=True\)"):
        evaluate(small_model(), loader)


def test_fit_refuses_an_empty_validation_loader_before_training():
    model = small_model()
    before = model.state_dict()
    with pytest.raises(OpError, match="fit: val_loader gave no samples"):
        fit(model, DataLoader(small_dataset(), batch_size=2), DataLoader(small_dataset(0)),
            optim.SGD(model.parameters(), lr=0.1), progress=False)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


@pytest.mark.parametrize("arguments, fragment", [
    (dict(epochs=0), "fit: epochs must be >= 1"),
    (dict(epochs=2.5), "fit: epochs must be an int"),
    (dict(epochs=True), "fit: epochs must be an int"),
    (dict(seed=-1), "fit: seed must be >= 0"),
    (dict(progress="no"), "fit: progress must be True or False"),
    (dict(detect_anomaly=1), "fit: detect_anomaly must be True or False"),
    (dict(schedule_per="batch"), "fit: schedule_per must be 'epoch' or 'step'"),
    (dict(loss_fn="cross_entropy"), "fit: loss_fn must be callable"),
])
def test_fit_refuses_bad_arguments_before_training(arguments, fragment):
    model = small_model()
    with pytest.raises(OpError, match=fragment):
        fit(model, DataLoader(small_dataset(), batch_size=2), None,
            optim.SGD(model.parameters(), lr=0.1), **{"progress": False, **arguments})


def test_fit_names_objects_given_in_the_wrong_places():
    model = small_model()
    optimiser = optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(small_dataset(), batch_size=2)
    with pytest.raises(ArgumentTypeError, match="fit: optimizer must be an optim.Optimizer, "
                                                "got StepLR"):
        fit(model, loader, None, sched.StepLR(optimiser, 1), progress=False)
    with pytest.raises(ArgumentTypeError, match="fit: model must be an nn.Module, got SGD"):
        fit(optimiser, loader, None, optimiser, progress=False)


@pytest.mark.parametrize("topk, fragment", [(True, "topk must be an int"),
                                            ((1, 2.0), "topk must be an int"),
                                            (0, "topk must be >= 1"),
                                            ("1", "topk must be an int or a tuple")])
def test_accuracy_takes_whole_positive_ks(topk, fragment):
    with pytest.raises(OpError, match=f"accuracy: {fragment}"):
        accuracy(np.eye(3), np.arange(3), topk)


def test_accuracy_over_no_samples_is_an_error_not_zero():
    with pytest.raises(OpError, match="accuracy: no samples"):
        accuracy(np.zeros((0, 3)), np.zeros(0, np.int64), topk=1)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_seed_everything_takes_a_non_negative_int(seed):
    with pytest.raises(OpError, match="seed_everything: seed must be"):
        seed_everything(seed)


# ---------------------------------------------------------------------------------------------
# Modules

@pytest.mark.parametrize("call, fragment", [
    (lambda m: m.train("no"), "Sequential.train: mode must be True or False"),
    (lambda m: m.zero_grad(set_to_none="no"), "Sequential.zero_grad: set_to_none must be"),
    (lambda m: m.to(dtype=np.int32), "Sequential.to: layers compute in float32 or float64, "
                                     "got dtype int32"),
    (lambda m: m.to(dtype=np.float16), "Sequential.to: layers compute in float32 or float64"),
    (lambda m: m.to(dtype="not a dtype"), "Sequential.to: dtype 'not a dtype' is not a NumPy"),
])
def test_module_methods_refuse_bad_arguments(call, fragment):
    model = small_model()
    with pytest.raises(OpError, match=fragment):
        call(model)
    assert model.training and model[1].weight.dtype == np.float32


@pytest.mark.parametrize("index", [True, 1.0, "1"])
def test_containers_are_indexed_by_ints(index):
    with pytest.raises(TypeError, match="Sequential: indices must be ints or slices"):
        small_model()[index]


@pytest.mark.parametrize("name, error", [(1, TypeError), ("a.b", KeyError), ("", KeyError)])
def test_registered_names_are_strings_without_dots(name, error):
    with pytest.raises(error, match="register_buffer: name must be"):
        nn.Module().register_buffer(name, np.zeros(2))


def test_a_parameter_is_floating_point():
    with pytest.raises(ArgumentTypeError, match=r"Parameter: a learned value is floating-point, "
                                                r"got dtype int64 of shape \(3,\)"):
        nn.Parameter(np.arange(3))
