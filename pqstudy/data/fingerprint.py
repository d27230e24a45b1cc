"""Content digests of the files a dataset is read from; each source registers its own ``fingerprint`` built on these.

Whatever is built from a dataset and cached (the ``lc`` codebooks) puts ``data_fingerprint(data_cfg)`` in its cache
key, so that changed data never reuses a stale build. File contents are hashed once per process per
(path, size, mtime_ns); a folder is re-scanned on each call (a scan is cheap next to the build it guards, and the only
way to notice a changed file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pqstudy.data.dataset import DatasetNotFoundError
from pqstudy.data.images import IMAGE_EXTENSIONS

_CONTENT_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) → sha256 of the contents


def folder_fingerprint(directory: Path) -> str:
    """sha256 over the sorted (relative path, size, mtime_ns) of every image file under ``directory`` — one ``stat``
    per file, no decoding; adding, removing, renaming, rewriting or touching an image changes it."""
    if not directory.is_dir():
        raise DatasetNotFoundError(f"{directory} is not a folder")
    entries = []
    for path in directory.rglob("*"):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        stat = path.stat()
        entries.append(f"{path.relative_to(directory).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    digest = hashlib.sha256()
    for entry in sorted(entries):
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """sha256 of a file's contents, computed once per process per (path, size, mtime_ns)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CONTENT_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        _CONTENT_HASHES[key] = digest.hexdigest()
    return _CONTENT_HASHES[key]


def files_fingerprint(named_files: list[tuple[str, Path]]) -> str:
    """sha256 over the sorted (name, content sha256) of the files."""
    digest = hashlib.sha256()
    for name, path in sorted(named_files):
        digest.update(f"{name}\0{content_hash(path)}\n".encode())
    return digest.hexdigest()
