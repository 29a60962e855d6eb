"""Hypothesis profiles: ``ci`` (few examples, chosen under CI=true), ``dev`` (the default) and
``thorough`` (many examples, for a run before a release: HYPOTHESIS_PROFILE=thorough pytest)."""
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from cnnlite.cuda import host

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=10, derandomize=True, **_common)
settings.register_profile("dev", max_examples=30, **_common)
settings.register_profile("thorough", max_examples=300, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or
                      ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def rng():
    """A seeded NumPy generator, so every test draws the same numbers on every run."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def harness_library(tmp_path_factory):
    """The path of the CUDA kernels built for the CPU (``cnnlite.cuda.host``), one build for the
    session; the test is skipped where there is no compiler to build it."""
    compiler = host.compile_command()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no {compiler} on the PATH to build the CUDA-on-CPU harness (set $CXX to "
                    f"another C++20 compiler)")
    return host.build_once(tmp_path_factory.getbasetemp() / "cuda_on_cpu")


@pytest.fixture(scope="session")
def harness(harness_library):
    """The CUDA kernels built for the CPU, loaded once for the session."""
    return host.HostKernels(harness_library)


@pytest.fixture
def on_harness(harness_library):
    """Inside the test the launchers of ``cnnlite.cuda`` run on the CPU harness: 3 blocks of 32
    threads (the grid-stride loops go round several times on any input), and ``.launched``
    records this test's launches alone."""
    with host.run_on_cpu(host.HostKernels(harness_library)) as kernels:
        yield kernels
