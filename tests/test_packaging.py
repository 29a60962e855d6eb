"""The installed package, not only a checkout, carries the CUDA sources."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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
