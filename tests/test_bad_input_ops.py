"""Bad input to the ops and layers: never a crash, never a silently wrong answer.

Three promises, one section each:

* dtypes: an op computes bool and integer inputs as the same values in float32 (the policy of
  ``cnnlite.dtypes``), and refuses float16 and complex with its name, the dtype and what it
  takes;
* arguments: sizes, strides, paddings, axes, probabilities, rates and switches go through
  ``cnnlite.validate``, so ``F.max_pool2d`` and ``nn.MaxPool2d`` (and every other op and its
  layer) refuse the same values with the same words: ``True`` is not a size, ``1.5`` is not a
  padding, ``2**63`` is not a stride, ``"no"`` is not a bool;
* zero sizes other than the batch (no channels, an empty image, a 0x0 kernel) give an error
  that names the op and the shapes (tests/test_empty.py has the empty batch).
"""
import numpy as np
import pytest

import cnnlite as cl
from cnnlite import backend, dtypes, nn
from cnnlite import functional as F
from cnnlite.autograd import Function
from cnnlite.errors import ArgumentTypeError, OpError

# ---------------------------------------------------------------------------------------------
# Dtypes


def small_integers(shape, seed=0):
    """Non-negative integers small enough for every integer dtype (and for stochastic pooling)."""
    return np.random.default_rng(seed).integers(0, 5, shape)


WEIGHT = small_integers((4, 3, 3, 3), seed=1) - 2
PARAMETER = np.linspace(-1, 1, 3)

# Each op as a function of one array x: (2, 3, 6, 6) of small non-negative integers; the other
# operands are fixed float32 arrays or integers, as a user would pass them.
FLOAT_OPS = {
    "conv2d": lambda x: F.conv2d(x, WEIGHT.astype(np.float32), padding=1),
    "linear": lambda x: F.linear(F.flatten(x, 1), np.ones((2, 108), np.float32)),
    "max_pool2d": lambda x: F.max_pool2d(x, 3, 2, 1),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, 4),
    "adaptive_max_pool2d": lambda x: F.adaptive_max_pool2d(x, 4),
    "global_avg_pool2d": F.global_avg_pool2d,
    "stochastic_pool2d": lambda x: F.stochastic_pool2d(x, 2, rng=np.random.default_rng(3)),
    "stochastic_pool2d_eval": lambda x: F.stochastic_pool2d(x, 2, training=False),
    "max_avg_pool2d": lambda x: F.max_avg_pool2d(x, 2),
    "spatial_pyramid_pool2d": F.spatial_pyramid_pool2d,
    "spatial_pyramid_pool2d_avg": lambda x: F.spatial_pyramid_pool2d(x, mode="avg"),
    "batch_norm": lambda x: F.batch_norm(x, None, None, training=True),
    "local_response_norm": lambda x: F.local_response_norm(x, 3),
    "dropout": lambda x: F.dropout(x, 0.5, rng=np.random.default_rng(3)),
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "rrelu": lambda x: F.rrelu(x, training=True, rng=np.random.default_rng(3)),
    "prelu": lambda x: F.prelu(x, PARAMETER.astype(np.float32)),
    "elu": F.elu,
    "selu": F.selu,
    "sigmoid": F.sigmoid,
    "tanh": F.tanh,
    "scaled_tanh": F.scaled_tanh,
    "softplus": F.softplus,
    "shifted_softplus": F.shifted_softplus,
    "maxout": lambda x: F.maxout(x, 3),
    "apl": lambda x: F.apl(x, PARAMETER.astype(np.float32), PARAMETER.astype(np.float32)),
    "softmax": lambda x: F.softmax(x, 1),
    "log_softmax": lambda x: F.log_softmax(x, 1),
    "cross_entropy": lambda x: F.cross_entropy(F.flatten(x, 2), np.zeros((2, 36), int)),
    "nll_loss": lambda x: F.nll_loss(F.flatten(x, 2), np.ones((2, 36), int)),
    "mse_loss": lambda x: F.mse_loss(x, np.ones(x.shape, np.float32)),
    "exp": F.exp,
    "log": F.log,
    "sqrt": F.sqrt,
}
INTEGER_DTYPES = [np.bool_, np.uint8, np.int8, np.int32, np.int64]


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", list(FLOAT_OPS))
def test_bool_and_integer_inputs_compute_as_the_same_values_in_float32(op, dtype):
    values = small_integers((2, 3, 6, 6)).astype(dtype)
    with np.errstate(divide="ignore"):  # log(0) = -inf, in both
        got = FLOAT_OPS[op](cl.tensor(values))
        expected = FLOAT_OPS[op](cl.tensor(values.astype(np.float32)))
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-6)


def test_bool_convolution_counts_instead_of_saying_true():
    """All-ones bool input and weights, 2 channels x 3x3: every output is the count 18."""
    y = F.conv2d(cl.tensor(np.ones((1, 2, 5, 5), bool)), cl.tensor(np.ones((1, 2, 3, 3), bool)))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.data, np.full((1, 1, 3, 3), 18.0))


@pytest.mark.parametrize("algorithm", ["winograd", "im2col"])
def test_integer_convolution_keeps_the_winograd_halves(algorithm):
    """Winograd's transforms hold factors 1/2: in integers they would be cut to 0 (off by up to
    500 against im2col). Integer inputs are promoted before they reach the transforms."""
    rng = np.random.default_rng(4)
    x, w = rng.integers(-9, 10, (2, 4, 8, 8)), rng.integers(-9, 10, (4, 4, 3, 3))
    with backend.conv_algorithm(algorithm):
        got = F.conv2d(cl.tensor(x), cl.tensor(w), padding=1)
    with backend.conv_algorithm("im2col"):
        expected = F.conv2d(cl.tensor(x.astype(np.float64)), cl.tensor(w.astype(np.float64)),
                            padding=1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-5, atol=1e-3)


def test_sigmoid_of_uint8_is_float32():
    y = F.sigmoid(cl.tensor(np.array([0, 1, 255], np.uint8)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, 1 / (1 + np.exp(-np.array([0.0, 1.0, 255.0]))),
                               rtol=1e-6)


def test_bool_matrices_multiply_as_counts():
    """NumPy's bool matmul is an "or of ands" (True); matmul counts, as sum does."""
    a = cl.tensor(np.ones((2, 3), bool))
    np.testing.assert_array_equal((a @ a.T).data, np.full((2, 2), 3))


@pytest.mark.parametrize("call", [lambda x: -x, lambda x: x - x], ids=["neg", "sub"])
def test_bool_negation_is_refused_by_name(call):
    with pytest.raises(OpError, match=r"(neg|sub) \(-\): bool tensors cannot be negated"):
        call(cl.tensor(np.ones(3, bool)))


@pytest.mark.parametrize("dtype", [np.float16, np.complex64, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", list(FLOAT_OPS))
def test_float16_and_complex_are_refused_with_the_op_dtype_and_what_it_takes(op, dtype):
    x = cl.tensor(small_integers((2, 3, 6, 6)).astype(dtype))
    accepted = "float32 and float64" if dtype == np.float16 else "(float32|bool)"
    with pytest.raises(ArgumentTypeError, match=rf"^\w+: input \d has dtype "
                                                rf"{np.dtype(dtype).name}, which \w+ does not "
                                                rf"take; it takes {accepted}"):
        FLOAT_OPS[op](x)


@pytest.mark.parametrize("call", [lambda x: x + 1, lambda x: x.sum(), lambda x: F.reshape(x, -1),
                                  lambda x: x[0], lambda x: F.pad(x, 1)],
                         ids=["add", "sum", "reshape", "getitem", "pad"])
def test_complex_is_refused_by_the_numeric_ops(call):
    with pytest.raises(ArgumentTypeError, match=r"input 0 has dtype complex128.*bool, integers "
                                                r"and floats"):
        call(cl.tensor(np.ones((2, 3), complex)))


def function_classes():
    """Every Function defined in cnnlite.functional."""
    found, pending = set(), [Function]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("cnnlite.functional") and sub not in found:
                found.add(sub)
                pending.append(sub)
    return sorted(found, key=lambda c: c.__name__)


# Ops that only move, compare or count values, and compute as NumPy does on any real dtype.
NUMERIC_FUNCTIONS = {"Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Neg", "Abs", "Clip",
                     "Where", "MatMul", "Copy", "AsType", "Sum", "Mean", "Max", "Min", "Var",
                     "Reshape", "Transpose", "BroadcastTo", "GetItem", "Concat", "Split", "Pad",
                     "BroadcastBinary", "Reduction"}


@pytest.mark.parametrize("function", function_classes(), ids=lambda c: c.__name__)
def test_every_function_declares_its_dtype_policy(function):
    """The differentiable numerics are FLOAT; the movers and arithmetic NUMERIC."""
    expected = dtypes.NUMERIC if function.__name__ in NUMERIC_FUNCTIONS else dtypes.FLOAT
    assert function.dtypes == expected


# ---------------------------------------------------------------------------------------------
# Arguments: an op and its layer refuse the same values with the same words.

X = cl.tensor(np.ones((1, 4, 6, 6)))
W = cl.tensor(np.ones((4, 2, 3, 3)))

NOT_A_SIZE = [True, 1.5, "2", None, np.float64(2.0), (2, True), (2, 2, 2)]
NOT_A_SWITCH = ["no", 1, None, np.float64(0.0)]
NOT_A_REAL = [True, "0.1", None, float("nan"), float("inf")]
OUT_OF_RANGE_SIZE = [2**63, -1]

# (argument, bad values, functional call, layer call): each call takes the argument as a keyword.
PAIRS = [
    ("kernel_size", NOT_A_SIZE + OUT_OF_RANGE_SIZE + [0],
     lambda **a: F.max_pool2d(X, **{"kernel_size": 2, **a}),
     lambda **a: nn.MaxPool2d(**{"kernel_size": 2, **a})),
    ("stride", NOT_A_SIZE[:3] + OUT_OF_RANGE_SIZE + [0],
     lambda **a: F.max_pool2d(X, 2, **a), lambda **a: nn.MaxPool2d(2, **a)),
    ("padding", NOT_A_SIZE[:3] + OUT_OF_RANGE_SIZE + [2],
     lambda **a: F.max_pool2d(X, 2, **a), lambda **a: nn.MaxPool2d(2, **a)),
    ("ceil_mode", NOT_A_SWITCH,
     lambda **a: F.max_pool2d(X, 2, **a), lambda **a: nn.MaxPool2d(2, **a)),
    ("kernel_size", NOT_A_SIZE + OUT_OF_RANGE_SIZE,
     lambda **a: F.avg_pool2d(X, **{"kernel_size": 2, **a}),
     lambda **a: nn.AvgPool2d(**{"kernel_size": 2, **a})),
    ("stride", [True, 1.5, 2**63, 0],
     lambda **a: F.avg_pool2d(X, 2, **a), lambda **a: nn.AvgPool2d(2, **a)),
    ("padding", [True, 1.5, -1],
     lambda **a: F.avg_pool2d(X, 2, **a), lambda **a: nn.AvgPool2d(2, **a)),
    ("count_include_pad", NOT_A_SWITCH,
     lambda **a: F.avg_pool2d(X, 2, **a), lambda **a: nn.AvgPool2d(2, **a)),
    ("ceil_mode", NOT_A_SWITCH,
     lambda **a: F.avg_pool2d(X, 2, **a), lambda **a: nn.AvgPool2d(2, **a)),
    ("kernel_size", [True, 1.5, 2**63, 0],
     lambda **a: F.max_avg_pool2d(X, **{"kernel_size": 2, **a}),
     lambda **a: nn.MaxAvgPool2d(**{"kernel_size": 2, **a})),
    ("padding", [True, 1.5, 2],
     lambda **a: F.max_avg_pool2d(X, 2, **a), lambda **a: nn.MaxAvgPool2d(2, **a)),
    ("kernel_size", [True, 1.5, 2**63, 0],
     lambda **a: F.stochastic_pool2d(X, **{"kernel_size": 2, **a}),
     lambda **a: nn.StochasticPool2d(**{"kernel_size": 2, **a})),
    ("stride", [True, 1.5, 2**63, 0],
     lambda **a: F.stochastic_pool2d(X, 2, **a), lambda **a: nn.StochasticPool2d(2, **a)),
    ("ceil_mode", NOT_A_SWITCH,
     lambda **a: F.stochastic_pool2d(X, 2, **a), lambda **a: nn.StochasticPool2d(2, **a)),
    ("rng", [3, np.random.RandomState(0)],
     lambda **a: F.stochastic_pool2d(X, 2, **a), lambda **a: nn.StochasticPool2d(2, **a)),
    ("output_size", [True, 1.5, 0, -1, 2**63, (2, 1.5), (1, 2, 3), "2"],
     lambda **a: F.adaptive_avg_pool2d(X, **a), lambda **a: nn.AdaptiveAvgPool2d(**a)),
    ("output_size", [True, 0, (True, 2)],
     lambda **a: F.adaptive_max_pool2d(X, **a), lambda **a: nn.AdaptiveMaxPool2d(**a)),
    ("levels", [(1, True), (1, 0), (), 4, (1.5,), "12"],
     lambda **a: F.spatial_pyramid_pool2d(X, **a), lambda **a: nn.SpatialPyramidPool2d(**a)),
    ("mode", ["sum", None],
     lambda **a: F.spatial_pyramid_pool2d(X, **a), lambda **a: nn.SpatialPyramidPool2d(**a)),
    ("stride", NOT_A_SIZE[:3] + OUT_OF_RANGE_SIZE + [0],
     lambda **a: F.conv2d(X, W, groups=2, **a), lambda **a: nn.Conv2d(4, 4, 3, groups=2, **a)),
    ("padding", NOT_A_SIZE[:3] + OUT_OF_RANGE_SIZE,
     lambda **a: F.conv2d(X, W, groups=2, **a), lambda **a: nn.Conv2d(4, 4, 3, groups=2, **a)),
    ("dilation", [True, 1.5, 0, 2**63],
     lambda **a: F.conv2d(X, W, groups=2, **a), lambda **a: nn.Conv2d(4, 4, 3, groups=2, **a)),
    ("groups", [True, 1.5, 0, -2, "2"],
     lambda **a: F.conv2d(X, W, **a), lambda **a: nn.Conv2d(4, 4, 3, **a)),
    ("momentum", [True, "0.1", float("nan"), -0.1, 1.5],
     lambda **a: F.batch_norm(X, None, None, training=True, **a),
     lambda **a: nn.BatchNorm2d(4, **a)),
    ("eps", NOT_A_REAL + [0, -1e-5],
     lambda **a: F.batch_norm(X, None, None, training=True, **a),
     lambda **a: nn.BatchNorm2d(4, **a)),
    ("size", [True, 2.5, 0, 2**63, "5"],
     lambda **a: F.local_response_norm(X, **a), lambda **a: nn.LocalResponseNorm(**a)),
    ("alpha", NOT_A_REAL,
     lambda **a: F.local_response_norm(X, 3, **a), lambda **a: nn.LocalResponseNorm(3, **a)),
    ("beta", NOT_A_REAL,
     lambda **a: F.local_response_norm(X, 3, **a), lambda **a: nn.LocalResponseNorm(3, **a)),
    ("k", NOT_A_REAL,
     lambda **a: F.local_response_norm(X, 3, **a), lambda **a: nn.LocalResponseNorm(3, **a)),
    ("alpha_over_size", NOT_A_SWITCH,
     lambda **a: F.local_response_norm(X, 3, **a), lambda **a: nn.LocalResponseNorm(3, **a)),
    ("p", NOT_A_REAL + [-0.1, 1.5],
     lambda **a: F.dropout(X, **a), lambda **a: nn.Dropout(**a)),
    ("rng", [3, "seed"], lambda **a: F.dropout(X, **a), lambda **a: nn.Dropout(**a)),
    ("negative_slope", NOT_A_REAL,
     lambda **a: F.leaky_relu(X, **a), lambda **a: nn.LeakyReLU(**a)),
    ("lower", NOT_A_REAL + [0.5],
     lambda **a: F.rrelu(X, **a), lambda **a: nn.RReLU(**a)),
    ("upper", NOT_A_REAL + [0.1],
     lambda **a: F.rrelu(X, **a), lambda **a: nn.RReLU(**a)),
    ("alpha", NOT_A_REAL, lambda **a: F.elu(X, **a), lambda **a: nn.ELU(**a)),
    ("beta", NOT_A_REAL + [0, -1.0],
     lambda **a: F.softplus(X, **a), lambda **a: nn.Softplus(**a)),
    ("threshold", NOT_A_REAL,
     lambda **a: F.softplus(X, **a), lambda **a: nn.Softplus(**a)),
    ("pieces", [True, 1.5, 0, "2"], lambda **a: F.maxout(X, **a), lambda **a: nn.Maxout(**a)),
    ("axis", [True, 1.5, "1"], lambda **a: F.softmax(X, **a), lambda **a: nn.Softmax(**a)),
    ("axis", [True, 1.5], lambda **a: F.log_softmax(X, **a), lambda **a: nn.LogSoftmax(**a)),
    ("label_smoothing", NOT_A_REAL + [-0.1, 1.5],
     lambda **a: F.cross_entropy(X[:, :, 0, 0], np.zeros(1, int), **a),
     lambda **a: nn.CrossEntropyLoss(**a)),
    ("reduction", ["avg", None, 1, ["mean"]],
     lambda **a: F.mse_loss(X, X, **a), lambda **a: nn.MSELoss(**a)),
]
PAIR_CASES = [(argument, value, functional, layer)
              for argument, values, functional, layer in PAIRS for value in values]


def refusal(call):
    with pytest.raises(OpError) as error:
        call()
    return error.value


def after_the_name(error):
    """The message without its "op: " or "Layer(...): " prefix."""
    return str(error).split(": ", 1)[1]


@pytest.mark.parametrize("argument, value, functional, layer", PAIR_CASES,
                         ids=[f"{c[2].__code__.co_firstlineno}-{c[0]}={c[1]!r}"[:60]
                              for c in PAIR_CASES])
def test_an_op_and_its_layer_refuse_the_same_argument_with_the_same_words(argument, value,
                                                                          functional, layer):
    by_op, by_layer = refusal(lambda: functional(**{argument: value})), \
        refusal(lambda: layer(**{argument: value}))
    assert type(by_op) is type(by_layer)
    assert argument in after_the_name(by_op)
    assert after_the_name(by_op) == after_the_name(by_layer)


@pytest.mark.parametrize("value, wrong_kind", [(True, True), (1.5, True), ("3", True),
                                               (2**63, False), (0, False)], ids=repr)
def test_a_value_of_the_wrong_kind_is_a_type_error_and_one_out_of_range_a_value_error(
        value, wrong_kind):
    """``True``, ``1.5`` and ``"3"`` are of the wrong kind (TypeError); ``2**63`` and ``0`` are
    ints out of range (ValueError only). All are OpErrors, which are ValueErrors."""
    error = refusal(lambda: F.max_pool2d(X, value))
    assert isinstance(error, ValueError)
    assert isinstance(error, TypeError) == wrong_kind


# Layer arguments without a functional twin (they size the weights), and functional arguments
# checked against the input (their layer has none, or checks at call time).
LAYER_ONLY = [
    (lambda: nn.Conv2d(3, 8, 0), "Conv2d(3->8): kernel_size[0] must be >= 1, got 0"),
    (lambda: nn.Conv2d(3, 8, True), "Conv2d(3->8): kernel_size must be an int"),
    (lambda: nn.Conv2d(3, 8, (3, 0)), "kernel_size[1] must be >= 1"),
    (lambda: nn.Conv2d(0, 8, 3), "Conv2d: in_channels must be >= 1, got 0"),
    (lambda: nn.Conv2d(3, True, 3), "Conv2d: out_channels must be an int, got bool"),
    (lambda: nn.Conv2d(3, 8, 3, bias="no"), "Conv2d(3->8): bias must be True or False"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), "divisible by groups=2"),
    (lambda: nn.Linear(0, 3), "Linear: in_features must be >= 1, got 0"),
    (lambda: nn.Linear(3, 2.5), "Linear: out_features must be an int, got float"),
    (lambda: nn.Linear(3, 2, bias=None), "Linear(3->2): bias must be True or False"),
    (lambda: nn.MaxoutConv2d(3, 4, 3, pieces=0), "MaxoutConv2d: pieces must be >= 1"),
    (lambda: nn.MaxoutLinear(3, 4, pieces=True), "MaxoutLinear: pieces must be an int"),
    (lambda: nn.BatchNorm2d(0), "BatchNorm2d: num_features must be >= 1, got 0"),
    (lambda: nn.BatchNorm1d(True), "BatchNorm1d: num_features must be an int, got bool"),
    (lambda: nn.BatchNorm2d(3, affine="no"), "BatchNorm2d: affine must be True or False"),
    (lambda: nn.BatchNorm2d(3, track_running_stats=1), "track_running_stats must be True"),
    (lambda: nn.PReLU(0), "PReLU: num_parameters must be >= 1, got 0"),
    (lambda: nn.PReLU(3, init=float("nan")), "PReLU: init must be finite"),
    (lambda: nn.APL(0), "APL: num_channels must be >= 1, got 0"),
    (lambda: nn.APL(3, hinges=1.5), "APL: hinges must be an int, got float"),
    (lambda: nn.Flatten(True), "Flatten: start_axis must be an int, got bool"),
    (lambda: nn.Flatten(1, 2.0), "Flatten: end_axis must be an int, got float"),
]


@pytest.mark.parametrize("call, message", LAYER_ONLY, ids=[m for _, m in LAYER_ONLY])
def test_a_layer_refuses_bad_settings_when_it_is_built(call, message):
    assert message in str(refusal(call))


ND = cl.tensor(np.arange(6.0).reshape(2, 3))
FUNCTIONAL_ONLY = [
    (lambda: F.flatten(ND, 3), "flatten: start_axis 3 is out of range for an array of 2"),
    (lambda: F.flatten(ND, 0, True), "flatten: end_axis must be an int, got bool"),
    (lambda: F.flatten(ND, 1, 0), "flatten: start_axis 1 comes after end_axis 0"),
    (lambda: F.pad(ND, 1.5), "pad: pad_width must be an int, got float 1.5"),
    (lambda: F.pad(ND, ((1, 1), (0, True))), "pad: pad_width must be an int, got bool"),
    (lambda: F.pad(ND, -1), "pad: pad_width must be >= 0, got -1"),
    (lambda: F.pad(ND, (1, 2, 3)), "pad: pad_width (1, 2, 3) does not fit"),
    (lambda: F.split(ND, 1.5, axis=1), "split: indices_or_sections must be an int or a list"),
    (lambda: F.split(ND, 0, axis=1), "split: sections must be >= 1, got 0"),
    (lambda: F.split(ND, [1.5], axis=1), "split: indices must be an int, got float"),
    (lambda: F.split(ND, 3, axis=2), "split: axis 2 is out of range"),
    (lambda: F.split(ND, 3, axis=True), "split: axis must be an int, got bool"),
    (lambda: F.concat([ND, ND], axis=2), "concat: axis 2 is out of range"),
    (lambda: F.stack([ND, ND], axis=3), "stack: axis 3 is out of range"),
    (lambda: F.squeeze(ND, 2), "squeeze: axis 2 is out of range"),
    (lambda: F.unsqueeze(ND, 3), "unsqueeze: axis 3 is out of range"),
    (lambda: F.transpose(ND, 0, 0), "transpose: repeated axes"),
    (lambda: F.transpose(ND, 0), "transpose: axes (0,) are not a permutation"),
    (lambda: F.transpose(ND, 0, 1.0), "transpose: axes must be an int, got float"),
    (lambda: F.reshape(ND, 3, 2.0), "reshape: shape[1] must be an int, got float"),
    (lambda: F.reshape(ND, 3, -2), "reshape: shape[1] must be >= -1, got -2"),
    (lambda: F.broadcast_to(ND, (4, True, 3)), "broadcast_to: shape[1] must be an int"),
    (lambda: ND.sum(axis=2), "sum: axis 2 is out of range"),
    (lambda: ND.sum(axis=True), "sum: axis must be an int, got bool"),
    (lambda: ND.mean(axis=(0, 0)), "mean: repeated axis"),
    (lambda: ND.max(axis=1.0), "max: axis must be an int, got float"),
    (lambda: ND.sum(keepdims="yes"), "sum: keepdims must be True or False"),
    (lambda: ND.var(ddof=True), "var: ddof must be an int, got bool"),
    (lambda: ND.var(ddof=-1), "var: ddof must be >= 0, got -1"),
    (lambda: F.softmax(ND, 2), "softmax: axis 2 is out of range"),
    (lambda: F.log_softmax(ND, -3), "log_softmax: axis -3 is out of range"),
    (lambda: F.batch_norm(X, None, None, training="yes"), "batch_norm: training must be True"),
    (lambda: F.dropout(X, 0.5, training="no"), "dropout: training must be True or False"),
    (lambda: F.rrelu(X, training="no"), "rrelu: training must be True or False"),
    (lambda: F.rrelu(X, training=True, rng=4), "rrelu: rng must be a numpy.random.Generator"),
    (lambda: F.stochastic_pool2d(X, 2, training=1), "stochastic_pool2d: training must be True"),
    (lambda: F.max_pool2d(X, 2, ceil_mode="no"), "max_pool2d: ceil_mode must be True or False"),
    (lambda: F.max_pool2d(X, 2, stride=2**63), "max_pool2d: stride[0] must be <= 2147483647"),
    (lambda: F.conv2d(X, W, groups=2, stride=2**63), "conv2d: stride[0] must be <= 2147483647"),
    (lambda: F.nll_loss(X[:, :, 0, 0], np.zeros(1, int), reduction="avg"),
     "nll_loss: reduction must be one of"),
    (lambda: F.cross_entropy(X[:, :, 0, 0], np.zeros(1, bool)),
     "cross_entropy: expected a target of integer class indices, got dtype bool"),
]


@pytest.mark.parametrize("call, message", FUNCTIONAL_ONLY, ids=[m for _, m in FUNCTIONAL_ONLY])
def test_a_functional_op_refuses_bad_arguments_by_name(call, message):
    assert message in str(refusal(call))


def test_flatten_and_its_layer_refuse_an_axis_beyond_the_input():
    """F.flatten(x, 3) on a 2-d x used to return x unchanged."""
    with pytest.raises(OpError, match=r"flatten: start_axis 3 is out of range"):
        F.flatten(ND, 3)
    with pytest.raises(OpError, match=r"Flatten.*axes 3 \.\. -1"):
        nn.Flatten(3)(ND)


def test_pad_refuses_a_fractional_width_instead_of_rounding_it():
    """F.pad(x, 1.5) used to pad by 1."""
    with pytest.raises(ArgumentTypeError, match="pad_width"):
        F.pad(ND, 1.5)


def test_a_huge_stride_is_refused_instead_of_giving_zeros():
    """stride=2**63 overflowed the kernels' index arithmetic and returned zeros."""
    for call in (lambda: F.max_pool2d(X, 2, stride=2**63), lambda: F.avg_pool2d(X, 2, 2**63),
                 lambda: F.conv2d(X, W, groups=2, stride=2**63)):
        with pytest.raises(OpError, match=r"stride\[0\] must be <= 2147483647"):
            call()


# ---------------------------------------------------------------------------------------------
# Zero sizes other than the batch: an error naming the op and the shapes.

ZERO_SIZES = [
    (lambda: F.conv2d(cl.tensor(np.ones((2, 0, 5, 5))), cl.tensor(np.ones((4, 0, 3, 3)))),
     r"conv2d: every size but the batch size N must be >= 1 .*x \(2, 0, 5, 5\)"),
    (lambda: F.conv2d(cl.tensor(np.ones((2, 3, 5, 5))), cl.tensor(np.ones((4, 3, 0, 0)))),
     r"conv2d: every size but .* w \(4, 3, 0, 0\)"),
    (lambda: F.conv2d(cl.tensor(np.ones((2, 3, 5, 5))), cl.tensor(np.ones((0, 3, 3, 3)))),
     r"conv2d: every size but .* w \(0, 3, 3, 3\)"),
    (lambda: F.conv2d(cl.tensor(np.ones((2, 3, 0, 5))), cl.tensor(np.ones((4, 3, 1, 1))),
                      padding=1),
     r"conv2d: every size but .* x \(2, 3, 0, 5\)"),
    (lambda: F.max_pool2d(cl.tensor(np.ones((2, 0, 4, 4))), 2),
     r"max_pool2d: expected x of shape \(N, C, H, W\) with C, H, W >= 1, got \(2, 0, 4, 4\)"),
    (lambda: F.avg_pool2d(cl.tensor(np.ones((2, 3, 0, 4))), 1),
     r"avg_pool2d: .* got \(2, 3, 0, 4\)"),
    (lambda: F.adaptive_avg_pool2d(cl.tensor(np.ones((2, 0, 4, 4))), 2),
     r"adaptive_avg_pool2d: .* got \(2, 0, 4, 4\)"),
    (lambda: F.adaptive_max_pool2d(cl.tensor(np.ones((2, 3, 4, 0))), 2),
     r"adaptive_max_pool2d: .* got \(2, 3, 4, 0\)"),
    (lambda: F.global_avg_pool2d(cl.tensor(np.ones((2, 3, 0, 0)))),
     r"global_avg_pool2d: .* got \(2, 3, 0, 0\)"),
    (lambda: F.spatial_pyramid_pool2d(cl.tensor(np.ones((1, 0, 4, 4)))),
     r"spatial_pyramid_pool2d: .* got \(1, 0, 4, 4\)"),
    (lambda: F.cross_entropy(cl.tensor(np.ones((2, 0))), np.zeros(2, int)),
     r"cross_entropy: logits \(2, 0\) has no classes"),
    (lambda: F.nll_loss(cl.tensor(np.ones((0, 0))), np.zeros(0, int)),
     r"nll_loss: log_probs \(0, 0\) has no classes"),
]


@pytest.mark.parametrize("call, message", ZERO_SIZES, ids=[m[:40] for _, m in ZERO_SIZES])
def test_a_zero_size_other_than_the_batch_is_refused_by_name_and_shape(call, message):
    with pytest.raises(OpError, match=message):
        call()


# --- arguments of clip, astype, where, pad, getitem, sum_to, softmax and batch_norm ------------

BAD_OP_ARGUMENTS = [
    (lambda x: F.clip(x, np.nan, None), OpError, r"clip: low must not be NaN"),
    (lambda x: F.clip(x, None, True), ArgumentTypeError, r"clip: high must be a real number"),
    (lambda x: F.clip(x, [1.0], None), ArgumentTypeError, r"clip: low must be a real number"),
    (lambda x: F.clip(x, 1j, None), ArgumentTypeError, r"clip: low .* complex"),
    (lambda x: F.astype(x, None), ArgumentTypeError, r"astype: dtype must be a dtype"),
    (lambda x: F.astype(x, "nope"), ArgumentTypeError, r"astype: dtype 'nope' is not a dtype"),
    (lambda x: F.astype(x, 5), ArgumentTypeError, r"astype: dtype 5 is not a dtype"),
    (lambda x: F.astype(x, "complex64"), ArgumentTypeError, r"astype: cannot convert to complex64"),
    (lambda x: F.astype(x, object), ArgumentTypeError, r"astype: cannot convert to object"),
    (lambda x: F.where(np.ones((2, 3), complex), x, x), ArgumentTypeError,
     r"where: condition must be bool .* complex128"),
    (lambda x: F.where(np.ones((2, 3), object), x, x), ArgumentTypeError,
     r"where: condition must be bool .* object"),
    (lambda x: F.pad(x, 1, "7"), ArgumentTypeError, r"pad: value must be a real number, got str"),
    (lambda x: F.pad(x, 1, None), ArgumentTypeError, r"pad: value must be a real number"),
    (lambda x: F.pad(x, 1, [0.0]), ArgumentTypeError, r"pad: value must be a real number"),
    (lambda x: F.getitem(x, (1, slice(1.5, 3))), ArgumentTypeError,
     r"getitem: slice bounds must be ints"),
    (lambda x: F.getitem(x, np.array([1.5])), ArgumentTypeError,
     r"getitem: index arrays must be bool or integer"),
    (lambda x: F.getitem(x, "a"), ArgumentTypeError, r"getitem: not an index"),
    (lambda x: F.sum_to(x.data, (1.5, 1)), ArgumentTypeError, r"sum_to: shape\[0\] must be an int"),
    (lambda x: F.sum_to(x.data, (2, 2)), OpError, r"sum_to: g of shape \(2, 3\) cannot be summed"),
    (lambda x: F.sum_to(x.data, (2, 3, 1)), OpError, r"sum_to: .* cannot be summed"),
    (lambda x: F.sum_to(x.data.astype(complex), (3,)), ArgumentTypeError,
     r"sum_to: g has dtype complex128"),
    (lambda x: F.softmax(x, [0]), ArgumentTypeError, r"softmax: axis must be an int"),
    (lambda x: F.log_softmax(x, [0]), ArgumentTypeError, r"log_softmax: axis must be an int"),
]


@pytest.mark.parametrize("call, error, message", BAD_OP_ARGUMENTS,
                         ids=[m[:40] for _, _, m in BAD_OP_ARGUMENTS])
def test_elementwise_and_indexing_ops_refuse_bad_arguments_by_name(call, error, message):
    with pytest.raises(error, match=message):
        call(cl.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True))


def test_clip_takes_infinite_bounds_and_keeps_int_tensors_int():
    x = cl.tensor(np.array([-2, 0, 5]))
    assert F.clip(x, 0, 3).dtype == x.dtype
    np.testing.assert_array_equal(F.clip(cl.tensor(np.array([-1.0, 9.0])), -np.inf, 2.0).data,
                                  [-1.0, 2.0])


def test_where_reads_an_integer_condition_as_non_zero():
    a, b = cl.tensor(np.ones(3)), cl.tensor(np.zeros(3))
    np.testing.assert_array_equal(F.where(np.array([2, 0, -1]), a, b).data, [1.0, 0.0, 1.0])


def test_pad_takes_nan_and_infinity_as_fill_values():
    x = cl.tensor(np.ones((1, 1)))
    assert np.isnan(F.pad(x, 1, np.nan).data[0, 0])
    assert F.pad(x, 1, -np.inf).data[0, 0] == -np.inf


def test_getitem_takes_boolean_and_integer_arrays_and_empty_lists():
    x = cl.tensor(np.arange(6.0).reshape(2, 3))
    assert F.getitem(x, np.array([True, False])).shape == (1, 3)
    assert F.getitem(x, (slice(None), [0, 0])).shape == (2, 2)
    assert F.getitem(x, []).shape == (0, 3)


def test_pow_of_an_int8_base_differentiates_in_the_float_result_dtype():
    a = cl.tensor(np.array([2, 3], dtype=np.int8))
    b = cl.tensor(np.array([1.5, 0.5]), requires_grad=True)
    F.pow(a, b).sum().backward()
    want = np.array([2 ** 1.5 * np.log(2), 3 ** 0.5 * np.log(3)])
    np.testing.assert_allclose(b.grad, want, rtol=1e-12)


@pytest.mark.parametrize("stats", [np.ones(3, np.int64), np.ones(3, np.uint8), np.ones(3, bool),
                                   np.ones(3, complex), np.ones(3, object), np.array(["a"] * 3),
                                   np.ones(3, np.float16), [1.0, 1.0, 1.0]],
                         ids=["int64", "uint8", "bool", "complex", "object", "str", "float16",
                              "list"])
def test_batch_norm_refuses_running_statistics_that_are_not_float_arrays(stats):
    x = cl.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)))
    before = np.array(stats, copy=True)
    with pytest.raises(ArgumentTypeError, match=r"batch_norm: running_var"):
        F.batch_norm(x, np.zeros(3), stats, training=True, momentum=0.5)
    np.testing.assert_array_equal(np.asarray(stats), before)


# ---------------------------------------------------------------------------------------------
# Errors name the op the user called, and a list is an input like an array


@pytest.mark.parametrize("call, name", [
    (lambda x: F.clone(x), "clone"),
    (lambda x: F.flatten(x), "flatten"),
    (lambda x: F.squeeze(x), "squeeze"),
    (lambda x: F.unsqueeze(x, 0), "unsqueeze"),
    (lambda x: F.stack([x, x]), "stack"),
    (lambda x: F.expand(x, (2, 1, 1, 4, 4)), "expand"),
    (lambda x: F.mse_loss(x, x), "mse_loss"),
    (lambda x: F.max_avg_pool2d(x, 2), "max_avg_pool2d"),
    (lambda x: F.spatial_pyramid_pool2d(x), "spatial_pyramid_pool2d"),
    (lambda x: F.stochastic_pool2d(x, 2, training=False), "stochastic_pool2d"),
    (lambda x: F.rrelu(x, training=False), "rrelu"),
    (lambda x: F.dropout(x, training=False), "dropout"),
    (lambda x: nn.Dropout().eval()(x), "dropout"),
])
def test_an_op_built_on_another_refuses_complex_under_its_own_name(call, name):
    with pytest.raises(ArgumentTypeError, match=rf"^{name}: input 0 has dtype complex128"):
        call(np.ones((1, 1, 4, 4), complex))


@pytest.mark.parametrize("name", ["flatten", "squeeze", "unsqueeze", "stack"])
def test_shape_ops_refuse_string_arrays_under_their_own_name(name):
    call = {"stack": lambda x: F.stack([x]), "unsqueeze": lambda x: F.unsqueeze(x, 0)}.get(
        name, getattr(F, name))
    with pytest.raises(TypeError, match=rf"^{name}: expected numeric data"):
        call(np.array([["a"]]))


def test_layers_and_composite_ops_take_python_lists():
    image = np.ones((1, 3, 4, 4)).tolist()
    assert nn.Conv2d(3, 2, 3)(image).shape == (1, 2, 2, 2)
    assert nn.MaxPool2d(2)(image).shape == (1, 3, 2, 2)
    assert nn.BatchNorm2d(3)(image).shape == (1, 3, 4, 4)
    assert nn.Flatten()(image).shape == (1, 48)
    assert nn.Linear(4, 2)(image).shape == (1, 3, 4, 2)
    assert F.max_avg_pool2d(image, 2).shape == (1, 3, 2, 2)
    assert F.spatial_pyramid_pool2d(image, levels=(1, 2)).shape == (1, 15)
    np.testing.assert_array_equal(F.sum_to([[1.0, 2.0], [3.0, 4.0]], (1, 2)), [[4.0, 6.0]])


def test_a_layer_refuses_a_list_that_is_not_numeric_naming_itself():
    with pytest.raises(TypeError, match=r"^MaxPool2d\(.*\): expected numeric data"):
        nn.MaxPool2d(2)([["a"]])


@pytest.mark.parametrize("make, name", [(lambda: nn.Linear(112419, 112419), "Linear"),
                                        (lambda: nn.Conv2d(37473, 37473, 3), "Conv2d")])
def test_a_layer_too_large_for_memory_names_itself(make, name, monkeypatch):
    from cnnlite import memory
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    with pytest.raises(memory.HostOutOfMemoryError, match=rf"^{name}\("):
        make()


def test_spatial_pyramid_pooling_out_of_memory_names_itself(monkeypatch):
    from cnnlite import memory
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    with pytest.raises(memory.HostOutOfMemoryError, match=r"^spatial_pyramid_pool2d"):
        F.spatial_pyramid_pool2d(np.ones((1, 1, 4, 4), np.float32), levels=(32453,))


def test_apl_refuses_an_rng_that_is_not_a_generator_naming_itself():
    with pytest.raises(ArgumentTypeError, match=r"^APL: rng"):
        nn.APL(3, rng=0)


@pytest.mark.parametrize("call", [lambda x: F.max_pool2d(x, 2), lambda x: F.max_avg_pool2d(x, 2),
                                  lambda x: nn.MaxPool2d(2)(x), lambda x: nn.MaxAvgPool2d(2)(x)],
                         ids=["max_pool2d", "max_avg_pool2d", "MaxPool2d", "MaxAvgPool2d"])
def test_max_pooling_of_an_empty_batch_on_the_reference_loops(call):
    x = cl.tensor(np.zeros((0, 3, 4, 4), np.float32), requires_grad=True)
    with backend.use_reference():
        y = call(x)
        y.sum().backward()
    assert y.shape == (0, 3, 2, 2) and x.grad.shape == (0, 3, 4, 4)
