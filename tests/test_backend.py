"""Devices and the kernel registry, on a machine without a GPU."""
import importlib.resources

import numpy as np
import pytest

import cnnlite as cl
from cnnlite import backend


class FakeGpuArray(np.ndarray):
    """A NumPy array that says it belongs to cupy: enough to test the device checks."""


FakeGpuArray.__module__ = "cupy"


def gpu_tensor(values):
    return cl.Tensor(np.asarray(values, dtype=np.float64).view(FakeGpuArray))


def test_cuda_is_not_available_without_cupy_or_gpu():
    if backend.cupy_module() is not None and backend.cuda_available():
        pytest.skip("this machine has a GPU; the no-GPU behaviour cannot be observed here")
    assert cl.cuda.is_available() is False


def test_asking_for_cuda_explains_how_to_install_the_extra():
    if cl.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(cl.DeviceError, match=r"pip install 'cnnlite\[cuda12\]'.*cuda13"):
        cl.tensor([1.0], device="cuda")
    with pytest.raises(cl.DeviceError, match="not available"):
        cl.tensor([1.0]).to("cuda")


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        cl.tensor([1.0], device="tpu")


def test_device_is_decided_per_array():
    assert cl.tensor([1.0]).device == "cpu"
    assert gpu_tensor([1.0]).device == "cuda"
    assert backend.array_module(np.ones(1)) is np


def test_mixing_devices_names_both():
    with pytest.raises(cl.DeviceError, match=r"Add: .*input 0 on cpu.*input 1 on cuda"):
        cl.tensor(np.ones(2)) + gpu_tensor([1.0, 2.0])


def test_cupy_is_not_imported_by_importing_cnnlite():
    import subprocess
    import sys
    code = "import sys, cnnlite; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_use_reference_switches_every_kernel_and_restores():
    assert backend._implementation() is None
    with backend.use_reference():
        assert backend._implementation() == "reference"
    assert backend._implementation() is None


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="no cpu implementation of kernel 'nope'"):
        backend.kernel("nope", np.ones(1))


def test_kernel_sources_are_package_data():
    folder = importlib.resources.files("cnnlite.kernels")
    assert folder.joinpath("__init__.py").is_file()
