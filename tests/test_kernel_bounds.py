"""No kernel can be made to read or write outside its arrays.

The numba kernels (``cnnlite.cpu.KERNELS``) and the CUDA kernels (``cnnlite.cuda``) index raw
memory without bounds checks, and they are public. Every kernel of every family (the loops of
``cnnlite.reference`` too) checks its arguments first (``cnnlite.reference.contracts``) and
refuses, with an OpError naming the kernel and the shapes, every kind of argument that would
take it outside its arrays: arrays whose shapes disagree with each other or with the geometry,
a geometry that walks outside the input (a stride of 0, a padding beyond half the kernel, more
windows than the input has), the wrong dtypes or ranks, read-only or strided arrays that a
kernel writes through, and index values outside the array they index.

The CUDA kernels run on the CPU through the harness of kernels/host (``cnnlite.cuda.host``),
so these tests need no GPU.
"""

import numpy as np
import pytest

from cnnlite import cpu, cuda, reference
from cnnlite.cuda import host
from cnnlite.errors import OpError

FAMILIES = {"reference": reference.KERNELS, "numba": cpu.KERNELS, "cuda": cuda.KERNELS}


@pytest.fixture(params=list(FAMILIES))
def family(request):
    """(name, KERNELS) of one family; the CUDA launchers run through the harness."""
    name = request.param
    if name != "cuda":
        yield name, FAMILIES[name]
        return
    with host.run_on_cpu(request.getfixturevalue("harness")):
        yield name, FAMILIES[name]


def f(*shape, dtype=np.float64):
    return np.ones(shape, dtype=dtype)


def argmax_of(*shape, value=0):
    return np.full(shape, value, dtype=np.int32)


X = (2, 3, 4, 4)   # the input of the pooling and convolution cases
CONV = ((1, 1), (1, 1), (1, 1))   # stride, padding, dilation
POOL = ((2, 2), (2, 2), (0, 0))   # kernel_size, stride, padding
N_C_L = (2, 3, 5)  # the (N, C, L) view of the normalisation cases


def bn_vectors(count=3, short=None):
    """mean, inv_std, weight, bias (C,) for N_C_L; ``short`` names one of them with C - 1."""
    return [f(count - 1) if name == short else f(count)
            for name in ("mean", "inv_std", "weight", "bias")]


# (id, kernel, arguments, the message): every kind of argument that would take a kernel
# outside its arrays, on every kernel. The message is matched from its start.
BAD_CALLS = [
    # --- arrays whose shapes disagree with each other or with the geometry --------------------
    ("col one column short", "col2im", lambda: (f(27, 49), (2, 3, 5, 5), 3, 3, *CONV),
     r"col2im: expected col of shape \(C\*kh\*kw, N\*OH\*OW\) = \(27, 50\) .*got col \(27, 49\)"),
    ("col of another kernel", "col2im", lambda: (f(12, 50), (2, 3, 5, 5), 3, 3, *CONV),
     r"col2im: expected col .*\(27, 50\).*got col \(12, 50\)"),
    ("argmax of another shape", "max_pool2d_backward",
     lambda: (f(2, 3, 2, 2), argmax_of(2, 3, 2, 1), (4, 4)),
     r"max_pool2d_backward: expected argmax of gy's shape \(2, 3, 2, 2\), got \(2, 3, 2, 1\)"),
    ("more windows than the input has", "max_pool2d_forward",
     lambda: (f(*X), *POOL, (3, 2)),
     r"max_pool2d_forward: an output of \(3, 2\) windows does not fit an input of \(4, 4\)"),
    ("more windows than the input has", "avg_pool2d_forward",
     lambda: (f(*X), *POOL, (2, 5), True),
     r"avg_pool2d_forward: an output of \(2, 5\) windows does not fit an input of \(4, 4\)"),
    ("gy with more windows than the input has", "avg_pool2d_backward",
     lambda: (f(2, 3, 3, 2), (4, 4), *POOL, False),
     r"avg_pool2d_backward: an output of \(3, 2\) windows does not fit an input of \(4, 4\)"),
    ("uniforms of another shape", "stochastic_pool2d_sample",
     lambda: (f(*X), (2, 2), (2, 2), (2, 2), f(2, 3, 2)),
     r"stochastic_pool2d_sample: expected uniforms of shape \(2, 3, 2, 2\) for x "
     r"\(2, 3, 4, 4\), got \(2, 3, 2\)"),
    ("more windows than the input has", "probability_weighted_pool2d_forward",
     lambda: (f(*X), (2, 2), (2, 2), (2, 3)),
     r"probability_weighted_pool2d_forward: an output of \(2, 3\) windows does not fit"),
    ("gy of other planes", "probability_weighted_pool2d_backward",
     lambda: (f(2, 2, 2, 2), f(*X), (2, 2), (2, 2)),
     r"probability_weighted_pool2d_backward: gy and x must have the same \(N, C\), got gy "
     r"\(2, 2, 2, 2\) and x \(2, 3, 4, 4\)"),
    ("a short channel vector", "batch_norm_forward",
     lambda: (f(*N_C_L), *bn_vectors(short="bias")),
     r"batch_norm_forward: bias must have shape \(C,\) = \(3,\) for x \(2, 3, 5\), got bias "
     r"\(2,\)"),
    ("gy of another shape", "batch_norm_grad_statistics",
     lambda: (f(2, 3, 4), f(*N_C_L), f(3), f(3)),
     r"batch_norm_grad_statistics: gy must have the shape of x \(2, 3, 5\), got gy \(2, 3, 4\)"),
    ("a short channel vector", "batch_norm_backward",
     lambda: (f(*N_C_L), f(*N_C_L), f(3), f(3), f(3), f(3), f(2)),
     r"batch_norm_backward: grad_bias must have shape \(C,\) = \(3,\)"),
    ("denom of another shape", "lrn_backward",
     lambda: (f(*N_C_L), f(*N_C_L), f(2, 3, 4), f(*N_C_L), 3, 1e-4, 0.75),
     r"lrn_backward: denom must have the shape of x \(2, 3, 5\), got denom \(2, 3, 4\)"),
    ("gy of another shape", "relu_backward", lambda: (f(2, 3), f(2, 4)),
     r"relu_backward: gy must have the shape of x \(2, 3\), got gy \(2, 4\)"),
    ("gy of another shape", "leaky_relu_backward", lambda: (f(2, 3), f(3, 2), 0.1),
     r"leaky_relu_backward: gy must have the shape of x \(2, 3\), got gy \(3, 2\)"),
    ("gy of another shape", "elu_backward", lambda: (f(6), f(2, 3), 1.0),
     r"elu_backward: gy must have the shape of x \(6,\), got gy \(2, 3\)"),
    ("gy of another shape", "sigmoid_backward", lambda: (f(2, 3), f(2, 1)),
     r"sigmoid_backward: gy must have the shape of y \(2, 3\), got gy \(2, 1\)"),
    ("gy of another shape", "tanh_backward", lambda: (f(2, 3), f(1, 3)),
     r"tanh_backward: gy must have the shape of y \(2, 3\), got gy \(1, 3\)"),
    ("gy of another shape", "softmax_backward", lambda: (f(4, 3), f(4, 2), 1),
     r"softmax_backward: gy must have the shape of y \(4, 3\), got gy \(4, 2\)"),
    ("gy of another shape", "log_softmax_backward", lambda: (f(4, 3), f(3, 3), 1),
     r"log_softmax_backward: gy must have the shape of y \(4, 3\), got gy \(3, 3\)"),
    ("gloss of another shape", "cross_entropy_backward",
     lambda: (f(4, 3), np.zeros(4, dtype=np.int64), f(3), 0.0),
     r"cross_entropy_backward: gloss \(3,\) must broadcast to target's shape \(4,\)"),
    ("a gradient shorter than its parameter", "sgd_momentum_update",
     lambda: (np.zeros(10), f(1), np.zeros(10), 1.0),
     r"sgd_momentum_update: grad must have the shape of param \(10,\), got grad \(1,\)"),
    ("a gradient longer than its parameter", "adam_update",
     lambda: (np.zeros(3), f(300), np.zeros(3), np.zeros(3), 1, 0.1),
     r"adam_update: grad must have the shape of param \(3,\), got grad \(300,\)"),
    ("a state of another shape", "adam_update",
     lambda: (np.zeros(3), f(3), np.zeros(2), np.zeros(3), 1, 0.1),
     r"adam_update: exp_avg must be a contiguous float64 array of param's shape \(3,\)"),
    ("M of another batch", "winograd_output",
     lambda: (f(16, 4, 2), f(4), np.empty((3, 4, 2, 2))),
     r"winograd_output: expected M of shape \(16, O, N\*TH\*TW\) = \(16, 4, 3\)"),
    ("M of other tiles", "winograd_output",
     lambda: (f(16, 4, 9), f(4), np.empty((1, 4, 4, 4))),
     r"winograd_output: expected M of shape \(16, O, N\*TH\*TW\) = \(16, 4, 4\) for y "
     r"\(1, 4, 4, 4\), got M \(16, 4, 9\)"),
    ("a short bias", "winograd_output", lambda: (f(16, 4, 1), f(3), np.empty((1, 4, 2, 2))),
     r"winograd_output: expected bias of shape \(4,\) for y \(1, 4, 2, 2\), got bias \(3,\)"),
    ("dV of another padding", "winograd_input_grad",
     lambda: (f(16, 3, 2), np.empty(X), (1, 1)),
     r"winograd_input_grad: expected dV of shape \(16, C, N\*TH\*TW\) = \(16, 3, 8\) for gx "
     r"\(2, 3, 4, 4\) and padding \(1, 1\)"),
    ("a filter that is not 3x3", "winograd_filter", lambda: (f(4, 3, 3, 2),),
     r"winograd_filter: w must be \(O, C, 3, 3\), got w \(4, 3, 3, 2\)"),
    ("more filters than channels", "depthwise_forward",
     lambda: (f(1, 3, 5, 5), f(4, 1, 3, 3), (1, 1), (1, 1), (1, 1)),
     r"depthwise_forward: expected w of shape \(C, 1, kh, kw\) with C = 3"),
    ("gy of another size", "depthwise_backward_input",
     lambda: (f(1, 3, 4, 4), f(3, 1, 3, 3), (1, 3, 5, 5), (1, 1), (1, 1), (1, 1)),
     r"depthwise_backward_input: expected gy of shape \(N, C, OH, OW\) = \(1, 3, 5, 5\)"),
    ("gy of another size", "depthwise_backward_weight",
     lambda: (f(1, 3, 5, 5), f(1, 3, 4, 4), (3, 1, 3, 3), (1, 1), (1, 1), (1, 1)),
     r"depthwise_backward_weight: expected gy of shape \(N, C, OH, OW\) = \(1, 3, 5, 5\)"),
    ("w of other channels", "conv_small", lambda: (f(1, 3, 5, 5), f(4, 2, 3, 3), f(4), (1, 1),
                                                   (1, 1)),
     r"conv_small: expected w of shape \(O, 3, 3, 3\) for x \(1, 3, 5, 5\)"),
    ("gy of another size", "conv_small_weight_grad",
     lambda: (f(1, 3, 5, 5), f(1, 4, 4, 4), (1, 1), (1, 1)),
     r"conv_small_weight_grad: expected gy of shape \(N, O, OH, OW\) = \(1, 4, 5, 5\)"),
    ("dU of other tiles", "winograd_filter_grad", lambda: (f(9, 4, 3),),
     r"winograd_filter_grad: dU must be \(16, O, C\), got dU \(9, 4, 3\)"),
    # --- a geometry that walks outside the input ------------------------------------------------
    ("a stride of 0", "im2col", lambda: (f(*X), 3, 3, (0, 1), (1, 1), (1, 1)),
     r"im2col: stride\[0\] must be >= 1, got 0"),
    ("a negative padding", "col2im", lambda: (f(27, 32), X, 3, 3, (1, 1), (-1, 0), (1, 1)),
     r"col2im: padding\[0\] must be >= 0, got -1"),
    ("a kernel larger than the padded input", "im2col",
     lambda: (f(*X), 3, 7, (1, 1), (1, 1), (1, 1)),
     r"im2col: the kernel \(3, 7\) spans 7 pixels in width .* the padded input has only 6"),
    ("a dilated kernel larger than the input", "im2col",
     lambda: (f(*X), 3, 3, (1, 1), (0, 0), (2, 1)),
     r"im2col: the kernel \(3, 3\) spans 5 pixels in height \(dilation \(2, 1\) included\)"),
    ("a kernel of 0", "max_pool2d_forward", lambda: (f(*X), (0, 2), (1, 1), (0, 0), (2, 2)),
     r"max_pool2d_forward: kernel_size\[0\] must be >= 1, got 0"),
    ("padding beyond half the kernel", "max_pool2d_forward",
     lambda: (f(*X), (2, 2), (1, 1), (2, 0), (3, 3)),
     r"max_pool2d_forward: padding must be at most half the kernel_size, got kernel_size "
     r"\(2, 2\), stride \(1, 1\), padding \(2, 0\)"),
    ("a stride of 2**63", "avg_pool2d_backward",
     lambda: (f(2, 3, 2, 2), (4, 4), (2, 2), (2**63, 2), (0, 0), True),
     r"avg_pool2d_backward: stride\[0\] must be <= 2147483647, got 9223372036854775808"),
    ("a window size of 0", "lrn_forward", lambda: (f(*N_C_L), 0, 1e-4, 0.75, 1.0),
     r"lrn_forward: size must be >= 1, got 0"),
    ("a beta of 1, which divides by 0", "adam_update",
     lambda: (np.zeros(3), f(3), np.zeros(3), np.zeros(3), 1, 0.1, 1.0),
     r"adam_update: beta1 must be < 1.0, got 1.0"),
    ("step 0, which divides by 0", "adam_update",
     lambda: (np.zeros(3), f(3), np.zeros(3), np.zeros(3), 0, 0.1),
     r"adam_update: step must be >= 1, got 0"),
    ("no room for a 3x3 kernel", "winograd_input", lambda: (f(1, 2, 2, 5), (0, 0)),
     r"winograd_input: a 3x3 kernel does not fit x \(1, 2, 2, 5\) with padding \(0, 0\)"),
    # --- sizes of the wrong kind ------------------------------------------------------------
    ("True as a kernel size", "im2col", lambda: (f(*X), True, 3, *CONV),
     r"im2col: kh must be an int, got bool True"),
    ("a float stride", "max_pool2d_forward", lambda: (f(*X), (2, 2), (1.5, 2), (0, 0), (2, 2)),
     r"max_pool2d_forward: stride\[0\] must be an int, got float 1.5"),
    ("a lone int for a pair", "avg_pool2d_forward", lambda: (f(*X), 2, (2, 2), (0, 0), (2, 2),
                                                             True),
     r"avg_pool2d_forward: kernel_size must be a pair of ints \(rows, columns\), got int 2"),
    ("a string for a switch", "avg_pool2d_forward",
     lambda: (f(*X), *POOL, (2, 2), "no"),
     r"avg_pool2d_forward: count_include_pad must be True or False, got str 'no'"),
    ("a NaN rate", "sgd_momentum_update",
     lambda: (np.zeros(3), f(3), np.zeros(3), float("nan")),
     r"sgd_momentum_update: lr must be finite, got nan"),
    ("a probability above 1", "dropout_forward", lambda: (f(2, 3), 1.5, 0),
     r"dropout_forward: p must be <= 1.0, got 1.5"),
    ("a float axis", "softmax_forward", lambda: (f(2, 3), 1.0),
     r"softmax_forward: axis must be an int, got float 1.0"),
    ("True as an axis", "log_softmax_forward", lambda: (f(2, 3), True),
     r"log_softmax_forward: axis must be an int, got bool True"),
    ("a string slope", "leaky_relu_forward", lambda: (f(2, 3), "0.1"),
     r"leaky_relu_forward: negative_slope must be a real number, got str '0.1'"),
    ("an infinite alpha", "elu_forward", lambda: (f(2, 3), float("inf")),
     r"elu_forward: alpha must be finite, got inf"),
    # --- the wrong dtypes and ranks ---------------------------------------------------------
    ("integer data", "max_pool2d_forward",
     lambda: (f(*X, dtype=np.int64), *POOL, (2, 2)),
     r"max_pool2d_forward: .*float32 or float64.*\(2, 3, 4, 4\)"),
    ("float16 data", "relu_forward", lambda: (f(2, 3, dtype=np.float16),),
     r"relu_forward: .*float32 or float64.*\(2, 3\)"),
    ("complex data", "sigmoid_forward", lambda: (f(2, 3, dtype=np.complex128),),
     r"sigmoid_forward: .*float32 or float64.*\(2, 3\)"),
    ("object data", "tanh_forward", lambda: (np.ones((2, 3), dtype=object),),
     r"tanh_forward: .*float32 or float64.*\(2, 3\)"),
    ("an int64 argmax", "max_pool2d_backward",
     lambda: (f(2, 3, 2, 2), np.zeros((2, 3, 2, 2), dtype=np.int64), (4, 4)),
     r"max_pool2d_backward: argmax must be an array of dtype int32, got int64 argmax "
     r"\(2, 3, 2, 2\)"),
    ("float targets", "cross_entropy_forward", lambda: (f(4, 3), np.zeros(4), 0.0),
     r"cross_entropy: target must be an array of integers, got float64 target \(4,\)"),
    ("a 3-d input", "im2col", lambda: (f(3, 4, 4), 3, 3, (1, 1), (1, 1), (1, 1)),
     r"im2col: x must be a \(N, C, H, W\) array, got x \(3, 4, 4\)"),
    ("a 4-d input", "batch_norm_statistics", lambda: (f(*X),),
     r"batch_norm_statistics: x must be a \(N, C, L\) array, got x \(2, 3, 4, 4\)"),
    ("a 3-d input", "lrn_forward", lambda: (f(2, 3), 3, 1e-4, 0.75, 1.0),
     r"lrn_forward: x must be a \(N, C, L\) array, got x \(2, 3\)"),
    ("a list for an array", "dropout_forward", lambda: ([1.0, 2.0], 0.5, 0),
     r"dropout_forward: .*\b(an )?arrays?\b.*got list"),
    ("a 3-d gradient", "winograd_output_grad", lambda: (f(2, 3, 4),),
     r"winograd_output_grad: gy must be a \(N, O, OH, OW\) array, got gy \(2, 3, 4\)"),
    # --- arrays a kernel writes through -----------------------------------------------------
    ("a strided state", "sgd_momentum_update",
     lambda: (np.zeros((2, 3)), f(2, 3), np.zeros((3, 2)).T, 0.1, 0.9),
     r"sgd_momentum_update: momentum_buffer must be a contiguous float64 array of param's "
     r"shape \(2, 3\) \(it is updated in place\), got \(2, 3\) float64, not contiguous"),
    ("a read-only parameter", "adam_update",
     lambda: (np.broadcast_to(np.zeros(1), (3,)), f(3), np.zeros(3), np.zeros(3), 1, 0.1),
     r"adam_update: param must be a contiguous float64 array"),
    ("a read-only output", "winograd_output",
     lambda: (f(16, 4, 1), f(4), np.broadcast_to(np.zeros(1), (1, 4, 2, 2))),
     r"winograd_output: y \(1, 4, 2, 2\) is read-only, but it is written in place"),
    ("a read-only gradient", "winograd_input_grad",
     lambda: (f(16, 3, 1), np.broadcast_to(np.zeros(1), (1, 3, 3, 3)), (0, 0)),
     r"winograd_input_grad: gx \(1, 3, 3, 3\) is read-only"),
    # --- index values outside what they index -----------------------------------------------
    ("targets below 0", "cross_entropy_forward",
     lambda: (f(4, 3), np.array([0, 1, -1, 2]), 0.0),
     r"cross_entropy: target holds class indices in \[0, 3\) for logits \(4, 3\), got values "
     r"from -1 to 2"),
    ("targets beyond the classes", "cross_entropy_backward",
     lambda: (f(4, 3), np.array([0, 3, 1, 2]), f(4), 0.0),
     r"cross_entropy_backward: target holds class indices in \[0, 3\) for log_probs \(4, 3\), "
     r"got values from 0 to 3"),
    ("an argmax before the plane", "max_pool2d_backward",
     lambda: (f(1, 2, 2, 2), argmax_of(1, 2, 2, 2, value=-1), (4, 4)),
     r"max_pool2d_backward: argmax \(1, 2, 2, 2\) holds 8 indices outside a plane of 4 x 4 "
     r"\(valid: 0 to 15\)"),
    ("an argmax past the plane", "max_pool2d_backward",
     lambda: (f(1, 2, 2, 2), np.array([0, 5, 16, 3, 2, 1, 0, 15], np.int32).reshape(1, 2, 2, 2),
              (4, 4)),
     r"max_pool2d_backward: argmax \(1, 2, 2, 2\) holds 1 index outside a plane of 4 x 4"),
    ("an argmax far past the plane", "max_pool2d_backward",
     lambda: (f(1, 1, 1, 2), np.array([2**31 - 1, 0], np.int32).reshape(1, 1, 1, 2), (4, 4)),
     r"max_pool2d_backward: argmax \(1, 1, 1, 2\) holds 1 index outside a plane of 4 x 4"),
    # --- the generalized poolings (Lee et al.): masks, windows, the argmax ------------------
    ("a gate of another window", "gated_max_ave_pool2d_forward",
     lambda: (f(*X), f(3, 3), (2, 2), (2, 2), (2, 2)),
     r"gated_max_ave_pool2d_forward: gate must be a float64 array of the window's shape "
     r"\(2, 2\), got float64 gate \(3, 3\)"),
    ("more gated windows than the input has", "gated_max_ave_pool2d_forward",
     lambda: (f(*X), f(2, 2), (2, 2), (2, 2), (3, 2)),
     r"gated_max_ave_pool2d_forward: an output of \(3, 2\) windows does not fit x"),
    ("a gated argmax of another shape", "gated_max_ave_pool2d_backward",
     lambda: (f(2, 3, 2, 2), f(*X), f(2, 2), argmax_of(2, 3, 2, 1), (2, 2), (2, 2)),
     r"gated_max_ave_pool2d_backward: argmax must have the shape of gy \(2, 3, 2, 2\), got "
     r"argmax \(2, 3, 2, 1\)"),
    ("a tree leaf of another window", "tree_pool2d_forward",
     lambda: (f(*X), f(2, 2), f(3, 2), f(2, 2), (2, 2), (2, 2), (2, 2)),
     r"tree_pool2d_forward: leaf2 must be a float64 array of the window's shape \(2, 2\)"),
    ("a tree stride of 0", "tree_pool2d_forward",
     lambda: (f(*X), f(2, 2), f(2, 2), f(2, 2), (2, 2), (0, 2), (2, 2)),
     r"tree_pool2d_forward: stride\[0\] must be >= 1, got 0"),
    ("a tree gradient of more windows than the input has", "tree_pool2d_backward",
     lambda: (f(2, 3, 3, 2), f(*X), f(2, 2), f(2, 2), f(2, 2), (2, 2), (2, 2)),
     r"tree_pool2d_backward: an output of \(3, 2\) windows does not fit x"),
]


#: Each case on each family that has its kernel (the Winograd kernels are numba's alone).
FAMILY_CALLS = [(family, case) for family in FAMILIES for case in BAD_CALLS
                if case[1] in FAMILIES[family]]


def call_id(family, case):
    return f"{family}-{case[1]}-{case[0].replace(' ', '_')}"


@pytest.mark.parametrize("family, case", FAMILY_CALLS, indirect=["family"],
                         ids=[call_id(*call) for call in FAMILY_CALLS])
def test_a_kernel_refuses_what_would_take_it_outside_its_arrays(family, case):
    _, kernels = family
    _, name, arguments, message = case
    with pytest.raises(OpError, match=message):
        kernels[name](*arguments())


def test_every_kernel_has_cases_of_bad_arguments():
    names = set().union(*FAMILIES.values())
    assert names - {case[1] for case in BAD_CALLS} == set()


def test_a_refused_update_leaves_the_parameter_alone(family):
    """The issue's segfault, in small: a gradient of one element for a parameter of ten."""
    _, kernels = family
    param, state = np.arange(10.0), np.zeros(10)
    with pytest.raises(OpError):
        kernels["adam_update"](param, np.ones(1), state, state.copy(), 1, 1.0)
    np.testing.assert_array_equal(param, np.arange(10.0))


@pytest.mark.parametrize("shape", [(0, 3, 5), (4, 3, 0)], ids=["no_samples", "no_positions"])
def test_batch_statistics_of_no_values_are_nan_without_reading_any(family, shape):
    """The kernels start each channel's sum at its first value, which an empty batch lacks."""
    _, kernels = family
    mean, var = kernels["batch_norm_statistics"](np.ones(shape))
    assert mean.shape == var.shape == (3,)
    assert np.isnan(mean).all() and np.isnan(var).all()


@pytest.mark.parametrize("shape", [(0, 3, 5), (4, 3, 0)], ids=["no_samples", "no_positions"])
def test_batch_norm_backward_of_no_values_is_empty(family, shape):
    _, kernels = family
    vectors = [np.ones(3)] * 5
    gx = kernels["batch_norm_backward"](np.ones(shape), np.ones(shape), *vectors)
    assert gx.shape == shape
