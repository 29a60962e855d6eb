"""Checkpoints: a training state saved as a NumPy ``.npz`` archive, never as a pickle.

A training state is a nested structure of dicts, lists and tuples whose leaves are arrays,
numbers, strings or ``None`` (a model's ``state_dict()``, an optimiser's, the loader's RNG
state, ...). ``save`` flattens it: every array becomes one archive entry named by its path,
joined with ``/``::

    {"model": {"features.0.weight": w}, "optim": {"state": {3: {"momentum_buffer": m}}}}
    -> entries "model/features.0.weight" and "optim/state/3/momentum_buffer"

Python numbers become 0-d arrays. One more entry, ``__meta__``, holds a JSON text with the
format name and version and the *skeleton*: the nesting with its container types and key
types (an optimiser's ``state`` is keyed by ints), plus the few leaves an array cannot hold
exactly (strings, ``None``, the 128-bit integers of a random generator's state). ``load``
rebuilds the structure from the skeleton. The archive is read with ``allow_pickle=False``, so
opening a checkpoint can never run code hidden in it.

Writes are atomic: the archive goes to a temporary file in the same folder, is flushed to
disk, and only then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
A crash mid-write leaves the previous checkpoint untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile

import numpy as np

from cnnlite import backend
from cnnlite.tensor import Tensor

FORMAT_NAME = "cnnlite-checkpoint"
FORMAT_VERSION = 1
META_KEY = "__meta__"
SEPARATOR = "/"
_INT64 = np.iinfo(np.int64)


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, read, or loaded into the objects it is meant for.

    The message names the file and says what is wrong (and which keys, where keys disagree).
    """


# ---------------------------------------------------------------------------------------------
# Atomic file writes.


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(folder: str) -> None:
    """Make the rename itself durable (POSIX only: Windows cannot open a folder)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file lives in the same folder because a rename is only atomic within one
    file system. Until ``os.replace`` runs, ``path`` still holds its old contents; if ``write``
    (or anything before the rename) fails, the temporary file is removed and the error raised.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file private (0600); give it the permissions of a normal new file.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(folder)


# ---------------------------------------------------------------------------------------------
# Nested structure <-> flat archive entries plus a JSON skeleton.


def _as_numpy(value):
    """A leaf array on the host: Tensors give their data, CuPy arrays are copied back."""
    if isinstance(value, Tensor):
        value = value.data
    if backend.is_cupy_array(value):
        value = backend.to_device(value, "cpu")
    return value


def _flatten(value, path, entries):
    """The skeleton of ``value``; its arrays are added to ``entries`` under their paths."""
    key = SEPARATOR.join(path)
    value = _as_numpy(value)
    if isinstance(value, dict):
        items = []
        for child_key, child in value.items():
            if not isinstance(child_key, (str, int)) or isinstance(child_key, bool):
                raise CheckpointError(f"cannot save key {child_key!r} at '{key}': keys must be "
                                      f"strings or ints")
            if SEPARATOR in str(child_key) or str(child_key) in ("", META_KEY):
                raise CheckpointError(f"cannot save key {child_key!r} at '{key}': keys may not "
                                      f"be empty, contain '{SEPARATOR}' or be '{META_KEY}'")
            items.append([child_key, _flatten(child, path + [str(child_key)], entries)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_flatten(child, path + [str(i)], entries)
                       for i, child in enumerate(value)]}
    if value is None or isinstance(value, str):
        return {"value": value}
    # NumPy first: np.float64 is also a Python float, and must come back as np.float64.
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.hasobject:
            raise CheckpointError(f"cannot save '{key}': arrays of Python objects would need "
                                  f"pickle; store numbers, strings or nested dicts instead")
        array, kind = np.asarray(value), "array" if isinstance(value, np.ndarray) else "numpy"
    elif isinstance(value, bool) or (isinstance(value, int)
                                     and _INT64.min <= value <= _INT64.max):
        array, kind = np.asarray(value), type(value).__name__
    elif isinstance(value, int):  # too big for int64 (random generator states): exact in JSON
        return {"value": value}
    elif isinstance(value, float):
        array, kind = np.asarray(value, dtype=np.float64), "float"
    else:
        raise CheckpointError(f"cannot save '{key}': values of type {type(value).__name__} are "
                              f"not supported (use arrays, numbers, strings, None, dicts, lists)")
    if key in entries:
        raise CheckpointError(f"two values would be saved under the same name '{key}' (a dict "
                              f"has both the int and the string form of a key)")
    entries[key] = array
    return {kind: key}


def _unflatten(skeleton, archive, used):
    """Rebuild the nested structure described by ``skeleton`` from the archive's entries."""
    (kind, content), = skeleton.items()
    if kind == "dict":
        return {key: _unflatten(child, archive, used) for key, child in content}
    if kind in ("list", "tuple"):
        items = [_unflatten(child, archive, used) for child in content]
        return items if kind == "list" else tuple(items)
    if kind == "value":
        return content
    if content not in archive:
        raise KeyError(f"the entry '{content}' named in the metadata is missing")
    used.add(content)
    array = archive[content]
    if kind == "array":
        return array
    if kind == "numpy":
        return array[()]
    return {"int": int, "float": float, "bool": bool}[kind](array.item())


def save(path, state: dict) -> None:
    """Write the nested training ``state`` to ``path`` (an ``.npz`` archive), atomically.

    Parameters
    ----------
    path : str or PathLike
        The checkpoint file; its folder is created when missing. An existing file is replaced
        only once the new one is completely on disk.
    state : dict
        Nested dicts/lists/tuples of arrays (or Tensors), numbers, strings and ``None``.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{os.fspath(path)}: a checkpoint holds a dict, got "
                              f"{type(state).__name__}")
    entries = {}
    skeleton = _flatten(state, [], entries)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "skeleton": skeleton}
    entries[META_KEY] = np.array(json.dumps(meta))
    atomic_write(path, lambda file: np.savez(file, allow_pickle=False, **entries))


def _read_meta(archive, where):
    if META_KEY not in archive.files:
        raise CheckpointError(f"{where}: not a cnnlite checkpoint (no '{META_KEY}' entry)")
    try:
        meta = json.loads(str(archive[META_KEY]))
    except ValueError as error:
        raise CheckpointError(f"{where}: the metadata entry is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{where}: not a cnnlite checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else meta!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: checkpoint format version {meta.get('version')!r}; "
                              f"this cnnlite reads version {FORMAT_VERSION}")
    return meta


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # how every .npz (a zip archive) begins


def _starts_like_an_npz(where) -> bool:
    """Checked before ``np.load``, which takes any other file for a pickle and would answer
    with a message about ``allow_pickle`` instead of saying the file is wrong."""
    with open(where, "rb") as file:
        return file.read(4) in _ZIP_MAGIC


def load(path) -> dict:
    """Read a checkpoint written by ``save`` back into its nested structure.

    Raises
    ------
    FileNotFoundError
        When there is no file at ``path``.
    CheckpointError
        When the file is truncated, corrupted or not a cnnlite checkpoint (not even an
        ``.npz`` archive); the message names the file and what is wrong.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"checkpoint {where} does not exist")
    if os.path.isdir(where):
        raise CheckpointError(f"{where}: a folder, not a checkpoint file (a run writes "
                              f"checkpoint.npz inside its --out folder)")
    try:
        if not _starts_like_an_npz(where):
            raise CheckpointError(f"{where}: not a cnnlite checkpoint, or a damaged one: the "
                                  f"file is not an .npz archive")
        with np.load(where, allow_pickle=False) as archive:
            meta = _read_meta(archive, where)
            used = set()
            state = _unflatten(meta["skeleton"], archive, used)
            unexplained = sorted(set(archive.files) - used - {META_KEY})
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError, TypeError,
            AttributeError) as error:
        raise CheckpointError(f"{where}: the checkpoint is corrupted or truncated and cannot be "
                              f"read ({type(error).__name__}: {error})") from None
    if unexplained:
        raise CheckpointError(f"{where}: entries not described by the metadata: "
                              f"{_listing(unexplained)}")
    return state


# ---------------------------------------------------------------------------------------------
# Checking a loaded state against the object it is meant for, before anything is changed.


def _listing(keys, limit=8):
    shown = ", ".join(str(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_state_dict(expected: dict, loaded: dict, where: str, what: str = "model") -> None:
    """Raise ``CheckpointError`` unless ``loaded`` has exactly the keys and shapes of ``expected``.

    ``expected`` is the target's own ``state_dict()``; the message lists the missing keys, the
    unexpected keys and the shape mismatches, so a wrong architecture is found before a single
    weight is overwritten.
    """
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(np.shape(_as_numpy(loaded[k])))} vs {what} "
                  f"{tuple(np.shape(_as_numpy(expected[k])))}"
                  for k in expected if k in loaded
                  and np.shape(_as_numpy(loaded[k])) != np.shape(_as_numpy(expected[k]))]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{where}: the checkpoint does not fit the {what} "
                              f"({'; '.join(problems)})")
