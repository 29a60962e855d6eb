"""TBB under numba's parallel loops, wherever the ``tbb`` package is installed.

numba runs a ``prange`` loop on one of three threading layers and takes the first it can load:
TBB, then OpenMP, then its own workqueue. On a machine with few cores the choice matters. After
each parallel loop, OpenMP's idle workers spin for a while (GNU libgomp's spin count), and on 2
cores a spinning worker takes a core from the BLAS product that comes next (and OpenBLAS's
spinning workers take one from the next numba loop). TBB's idle workers go to sleep. Measured on
2 cores: conv2d forward + backward 2.4x slower on OpenMP than on TBB
(``benchmarks/results_conv.md``).

numba's TBB layer is an extension module linked against ``libtbb.so.12``. The ``tbb`` wheel puts
that library in ``<prefix>/lib``, and the dynamic loader looks there only when the prefix is the
system's: in a virtual environment, after ``pip install --user`` or under a Python built into
its own folder, the extension cannot load and numba quietly takes OpenMP. Loading the library by
its full path first is enough: when the extension then asks for ``libtbb.so.12``, the loader
finds a library of that name already in the process and uses it.

numba chooses its layer once per process, when it starts its threads (at the first parallel
loop, or the first ``numba.get_num_threads()``), so the library must be in the process before
then: ``import cnnlite`` calls ``preload()``, and ``cnnlite.cpu`` checks with ``status()``
before it defines a single kernel.

Where TBB cannot be used (no wheel for the platform, a broken install, numba's threads started
before cnnlite was imported), ``status()`` says so once, with the cause and the cost, and the
numba kernels run on one thread unless the user asks for more (``parallel_by_default``): one
thread never loses to OpenMP's spinning workers, and BLAS keeps all cores.
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# The file name numba's extension asks the loader for, per platform (numba/np/ufunc/parallel.py)
LIBRARY_NAME = {"win32": "tbb12.dll", "darwin": "libtbb.12.dylib"}.get(sys.platform,
                                                                       "libtbb.so.12")


class TBBWarning(RuntimeWarning):
    """numba's parallel loops cannot run on TBB in this process (the message says why)."""


@dataclass(frozen=True)
class TBBStatus:
    """What ``status()`` found.

    ``usable``: numba can run its parallel loops on TBB. ``path``: the library cnnlite loaded
    (``None`` when there was none to load). ``cause``: why TBB is not
    usable, in words (empty when it is).
    """
    usable: bool
    path: Path | None
    cause: str = ""


_preloaded: Path | None = None
_preload_error = ""
_status: TBBStatus | None = None


def library_candidates():
    """Paths where the ``tbb`` package may have put its library, most likely first.

    The package's own file list (``importlib.metadata``) names the real place for any install
    that pip made: a virtual environment, ``--user``, the system. The folders of the current
    and the base prefix cover installs without that list (conda, a copied environment).
    """
    try:
        files = metadata.files("tbb") or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == LIBRARY_NAME:
            yield Path(file.locate()).resolve()
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for folder in ("lib", "Library/bin", "bin"):
            yield Path(prefix, folder, LIBRARY_NAME)


def preload() -> Path | None:
    """Load the first TBB library found (once); its path, or None when none was loaded.

    Cheap (no numba import): ``import cnnlite`` runs it, before anything of cnnlite's can
    start numba's threads (``numba.get_num_threads()`` alone starts them).
    """
    global _preloaded, _preload_error
    if _preloaded is not None or _preload_error:
        return _preloaded
    for path in library_candidates():
        if path.is_file():
            try:
                if sys.platform == "win32":
                    os.add_dll_directory(str(path.parent))
                ctypes.CDLL(str(path), mode=getattr(os, "RTLD_GLOBAL", 0))
            except OSError as error:  # a library of the wrong architecture, a broken file
                _preload_error = f"loading {path} failed: {error}"
                return None
            _preloaded = path
            return path
    _preload_error = (f"the tbb package is not installed ({LIBRARY_NAME} not found; TBB wheels "
                      f"exist for x86-64 only)")
    return None


def _why_numba_cannot_use_tbb() -> str:
    """Empty when numba's TBB layer loads in this process; else the reason, in words."""
    from numba.np.ufunc import parallel
    if parallel._is_initialized:
        layer = parallel._threading_layer
        if layer != "tbb":
            return (f"numba's threads already run on {layer}: numba started them before "
                    f"cnnlite was imported")
        return ""
    try:
        parallel._check_tbb_version_compatible()
        from numba.np.ufunc import tbbpool  # noqa: F401  (the import is the test)
    except ImportError as error:
        return _preload_error or f"numba's TBB layer does not load: {error}"
    return ""


def status() -> TBBStatus:
    """Whether numba's parallel loops run on TBB here; the first call warns (``TBBWarning``)
    when they cannot, with the cause and the cost.

    Nothing is said when the user chose a layer with ``NUMBA_THREADING_LAYER``: that choice
    stands, and it is theirs to know.
    """
    global _status
    if _status is None:
        path = preload()
        chosen = os.environ.get("NUMBA_THREADING_LAYER", "default").lower()
        if chosen not in ("default", "tbb"):
            _status = TBBStatus(False, path, f"NUMBA_THREADING_LAYER={chosen} is set")
            return _status
        cause = _why_numba_cannot_use_tbb()
        _status = TBBStatus(not cause, path, cause)
        if cause:
            warnings.warn(
                f"cnnlite: numba cannot run its parallel loops on TBB: {cause}. On its "
                f"fallback, OpenMP, idle threads spin and take cores from BLAS (conv2d forward "
                f"+ backward ran 2.4x slower on 2 cores), so cnnlite runs its numba kernels on "
                f"one thread unless cnnlite.backend.cpu_threads(n) asks for more. `pip install "
                f"tbb` (x86-64) gives back the parallel kernels.", TBBWarning, stacklevel=2)
    return _status


def parallel_by_default() -> bool:
    """Whether the numba kernels use all their threads when nobody asked for a number.

    True on TBB, or on a layer the user chose; False on the OpenMP fallback, where one thread
    is faster than two whose idle workers spin (``benchmarks/results_conv.md``).
    """
    return status().usable or "NUMBA_THREADING_LAYER" in os.environ
