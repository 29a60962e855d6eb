"""Every kernels/*.cu compiles with nvcc for a current GPU (sm_90, Hopper) and an older one
(sm_75, Turing), with both float and double instantiated, warnings counted as errors.

What is compiled is what cupy's NVRTC compiles at run time (``cnnlite.cuda.module.source``:
the file with kernels/common.cuh pasted in), followed by a function that takes the address of
every ``name<float>`` and ``name<double>`` of ``module.name_expressions``: a template that is
never instantiated is never checked. All compilations run at once, in one fixture, to keep
this file within its time budget on a small machine.
"""
import re
import shutil
import subprocess

import pytest

from cnnlite.cuda import module

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None,
                                reason="nvcc (the CUDA toolkit) is not on the PATH")

ARCHITECTURES = ["sm_90", "sm_75"]
TOPICS = sorted(module.KERNEL_SOURCES)


def instantiating_source(topic):
    """kernels/<topic>.cu as NVRTC sees it, plus the instantiation of every kernel."""
    lines = [module.source(topic), "", "void instantiate_every_kernel() {"]
    lines += [f"    (void)&{expression};" for expression in module.name_expressions(topic)]
    lines.append("}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(topic, arch) -> (return code, compiler output, cubin bytes), compiled in parallel."""
    folder = tmp_path_factory.mktemp("nvcc")
    running = {}
    for topic in TOPICS:
        source = folder / f"{topic}.cu"
        source.write_text(instantiating_source(topic))
        for arch in ARCHITECTURES:
            cubin = folder / f"{topic}_{arch}.cubin"
            command = ["nvcc", *module.NVRTC_OPTIONS, f"-arch={arch}", "--cubin",
                       "--Werror", "all-warnings", str(source), "-o", str(cubin)]
            running[topic, arch] = (subprocess.Popen(command, stdout=subprocess.PIPE,
                                                     stderr=subprocess.STDOUT, text=True), cubin)
    results = {}
    for key, (process, cubin) in running.items():
        output = process.communicate(timeout=300)[0]
        results[key] = (process.returncode, output,
                        cubin.read_bytes() if cubin.exists() else b"")
    return results


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("topic", TOPICS)
def test_kernel_file_compiles_without_warnings(compiled, topic, arch):
    returncode, output, _ = compiled[topic, arch]
    assert returncode == 0 and not output.strip(), f"nvcc {topic}.cu -arch={arch}:\n{output}"


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("topic", TOPICS)
def test_every_kernel_is_in_the_binary_for_float_and_double(compiled, topic, arch):
    """The cubin names each instantiation by its mangled name, e.g. _Z6im2colIfEv... for
    im2col<float> (I...E holds the template argument: f float, d double)."""
    binary = compiled[topic, arch][2]
    for name in module.KERNEL_SOURCES[topic]:
        for code in "fd":
            mangled = f"_Z{len(name)}{name}I{code}Ev".encode()
            assert mangled in binary, f"{name} ({code}) is missing from {topic}_{arch}.cubin"


def test_every_cu_file_is_listed_in_the_kernel_table():
    """A new kernels/*.cu must be registered in cnnlite.cuda.module to be compiled at all."""
    on_disk = sorted(path.name[:-3] for path in module.kernel_folder().iterdir()
                     if path.name.endswith(".cu"))
    assert on_disk == TOPICS


def test_every_kernel_in_the_table_is_defined_in_its_file():
    for topic, names in module.KERNEL_SOURCES.items():
        text = module.source(topic)
        for name in names:
            assert re.search(rf"__global__ void {name}\(", text), (topic, name)
