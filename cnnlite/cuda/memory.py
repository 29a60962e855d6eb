"""Out of GPU memory: an error that says how much was asked for and how much is free.

cupy's own message gives the size of the failed allocation only. Whether the fix is a smaller
batch, freeing arrays that are still referenced, or another process that holds the GPU, shows
only next to what the device has free (``cudaMemGetInfo``) and what cupy's memory pool keeps
cached for reuse.

Reported here: the launchers of cnnlite.cuda (``reports_out_of_memory``), ``to_device``, and
the forward and backward of every autograd Function (cnnlite/autograd.py), which covers the
cuBLAS matrix products and cupy's element-wise ops, named by the op that ran them.
"""
from __future__ import annotations

import contextlib
import functools
import re
import sys

from cnnlite import backend
from cnnlite.memory import format_bytes

#: cupy's message for a failed allocation: "Out of memory allocating 1,536 bytes (allocated so
#: far: ...)".
_ALLOCATING = re.compile(r"Out of memory allocating ([\d,]+) bytes")


class GpuOutOfMemoryError(MemoryError):
    """An allocation on the GPU failed; the message has the numbers to decide what to do."""

    #: Already names the op and the bytes: ``Function.apply`` passes it on unchanged.
    from_cnnlite = True


def out_of_memory_message(what: str, requested: int | None, free: int, total: int,
                          pool_cached: int) -> str:
    """The message of a GpuOutOfMemoryError (the numbers as cudaMemGetInfo and cupy give them)."""
    asked = "an allocation" if requested is None else format_bytes(requested)
    return (f"{what}: out of GPU memory: asked for {asked}, {format_bytes(free)} free of "
            f"{format_bytes(total)} on the device, and {format_bytes(pool_cached)} cached in "
            f"cupy's memory pool (cupy.get_default_memory_pool().free_all_blocks() returns it "
            f"to the device); a smaller batch or fewer live arrays would fit")


def requested_bytes(error) -> int | None:
    """The size of the allocation that raised cupy's OutOfMemoryError ``error``: cupy keeps it
    in the private attribute ``_size``; should that go, the number in its message; else None."""
    size = getattr(error, "_size", None)
    if isinstance(size, int):
        return size
    found = _ALLOCATING.search(str(error))
    return int(found.group(1).replace(",", "")) if found else None


def cupy_out_of_memory_type():
    """cupy's OutOfMemoryError class, for an ``except`` clause; ``()``, which matches nothing,
    while cupy has not been imported: then no array lives on the GPU to run out of its memory.
    Python evaluates an except clause's class only when an exception reaches it, so a clause
    ``except cupy_out_of_memory_type()`` costs nothing while nothing fails."""
    if "cupy" not in sys.modules:
        return ()
    cupy = backend.cupy_module()
    return () if cupy is None else cupy.cuda.memory.OutOfMemoryError


def gpu_out_of_memory_error(what: str, error, requested: int | None = None):
    """The GpuOutOfMemoryError for cupy's OutOfMemoryError ``error``, naming ``what`` and the
    bytes asked for (``requested``, or what cupy reports) and free. Raise it ``from error``."""
    cupy = backend.cupy_module()
    asked = requested if requested is not None else requested_bytes(error)
    free, total = cupy.cuda.runtime.memGetInfo()
    cached = cupy.get_default_memory_pool().free_bytes()
    return GpuOutOfMemoryError(out_of_memory_message(what, asked, free, total, cached))


@contextlib.contextmanager
def reporting_out_of_memory(what: str, requested: int | None = None):
    """Turn cupy's OutOfMemoryError inside the block into a GpuOutOfMemoryError that names
    ``what`` and the bytes asked for (``requested``, or the size cupy reports) and free."""
    cupy = backend.cupy_module()
    if cupy is None:  # nothing can run out of GPU memory without cupy
        yield
        return
    try:
        yield
    except cupy.cuda.memory.OutOfMemoryError as error:
        raise gpu_out_of_memory_error(what, error, requested) from error


def reports_out_of_memory(launcher):
    """Decorate a launcher so that running out of GPU memory inside it names the launcher."""
    @functools.wraps(launcher)
    def run(*args, **kwargs):
        with reporting_out_of_memory(launcher.__name__):
            return launcher(*args, **kwargs)
    return run
