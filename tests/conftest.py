"""Hypothesis profiles: ``ci`` (few examples, chosen under CI=true), ``dev`` (the default) and
``thorough`` (many examples, for a run before a release: HYPOTHESIS_PROFILE=thorough pytest)."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

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
