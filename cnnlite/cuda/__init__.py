"""The GPU side: asks whether a GPU is usable (importing cupy only when asked)."""
from cnnlite import backend


def is_available() -> bool:
    """True when cupy is installed and a CUDA GPU is visible."""
    return backend.cuda_available()


KERNELS = {}
