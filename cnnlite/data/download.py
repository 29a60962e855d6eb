"""Fetching the official data set archives, checking them, and saying clearly what is missing.

A data set that is not on disk is the most common first error a student meets, so the message
names the files, the folder they were expected in, and the two ways to get them.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Sequence

from cnnlite.errors import ArgumentTypeError

__all__ = ["DownloadError", "DataFileError", "folder_path", "download_file", "extract_tar",
           "md5_of", "missing_files_error"]


class DownloadError(OSError):
    """No URL gave a file with the expected checksum; the message lists what each one did."""


class DataFileError(ValueError):
    """A data set file is there but cannot be used (truncated, corrupt, or not the file its
    name says); the message names the file and what is wrong with it."""


def folder_path(owner: str, root) -> Path:
    """A data set's ``root`` argument as a Path (a str or a PathLike names a folder)."""
    if not isinstance(root, (str, os.PathLike)):
        raise ArgumentTypeError(f"{owner}: root must be a folder path (a str or a Path), got "
                                f"{type(root).__name__} {root!r}")
    return Path(root)


def md5_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """The MD5 hex digest of a file, read in chunks (archives can be larger than memory)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(urls: Sequence[str], destination: Path, md5: str, timeout: float = 60.0) -> None:
    """Download the first of ``urls`` that works to ``destination`` and check its MD5.

    The file is written as ``<destination>.part`` and renamed only once its checksum is
    right, so an interrupted download never looks like a complete one.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    failures = []
    for url in urls:
        print(f"Downloading {url} to {destination}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(partial, "wb") as file:
                shutil.copyfileobj(response, file)
        except OSError as error:  # URLError, HTTPError, timeouts and disk errors are OSErrors
            partial.unlink(missing_ok=True)
            failures.append(f"{url}: {error}")
            continue
        found = md5_of(partial)
        if found != md5:
            partial.unlink()
            failures.append(f"{url}: wrong checksum (md5 {found}, expected {md5})")
            continue
        partial.replace(destination)
        return
    raise DownloadError("; ".join(failures))


def extract_tar(archive: Path, folder: Path) -> None:
    """Unpack a .tar.gz into ``folder``, refusing members that would land outside it."""
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")


def missing_files_error(dataset: str, missing: Sequence[str], folder: Path, how_to_get: str,
                        reason: str | None = None) -> FileNotFoundError:
    """The error a data set raises when its files are not there (or could not be fetched).

    ``how_to_get`` says how to get the files by hand ("download X and unpack it into Y");
    ``reason`` is why ``download=True`` did not get them, if it was tried.
    """
    message = f"{dataset}: cannot find {', '.join(missing)} in {Path(folder).resolve()}. "
    if reason:
        message += f"The download failed: {reason}. You can also {how_to_get}."
    else:
        message += f"Pass download=True to fetch them, or {how_to_get}."
    return FileNotFoundError(message)
