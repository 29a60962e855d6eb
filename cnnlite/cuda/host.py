"""Running the CUDA kernels on the CPU: the harness of kernels/host, called through ctypes.

kernels/host/cuda_on_cpu.h gives the CUDA words (``__global__``, ``threadIdx``,
``__syncthreads()``, ``atomicAdd``, ...) a meaning in ordinary C++, and
kernels/host/kernels_on_cpu.cpp compiles every kernel of kernels/*.cu with it into a shared
library. Inside ``run_on_cpu`` the launchers of ``cnnlite.cuda`` run on NumPy arrays through
that library: the same launcher code, the same kernel source, no GPU::

    from cnnlite.cuda import host, KERNELS
    kernels = host.HostKernels(host.build("/tmp/cnnlite-host"))
    with host.run_on_cpu(kernels):
        col = KERNELS["im2col"](x, 3, 3, (1, 1), (1, 1), (1, 1))     # x: a NumPy array

A launch runs its blocks one after another and the threads of a block as real threads. The
harness shrinks the launch to at most ``max_blocks`` blocks of ``max_threads`` threads, which
the kernels' grid-stride loops make no difference to (the tests check that too): a GPU-sized
grid would start a million threads here.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np

from cnnlite.cuda import module

#: The compiler's options (the tests' and a student's): C++20 for std::barrier and atomic_ref.
COMPILE_OPTIONS = ("-std=c++20", "-O1", "-shared", "-fPIC", "-pthread")


def compile_command() -> tuple:
    """The compiler, $CXX when it is set (as make and setuptools take it, e.g. ``clang++`` or
    ``ccache g++``), else g++; then COMPILE_OPTIONS."""
    return (*shlex.split(os.environ.get("CXX") or "g++"), *COMPILE_OPTIONS)


#: The ctypes type of each kind of kernel argument, and its kind as the harness names it
#: ('f' float, 'i' signed, 'u' unsigned; 'p' a pointer), by the NumPy scalar type the launchers
#: pass (arrays go as pointers to their data).
_SCALAR_CTYPES = {
    np.int64: (ctypes.c_longlong, "i"),
    np.uint64: (ctypes.c_ulonglong, "u"),
    np.float32: (ctypes.c_float, "f"),
    np.float64: (ctypes.c_double, "f"),
}


def harness_source() -> Path:
    """kernels/host/kernels_on_cpu.cpp."""
    return Path(str(module.kernel_folder())) / "host" / "kernels_on_cpu.cpp"


#: The file name of the built library.
LIBRARY_NAME = "cnnlite_kernels_on_cpu.so"


def build(directory, command=None) -> Path:
    """Compile the harness with every kernel into ``directory`` with ``command`` (by default
    ``compile_command()``); return the library's path."""
    output = Path(directory) / LIBRARY_NAME
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [*(compile_command() if command is None else command), str(harness_source()),
               "-o", str(output)]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"compiling the CUDA-on-CPU harness: no compiler {command[0]!r} on "
                           f"the PATH (set $CXX to a C++20 compiler)") from None
    if result.returncode != 0:
        raise RuntimeError(f"compiling the CUDA-on-CPU harness failed: {shlex.join(command)}"
                           f"\n{result.stderr}")
    return output


def build_once(directory) -> Path:
    """``build(directory)``, unless the library there is newer than every file it is built
    from (kernels/*.cu, *.cuh and kernels/host): several test modules share one build, which
    takes a while."""
    output = Path(directory) / LIBRARY_NAME
    folder = Path(str(module.kernel_folder()))
    sources = [*folder.glob("*.cu"), *folder.glob("*.cuh"), *(folder / "host").iterdir()]
    if output.exists() and output.stat().st_mtime > max(s.stat().st_mtime for s in sources):
        return output
    return build(directory)


class HostKernel:
    """One kernel instantiation of the library, called like a cupy kernel:
    ``kernel(grid, block, args)``."""

    def __init__(self, library, name: str, c_type: str, max_blocks: int, max_threads: int,
                 launched: set | None = None):
        self.entry_point = getattr(library, f"{name}_{c_type}")
        self.entry_point.restype = None
        self.name, self.max_blocks, self.max_threads = f"{name}<{c_type}>", max_blocks, max_threads
        self.launched = set() if launched is None else launched
        sizes, kinds = (ctypes.c_uint * 64)(), (ctypes.c_uint * 64)()
        describe = getattr(library, f"{name}_{c_type}_parameters")
        describe.restype = ctypes.c_uint
        count = describe(sizes, kinds)
        self.parameter_sizes = list(sizes[:count])
        self.parameter_kinds = "".join(chr(k) for k in kinds[:count])

    def __call__(self, grid: tuple, block: tuple, args: tuple):
        arguments = [self._argument(i, a) for i, a in enumerate(args)]
        values = [value for value, _ in arguments]
        sizes = [ctypes.sizeof(v) for v in values]
        kinds = "".join(kind for _, kind in arguments)
        if sizes != self.parameter_sizes or kinds != self.parameter_kinds:
            # On a GPU these bytes would be misread without a word: a float for a double, a
            # double for a long long, a missing argument read from whatever follows the last.
            raise TypeError(f"{self.name}: arguments of {sizes} bytes, kinds {kinds!r}, for "
                            f"parameters of {self.parameter_sizes} bytes, kinds "
                            f"{self.parameter_kinds!r} (p pointer, f float, i signed, "
                            f"u unsigned)")
        # args[i] points at the i-th value, as cudaLaunchKernel wants them.
        pointers = (ctypes.c_void_p * len(values))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        blocks = min(grid[0], self.max_blocks)
        threads = min(block[0], self.max_threads)
        self.entry_point(ctypes.c_uint(blocks), ctypes.c_uint(threads), pointers)
        self.launched.add(self.name)

    def _argument(self, index, value):
        """(the ctypes value, its kind) of argument ``index``."""
        if isinstance(value, np.ndarray):
            if not value.flags.c_contiguous:
                raise ValueError(f"{self.name}: argument {index} must be a contiguous array")
            return ctypes.c_void_p(value.ctypes.data), "p"
        ctype, kind = _SCALAR_CTYPES.get(type(value), (None, None))
        if ctype is None:
            # A Python int or float has no fixed width; the kernel would misread its bytes.
            raise TypeError(f"{self.name}: argument {index} is a {type(value).__name__}; pass "
                            f"a NumPy scalar of the parameter's exact type (np.int64, "
                            f"np.float32, ...)")
        return ctype(value), kind


class HostKernels:
    """The kernels of a library built by ``build``, looked up as ``<kernel>_<float|double>``."""

    def __init__(self, library_path, max_blocks: int = 3, max_threads: int = 32):
        if not 1 <= max_threads <= module.MAX_BLOCK_THREADS:
            raise ValueError(f"max_threads must be in [1, {module.MAX_BLOCK_THREADS}] (the "
                             f"kernels' shared arrays), got {max_threads}")
        self.library = ctypes.CDLL(str(library_path))
        self.max_blocks, self.max_threads = max_blocks, max_threads
        self._kernels = {}
        #: The kernels launched so far, as ``name<type>`` (module.name_expressions' spelling):
        #: the tests check that between them they launch every kernel.
        self.launched = set()

    def function(self, name: str, c_type: str) -> HostKernel:
        if (name, c_type) not in self._kernels:
            self._kernels[name, c_type] = HostKernel(self.library, name, c_type,
                                                     self.max_blocks, self.max_threads,
                                                     self.launched)
        return self._kernels[name, c_type]


@contextlib.contextmanager
def run_on_cpu(kernels: HostKernels):
    """Inside this block the launchers of ``cnnlite.cuda`` take NumPy arrays and run the
    kernels through ``kernels`` (a HostKernels)."""
    token = module.host_kernels.set(kernels)
    try:
        yield kernels
    finally:
        module.host_kernels.reset(token)
