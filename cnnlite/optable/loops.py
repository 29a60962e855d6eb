"""``Loops``: a Function whose forward and backward are a pair of readable loops.

The reference modules write each op without autograd, as a pair on raw arrays::

    y  = forward(*inputs, *settings)
    gx = backward(*inputs, gy, *settings)     # one gradient, or one per input

Wrapped in ``Loops``, the pair is an op like any other, so the table's checks (central
differences above all) check the loops themselves: the table's "direct" implementation.
Integer inputs (class targets) get no gradient.
"""
from __future__ import annotations

from cnnlite import dtypes
from cnnlite.autograd import Function


class Loops(Function):
    """The Function made of ``forward`` and ``backward`` loops, with fixed ``settings``."""

    #: Inputs reach the loops as they are: class targets stay integers.
    dtypes = dtypes.NUMERIC

    def __init__(self, forward, backward, *settings):
        self.forward_loops, self.backward_loops, self.settings = forward, backward, settings

    def forward(self, *inputs):
        self.save_for_backward(*inputs)
        return self.forward_loops(*inputs, *self.settings)

    def backward(self, gy):
        grads = self.backward_loops(*self.saved, gy, *self.settings)
        grads = grads if isinstance(grads, tuple) else (grads,)
        # The pair returns gradients for the float inputs, which come first.
        return grads + (None,) * (len(self.saved) - len(grads))
