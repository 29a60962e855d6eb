"""The functional API: every differentiable op as a plain function of tensors.

``import cnnlite.functional as F`` then ``F.conv2d(x, w, b)``, ``F.relu(x)``, ... Each function
builds one ``Function`` (see ``cnnlite.autograd``) from the module of its topic:

math        element-wise arithmetic, exp/log/sqrt/abs/clip/maximum/where, matmul
reduction   sum, mean, max, min, var
shape       reshape, transpose, broadcast, indexing, concat/stack/split, pad
conv        conv2d (im2col + GEMM), linear
conv_algorithms  which Function computes a conv2d: the table of its fast CPU paths
conv_pointwise   conv2d's fast CPU path for 1x1 layers (plain matrix products)
winograd    conv2d's fast CPU path for 3x3 stride-1 layers (Winograd's F(2x2, 3x3))
pool        max/avg/adaptive/global/stochastic/max+avg/spatial-pyramid pooling
generalized_pool  gated max-average and tree pooling (Lee et al.), eltwise_affine
norm        batch_norm, local_response_norm
activation  relu and its family, sigmoid, tanh, softplus, maxout, APL
mobile_activation  relu6, hardsigmoid, hardswish, silu (MobileNet v2/v3, EfficientNet)
dropout     inverted dropout
loss        softmax, log_softmax, cross_entropy, nll_loss, mse_loss

Dtypes (the policy is ``cnnlite.dtypes``, applied on the way into every op): the
differentiable numerics (conv, pool, norm, activation, dropout, loss, exp/log/sqrt) compute in
float32 or float64, promote bool and integer inputs (to the widest floating input, else
float32) and refuse float16 and complex with the op's name; arithmetic, reductions, shape and
indexing ops take bool, integers and floats as NumPy does. Arguments (sizes, strides, axes,
probabilities, switches) are checked by ``cnnlite.validate``: ``True`` is not a size, ``1.5``
is not a padding and ``"no"`` is not a bool.
"""
from cnnlite.functional.math import (abs, add, astype, clip, clone, div, exp, log, matmul,
                                     maximum, mul, neg, pow, sqrt, sub, sum_to, where)
from cnnlite.functional.reduction import max, mean, min, sum, var
from cnnlite.functional.shape import (broadcast_to, concat, expand, flatten, getitem, pad,
                                      reshape, split, squeeze, stack, transpose, unsqueeze)
from cnnlite.functional.conv import *  # noqa: F401,F403
from cnnlite.functional.pool import *  # noqa: F401,F403
from cnnlite.functional.norm import *  # noqa: F401,F403
from cnnlite.functional.activation import *  # noqa: F401,F403
from cnnlite.functional.mobile_activation import *  # noqa: F401,F403
from cnnlite.functional.generalized_pool import *  # noqa: F401,F403
from cnnlite.functional.dropout import *  # noqa: F401,F403
from cnnlite.functional.loss import *  # noqa: F401,F403
