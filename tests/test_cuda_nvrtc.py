"""Every kernels/*.cu compiles with NVRTC, the compiler cupy runs on the user's machine, for the
GPUs cnnlite supports: with no warning, every kernel instantiation in the binary, no register
spilled to memory. No GPU needed: NVRTC is a library, installed from PyPI with the test extra.

What is compiled is what ``cupy.RawModule`` compiles: ``module.source(topic)`` with
``module.NVRTC_OPTIONS`` and every name expression of ``module.name_expressions(topic)``
(``im2col<float, int>``, ...), through NVRTC's C API (ctypes): create the program, add the name
expressions, compile, read the log, the lowered (mangled) names and the binary. Compiling for a
real architecture (``-arch=sm_XX``) runs ptxas as well, whose report (``-Xptxas=-v``) gives
each kernel's registers and spills.

Targets: CUDA 12 (cupy-cuda12x) for sm_50 (Maxwell, the oldest GPU CUDA 12 compiles for),
sm_75 (Turing: T4, Colab's free GPU) and sm_90 (Hopper); CUDA 13 (cupy-cuda13x), which no
longer compiles for GPUs before Turing, for sm_75 and sm_90. The two libraries would load side
by side in one process (no clash of symbols); the compilations run in one process per core.
``python tests/test_cuda_nvrtc.py`` prints every kernel's registers per target
(benchmarks/results_gpu_compile.md).
"""
import ctypes
import functools
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from cnnlite.cuda import module

#: The architectures compiled for, per CUDA major version.
TARGETS = {"12": ("sm_50", "sm_75", "sm_90"), "13": ("sm_75", "sm_90")}

#: Where each version's library lies: in site-packages, from the wheels nvidia-cuda-nvrtc-cu12
#: and nvidia-cuda-nvrtc (13.x); else where the loader finds it (a CUDA toolkit).
LIBRARIES = {"12": ("nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "libnvrtc.so.12"),
             "13": ("nvidia/cu13/lib/libnvrtc.so.13", "libnvrtc.so.13")}

TOPICS = sorted(module.KERNEL_SOURCES)

#: What CUDA 12's NVRTC says of every architecture before sm_75, about the target rather than
#: the code. NVRTC has no option to silence it (nvcc's -Wno-deprecated-gpu-targets).
OLD_ARCHITECTURE_NOTICE = ("nvrtc: warning: Architectures prior to '<compute/sm>_75' are "
                           "deprecated and may be removed in a future release")

#: The lines of ptxas's -v report (every other line of the log is a warning or an error).
PTXAS_REPORT = re.compile(r"ptxas (info|\s+\.)")


def load_nvrtc(version: str):
    """The NVRTC library of CUDA ``version`` through ctypes, or the reason it cannot be had."""
    wheel_path, soname = LIBRARIES[version]
    candidates = [Path(folder) / wheel_path for folder in sys.path if folder]
    found = [str(path) for path in candidates if path.is_file()]
    for name in [*found, soname]:
        try:
            nvrtc = ctypes.CDLL(name)
        except OSError:
            continue
        nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
        return nvrtc
    return (f"NVRTC {version} not found: neither {wheel_path} in site-packages (pip install "
            f"the test extra) nor {soname} on the loader's path")


def nvrtc_version(nvrtc) -> str:
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


class Compiled(NamedTuple):
    result: str         # NVRTC_SUCCESS, or the error NVRTC returned
    log: str            # the compiler's messages and ptxas's -v report
    lowered: dict       # name expression -> its mangled name, as the binary names it
    binary: bytes       # the cubin
    seconds: float


def compile_topic(nvrtc, topic: str, arch: str) -> Compiled:
    """kernels/<topic>.cu compiled for ``arch`` as cupy.RawModule compiles it."""
    started = time.perf_counter()
    program = ctypes.c_void_p()
    source = module.source(topic).encode()
    check(nvrtc, nvrtc.nvrtcCreateProgram(ctypes.byref(program), source,
                                          f"{topic}.cu".encode(), 0, None, None))
    try:
        expressions = module.name_expressions(topic)
        for expression in expressions:
            check(nvrtc, nvrtc.nvrtcAddNameExpression(program, expression.encode()))
        options = [o.encode() for o in (*module.NVRTC_OPTIONS, f"-arch={arch}", "-Xptxas=-v")]
        result = nvrtc.nvrtcCompileProgram(program, len(options),
                                           (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        check(nvrtc, nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size)))
        log = ctypes.create_string_buffer(size.value)
        check(nvrtc, nvrtc.nvrtcGetProgramLog(program, log))
        lowered, binary = {}, b""
        if result == 0:
            for expression in expressions:
                name = ctypes.c_char_p()
                check(nvrtc, nvrtc.nvrtcGetLoweredName(program, expression.encode(),
                                                       ctypes.byref(name)))
                lowered[expression] = name.value.decode()
            check(nvrtc, nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(size)))
            cubin = ctypes.create_string_buffer(size.value)
            check(nvrtc, nvrtc.nvrtcGetCUBIN(program, cubin))
            binary = cubin.raw
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return Compiled(nvrtc.nvrtcGetErrorString(result).decode(), log.value.decode(), lowered,
                    binary, time.perf_counter() - started)


def check(nvrtc, result: int):
    if result != 0:
        raise RuntimeError(f"NVRTC: {nvrtc.nvrtcGetErrorString(result).decode()}")


@functools.cache
def nvrtc_of(version: str):
    """load_nvrtc(version), once per process."""
    return load_nvrtc(version)


def compile_job(job) -> "Compiled | str":
    """Compiled for job = (version, arch, topic), or the reason that NVRTC is missing."""
    version, arch, topic = job
    nvrtc = nvrtc_of(version)
    return nvrtc if isinstance(nvrtc, str) else compile_topic(nvrtc, topic, arch)


def compile_all(topics=TOPICS, targets=TARGETS) -> dict:
    """{(version, arch, topic): compile_job's result}, compiled in one process per core.
    Processes rather than threads: NVRTC does not say that it compiles two programs of one
    process at the same time. Forked, so that the workers import and load nothing; they only
    call NVRTC."""
    jobs = [(version, arch, topic) for version, archs in targets.items() for arch in archs
            for topic in topics]
    for version in targets:
        nvrtc_of(version)  # loaded before the fork: the workers inherit it
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(os.cpu_count() or 1, len(jobs)), mp_context=context) as pool:
        return dict(zip(jobs, pool.map(compile_job, jobs)))


class KernelResources(NamedTuple):
    registers: int
    spill_stores: int   # bytes
    spill_loads: int    # bytes
    stack_frame: int    # bytes


def resources(log: str) -> dict:
    """{mangled kernel name: KernelResources} from ptxas's -v report in ``log``."""
    found, current, frame = {}, None, None
    for line in log.splitlines():
        if match := re.search(r"Compiling entry function '(\w+)'", line):
            current = match.group(1)
        elif match := re.search(r"Function properties for (\w+)", line):
            current = match.group(1) if match.group(1) == current else None
        elif current and (match := re.search(
                r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                line)):
            frame = [int(n) for n in match.groups()]
        elif current and (match := re.search(r"Used (\d+) registers", line)):
            stack, stores, loads = frame
            found[current] = KernelResources(int(match.group(1)), stores, loads, stack)
            current = None
    return found


TARGET_IDS = [(version, arch) for version, archs in TARGETS.items() for arch in archs]
each_target_and_topic = pytest.mark.parametrize(
    "version, arch, topic", [(v, a, t) for v, a in TARGET_IDS for t in TOPICS],
    ids=[f"cuda{v}-{a}-{t}" for v, a in TARGET_IDS for t in TOPICS])


@pytest.fixture(scope="module")
def compiled():
    return compile_all()


def compilation(compiled, version, arch, topic) -> Compiled:
    result = compiled[version, arch, topic]
    if isinstance(result, str):
        pytest.skip(result)
    return result


@each_target_and_topic
def test_kernel_file_compiles_without_a_warning(compiled, version, arch, topic):
    result = compilation(compiled, version, arch, topic)
    messages = [line for line in result.log.splitlines()
                if line.strip() and not PTXAS_REPORT.match(line)
                and line != OLD_ARCHITECTURE_NOTICE]
    assert result.result == "NVRTC_SUCCESS" and not messages, (
        f"{topic}.cu for {arch}, CUDA {version}: {result.result}\n{result.log}")


@each_target_and_topic
def test_every_instantiation_is_in_the_binary(compiled, version, arch, topic):
    """Each name expression has a lowered name (a template that is never instantiated is
    never compiled, nor checked) and the cubin holds a kernel of that name: what
    ``RawModule.get_function`` looks up."""
    result = compilation(compiled, version, arch, topic)
    assert set(result.lowered) == set(module.name_expressions(topic))
    for expression, mangled in result.lowered.items():
        assert mangled and mangled.encode() in result.binary, (expression, mangled)


@each_target_and_topic
def test_no_kernel_spills_registers(compiled, version, arch, topic):
    """A spilled register is a round trip to local memory at every use: in these short,
    memory-bound kernels it would show in their time. ptxas reports each kernel's spills."""
    result = compilation(compiled, version, arch, topic)
    kernels = resources(result.log)
    assert result.lowered and set(kernels) == set(result.lowered.values()), (
        f"ptxas reported {sorted(kernels)}")
    spilling = {name: r for name, r in kernels.items() if r.spill_stores or r.spill_loads}
    assert not spilling, f"{topic}.cu for {arch}, CUDA {version}: {spilling}"


if __name__ == "__main__":
    # The register table of benchmarks/results_gpu_compile.md.
    started = time.perf_counter()
    results = compile_all()
    print(f"compiled in {time.perf_counter() - started:.1f} s")
    for version in TARGETS:
        library = load_nvrtc(version)
        found = library if isinstance(library, str) else nvrtc_version(library)
        print(f"CUDA {version}: NVRTC {found}")
    columns = [(version, arch) for version, arch in TARGET_IDS
               if not isinstance(results[version, arch, TOPICS[0]], str)]
    print("| kernel | " + " | ".join(f"{arch} (CUDA {version})" for version, arch in columns)
          + " |")
    print("|---" * (len(columns) + 1) + "|")
    for topic in TOPICS:
        for expression in module.name_expressions(topic):
            cells = []
            for version, arch in columns:
                result = results[version, arch, topic]
                kernel = resources(result.log).get(result.lowered.get(expression))
                cells.append("failed" if kernel is None else
                             f"{kernel.registers}" + (f", spills {kernel.spill_stores}"
                                                      if kernel.spill_stores else ""))
            print(f"| `{expression}` | " + " | ".join(cells) + " |")
