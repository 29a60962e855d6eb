"""OpenBLAS's idle workers sent away before numba's parallel loops, so that both do not share
the cores.

Two thread pools work in a cnnlite process: OpenBLAS's, for the matrix products (im2col,
Winograd's 16 products, 1x1 layers, linear layers), and numba's (TBB), for every other kernel.
After a product OpenBLAS's workers do not sleep: they spin, waiting for the next one, for up
to 2^28 cycles (about 0.1 s). A training step alternates products and numba loops every few
milliseconds, so the workers never stop spinning, and on 2 cores a spinning worker takes half
of the core that numba's loop needs. Measured on 2 cores (ResNet-20, batch 64, training step,
interleaved runs): 745-763 ms of user CPU time per step with the workers spinning, 388-558 ms
with them sent away before each numba loop; DenseNet-121's inference 1907-2166 -> 1190-1486 ms.

OpenBLAS reads how long its workers spin (``OPENBLAS_THREAD_TIMEOUT``) once, when NumPy loads
it, before cnnlite is imported. What it offers at run time is ``blas_thread_shutdown_``: the
workers end, and the next product starts them again (a thread start, tens of microseconds).
``park()`` calls it; ``cnnlite.cpu.parallel`` calls ``park()`` before every parallel kernel
given at least ``PARK_FROM`` array elements (or as much work: the direct convolution counts its
multiply-adds). The restart is not free: a 256x256 product after a
``park()`` took 0.73-0.82 ms against 0.41 ms with the workers spinning, so a kernel too short to
lose that much to a spinning worker runs without it.

When it is not done:

* in a thread other than the main one: another thread may be inside a product at that moment,
  and OpenBLAS does not expect its workers to end under a running product;
* when OpenBLAS is not NumPy's BLAS (MKL, Accelerate) or runs on OpenMP (its workers are the
  OpenMP runtime's): there is nothing to call;
* when ``CNNLITE_PARK_BLAS_THREADS=0`` is set in the environment.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

__all__ = ["park", "parkers", "ENVIRONMENT_VARIABLE", "PARK_FROM"]

#: Set to 0 to leave OpenBLAS's workers spinning.
ENVIRONMENT_VARIABLE = "CNNLITE_PARK_BLAS_THREADS"

#: A parallel kernel given fewer array elements than this (all its arrays together) leaves
#: OpenBLAS's workers as they are: it runs for about a millisecond or less, and the restart
#: after a park costs about 0.35 ms.
PARK_FROM = 2**21


@functools.lru_cache(maxsize=1)
def parkers() -> tuple:
    """The ``blas_thread_shutdown_`` functions of the OpenBLAS libraries loaded in the process
    that run on their own threads (pthreads), found once (``threadpoolctl``)."""
    if os.environ.get(ENVIRONMENT_VARIABLE, "1").strip() == "0":
        return ()
    from threadpoolctl import threadpool_info

    found = []
    for pool in threadpool_info():
        if pool.get("internal_api") != "openblas" or pool.get("threading_layer") != "pthreads":
            continue
        try:
            shutdown = ctypes.CDLL(pool["filepath"]).blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        shutdown.restype = ctypes.c_int
        found.append(shutdown)
    return tuple(found)


def park() -> None:
    """End OpenBLAS's idle workers (see the module docstring); from the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return
    for shutdown in parkers():
        shutdown()
