"""What this installation runs on: the lines a user pastes into a bug report (``cnnlite info``).

Speed in cnnlite depends on things outside it: the BLAS library that numpy brings and how many
threads it runs, numba's threading layer (TBB or the OpenMP fallback, see ``cnnlite.tbb``), the
CPU, and on the GPU, cupy, CUDA and the card. ``report()`` gathers them as (name, value) pairs;
``format_report()`` lays them out one per line.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def numba_line() -> str:
    """numba's version, the threading layer it runs on and its thread count.

    Starting numba's threads (``get_num_threads``) makes numba choose its layer; cnnlite's CPU
    kernels are imported first so that the choice is the one they get.
    """
    import numba

    import cnnlite.cpu  # noqa: F401  (checks for TBB before numba's threads start)
    from cnnlite import tbb

    threads = numba.get_num_threads()
    status = tbb.status()
    line = f"{numba.__version__}, threading layer {numba.threading_layer()}, {threads} threads"
    if status.path is not None:
        line += f" (TBB from {status.path})"
    if not status.usable:
        line += f"; not TBB: {status.cause}"
        if not tbb.parallel_by_default():
            line += "; cnnlite runs its numba kernels on one thread"
    return line


def blas_lines() -> list[tuple[str, str]]:
    """One line per thread pool that threadpoolctl finds (numpy's BLAS, OpenMP, ...)."""
    from threadpoolctl import threadpool_info

    lines = []
    for pool in threadpool_info():
        details = [f"{pool.get('internal_api', '?')} {pool.get('version') or ''}".strip(),
                   f"{pool.get('num_threads')} threads"]
        if pool.get("threading_layer"):
            details.append(f"threading {pool['threading_layer']}")
        if pool.get("architecture"):
            details.append(f"kernels for {pool['architecture']}")
        details.append(pool.get("filepath", ""))
        lines.append((pool.get("user_api", "library"), ", ".join(details)))
    settings = [f"{name}={os.environ[name]}" for name in
                ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")
                if name in os.environ]
    lines.append(("thread settings", ", ".join(settings) or "none set in the environment"))
    return lines


def gpu_lines() -> list[tuple[str, str]]:
    """cupy, the CUDA runtime and driver, and each GPU, or why there is none."""
    from cnnlite import backend

    cupy = backend.cupy_module()
    if cupy is None:
        return [("cupy", "not installed (" + backend.CUDA_INSTALL_HINT + ")")]
    lines = [("cupy", f"{cupy.__version__}, kernel cache {_cupy_cache_dir()}")]
    try:
        runtime = cupy.cuda.runtime
        lines.append(("CUDA", f"runtime {runtime.runtimeGetVersion()}, "
                              f"driver {runtime.driverGetVersion()}"))
        for index in range(runtime.getDeviceCount()):
            props = runtime.getDeviceProperties(index)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            lines.append((f"GPU {index}", f"{name}, compute capability {props['major']}."
                                          f"{props['minor']}, {props['totalGlobalMem'] / 2**30:.1f} GiB"))
    except Exception as error:  # no driver, no device: say what cupy says
        lines.append(("CUDA", f"unavailable: {error}"))
    return lines


def _cupy_cache_dir() -> str:
    return os.environ.get("CUPY_CACHE_DIR", str(Path.home() / ".cupy" / "kernel_cache"))


def numba_cache_dir() -> str:
    """Where numba keeps the compiled CPU kernels (``cache=True``) between processes."""
    import numba

    import cnnlite.cpu
    return numba.config.CACHE_DIR or str(Path(cnnlite.cpu.__file__).parent / "__pycache__")


def report() -> list[tuple[str, str]]:
    """(name, value) pairs describing this installation and machine."""
    import cnnlite

    return [
        ("cnnlite", f"{cnnlite.__version__} ({Path(cnnlite.__file__).parent})"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()}, "
                   f"{sys.executable})"),
        ("platform", platform.platform()),
        ("CPU", f"{cpu_name()}, {os.cpu_count()} logical cores"),
        ("numpy", np.__version__),
        ("numba", numba_line()),
        *blas_lines(),
        ("numba kernel cache", numba_cache_dir()),
        *gpu_lines(),
    ]


def format_report(lines=None) -> str:
    """The report as aligned ``name: value`` lines."""
    lines = report() if lines is None else lines
    width = max(len(name) for name, _ in lines)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in lines)
