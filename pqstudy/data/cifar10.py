"""``cifar10``: CIFAR-10 in the official python-batch layout (``cifar-10-batches-py/``) under the data root.

Downloaded with an md5 check when absent, ``data.download`` is on and the host is reachable. Batches are untrusted
input: unpickled by a restricted unpickler and validated (see ``read_cifar_batch``); their provenance (the official
md5s or a known copy's sha256s) is checked, and an unknown file loads with a ``DataWarning``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch

from pqstudy.config import DataConfig
from pqstudy.data.dataset import DatasetNotFoundError, DataWarning, ImageDataset
from pqstudy.data.fingerprint import files_fingerprint
from pqstudy.data.images import resize_tensor
from pqstudy.data.registry import dataset
from pqstudy.data.root import ENV_VAR, ROOT_HELP, named_root, resolve_data_root
from pqstudy.safe_pickle import load_numpy_pickle

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
DOWNLOAD_TIMEOUT_S = 10.0
# md5 of each batch of the official release (as torchvision checks them).
CIFAR_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
# sha256 of each batch of known re-ordered copies (the offline copy of ../shared/data, whose README lists them).
CIFAR_KNOWN_COPIES_SHA256 = {
    "shared/data (fixed random order)": {
        "data_batch_1": "f875ee4056b4a14e92fa6b89b7bb1861bcc7f8d31de4c6152a7fe2a4b4ddeff5",
        "data_batch_2": "9f65ef4ceb4bfb23993827b0481ad688e8e77d9850191985087e98de302625d5",
        "data_batch_3": "7f56f5bad81850684bc136e7bda980e824bfbd29a2665b93dfe2693b3fa8b2f5",
        "data_batch_4": "5fb59b97a7cc610ccb0b036e7cbf63565904625888ff9419f3e2df0224f2a703",
        "data_batch_5": "9bec063299003b7d7a16e85ecfc05b0909108a1f7e3d1353bfce4c3cfeb5ada6",
        "test_batch": "a580bc74e82cdb6dc24a6978b2013d9ce64cbfae8d77089a93dee178fedaad29",
    },
}
CIFAR_PIXELS = 3 * 32 * 32
CIFAR_CLASSES = 10


class CorruptDataError(ValueError):
    """A data file is malformed, truncated, or holds something other than the data it should (the message names
    the file)."""


_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime) → how the file was checked, for this process


def cifar_batch_provenance(path: Path) -> str | None:
    """``"official"`` when ``path`` has the official release's md5 for its name, the name of a known copy when its
    sha256 is that copy's, else None. Cached per process by (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key] or None
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            md5.update(block)
            sha256.update(block)
    found = ""
    if CIFAR_BATCH_MD5.get(path.name) == md5.hexdigest():
        found = "official"
    else:
        found = next((copy for copy, digests in CIFAR_KNOWN_COPIES_SHA256.items()
                      if digests.get(path.name) == sha256.hexdigest()), "")
    _VERIFIED[key] = found
    return found or None


def cifar10_fingerprint(cfg: DataConfig) -> str:
    """sha256 of the contents of the six batch files (so a re-ordered copy differs from the official one)."""
    folder = _cifar_folder(cfg)
    return files_fingerprint([(name, folder / name) for files in CIFAR_FILES.values() for name in files])


@dataset("cifar10", fingerprint=cifar10_fingerprint)
def load_cifar10(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
    """The batches of ``split`` in file order (``seed`` is unused: the batches are fixed), resized when
    ``cfg.image_size`` is not 32."""
    folder = _cifar_folder(cfg)
    batches, labels, unknown = [], [], []
    count = 0
    for filename in CIFAR_FILES[split]:
        if limit and count >= limit:
            break
        if cifar_batch_provenance(folder / filename) is None:
            unknown.append(filename)
        images, batch_labels = read_cifar_batch_with_labels(folder / filename)
        batches.append(images)
        labels.append(batch_labels)
        count += len(batches[-1])
    if unknown:
        warnings.warn(
            f"{folder}: {', '.join(unknown)} match(es) neither the official CIFAR-10 release (md5) nor a known copy "
            "(sha256); loaded after checking structure only (restricted unpickling, shape, dtype, labels)",
            DataWarning, stacklevel=3,
        )
    images = torch.from_numpy(np.concatenate(batches))
    targets = torch.from_numpy(np.concatenate(labels))
    if limit:
        images, targets = images[:limit].clone(), targets[:limit].clone()
    if cfg.image_size != 32:
        images = resize_tensor(images, cfg.image_size)
    return ImageDataset("cifar10", cfg.image_size, images=images, sources=[str(folder)], labels=targets,
                        num_classes=CIFAR_CLASSES)


def read_cifar_batch(path: Path) -> np.ndarray:
    """The images (N, 3, 32, 32) uint8 of one python batch; see :func:`read_cifar_batch_with_labels`."""
    return read_cifar_batch_with_labels(path)[0]


def read_cifar_batch_with_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: a pickled dict whose ``data`` is N×3072 uint8, channel-major → images (N, 3, 32, 32) and
    labels (N,) int64.

    The file is untrusted input. It is unpickled by :func:`pqstudy.safe_pickle.load_numpy_pickle`, which refuses
    every global except numpy's array reconstruction, so a pickle payload (``__reduce__`` → ``os.system``,
    ``open``, ...) is never called; then the structure is checked: a dict with ``data`` (N×3072 uint8, N > 0) and
    ``labels`` (N integers in 0..9). Anything else raises ``CorruptDataError`` naming the file.

    Checksums are checked by the caller (``cifar_batch_provenance``): the official release's md5s and the sha256s of
    known re-ordered copies are accepted silently; any other file (a copy re-pickled elsewhere, a subset) still
    loads, since restricted unpickling plus these checks make it safe to read, but with a ``DataWarning`` that its
    provenance is unknown.
    """
    try:
        batch = load_numpy_pickle(path)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"CIFAR-10 batch {path} is corrupt, truncated or not a CIFAR-10 batch: "
                               f"{type(err).__name__}: {err}") from None
    if not isinstance(batch, dict):
        raise CorruptDataError(f"CIFAR-10 batch {path}: expected a pickled dict, found {type(batch).__name__}")
    data, labels = _cifar_field(batch, "data"), _cifar_field(batch, "labels")
    if data is None or labels is None:
        keys = sorted(map(str, batch))
        raise CorruptDataError(f"CIFAR-10 batch {path}: no 'data' and 'labels' entries (keys: {keys})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        shown = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptDataError(f"CIFAR-10 batch {path}: 'data' must be a uint8 array N×{CIFAR_PIXELS}, found {shown}")
    if len(data) == 0:
        raise CorruptDataError(f"CIFAR-10 batch {path}: holds no images")
    labels = list(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    if labels is None or len(labels) != len(data):
        raise CorruptDataError(f"CIFAR-10 batch {path}: 'labels' must list one label per image ({len(data)})")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < CIFAR_CLASSES
               for v in labels):
        raise CorruptDataError(f"CIFAR-10 batch {path}: labels must be integers in 0..{CIFAR_CLASSES - 1}")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _cifar_field(batch: dict, name: str):
    return batch[name.encode()] if name.encode() in batch else batch.get(name)


def _find_cifar_folder(root: Path) -> Path | None:
    """``root/cifar-10-batches-py`` or ``root`` itself, whichever holds every batch file."""
    names = [name for files in CIFAR_FILES.values() for name in files]
    for candidate in (root / CIFAR_DIR, root):
        if all((candidate / name).is_file() for name in names):
            return candidate
    return None


def _cifar_folder(cfg: DataConfig) -> Path:
    root = resolve_data_root(cfg)
    folder = _find_cifar_folder(root)
    if folder is not None:
        return folder
    if not cfg.download:
        raise DatasetNotFoundError(_cifar_missing(root, "download is off (data.download=false)"))
    if named_root(cfg) and not root.is_dir():  # a mistyped path must not become a new folder full of downloads
        raise DatasetNotFoundError(_cifar_missing(root, f"{root} does not exist, and only the default root is created"))
    try:
        _download_cifar(root)
    except (OSError, RuntimeError, tarfile.TarError) as err:
        raise DatasetNotFoundError(_cifar_missing(root, f"the download failed: {err}")) from err
    folder = _find_cifar_folder(root)
    if folder is None:
        raise DatasetNotFoundError(_cifar_missing(root, f"the downloaded archive did not unpack to {root / CIFAR_DIR}"))
    return folder


def _cifar_missing(root: Path, reason: str) -> str:
    env = os.environ.get(ENV_VAR)
    env_note = f"{ENV_VAR} is set to {env!r}" if env else f"{ENV_VAR} is not set"
    return (
        f"CIFAR-10 not found: looked for {root / CIFAR_DIR} (and {root} itself) with data_batch_1..5 and test_batch; "
        f"{reason}. {ROOT_HELP[0].upper()}{ROOT_HELP[1:]} ({env_note}). Put the python-batch folder {CIFAR_DIR}/ "
        f"(unpacked from {CIFAR_URL}) inside {root}, or set {ENV_VAR} to the folder that contains it."
    )


def _download_cifar(root: Path) -> None:
    """Fetch the official archive into ``root``, check its md5 and unpack it; raises on any failure."""
    root.mkdir(parents=True, exist_ok=True)
    partial = root / "cifar-10-python.tar.gz.part"
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(CIFAR_URL, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                md5.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != CIFAR_MD5:
            raise RuntimeError(f"checksum mismatch for {CIFAR_URL}: md5 {md5.hexdigest()}, expected {CIFAR_MD5}")
        with tarfile.open(partial, "r:gz") as tar:
            tar.extractall(root, filter="data")
    finally:
        partial.unlink(missing_ok=True)


