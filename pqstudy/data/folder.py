"""Image folders: ``folder:<path>`` (any folder) and the named folders under the data root (``imagenet``, ``ffhq``).

Every image file under the folder (recursive) is read. ``train/`` + ``test/`` (or ``val/``) subfolders give the
splits, else about 10 % of the files, chosen by a hash of their relative path, form the test split. Up to
``EAGER_MAX_FILES`` files decode into memory at load time; larger folders are checked at scan time and decoded on
access. Unreadable files are skipped with one ``DataWarning``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from pqstudy.config import DataConfig
from pqstudy.data.dataset import DatasetNotFoundError, DataWarning, ImageDataset
from pqstudy.data.fingerprint import folder_fingerprint
from pqstudy.data.images import DECODE_ERRORS, IMAGE_EXTENSIONS, parallel_map, read_image, stack_chw
from pqstudy.data.registry import dataset
from pqstudy.data.root import ROOT_HELP, resolve_data_root

SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}
TEST_PERCENT = 10  # hash split: share of the files in the test split
EAGER_MAX_FILES = 20_000  # up to this many files (and EAGER_MAX_BYTES of pixels) decode into memory at load time
EAGER_MAX_BYTES = 2**30


def _utf8(name: str) -> bool:
    """False for a file name that is not valid UTF-8 (Python holds its bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _scan(directory: Path) -> list[Path]:
    """Every image file under ``directory`` (recursive), sorted by relative path. Files whose path is not valid
    UTF-8 are skipped, with one warning that counts them (their names cannot be hashed, sorted or shown reliably)."""
    paths = [p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    bad = [p for p in paths if not _utf8(p.relative_to(directory).as_posix())]
    if bad:
        warnings.warn(f"{directory}: skipped {len(bad)} image file(s) whose names are not valid UTF-8",
                      DataWarning, stacklevel=5)
        paths = [p for p in paths if _utf8(p.relative_to(directory).as_posix())]
    return sorted(paths, key=lambda p: p.relative_to(directory).as_posix())


def _in_test_split(relative_path: str) -> bool:
    digest = hashlib.md5(relative_path.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % 100 < TEST_PERCENT


def _split_files(directory: Path, split: str) -> tuple[list[Path], str]:
    """The split's files and how the split was made."""
    test_dirs = [directory / d for d in SPLIT_FOLDERS["test"] if (directory / d).is_dir()]
    if (directory / "train").is_dir() and test_dirs:
        subdir = directory / "train" if split == "train" else test_dirs[0]
        return _scan(subdir), f"subfolder {subdir.name}/"
    files = [p for p in _scan(directory) if _in_test_split(p.relative_to(directory).as_posix()) == (split == "test")]
    return files, f"hash split (~{TEST_PERCENT}% test; add train/ and test/ subfolders to choose)"


def _read_or_none(path: Path, size: int) -> np.ndarray | None:
    try:
        return read_image(path, size)
    except DECODE_ERRORS:
        return None


def _header_ok(path: Path) -> bool:
    """A cheap scan-time check for lazily decoded folders: PIL identifies the file and verifies what it can."""
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except DECODE_ERRORS:
        return False


def _warn_skipped(directory: Path, bad: Iterable[Path]) -> None:
    bad = list(bad)
    if not bad:
        return
    examples = ", ".join(p.relative_to(directory).as_posix() for p in bad[:3]) + (", ..." if len(bad) > 3 else "")
    message = f"{directory}: skipped {len(bad)} unreadable image file(s) (e.g. {examples})"
    warnings.warn(message, DataWarning, stacklevel=5)


def load_folder(directory: Path, split: str, size: int, limit: int, name: str) -> ImageDataset:
    files, how = _split_files(directory, split)
    if limit:
        files = files[:limit]
    eager = len(files) <= EAGER_MAX_FILES and len(files) * 3 * size * size <= EAGER_MAX_BYTES
    if eager:
        decoded = parallel_map(partial(_read_or_none, size=size), files)
        good = [image for image in decoded if image is not None]
        _warn_skipped(directory, [path for path, image in zip(files, decoded, strict=True) if image is None])
    else:
        ok = parallel_map(_header_ok, files)
        good = [path for path, fine in zip(files, ok, strict=True) if fine]
        _warn_skipped(directory, [path for path, fine in zip(files, ok, strict=True) if not fine])
    if not good:
        skipped = f" ({len(files)} unreadable file(s) skipped)" if files else ""
        raise DatasetNotFoundError(
            f"{name}: no readable images for split {split!r} in {directory}{skipped}; split by {how}; "
            f"image types: {' '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    if eager:
        return ImageDataset(name, size, images=stack_chw(good), sources=[str(directory)])
    return ImageDataset(name, size, files=good, sources=[str(directory)])


# ---------------------------------------------------------------------------------------------------------------
# registrations


def _existing(directory: Path, name: str) -> Path:
    if not directory.is_dir():
        raise DatasetNotFoundError(f"data.name={name!r}: {directory} is not a folder")
    return directory


def _given_folder(cfg: DataConfig) -> Path:
    """The folder named in ``folder:<path>``."""
    return Path(cfg.name.partition(":")[2]).expanduser()


def given_folder_fingerprint(cfg: DataConfig) -> str:
    return folder_fingerprint(_existing(_given_folder(cfg), cfg.name))


@dataset("folder", fingerprint=given_folder_fingerprint, argument="path")
def load_given_folder(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
    """``folder:<path>``: the images under ``<path>`` (``seed`` is unused: nothing is random)."""
    directory = _existing(_given_folder(cfg), cfg.name)
    return load_folder(directory, split, cfg.image_size, limit, name=cfg.name)


def named_folder_fingerprint(cfg: DataConfig) -> str:
    return folder_fingerprint(_existing(resolve_data_root(cfg) / cfg.name, cfg.name))


def named_folder(name: str, *, layout: str) -> None:
    """Register dataset ``name`` as the folder ``<data root>/<name>``; ``layout`` tells where to put it when absent."""

    @dataset(name, fingerprint=named_folder_fingerprint)
    def load_named_folder(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
        root = resolve_data_root(cfg)
        directory = root / cfg.name
        if not directory.is_dir():
            raise DatasetNotFoundError(
                f"{cfg.name} not found: looked for {directory}. Put it there as {layout}; {ROOT_HELP} (now {root})."
            )
        return load_folder(directory, split, cfg.image_size, limit, name=cfg.name)


named_folder("imagenet", layout="<root>/imagenet/train/ and <root>/imagenet/val/ (class subfolders of JPEGs, or flat; "
             "val is the test split)")
named_folder("ffhq", layout="<root>/ffhq/ holding the images (any nesting; add train/ and test/ subfolders to fix "
             "the split, else ~10% of the files, by path hash, are the test split)")
