"""cnnlite.cpu.blas_threads: OpenBLAS's idle workers are sent away before numba's parallel
loops (from the main thread only), and the products after it still compute the same."""
import threading

import numpy as np
import pytest

from cnnlite.cpu import blas_threads, parallel
from cnnlite.cpu.activation import relu_backward
from cnnlite.cpu.conv_small import conv_small


@pytest.fixture
def parks(monkeypatch):
    """Counts the calls of every parker instead of ending OpenBLAS's threads."""
    calls = []
    monkeypatch.setattr(blas_threads, "parkers", lambda: (lambda: calls.append(1),))
    return calls


def test_a_long_parallel_kernel_parks_blas_first_and_shorter_ones_do_not(parks, monkeypatch):
    monkeypatch.setattr(parallel.tbb, "parallel_by_default", lambda: True)
    big = np.linspace(-1, 1, blas_threads.PARK_FROM // 2, dtype=np.float32)
    relu_backward(big, big)  # x and dL/dy: PARK_FROM elements
    assert len(parks) == 1
    medium = big[:parallel.SERIAL_BELOW]
    relu_backward(medium, medium)  # parallel, but over before a restart of BLAS would pay
    small = big[:10]
    relu_backward(small, small)  # runs on the calling thread: nothing to make room for
    assert len(parks) == 1


def test_the_direct_convolution_parks_for_its_multiply_adds_not_its_few_elements(parks,
                                                                                monkeypatch):
    monkeypatch.setattr(parallel.tbb, "parallel_by_default", lambda: True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 128, 7, 7)).astype(np.float32)  # DenseNet's last block
    w = rng.standard_normal((32, 128, 3, 3)).astype(np.float32)
    assert x.size + w.size + 8 * 32 * 7 * 7 < blas_threads.PARK_FROM
    conv_small(x, w, None, (1, 1), (1, 1))
    assert len(parks) == 1


def test_only_the_main_thread_parks(parks):
    thread = threading.Thread(target=blas_threads.park)
    thread.start()
    thread.join()
    assert parks == []
    blas_threads.park()
    assert parks == [1]


def test_the_environment_variable_turns_it_off(monkeypatch):
    blas_threads.parkers.cache_clear()
    monkeypatch.setenv(blas_threads.ENVIRONMENT_VARIABLE, "0")
    try:
        assert blas_threads.parkers() == ()
    finally:
        blas_threads.parkers.cache_clear()


def test_products_after_parking_are_unchanged():
    """The real shutdown, where NumPy's BLAS is OpenBLAS on pthreads: the workers start again
    at the next product, which must give the same numbers."""
    blas_threads.parkers.cache_clear()
    if not blas_threads.parkers():
        pytest.skip("NumPy's BLAS here is not OpenBLAS on pthreads")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 200)), rng.standard_normal((200, 400))
    before = a @ b
    for _ in range(3):
        blas_threads.park()
        np.testing.assert_array_equal(a @ b, before)
