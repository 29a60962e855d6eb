"""Model weights in files: safetensors to save and load, PyTorch's ``.pth`` to load.

A model's weights are its ``state_dict()``: dotted names (``features.0.weight``) mapped to
arrays. Two file formats carry such a dict:

safetensors
    A small JSON header (every tensor's name, dtype, shape and byte range, plus optional text
    metadata) followed by the raw bytes of the tensors. Reading it parses JSON and copies
    bytes; nothing in the file is ever executed, so a file from anywhere is safe to open. This
    is what ``save_weights`` writes, and it needs no PyTorch.

``.pth`` / ``.pt``
    What ``torch.save`` writes: a pickle (inside a zip archive). Unpickling can call any
    function the file names, so a plain ``pickle.load`` of a stranger's file can run their
    code. PyTorch's ``weights_only=True`` unpickler builds only tensors and plain containers
    and refuses everything else; ``load_weights`` always reads through it, and only when
    torch is installed. torchvision's pretrained weights come in this format.

The keys are PyTorch's, so torchvision's weights load into the cnnlite model of the same
architecture unchanged::

    state = load_weights("resnet18-f37072fd.pth")
    load_weights_into(models.resnet18(), state)
    save_weights(model, "resnet18.safetensors")     # from now on no torch needed
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Mapping

import numpy as np

from cnnlite import backend
from cnnlite.checkpoint import atomic_write
from cnnlite.nn.module import Module
from cnnlite.nn.state_dict import LoadReport, StateDictError
from cnnlite.tensor import Tensor

__all__ = ["WeightsError", "save_weights", "load_weights", "load_weights_into",
           "read_metadata"]

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
# Keys under which training scripts commonly nest the weights inside a larger checkpoint.
NESTED_STATE_KEYS = ("state_dict", "model")


class WeightsError(ValueError):
    """A weights file that cannot be written or read; the message names the file."""


# ---------------------------------------------------------------------------------------------
# Saving.


def _host_array(value, key: str) -> np.ndarray:
    """One state-dict value as a NumPy array: cnnlite Tensors, CuPy arrays and PyTorch's CPU
    tensors alike. 0-d arrays stay 0-d (``num_batches_tracked`` is a 0-d int64)."""
    if isinstance(value, Tensor):
        return value.numpy()
    if backend.is_cupy_array(value):
        return value.get()
    if hasattr(value, "detach"):  # a torch.Tensor, possibly one that requires grad
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise WeightsError(f"cannot save {key!r}: weights are real numbers, got an array of "
                           f"dtype {array.dtype}")
    return array


def save_weights(model_or_state_dict: Module | Mapping, path: str | os.PathLike,
                 metadata: Mapping[str, str] | None = None) -> None:
    """Write a model's weights to ``path`` as a ``.safetensors`` file, atomically.

    Parameters
    ----------
    model_or_state_dict : Module or mapping of str to array
        A model (its ``state_dict()`` is saved) or a state dict itself; values may be NumPy
        arrays, cnnlite Tensors or PyTorch tensors.
    path : str or PathLike
        The file to write; its folder is created when missing. An existing file is replaced
        only once the new one is completely on disk, so a crash leaves the old weights.
    metadata : mapping of str to str, optional
        Free text stored in the file's header (the architecture's name, where the weights come
        from, ...); ``read_metadata`` gives it back.

    Every dtype round-trips exactly, integer buffers and 0-d arrays included.
    """
    import safetensors.numpy

    where = os.fspath(path)
    if isinstance(model_or_state_dict, Module):
        state = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        state = model_or_state_dict
    else:
        raise TypeError(f"save_weights({where}): expected a Module or a state dict, got "
                        f"{type(model_or_state_dict).__name__}")
    bad_keys = [key for key in state if not isinstance(key, str)]
    if bad_keys:
        raise WeightsError(f"cannot save {where}: keys must be strings, got {bad_keys[:5]}")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in metadata.items()):
        raise WeightsError(f"cannot save {where}: metadata maps strings to strings, got "
                           f"{dict(metadata)!r}")
    arrays = {key: _host_array(value, key) for key, value in state.items()}
    contents = safetensors.numpy.save(arrays, metadata=dict(metadata) if metadata else None)
    atomic_write(where, lambda file: file.write(contents))


# ---------------------------------------------------------------------------------------------
# Loading.


def _checked_file(path) -> str:
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"weights file {where} does not exist")
    if os.path.isdir(where):
        raise WeightsError(f"{where}: a folder, not a weights file")
    return where


def _looks_like_safetensors(where: str) -> bool:
    """safetensors begins with the header's length (8 bytes, little-endian), then ``{``."""
    with open(where, "rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _file_format(where: str) -> str:
    """``"safetensors"`` or ``"torch"``: from the name's suffix, or else from the first bytes."""
    suffix = os.path.splitext(where)[1].lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if _looks_like_safetensors(where):
        return "safetensors"
    raise WeightsError(f"{where}: not a weights file cnnlite reads: expected a .safetensors "
                       f"file or a PyTorch {'/'.join(TORCH_SUFFIXES)} file")


def _load_safetensors(where: str) -> "OrderedDict[str, np.ndarray]":
    import safetensors.numpy
    from safetensors import SafetensorError

    try:
        arrays = safetensors.numpy.load_file(where)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise WeightsError(f"{where}: not a safetensors file, or a truncated or damaged one "
                           f"({error})") from None
    # The file keeps no order (it groups tensors by dtype): sorted by name, the same every time.
    return OrderedDict(sorted(arrays.items()))


def _what_went_wrong(error: Exception) -> str:
    """``Type: what the message says is wrong``. From the weights-only unpickler that is the
    paragraph after "WeightsUnpickler error:"; the message's first line suggests loading the
    file without the restriction, the one thing not to do with a file that fails to load."""
    message = str(error)
    marker = "WeightsUnpickler error:"
    if marker in message:
        message = message.split(marker, 1)[1].strip().split("\n\n")[0]
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return ": ".join([type(error).__name__, *lines[:1]])


def _torch_state_dict(loaded, where: str) -> Mapping:
    """The state dict inside what ``torch.load`` returned: the dict itself, or the dict held
    under ``"state_dict"`` or ``"model"`` by a training checkpoint."""
    import torch

    def holds_only_tensors(value) -> bool:
        return isinstance(value, Mapping) and all(isinstance(v, torch.Tensor)
                                                  for v in value.values())

    if holds_only_tensors(loaded):
        return loaded
    if isinstance(loaded, Mapping):
        for key in NESTED_STATE_KEYS:
            if holds_only_tensors(loaded.get(key)):
                return loaded[key]
        raise WeightsError(f"{where}: no state dict found: the file holds a dict with keys "
                           f"{list(loaded)[:10]}, neither all tensors nor a state dict under "
                           f"{' or '.join(repr(k) for k in NESTED_STATE_KEYS)}")
    raise WeightsError(f"{where}: no state dict found: the file holds a "
                       f"{type(loaded).__name__}, not a dict of tensors")


def _load_torch(where: str) -> "OrderedDict[str, np.ndarray]":
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{where}: reading a PyTorch file needs torch (pip install torch); "
                           f"or convert it once, where torch is installed, with "
                           f"cnnlite.io.save_weights(cnnlite.io.load_weights(path), "
                           f"'weights.safetensors')") from None
    try:
        loaded = torch.load(where, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged pickle can fail with almost any error inside torch
        # The weights-only unpickler names the function or class it would not build.
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused:
            raise WeightsError(f"{where}: refused: the file names {refused.group(1)}, which is "
                               f"no tensor type; building it could run code hidden in the file, "
                               f"so only tensors and plain containers are read") from None
        raise WeightsError(f"{where}: not a PyTorch weights file, or a truncated or damaged "
                           f"one ({_what_went_wrong(error)})") from None
    state = _torch_state_dict(loaded, where)
    # NumPy has no bfloat16; widening to float32 is exact.
    return OrderedDict((key, (tensor.float() if tensor.dtype == torch.bfloat16 else tensor)
                        .detach().numpy().copy())
                       for key, tensor in state.items())


def load_weights(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """Read the weights in ``path`` as a dict of name -> NumPy array.

    Parameters
    ----------
    path : str or PathLike
        A ``.safetensors`` file (read without torch), or a PyTorch ``.pth``/``.pt``/``.bin``
        file (read through ``torch.load(..., weights_only=True)``, so torch must be installed)
        holding a state dict, or a training checkpoint with the state dict under
        ``"state_dict"`` or ``"model"``. Another suffix is read as safetensors if the file
        begins like one.

    Returns
    -------
    OrderedDict of str to numpy.ndarray
        The weights with their stored dtypes and shapes (safetensors keeps no order: its keys
        come back sorted by name); bfloat16 tensors of a ``.pth`` come back as float32.

    Raises
    ------
    FileNotFoundError
        When there is no file at ``path``.
    WeightsError
        When the file is not a weights file, is truncated or damaged, holds objects other than
        tensors (refused unread), or is a ``.pth`` and torch is not installed.
    """
    where = _checked_file(path)
    if _file_format(where) == "safetensors":
        return _load_safetensors(where)
    return _load_torch(where)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text metadata of a ``.safetensors`` file (``{}`` when it has none)."""
    from safetensors import SafetensorError, safe_open

    where = _checked_file(path)
    try:
        with safe_open(where, framework="np") as file:
            return dict(file.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{where}: not a safetensors file, or a truncated or damaged one "
                           f"({error})") from None


def load_weights_into(model: Module, source: str | os.PathLike | Mapping,
                      strict: bool = True) -> LoadReport:
    """Load weights from a file or a state dict into ``model``, through ``load_state_dict``.

    Parameters
    ----------
    model : Module
        The model to fill; its architecture must match the weights.
    source : str, PathLike or mapping of str to array
        A weights file (see ``load_weights``) or a state dict.
    strict : bool
        ``True``: every key must match in name and shape, or ``StateDictError`` lists the
        missing, unexpected and mis-shaped keys and the model is left exactly as it was.
        ``False``: the matching entries load and the others are skipped (fine-tuning with a
        new classifier).

    Returns
    -------
    LoadReport
        The missing, unexpected and mis-shaped keys.
    """
    if isinstance(source, Mapping):
        return model.load_state_dict(source, strict=strict)
    state = load_weights(source)
    try:
        return model.load_state_dict(state, strict=strict)
    except StateDictError as error:
        raise StateDictError(f"{os.fspath(source)}: {error}") from None
