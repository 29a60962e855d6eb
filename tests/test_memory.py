"""An array larger than the memory available is refused before it is made.

On Linux NumPy is granted far more memory than the machine has free (overcommit), and the
process is killed when it writes to it. So the ops compare each large output or work buffer
with MemAvailable (``cnnlite.memory``) first and raise ``HostOutOfMemoryError``, a MemoryError
that names the op, the shape, and the bytes asked for and available.
"""
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import backend, memory
from cnnlite import functional as F
from cnnlite.memory import HostOutOfMemoryError

linux_only = pytest.mark.skipif(not Path("/proc/meminfo").exists(),
                                reason="MemAvailable is read from /proc/meminfo (Linux)")


def mem_available() -> int:
    """MemAvailable from /proc/meminfo in bytes, read here, independently of cnnlite."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no MemAvailable in /proc/meminfo")


def padding_for_output_of(bytes_wanted, itemsize=8):
    """The padding that makes a 1x1 convolution of a 1x1 image output a (1 + 2p)^2 plane of
    at least ``bytes_wanted`` bytes."""
    return math.ceil((math.sqrt(bytes_wanted / itemsize) - 1) / 2)


@linux_only
@pytest.mark.parametrize("algorithm, kernel", [("im2col", 1), ("winograd", 3)])
def test_a_conv_output_beyond_the_memory_available_is_refused_before_it_is_made(algorithm,
                                                                                kernel):
    """Twice MemAvailable: NumPy alone would be granted it (overcommit) whenever it is below
    RAM plus swap, and the process would be killed while writing it."""
    padding = padding_for_output_of(2 * mem_available())
    x = cl.tensor(np.ones((1, 1, 1, 1)))
    w = cl.tensor(np.ones((1, 1, kernel, kernel)))
    side = 2 * padding + 2 - kernel
    tracemalloc.start()
    try:
        with backend.conv_algorithm(algorithm):
            with pytest.raises(HostOutOfMemoryError,
                               match=rf"^conv2d: the output of shape \(1, 1, {side}, {side}\) "
                                     rf"\(float64\) would take .* GiB \([\d,]+ bytes\), but only "
                                     rf".* \([\d,]+ bytes\) of memory is available"):
                F.conv2d(x, w, padding=padding)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**26, f"{peak} bytes were allocated before the error"


def test_the_error_is_a_memory_error():
    assert issubclass(HostOutOfMemoryError, MemoryError)


@pytest.fixture
def little_memory(monkeypatch):
    """A machine with 1 MiB available, where every array is checked."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    monkeypatch.setattr(memory, "CHECK_FROM_BYTES", 0)


def x_of(*shape):
    return cl.tensor(np.ones(shape))


# Every op that makes a large buffer checks it first: (op, the call, the kernel it names, the
# shape of the buffer), each buffer of 2 MiB or more.
LARGE_BUFFERS = [
    ("conv2d output", lambda: F.conv2d(x_of(1, 1, 4, 4), x_of(16384, 1, 1, 1)),
     "conv2d", r"output of shape \(1, 16384, 4, 4\)"),
    ("im2col column matrix", lambda: _by("im2col", F.conv2d, x_of(1, 64, 32, 32),
                                         x_of(1, 64, 3, 3)),
     "im2col", r"column matrix of shape \(576, 900\)"),
    ("winograd tiles", lambda: _by("winograd", F.conv2d, x_of(1, 16, 64, 64), x_of(1, 16, 3, 3)),
     "winograd_input", r"transformed tiles of shape \(16, 16, 961\)"),
    ("max_pool2d", lambda: F.max_pool2d(x_of(1, 4, 512, 512), 1),
     "max_pool2d_forward", r"output and argmax of shape \(1, 4, 512, 512\) \(float64 and int32\)"),
    ("avg_pool2d", lambda: F.avg_pool2d(x_of(1, 4, 512, 512), 1),
     "avg_pool2d_forward", r"output of shape \(1, 4, 512, 512\)"),
    ("adaptive_max_pool2d", lambda: F.adaptive_max_pool2d(x_of(1, 1, 1, 1), 512),
     "adaptive_max_pool2d", r"output and argmax of shape \(1, 1, 512, 512\)"),
    ("adaptive_avg_pool2d", lambda: F.adaptive_avg_pool2d(x_of(1, 1, 1, 1), 512),
     "adaptive_avg_pool2d", r"output of shape \(1, 1, 512, 512\)"),
    ("local_response_norm", lambda: F.local_response_norm(x_of(1, 4, 256, 256), 3),
     "lrn_forward", r"output, denominator and factor of shape \(1, 4, 65536\)"),
]


def _by(algorithm, conv, *args):
    """conv(*args) by the named algorithm, whatever the layer's shape would choose."""
    with backend.conv_algorithm(algorithm):
        return conv(*args)


@pytest.mark.parametrize("case", LARGE_BUFFERS, ids=[case[0] for case in LARGE_BUFFERS])
def test_each_large_buffer_is_checked_against_the_memory_available(little_memory, case):
    _, call, op, buffer = case
    with pytest.raises(HostOutOfMemoryError,
                       match=rf"^{op}: the {buffer}.* would take .*, but only 1.00 MiB "
                             rf"\(1,048,576 bytes\) of memory is available"):
        call()


def test_small_arrays_are_made_without_reading_the_free_memory(monkeypatch):
    def unknowable():
        raise AssertionError("available_bytes was read for a small array")

    monkeypatch.setattr(memory, "available_bytes", unknowable)
    memory.check_allocation("op", "output", (2048, 2048), np.float64)  # 32 MiB < 64 MiB


def test_nothing_is_checked_for_arrays_on_a_gpu(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)
    memory.check_allocation("op", "output", (2**40,), np.float64, xp=object())


@pytest.fixture
def figures(tmp_path, monkeypatch):
    """Point cnnlite.memory at files of our own: write(meminfo=..., limit=..., usage=...)."""
    paths = {"meminfo": tmp_path / "meminfo", "limit": tmp_path / "memory.max",
             "usage": tmp_path / "memory.current"}
    monkeypatch.setattr(memory, "MEMINFO", paths["meminfo"])
    monkeypatch.setattr(memory, "CGROUP_LIMIT", paths["limit"])
    monkeypatch.setattr(memory, "CGROUP_USAGE", paths["usage"])

    def write(**texts):
        for name, text in texts.items():
            paths[name].write_text(text)
    return write


MEMINFO = "MemTotal:       24683584 kB\nMemFree:        22641984 kB\n" \
          "MemAvailable:   23479152 kB\nBuffers:           11532 kB\n"


def test_the_memory_available_is_mem_available(figures):
    figures(meminfo=MEMINFO)
    assert memory.available_bytes() == 23479152 * 1024


def test_a_cgroup_cap_below_it_counts_instead(figures):
    figures(meminfo=MEMINFO, limit=f"{8 * 2**30}\n", usage=f"{3 * 2**30}\n")
    assert memory.available_bytes() == 5 * 2**30


def test_an_uncapped_cgroup_changes_nothing(figures):
    figures(meminfo=MEMINFO, limit="max\n", usage="12345\n")
    assert memory.available_bytes() == 23479152 * 1024


def test_without_the_figures_nothing_is_refused(figures):
    assert memory.available_bytes() is None
    memory.check_allocation("op", "output", (2**40,), np.float64)


@linux_only
def test_the_real_figure_is_read():
    assert 0 < memory.available_bytes() <= 2 * mem_available()


@pytest.mark.parametrize("count, text", [(1000, "1,000 bytes"), (1536, "1.50 KiB (1,536 bytes)"),
                                         (3 * 2**30, "3.00 GiB (3,221,225,472 bytes)")])
def test_sizes_are_written_in_binary_units_and_bytes(count, text):
    assert memory.format_bytes(count) == text
