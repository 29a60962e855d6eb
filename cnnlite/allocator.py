"""Freed host memory kept for the next array: glibc's malloc, tuned when cnnlite is imported.

Why: a training step makes and frees hundreds of arrays of a few megabytes (activations, their
gradients, column matrices, Winograd's transforms). By default glibc serves every block above
a threshold (128 KiB at first, raised as blocks are freed, at most 32 MiB) straight from the
kernel (``mmap``) and hands it back to the kernel when it is freed (``munmap``). The next
array of that size then gets fresh pages, and the kernel zeroes each one the first time it is
written: a page fault per 4 KiB (or per 2 MiB huge page, which NumPy asks for on large arrays),
paid again in every step for memory the process had a moment before.
Measured on 2 cores (ResNet-20, batch 64, one training step): about 25,000 page faults and
90-170 ms of system time per step; with the settings below, under 10 faults and 20 ms.

What: blocks below ``MMAP_THRESHOLD_BYTES`` come from the heap, where a freed block is reused
for the next array of that size or smaller, and the heap is not cut back when its top is free
(``M_TRIM_THRESHOLD``). The cost: memory freed by the process stays with it (it is reused,
not lost), so its resident size stays near its peak until ``release_freed_memory()`` gives the
free part back to the system. Set ``CNNLITE_KEEP_FREED_MEMORY=0`` before importing cnnlite to
leave malloc as it is.

Only glibc (Linux) is changed; other C libraries are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_freed_memory", "release_freed_memory", "ENVIRONMENT_VARIABLE"]

#: Set to 0 before ``import cnnlite`` to leave malloc's settings as they are.
ENVIRONMENT_VARIABLE = "CNNLITE_KEEP_FREED_MEMORY"

#: Blocks at least this large still come from ``mmap`` (and go back to the system when freed):
#: arrays that size are rare, and keeping them could hold gigabytes. Older glibc versions refuse
#: thresholds above 32 MiB; that value is tried next.
MMAP_THRESHOLD_BYTES = (2**30, 32 * 2**20)

# mallopt's parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_NEVER_TRIM = 2**31 - 1  # the largest value of mallopt's int argument


def _glibc():
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc's own symbol: musl and others lack it
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as the module docstring says; True when it was changed.

    ``import cnnlite`` calls it unless ``CNNLITE_KEEP_FREED_MEMORY`` is 0.
    """
    libc = _glibc()
    if libc is None:
        return False
    if not any(libc.mallopt(_M_MMAP_THRESHOLD, threshold) for threshold in MMAP_THRESHOLD_BYTES):
        return False
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


def release_freed_memory() -> bool:
    """Give the memory the process has freed back to the system (``malloc_trim``): its resident
    size drops to what its arrays hold. True when glibc released some."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def keep_unless_asked_not_to() -> bool:
    """What ``import cnnlite`` runs: ``keep_freed_memory()`` unless the environment variable
    ``CNNLITE_KEEP_FREED_MEMORY`` is 0."""
    if os.environ.get(ENVIRONMENT_VARIABLE, "1").strip() == "0":
        return False
    return keep_freed_memory()
