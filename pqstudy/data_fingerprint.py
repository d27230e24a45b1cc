"""``data_fingerprint(data_cfg)``: a short content-based digest of the files a dataset is read from.

Whatever is built from a dataset and cached (the ``lc`` codebooks of :mod:`pqstudy.codebook_init`) puts it in its
cache key, so that changed data never reuses a stale build:

- folders (``folder:<path>``, ``imagenet``, ``ffhq``): sha256 over the sorted (relative path, size, mtime_ns) of
  every image file under the folder — one ``stat`` per file, no decoding; adding, removing, renaming, rewriting or
  touching an image changes it;
- ``cifar10``: sha256 of the contents of the six batch files (so a re-ordered copy differs from the official one);
- ``photos``: sha256 of the contents of the bundled photo files.

File contents are hashed once per process per (path, size, mtime_ns); a folder is re-scanned on each call (a scan
is cheap next to the build it guards, and the only way to notice a changed file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pqstudy.config import DataConfig
from pqstudy.data import (
    CIFAR_FILES,
    IMAGE_EXTENSIONS,
    NAMED_FOLDERS,
    PHOTOS,
    DatasetNotFoundError,
    _cifar_folder,
    _package_file,
    resolve_data_root,
)

FOLDER_PREFIX = "folder:"
_CONTENT_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) → sha256 of the contents


def dataset_folder(cfg: DataConfig) -> Path | None:
    """The image folder of a folder dataset (``folder:<path>``, ``imagenet``, ``ffhq``); None for the others."""
    if cfg.name.startswith(FOLDER_PREFIX):
        return Path(cfg.name[len(FOLDER_PREFIX) :]).expanduser()
    if cfg.name in NAMED_FOLDERS:
        return resolve_data_root(cfg) / cfg.name  # as load_dataset finds it
    return None


def folder_fingerprint(directory: Path) -> str:
    """sha256 over the sorted (relative path, size, mtime_ns) of every image file under ``directory``."""
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


def data_fingerprint(cfg: DataConfig) -> str:
    """The digest of the files dataset ``cfg.name`` is read from (see the module docstring); raises the dataset's
    own not-found error when they are missing (``cifar10`` is downloaded first where ``data.download`` allows)."""
    folder = dataset_folder(cfg)
    if folder is not None:
        if not folder.is_dir():
            raise DatasetNotFoundError(f"data.name={cfg.name!r}: {folder} is not a folder")
        return folder_fingerprint(folder)
    if cfg.name == "cifar10":
        root = _cifar_folder(cfg)
        return files_fingerprint([(name, root / name) for files in CIFAR_FILES.values() for name in files])
    if cfg.name == "photos":
        found = [(p.name, path) for p in PHOTOS if (path := _package_file(p.package, p.path)) is not None]
        return files_fingerprint(found)
    raise DatasetNotFoundError(f"data.name={cfg.name!r}: unknown dataset, nothing to fingerprint")
