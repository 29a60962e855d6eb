"""Running the CUDA kernels on the CPU: the harness of kernels/host, called through ctypes.

kernels/host/cuda_on_cpu.h gives the CUDA words (``__global__``, ``threadIdx``,
``__syncthreads()``, ``atomicAdd``, ...) a meaning in ordinary C++, and ``build`` compiles every
kernel of the table in ``cnnlite.cuda.module`` with it into a shared library, with the C entry
points of kernels/host/kernels_on_cpu.cpp. Inside ``run_on_cpu`` the launchers of
``cnnlite.cuda`` run on NumPy arrays through that library: the same launcher code, the same
kernel source, no GPU::

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
import hashlib
import os
import re
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
    np.int32: (ctypes.c_int, "i"),
    np.int64: (ctypes.c_longlong, "i"),
    np.uint64: (ctypes.c_ulonglong, "u"),
    np.float32: (ctypes.c_float, "f"),
    np.float64: (ctypes.c_double, "f"),
}


def harness_source() -> Path:
    """kernels/host/kernels_on_cpu.cpp: the entry points' macro, included by the generated
    translation unit (``translation_unit``)."""
    return Path(str(module.kernel_folder())) / "host" / "kernels_on_cpu.cpp"


#: The file name of the built library; ``build`` writes the C++ it compiles next to it, under
#: the same name with the suffix .cpp.
LIBRARY_NAME = "cnnlite_kernels_on_cpu.so"

_EXPRESSION = re.compile(r"(\w+)<([\w ]+?)(?:, ([\w ]+))?>")


def template_arguments(expression: str) -> tuple:
    """(name, c_type, index_type or None) of a name expression such as ``im2col<float, int>``."""
    match = _EXPRESSION.fullmatch(expression)
    if match is None:
        raise ValueError(f"not a kernel's name expression: {expression!r}")
    return match.groups()


def entry_point_symbol(name: str, c_type: str, index_type: str | None = None) -> str:
    """The C name of an instantiation's entry point: ``relu_forward_float``,
    ``im2col_double_long_long``."""
    return "_".join([name, c_type, *([] if index_type is None else [index_type])]).replace(" ", "_")


def translation_unit() -> str:
    """The C++ that ``build`` compiles: kernels_on_cpu.cpp, every kernels/<topic>.cu, and an
    entry point for every instantiation of ``module.name_expressions``. Written from the kernel
    table, so that a kernel added to its .cu file and to the table runs here with nothing more."""
    folder = Path(str(module.kernel_folder()))
    lines = ["// Written by cnnlite.cuda.host from the kernel table of cnnlite/cuda/module.py.",
             f'#include "{harness_source()}"']
    for topic in module.KERNEL_SOURCES:
        lines += ["", f'#include "{folder / f"{topic}.cu"}"']
        lines += [f"ENTRY_POINT({entry_point_symbol(*template_arguments(expression))}, "
                  f"{expression})" for expression in module.name_expressions(topic)]
    return "\n".join(lines) + "\n"


def build(directory, command=None, name=LIBRARY_NAME) -> Path:
    """Compile the harness with every kernel into ``directory``/``name`` with ``command`` (by
    default ``compile_command()``); return the library's path."""
    output = Path(directory) / name
    output.parent.mkdir(parents=True, exist_ok=True)
    source = output.with_suffix(".cpp")
    # Written under names of this process first, then renamed: another process may be building
    # or loading the files of the same name.
    partial_source = source.with_name(f".{source.name}.{os.getpid()}.tmp")
    partial_source.write_text(translation_unit(), encoding="utf-8")
    partial_source.replace(source)
    partial_output = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    command = [*(compile_command() if command is None else command), str(source),
               "-o", str(partial_output)]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"compiling the CUDA-on-CPU harness: no compiler {command[0]!r} on "
                           f"the PATH (set $CXX to a C++20 compiler)") from None
    if result.returncode != 0:
        raise RuntimeError(f"compiling the CUDA-on-CPU harness failed: {shlex.join(command)}"
                           f"\n{result.stderr}")
    partial_output.replace(output)
    return output


def fingerprint() -> str:
    """A hash of everything the library is built from: the generated C++ (which names the
    kernel files by their paths), the text of kernels/*.cu, *.cuh and kernels/host, and the
    compile command."""
    folder = Path(str(module.kernel_folder()))
    sources = [*folder.glob("*.cu"), *folder.glob("*.cuh"),
               *(path for path in (folder / "host").iterdir() if path.is_file())]
    digest = hashlib.sha256(translation_unit().encode())
    for path in sorted(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(shlex.join(compile_command()).encode())
    return digest.hexdigest()[:16]


def build_once(directory) -> Path:
    """``build(directory)`` under a name that carries the ``fingerprint`` of its sources,
    unless that library is already there: several test modules, and every run of the optable,
    share one build, which takes a while. A checkout with other kernels, or an edited kernel,
    has another fingerprint, so no run ever loads a library built from other sources (file
    times cannot promise that: a folder in the temp dir is shared by every checkout)."""
    name = f"{Path(LIBRARY_NAME).stem}-{fingerprint()}.so"
    output = Path(directory) / name
    return output if output.exists() else build(directory, name=name)


class HostKernel:
    """One kernel instantiation of the library, called like a cupy kernel:
    ``kernel(grid, block, args)``, through its entry points (``entry_point_symbol``)."""

    def __init__(self, library, name: str, c_type: str, max_blocks: int, max_threads: int,
                 launched: set | None = None, index_type: str | None = None):
        symbol = entry_point_symbol(name, c_type, index_type)
        self.entry_point = getattr(library, symbol)
        self.entry_point.restype = None
        self.name = module.name_expression(name, c_type, index_type)
        self.max_blocks, self.max_threads = max_blocks, max_threads
        self.launched = set() if launched is None else launched
        sizes, kinds = (ctypes.c_uint * 64)(), (ctypes.c_uint * 64)()
        describe = getattr(library, f"{symbol}_parameters")
        describe.restype = ctypes.c_uint
        count = describe(sizes, kinds)
        self.parameter_sizes = list(sizes[:count])
        self.parameter_kinds = "".join(chr(k) for k in kinds[:count])

    def __call__(self, grid: tuple, block: tuple, args: tuple):
        if grid[0] < 1 or block[0] < 1:
            # CUDA refuses such a launch (invalid configuration): the launchers must skip
            # empty work instead.
            raise ValueError(f"{self.name}: a launch of {grid[0]} blocks of {block[0]} threads; "
                             f"a grid and a block need at least one thread each")
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
            # cupy gives an array of 0 bytes no memory and a null data pointer, where NumPy
            # allocates a few bytes: passing null here makes a kernel that reads an element of
            # an empty array crash, as it would on the GPU, instead of reading NumPy's bytes.
            return ctypes.c_void_p(value.ctypes.data if value.size else None), "p"
        ctype, kind = _SCALAR_CTYPES.get(type(value), (None, None))
        if ctype is None:
            # A Python int or float has no fixed width; the kernel would misread its bytes.
            raise TypeError(f"{self.name}: argument {index} is a {type(value).__name__}; pass "
                            f"a NumPy scalar of the parameter's exact type (np.int64, "
                            f"np.float32, ...)")
        return ctype(value), kind


class HostKernels:
    """The kernels of a library built by ``build``, looked up by name and template arguments
    (``function``) or by name expression (``by_expression``)."""

    def __init__(self, library_path, max_blocks: int = 3, max_threads: int = 32):
        if not 1 <= max_threads <= module.MAX_BLOCK_THREADS:
            raise ValueError(f"max_threads must be in [1, {module.MAX_BLOCK_THREADS}] (the "
                             f"kernels' shared arrays), got {max_threads}")
        self.library = ctypes.CDLL(str(library_path))
        self.max_blocks, self.max_threads = max_blocks, max_threads
        self._kernels = {}
        #: The kernels launched so far, as ``name<type>`` or ``name<type, index type>``
        #: (module.name_expressions' spelling): the tests check that between them they launch
        #: every kernel.
        self.launched = set()

    def function(self, name: str, c_type: str, index_type: str | None = None) -> HostKernel:
        """Kernel ``name<c_type>``, or ``name<c_type, index_type>`` (module.INDEX_TYPES)."""
        key = name, c_type, index_type
        if key not in self._kernels:
            self._kernels[key] = HostKernel(self.library, name, c_type, self.max_blocks,
                                            self.max_threads, self.launched, index_type)
        return self._kernels[key]

    def by_expression(self, expression: str) -> HostKernel:
        """The kernel of a name expression of ``module.name_expressions``, such as
        ``relu_forward<float>`` or ``im2col<double, long long>``."""
        return self.function(*template_arguments(expression))


@contextlib.contextmanager
def run_on_cpu(kernels: HostKernels):
    """Inside this block the launchers of ``cnnlite.cuda`` take NumPy arrays and run the
    kernels through ``kernels`` (a HostKernels)."""
    token = module.host_kernels.set(kernels)
    try:
        yield kernels
    finally:
        module.host_kernels.reset(token)
