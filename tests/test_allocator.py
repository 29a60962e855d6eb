"""cnnlite.allocator: after ``import cnnlite`` a freed array's memory is reused for the next one
instead of being page-faulted in again; ``CNNLITE_KEEP_FREED_MEMORY=0`` leaves malloc alone."""
import json
import os
import subprocess
import sys

import pytest

from cnnlite import allocator

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="the settings are glibc's")

# Makes and frees a 40 MiB array five times (above glibc's largest default mmap threshold, so
# by default each one is new memory from the kernel) and prints the page faults of the last four.
CHILD = """
import json, resource
import numpy as np
import cnnlite
def make():
    np.ones(10 * 2**20, np.float32)
make()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    make()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def page_faults(keep: str) -> int:
    env = dict(os.environ, CNNLITE_KEEP_FREED_MEMORY=keep)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_import_keeps_freed_memory_for_the_next_array_unless_asked_not_to():
    kept, default = page_faults("1"), page_faults("0")
    # Fresh memory takes a fault per page: 4 x 10240, or 4 x 20 where the kernel gives NumPy's
    # large arrays 2 MiB pages. Reused memory takes none.
    assert default >= 4 * 20
    assert kept < 10


def test_freed_memory_can_be_given_back():
    assert allocator.keep_freed_memory()
    assert isinstance(allocator.release_freed_memory(), bool)
