"""numba runs its parallel loops on TBB wherever the tbb package is installed (cnnlite.tbb), and
where it cannot, cnnlite says why once and keeps its numba kernels on one thread."""
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path

import numba
import numpy as np
import pytest

from cnnlite import backend, tbb
from cnnlite.cpu import parallel

ROOT = Path(__file__).parents[1]
needs_tbb_wheel = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not sys.platform.startswith("linux"),
    reason="the tbb wheel's library layout is checked on x86-64 Linux")


def run_python(code, python=sys.executable, env=None):
    """Run ``code`` in a fresh interpreter; its stdout (the test fails on a non-zero exit)."""
    env = {**os.environ, **(env or {})}
    env.pop("NUMBA_THREADING_LAYER", None)
    result = subprocess.run([str(python), "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def install_tbb_as_pip_would(site_packages: Path):
    """Copy the tbb distribution's dist-info and its libtbb into a virtual environment, at
    the places its RECORD names (the library in <venv>/lib, off the loader's search path)."""
    for file in metadata.distribution("tbb").files:
        if file.name == tbb.LIBRARY_NAME or ".dist-info" in file.parts[0]:
            target = (site_packages / file).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file.locate(), target)


@needs_tbb_wheel
def test_a_fresh_virtual_environment_runs_numba_on_its_own_tbb(tmp_path):
    """The install that failed for users: tbb's library in <venv>/lib, where the dynamic loader
    does not look. The child must map the venv's library and run numba on TBB."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site_packages = Path(run_python(
        "import sysconfig; print(sysconfig.get_paths()['purelib'])", python).strip())
    install_tbb_as_pip_would(site_packages)
    # Every other package (numpy, numba, cnnlite itself) from this environment, after the
    # venv's own site-packages, so that the venv's tbb is the one importlib.metadata finds.
    parents = [sysconfig.get_paths()["purelib"], str(ROOT)]
    (site_packages / "parent.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents) + "\n")

    mapped = run_python("""
        import numpy as np, numba
        import cnnlite
        from cnnlite.cpu import KERNELS
        KERNELS["im2col"](np.ones((8, 16, 32, 32)), 3, 3, (1, 1), (1, 1), (1, 1))
        print(numba.threading_layer())
        print(*sorted({line.split()[-1] for line in open("/proc/self/maps")
                       if "libtbb.so" in line}), sep="\\n")
    """, python).split()
    assert mapped[0] == "tbb"
    assert mapped[1:] == [str((venv / "lib" / tbb.LIBRARY_NAME).resolve())]


@needs_tbb_wheel
def test_the_library_is_loaded_before_numba_can_start_its_threads():
    """``numba.get_num_threads()`` starts numba's threads and fixes the layer: after
    ``import cnnlite`` it must already find TBB, before any kernel module is imported."""
    out = run_python("""
        import sys, cnnlite, numba
        assert "cnnlite.cpu" not in sys.modules
        numba.get_num_threads()
        print(numba.threading_layer())
    """)
    assert out.split() == ["tbb"]


FALLBACK = """
    import warnings
    from numba.np.ufunc import parallel
    def no_tbb():
        raise ImportError("libtbb.so.12: cannot open shared object file")
    parallel._check_tbb_version_compatible = no_tbb   # as on a machine without a TBB wheel
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numba, numpy as np
        import cnnlite
        from cnnlite.cpu import KERNELS
        from cnnlite import tbb, info
        KERNELS["im2col"](np.ones((8, 16, 32, 32)), 3, 3, (1, 1), (1, 1), (1, 1))
        tbb.status()
    print(numba.threading_layer())
    print(len([w for w in caught if issubclass(w.category, tbb.TBBWarning)]))
    print(caught[0].message)
    print(info.numba_line())
"""


def test_without_tbb_cnnlite_says_why_once_and_what_it_costs():
    layer, count, message, info_line = run_python(FALLBACK).strip().splitlines()
    assert layer != "tbb"
    assert count == "1"
    assert "libtbb.so.12: cannot open shared object file" in message
    assert "2.4x slower" in message and "one thread" in message
    assert "pip install tbb" in message
    assert f"threading layer {layer}" in info_line and "on one thread" in info_line


@numba.njit(parallel=True)
def _threads_seen(x):
    """numba's thread count inside a parallel kernel, written into every element."""
    for i in numba.prange(x.size):
        x[i] = numba.get_num_threads()
    return x


def test_kernels_run_on_one_thread_on_the_fallback_unless_the_user_asks(monkeypatch):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one core: nothing to choose")
    threads_seen = parallel.serial_when_small(_threads_seen)
    large = np.zeros(parallel.SERIAL_BELOW)
    monkeypatch.setattr(tbb, "parallel_by_default", lambda: True)
    assert threads_seen(large)[0] == numba.get_num_threads()
    assert threads_seen(np.zeros(parallel.SERIAL_BELOW // 2))[0] == 1
    monkeypatch.setattr(tbb, "parallel_by_default", lambda: False)
    assert threads_seen(large)[0] == 1
    with backend.cpu_threads(2):
        assert threads_seen(large)[0] == 2
    assert threads_seen(large)[0] == 1
