"""The installed package, not only a checkout, carries the CUDA sources and the libraries it
depends on."""
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numba
import numpy as np
import pytest

from cnnlite.cpu import KERNELS as CPU_KERNELS

ROOT = Path(__file__).parents[1]


def test_the_wheel_ships_every_kernel_source(tmp_path):
    # Build from a clean copy: a build/ folder left by an earlier build would hide a file that
    # setup.py no longer lists.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", "runs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("cnnlite-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.relative_to(ROOT / "kernels").as_posix()
                     for p in (ROOT / "kernels").rglob("*") if p.suffix in (".cu", ".cuh", ".h",
                                                                            ".cpp"))
    assert sources, "no kernel sources found in kernels/"
    missing = [s for s in sources if f"cnnlite/kernels/{s}" not in names]
    assert not missing, f"kernel sources missing from the wheel: {missing}"
    assert "cnnlite/train/loop.py" in names and "cnnlite/cuda/module.py" in names


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="TBB wheels exist for x86-64 only; numba picks another layer there")
def test_numba_runs_its_parallel_loops_on_tbb():
    """setup.py installs TBB so that numba's idle workers sleep instead of spinning (see the
    comment there); a fresh install without it would quietly be 1.4x slower at conv2d."""
    x = np.random.default_rng(0).standard_normal((8, 16, 32, 32))
    CPU_KERNELS["im2col"](x, 3, 3, (1, 1), (1, 1), (1, 1))  # large enough to run in parallel
    assert numba.threading_layer() == "tbb"


def readme_commands():
    """The shell commands of the README's "Two commands" section, as a user types them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_commands_in_a_fresh_virtual_environment():
    commands = readme_commands()
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    venv_line = ci.index(next(line for line in ci if "-m venv" in line))
    activate_line = ci.index(next(line for line in ci if "/bin/activate" in line))
    positions = [ci.index(command) for command in commands]  # verbatim, each on its own line
    assert venv_line < activate_line < positions[0] < positions[1]


# --- import cnnlite prints nothing, in a script or in Jupyter -----------------------------------

# Run in a fresh interpreter: what ``import cnnlite`` warns or prints, as a list of lines.
_IMPORT_AND_REPORT = """
import sys, types, warnings
{setup}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import cnnlite
    from cnnlite.train import loop
print("\\n".join(f"warning: {{w.category.__name__}}: {{w.message}}" for w in caught))
print("bar:", loop.tqdm.__module__)
"""

# What tqdm.auto takes for a Jupyter kernel: IPython imported and ipykernel's shell module
# loaded; and ipywidgets missing (None in sys.modules makes its import fail).
_FAKE_KERNEL_WITHOUT_WIDGETS = """
import IPython
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
sys.modules["ipywidgets"] = None
"""


def _import_cnnlite(setup: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error", "-c",
                           _IMPORT_AND_REPORT.format(setup=setup)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_import_cnnlite_warns_nothing_in_a_script():
    result = _import_cnnlite("")
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stdout and result.stderr == ""


def test_import_cnnlite_in_a_kernel_without_ipywidgets_uses_the_text_bar_silently():
    """tqdm.auto would warn "IProgress not found. Please update jupyter and ipywidgets"."""
    result = _import_cnnlite(_FAKE_KERNEL_WITHOUT_WIDGETS)
    assert result.returncode == 0, result.stderr
    assert "warning:" not in result.stdout, result.stdout
    assert "IProgress" not in result.stderr and result.stderr == ""
    assert "bar: tqdm.std" in result.stdout


def test_import_cnnlite_in_a_real_notebook_cell_writes_nothing_to_stderr(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import cnnlite\nfrom cnnlite.train.progress import tqdm\nprint(tqdm.__module__)")])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    assert [o for o in outputs if o.get("name") == "stderr"] == []
    shown = "".join(o.get("text", "") for o in outputs)
    assert shown.strip() in ("tqdm.std", "tqdm.notebook")  # a widget bar where one can be drawn
