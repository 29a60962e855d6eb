"""Out of GPU memory: an error that says how much was asked for and how much is free.

cupy's own message gives the size of the failed allocation only. Whether the fix is a smaller
batch, freeing arrays that are still referenced, or another process that holds the GPU, shows
only next to what the device has free (``cudaMemGetInfo``) and what cupy's memory pool keeps
cached for reuse.
"""
from __future__ import annotations

import contextlib
import functools

from cnnlite import backend


class GpuOutOfMemoryError(MemoryError):
    """An allocation on the GPU failed; the message has the numbers to decide what to do."""


def format_bytes(count: int) -> str:
    """``1234567890`` -> ``'1.15 GiB (1,234,567,890 bytes)'``."""
    value, unit = float(count), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    if unit == "bytes":
        return f"{count:,} bytes"
    return f"{value:.2f} {unit} ({count:,} bytes)"


def out_of_memory_message(what: str, requested: int | None, free: int, total: int,
                          pool_cached: int) -> str:
    """The message of a GpuOutOfMemoryError (the numbers as cudaMemGetInfo and cupy give them)."""
    asked = "an allocation" if requested is None else format_bytes(requested)
    return (f"{what}: out of GPU memory: asked for {asked}, {format_bytes(free)} free of "
            f"{format_bytes(total)} on the device, and {format_bytes(pool_cached)} cached in "
            f"cupy's memory pool (cupy.get_default_memory_pool().free_all_blocks() returns it "
            f"to the device); a smaller batch or fewer live arrays would fit")


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
        asked = requested if requested is not None else getattr(error, "_size", None)
        free, total = cupy.cuda.runtime.memGetInfo()
        cached = cupy.get_default_memory_pool().free_bytes()
        raise GpuOutOfMemoryError(out_of_memory_message(what, asked, free, total, cached)) \
            from error


def reports_out_of_memory(launcher):
    """Decorate a launcher so that running out of GPU memory inside it names the launcher."""
    @functools.wraps(launcher)
    def run(*args, **kwargs):
        with reporting_out_of_memory(launcher.__name__):
            return launcher(*args, **kwargs)
    return run
