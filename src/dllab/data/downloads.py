"""Fetching dataset files from their official sources into ``paths.data_dir``, verified
by checksum.

A file already on disk with the right checksum is used as it is, so a machine without
network works once the files are placed by hand; the error when a download fails says
exactly which files to put where. Nothing here is imported unless a downloaded dataset
is asked for.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dllab.errors import ConfigError

TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Remote:
    """A file of a dataset: its name, the URLs to try in turn, and its MD5 checksum
    (the checksums the datasets' authors publish are MD5)."""

    name: str
    urls: tuple[str, ...]
    md5: str


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(files: Sequence[Remote], folder: Path, dataset: str, download: bool = True) -> list[Path]:
    """Paths of ``files`` in ``folder``, downloading those missing (or with a wrong checksum)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for remote in files:
        path = folder / remote.name
        if not (path.is_file() and md5sum(path) == remote.md5):
            if path.is_file():
                found = md5sum(path)
                if not download:
                    raise ConfigError(
                        f"data={dataset}: {path} has MD5 {found}, expected {remote.md5}; "
                        "delete it and download again (data.download=true)"
                    )
            elif not download:
                raise _missing(files, folder, dataset, "data.download=false")
            _download(remote, path, files, folder, dataset)
        paths.append(path)
    return paths


def _download(remote: Remote, path: Path, files: Sequence[Remote], folder: Path, dataset: str) -> None:
    reasons = []
    for url in remote.urls:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{remote.name}.")
        os.close(handle)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, open(temporary, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reasons.append(f"{url}: {getattr(err, 'reason', err)}")
            Path(temporary).unlink(missing_ok=True)
            continue
        found = md5sum(Path(temporary))
        if found != remote.md5:
            Path(temporary).unlink(missing_ok=True)
            reasons.append(f"{url}: MD5 {found}, expected {remote.md5}")
            continue
        os.replace(temporary, path)
        return
    raise _missing(files, folder, dataset, "cannot download " + remote.name + " (" + "; ".join(reasons) + ")")


def _missing(files: Sequence[Remote], folder: Path, dataset: str, why: str) -> ConfigError:
    names = ", ".join(f.name for f in files)
    sources = ", ".join(sorted({f.urls[0].rsplit("/", 1)[0] + "/" for f in files}))
    return ConfigError(
        f"data={dataset}: {why}; offline? put the files {names} (from {sources}) into {folder.resolve()} "
        "(paths.data_dir, or DLLAB_DATA_DIR) and run again"
    )
