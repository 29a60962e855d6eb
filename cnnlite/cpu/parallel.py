"""When the numba kernels run on all cores, and when on the calling thread alone.

Waking numba's worker threads costs tens of microseconds on an idle machine and milliseconds on
a busy one: more than the work itself for small arrays. A gradient check calls the kernels
thousands of times on tiny arrays, so below ``SERIAL_BELOW`` elements a kernel runs serially.

Where numba cannot run on TBB (``cnnlite.tbb``), every kernel runs serially unless the user asked
for a number of threads with ``cnnlite.backend.cpu_threads``: on numba's OpenMP fallback, idle
workers spin after each loop and take a core from BLAS, and one thread is faster than two.

The other way round, OpenBLAS's idle workers spin after each product and would take a core from
the numba loop that follows: a parallel kernel first sends them away
(``cnnlite.cpu.blas_threads``).
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from cnnlite import backend, tbb
from cnnlite.cpu import blas_threads

SERIAL_BELOW = 1 << 15


def elements(*args) -> int:
    """The work of a memory-bound kernel: the elements of all its arrays together."""
    return sum(a.size for a in args if isinstance(a, np.ndarray))


def serial_when_small(kernel, c_order=True, work=elements):
    """Wrap a compiled kernel: C-contiguous arrays in, one thread for small work.

    Strided arrays (a transposed input, the broadcast gradient of ``.sum()``) are copied to C
    order first, so numba compiles each kernel once per dtype rather than once per layout.
    ``c_order=False`` passes the arrays as they are, for kernels whose callers lay out the
    arrays on purpose (``cnnlite.cpu.winograd``).

    ``work(*args)`` says how long the kernel runs, counted in array elements that a
    memory-bound kernel reads or writes in that time: ``elements`` by default. A kernel that
    computes much more per element (the direct convolution) gives its own count, so that it
    runs in parallel and parks OpenBLAS's workers when it takes long, however few its elements.
    """
    @functools.wraps(kernel)
    def run(*args):
        if c_order:
            args = [np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a for a in args]
        amount = work(*args)
        if amount >= SERIAL_BELOW and (tbb.parallel_by_default()
                                          or backend.requested_cpu_threads() is not None):
            if amount >= blas_threads.PARK_FROM:
                blas_threads.park()  # OpenBLAS's spinning workers would take numba's cores
            return kernel(*args)
        threads = numba.get_num_threads()
        numba.set_num_threads(1)  # per calling thread: other threads keep their setting
        try:
            return kernel(*args)
        finally:
            numba.set_num_threads(threads)
    return run
