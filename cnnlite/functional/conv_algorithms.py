"""Which algorithm computes a convolution: the one place where conv2d chooses.

Every algorithm is a Function of its own with the same inputs, outputs and hyper-parameters as
``Conv2d`` (im2col + GEMM), the same numbers up to rounding, and its own test file that
compares it with the reference loops. They differ only in how fast they are on which layers:

==============  ===========================  ================================================
algorithm       Function                     layers it takes on the CPU (numba backend)
==============  ===========================  ================================================
depthwise       ``Conv2dDepthwise``          groups == C == O (one filter per channel)
pointwise       ``Conv2dPointwise``          1x1 kernels without padding, one group
small           ``Conv2dSmall``              3x3, stride 1, one group, <= 128 channels in
                                             and out (``small_conv_applies``)
winograd        ``Conv2dWinograd``           3x3, stride 1, one group, >= 32 channels in and
                                             out, outputs >= 8 px, 2x2 output tiles >= 1.5x
                                             the channels (``winograd_applies``)
im2col          ``Conv2d``                   every other layer; every layer inside
                                             ``backend.use_reference()`` and on the GPU
==============  ===========================  ================================================

The first row whose rule holds wins. ``backend.conv_algorithm("im2col")`` turns every fast path
off; ``backend.conv_algorithm("winograd")`` gives Winograd every 3x3, stride-1, undilated,
ungrouped layer whatever its size.
"""
from __future__ import annotations

from cnnlite import backend
from cnnlite.functional.conv import Conv2d
from cnnlite.functional.conv_small import Conv2dSmall, small_conv_applies
from cnnlite.functional.depthwise import Conv2dDepthwise, depthwise_applies
from cnnlite.functional.conv_pointwise import Conv2dPointwise, pointwise_applies
from cnnlite.functional.winograd import Conv2dWinograd, winograd_applies

__all__ = ["ALGORITHMS", "conv_function"]

#: (name, Function, rule) in the order they are tried; im2col takes what none of them takes.
ALGORITHMS = (
    ("depthwise", Conv2dDepthwise, depthwise_applies),
    ("pointwise", Conv2dPointwise, pointwise_applies),
    ("small", Conv2dSmall, small_conv_applies),
    ("winograd", Conv2dWinograd, winograd_applies),
)


def conv_function(x, w, stride, padding, dilation, groups) -> type[Conv2d]:
    """The Function class that computes conv2d(x, w, ...) on raw arrays x and w."""
    if backend.preferred_conv_algorithm() == "winograd" and winograd_applies(
            x, w, stride, padding, dilation, groups):
        return Conv2dWinograd  # asked for by name: before the rows above it
    for _, function, applies in ALGORITHMS:
        if applies(x, w, stride, padding, dilation, groups):
            return function
    return Conv2d
