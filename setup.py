"""Packaging for cnnlite. ``pip install -e '.[test]'`` for development."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
LINUX_X86_64 = "platform_system == 'Linux' and platform_machine == 'x86_64'"

setup(
    name="cnnlite",
    version="0.1.0",
    description="A small, readable CNN framework on NumPy with hand-written kernels, for learning",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cnnlite", "cnnlite.*"]) + ["cnnlite.kernels"],
    # The CUDA sources live in the top-level kernels/ folder and install as cnnlite/kernels,
    # so an installed wheel finds them as package data.
    package_dir={"cnnlite.kernels": "kernels"},
    # host/ holds the harness that runs the kernels on the CPU (for tests and for stepping
    # through a kernel without a GPU).
    package_data={"cnnlite.kernels": ["*.cu", "*.cuh", "*.h", "host/*.h", "host/*.cpp"],
                  "cnnlite.experiments": ["sweeps/*.toml"],
                  "cnnlite.assignment": ["assignments/*.toml"]},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # The 8x8 hand-written digits of the demo ship inside scikit-learn: real data, no download.
        "scikit-learn>=1.3",
        # Decoding PNG/JPEG files for ImageFolder: a codec is not what this project teaches.
        "pillow>=10",
        # Weights in the format PyTorch/torchvision publish them, read and written without
        # pickle (cnnlite.io): a weights file can never run code.
        "safetensors>=0.4",
        # Sweeps of training runs on many processes or machines (cnnlite sweep --workers /
        # --scheduler): Dask's scheduler retries the runs of a worker that dies, which a pool of
        # our own would have to reimplement.
        "dask[distributed]>=2026.8.0",
        # Sweep files are TOML: tomllib is in the standard library from Python 3.11.
        'tomli>=2.0; python_version < "3.11"',
        # Drawing the autograd graph (cnnlite.viz.draw_graph) as SVG: the Python package writes
        # the dot language and runs Graphviz's `dot` program when the system has it; without
        # `dot`, cnnlite lays the graph out itself with matplotlib.
        "graphviz>=0.20",
        # Limits BLAS threads alongside numba's (cnnlite.backend.cpu_threads).
        "threadpoolctl>=3",
        # numba runs its parallel loops on TBB's workers when TBB is installed. Its default
        # without TBB, OpenMP, keeps idle workers spinning after each loop, and on 2 cores they
        # take a core from the BLAS product that follows: conv2d forward + backward ran 2.4x
        # slower. The wheel puts libtbb in <prefix>/lib, off the loader's path in a virtual
        # environment: cnnlite/tbb.py loads it from there. TBB is also safe with threads and fork.
        "tbb>=2021.6; platform_machine == 'x86_64' or platform_machine == 'AMD64'",
    ],
    extras_require={
        # torch is the reference the tests compare against; 2.13.0 is the CPU build these
        # machines carry (a looser pin could pull several GB of CUDA packages).
        # nbclient/nbformat/ipykernel execute the notebooks in the test suite.
        # NVRTC of CUDA 12 and 13, the compilers cupy runs, as plain libraries (no GPU, no
        # toolkit): tests/test_cuda_nvrtc.py compiles every kernel with them for the GPUs we
        # support, the only check of that on a machine without a GPU, CI's included. About
        # 150 MB to download (360 MB installed), so Linux x86-64 only, where CI runs.
        "test": ["pytest>=7", "hypothesis>=6.80", "torch==2.13.0",
                 "nbclient>=0.9", "nbformat>=5.9", "ipykernel>=6.25",
                 "nvidia-cuda-nvrtc-cu12>=12.0; " + LINUX_X86_64,
                 "nvidia-cuda-nvrtc>=13.0,<14; " + LINUX_X86_64],
        "cuda12": ["cupy-cuda12x>=13"],
        "cuda13": ["cupy-cuda13x>=13.6"],
    },
    entry_points={"console_scripts": ["cnnlite=cnnlite.cli:main"]},
)
