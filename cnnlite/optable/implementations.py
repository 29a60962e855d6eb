"""Where an op of the table runs: one context per implementation.

=============  ===========================================================================
``numpy``      ops made of NumPy expressions (arithmetic, reductions, shapes): as called
``loops``      the hot ops through the readable loops of ``cnnlite/reference``
``numba``      the hot ops through the numba kernels of ``cnnlite/cpu`` (the CPU default)
``direct``     a Function made of the readable forward and backward loops themselves (the
               spec's ``direct``), without the functional op around them
``cuda-host``  the hot ops through the CUDA kernels of ``kernels/*.cu``, compiled for the CPU
               by the host harness (``cnnlite.cuda.host``): needs a C++20 compiler
``gpu``        the hot ops on the GPU through cupy: needs cupy and a GPU
=============  ===========================================================================

``available(name)`` says whether an implementation can run here (and if not, why);
``running(name)`` is the context to run in; ``device(name)`` is the device of the inputs.
``HOT`` lists the implementations of the hot ops (those that dispatch kernels).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from cnnlite import backend

IMPLEMENTATIONS = ("numpy", "loops", "numba", "direct", "cuda-host", "gpu")

#: The implementations of a hot op, one that dispatches kernels; a spec adds "direct" when it
#: also has a Function made of the readable loops.
HOT = ("loops", "numba", "cuda-host", "gpu")

#: The host harness, built once per process (and cached on disk by its sources' hash); the
#: lock keeps two threads (a grader's, a test runner's) from building it twice at once.
_host_kernels = None
_host_kernels_lock = threading.Lock()


def host_build_folder() -> Path:
    """Where the harness library is built: $CNNLITE_HOST_BUILD, else a folder in the temp dir
    shared by every run of this user (the build takes ~10 s; ``build_once`` reuses it)."""
    folder = os.environ.get("CNNLITE_HOST_BUILD")
    return Path(folder) if folder else Path(tempfile.gettempdir()) / f"cnnlite-host-{os.getuid()}"


def host_kernels():
    """The CUDA kernels compiled for the CPU (``cnnlite.cuda.host``), built on first use."""
    global _host_kernels
    with _host_kernels_lock:
        if _host_kernels is None:
            from cnnlite.cuda import host
            _host_kernels = host.HostKernels(host.build_once(host_build_folder()))
        return _host_kernels


def available(name: str) -> tuple[bool, str]:
    """(True, "") when implementation ``name`` can run on this machine, else (False, why)."""
    if name not in IMPLEMENTATIONS:
        return False, f"unknown implementation {name!r}; expected one of {IMPLEMENTATIONS}"
    if name == "cuda-host":
        from cnnlite.cuda import host
        compiler = host.compile_command()[0]
        if shutil.which(compiler) is None:
            return False, f"no {compiler} on the PATH to build the CUDA kernels for the CPU"
    if name == "gpu" and not backend.cuda_available():
        return False, "no GPU (cupy and a CUDA device are needed)"
    return True, ""


@contextlib.contextmanager
def running(name: str):
    """The context in which an op runs as implementation ``name``."""
    if name == "loops":
        with backend.use_kernels("reference"):
            yield
    elif name == "numba":
        with backend.use_kernels("cpu"):
            yield
    elif name == "cuda-host":
        from cnnlite.cuda import host
        with host.run_on_cpu(host_kernels()), backend.use_kernels("cuda"):
            yield
    else:  # numpy, direct: as called; gpu: the device of the arrays chooses the CUDA kernels
        yield


def device(name: str) -> str:
    """The device the inputs of implementation ``name`` live on."""
    return "cuda" if name == "gpu" else "cpu"
