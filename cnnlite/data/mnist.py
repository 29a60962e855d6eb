"""MNIST: 70,000 hand-written digits, 28 x 28 grey levels, in the IDX file format.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the values:

    magic = 0x00 0x00 <type code> <number of dimensions>      (type 0x08: unsigned bytes)
    train-images-idx3-ubyte: magic 2051 = 0x0803, then 60000, 28, 28, then 60000*28*28 bytes
    train-labels-idx1-ubyte: magic 2049 = 0x0801, then 60000, then 60000 bytes (0..9)

The files may be gzipped (``.gz``, as they are distributed) or not.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from cnnlite.data.dataset import TensorDataset
from cnnlite.data.download import (DataFileError, DownloadError, download_file,
                                   folder_path, missing_files_error)
from cnnlite.validate import boolean

__all__ = ["MNIST", "read_idx"]

# Type codes of the IDX format; multi-byte values are big-endian.
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in ``.gz``) into an array.

    Raises ``DataFileError`` (a ``ValueError``) naming the file when it cannot be decompressed
    (corrupt or truncated ``.gz``), when the magic number is not ``expected_magic`` (or not an
    IDX magic at all), or when the data does not match the header's shape.
    """
    path = Path(path)
    content = _read_bytes(path)
    if len(content) < 4:
        raise DataFileError(f"{path}: too short for an IDX file ({len(content)} bytes)")
    (magic,) = struct.unpack(">I", content[:4])
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or type_code not in _IDX_TYPES:
        raise DataFileError(f"{path}: not an IDX file (magic number {magic:#010x})")
    if expected_magic is not None and magic != expected_magic:
        raise DataFileError(f"{path}: magic number {magic} ({magic:#06x}), expected "
                            f"{expected_magic} ({expected_magic:#06x}); is it the right file?")
    header_end = 4 + 4 * ndim
    if len(content) < header_end:
        raise DataFileError(f"{path}: the header announces {ndim} dimensions but the file "
                            f"ends after {len(content)} bytes; is it truncated?")
    shape = struct.unpack(f">{ndim}I", content[4:header_end])
    dtype = _IDX_TYPES[type_code]
    expected_bytes = math.prod(shape) * dtype.itemsize   # Python ints: no overflow
    if len(content) - header_end != expected_bytes:
        raise DataFileError(f"{path}: header says shape {shape} ({expected_bytes} bytes of "
                            f"data), the file holds {len(content) - header_end}; is it "
                            f"truncated?")
    values = np.frombuffer(content, dtype=dtype, offset=header_end).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    if path.suffix != ".gz":
        with open(path, "rb") as file:
            return file.read()
    try:
        with gzip.open(path, "rb") as file:
            return file.read()
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise DataFileError(f"{path}: cannot be decompressed, the .gz file is corrupt or "
                            f"truncated ({type(error).__name__}: {error}); delete it and "
                            f"download it again") from None


class MNIST(TensorDataset):
    """The MNIST digits: images (1, 28, 28) uint8 (0 = background), labels 0..9.

    Parameters
    ----------
    root : folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` (a ``MNIST/raw``
        sub-folder, where other libraries put them, is searched too).
    train : the 60,000 training images, or the 10,000 test images.
    download : fetch the missing files into ``root`` (and check their MD5 checksums).
    transform : applied to each image; ``transforms.ToFloat()`` scales it to [0, 1].

    Attributes: ``images`` (N, 1, 28, 28) uint8, ``labels`` (N,) int64, ``classes``.
    """

    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
               "http://yann.lecun.com/exdb/mnist/")
    md5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
           "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
           "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
           "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    classes = [str(digit) for digit in range(10)]

    def __init__(self, root, train: bool = True, download: bool = False,
                 transform: Callable | None = None):
        train, download = boolean("MNIST", "train", train), boolean("MNIST", "download", download)
        self.root, self.train = folder_path("MNIST", root), train
        prefix = "train" if train else "t10k"
        names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        found = self._find(names)
        if None in found and download:
            found = self._download(names, found)
        if None in found:
            raise self._missing_error(names, found) from None
        images = read_idx(found[0], expected_magic=2051)
        labels = read_idx(found[1], expected_magic=2049)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(f"MNIST: {found[0]} holds images {images.shape} and {found[1]} "
                                f"labels {labels.shape}; expected (N, H, W) and (N,)")
        super().__init__(images[:, None], labels.astype(np.int64), transform)

    def _find(self, names):
        """The path of each file (plain or gzipped) in root or root/MNIST/raw, or None."""
        folders = (self.root, self.root / "MNIST" / "raw")
        candidates = [[folder / (name + suffix) for folder in folders for suffix in ("", ".gz")]
                      for name in names]
        return [next((path for path in paths if path.is_file()), None) for paths in candidates]

    def _download(self, names, found):
        for index, name in enumerate(names):
            if found[index] is None:
                archive = name + ".gz"
                try:
                    download_file([mirror + archive for mirror in self.mirrors],
                                  self.root / archive, self.md5[archive])
                except DownloadError as error:
                    raise self._missing_error(names, found, reason=str(error)) from None
        return self._find(names)

    def _missing_error(self, names, found, reason=None):
        missing = [name + "[.gz]" for name, path in zip(names, found) if path is None]
        how = f"download them from {self.mirrors[-1]} (or {self.mirrors[0]}) into that folder"
        return missing_files_error("MNIST", missing, self.root, how, reason)
