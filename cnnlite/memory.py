"""Host memory: refuse an array larger than the memory that is free, before making it.

Why not let NumPy fail by itself? Because on Linux it often does not. The kernel overcommits:
NumPy's request for 21 GB is granted on a 24 GB machine whatever the other processes hold,
since asking for pages costs nothing until they are written. The writes then find the memory
gone, the machine swaps or thrashes, and the out-of-memory killer ends the process, with no
Python traceback at all. So before making a large output or work buffer, cnnlite compares its
size with the memory that is actually available, not with the address space:

* ``MemAvailable`` from /proc/meminfo: what the kernel estimates can be handed out without
  swapping (free memory plus the page cache that can be dropped);
* less, when the process runs in a container whose cgroup (v2) caps its memory: the cap minus
  what the cgroup already uses.

An array larger than that raises ``HostOutOfMemoryError`` (a ``MemoryError``) naming the op,
what the array is for, its shape and the bytes asked for and available. Where neither figure
exists (not Linux) nothing is checked and NumPy's own ``MemoryError`` remains.

Small arrays are not checked: the kernel takes 30 to 50 microseconds to write /proc/meminfo,
which would show next to a small op, while merely filling an array of ``CHECK_FROM_BYTES``
takes milliseconds (the check costs under 1% of that), and a smaller array is not the one that
exhausts a machine. Arrays on a GPU are not checked either: a cupy allocation fails at once
when the device is full (no overcommit there), and ``cnnlite.cuda.memory`` reports it.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

#: Arrays smaller than this are made without looking at the free memory.
CHECK_FROM_BYTES = 64 * 2**20

#: Where the figures are read (module constants, so that a test can point them elsewhere).
MEMINFO = Path("/proc/meminfo")
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")
CGROUP_USAGE = Path("/sys/fs/cgroup/memory.current")


class HostOutOfMemoryError(MemoryError):
    """An array would not fit in the memory available; the message names the op, the array's
    shape and the bytes asked for and available."""

    #: Already names the op and the shapes: ``Function.apply`` passes it on unchanged.
    from_cnnlite = True


def format_bytes(count: int) -> str:
    """``1234567890`` -> ``'1.15 GiB (1,234,567,890 bytes)'``."""
    value, unit = float(count), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    if unit == "bytes":
        return f"{count:,} bytes"
    return f"{value:.2f} {unit} ({count:,} bytes)"


def _mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes, or None where there is no such file."""
    try:
        with open(MEMINFO, "rb") as file:
            text = file.read()
    except OSError:
        return None
    start = text.find(b"MemAvailable:")
    if start < 0:
        return None
    return int(text[start:text.index(b"\n", start)].split()[1]) * 1024  # "kB" means KiB


def _cgroup_room() -> int | None:
    """The cgroup's memory cap minus what it uses, in bytes; None without a cap."""
    if not os.path.exists(CGROUP_LIMIT):
        return None
    try:
        with open(CGROUP_LIMIT, "rb") as file:
            limit = file.read().strip()
        with open(CGROUP_USAGE, "rb") as file:
            usage = int(file.read())
    except (OSError, ValueError):
        return None
    if limit == b"max":
        return None
    return max(int(limit) - usage, 0)


def available_bytes() -> int | None:
    """The memory a new array can take without swapping: MemAvailable, or less under a cgroup
    cap; None where neither is known."""
    figures = [f for f in (_mem_available(), _cgroup_room()) if f is not None]
    return min(figures) if figures else None


def check_allocation(op: str, what: str, shape, *dtypes, xp=np) -> None:
    """Raise ``HostOutOfMemoryError`` if arrays of ``shape``, one per dtype in ``dtypes``,
    would not fit in the memory available (``available_bytes``).

    ``op`` and ``what`` name the op and the arrays for the message: ``check_allocation(
    "max_pool2d_forward", "output and argmax", (N, C, OH, OW), x.dtype, np.int32)``. ``xp`` is
    the array module that will make them: nothing is checked for cupy.
    """
    if xp is not np:
        return
    shape = tuple(int(n) for n in shape)
    requested = math.prod(shape) * sum(np.dtype(d).itemsize for d in dtypes)
    if requested < CHECK_FROM_BYTES:
        return
    available = available_bytes()
    if available is not None and requested > available:
        kinds = " and ".join(dict.fromkeys(str(np.dtype(d)) for d in dtypes))
        raise HostOutOfMemoryError(
            f"{op}: the {what} of shape {shape} ({kinds}) would take {format_bytes(requested)}, "
            f"but only {format_bytes(available)} of memory is available; a smaller batch or "
            f"input would fit")
