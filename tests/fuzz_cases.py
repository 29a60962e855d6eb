"""The fuzz suite's catalogue and the worker process that runs its cases (tests/test_fuzz.py).

Every public op, layer, optimiser, scheduler, loader, data set and command has a *spec* here: a
valid call, the kind of each of its arguments, and the names an error about it may use. A fuzz
case changes one thing in that valid call (one argument to a value of the wrong kind or out of
range, one input to another dtype, memory layout or shape) and says what must happen:

=========  ==================================================================================
``BAD``    a clear error: a ValueError, TypeError, IndexError or KeyError, or a cnnlite error,
           whose message names the op (or layer, optimiser, ...) and is not NumPy's own message
           passed through (``Function.apply`` marks those with "(input shapes: ...)");
``SAME``   a result equal to the reference, the valid call on a contiguous float64 copy of the
           inputs: values, and the gradients of the float inputs (same shape and dtype as the
           input they belong to);
``EITHER`` one of the two (float16, zero-sized axes other than the batch, NumPy arrays given as
           pairs);
``EMPTY``  an empty batch (N = 0): forward and backward work, as in PyTorch;
``ANY``    a clear error or any result, only no crash (bool and uint8 arithmetic, where NumPy's
           wrap-around and logical semantics are the documented ones).
=========  ==================================================================================

The cases run in a worker process (``python tests/fuzz_cases.py``, started by the tests) whose
address space is limited with RLIMIT_AS, so that a segfault, a hang or a runaway allocation
fails one case instead of taking pytest, or the machine, down.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import gzip
import io
import math
import os
import pickle
import re
import struct
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

BAD, SAME, EITHER, EMPTY, ANY = "BAD", "SAME", "EITHER", "EMPTY", "ANY"

#: Physical memory of this machine: the memory cases ask for more than all of it.
RAM_BYTES = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
#: The worker's address-space limit: far above what a valid case needs, far below the machine.
WORKER_ADDRESS_SPACE = min(4 * 2**30, RAM_BYTES // 2)
MAX_SIZE = 2**31 - 1  # cnnlite.validate.MAX_SIZE, the largest size an argument may have
NAN, INF = float("nan"), float("inf")


# --- the kinds of arguments and the values that are wrong for them ---------------------------

class Opaque:
    """An object of no use as any argument (``object()`` that prints as itself)."""

    def __repr__(self):
        return "Opaque()"


NOT_AN_INT = (True, False, 1.5, 2.0, np.float64(2.0), np.bool_(True), "2", 1j, NAN, INF, [2],
              Opaque())
HUGE_INTS = (MAX_SIZE + 1, 2**63, 2**64, 10**30)
NOT_A_REAL = (NAN, INF, -INF, True, "1", 1j, [1.0], Opaque())


@dataclasses.dataclass(frozen=True)
class Kind:
    """What an argument accepts, as three functions of its valid value ``v``: ``bad(v)``, values
    that must be refused; ``forms(v)``, other spellings of ``v`` that must give the same result
    (``np.int64(3)`` for 3); ``either(v)``, values refused clearly or read as ``v``."""

    name: str
    bad: Callable
    forms: Callable = lambda v: ()
    either: Callable = lambda v: ()


def _int_forms(v):
    if isinstance(v, int) and not isinstance(v, bool):
        return (np.int64(v), np.int32(v)) + ((np.uint16(v),) if v >= 0 else ())
    return ()


def _pair_forms(v):
    if isinstance(v, tuple):
        return (list(v), tuple(np.int64(n) for n in v))
    return ((v, v), [v, v], (np.int64(v), v)) + _int_forms(v)


def _real_forms(v):
    forms = (np.float64(v),) + ((np.float32(v),) if float(np.float32(v)) == v else ())
    return forms + ((int(v),) if float(v).is_integer() else ())


SIZE = Kind("size", lambda v: (0, -1, -2**63) + NOT_AN_INT + HUGE_INTS, _int_forms)
#: A count of iterations: Python's ints compute a schedule exactly at any size.
ITERATIONS = Kind("iterations", lambda v: (0, -1, -2**63) + NOT_AN_INT, _int_forms)
WARMUP = Kind("non-negative iterations", lambda v: (-1, -2**63) + NOT_AN_INT, _int_forms)
NON_NEGATIVE = Kind("non-negative int", lambda v: (-1, -2**63) + NOT_AN_INT + HUGE_INTS,
                    _int_forms)
PAIR_SIZE = Kind("int or pair of ints >= 1",
                 lambda v: SIZE.bad(v) + ((1, 0), (0, 1), (1, -1), (1, True), (1, 1.5), (1, "2"),
                                          (1,), (1, 1, 1), (), "22", [1, None]),
                 _pair_forms, lambda v: (np.array([v, v]) if not isinstance(v, tuple)
                                         else np.array(v),))
PAIR_NON_NEGATIVE = Kind("int or pair of ints >= 0",
                         lambda v: NON_NEGATIVE.bad(v) + ((0, -1), (-1, 0), (0, True),
                                                          (0, 0.5), (0,), (0, 0, 0), "00"),
                         _pair_forms)
REAL = Kind("finite real", lambda v: NOT_A_REAL, _real_forms)
BOUND = Kind("real or infinite bound", lambda v: (NAN, True, "1", 1j, [1.0], Opaque()),
             _real_forms)
POSITIVE = Kind("real > 0", lambda v: NOT_A_REAL + (0.0, -1.0, -1e-300), _real_forms)
NON_NEGATIVE_REAL = Kind("real >= 0", lambda v: NOT_A_REAL + (-1.0, -1e-300), _real_forms)
PROBABILITY = Kind("probability", lambda v: NON_NEGATIVE_REAL.bad(v) + (1.5, 1 + 1e-12),
                   _real_forms)
FLAG = Kind("bool", lambda v: ("no", "yes", "False", "", 0, 1, 2, 0.0, 1.0, [True],
                               np.int64(1), None, Opaque()),
            lambda v: (np.bool_(v),))
GENERATOR = Kind("numpy Generator", lambda v: (0, 42, 1.5, "seed", np.random.RandomState(0),
                                               Opaque()))
CALLABLE = Kind("callable", lambda v: (5, "f", 1.5, Opaque()))


def choice(*options):
    """A string among ``options``."""
    return Kind(f"one of {options}",
                lambda v: (v.upper() if v.upper() != v else v.lower(), "", v + " ", "nope", 0,
                           1, True, v.encode(), [v], None, Opaque()),
                lambda v: (np.str_(v),))


def axis_kind(ndim):
    """An axis of an ``ndim``-dimensional input (negative from the end)."""
    return Kind(f"axis of {ndim}-d", lambda v: (ndim, -ndim - 1, 2**63, -2**63, True, 1.5,
                                                 np.float64(0), "0", 1j, NAN, [0], Opaque()),
                lambda v: (np.int64(v), v - ndim if v >= 0 else v + ndim))


def axes_kind(ndim):
    """None, an axis or a tuple of distinct axes."""
    return Kind(f"axes of {ndim}-d",
                lambda v: tuple(a for a in axis_kind(ndim).bad(0) if a != [0])
                + ((0, 0), (0, ndim), (True,), (0.5,), ((0,),)),
                lambda v: () if v is None else ((v,), [v], np.int64(v)) if isinstance(v, int)
                else (list(v),))


@dataclasses.dataclass(frozen=True)
class Arg:
    """A non-tensor argument: its kind and the value of the valid call. ``optional``: None is
    valid too."""

    kind: Kind
    value: object
    optional: bool = False

    def bad_values(self):
        return tuple(v for v in self.kind.bad(self.value) if not (self.optional and v is None))

    def same_values(self):
        return tuple(self.kind.forms(self.value)) if self.value is not None else ()

    def either_values(self):
        return tuple(self.kind.either(self.value)) if self.value is not None else ()


# --- tensor inputs and what can be changed in them --------------------------------------------

@dataclasses.dataclass(frozen=True)
class Input:
    """An array input of a spec.

    shape, low, high: of the valid value (uniform in [low, high]).
    role: ``"float"`` (differentiable values), ``"classes"`` (integer class indices below
        ``classes``), ``"mask"`` (a bool condition) or ``"stats"`` (running statistics that the
        op updates in place: compared after the call too).
    tensor: passed as a cnnlite Tensor (else as a NumPy array).
    batch: the batch axis (set to 0 by the empty-batch case), or None.
    ranks: ranks other than its own at which the input, with an axis added or removed in
        front, still makes a valid call (None: any rank).
    """

    shape: tuple
    low: float = -2.0
    high: float = 2.0
    role: str = "float"
    classes: int = 0
    tensor: bool = True
    batch: int | None = 0
    ranks: tuple | None = None

    def make(self, rng):
        if self.role == "classes":
            return rng.integers(0, self.classes, self.shape).astype(np.int64)
        if self.role == "mask":
            return rng.random(self.shape) < 0.5
        return rng.uniform(self.low, self.high, self.shape)


FLOAT_DTYPES_SAME = ("float32",)
INT_DTYPES = ("bool", "uint8", "int8", "int32", "int64")
REFUSED_DTYPES = ("complex64", "complex128", "object", "str")
#: Dtypes that every float input of an op takes at once.
ALL_INPUTS_DTYPES = tuple(f"dtype:{d}" for d in INT_DTYPES + ("float32", "float16", "complex64"))
LAYOUTS = ("transposed", "strided", "reversed", "broadcast", "readonly")


def input_changes(inp: Input):
    """The labels of the changes the fuzzer may make to one input."""
    if inp.role == "classes":
        dtypes = ("uint8", "int16", "int32", "float32", "float64", "bool", "complex64")
        values = ("values:too_large", "values:negative")
    elif inp.role == "mask":
        dtypes, values = ("uint8", "int64", "float64", "complex64", "object"), ()
    else:
        dtypes = FLOAT_DTYPES_SAME + INT_DTYPES + ("float16",) + REFUSED_DTYPES
        values = ("values:nan", "values:inf", "values:ties")
    layouts = LAYOUTS if inp.role != "stats" else ("transposed", "strided", "reversed")
    forms = ("form:list",) + (("form:ndarray",) if inp.tensor else ("form:tensor",))
    ranks = ("rank:+1", "rank:-1") if len(inp.shape) else ("rank:+1",)
    return (tuple(f"dtype:{d}" for d in dtypes) + values + tuple(f"layout:{l}" for l in layouts)
            + forms + ranks)


def _integer_values(a, inp, dtype):
    """``a`` rounded into the integers that ``dtype`` holds and ``inp``'s range allows."""
    info = np.iinfo(dtype)
    low, high = max(math.ceil(inp.low), info.min), min(math.floor(inp.high), info.max)
    return np.clip(np.rint(a), low, high).astype(dtype)


def change_array(a, inp: Input, label: str):
    """The input ``a`` changed by ``label``; values stay those the valid call could have had,
    so that the reference on its float64 copy is a valid call."""
    what, _, how = label.partition(":")
    if what == "dtype":
        if inp.role == "classes":
            return a.astype(how)
        if how == "bool":
            return a > (inp.low + inp.high) / 2 if inp.role != "mask" else a
        if how in ("uint8", "int8", "int16", "int32", "int64"):
            return _integer_values(a, inp, how)
        if how == "str":
            return a.astype(str)
        return a.astype(how)
    if what == "values":
        changed = a.astype(np.float32) if inp.role == "float" else a.copy()
        flat = changed.reshape(-1)
        if how == "nan" and flat.size:
            flat[:: max(1, flat.size // 3)] = np.nan
        elif how == "inf" and flat.size:
            flat[::2] = np.inf
            flat[1::4] = -np.inf
        elif how == "ties":
            changed = np.clip(np.round(changed), inp.low, inp.high).astype(np.float32)
        elif how == "too_large":
            flat[-1:] = inp.classes
        elif how == "negative":
            flat[:1] = -1
        return changed
    if what == "layout":
        if a.ndim == 0:
            return a
        if how == "transposed":
            return np.ascontiguousarray(a.T).T
        if how == "strided":
            return np.repeat(a, 2, axis=-1)[..., ::2]
        if how == "reversed":
            return np.ascontiguousarray(a[::-1])[::-1]
        if how == "broadcast":
            return np.broadcast_to(a[:1], a.shape)
        if how == "readonly":
            a = a.copy()
            a.flags.writeable = False
            return a
    if what == "rank":
        return a[None] if how == "+1" else a[0]
    raise ValueError(f"unknown change {label!r}")


def canonical(value, inp: Input):
    """The reference's copy of an input: contiguous, float64 (class indices int64, masks bool)."""
    dtype = {"classes": np.int64, "mask": bool}.get(inp.role, np.float64)
    return np.array(value, dtype=dtype, order="C")


def dtype_expectation(label, numeric):
    dtype = label.partition(":")[2]
    if dtype in REFUSED_DTYPES:
        return BAD
    if dtype == "float16":
        return SAME if numeric else EITHER
    if numeric and dtype in ("bool", "uint8"):
        return ANY
    return SAME


# --- specs -------------------------------------------------------------------------------------

def _snake_to_camel(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


@dataclasses.dataclass
class Spec:
    """A valid call of one public API entry and what may be changed in it.

    ``inputs`` (arrays, positional) and ``args`` (keyword arguments) make the valid call
    ``call(fn, [inputs...], {args...})``. ``numeric``: the op follows the NUMERIC dtype policy
    (any real dtype, computed as NumPy does) rather than FLOAT. ``routes``: the implementations
    a case may run on. ``bad_calls``: argument values that are wrong together (a padding beyond
    half the kernel); ``same_calls``: others that must give the valid call's result;
    ``bad_inputs``: (input, shape or change) pairs that must be refused; ``memory``: functions
    of the machine's memory in bytes giving argument values whose result cannot fit in it.
    ``empty``: what an empty batch must do; ``nonfinite``: what NaN and infinite values must
    do. ``names``: what an error may call it besides its own name (another name of the same
    function). ``call(fn, inputs, args)``: how to call it when not ``fn(*inputs, **args)``.
    ``mutated``: inputs the op updates in place, compared with the reference's after the call.
    """

    name: str
    fn: Callable
    inputs: dict = dataclasses.field(default_factory=dict)
    args: dict = dataclasses.field(default_factory=dict)
    numeric: bool = False
    routes: tuple = ("default",)
    bad_calls: tuple = ()
    same_calls: tuple = ()
    bad_inputs: tuple = ()
    memory: tuple = ()
    empty: str = EMPTY
    names: tuple = ()
    call: Callable | None = None
    mutated: tuple = ()
    nonfinite: str = SAME

    def all_names(self):
        return (self.name, _snake_to_camel(self.name)) + self.names

    def run(self, inputs, args):
        if self.call is not None:
            return self.call(self.fn, inputs, args)
        return self.fn(*inputs, **args)


def names_one_of(message, names):
    """Whether ``message`` names one of ``names`` as a word (a CamelCase continuation such as
    ``Conv2dWinograd`` for ``conv2d`` counts; ``summed`` for ``sum`` does not)."""
    return any(re.search(rf"(?<![A-Za-z0-9_])(?i:{re.escape(n)})(?![a-z0-9_])", message)
               for n in names)


class SeededGenerator:
    """Stands for ``np.random.default_rng(0)``, made afresh for each call, so that a changed
    call and its reference draw the same random numbers."""

    def __repr__(self):
        return "default_rng(0)"


SEEDED = SeededGenerator()


def fresh(value):
    return np.random.default_rng(0) if isinstance(value, SeededGenerator) else value


def shape_kind(name, bad, forms=(), either=()):
    """A shape argument whose wrong and equivalent spellings are listed by hand."""
    return Kind(name, lambda v: tuple(bad), lambda v: tuple(forms), lambda v: tuple(either))


def memory_side(ram, elements_per_step, itemsize=8):
    """The side n for which ``elements_per_step * n * n`` items of ``itemsize`` bytes take
    twice the machine's memory."""
    return math.isqrt(2 * ram // (elements_per_step * itemsize)) + 1


OUTPUT_SIZE = Kind("output size", lambda v: (0, -1, True, 1.5, "2", 1j, MAX_SIZE + 1, 2**63,
                                             (2, 0), (2,), (2, 1.5), (2, True), (2, 2, 2), "23",
                                             (2, -1), Opaque()),
                   lambda v: (list(v), tuple(np.int64(n) for n in v)))
LEVELS = Kind("pyramid levels", lambda v: ((), (0,), (1, -1), (1.5,), (True,), "12", 2.5, [[1]],
                                           (2**63,), None, (1, None), Opaque()),
              lambda v: (list(v), tuple(np.int64(n) for n in v)))
DTYPE = Kind("dtype", lambda v: ("complex64", np.complex128, object, "U3", "nope", 5, None,
                                 Opaque()),
             lambda v: (np.dtype(v), np.dtype(v).type))
PAD_VALUE = Kind("pad value", lambda v: ("0", 1j, [0.0], None, Opaque()), _real_forms)
INDEX = Kind("index", lambda v: ((4, slice(1, 4)), (-5, slice(1, 4)), (1, 5), (0, 0, 0), 1.5,
                                 "a", [4], np.array([1.5]), (1, slice(1.5, 3)), Opaque()),
             lambda v: ((np.int64(1), slice(1, 4)), (1, slice(1, 4, 1)), (1, [1, 2, 3]),
                        (-3, slice(1, 4))))
SECTIONS = Kind("sections", lambda v: (0, -1, 4, 1.5, True, 2**63, "3", [1.5], [True, 2], None,
                                       Opaque()),
                lambda v: (np.int64(v),))


def _x(shape=(2, 3, 4), **kw):
    return Input(shape, **kw)


def _image(shape=(2, 3, 6, 6), **kw):
    return Input(shape, ranks=(), **kw)


def _vector(n, **kw):
    return Input((n,), batch=None, ranks=(), **kw)


def _mask(shape=(2, 2)):
    """A (kh, kw) mask of a learned pooling: shared by the batch, its shape is the window's."""
    return Input(shape, batch=None, ranks=())


def _op(name, inputs, args=None, **kw):
    from cnnlite import functional
    return Spec(name, getattr(functional, name), inputs, args or {}, **kw)


def _list_call(fn, inputs, args):
    return fn(list(inputs), **args)


def _pool_args(padding=1):
    return dict(kernel_size=Arg(PAIR_SIZE, 2), stride=Arg(PAIR_SIZE, None, optional=True),
                padding=Arg(PAIR_NON_NEGATIVE, padding), ceil_mode=Arg(FLAG, False))


POOL_CALLS = dict(bad_calls=(dict(padding=2), dict(kernel_size=9), dict(kernel_size=(2, 9)),
                             dict(kernel_size=3, padding=2)),
                  same_calls=(dict(stride=2), dict(kernel_size=(2, 2), stride=(2, 2))))
#: The learned poolings take their window from the masks' shape: only the stride is an argument.
LEARNED_POOL_CALLS = dict(same_calls=(dict(stride=2), dict(stride=(2, 2))))
REDUCTIONS = ("mean", "sum", "none")
HOT = ("default", "reference")
#: A window larger than the 6 x 6 image, in both axes or in one.
LEARNED_LAYER_CALLS = dict(bad_calls=(dict(kernel_size=7), dict(kernel_size=(2, 7))),
                           same_calls=(dict(stride=2), dict(kernel_size=(2, 2), stride=(2, 2))))


def _functional_specs():
    unary = ["relu", "selu", "sigmoid", "tanh", "scaled_tanh", "shifted_softplus", "exp"]
    specs = [_op(name, {"x": _x()}, routes=HOT if name != "exp" else ("default",))
             for name in unary]
    specs += [_op(name, {"x": _x()}, routes=("default",))
              for name in ("relu6", "hardsigmoid", "hardswish", "silu")]
    specs += [_op(name, {"x": _x(low=0.5, high=2.0)}) for name in ("log", "sqrt")]
    specs += [_op(name, {"x": _x()}, numeric=True) for name in ("abs", "neg", "clone")]
    binary_b = {"add": {}, "sub": {}, "mul": {}, "maximum": {}, "div": dict(low=0.5, high=2.0),
                "pow": dict(low=0.0, high=2.0)}
    for name, b_range in binary_b.items():
        a = _x(low=0.5, high=2.0) if name == "pow" else _x()
        specs.append(_op(name, {"a": a, "b": _x((3, 4), batch=None, **b_range)}, numeric=True,
                         bad_inputs=(("b", (2, 4)), ("b", (5,)))))
    specs += [
        _op("leaky_relu", {"x": _x()}, {"negative_slope": Arg(REAL, 0.2)}, routes=HOT),
        _op("elu", {"x": _x()}, {"alpha": Arg(REAL, 1.0)}, routes=HOT),
        _op("softplus", {"x": _x()}, {"beta": Arg(POSITIVE, 2.0),
                                      "threshold": Arg(REAL, 20.0)}, routes=HOT),
        _op("rrelu", {"x": _x()}, {"lower": Arg(REAL, 0.1), "upper": Arg(REAL, 0.3),
                                   "training": Arg(FLAG, True), "rng": Arg(GENERATOR, SEEDED)},
            routes=HOT, bad_calls=(dict(lower=0.5, upper=0.1),)),
        _op("prelu", {"x": _image((2, 3, 4, 4)), "weight": _vector(3, low=0.0, high=0.5)},
            routes=HOT, bad_inputs=(("weight", (4,)), ("weight", (3, 1)), ("weight", (2, 3)))),
        _op("maxout", {"x": _x((2, 6, 3), ranks=(4,))}, {"pieces": Arg(SIZE, 2)}, routes=HOT,
            bad_calls=(dict(pieces=4), dict(pieces=7))),
        _op("apl", {"x": _x(ranks=()), "a": Input((2, 3), batch=None, ranks=()),
                    "b": Input((2, 3), batch=None, ranks=())}, routes=HOT,
            bad_inputs=(("a", (2, 4)), ("b", (3, 3)), ("a", (2, 3, 1)))),
        _op("clip", {"x": _x()}, {"low": Arg(BOUND, -0.5, optional=True),
                                  "high": Arg(BOUND, 0.5, optional=True)}, numeric=True,
            bad_calls=(dict(low=None, high=None),)),
        _op("astype", {"x": _x()}, {"dtype": Arg(DTYPE, "float32")}, numeric=True),
        _op("where", {"condition": Input((2, 3, 4), role="mask", tensor=False), "a": _x(),
                      "b": _x((3, 4), batch=None)}, numeric=True,
            bad_inputs=(("condition", (5,)), ("b", (2, 4)))),
        _op("matmul", {"a": _x(), "b": Input((4, 5), batch=None, ranks=(3,))}, numeric=True,
            bad_inputs=(("b", (3, 5)), ("a", ()), ("b", (5,)))),
    ]
    for name in ("sum", "mean", "max", "min", "var"):
        args = {"axis": Arg(axes_kind(3), 1, optional=True), "keepdims": Arg(FLAG, False)}
        extra = {}
        if name == "var":
            args["ddof"] = Arg(NON_NEGATIVE, 1)
            extra = dict(bad_calls=(dict(ddof=3),))
        specs.append(_op(name, {"x": _x()}, args, numeric=True, **extra))
    reshape_kind = shape_kind("shape of 24 elements",
                              ((5, 5), (-1, -1), (-2, -12), (1.5, 16), (True, 24), (2**63,),
                               (0, 24), (24.0,), "46", (4, None), Opaque()),
                              ([4, 6], (4, -1), (np.int64(4), 6)))
    permutation = shape_kind("permutation of 3 axes",
                             ((0, 0, 1), (0, 1), (0, 1, 3), (0, 1, 1.5), (True, 0, 2),
                              (0, 1, 2, 3), "201", (0, 1, -4), Opaque()),
                             ([2, 0, 1], (-1, 0, 1), (np.int64(2), 0, 1)))
    target = shape_kind("shape (3, 1) broadcasts to",
                        ((3,), (2, 4, 4), (2, 3, -4), (2**63, 3, 4), (2.0, 3, 4), (True, 3, 4),
                         "234", Opaque()),
                        ([2, 3, 4], (np.int64(2), 3, 4)), ((-1, 3, 4),))
    sum_to_kind = shape_kind("shape (2, 3, 4) sums to",
                             ((5,), (2, 3, 4, 5), (3, 2), (1.5, 1), (True, 1), "31", Opaque()),
                             ([3, 1], (np.int64(3), 1)))
    pad_kind = Kind("numpy pad width",
                    lambda v: (1.5, -1, True, "1", ((1, 1),) * 3, ((1, 1),) * 3 + ((1, -1),),
                               2**63, 1j, None, ((1, 1, 1),) * 4, (1.5, 1), Opaque()),
                    lambda v: (np.int64(1), ((1, 1),) * 4, (1, 1), [1]))
    specs += [
        _op("reshape", {"x": _x(batch=None, ranks=(4,))}, {"shape": Arg(reshape_kind, (4, 6))},
            numeric=True, call=lambda fn, i, a: fn(i[0], a["shape"])),
        _op("transpose", {"x": _x(ranks=())}, {"axes": Arg(permutation, (2, 0, 1))},
            numeric=True, call=lambda fn, i, a: fn(i[0], a["axes"])),
        _op("flatten", {"x": _x()}, {"start_axis": Arg(axis_kind(3), 1),
                                     "end_axis": Arg(axis_kind(3), -1)}, numeric=True,
            bad_calls=(dict(start_axis=2, end_axis=0),)),
        _op("squeeze", {"x": _x((2, 1, 4), ranks=())},
            {"axis": Arg(axes_kind(3), 1, optional=True)}, numeric=True,
            bad_calls=(dict(axis=0), dict(axis=2), dict(axis=(1, 2)))),
        _op("unsqueeze", {"x": _x((2, 3))}, {"axis": Arg(axis_kind(3), 1)}, numeric=True),
        _op("getitem", {"x": _x((4, 5), batch=None, ranks=())},
            {"index": Arg(INDEX, (1, slice(1, 4)))}, numeric=True),
        _op("concat", {"a": _x((2, 3), ranks=()), "b": _x((2, 4), ranks=())},
            {"axis": Arg(axis_kind(2), 1)}, numeric=True, call=_list_call,
            bad_inputs=(("b", (3, 4)),)),
        _op("stack", {"a": _x((2, 3), ranks=()), "b": _x((2, 3), ranks=())},
            {"axis": Arg(axis_kind(3), 0)}, numeric=True, call=_list_call,
            bad_inputs=(("b", (2, 4)),)),
        _op("split", {"x": _x((6, 4), ranks=())}, {"indices_or_sections": Arg(SECTIONS, 3),
                                                  "axis": Arg(axis_kind(2), 0)}, numeric=True),
        _op("pad", {"x": _x((2, 3, 6, 6))}, {"pad_width": Arg(pad_kind, 1),
                                     "value": Arg(PAD_VALUE, 0.0)}, numeric=True,
            memory=(lambda ram: dict(pad_width=((0, 0), (0, 0)) + ((memory_side(ram, 6) // 2,)
                                                                  * 2,) * 2),)),
        _op("sum_to", {"g": _x(tensor=False)}, {"shape": Arg(sum_to_kind, (3, 1))},
            numeric=True),
    ]
    for name in ("broadcast_to", "expand"):
        specs.append(_op(name, {"x": _x((3, 1), batch=None, ranks=(1, 2, 3))},
                         {"shape": Arg(target, (2, 3, 4))}, numeric=True,
                         names=("broadcast_to", "expand"),
                         call=lambda fn, i, a: fn(i[0], a["shape"])))
    conv_args = dict(stride=Arg(PAIR_SIZE, 1), padding=Arg(PAIR_NON_NEGATIVE, 1),
                     dilation=Arg(PAIR_SIZE, 1), groups=Arg(SIZE, 1))
    specs += [
        _op("conv2d", {"x": _image(), "w": Input((4, 3, 3, 3), batch=None, ranks=()),
                       "b": _vector(4)}, conv_args,
            routes=("default", "reference", "winograd", "im2col"),
            bad_calls=(dict(groups=2), dict(groups=3), dict(dilation=4), dict(padding=(1, -1))),
            same_calls=(dict(stride=(1, 1), dilation=(1, 1)),),
            bad_inputs=(("x", (2, 4, 6, 6)), ("w", (4, 3, 3)), ("b", (5,)), ("b", (4, 1)),
                        ("x", (2, 3, 6))),
            memory=(lambda ram: dict(padding=memory_side(ram, 2 * 4) // 2),)),
        _op("linear", {"x": _x((2, 5)), "w": Input((3, 5), batch=None, ranks=()),
                       "b": _vector(3)},
            bad_inputs=(("x", (2, 4)), ("w", (3,)), ("b", (4,)))),
        _op("max_pool2d", {"x": _image()}, _pool_args(), routes=HOT, **POOL_CALLS),
        _op("avg_pool2d", {"x": _image()},
            dict(_pool_args(), count_include_pad=Arg(FLAG, True)), routes=HOT, **POOL_CALLS),
        _op("max_avg_pool2d", {"x": _image()}, _pool_args(), routes=HOT, **POOL_CALLS),
        _op("stochastic_pool2d", {"x": _image(low=0.0)},
            dict(kernel_size=Arg(PAIR_SIZE, 2), stride=Arg(PAIR_SIZE, None, optional=True),
                 training=Arg(FLAG, True), rng=Arg(GENERATOR, SEEDED),
                 ceil_mode=Arg(FLAG, False)), routes=HOT,
            bad_calls=(dict(kernel_size=7),), bad_inputs=(("x", "values:negative"),),
            nonfinite=EITHER),
        _op("gated_max_ave_pool2d", {"x": _image(), "gate": _mask()},
            {"stride": Arg(PAIR_SIZE, None, optional=True)}, routes=HOT, **LEARNED_POOL_CALLS,
            bad_inputs=(("gate", (7, 7)), ("gate", (2, 7)), ("gate", (4,)), ("gate", (1, 2, 2)),
                        ("x", (2, 3, 1, 6)), ("x", (2, 3, 6)))),
        _op("tree_pool2d", {"x": _image(), "leaf1": _mask(), "leaf2": _mask(), "gate": _mask()},
            {"stride": Arg(PAIR_SIZE, None, optional=True)}, routes=HOT, **LEARNED_POOL_CALLS,
            bad_inputs=(("leaf1", (3, 3)), ("leaf2", (2, 3)), ("gate", (2, 1)), ("gate", (4,)),
                        ("leaf1", (1, 2, 2)), ("x", (2, 3, 6, 1)), ("x", (2, 3, 6)))),
        _op("eltwise_affine", {"x": _x((2, 3, 4), ranks=()), "slope": _vector(3),
                               "bias": _vector(3)},
            bad_inputs=(("slope", (4,)), ("bias", (2,)), ("bias", (1,)), ("slope", (3, 1)),
                        ("x", (3,)), ("x", (2, 4, 4)))),
        _op("global_avg_pool2d", {"x": _image()}),
        _op("spatial_pyramid_pool2d", {"x": _image()},
            {"levels": Arg(LEVELS, (1, 2)), "mode": Arg(choice("max", "avg"), "max")},
            memory=(lambda ram: dict(levels=(memory_side(ram, 2 * 3),)),)),
    ]
    for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        specs.append(_op(name, {"x": _image()}, {"output_size": Arg(OUTPUT_SIZE, (2, 3))},
                         memory=(lambda ram: dict(output_size=memory_side(ram, 2 * 3)),)))
    classes = dict(role="classes", classes=5, tensor=False, ranks=())
    specs += [
        _op("batch_norm", {"x": _image((4, 3, 5, 5)),
                           "running_mean": _vector(3, role="stats", tensor=False),
                           "running_var": _vector(3, low=0.5, high=2.0, role="stats",
                                                  tensor=False),
                           "weight": _vector(3), "bias": _vector(3)},
            {"training": Arg(FLAG, True), "momentum": Arg(REAL, 0.1),
             "eps": Arg(POSITIVE, 1e-5)}, routes=HOT, mutated=("running_mean", "running_var"),
            bad_inputs=(("running_mean", (4,)), ("weight", (2,)), ("x", (4, 2, 5, 5)))),
        _op("local_response_norm", {"x": _x((2, 6, 4, 4), ranks=(3, 5))},
            {"size": Arg(SIZE, 3), "alpha": Arg(REAL, 1e-2), "beta": Arg(REAL, 0.75),
             "k": Arg(REAL, 1.0), "alpha_over_size": Arg(FLAG, True)}, routes=HOT),
        _op("dropout", {"x": _x()}, {"p": Arg(PROBABILITY, 0.5), "training": Arg(FLAG, True),
                                     "rng": Arg(GENERATOR, SEEDED)}, routes=HOT),
        _op("softmax", {"x": _x((2, 5))}, {"axis": Arg(axis_kind(2), -1)}, routes=HOT),
        _op("log_softmax", {"x": _x((2, 5))}, {"axis": Arg(axis_kind(2), -1)}, routes=HOT),
        _op("cross_entropy", {"logits": _x((4, 5), ranks=()), "target": Input((4,), **classes)},
            {"label_smoothing": Arg(PROBABILITY, 0.1),
             "reduction": Arg(choice(*REDUCTIONS), "mean")}, routes=HOT,
            bad_inputs=(("target", (5,)), ("target", (4, 1)), ("logits", (4,)))),
        _op("nll_loss", {"log_probs": _x((4, 5), low=-3.0, high=-0.1, ranks=()),
                         "target": Input((4,), **classes)},
            {"reduction": Arg(choice(*REDUCTIONS), "mean")}, routes=HOT,
            bad_inputs=(("target", (5,)), ("target", (4, 1)))),
        _op("mse_loss", {"x": _x((2, 3), ranks=()), "y": _x((2, 3), ranks=())},
            {"reduction": Arg(choice(*REDUCTIONS), "mean")}, routes=HOT,
            bad_inputs=(("y", (3, 2)), ("y", (3,)))),
    ]
    return {spec.name: spec for spec in specs}


FUNCTIONAL = _functional_specs()


# --- layers ----------------------------------------------------------------------------------

@dataclasses.dataclass
class LayerSpec(Spec):
    """A layer: ``args`` are its constructor's, ``inputs`` its forward's. Its errors may name
    the layer or the functional ops it calls (``ops``). ``identity_in_eval``: in evaluation it
    gives its input back as it is (dropout), of any real dtype."""

    ops: tuple = ()
    identity_in_eval: bool = False

    def all_names(self):
        return (self.name,) + tuple(n for op in self.ops for n in (op, _snake_to_camel(op)))


def _layer(name, inputs, args=None, ops=(), **kw):
    from cnnlite import nn
    return LayerSpec(name, getattr(nn, name), inputs, args or {}, ops=ops, **kw)


def _layer_specs():
    x, image, classes = _x(), _image(), dict(role="classes", classes=5, tensor=False, ranks=())
    pool = _pool_args()
    learned_pool = dict(kernel_size=Arg(PAIR_SIZE, 2), stride=Arg(PAIR_SIZE, None, optional=True))
    specs = [_layer(name, {"x": x}, ops=(op,)) for name, op in
              (("ReLU", "relu"), ("SELU", "selu"),
               ("Sigmoid", "sigmoid"), ("Tanh", "tanh"), ("ScaledTanh", "scaled_tanh"),
               ("ShiftedSoftplus", "shifted_softplus"), ("ReLU6", "relu6"),
               ("Hardsigmoid", "hardsigmoid"), ("Hardswish", "hardswish"), ("SiLU", "silu"))]
    specs += [
        _layer("Flatten", {"x": x}, {"start_axis": Arg(axis_kind(3), 1),
                                     "end_axis": Arg(axis_kind(3), -1)}, ops=("flatten",),
               numeric=True,
               bad_calls=(dict(start_axis=2, end_axis=0),)),
        _layer("Dropout", {"x": x}, {"p": Arg(PROBABILITY, 0.5), "rng": Arg(GENERATOR, SEEDED)},
               ops=("dropout",), identity_in_eval=True),
        _layer("Conv2d", {"x": image},
               dict(in_channels=Arg(SIZE, 3), out_channels=Arg(SIZE, 4),
                    kernel_size=Arg(PAIR_SIZE, 3), stride=Arg(PAIR_SIZE, 1),
                    padding=Arg(PAIR_NON_NEGATIVE, 1), dilation=Arg(PAIR_SIZE, 1),
                    groups=Arg(SIZE, 1), bias=Arg(FLAG, True)), ops=("conv2d",),
               bad_calls=(dict(groups=2), dict(in_channels=4), dict(kernel_size=9),
                          dict(dilation=5)),
               memory=(lambda ram: dict(in_channels=memory_side(ram, 9, 4),
                                        out_channels=memory_side(ram, 9, 4)),)),
        _layer("Linear", {"x": _x((2, 5))}, dict(in_features=Arg(SIZE, 5),
                                                 out_features=Arg(SIZE, 3), bias=Arg(FLAG, True)),
               ops=("linear",), bad_calls=(dict(in_features=4),),
               memory=(lambda ram: dict(in_features=memory_side(ram, 1, 4),
                                        out_features=memory_side(ram, 1, 4)),)),
        _layer("MaxoutConv2d", {"x": image},
               dict(in_channels=Arg(SIZE, 3), out_channels=Arg(SIZE, 2),
                    kernel_size=Arg(PAIR_SIZE, 3), pieces=Arg(SIZE, 2)),
               ops=("conv2d", "maxout", "Conv2d", "Maxout")),
        _layer("MaxoutLinear", {"x": _x((2, 5), ranks=(3,))},
               dict(in_features=Arg(SIZE, 5), out_features=Arg(SIZE, 2), pieces=Arg(SIZE, 2),
                    bias=Arg(FLAG, True)), ops=("linear", "maxout", "Linear", "Maxout")),
        _layer("MaxPool2d", {"x": image}, pool, ops=("max_pool2d",), routes=HOT, **POOL_CALLS),
        _layer("AvgPool2d", {"x": image}, dict(pool, count_include_pad=Arg(FLAG, True)),
               ops=("avg_pool2d",), routes=HOT, **POOL_CALLS),
        _layer("MaxAvgPool2d", {"x": image}, pool, ops=("max_avg_pool2d",), routes=HOT,
               **POOL_CALLS),
        _layer("StochasticPool2d", {"x": _image(low=0.0)},
               dict(kernel_size=Arg(PAIR_SIZE, 2), stride=Arg(PAIR_SIZE, None, optional=True),
                    ceil_mode=Arg(FLAG, False), rng=Arg(GENERATOR, SEEDED)),
               ops=("stochastic_pool2d",), routes=HOT, nonfinite=EITHER),
        _layer("GatedMaxAvePool2d", {"x": image}, learned_pool, ops=("gated_max_ave_pool2d",),
               routes=HOT, **LEARNED_LAYER_CALLS),
        _layer("TreePoolMaxAve2d", {"x": image}, learned_pool, ops=("gated_max_ave_pool2d",),
               routes=HOT, **LEARNED_LAYER_CALLS),
        _layer("TreePool2d", {"x": image}, dict(learned_pool, std=Arg(NON_NEGATIVE_REAL, 1.0)),
               ops=("tree_pool2d",), routes=HOT, **LEARNED_LAYER_CALLS),
        _layer("EltwiseAffine", {"x": _x((2, 3, 4), ranks=())},
               {"channels": Arg(SIZE, 3), "channel_shared": Arg(FLAG, False)},
               ops=("eltwise_affine",), bad_calls=(dict(channels=4), dict(channels=2))),
        _layer("AdaptiveAvgPool2d", {"x": image}, {"output_size": Arg(OUTPUT_SIZE, (2, 3))},
               ops=("adaptive_avg_pool2d",)),
        _layer("AdaptiveMaxPool2d", {"x": image}, {"output_size": Arg(OUTPUT_SIZE, (2, 3))},
               ops=("adaptive_max_pool2d",)),
        _layer("GlobalAvgPool2d", {"x": image}, ops=("global_avg_pool2d",)),
        _layer("SpatialPyramidPool2d", {"x": image},
               {"levels": Arg(LEVELS, (1, 2)), "mode": Arg(choice("max", "avg"), "max")},
               ops=("spatial_pyramid_pool2d",)),
        _layer("LocalResponseNorm", {"x": _x((2, 6, 4, 4), ranks=(3, 5))},
               {"size": Arg(SIZE, 3), "alpha": Arg(REAL, 1e-2), "beta": Arg(REAL, 0.75),
                "k": Arg(REAL, 1.0), "alpha_over_size": Arg(FLAG, True)},
               ops=("local_response_norm",), routes=HOT),
        _layer("LeakyReLU", {"x": x}, {"negative_slope": Arg(REAL, 0.2)}, ops=("leaky_relu",)),
        _layer("RReLU", {"x": x}, {"lower": Arg(REAL, 0.1), "upper": Arg(REAL, 0.3),
                                   "rng": Arg(GENERATOR, SEEDED)}, ops=("rrelu",),
               bad_calls=(dict(lower=0.5, upper=0.1),)),
        _layer("PReLU", {"x": _image((2, 3, 4, 4))},
               {"num_parameters": Arg(SIZE, 3), "init": Arg(REAL, 0.25)}, ops=("prelu",),
               bad_calls=(dict(num_parameters=4),)),
        _layer("ELU", {"x": x}, {"alpha": Arg(REAL, 1.0)}, ops=("elu",)),
        _layer("Softplus", {"x": x}, {"beta": Arg(POSITIVE, 2.0), "threshold": Arg(REAL, 20.0)},
               ops=("softplus",)),
        _layer("Maxout", {"x": _x((2, 6, 3), ranks=(4,))}, {"pieces": Arg(SIZE, 2)},
               ops=("maxout",), bad_calls=(dict(pieces=4),)),
        _layer("APL", {"x": _x(ranks=())}, {"num_channels": Arg(SIZE, 3, optional=True),
                                            "hinges": Arg(SIZE, 2),
                                            "rng": Arg(GENERATOR, SEEDED)}, ops=("apl",),
               bad_calls=(dict(num_channels=4),)),
        _layer("Softmax", {"x": _x((2, 5), ranks=(3,))}, {"axis": Arg(axis_kind(2), 1)},
               ops=("softmax",)),
        _layer("LogSoftmax", {"x": _x((2, 5), ranks=(3,))}, {"axis": Arg(axis_kind(2), 1)},
               ops=("log_softmax",)),
        _layer("CrossEntropyLoss", {"logits": _x((4, 5), ranks=()),
                                    "target": Input((4,), **classes)},
               {"label_smoothing": Arg(PROBABILITY, 0.1),
                "reduction": Arg(choice(*REDUCTIONS), "mean")}, ops=("cross_entropy",)),
        _layer("NLLLoss", {"log_probs": _x((4, 5), low=-3.0, high=-0.1, ranks=()),
                           "target": Input((4,), **classes)},
               {"reduction": Arg(choice(*REDUCTIONS), "mean")}, ops=("nll_loss",)),
        _layer("MSELoss", {"x": _x((2, 3), ranks=()), "y": _x((2, 3), ranks=())},
               {"reduction": Arg(choice(*REDUCTIONS), "mean")}, ops=("mse_loss",),
               bad_inputs=(("y", (3, 2)),)),
    ]
    norm_args = dict(num_features=Arg(SIZE, 3), eps=Arg(POSITIVE, 1e-5),
                     momentum=Arg(REAL, 0.1, optional=True), affine=Arg(FLAG, True),
                     track_running_stats=Arg(FLAG, True), bias=Arg(FLAG, True))
    for name, shape in (("BatchNorm1d", (4, 3)), ("BatchNorm2d", (4, 3, 5, 5))):
        specs.append(_layer(name, {"x": _x(shape, ranks=())}, norm_args, ops=("batch_norm",),
                            routes=HOT, bad_calls=(dict(num_features=4),)))
    return {spec.name: spec for spec in specs}


LAYERS = _layer_specs()
#: Public classes of cnnlite.nn that are not layers, and why they have no layer spec.
NOT_LAYERS = {"Module": "the base class", "Parameter": "fuzzed through the optimisers",
              "Identity": "gives back whatever it is given, by design",
              "HookHandle": "returned by hooks", "LoadReport": "returned by load_state_dict",
              "StateDictError": "an error class", "LSUVLayer": "a record of lsuv_init",
              "LSUVReport": "a record of lsuv_init", "Sequential": "a container (CONTAINERS)",
              "ModuleList": "a container (CONTAINERS)", "ModuleDict": "a container (CONTAINERS)"}


# --- optimisers and learning-rate schedules --------------------------------------------------

class Missing:
    """Leaves the argument out of the call."""

    def __repr__(self):
        return "<left out>"


MISSING = Missing()
BETAS = Kind("pair of betas in [0, 1)",
             lambda v: ((1.0, 0.9), (0.9, 1.0), (-0.1, 0.9), (0.9,), 0.9, (NAN, 0.9), ("a", 0.9),
                        (True, 0.9), (0.9, 0.99, 0.999), None, "09", Opaque()),
             lambda v: (list(v), tuple(np.float64(b) for b in v)), lambda v: (np.array(v),))
#: Changes of the gradient an optimiser steps with, and what each must do.
GRAD_CHANGES = {"shape:(1,)": BAD, "shape:(3, 5)": BAD, "shape:(12,)": BAD, "shape:(4, 3)": BAD,
                "shape:()": BAD, "shape:(1, 4)": BAD, "dtype:complex64": BAD,
                "dtype:object": BAD, "dtype:float64": EITHER, "dtype:float16": EITHER,
                "dtype:int64": EITHER, "dtype:bool": EITHER, "layout:transposed": SAME,
                "layout:strided": SAME, "layout:reversed": SAME, "layout:broadcast": SAME,
                "layout:readonly": SAME, "values:nan": SAME, "form:list": EITHER,
                "form:tensor": EITHER}
PARAM_CHANGES = {"layout:transposed": SAME, "layout:strided": SAME, "layout:reversed": SAME,
                 "dtype:float64": EITHER, "dtype:float16": EITHER}
#: Wrong and right ways to hand the parameters to an optimiser.
PARAMS_FORMS = {"a module": BAD, "an empty list": BAD, "a NumPy array": BAD, "a number": BAD,
                "a nested list": BAD, "a group without params": BAD, "a repeated parameter": BAD,
                "a non-leaf tensor": BAD, "a string": BAD, "a generator": SAME, "a tuple": SAME}


def _optimizer(name, args, **kw):
    """An optimiser: ``args`` are its hyper-parameters; a case steps one (3, 4) parameter twice."""
    from cnnlite import optim
    return Spec(name, getattr(optim, name), {}, args, **kw)


def _optimizer_specs():
    lr = Arg(NON_NEGATIVE_REAL, 0.05)
    decay = Arg(NON_NEGATIVE_REAL, 0.01)
    return {spec.name: spec for spec in (
        _optimizer("SGD", dict(lr=lr, momentum=Arg(NON_NEGATIVE_REAL, 0.9),
                               dampening=Arg(REAL, 0.0), weight_decay=decay,
                               nesterov=Arg(FLAG, True)),
                   bad_calls=(dict(lr=MISSING), dict(nesterov=True, momentum=0.0),
                              dict(nesterov=True, dampening=0.5))),
        _optimizer("Adagrad", dict(lr=lr, lr_decay=Arg(NON_NEGATIVE_REAL, 0.01),
                                   weight_decay=decay,
                                   initial_accumulator_value=Arg(NON_NEGATIVE_REAL, 0.1),
                                   eps=Arg(NON_NEGATIVE_REAL, 1e-10))),
        _optimizer("RMSprop", dict(lr=lr, alpha=Arg(NON_NEGATIVE_REAL, 0.9),
                                   eps=Arg(NON_NEGATIVE_REAL, 1e-8), weight_decay=decay,
                                   momentum=Arg(NON_NEGATIVE_REAL, 0.5),
                                   centered=Arg(FLAG, True))),
        _optimizer("Adam", dict(lr=lr, betas=Arg(BETAS, (0.9, 0.99)),
                                eps=Arg(NON_NEGATIVE_REAL, 1e-8), weight_decay=decay)),
    )}


OPTIMIZERS = _optimizer_specs()
#: The other spellings of the optimisers: the same classes.
OPTIMIZER_ALIASES = {"AdaGrad": "Adagrad", "RMSProp": "RMSprop"}


class TheOptimizer:
    """Stands for the optimiser the schedule is attached to."""

    def __repr__(self):
        return "<the optimizer>"


THE_OPTIMIZER = TheOptimizer()
MILESTONES = Kind("increasing iterations", lambda v: ((-1,), (1.5,), ("a",), (True,), "abc",
                                                      None, 5, (NAN,), Opaque()),
                  lambda v: (list(v), np.array(v), tuple(np.int64(m) for m in v)))
POWER = Kind("poly power", lambda v: ("cubic", NAN, INF, -1.0, True, None, 1j, "", Opaque()),
             lambda v: ("linear", np.float64(v), 1))
SCHEDULER_TARGET = Kind("optimizer or schedule",
                        lambda v: (None, 5, "sgd", [1], Opaque(), THE_PARAMS, THE_MODULE))


class TheParams:
    """Stands for the optimiser's list of parameters (not the optimiser)."""

    def __repr__(self):
        return "<a list of parameters>"


class TheModule:
    """Stands for a model (not an optimiser)."""

    def __repr__(self):
        return "<a model>"


THE_PARAMS, THE_MODULE = TheParams(), TheModule()
SCHEDULE_TARGET = Arg(SCHEDULER_TARGET, THE_OPTIMIZER)


def _schedule(name, args, **kw):
    from cnnlite.optim import lr_scheduler
    return Spec(name, getattr(lr_scheduler, name), {}, dict(optimizer=SCHEDULE_TARGET, **args),
                **kw)


def _linear_warmup():
    from cnnlite.optim import lr_scheduler
    return lr_scheduler.LinearWarmup


def _schedule_specs():
    gamma = Arg(NON_NEGATIVE_REAL, 0.5)
    return {spec.name: spec for spec in (
        _schedule("StepLR", dict(step_size=Arg(ITERATIONS, 2), gamma=gamma)),
        _schedule("MultiStepLR", dict(milestones=Arg(MILESTONES, (2, 4)), gamma=gamma)),
        _schedule("ExponentialLR", dict(gamma=gamma)),
        _schedule("PolyLR", dict(max_iter=Arg(ITERATIONS, 5), power=Arg(POWER, 1.0))),
        _schedule("CosineAnnealingLR", dict(T_max=Arg(ITERATIONS, 5),
                                            eta_min=Arg(NON_NEGATIVE_REAL, 0.001))),
        _schedule("LinearCosineLR", dict(decay_steps=Arg(ITERATIONS, 5),
                                         num_periods=Arg(NON_NEGATIVE_REAL, 0.5),
                                         alpha=Arg(NON_NEGATIVE_REAL, 0.0),
                                         beta=Arg(NON_NEGATIVE_REAL, 0.001))),
        Spec("LinearWarmup", _linear_warmup(), {}, dict(scheduler=SCHEDULE_TARGET,
                                            warmup_iters=Arg(WARMUP, 3),
                                            start_factor=Arg(PROBABILITY, 0.1))),
    )}


SCHEDULES = _schedule_specs()


# --- gradients from hooks and assignments, state dicts, containers ---------------------------

#: Gradients handed to autograd in place of the right one (a float64 (3, 4) array), and what
#: each must do where a gradient is taken as it is (hooks, ``.grad``).
GRADIENT_CHANGES = {"shape:(4, 3)": BAD, "shape:(12,)": BAD, "shape:(1,)": BAD, "shape:()": BAD,
                    "shape:(3, 4, 1)": BAD, "shape:(1, 4)": BAD, "dtype:float32": BAD,
                    "dtype:complex128": BAD, "dtype:int64": BAD, "dtype:bool": BAD,
                    "dtype:object": BAD, "form:list": BAD, "form:string": BAD,
                    "layout:transposed": SAME, "layout:strided": SAME, "layout:broadcast": SAME,
                    "form:tensor": SAME, "form:none": SAME}
#: ``y.backward(grad)`` converts ``grad`` to y's dtype (documented), so there a float32 or an
#: integer gradient is read as its value, and a list as an array.
ROOT_GRADIENT_CHANGES = dict(GRADIENT_CHANGES, **{"dtype:float32": EITHER, "dtype:int64": EITHER,
                                                  "dtype:bool": EITHER, "form:list": SAME})
del ROOT_GRADIENT_CHANGES["form:none"]  # y.backward() of a non-scalar: PyTorch's RuntimeError
GRADIENT_SPECS = {
    "Tensor.register_hook (leaf)": GRADIENT_CHANGES,
    "Tensor.register_hook (non-leaf)": GRADIENT_CHANGES,
    # ``.grad = g`` keeps any floating width (the optimisers convert it to the parameter's, as
    # a float64 gradient of a float32 weight must work); hooks must keep the dtype.
    "Tensor.grad assignment": dict(GRADIENT_CHANGES, **{"form:none": SAME,
                                                        "dtype:float32": EITHER}),
    "Tensor.backward(grad)": ROOT_GRADIENT_CHANGES,
}
GRADIENT_NAMES = ("grad", "gradient", "hook", "register_hook", "backward")
#: Changes of one entry of a state dict, and what ``load_state_dict`` must do with each.
STATE_CHANGES = {"shape:wrong": BAD, "dtype:complex128": BAD, "dtype:object": BAD,
                 "dtype:str": BAD, "form:none": BAD, "form:string": BAD, "key:missing": BAD,
                 "key:unexpected": BAD, "dtype:float16": SAME, "dtype:float64": SAME,
                 "dtype:int64": SAME, "layout:transposed": SAME, "layout:broadcast": SAME,
                 "form:list": SAME, "form:tensor": SAME, "values:nan": SAME}
#: Wrong entries for the containers, and the right ones.
CONTAINER_ENTRIES = {"a function": BAD, "a string": BAD, "None": BAD, "a Parameter": BAD,
                     "a class": BAD, "a number": BAD, "a module": SAME}
CONTAINER_KEYS = {"1.5": BAD, "": BAD, "a.b": BAD, 1: BAD, None: BAD, "ok": SAME}


# --- judging outcomes ---------------------------------------------------------------------------

#: What ``Function.apply`` appends to an error from inside NumPy: the message is NumPy's own.
NUMPY_MESSAGE = re.compile(r"\(input shapes: [^()]*(\([^()]*\)[^()]*)*\)\s*$")


class Failure(Exception):
    """A case did not do what it must; the message says what happened instead."""


def _short(value, limit=160):
    text = repr(value) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def describe_error(error):
    return f"{type(error).__name__}: {_short(str(error), 300)}"


CLEAR_ERRORS = (ValueError, TypeError, LookupError)


def unclear(error, names, accepted=CLEAR_ERRORS, numpy_words=False):
    """Why ``error`` is not a clear error about one of ``names`` (None when it is).

    NumPy's own message is clear where the op is NumPy's operation itself (``numpy_words``:
    indexing, reshaping, reducing), not where it comes from the op's plumbing (a reshape
    inside a convolution the user never asked for)."""
    from_cnnlite = type(error).__module__.startswith("cnnlite")
    if not (from_cnnlite or isinstance(error, accepted)):
        return f"not a clear error: {describe_error(error)}"
    message = str(error)
    if not names_one_of(message, names):
        return f"the message does not name {names[0]}: {describe_error(error)}"
    if NUMPY_MESSAGE.search(message) and not numpy_words:
        return f"NumPy's own message, passed through: {describe_error(error)}"
    return None


def check_error(error, names, accepted=CLEAR_ERRORS, numpy_words=False):
    problem = unclear(error, names, accepted, numpy_words)
    if problem:
        raise Failure(problem)


def _summary(array):
    array = np.asarray(array)
    if array.dtype.kind not in "biuf" or array.size == 0:
        return f"{array.dtype}{list(array.shape)}"
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    values = (f" in [{finite.min():.4g}, {finite.max():.4g}]" if finite.size else " all non-finite")
    return f"{array.dtype}{list(array.shape)}{values}"


def tolerance(dtype):
    return {2: 2e-2, 4: 2e-4}.get(np.dtype(dtype).itemsize, 1e-7) \
        if np.dtype(dtype).kind == "f" else 1e-9


def compare_arrays(what, got, want, dtype=None):
    """Raise Failure when ``got`` differs from the reference ``want`` beyond the rounding of
    ``dtype`` (got's own by default, or the coarser); NaN must meet NaN, infinities their
    equal."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise Failure(f"{what}: shape {got.shape}, the reference has {want.shape}")
    if got.dtype.kind not in "biuf" or want.dtype.kind not in "biuf":
        raise Failure(f"{what}: dtype {got.dtype} (reference {want.dtype})")
    if got.size == 0:
        return
    g, w = got.astype(np.float64), want.astype(np.float64)
    tol = max(tolerance(got.dtype), tolerance(dtype or got.dtype))
    finite = np.isfinite(w)
    scale = max(1.0, float(np.abs(w[finite]).max())) if finite.any() else 1.0
    ok = np.isclose(g, w, rtol=tol, atol=tol * scale, equal_nan=True) | (g == w)
    if not ok.all():
        index = np.unravel_index(int(np.argmin(ok)), ok.shape)
        raise Failure(f"{what}: {int((~ok).sum())} of {ok.size} values differ from the reference "
                      f"on a contiguous float64 copy, e.g. at {tuple(int(i) for i in index)}: "
                      f"{g[index]!r} instead of {w[index]!r}")


@dataclasses.dataclass
class Result:
    """What a call gave: its outputs (arrays), and gradients by name with the dtype and shape
    of what they belong to."""

    outputs: list
    grads: dict = dataclasses.field(default_factory=dict)
    owners: dict = dataclasses.field(default_factory=dict)
    mutated: int = 0  # the last outputs are inputs changed in place, not results


def compare_results(got: Result, want: Result, float_outputs=False, allow_half=False):
    """``got`` equals the reference ``want``: outputs, and gradients of the tensors that
    required grad (with their owner's shape and dtype). ``allow_half``: an input was float16,
    so results (and gradients of other inputs, through it) are compared at its rounding."""
    rounding = np.float16 if allow_half else None
    if len(got.outputs) != len(want.outputs):
        raise Failure(f"{len(got.outputs)} outputs, the reference has {len(want.outputs)}")
    for i, (g, w) in enumerate(zip(got.outputs, want.outputs)):
        g = np.asarray(g)
        if float_outputs and i < len(got.outputs) - got.mutated and g.dtype.kind in "biuc":
            raise Failure(f"output {i} has dtype {g.dtype}: a floating op must give floats")
        if float_outputs and g.dtype == np.float16 and not allow_half:
            raise Failure(f"output {i} has dtype float16 from inputs that are not float16")
        compare_arrays(f"output {i}", g, w, rounding)
    for name, grad in got.grads.items():
        dtype, shape = got.owners[name]
        grad = np.asarray(grad)
        if grad.shape != shape or grad.dtype != dtype:
            raise Failure(f"the gradient of {name} is {grad.dtype}{list(grad.shape)}, {name} is "
                          f"{dtype}{list(shape)}")
        if name in want.grads:
            compare_arrays(f"the gradient of {name}", grad, want.grads[name], rounding)
        elif want.grads:
            raise Failure(f"a gradient for {name}, which the reference does not give")
    missing = [n for n in want.grads if n not in got.grads and n in got.owners]
    if missing:
        raise Failure(f"no gradient for {', '.join(missing)}")


def attempt(fn):
    try:
        return fn()
    except Exception as error:  # the judge decides what the error means
        return error


def judge(expectation, names, got, reference, accepted=CLEAR_ERRORS, numpy_words=False,
          **compare):
    """Check the outcome ``got`` (a Result or the exception raised) of a changed call."""
    if isinstance(got, Exception):
        if expectation in (SAME, EMPTY):
            raise Failure(f"refused a valid input: {describe_error(got)}")
        check_error(got, names, accepted, numpy_words)
        return "refused clearly"
    if expectation == BAD:
        raise Failure("accepted: returned " + ", ".join(_summary(o) for o in got.outputs[:3]))
    if expectation == ANY:
        return "computed"
    want = attempt(reference)
    if isinstance(want, Exception):
        raise Failure(f"the reference call (contiguous float64 inputs) raised "
                      f"{describe_error(want)}")
    compare_results(got, want, **compare)
    return "computed as the reference"


# --- running op and layer cases -------------------------------------------------------------

@contextlib.contextmanager
def route(name):
    """Run on the default kernels, the reference loops, or with a conv algorithm forced."""
    from cnnlite import backend
    if name == "reference":
        with backend.use_reference():
            yield
    elif name in ("winograd", "im2col"):
        with backend.conv_algorithm(name):
            yield
    else:
        yield


def upstream(shape, dtype):
    """The gradient sent back from an output: random, the same for every call of that shape."""
    return np.random.default_rng(1).standard_normal(shape).astype(dtype)


def _backward(outputs):
    import cnnlite as cl
    total = None
    for y in outputs:
        if isinstance(y, cl.Tensor) and y.requires_grad and y.dtype.kind == "f":
            term = (y * cl.Tensor(upstream(y.shape, y.dtype))).sum()
            total = term if total is None else total + term
    if total is not None:
        total.backward()


def _as_list(result):
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _array(value):
    return np.array(getattr(value, "data", value))


def _wrap(value, how):
    """An input as the op gets it: a Tensor (requiring grad when it is floating) or raw."""
    import cnnlite as cl
    if how == "tensor":
        return cl.Tensor(value, requires_grad=value.dtype.kind == "f")
    return value


def evaluate(spec, values, wraps, args, layer_dtype=None, mode="train"):
    """Call ``spec`` on the inputs ``values`` (wrapped as ``wraps`` says) with ``args``; run
    the backward pass of every floating output; return a Result."""
    import cnnlite as cl
    inputs = {name: _wrap(values[name], wraps[name]) for name in spec.inputs}
    args = {k: fresh(v) for k, v in args.items() if not isinstance(v, Missing)}
    owners = {n: t for n, t in inputs.items() if isinstance(t, cl.Tensor) and t.requires_grad}
    if isinstance(spec, LayerSpec):
        cl.nn.init.manual_seed(0)
        layer = spec.fn(**args)
        layer.train(mode == "train")
        if layer_dtype is not None:
            layer.to(dtype=layer_dtype)
        outputs = _as_list(layer(*inputs.values()))
        owners.update({f"parameter {n}": p for n, p in layer.named_parameters()
                       if p.requires_grad})
    else:
        outputs = _as_list(spec.run(list(inputs.values()), args))
    _backward(outputs)
    arrays = [_array(y) for y in outputs] + [_array(values[n]) for n in spec.mutated]
    return Result(arrays, {n: t.grad for n, t in owners.items() if t.grad is not None},
                  {n: (t.dtype, t.shape) for n, t in owners.items()}, len(spec.mutated))


def _input_expectation(spec, inp, label, numeric):
    what, _, how = label.partition(":")
    if what == "dtype":
        if inp.role == "classes":
            return SAME if how in ("uint8", "int16", "int32", "int64") else BAD
        if inp.role == "stats" and how in INT_DTYPES:
            return BAD  # a running mean cannot be kept in integers
        if inp.role == "mask":
            return BAD if how in REFUSED_DTYPES else EITHER
        return dtype_expectation(label, numeric)
    if what == "values":
        if how in ("nan", "inf"):
            return spec.nonfinite
        return BAD if how in ("too_large", "negative") else SAME
    if what == "rank":
        rank = len(inp.shape) + (1 if how == "+1" else -1)
        return SAME if inp.ranks is None or rank in inp.ranks else BAD
    if what == "form" and (how == "list" and inp.role == "stats"
                           or isinstance(spec, LayerSpec) and inp.tensor):
        return EITHER  # a list cannot be updated in place; layers may insist on Tensors
    return SAME


def change_arguments(args: dict, kind: str, change) -> str:
    """Apply an "arg" change (name, value, expectation) or a "call" change (overrides,
    expectation) to a call's arguments in place; the change's expectation."""
    if kind == "arg":
        name, value, expectation = change
        args[name] = value
    else:
        overrides, expectation = change
        args.update(overrides)
    return expectation


def prepare_op_case(spec, case, numeric, layer=False):
    """The changed call of an op or layer case and its reference: (expectation, values, wraps,
    args, a function that runs the reference call)."""
    rng = np.random.default_rng(0)
    values = {name: inp.make(rng) for name, inp in spec.inputs.items()}
    if layer:
        values = {n: v.astype(np.float32) if spec.inputs[n].role == "float" else v
                  for n, v in values.items()}
    wraps = {name: "tensor" if inp.tensor else "raw" for name, inp in spec.inputs.items()}
    args = {name: arg.value for name, arg in spec.args.items()}
    reference_args = dict(args)
    kind, *change = case["change"]
    if kind in ("arg", "call"):
        expectation = change_arguments(args, kind, change)
    elif kind == "memory":
        args.update(spec.memory[change[0]](RAM_BYTES))
        expectation = BAD
    elif kind == "shape":
        name, shape = change
        inp = spec.inputs[name]
        if isinstance(shape, str):
            values[name] = change_array(values[name], inp, shape)
        else:
            values[name] = dataclasses.replace(inp, shape=shape).make(rng)
        expectation = BAD
    elif kind == "empty":
        for name, inp in spec.inputs.items():
            if inp.batch is not None:
                values[name] = np.take(values[name], [], axis=inp.batch)
        expectation = spec.empty
    elif kind == "zero":
        name, axis = change
        values[name] = np.take(values[name], [], axis=axis)
        expectation = EITHER
    elif kind == "inputs":  # every float input to one dtype: an all-integer convolution
        (label,) = change
        expectation = dtype_expectation(label, numeric)
        for name, inp in spec.inputs.items():
            if inp.role == "float":
                values[name] = change_array(values[name], inp, label)
                if values[name].dtype.kind in "OU":
                    wraps[name] = "raw"
    elif kind == "input":
        name, label = change
        inp = spec.inputs[name]
        expectation = _input_expectation(spec, inp, label, numeric)
        what, _, how = label.partition(":")
        if what == "form":
            values[name] = values[name].tolist() if how == "list" else values[name]
            wraps[name] = "raw" if how in ("list", "ndarray") else "tensor"
        else:
            values[name] = change_array(values[name], inp, label)
            if values[name].dtype.kind in "OU":
                wraps[name] = "raw"
    else:
        raise ValueError(f"unknown change {kind!r}")
    reference_wraps = {name: "tensor" if inp.tensor else "raw"
                       for name, inp in spec.inputs.items()}
    if kind == "input" and case["change"][2] == "form:tensor":
        reference_wraps[case["change"][1]] = "tensor"

    # Copied now: the call under test may change inputs in place (running statistics).
    inputs = attempt(lambda: {n: canonical(v, spec.inputs[n]) for n, v in values.items()})

    def reference():
        if isinstance(inputs, Exception):
            raise inputs
        return evaluate(spec, inputs, reference_wraps, reference_args,
                        layer_dtype=np.float64 if layer else None, mode=case.get("mode", "train"))

    return expectation, values, wraps, args, reference


def run_op_case(spec, case, layer=False):
    mode = case.get("mode", "train")
    numeric = spec.numeric or layer and mode == "eval" and spec.identity_in_eval
    expectation, values, wraps, args, reference = prepare_op_case(spec, case, numeric, layer)
    changed = case["change"]
    with route(case.get("route", "default")):
        got = attempt(lambda: evaluate(spec, values, wraps, args, mode=mode))
        return judge(expectation, spec.all_names(), got, reference,
                     numpy_words=numeric and not layer, float_outputs=not numeric,
                     allow_half=any(isinstance(c, str) and c == "dtype:float16" for c in changed))


# --- running optimiser, schedule, gradient, state-dict and container cases --------------------

def _gradient_value(label, right):
    """The value ``label`` puts in place of the right gradient ``right``."""
    import cnnlite as cl
    what, _, how = label.partition(":")
    if what == "shape":
        return np.ones(ast.literal_eval(how), right.dtype)
    if what == "dtype":
        if how == "object":
            return right.astype(object)
        if how in ("int64", "bool"):
            return (np.rint(right) if how == "int64" else right > 0).astype(how)
        return right.astype(how)
    if what == "form":
        return {"list": right.tolist(), "string": "gradient", "none": None,
                "tensor": cl.Tensor(right)}[how]
    return change_array(right, Input(right.shape), label)


def _params_argument(form, param):
    import cnnlite as cl
    return {"a module": lambda: cl.nn.Linear(2, 2), "an empty list": lambda: [],
            "a NumPy array": lambda: [np.zeros(3)], "a number": lambda: 0.1,
            "a nested list": lambda: [[param]], "a group without params": lambda: [{"lr": 0.1}],
            "a repeated parameter": lambda: [param, param],
            "a non-leaf tensor": lambda: [param * 2], "a string": lambda: "params",
            "a generator": lambda: (p for p in [param]), "a tuple": lambda: (param,)}[form]()


def run_optimizer_case(spec, case):
    import cnnlite as cl
    rng = np.random.default_rng(0)
    param = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2)]
    args = {name: arg.value for name, arg in spec.args.items()}
    reference_args, params_form = dict(args), None
    kind, *change = case["change"]
    if kind in ("arg", "call"):
        expectation = change_arguments(args, kind, change)
    elif kind == "grad":
        (label,) = change
        expectation = GRAD_CHANGES[label]
        grads = [_gradient_value(label, g) for g in grads]
    elif kind == "param":
        (label,) = change
        expectation = PARAM_CHANGES[label]
        param = change_array(param, Input(param.shape), label)
    elif kind == "params":
        (params_form,) = change
        expectation = PARAMS_FORMS[params_form]
    elif kind == "huge":
        param, grads, expectation = np.zeros(10**8, np.float32), [np.ones(1, np.float32)], BAD
    else:
        raise ValueError(f"unknown change {kind!r}")

    def steps(param, grads, args, form):
        p = cl.nn.Parameter(param)
        kwargs = {k: v for k, v in args.items() if not isinstance(v, Missing)}
        optimizer = spec.fn(_params_argument(form, p) if form else [p], **kwargs)
        for g in grads:
            p.grad = g
            optimizer.step()
        return Result([np.array(p.data)])

    # Copied now: the step under test changes the parameter's array in place.
    reference_param = np.array(param, np.float64) if expectation != BAD else None
    got = attempt(lambda: steps(param, grads, args, params_form))
    reference = lambda: steps(reference_param,
                              [np.array(getattr(g, "data", g), np.float64) for g in grads],
                              reference_args, None)
    return judge(expectation, spec.all_names() + ("grad",), got, reference)


def run_schedule_case(spec, case):
    import cnnlite as cl
    kind, *change = case["change"]
    args = {name: arg.value for name, arg in spec.args.items()}
    reference_args = dict(args)
    if kind == "arg":
        name, value, expectation = change
        args[name] = value
    else:
        raise ValueError(f"unknown change {kind!r}")

    def lrs(args):
        model = cl.nn.Linear(2, 2)
        optimizer = cl.optim.SGD(model.parameters(), lr=0.1)
        stand_ins = {TheOptimizer: optimizer, TheParams: list(model.parameters()),
                     TheModule: model}
        schedule = spec.fn(**{k: stand_ins[type(v)] if type(v) in stand_ins else v
                              for k, v in args.items()})
        values = [schedule.get_last_lr()[0]]
        for _ in range(6):
            schedule.step()
            values.append(schedule.get_last_lr()[0])
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise Failure(f"accepted, and the learning rates became {values}")
        return Result([np.array(values)])

    got = attempt(lambda: lrs(args))
    if isinstance(got, Failure):
        raise got
    return judge(expectation, spec.all_names(), got, lambda: lrs(reference_args))


def run_gradient_case(name, case):
    import cnnlite as cl
    (label,) = case["change"]
    expectation = GRADIENT_SPECS[name][label]
    rng = np.random.default_rng(0)
    x0, weights, earlier = (rng.standard_normal((3, 4)) for _ in range(3))

    def run(replace):
        x = cl.tensor(x0.copy(), requires_grad=True)
        if name == "Tensor.register_hook (leaf)":
            x.register_hook(lambda g: replace(g))
            (x * cl.tensor(weights)).sum().backward()
        elif name == "Tensor.register_hook (non-leaf)":
            h = x * 2.0
            h.register_hook(lambda g: replace(g))
            (h * cl.tensor(weights)).sum().backward()
        elif name == "Tensor.grad assignment":
            x.grad = replace(earlier)
            (x * cl.tensor(weights)).sum().backward()
        else:
            (x * 2.0).backward(replace(weights))
        return Result([np.array(x.grad)])

    def changed(g):
        value = _gradient_value(label, np.asarray(g))
        if label == "form:none" and name == "Tensor.backward(grad)":
            return None
        return value

    def contiguous(g):
        value = changed(g)
        return None if value is None else np.array(getattr(value, "data", value), np.float64)

    got = attempt(lambda: run(changed))
    return judge(expectation, GRADIENT_NAMES + ("Tensor",), got, lambda: run(contiguous))


def _small_model():
    import cnnlite as cl
    cl.nn.init.manual_seed(0)
    return cl.nn.Sequential(cl.nn.Linear(4, 3), cl.nn.BatchNorm1d(3), cl.nn.Linear(3, 2))


def _same_values(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(((a == b) | (np.isnan(a) & np.isnan(b))).all()
                                       if a.dtype.kind == "f" else (a == b).all())


def run_state_dict_case(case):
    """``load_state_dict`` with one entry changed: refused with nothing written, or loaded."""
    key_index, label = case["change"]
    expectation = STATE_CHANGES[label]
    donor = _small_model()
    for p in donor.parameters():
        p.data[...] = np.random.default_rng(2).standard_normal(p.shape)
    state = {k: np.array(v) for k, v in donor.state_dict().items()}
    keys = list(state)
    key = keys[key_index % len(keys)]
    if state[key].dtype.kind in "iu" and label in ("values:nan", "dtype:float16",
                                                    "dtype:float64"):
        # An integer entry (num_batches_tracked): NaN has no integer value, and a float may be
        # refused or read as the integer it holds.
        expectation = BAD if label == "values:nan" else EITHER
    what, _, how = label.partition(":")
    if what == "key":
        state = {(k + ".typo" if k == key and how == "unexpected" else k): v
                 for k, v in state.items() if not (k == key and how == "missing")}
        if how == "unexpected":
            state[key] = donor.state_dict()[key]
    elif what == "shape":
        state[key] = np.zeros(state[key].shape + (2,), state[key].dtype)
    elif what == "form" or what == "dtype" and how in ("object", "str", "complex128"):
        state[key] = _gradient_value(label, state[key]) if what == "form" or how != "str" \
            else state[key].astype(str)
    elif label == "dtype:int64":
        state[key] = np.rint(state[key] * 3).astype(np.int64)
    else:
        state[key] = change_array(state[key], Input(state[key].shape), label)

    def load(entries):
        model = _small_model()
        before = {k: np.array(v) for k, v in model.state_dict().items()}
        try:
            model.load_state_dict(entries)
        except Exception as error:
            after = model.state_dict()
            changed = [k for k in before if not _same_values(before[k], after[k])]
            if changed:
                raise Failure(f"refused ({describe_error(error)}) after writing "
                              f"{', '.join(changed)}: the load is not all or nothing") from None
            raise
        return Result([np.array(v) for v in model.state_dict().values()])

    got = attempt(lambda: load(state))
    if isinstance(got, Failure):
        raise got
    integer = {k for k, v in donor.state_dict().items() if np.asarray(v).dtype.kind in "iu"}
    reference = {k: np.array(getattr(v, "data", v), np.int64 if k in integer else np.float64)
                 for k, v in state.items() if v is not None and not isinstance(v, str)}
    return judge(expectation, ("load_state_dict", "Sequential", key), got,
                 lambda: load(reference))


def run_container_case(case):
    import cnnlite as cl
    container, entry_or_key = case["change"]
    linear = cl.nn.Linear(2, 2)
    entries = {"a function": len, "a string": "relu", "None": None,
               "a Parameter": cl.nn.Parameter(np.zeros(2)), "a class": cl.nn.ReLU, "a number": 3,
               "a module": cl.nn.ReLU()}
    if container == "ModuleDict keys":
        expectation = CONTAINER_KEYS[entry_or_key]
        build = lambda: cl.nn.ModuleDict({"first": linear, entry_or_key: cl.nn.ReLU()})
        names = ("ModuleDict",)
    else:
        expectation = CONTAINER_ENTRIES[entry_or_key]
        entry = entries[entry_or_key]
        build = {"Sequential": lambda: cl.nn.Sequential(linear, entry),
                 "ModuleList": lambda: cl.nn.ModuleList([linear, entry]),
                 "ModuleDict": lambda: cl.nn.ModuleDict({"first": linear, "second": entry})
                 }[container]
        names = (container,)

    def use():
        module = build()
        return Result([np.array(len(list(module.parameters())))])

    return judge(expectation, names, attempt(use), use)


# --- data: the loader, the data sets and the transforms ----------------------------------------

SEED = Kind("seed", lambda v: (-1, -2**63, 1.5, "0", True, NAN, 1j, [0], Opaque()), _int_forms)
DEVICE = Kind("device", lambda v: ("gpu", "CPU", "", "cpu ", 0, None, True, Opaque()))
LOADER = Spec("DataLoader", None, {}, dict(
    batch_size=Arg(SIZE, 3), shuffle=Arg(FLAG, True), seed=Arg(SEED, 0, optional=True),
    drop_last=Arg(FLAG, False), transform=Arg(CALLABLE, None, optional=True),
    device=Arg(DEVICE, "cpu"), prefetch=Arg(NON_NEGATIVE, 1),
    collate_fn=Arg(CALLABLE, None, optional=True)))
#: Changes of the data set under the loader: the images' dtype and layout, its length.
LOADER_DATA = {"dtype:uint8": SAME, "dtype:float64": SAME, "dtype:float16": SAME,
               "dtype:bool": SAME, "dtype:int32": SAME, "layout:transposed": SAME,
               "layout:strided": SAME, "layout:broadcast": SAME, "length:0": SAME,
               "length:1": SAME, "labels:uint8": SAME, "labels:int32": SAME}


def _images(n=7):
    return np.random.default_rng(0).uniform(0, 3, (n, 1, 4, 4)), np.arange(n) % 3


def run_loader_case(case):
    import cnnlite as cl
    kind, *change = case["change"]
    args = {name: arg.value for name, arg in LOADER.args.items()}
    reference_args = dict(args)
    images, labels = _images()
    if kind == "arg":
        name, value, expectation = change
        args[name] = value
    else:
        (label,) = change
        expectation = LOADER_DATA[label]
        what, _, how = label.partition(":")
        if what == "length":
            images, labels = images[:int(how)], labels[:int(how)]
        elif what == "labels":
            labels = labels.astype(how)
        else:
            images = change_array(images, Input(images.shape, low=0, high=3), label)

    def batches(images, labels, args):
        dataset = cl.data.TensorDataset(images, labels)
        loader = cl.data.DataLoader(dataset, **{k: fresh(v) for k, v in args.items()})
        outputs = [len(loader)]
        for _ in range(2):
            for batch in loader:
                outputs += [np.array(t.data) for t in batch]
        return Result(outputs)

    reference_data = np.array(images, np.float64), np.array(labels, np.int64)
    got = attempt(lambda: batches(images, labels, args))
    return judge(expectation, ("DataLoader", "collate", "default_collate"), got,
                 lambda: batches(*reference_data, reference_args))


INDICES = Kind("indices into 5 samples",
               lambda v: ((5,), (-6,), (0.5,), (True, False), ((0,),), "0", None, 5, (2**63,),
                          Opaque()),
               lambda v: (list(v), np.array(v), tuple(np.int64(i) for i in v)),
               lambda v: ((-1, 0),))
LENGTHS = Kind("split lengths of 5 samples",
               lambda v: ((3, 3), (-1, 6), (0.5, 0.6), (NAN, 1.0), (1.5, 3.5), (True, 4),
                          (), "32", None, (INF, 0.0), Opaque()),
               lambda v: (list(v), (np.int64(3), 2), (0.6, 0.4)))
FRACTION = Kind("fraction in (0, 1)", lambda v: (0.0, 1.0, -0.1, 1.5, NAN, INF, True, "0.2",
                                                 None, 1j, Opaque()), _real_forms)
ROOT = Kind("folder", lambda v: (None, 5, 1.5, Opaque()))
#: Data sets with their arguments; the file-based ones read a small fake copy of their files.
DATASETS = {
    "TensorDataset": Spec("TensorDataset", None, {}, dict(transform=Arg(CALLABLE, None,
                                                                        optional=True))),
    "Subset": Spec("Subset", None, {}, dict(indices=Arg(INDICES, (0, 2, 4)))),
    "random_split": Spec("random_split", None, {}, dict(lengths=Arg(LENGTHS, (3, 2)),
                                                        seed=Arg(SEED, 0))),
    "Digits": Spec("Digits", None, {}, dict(train=Arg(FLAG, True),
                                            test_fraction=Arg(FRACTION, 0.2), seed=Arg(SEED, 0),
                                            transform=Arg(CALLABLE, None, optional=True))),
    "MNIST": Spec("MNIST", None, {}, dict(root=Arg(ROOT, "."), train=Arg(FLAG, True),
                                          transform=Arg(CALLABLE, None, optional=True))),
    "CIFAR10": Spec("CIFAR10", None, {}, dict(root=Arg(ROOT, "."), train=Arg(FLAG, True))),
    "CIFAR100": Spec("CIFAR100", None, {}, dict(root=Arg(ROOT, "."), train=Arg(FLAG, True),
                                                label_type=Arg(choice("fine", "coarse"),
                                                               "fine"))),
    "ImageFolder": Spec("ImageFolder", None, {}, dict(root=Arg(ROOT, "."),
                                                      mode=Arg(choice("RGB", "L"), "RGB"))),
}
#: What the TensorDataset is given instead of its images or labels.
TENSOR_DATASET_DATA = {"labels:float64": BAD, "labels:bool": BAD, "labels:complex64": BAD,
                       "labels:(5, 1)": BAD, "labels:(4,)": BAD, "labels:uint8": SAME,
                       "labels:int32": SAME, "labels:list": SAME, "images:()": BAD,
                       "images:object": BAD, "images:str": BAD, "images:complex64": BAD,
                       "images:uint8": SAME, "images:float16": SAME, "images:transposed": SAME,
                       "images:tensor": SAME}
#: Damage done to one file of a data set on disk; each must be refused naming the file.
FILE_DAMAGE = ("garbage", "empty", "truncated", "wrong_kind")
DATASET_FILES = {"MNIST": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte"),
                 "CIFAR10": ("data_batch_1", "data_batch_5", "batches.meta"),
                 "CIFAR100": ("train", "meta"),
                 "ImageFolder": ("a/0.png", "b/1.png")}


def _write_mnist(root, damage=None, name=None):
    images = np.random.default_rng(0).integers(0, 255, (6, 4, 4), dtype=np.uint8)
    contents = {"train-images-idx3-ubyte.gz": (2051, images),
                "train-labels-idx1-ubyte": (2049, np.arange(6, dtype=np.uint8) % 3)}
    for file_name, (magic, array) in contents.items():
        header = struct.pack(f">{array.ndim}I", *array.shape)
        data = struct.pack(">I", magic) + header + array.tobytes()
        wrong_kind = struct.pack(">I", 4099 - magic) + header + array.tobytes()
        if file_name.endswith(".gz"):
            data, wrong_kind = gzip.compress(data), gzip.compress(wrong_kind)
        if file_name == name:
            data = _damaged(data, damage, wrong_kind)
        (root / file_name).write_bytes(data)


def _damaged(data, damage, wrong_kind):
    return {"garbage": bytes(range(256)) * 3, "empty": b"", "truncated": data[:len(data) // 2],
            "wrong_kind": wrong_kind}[damage]


def _write_cifar(root, folder, files, labels_key, damage=None, name=None):
    folder = root / folder
    folder.mkdir()
    for file_name in files:
        if file_name in ("batches.meta", "meta"):
            names = [f"class {i}".encode() for i in range(100)]
            entry = {b"label_names": names[:10], b"fine_label_names": names,
                     b"coarse_label_names": names[:20]}
        else:
            data = np.random.default_rng(0).integers(0, 255, (4, 3072), dtype=np.uint8)
            entry = {b"data": data, labels_key: [0, 1, 0, 1], b"coarse_labels": [0, 0, 0, 0]}
        content = pickle.dumps(entry)
        if file_name == name:
            content = _damaged(content, damage, wrong_kind=pickle.dumps([1, 2, 3]))
        (folder / file_name).write_bytes(content)


def _write_image_folder(root, damage=None, name=None):
    from PIL import Image
    for file_name in DATASET_FILES["ImageFolder"]:
        path = root / file_name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((5, 6, 3), 100, np.uint8)).save(path)
        if file_name == name:
            content = path.read_bytes()
            path.write_bytes(_damaged(content, damage, wrong_kind=b"GIF89a" + content[6:]))


def _dataset_items(dataset):
    items = [dataset[i] for i in range(len(dataset))] if hasattr(dataset, "__getitem__") \
        else dataset
    return Result([len(items)] + [np.array(part, np.float64) for item in items for part in item])


def run_dataset_case(name, case):
    import cnnlite as cl
    data = cl.data
    spec = DATASETS[name]
    kind, *change = case["change"]
    args = {k: arg.value for k, arg in spec.args.items()}
    reference_args, expectation, names = dict(args), None, (name,)
    damage = damaged_file = None
    images, labels = np.random.default_rng(0).uniform(0, 1, (5, 1, 2, 2)), np.arange(5) % 2
    if kind == "arg":
        arg_name, value, expectation = change
        args[arg_name] = value
    elif kind == "file":
        damaged_file, damage = change
        expectation, names = BAD, (Path(damaged_file).name, name)
    elif kind == "data":
        (label,) = change
        expectation = TENSOR_DATASET_DATA[label]
        part, _, how = label.partition(":")
        value = labels if part == "labels" else images
        if how.startswith("("):
            value = np.resize(value, ast.literal_eval(how))
        elif how == "list":
            value = value.tolist()
        elif how == "tensor":
            value = cl.tensor(value)
        elif how == "transposed":
            value = change_array(value, Input(value.shape), "layout:transposed")
        else:
            value = value.astype(how)
        images, labels = (images, value) if part == "labels" else (value, labels)
    else:
        raise ValueError(f"unknown change {kind!r}")

    def build(args, images, labels, damage):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            if name == "MNIST":
                _write_mnist(root, damage, damaged_file)
            elif name in ("CIFAR10", "CIFAR100"):
                files = ("train", "meta") if name == "CIFAR100" else \
                    tuple(f"data_batch_{i}" for i in range(1, 6)) + ("batches.meta",)
                _write_cifar(root, "cifar-100-python" if name == "CIFAR100" else
                             "cifar-10-batches-py", files,
                             b"fine_labels" if name == "CIFAR100" else b"labels", damage,
                             damaged_file)
            elif name == "ImageFolder":
                _write_image_folder(root, damage, damaged_file)
            if args.get("root") == ".":
                args = dict(args, root=root)
            if name == "TensorDataset":
                dataset = data.TensorDataset(images, labels, **args)
            elif name == "Subset":
                dataset = data.Subset(data.TensorDataset(images, labels), **args)
            elif name == "random_split":
                parts = data.random_split(data.TensorDataset(images, labels), **args)
                return Result([np.array(len(p)) for p in parts] + [
                    np.array(x, np.float64) for p in parts for item in p for x in item])
            else:
                dataset = getattr(data, name)(**args)
            return _dataset_items(dataset)

    got = attempt(lambda: build(args, images, labels, damage))
    return judge(expectation, names, got, accepted=CLEAR_ERRORS + (OSError,), reference=
                 lambda: build(reference_args, np.array(getattr(images, "data", images),
                                                        np.float64),
                               np.array(getattr(labels, "data", labels), np.int64), None))


def _transform(name):
    from cnnlite.data import transforms
    return getattr(transforms, name)


REALS = Kind("sequence of reals", lambda v: ((NAN,), ("a",), None, "0.5", (), Opaque(), (1j,)),
             lambda v: (list(v), np.array(v)))
POSITIVE_REALS = Kind("sequence of reals > 0", lambda v: REALS.bad(v) + ((0.0,), (-1.0,)),
                      lambda v: (list(v), np.array(v)))
TRANSFORMS = {
    "ToFloat": dict(scale=Arg(REAL, 0.5)),
    "Normalize": dict(mean=Arg(REALS, (0.5,)), std=Arg(POSITIVE_REALS, (0.25,))),
    "CaffeTransform": dict(scale=Arg(REAL, 0.04), mean_bgr=Arg(REALS, (104.0, 117.0, 124.0)),
                           input_order=Arg(choice("rgb", "bgr"), "rgb")),
    "RandomCrop": dict(size=Arg(PAIR_SIZE, 3), padding=Arg(NON_NEGATIVE, 1),
                       rng=Arg(GENERATOR, SEEDED)),
    "RandomHorizontalFlip": dict(p=Arg(PROBABILITY, 0.5), rng=Arg(GENERATOR, SEEDED)),
    "CenterCrop": dict(size=Arg(PAIR_SIZE, 3)),
    "ResizeShortSide": dict(size=Arg(SIZE, 7)),
}
#: Images given to a transform instead of a (3, 5, 6) uint8 one.
TRANSFORM_IMAGES = {"dtype:float64": SAME, "dtype:float32": SAME, "layout:transposed": SAME,
                    "layout:reversed": SAME, "rank:-1": BAD, "rank:+1": BAD,
                    "dtype:complex64": BAD, "dtype:object": BAD}


def run_transform_case(name, case):
    kind, *change = case["change"]
    arg_specs = TRANSFORMS[name]
    args = {k: arg.value for k, arg in arg_specs.items()}
    reference_args = dict(args)
    image = np.random.default_rng(0).integers(0, 255, (3, 5, 6)).astype(np.uint8)
    if kind == "arg":
        arg_name, value, expectation = change
        args[arg_name] = value
    else:
        (label,) = change
        expectation = TRANSFORM_IMAGES[label]
        image = change_array(image, Input(image.shape, low=0, high=255), label)

    def apply(args, image):
        transform = _transform(name)(**{k: fresh(v) for k, v in args.items()})
        return Result([np.array(transform(image))])

    reference_image = attempt(lambda: np.array(image, np.float64))
    return judge(expectation, (name,), attempt(lambda: apply(args, image)),
                 lambda: apply(reference_args, reference_image))


# --- the training loop and the command line ----------------------------------------------------

#: Wrong arguments of ``fit`` and ``evaluate``, and their empty loaders.
TRAIN_CHANGES = {"evaluate on an empty loader": BAD, "fit on an empty loader": BAD,
                 "fit with epochs=-1": BAD, "fit with epochs=1.5": BAD,
                 "fit with epochs=True": BAD, "fit with epochs='2'": BAD,
                 "fit with schedule_per='batch'": BAD, "fit with an empty validation loader": BAD}


def run_train_case(case):
    import cnnlite as cl
    from cnnlite.train import evaluate as evaluate_model, fit
    (label,) = case["change"]
    images, labels = _images(6)

    def loader(n):
        return cl.data.DataLoader(cl.data.TensorDataset(images[:n].astype(np.float32),
                                                        labels[:n]), batch_size=3)

    def run():
        cl.nn.init.manual_seed(0)
        model = cl.nn.Sequential(cl.nn.Flatten(), cl.nn.Linear(16, 3))
        optimizer = cl.optim.SGD(model.parameters(), lr=0.1)
        kwargs = dict(epochs=1, progress=False, log=lambda line: None)
        if label.startswith("evaluate"):
            metrics = evaluate_model(model, loader(0))
            return Result([np.array(metrics.loss), np.array(metrics.top1)])
        if "epochs=" in label:
            kwargs["epochs"] = ast.literal_eval(label.split("epochs=")[1])
        if "schedule_per" in label:
            kwargs["schedule_per"] = "batch"
        train, val = loader(0 if "empty loader" in label else 6), None
        if "validation" in label:
            val = loader(0)
        history = fit(model, train, val, optimizer, **kwargs)
        return Result([np.array(history.train_loss, np.float64)])

    names = ("evaluate",) if label.startswith("evaluate") else ("fit", "epochs", "schedule_per")
    return judge(TRAIN_CHANGES[label], names + ("loader", "DataLoader"), attempt(run), run)


#: Each option of ``cnnlite train`` / ``cnnlite demo`` and values the user might mistype.
CLI_OPTIONS = {
    "--epochs": ("0", "-1", "1.5", "x", "", str(2**63)),
    "--lr": ("-1", "nan", "inf", "-inf", "x", ""),
    "--batch-size": ("0", "-1", "1.5", "x", str(2**63)),
    "--momentum": ("-0.5", "nan", "inf", "x"),
    "--weight-decay": ("-1", "nan", "inf", "x"),
    "--val-fraction": ("1", "1.5", "-0.1", "nan", "inf", "x"),
    "--seed": ("-1", "1.5", "x", ""),
    "--threads": ("0", "-1", "1.5", "x", str(2**63)),
    "--model": ("nope", "", "LENET5"),
    "--dataset": ("nope", "MNIST"),
    "--optimizer": ("nope",),
    "--schedule": ("nope",),
    "--data-root": ("missing folder",),
    "--resume": ("missing file", "garbage file"),
}
DEMO_OPTIONS = {"--epochs": ("0", "-1", "x", str(2**63)), "--seed": ("-1", "x")}
#: Whole command lines that are mistakes, and the word their error must show.
CLI_LINES = {("trian",): ("trian",), ("train", "--epochz", "1"): ("--epochz",),
             ("train", "--epochs"): ("--epochs",), ("demo", "extra"): ("extra",),
             ("models", "--lr", "1"): ("--lr",), ("--lr", "0.1"): ("--lr", "command")}


class ReachedTraining(Exception):
    """The command went on to train with a wrong argument."""


def run_cli_case(case):
    """``cnnlite.cli.main(argv)`` must end a user error with one line on stderr and status 2,
    before any training starts (``fit`` is replaced by a function that says it was reached;
    ``--resume`` keeps the real one, since the checkpoint is read there)."""
    import cnnlite.cli as cli
    import cnnlite.train as train
    kind, *change = case["change"]
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--out", str(Path(tmp) / "run"), "--no-progress"]
        if kind == "line":
            (argv,) = change
            argv, names = list(argv), CLI_LINES[tuple(argv)]
        else:
            command, option, value = change
            names = (option, option.strip("-"), option.strip("-").replace("-", "_"),
                     option.strip("-").replace("-", " "))
            if value == "missing folder":
                value = str(Path(tmp) / "no such folder")
            elif value in ("missing file", "garbage file"):
                path = Path(tmp) / "checkpoint.npz"
                if value == "garbage file":
                    path.write_bytes(b"not a checkpoint" * 10)
                value = str(path)
            extra = ["--dataset", "mnist"] if option == "--data-root" else []
            if command == "train":
                base += ["--dataset", "digits", "--epochs", "1", "--batch-size", "16",
                         "--threads", "1"]
            argv = [command] + base + extra + [f"{option}={value}"]
            names += (value,) if option in ("--data-root", "--resume") else ()
        stdout, stderr = io.StringIO(), io.StringIO()
        patched = [] if kind != "line" and change[1] == "--resume" else [
            (module, "fit") for module in (cli, train) if hasattr(module, "fit")]
        originals = [getattr(module, attr) for module, attr in patched]

        def reached(*args, **kwargs):
            raise ReachedTraining()

        try:
            for module, attr in patched:
                setattr(module, attr, reached)
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    status = cli.main(argv)
                except SystemExit as exit_:
                    status = exit_.code
        except ReachedTraining:
            raise Failure(f"cnnlite {' '.join(argv[:1] + argv[-2:])}: training started") from None
        except Exception as error:
            raise Failure(f"cnnlite {' '.join(argv)}: a traceback: "
                          f"{describe_error(error)}") from None
        finally:
            for (module, attr), original in zip(patched, originals):
                setattr(module, attr, original)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    shown = " | ".join(lines)[:400]
    if status != 2:
        raise Failure(f"cnnlite {' '.join(argv)}: exit status {status!r}, not 2; stderr: {shown}")
    if len(lines) != 1 or "Traceback" in stderr.getvalue():
        raise Failure(f"cnnlite {' '.join(argv)}: {len(lines)} lines on stderr, not one: {shown}")
    if not names_one_of(lines[0], names):
        raise Failure(f"cnnlite {' '.join(argv)}: the message does not name {names[0]}: {shown}")
    return "refused clearly"


# --- drawing cases ---------------------------------------------------------------------------

def _generated(kind, value):
    """Hypothesis strategies for more wrong values of ``kind`` than the listed ones."""
    from hypothesis import strategies as st
    floats, text = st.floats(), st.text(max_size=4)
    non_positive = st.integers(max_value=0) | st.integers(min_value=MAX_SIZE + 1)
    negative = st.integers(max_value=-1) | st.integers(min_value=MAX_SIZE + 1)
    not_finite = st.sampled_from((NAN, INF, -INF))
    more = {"size": non_positive | floats, "non-negative int": negative | floats,
            "int or pair of ints >= 1": st.tuples(st.integers(1, 3), non_positive | floats),
            "int or pair of ints >= 0": st.tuples(st.integers(0, 1), negative | floats),
            "finite real": not_finite | text,
            "real > 0": st.floats(max_value=0.0) | not_finite,
            "real >= 0": st.floats(max_value=0.0, exclude_max=True) | not_finite,
            "probability": st.floats(min_value=1.0, exclude_min=True)
            | st.floats(max_value=0.0, exclude_max=True),
            "bool": st.integers() | text,
            "seed": st.integers(max_value=-1) | floats,
            "iterations": st.integers(max_value=0) | floats,
            "non-negative iterations": st.integers(max_value=-1) | floats}
    if kind.name.startswith("axis of"):
        ndim = int(kind.name.split()[-1].rstrip("-d"))
        return st.integers(min_value=ndim) | st.integers(max_value=-ndim - 1) | floats
    if kind.name.startswith("one of"):
        options = ast.literal_eval(kind.name[len("one of "):])
        return text.filter(lambda t: t not in options)
    return more.get(kind.name)


def _arg_slots(args):
    from hypothesis import strategies as st
    slots = []
    for name, arg in args.items():
        bad = st.sampled_from(arg.bad_values())
        generated = _generated(arg.kind, arg.value)
        if generated is not None:
            bad = bad | generated.filter(lambda v: not (arg.optional and v is None))
        slots.append(bad.map(lambda v, name=name: ("arg", name, v, BAD)))
        for values, expectation in ((arg.same_values(), SAME), (arg.either_values(), EITHER)):
            if values:
                slots.append(st.sampled_from(values).map(
                    lambda v, name=name, e=expectation: ("arg", name, v, e)))
    return slots


def _op_slots(spec):
    from hypothesis import strategies as st
    slots = _arg_slots(spec.args)
    for calls, expectation in ((spec.bad_calls, BAD), (spec.same_calls, SAME)):
        if calls:
            slots.append(st.sampled_from(calls).map(lambda c, e=expectation: ("call", c, e)))
    for name, inp in spec.inputs.items():
        slots.append(st.sampled_from(input_changes(inp)).map(lambda l, n=name: ("input", n, l)))
        axes = [a for a in range(len(inp.shape)) if a != inp.batch]
        if axes and inp.role != "classes":
            slots.append(st.sampled_from(axes).map(lambda a, n=name: ("zero", n, a)))
    if sum(inp.role == "float" for inp in spec.inputs.values()) > 1:
        slots.append(st.sampled_from(ALL_INPUTS_DTYPES).map(lambda label: ("inputs", label)))
    if spec.bad_inputs:
        slots.append(st.sampled_from(spec.bad_inputs).map(lambda b: ("shape",) + tuple(b)))
    if any(inp.batch is not None for inp in spec.inputs.values()):
        slots.append(st.just(("empty",)))
    if spec.memory:
        slots.append(st.sampled_from(range(len(spec.memory))).map(lambda i: ("memory", i)))
    return slots


def _labels(labels, *prefix):
    from hypothesis import strategies as st
    return st.sampled_from(list(labels)).map(lambda label: prefix + (label,))


def case_strategy(family, name):
    """A hypothesis strategy for the cases of one spec: first which thing to change (each
    argument and input is one slot, drawn with equal chance), then how."""
    from hypothesis import strategies as st
    extra = {}
    if family in ("functional", "layer"):
        spec = (FUNCTIONAL if family == "functional" else LAYERS)[name]
        slots = _op_slots(spec)
        extra["route"] = st.sampled_from(spec.routes)
        if family == "layer":
            extra["mode"] = st.sampled_from(("train", "eval"))
    elif family == "optimizer":
        spec = OPTIMIZERS[name]
        slots = _arg_slots(spec.args) + [
            st.sampled_from(spec.bad_calls).map(lambda c: ("call", c, BAD))] * bool(
            spec.bad_calls) + [_labels(GRAD_CHANGES, "grad"), _labels(PARAM_CHANGES, "param"),
                               _labels(PARAMS_FORMS, "params"), st.just(("huge",))]
    elif family == "schedule":
        slots = _arg_slots(SCHEDULES[name].args)
    elif family == "gradient":
        slots = [_labels(GRADIENT_SPECS[name])]
    elif family == "state_dict":
        slots = [st.tuples(st.integers(0, 7), st.sampled_from(list(STATE_CHANGES)))]
    elif family == "container":
        slots = [_labels(CONTAINER_KEYS if name == "ModuleDict keys" else CONTAINER_ENTRIES,
                         name)]
    elif family == "loader":
        slots = _arg_slots(LOADER.args) + [_labels(LOADER_DATA, "data")]
    elif family == "dataset":
        slots = _arg_slots(DATASETS[name].args)
        if name in DATASET_FILES:
            slots.append(st.tuples(st.just("file"), st.sampled_from(DATASET_FILES[name]),
                                   st.sampled_from(FILE_DAMAGE)))
        if name == "TensorDataset":
            slots.append(_labels(TENSOR_DATASET_DATA, "data"))
    elif family == "transform":
        slots = _arg_slots(TRANSFORMS[name]) + [_labels(TRANSFORM_IMAGES, "image")]
    elif family == "train":
        slots = [_labels(TRAIN_CHANGES)]
    elif family == "cli":
        options = CLI_OPTIONS if name == "train" else DEMO_OPTIONS
        slots = [st.sampled_from([(o, v) for o, values in options.items() for v in values])
                 .map(lambda ov: ("option", name, *ov))]
        if name == "train":
            slots.append(st.sampled_from(list(CLI_LINES)).map(lambda argv: ("line", argv)))
    else:
        raise ValueError(f"unknown family {family!r}")
    return st.fixed_dictionaries(dict(family=st.just(family), spec=st.just(name),
                                      change=st.one_of(*slots), **extra))


#: Every family and its specs, as the tests walk them.
FAMILIES = {
    "functional": sorted(FUNCTIONAL), "layer": sorted(LAYERS), "optimizer": sorted(OPTIMIZERS),
    "schedule": sorted(SCHEDULES), "gradient": sorted(GRADIENT_SPECS),
    "state_dict": ["Module.load_state_dict"], "container": ["Sequential", "ModuleList",
                                                            "ModuleDict", "ModuleDict keys"],
    "loader": ["DataLoader"], "dataset": sorted(DATASETS), "transform": sorted(TRANSFORMS),
    "train": ["fit and evaluate"], "cli": ["train", "demo"],
}


# --- the worker process ------------------------------------------------------------------------

def run_case(case):
    """Run one case; return what it did (a short text) or raise Failure."""
    family, name = case["family"], case["spec"]
    if family == "functional":
        return run_op_case(FUNCTIONAL[name], case)
    if family == "layer":
        return run_op_case(LAYERS[name], case, layer=True)
    runners = {"optimizer": lambda: run_optimizer_case(OPTIMIZERS[name], case),
               "schedule": lambda: run_schedule_case(SCHEDULES[name], case),
               "gradient": lambda: run_gradient_case(name, case),
               "state_dict": lambda: run_state_dict_case(case),
               "container": lambda: run_container_case(case),
               "loader": lambda: run_loader_case(case),
               "dataset": lambda: run_dataset_case(name, case),
               "transform": lambda: run_transform_case(name, case),
               "train": lambda: run_train_case(case),
               "cli": lambda: run_cli_case(case)}
    return runners[family]()


#: Seconds a case may run before the worker prints where it is (the parent waits longer).
CASE_SECONDS = 60


def send(stream, value):
    data = pickle.dumps(value)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def receive(stream):
    header = stream.read(8)
    if len(header) < 8:
        return None
    return pickle.loads(stream.read(int.from_bytes(header, "little")))


def serve():
    """The worker: read cases from stdin, answer ``("ok", what)`` or ``("fail", why)`` on the
    original stdout (the ops' own prints go to stderr), until stdin closes."""
    import faulthandler
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = WORKER_ADDRESS_SPACE if hard == resource.RLIM_INFINITY else min(hard,
                                                                            WORKER_ADDRESS_SPACE)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    faulthandler.enable()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    import cnnlite  # noqa: F401  (imported once, before the first case)
    while (case := receive(sys.stdin.buffer)) is not None:
        faulthandler.dump_traceback_later(CASE_SECONDS)
        try:
            answer = ("ok", run_case(case))
        except Failure as failure:
            answer = ("fail", str(failure))
        except BaseException as error:  # a bug of the case itself, or an escaped exit
            answer = ("fail", f"raised outside the call under test: {describe_error(error)}\n"
                              f"{traceback.format_exc(limit=-4)}")
        faulthandler.cancel_dump_traceback_later()
        send(answers, answer)


if __name__ == "__main__":
    # Run as the ``fuzz_cases`` module, so that pickled cases name the same classes.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fuzz_cases
    fuzz_cases.serve()
