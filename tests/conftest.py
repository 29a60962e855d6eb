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
def harness(tmp_path_factory):
    """The CUDA kernels built for the CPU (``cnnlite.cuda.host``), one build for the session."""
    compiler = host.compile_command()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no {compiler} on the PATH to build the CUDA-on-CPU harness")
    return host.HostKernels(host.build_once(tmp_path_factory.getbasetemp() / "cuda_on_cpu"))
