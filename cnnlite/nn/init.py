"""Weight initialisation: fill a Tensor in place with values of a chosen scale.

Why the scale matters: a layer ``y = W x`` with ``fan_in`` inputs of variance ``v`` gives
outputs of variance ``fan_in * Var(W) * v``. If that factor is not about 1 the signal grows or
shrinks geometrically with depth, and a deep network does not train. The schemes differ in
which factor they make 1:

* Xavier/Glorot (tanh nets): ``Var(W) = gain^2 * 2 / (fan_in + fan_out)``;
* Kaiming/He (ReLU nets, which zero half the signal): ``Var(W) = gain^2 / fan``, gain sqrt(2);
* orthogonal (Saxe et al.): rows (or columns) of W orthonormal, so ``|W x| = |x|`` exactly;
* LSUV (``cnnlite.nn.lsuv``): orthogonal, then rescaled with data until each output has
  variance 1.

For a conv weight ``(out, in, kh, kw)``: ``fan_in = in*kh*kw``, ``fan_out = out*kh*kw``.
Every function takes an optional NumPy ``rng``; without one it draws from this module's
generator, which ``manual_seed`` resets. A tensor with no elements has nothing to fill and is
returned as it is (as in PyTorch), whatever its fans.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from cnnlite import backend, validate
from cnnlite.autograd import no_grad
from cnnlite.errors import OpError
from cnnlite.functional.dropout import random_generator
from cnnlite.tensor import Tensor

__all__ = ["manual_seed", "calculate_gain", "fan_in_and_fan_out", "uniform_", "normal_",
           "constant_", "zeros_", "ones_", "xavier_uniform_", "xavier_normal_",
           "kaiming_uniform_", "kaiming_normal_", "svd_orthonormal", "orthogonal_",
           "glorot_uniform_", "glorot_normal_", "he_uniform_", "he_normal_", "msra_uniform_",
           "msra_normal_", "skip_init"]

_default_rng = np.random.default_rng()

#: Random initial values are drawn about this many at a time (whole rows of the leading axis).
#: Drawn whole, VGG-16's first classifier weight (103 million values) would take 822 MB of
#: float64 before its cast to float32, more memory than the model's float32 weights in all.
DRAW_BLOCK = 2**20

_skipping = False  # inside skip_init(): the random initialisers leave tensors as they are


def manual_seed(seed: int):
    """Reset the generator that initialisers (and layers' default init) use without an rng."""
    global _default_rng
    _default_rng = np.random.default_rng(validate.integer("manual_seed", "seed", seed,
                                                          minimum=0, maximum=None))


@contextlib.contextmanager
def skip_init():
    """Build layers and models without drawing their random initial weights.

    Inside the block ``uniform_``, ``normal_``, ``orthogonal_`` and the schemes built on them
    (``kaiming_*``, ``xavier_*``, every layer's default) leave their tensor as it is: zeros
    for a new layer. Drawing VGG-16's 138 million weights takes seconds, wasted when the
    weights are loaded right after (``load_state_dict``) or only counted (``cl.summary``)::

        with nn.init.skip_init():
            model = models.vgg16()
        model.load_state_dict(weights)
    """
    global _skipping
    previous, _skipping = _skipping, True
    try:
        yield
    finally:
        _skipping = previous


def _rng(rng):
    rng = random_generator("init", rng)
    return _default_rng if rng is None else rng


def _fill(tensor: Tensor, values) -> Tensor:
    """Copy ``values`` (a NumPy array or a number) into ``tensor`` in place, cast to its dtype
    and moved to its device; outside the graph, like an optimiser step."""
    if isinstance(values, np.ndarray):
        values = backend.to_device(values.astype(tensor.dtype), tensor.device)
    with no_grad():
        tensor.copy_(values)
    return tensor


def _fill_drawn(tensor: Tensor, draw) -> Tensor:
    """Fill ``tensor`` in place with ``draw(size)``, values of one distribution from a NumPy
    Generator (``lambda size: rng.normal(0, 1, size=size)``), a block of ``DRAW_BLOCK``
    values at a time cast to its dtype.

    The numbers are those of one draw of the whole shape: a Generator's stream goes on from one
    call to the next, so the blocks are that draw cut into pieces (the same seed gives the same
    weights as ``draw(tensor.shape)`` would).
    """
    if tensor.ndim == 0:
        return _fill(tensor, np.asarray(draw(())))
    rows = max(1, DRAW_BLOCK // max(1, math.prod(tensor.shape[1:])))
    with no_grad():
        for start in range(0, tensor.shape[0], rows):
            block = draw((min(rows, tensor.shape[0] - start),) + tuple(tensor.shape[1:]))
            tensor[start:start + rows] = backend.to_device(block.astype(tensor.dtype),
                                                           tensor.device)
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps the variance of a signal through ``nonlinearity`` (as in PyTorch).

    ========================  =====================================
    linear, conv*, sigmoid    1
    tanh                      5/3
    relu                      sqrt(2)
    leaky_relu                sqrt(2 / (1 + slope^2)), slope 0.01 by default
    selu                      3/4
    ========================  =====================================
    """
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = validate.real("calculate_gain", "negative slope", 0.01 if param is None else param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; known: linear, "
                     f"conv1d, conv2d, conv3d, sigmoid, tanh, relu, leaky_relu, selu")


def fan_in_and_fan_out(shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight: ``(in * receptive field, out * receptive field)``.

    shape: ``(out, in)`` for a linear layer, ``(out, in/groups, kh, kw)`` for a convolution.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise OpError(f"fan_in_and_fan_out: needs a weight with at least 2 dimensions "
                      f"(out, in, ...), got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _nothing_to_fill(tensor) -> bool:
    """A tensor with no elements: its fans may be 0 (a scale of 1/0), and there is nothing to
    fill anyway. Its shape is still checked, so that a 1-d one is refused like any other."""
    fan_in_and_fan_out(tensor.shape)
    return tensor.size == 0


def _fan(shape, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, rng=None) -> Tensor:
    """Fill with U(a, b)."""
    a, b = validate.real("uniform_", "a", a), validate.real("uniform_", "b", b)
    if _skipping:
        return tensor
    generator = _rng(rng)
    return _fill_drawn(tensor, lambda size: generator.uniform(a, b, size=size))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, rng=None) -> Tensor:
    """Fill with N(mean, std^2)."""
    mean = validate.real("normal_", "mean", mean)
    std = validate.real("normal_", "std", std, minimum=0.0)
    if _skipping:
        return tensor
    generator = _rng(rng)
    return _fill_drawn(tensor, lambda size: generator.normal(mean, std, size=size))


def constant_(tensor: Tensor, value: float) -> Tensor:
    return _fill(tensor, value)


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 0)


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 1)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, rng=None) -> Tensor:
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot and Bengio, 2010)."""
    if _nothing_to_fill(tensor):
        return tensor
    fan_in, fan_out = fan_in_and_fan_out(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, rng)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, rng=None) -> Tensor:
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    if _nothing_to_fill(tensor):
        return tensor
    fan_in, fan_out = fan_in_and_fan_out(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", rng=None) -> Tensor:
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)`` (He et al., 2015).

    ``a`` is the negative slope of a leaky ReLU (0: plain ReLU, gain sqrt(2)).
    """
    if _nothing_to_fill(tensor):
        return tensor
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / _fan(tensor.shape, mode))
    return uniform_(tensor, -bound, bound, rng)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", rng=None) -> Tensor:
    """N(0, std^2) with ``std = gain / sqrt(fan)``."""
    if _nothing_to_fill(tensor):
        return tensor
    gain = calculate_gain(nonlinearity, a)
    return normal_(tensor, 0.0, gain / math.sqrt(_fan(tensor.shape, mode)), rng)


def svd_orthonormal(shape, rng=None) -> np.ndarray:
    """A float64 array of ``shape`` whose matrix view ``(out, in*kh*kw)`` is orthonormal.

    The SVD of a standard-normal matrix ``A = U S V^T`` gives orthonormal ``U`` (out, k) and
    ``V^T`` (k, in*kh*kw), k = min of the two; whichever of them has A's shape is the answer:
    orthonormal rows when out <= in*kh*kw (``W W^T = I``), orthonormal columns otherwise.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise OpError(f"svd_orthonormal: needs at least 2 dimensions, got shape {shape}")
    flat_shape = (shape[0], math.prod(shape[1:]))
    a = _rng(rng).standard_normal(flat_shape)
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    q = u if u.shape == flat_shape else vt
    return q.reshape(shape)


def orthogonal_(tensor: Tensor, gain: float = 1.0, rng=None) -> Tensor:
    """Fill with ``gain`` times an orthonormal matrix (Saxe et al., 2014), see
    ``svd_orthonormal``. For a conv weight the matrix is ``(out, in*kh*kw)``."""
    if _nothing_to_fill(tensor) or _skipping:
        return tensor
    return _fill(tensor, gain * svd_orthonormal(tensor.shape, rng))


# The other names the same schemes go by: Glorot is Xavier's surname; He et al. worked at
# Microsoft Research Asia (MSRA), and Caffe calls their scheme "msra".
glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
he_uniform_ = msra_uniform_ = kaiming_uniform_
he_normal_ = msra_normal_ = kaiming_normal_


_FROM_LSUV = ("lsuv_init", "LSUVReport", "LSUVLayer", "REFERENCE_SCRIPT")


def __getattr__(name):
    """``init.lsuv_init`` and its report types, which live in ``cnnlite.nn.lsuv``.

    LSUV needs the layers, and the layers need this module for their default initialisation,
    so ``lsuv`` cannot be imported at the top of this file; it is looked up on first use.
    """
    if name in _FROM_LSUV:
        from cnnlite.nn import lsuv
        return getattr(lsuv, name)
    raise AttributeError(f"module 'cnnlite.nn.init' has no attribute {name!r}")
