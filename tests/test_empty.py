"""The empty batch (N = 0): every op and layer runs forward and backward, as in PyTorch.

A data pipeline can hand a model an empty batch (the filtered remainder of a data set, a
sampler with nothing left). PyTorch runs it: the outputs are empty, the inputs' gradients are
empty, the parameters' gradients are zeros, and batch normalisation leaves its running
statistics alone. So does cnnlite; each op and layer is run at N = 0 and compared with the same
op at N = 2 (the shape) and with its PyTorch twin where it has one (shapes and values).

Zero sizes other than the batch are refused by name (tests/test_bad_input_ops.py), or give the
empty result PyTorch gives (the last tests here).
"""
import math
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlite as cl
from cnnlite import backend, nn
from cnnlite import functional as F


class Case(NamedTuple):
    sample_shape: tuple          # x's shape without the batch axis
    ours: Callable               # (x, *parameters) -> y
    theirs: Callable | None      # the same with torch tensors, or None
    parameters: tuple = ()       # shapes of the parameters, passed after x


def torch_maxout(x, pieces):
    return x.reshape(x.shape[0], x.shape[1] // pieces, pieces, *x.shape[2:]).amax(2)


def torch_apl(x, a, b):
    view = (a.shape[0], 1, a.shape[1]) + (1,) * (x.dim() - 2)
    return torch.relu(x) + (a.reshape(view) * torch.relu(b.reshape(view) - x)).sum(0)


def torch_spp(x, levels=(1, 2, 4)):
    return torch.cat([TF.adaptive_max_pool2d(x, n).flatten(1) for n in levels], 1)


TARGETS = lambda n: np.zeros(n, dtype=np.int64)  # noqa: E731

OPS = {
    "conv2d": Case((3, 6, 6), lambda x, w, b: F.conv2d(x, w, b, padding=1),
                   lambda x, w, b: TF.conv2d(x, w, b, padding=1), ((4, 3, 3, 3), (4,))),
    "conv2d_grouped_strided": Case(
        (4, 7, 7), lambda x, w: F.conv2d(x, w, stride=2, dilation=2, groups=2),
        lambda x, w: TF.conv2d(x, w, stride=2, dilation=2, groups=2), ((6, 2, 3, 3),)),
    "linear": Case((6,), F.linear, TF.linear, ((4, 6), (4,))),
    "max_pool2d": Case((3, 6, 6), lambda x: F.max_pool2d(x, 3, 2, 1),
                       lambda x: TF.max_pool2d(x, 3, 2, 1)),
    "avg_pool2d": Case((3, 7, 7), lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
                       lambda x: TF.avg_pool2d(x, 3, 2, 1, True, False)),
    "adaptive_avg_pool2d": Case((3, 7, 5), lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
                                lambda x: TF.adaptive_avg_pool2d(x, (3, 2))),
    "adaptive_max_pool2d": Case((3, 7, 5), lambda x: F.adaptive_max_pool2d(x, (3, 2)),
                                lambda x: TF.adaptive_max_pool2d(x, (3, 2))),
    "global_avg_pool2d": Case((3, 4, 4), F.global_avg_pool2d,
                              lambda x: TF.adaptive_avg_pool2d(x, 1)),
    "stochastic_pool2d": Case((3, 6, 6), lambda x: F.stochastic_pool2d(abs(x), 2), None),
    "stochastic_pool2d_eval": Case(
        (3, 6, 6), lambda x: F.stochastic_pool2d(abs(x), 2, training=False), None),
    "max_avg_pool2d": Case((3, 6, 6), lambda x: F.max_avg_pool2d(x, 2),
                           lambda x: TF.max_pool2d(x, 2) + TF.avg_pool2d(x, 2)),
    "spatial_pyramid_pool2d": Case((3, 7, 7), F.spatial_pyramid_pool2d, torch_spp),
    "batch_norm_training": Case(
        (3, 4, 4), lambda x, w, b: F.batch_norm(x, np.zeros(3), np.ones(3), w, b, training=True),
        lambda x, w, b: TF.batch_norm(x, torch.zeros(3, dtype=x.dtype),
                                      torch.ones(3, dtype=x.dtype), w, b, training=True),
        ((3,), (3,))),
    "batch_norm_evaluation": Case(
        (3, 4), lambda x, w, b: F.batch_norm(x, np.zeros(3), np.ones(3), w, b),
        lambda x, w, b: TF.batch_norm(x, torch.zeros(3, dtype=x.dtype),
                                      torch.ones(3, dtype=x.dtype), w, b),
        ((3,), (3,))),
    "batch_norm_batch_statistics": Case(
        (3,), lambda x: F.batch_norm(x, None, None), lambda x: TF.batch_norm(x, None, None,
                                                                             training=True)),
    "local_response_norm": Case((5, 3, 3), lambda x: F.local_response_norm(x, 3),
                                lambda x: TF.local_response_norm(x, 3)),
    "dropout": Case((3, 4), lambda x: F.dropout(x, 0.3), lambda x: TF.dropout(x, 0.3)),
    "relu": Case((3, 4), F.relu, TF.relu),
    "leaky_relu": Case((3, 4), lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "rrelu_training": Case((3, 4), lambda x: F.rrelu(x, training=True),
                           lambda x: TF.rrelu(x, training=True)),
    "prelu": Case((3, 4), F.prelu, TF.prelu, ((3,),)),
    "elu": Case((3, 4), F.elu, TF.elu),
    "selu": Case((3, 4), F.selu, TF.selu),
    "sigmoid": Case((3, 4), F.sigmoid, torch.sigmoid),
    "tanh": Case((3, 4), F.tanh, torch.tanh),
    "scaled_tanh": Case((3, 4), F.scaled_tanh, lambda x: 1.7159 * torch.tanh(2 * x / 3)),
    "softplus": Case((3, 4), F.softplus, TF.softplus),
    "shifted_softplus": Case((3, 4), F.shifted_softplus,
                             lambda x: TF.softplus(x) - math.log(2)),
    "maxout": Case((6, 2, 2), lambda x: F.maxout(x, 3), lambda x: torch_maxout(x, 3)),
    "apl": Case((3, 2, 2), F.apl, torch_apl, ((2, 3), (2, 3))),
    "softmax": Case((5, 2), lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1)),
    "log_softmax": Case((5,), lambda x: F.log_softmax(x, -1), lambda x: TF.log_softmax(x, -1)),
    "cross_entropy": Case((5,), lambda x: F.cross_entropy(x, TARGETS(x.shape[0])),
                          lambda x: TF.cross_entropy(x, torch.tensor(TARGETS(x.shape[0])))),
    "cross_entropy_sum": Case(
        (5, 3), lambda x: F.cross_entropy(x, TARGETS((x.shape[0], 3)), reduction="sum"),
        lambda x: TF.cross_entropy(x, torch.tensor(TARGETS((x.shape[0], 3))), reduction="sum")),
    "nll_loss": Case((5,), lambda x: F.nll_loss(x, TARGETS(x.shape[0]), reduction="none"),
                     lambda x: TF.nll_loss(x, torch.tensor(TARGETS(x.shape[0])),
                                           reduction="none")),
    "mse_loss": Case((3,), lambda x: F.mse_loss(x, np.ones(x.shape)),
                     lambda x: TF.mse_loss(x, torch.ones(x.shape, dtype=x.dtype))),
    "flatten": Case((3, 2, 2), lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1)),
    "pad": Case((3, 2), lambda x: F.pad(x, ((0, 0), (1, 1), (2, 0))),
                lambda x: TF.pad(x, (2, 0, 1, 1))),
    "sum": Case((3, 2), lambda x: x.sum(axis=1), lambda x: x.sum(1)),
    "max": Case((3, 2), lambda x: x.max(axis=1), lambda x: x.amax(1)),
    "transpose": Case((3, 2), lambda x: F.transpose(x, 0, 2, 1),
                      lambda x: x.permute(0, 2, 1)),
    "split": Case((4,), lambda x: F.split(x, 2, axis=1)[1], lambda x: x.split(2, 1)[1]),
    "matmul": Case((3,), lambda x, w: x @ w, lambda x, w: x @ w, ((3, 2),)),
}


def run(case, n, seed=0):
    """y, x and the parameters (cnnlite tensors) after y.sum().backward() at batch size n."""
    rng = np.random.default_rng(seed)
    x = cl.tensor(rng.standard_normal((n,) + case.sample_shape), requires_grad=True)
    parameters = [cl.tensor(rng.standard_normal(shape), requires_grad=True)
                  for shape in case.parameters]
    y = case.ours(x, *parameters)
    y.sum().backward()
    return y, x, parameters


def run_torch(case, n, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((n,) + case.sample_shape), requires_grad=True)
    parameters = [torch.tensor(rng.standard_normal(shape), requires_grad=True)
                  for shape in case.parameters]
    y = case.theirs(x, *parameters)
    y.sum().backward()
    return y, x, parameters


def batch_shape(shape, n):
    """An output shape with its batch axis (if it has one) set to n."""
    return (n,) + tuple(shape[1:]) if shape and shape[0] == 2 else tuple(shape)


@pytest.mark.parametrize("op", list(OPS))
def test_an_empty_batch_runs_forward_and_backward(op):
    """The output is the N = 2 output with N = 0, x's gradient is empty, the parameters'
    gradients are zeros."""
    full, _, _ = run(OPS[op], 2)
    y, x, parameters = run(OPS[op], 0)
    assert y.shape == batch_shape(full.shape, 0)
    assert x.grad.shape == x.shape
    for p in parameters:
        np.testing.assert_array_equal(p.grad, np.zeros(p.shape))


@pytest.mark.parametrize("op", [name for name, case in OPS.items() if case.theirs is not None])
def test_an_empty_batch_gives_what_pytorch_gives(op):
    y, x, parameters = run(OPS[op], 0)
    theirs, tx, tparameters = run_torch(OPS[op], 0)
    assert y.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(y.data, theirs.detach().numpy())  # NaN == NaN here
    assert x.grad.shape == tuple(tx.grad.shape)
    for p, tp in zip(parameters, tparameters):
        np.testing.assert_array_equal(p.grad, tp.grad.numpy())


def test_an_empty_batch_through_winograd():
    """The Winograd path (3x3, stride 1) on an empty batch, forward and backward."""
    case = Case((32, 14, 14), lambda x, w: F.conv2d(x, w, padding=1),
                lambda x, w: TF.conv2d(x, w, padding=1), ((32, 32, 3, 3),))
    with backend.conv_algorithm("winograd"):
        y, x, (w,) = run(case, 0)
    assert y.shape == (0, 32, 14, 14) and x.grad.shape == x.shape
    np.testing.assert_array_equal(w.grad, np.zeros(w.shape))


# ---------------------------------------------------------------------------------------------
# Layers

def copy_parameters(ours, theirs):
    """Our parameters and buffers into the PyTorch twin, by name."""
    state = {name: torch.tensor(value) for name, value in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=False)
    return theirs.double()


LAYERS = {
    "Conv2d": ((3, 6, 6), lambda: nn.Conv2d(3, 4, 3, padding=1),
               lambda: torch.nn.Conv2d(3, 4, 3, padding=1)),
    "Linear": ((6,), lambda: nn.Linear(6, 4), lambda: torch.nn.Linear(6, 4)),
    "MaxoutConv2d": ((3, 6, 6), lambda: nn.MaxoutConv2d(3, 2, 3), None),
    "MaxoutLinear": ((6,), lambda: nn.MaxoutLinear(6, 2), None),
    "BatchNorm2d": ((3, 4, 4), lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3)),
    "BatchNorm1d": ((3,), lambda: nn.BatchNorm1d(3), lambda: torch.nn.BatchNorm1d(3)),
    "BatchNorm2d_cumulative": ((3, 4, 4), lambda: nn.BatchNorm2d(3, momentum=None),
                               lambda: torch.nn.BatchNorm2d(3, momentum=None)),
    "LocalResponseNorm": ((5, 3, 3), lambda: nn.LocalResponseNorm(3),
                          lambda: torch.nn.LocalResponseNorm(3)),
    "MaxPool2d": ((3, 6, 6), lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
    "AvgPool2d": ((3, 6, 6), lambda: nn.AvgPool2d(3, 2, 1), lambda: torch.nn.AvgPool2d(3, 2, 1)),
    "MaxAvgPool2d": ((3, 6, 6), lambda: nn.MaxAvgPool2d(2), None),
    "StochasticPool2d": ((3, 6, 6), lambda: nn.StochasticPool2d(2), None),
    "AdaptiveAvgPool2d": ((3, 6, 6), lambda: nn.AdaptiveAvgPool2d(2),
                          lambda: torch.nn.AdaptiveAvgPool2d(2)),
    "AdaptiveMaxPool2d": ((3, 6, 6), lambda: nn.AdaptiveMaxPool2d(2),
                          lambda: torch.nn.AdaptiveMaxPool2d(2)),
    "GlobalAvgPool2d": ((3, 6, 6), lambda: nn.GlobalAvgPool2d(),
                        lambda: torch.nn.AdaptiveAvgPool2d(1)),
    "SpatialPyramidPool2d": ((3, 6, 6), lambda: nn.SpatialPyramidPool2d(), None),
    "Dropout": ((3,), lambda: nn.Dropout(0.2), lambda: torch.nn.Dropout(0.2)),
    "ReLU": ((3,), lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    "PReLU": ((3, 2), lambda: nn.PReLU(3), lambda: torch.nn.PReLU(3)),
    "APL": ((3, 2), lambda: nn.APL(3), None),
    "Maxout": ((4, 2), lambda: nn.Maxout(2), None),
    "RReLU": ((3,), lambda: nn.RReLU(), lambda: torch.nn.RReLU()),
    "Softmax": ((3,), lambda: nn.Softmax(), lambda: torch.nn.Softmax(1)),
    "Flatten": ((3, 2), lambda: nn.Flatten(), lambda: torch.nn.Flatten()),
    "Sequential": ((1, 8, 8), lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(36, 3)), None),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_layer_runs_an_empty_batch_forward_and_backward(name):
    sample_shape, make, _ = LAYERS[name]
    layer = make()
    full = layer(cl.tensor(np.ones((2,) + sample_shape)))
    before = {k: v for k, v in layer.state_dict().items() if "running" in k}
    x = cl.tensor(np.ones((0,) + sample_shape), requires_grad=True)
    layer.zero_grad()
    y = layer(x)
    y.sum().backward()
    assert y.shape == batch_shape(full.shape, 0) and x.grad.shape == x.shape
    for parameter in layer.parameters():
        np.testing.assert_array_equal(parameter.grad, np.zeros(parameter.shape))
    for key, value in before.items():  # the running statistics are left alone
        np.testing.assert_array_equal(layer.state_dict()[key], value)


@pytest.mark.parametrize("name", [name for name, (_, _, twin) in LAYERS.items() if twin])
def test_a_layer_on_an_empty_batch_matches_pytorch(name):
    sample_shape, make, make_twin = LAYERS[name]
    layer = make()
    twin = copy_parameters(layer, make_twin())
    x = cl.tensor(np.ones((0,) + sample_shape), requires_grad=True)
    tx = torch.ones((0,) + sample_shape, dtype=torch.float64, requires_grad=True)
    y, theirs = layer(x), twin(tx)
    y.sum().backward()
    theirs.sum().backward()
    assert y.shape == tuple(theirs.shape)
    for (key, parameter), (_, their_parameter) in zip(layer.named_parameters(),
                                                      twin.named_parameters()):
        np.testing.assert_array_equal(parameter.grad, their_parameter.grad.numpy(), err_msg=key)
    for key, value in twin.state_dict().items():  # running statistics, batches tracked
        np.testing.assert_allclose(layer.state_dict()[key], value.numpy(), err_msg=key)


# ---------------------------------------------------------------------------------------------
# Other zero sizes that PyTorch computes: an empty result, not an error.

EMPTY_RESULTS = {
    "softmax_over_no_classes": ((2, 0), lambda x: F.softmax(x, 1), lambda x: TF.softmax(x, 1)),
    "batch_norm_without_channels": ((2, 0, 3), lambda x: F.batch_norm(x, None, None),
                                    lambda x: TF.batch_norm(x, None, None, training=True)),
    "lrn_without_channels": ((2, 0, 3, 3), lambda x: F.local_response_norm(x, 2),
                             lambda x: TF.local_response_norm(x, 2)),
    "linear_of_no_features": ((2, 0), lambda x: F.linear(x, np.ones((3, 0)), np.ones(3)),
                              lambda x: TF.linear(x, torch.ones(3, 0, dtype=x.dtype),
                                                  torch.ones(3, dtype=x.dtype))),
    "sum_over_an_empty_axis": ((2, 0), lambda x: x.sum(axis=1), lambda x: x.sum(1)),
}


@pytest.mark.parametrize("name", list(EMPTY_RESULTS))
def test_another_zero_size_gives_the_result_pytorch_gives(name):
    shape, ours, theirs = EMPTY_RESULTS[name]
    x = cl.tensor(np.ones(shape), requires_grad=True)
    tx = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    y, expected = ours(x), theirs(tx)
    y.sum().backward()
    expected.sum().backward()
    np.testing.assert_array_equal(y.data, expected.detach().numpy())
    assert x.grad.shape == tuple(tx.grad.shape)
