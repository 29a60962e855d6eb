"""Compiling kernels/*.cu for the GPU, once, and handing out their kernels.

Every ``.cu`` file in ``kernels/`` is one topic; its kernels are templates over the element
type T and are compiled for ``float`` and ``double`` (``name_expressions``), so that a float64
gradient check runs on the GPU as well; those of kernels/im2col.cu also for 32- and 64-bit
index arithmetic (``INDEX_TYPES``). ``cupy.RawModule`` compiles a file with NVRTC the
first time one of its kernels is asked for; ``compiled_module`` keeps the result for the life
of the process (and cupy keeps the binary in its on-disk cache for the next one).

The kernels can also run on the CPU, through the harness in ``kernels/host``
(``cnnlite.cuda.host``): then ``kernel_function`` hands out the CPU build of the same kernel,
and the launchers in this package run unchanged on NumPy arrays.
"""
from __future__ import annotations

import contextvars
import functools
import importlib.resources
import re
from pathlib import Path

import numpy as np

from cnnlite import backend
from cnnlite.errors import ArgumentTypeError, OpError

#: The kernels of each source file kernels/<topic>.cu, each a template over T.
KERNEL_SOURCES = {
    "im2col": ["im2col", "col2im"],
    "pool": ["max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
             "avg_pool2d_backward", "stochastic_pool2d_sample",
             "probability_weighted_pool2d_forward", "probability_weighted_window_statistics",
             "probability_weighted_pool2d_backward"],
    "lrn": ["lrn_forward", "lrn_backward"],
    "batchnorm": ["batch_norm_partial_statistics", "batch_norm_statistics", "batch_norm_forward",
                  "batch_norm_partial_sums", "batch_norm_grad_statistics", "batch_norm_backward"],
    "activation": ["relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
                   "elu_forward", "elu_backward", "sigmoid_forward", "sigmoid_backward",
                   "tanh_forward", "tanh_backward"],
    "dropout": ["dropout_forward"],
    "softmax": ["softmax_forward", "log_softmax_forward", "softmax_backward",
                "log_softmax_backward", "cross_entropy_forward", "cross_entropy_backward",
                "softmax_forward_strided", "log_softmax_forward_strided",
                "softmax_backward_strided", "log_softmax_backward_strided",
                "cross_entropy_forward_strided"],
    "optim": ["sgd_momentum_update", "adam_update"],
    "generalized_pool": ["gated_max_ave_pool2d_forward", "gated_max_ave_window_coefficients",
                         "gated_max_ave_pool2d_backward", "tree_pool2d_forward",
                         "tree_window_coefficients", "tree_pool2d_backward",
                         "window_mask_gradients"],
}

#: The C type each template is instantiated with, per NumPy dtype.
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: The topics whose kernels are templates over the type of their index arithmetic as well,
#: ``template <typename T, typename Index>``, and the index types each is compiled for: a 32-bit
#: division takes a few instructions, a 64-bit one a subroutine of about 80 (kernels/im2col.cu).
INDEX_TYPES = {"im2col": ("int", "long long")}

#: Threads per block: a multiple of the 32-thread warp, and the size of the kernels'
#: ``__shared__`` arrays (MAX_BLOCK_THREADS in kernels/common.cuh).
MAX_BLOCK_THREADS = 256

#: At most this many blocks per launch; the grid-stride loops cover the rest. 4096 blocks of
#: 256 threads keep every multiprocessor of the largest GPUs busy several times over.
MAX_BLOCKS = 4096

NVRTC_OPTIONS = ("-std=c++17",)

_COMMON_HEADER = "common.cuh"
_INCLUDE_LINE = re.compile(r'^#include "common\.cuh"$', re.MULTILINE)

#: The CPU harness's kernels, while ``cnnlite.cuda.host.run_on_cpu`` is active.
host_kernels = contextvars.ContextVar("cnnlite_cuda_host_kernels", default=None)


def kernel_folder():
    """The folder of the .cu files: package data when installed, ``kernels/`` in a checkout."""
    try:
        return importlib.resources.files("cnnlite.kernels")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "kernels"


def source(topic: str) -> str:
    """The text of kernels/<topic>.cu, with kernels/common.cuh pasted in place of its
    ``#include``: NVRTC needs no include path then, and cupy's compile cache, which is keyed
    by the source text, sees every line that is compiled."""
    folder = kernel_folder()
    common = folder.joinpath(_COMMON_HEADER).read_text(encoding="utf-8")
    text = folder.joinpath(f"{topic}.cu").read_text(encoding="utf-8")
    return _INCLUDE_LINE.sub(lambda _: common, text)


def name_expression(name: str, c_type: str, index_type: str | None = None) -> str:
    """How a kernel's instantiation is named in C++: ``relu_forward<float>``, or
    ``im2col<float, int>`` for a kernel that also takes an index type."""
    template_arguments = c_type if index_type is None else f"{c_type}, {index_type}"
    return f"{name}<{template_arguments}>"


def name_expressions(topic: str) -> list[str]:
    """Every instantiation of every kernel of kernels/<topic>.cu: ``name<float>`` and
    ``name<double>``, times the index types of INDEX_TYPES for the topics listed there."""
    return [name_expression(name, c_type, index_type)
            for name in KERNEL_SOURCES[topic] for c_type in C_TYPES.values()
            for index_type in INDEX_TYPES.get(topic, (None,))]


@functools.cache
def compiled_module(topic: str):
    """kernels/<topic>.cu as a ``cupy.RawModule``, built once per process."""
    cupy = backend.cupy_module()
    return cupy.RawModule(code=source(topic), options=NVRTC_OPTIONS,
                          name_expressions=name_expressions(topic))


@functools.cache
def _gpu_function(topic: str, expression: str):
    return compiled_module(topic).get_function(expression)


def kernel_function(topic: str, name: str, dtype, like, index_type: str | None = None):
    """Kernel ``name<T>`` of kernels/<topic>.cu for arrays of ``dtype`` living where ``like``
    lives: the GPU build for a cupy array, the CPU harness's build for a NumPy array while
    ``cnnlite.cuda.host.run_on_cpu`` is active. Called as ``f(grid, block, args)``. The
    kernels of an INDEX_TYPES topic also take the ``index_type``: ``name<T, index_type>``."""
    c_type = C_TYPES[np.dtype(dtype)]
    if backend.is_cupy_array(like):
        return _gpu_function(topic, name_expression(name, c_type, index_type))
    host = host_kernels.get()
    if host is None:
        raise backend.DeviceError(
            f"{name}: the CUDA kernels run on cupy arrays, got a {type(like).__name__} "
            f"(cnnlite.cuda.host.run_on_cpu runs them on the CPU, for stepping through)")
    return host.function(name, c_type, index_type)


def float_dtype(op: str, *arrays):
    """The kernel type T for ``arrays``: that of the first one, which must be float32/64."""
    if not hasattr(arrays[0], "dtype"):
        raise ArgumentTypeError(f"{op}: the CUDA kernels take arrays, got "
                                f"{type(arrays[0]).__name__}")
    dtype = np.dtype(arrays[0].dtype)
    if dtype not in C_TYPES:
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in arrays)
        raise OpError(f"{op}: the CUDA kernels take float32 or float64 arrays, got {shapes}")
    return dtype


def launch(kernel, work_items: int, args: tuple, threads: int = MAX_BLOCK_THREADS):
    """Run ``kernel`` over ``work_items`` items: one thread per item up to MAX_BLOCKS blocks
    of ``threads`` threads; the kernels' grid-stride loops take the rest. Nothing runs for 0
    items (a grid of 0 blocks is an error)."""
    if work_items <= 0:
        return
    blocks = min(-(-work_items // threads), MAX_BLOCKS)
    kernel((blocks,), (threads,), args)


def launch_per_row(kernel, rows: int, row_length: int, args: tuple):
    """Run a block-per-row kernel (a reduction along each row, see kernels/common.cuh):
    up to MAX_BLOCKS blocks, each with the smallest power of two >= row_length threads, at
    least a warp (32) and at most MAX_BLOCK_THREADS."""
    if rows <= 0:
        return
    threads = 32
    while threads < row_length and threads < MAX_BLOCK_THREADS:
        threads *= 2
    kernel((min(rows, MAX_BLOCKS),), (threads,), args)


def int64s(*values) -> tuple:
    """Kernel arguments of C type ``long long``. A kernel reads each argument as the bytes of
    its parameter type, so every scalar goes in as a NumPy scalar of exactly that type."""
    return tuple(np.int64(v) for v in values)
