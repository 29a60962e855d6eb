"""Where arrays live and which implementation of an op runs: the one place that decides.

Every array in cnnlite is either a NumPy array (device ``"cpu"``) or a CuPy array (device
``"cuda"``). The choice is made per array, never by swapping a global module: ``array_module(a)``
returns the module that owns ``a`` and ops call ``xp.exp(...)`` on it.

Hot ops (im2col, pooling, LRN, ...) come in three implementations, registered by name:

* ``"reference"``: plain Python loops in ``cnnlite/reference``, the readable ground truth;
* ``"cpu"``: numba kernels in ``cnnlite/cpu``;
* ``"cuda"``: CUDA C kernels in ``kernels/*.cu``, launched from ``cnnlite/cuda``.

``kernel(name, array)`` picks the fast one for the array's device, unless the
``use_reference()`` context is active, which makes every op run its reference loops (that is
how the tests prove fast == reference through the whole autograd stack).

CuPy is imported lazily, the first time a GPU is asked about, so that cnnlite imports and runs
on machines without it.
"""
from __future__ import annotations

import contextlib
import importlib
import threading

import numpy as np

CUDA_INSTALL_HINT = (
    "install the GPU extra that matches your CUDA toolkit: "
    "pip install 'cnnlite[cuda12]' (CUDA 12.x) or pip install 'cnnlite[cuda13]' (CUDA 13.x)"
)

_cupy = None
_cupy_checked = False
_state = threading.local()


class DeviceError(RuntimeError):
    """Raised when arrays on different devices meet, or a device is not available."""


def cupy_module():
    """Return the ``cupy`` module, or ``None`` when it is not installed (imported once)."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            _cupy = importlib.import_module("cupy")
        except Exception:  # ImportError, or a broken CUDA install that fails at import time
            _cupy = None
    return _cupy


def cuda_available() -> bool:
    """True when cupy is installed and sees at least one GPU."""
    cp = cupy_module()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def is_cupy_array(a) -> bool:
    # Checked by module name so that no cupy import is needed to answer "no".
    return type(a).__module__.split(".")[0] == "cupy"


def device_of(a) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "cuda" if is_cupy_array(a) else "cpu"


def array_module(*arrays):
    """The array module (``numpy`` or ``cupy``) that owns ``arrays``; all must agree."""
    devices = {device_of(a) for a in arrays if a is not None}
    if len(devices) > 1:
        raise DeviceError(f"arrays on different devices: {sorted(devices)}")
    if devices == {"cuda"}:
        return cupy_module()
    return np


def check_device(device: str) -> str:
    """Normalise a device name (``"cpu"``, ``"cuda"``, ``"cuda:0"``) and check it is usable."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = device.split(":")[0]
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: cnnlite knows 'cpu' and 'cuda'")
    if name == "cuda" and not cuda_available():
        reason = "cupy is not installed" if cupy_module() is None else "cupy sees no GPU"
        raise DeviceError(f"device 'cuda' is not available ({reason}); {CUDA_INSTALL_HINT}")
    return name


def to_device(a, device: str):
    """Copy array ``a`` to ``device`` (no copy when it is already there)."""
    device = check_device(device)
    if device_of(a) == device:
        return a
    if device == "cuda":
        from cnnlite.cuda.memory import reporting_out_of_memory
        with reporting_out_of_memory(f"to_device {tuple(a.shape)} {a.dtype}", a.nbytes):
            return cupy_module().asarray(a)
    return a.get()


# ---------------------------------------------------------------------------------------------
# Kernel registry: name -> implementation, per implementation family.

_FAMILY_MODULES = {
    "reference": "cnnlite.reference",
    "cpu": "cnnlite.cpu",
    "cuda": "cnnlite.cuda",
}


_UNSET = object()


@contextlib.contextmanager
def _thread_setting(attribute: str, value):
    """This thread's ``_state.<attribute>`` is ``value`` inside the block, then what it was
    (unset again if it was unset, so that readers see their default)."""
    previous = getattr(_state, attribute, _UNSET)
    setattr(_state, attribute, value)
    try:
        yield
    finally:
        if previous is _UNSET:
            delattr(_state, attribute)
        else:
            setattr(_state, attribute, previous)


def _implementation() -> str | None:
    return getattr(_state, "implementation", None)


@contextlib.contextmanager
def use_kernels(family: str):
    """Run every hot op through the kernels of ``family`` inside this block, whatever the
    device of its arrays: ``"reference"`` (the loops), ``"cpu"`` (numba) or ``"cuda"`` (the CUDA
    launchers: on NumPy arrays only inside ``cnnlite.cuda.host.run_on_cpu``, which runs the
    kernels through the host harness)."""
    if family not in _FAMILY_MODULES:
        raise ValueError(f"use_kernels: expected one of {tuple(_FAMILY_MODULES)}, got {family!r}")
    with _thread_setting("implementation", family):
        yield


def use_reference():
    """Run every hot op through its readable reference loops inside this block.

    >>> with cl.backend.use_reference():
    ...     y = F.conv2d(x, w)      # im2col/col2im by the loops in cnnlite/reference
    """
    return use_kernels("reference")


def _family_kernels(array):
    """(family, its KERNELS dict) that serve ``array``: the reference loops inside
    ``use_reference()``, else the family of the array's device."""
    family = kernel_family(array)
    return family, importlib.import_module(_FAMILY_MODULES[family]).KERNELS


def kernel_family(array) -> str:
    """The family of kernels that serves ``array``: ``"reference"`` inside ``use_reference()``
    (or ``use_kernels("reference")``), else ``"cpu"`` or ``"cuda"`` (its device, or the family
    ``use_kernels`` named)."""
    return _implementation() or device_of(array)


def kernel(name: str, array):
    """The implementation of hot op ``name`` for ``array``'s device.

    Each family module exposes a dict ``KERNELS`` mapping op names to callables on raw arrays.
    """
    family, kernels = _family_kernels(array)
    if family == "reference" and is_cupy_array(array):
        raise DeviceError(f"{name}: the reference loops run on NumPy arrays only, got a cupy array")
    try:
        return kernels[name]
    except KeyError:
        raise NotImplementedError(f"no {family} implementation of kernel {name!r}") from None


def has_kernel(name: str, array) -> bool:
    """True when the family that ``kernel(name, array)`` would use implements ``name``.

    Optional fast paths ask this: the Winograd convolution exists on the numba CPU backend
    only, so elsewhere conv2d takes im2col.
    """
    return name in _family_kernels(array)[1]


CONV_ALGORITHMS = ("auto", "im2col", "winograd")


@contextlib.contextmanager
def conv_algorithm(name: str):
    """Choose how conv2d computes inside this block: ``"auto"`` (the default), ``"im2col"``
    or ``"winograd"`` (F(2x2, 3x3), wherever the layer allows it, on the CPU backend).

    >>> with cl.backend.conv_algorithm("im2col"):
    ...     y = F.conv2d(x, w, padding=1)    # im2col + GEMM even for a 3x3 layer
    """
    if name not in CONV_ALGORITHMS:
        raise ValueError(f"conv_algorithm: expected one of {CONV_ALGORITHMS}, got {name!r}")
    with _thread_setting("conv_algorithm", name):
        yield


def preferred_conv_algorithm() -> str:
    """The algorithm ``conv_algorithm`` chose for this thread (``"auto"`` outside it)."""
    return getattr(_state, "conv_algorithm", "auto")


def add_at(target, index, values):
    """``target[index] += values`` where repeated indices add up (``numpy.add.at``)."""
    if is_cupy_array(target):
        importlib.import_module("cupyx").scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


@contextlib.contextmanager
def cpu_threads(count: int | None):
    """Run the block with at most ``count`` threads in BLAS and in the numba kernels.

    ``None`` leaves the libraries' defaults (one thread per core). Small networks such as
    LeNet-5 run fastest on one thread: their matrices are too small to split, and waking the
    worker threads costs more than the arithmetic (far more when other programs keep the
    cores busy). The previous settings come back afterwards.
    """
    if count is None:
        yield
        return
    from cnnlite.validate import integer
    count = integer("cpu_threads", "count", count, minimum=1)
    import numba
    from threadpoolctl import threadpool_limits

    previous, previous_request = numba.get_num_threads(), requested_cpu_threads()
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
    _state.cpu_threads = count
    try:
        with threadpool_limits(limits=count):
            yield
    finally:
        numba.set_num_threads(previous)
        _state.cpu_threads = previous_request


def requested_cpu_threads() -> int | None:
    """The thread count ``cpu_threads`` set for this thread (``None`` outside it)."""
    return getattr(_state, "cpu_threads", None)
