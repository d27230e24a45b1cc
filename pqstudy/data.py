"""Datasets by name, as uint8 image tensors of shape (3, H, W) with H = W = ``data.image_size``.

- ``cifar10``: the official python-batch layout (``cifar-10-batches-py/``) under the data root; downloaded with an md5
  check when absent, ``data.download`` is on and the host is reachable. Batches are unpickled by a restricted
  unpickler and validated (see ``read_cifar_batch``).
- ``photos``: colour photographs bundled inside installed packages (scikit-image, scikit-learn, matplotlib), cut into
  deterministic random crops at random scales; train and test come from different photos. Works offline.
- ``folder:<path>``: any image folder (recursive). ``train/`` + ``test/`` (or ``val/``) subfolders give the splits,
  else about 10 % of the files, chosen by a hash of their relative path, form the test split.
- ``imagenet``, ``ffhq``: folder layouts under the data root (``<root>/imagenet/{train,val}``, ``<root>/ffhq``).

The data root is ``PQSTUDY_DATA_DIR`` if set, else ``data.root``, else ``data`` (``config.data_root``); a relative
path is taken from the repository root, whatever the working directory (JupyterLab runs notebooks in
``notebooks/``). Only the default root is ever created (to download CIFAR-10 into). Images stay uint8 here; training
converts them to floats.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import tarfile
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from pqstudy.config import ConfigError, DataConfig, data_root
from pqstudy.safe_pickle import load_numpy_pickle

SPLITS = ("train", "test")
ENV_VAR = "PQSTUDY_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = "data"
ROOT_HELP = (f"the data root is {ENV_VAR} if set, else data.root, else {DEFAULT_ROOT}/; a relative path is taken "
             "from the repository root")

# PIL resizes a box with an integer pre-reduction, then an antialiased bicubic filter; with a reducing gap of 3 the
# result is practically identical to a plain bicubic resize and several times faster for large downscales.
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 3.0
# What PIL raises on unreadable, truncated or corrupt files.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
WORKERS = min(8, os.cpu_count() or 1)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where it was looked for and where to put it."""


class DataWarning(UserWarning):
    """Something in the data was skipped (e.g. unreadable image files)."""


class ImageDataset(Dataset):
    """Images as uint8 tensors (3, H, W).

    ``images`` holds every image as one uint8 tensor (N, 3, H, W) when the data is in memory; it is ``None`` for large
    folders, whose ``files`` are decoded on access. ``sources`` names where the images come from (photo names, folders).
    """

    def __init__(
        self,
        name: str,
        image_size: int,
        *,
        images: torch.Tensor | None = None,
        files: Sequence[Path] = (),
        sources: Sequence[str] = (),
    ) -> None:
        if images is None and not files:
            raise ValueError("ImageDataset needs images or files")
        self.name = name
        self.image_size = image_size
        self.images = images
        self.files = [] if images is not None else list(files)
        self.sources = tuple(sources)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.images is not None:
            return self.images[i]
        return self._decode(int(i))

    def get_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at ``idx`` (a LongTensor of B indices) as one uint8 tensor (B, 3, H, W)."""
        if self.images is not None:
            return self.images[idx]
        if idx.numel() == 0:
            return torch.empty((0, 3, self.image_size, self.image_size), dtype=torch.uint8)
        return torch.stack([self._decode(i) for i in idx.tolist()])

    def _decode(self, i: int) -> torch.Tensor:
        """Decode file ``i``; a file that fails now (despite the scan) is replaced by the next readable one."""
        n = len(self.files)
        for k in range(n):
            path = self.files[(i + k) % n]
            try:
                return _to_chw(_read_image(path, self.image_size))
            except DECODE_ERRORS as err:
                warnings.warn(f"{path}: unreadable ({err}); using the next image instead", DataWarning, stacklevel=3)
        raise RuntimeError(f"{self.name}: none of the {n} image files can be read")

    def __repr__(self) -> str:
        where = "in memory" if self.images is not None else "decoded on access"
        return f"ImageDataset({self.name!r}, n={len(self)}, size={self.image_size}, {where})"


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] images → float [-1, 1], the range the models see."""
    return images.float().div(127.5).sub(1.0)


def load_dataset(cfg: DataConfig, split: str, seed: int = 0) -> ImageDataset:
    """The ``split`` ("train" or "test") of the dataset ``cfg.name`` at ``cfg.image_size`` pixels.

    ``cfg.train_limit > 0`` keeps the first N training images. ``seed`` varies the photos' training crops; test splits
    never depend on it, so runs with different seeds are scored on the same images.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {list(SPLITS)}")
    if cfg.image_size <= 0:
        raise ConfigError(f"data.image_size={cfg.image_size!r}: must be positive")
    limit = cfg.train_limit if split == "train" else 0
    if cfg.name == "cifar10":
        return _load_cifar10(cfg, split, limit)
    if cfg.name == "photos":
        return _load_photos(cfg.image_size, split, seed, limit)
    if cfg.name.startswith("folder:") and len(cfg.name) > len("folder:"):
        directory = Path(cfg.name[len("folder:") :]).expanduser()
        if not directory.is_dir():
            raise DatasetNotFoundError(f"data.name={cfg.name!r}: {directory} is not a folder")
        return _load_folder(directory, split, cfg.image_size, limit, name=cfg.name)
    if cfg.name in NAMED_FOLDERS:
        return _load_named_folder(cfg, split, limit)
    raise ConfigError(
        f"data.name={cfg.name!r}: unknown dataset; choose cifar10, photos, {', '.join(NAMED_FOLDERS)} or folder:<path>"
    )


# ---------------------------------------------------------------------------------------------------------------
# image helpers


def _to_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array → (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _stack_chw(images: Sequence[np.ndarray]) -> torch.Tensor:
    """A list of (H, W, 3) uint8 arrays → one (N, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy())


def _resize_box(img: Image.Image, size: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """The square ``box`` (left, top, right, bottom) of ``img`` resized to (size, size, 3), antialiased."""
    return np.asarray(img.resize((size, size), RESAMPLE, box=box, reducing_gap=REDUCING_GAP))


def _center_square(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit greyscale (PIL modes ``I;16*``, and ``I`` with values above 255) is scaled 65535 → 255;
    PIL's own ``convert("RGB")`` would clip it to 255 instead. 16-bit colour PNGs PIL already reduces correctly."""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img).astype(np.float64)
        if img.mode != "I" or values.max(initial=0) > 255:
            values = values * (255.0 / 65535.0)
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return img.convert("RGB")


def _read_image(path: Path, size: int) -> np.ndarray:
    """Decode ``path``, resize its shorter side to ``size`` and centre-crop: (size, size, 3) uint8."""
    with Image.open(path) as img:
        scale = REDUCING_GAP * size / min(img.size)
        if scale < 1:  # JPEG: decode at a reduced scale (DCT scaling), still >= 3x the target
            img.draft("RGB", (round(img.width * scale), round(img.height * scale)))
        rgb = _to_rgb(img)
    return _resize_box(rgb, size, _center_square(*rgb.size))


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return _to_rgb(img)


def _resize_tensor(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, 3, h, w) to (N, 3, size, size): antialiased bicubic, rounded, deterministic."""
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        out[start : start + chunk] = y.round().clamp(0, 255).to(torch.uint8)
    return out


T = TypeVar("T")
R = TypeVar("R")


def _parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` in a thread pool (PIL releases the GIL while decoding); order is kept."""
    if len(items) < 2 * WORKERS:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(fn, items, chunksize=64))


# ---------------------------------------------------------------------------------------------------------------
# cifar10

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


def _load_cifar10(cfg: DataConfig, split: str, limit: int) -> ImageDataset:
    folder = _cifar_folder(cfg)
    batches, unknown = [], []
    count = 0
    for filename in CIFAR_FILES[split]:
        if limit and count >= limit:
            break
        if cifar_batch_provenance(folder / filename) is None:
            unknown.append(filename)
        batches.append(read_cifar_batch(folder / filename))
        count += len(batches[-1])
    if unknown:
        warnings.warn(
            f"{folder}: {', '.join(unknown)} match(es) neither the official CIFAR-10 release (md5) nor a known copy "
            "(sha256); loaded after checking structure only (restricted unpickling, shape, dtype, labels)",
            DataWarning, stacklevel=3,
        )
    images = torch.from_numpy(np.concatenate(batches))
    if limit:
        images = images[:limit].clone()
    if cfg.image_size != 32:
        images = _resize_tensor(images, cfg.image_size)
    return ImageDataset("cifar10", cfg.image_size, images=images, sources=[str(folder)])


def read_cifar_batch(path: Path) -> np.ndarray:
    """One python batch: a pickled dict whose ``data`` is N×3072 uint8, channel-major → (N, 3, 32, 32).

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
    return data.reshape(-1, 3, 32, 32)


def _cifar_field(batch: dict, name: str):
    return batch[name.encode()] if name.encode() in batch else batch.get(name)


def resolve_data_root(cfg: DataConfig) -> Path:
    """The data root as an absolute path (see the module docstring): relative paths from the repository root, or
    from the working directory where the package is not inside a checkout."""
    path = Path(data_root(cfg)).expanduser()
    if path.is_absolute():
        return path
    base = REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()
    return base / path


def _named_root(cfg: DataConfig) -> bool:
    """Whether the data root was named (``PQSTUDY_DATA_DIR`` or ``data.root``) rather than the default."""
    return bool(os.environ.get(ENV_VAR) or cfg.root)


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
    if _named_root(cfg) and not root.is_dir():  # a mistyped path must not become a new folder full of downloads
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


# ---------------------------------------------------------------------------------------------------------------
# photos


@dataclass(frozen=True)
class Photo:
    name: str
    package: str  # the installed package that ships the file
    path: tuple[str, ...]  # the file inside the package


# Colour photographs shipped inside the packages themselves (no pooch downloads): skimage.data, sklearn's
# load_sample_images, matplotlib's sample_data. Their sizes run from 451×300 (chelsea) to 1000×872 (hubble).
PHOTOS = (
    Photo("astronaut", "skimage", ("data", "astronaut.png")),
    Photo("chelsea", "skimage", ("data", "chelsea.png")),
    Photo("coffee", "skimage", ("data", "coffee.png")),
    Photo("hubble_deep_field", "skimage", ("data", "hubble_deep_field.jpg")),
    Photo("immunohistochemistry", "skimage", ("data", "ihc.png")),
    Photo("motorcycle", "skimage", ("data", "motorcycle_left.png")),
    Photo("rocket", "skimage", ("data", "rocket.jpg")),
    Photo("china", "sklearn", ("datasets", "images", "china.jpg")),
    Photo("flower", "sklearn", ("datasets", "images", "flower.jpg")),
    Photo("grace_hopper", "matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
)
TEST_PHOTOS = frozenset({"chelsea", "china"})  # the test split's photos; never used for training
CROPS_PER_PHOTO = {"train": 320, "test": 256}  # at <= 64 px: 8 × 320 = 2560 train, 2 × 256 = 512 test crops
MIN_CROPS_PER_PHOTO = 64
PHOTO_TEST_SEED = 0


def _package_file(package: str, parts: Sequence[str]) -> Path | None:
    """A data file inside an installed package, found without importing the package; None when absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def _crops_per_photo(split: str, size: int) -> int:
    """Fewer crops for large images, so that memory stays bounded (the same pixels, not more)."""
    base = CROPS_PER_PHOTO[split]
    return base if size <= 64 else max(MIN_CROPS_PER_PHOTO, base * 64 * 64 // (size * size))


def _random_crops(img: Image.Image, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` square crops, side log-uniform between ``size`` and the photo's shorter side, resized to ``size``."""
    width, height = img.size
    short = min(width, height)
    low = min(size, short)
    sides = np.rint(np.exp(rng.uniform(np.log(low), np.log(short), n))).astype(int)
    lefts = (rng.random(n) * (width - sides + 1)).astype(int)
    tops = (rng.random(n) * (height - sides + 1)).astype(int)
    boxes = zip(lefts, tops, lefts + sides, tops + sides, strict=True)
    return np.stack([_resize_box(img, size, tuple(int(v) for v in box)) for box in boxes])


def _load_photos(size: int, split: str, seed: int, limit: int) -> ImageDataset:
    chosen = [p for p in PHOTOS if (p.name in TEST_PHOTOS) == (split == "test")]
    found = [(p, path) for p in chosen if (path := _package_file(p.package, p.path)) is not None]
    if len(found) < len(chosen):
        missing = sorted({p.name for p in chosen} - {p.name for p, _ in found})
        message = f"photos: {', '.join(missing)} not found in the installed packages; skipped"
        warnings.warn(message, DataWarning, stacklevel=3)
    if not found:
        raise DatasetNotFoundError(f"photos: none of the {split} photos {[p.name for p in chosen]} is installed")
    n = _crops_per_photo(split, size)
    crop_seed = seed if split == "train" else PHOTO_TEST_SEED
    crops = [
        _random_crops(_open_rgb(path), n, size, np.random.default_rng([crop_seed, zlib.crc32(p.name.encode())]))
        for p, path in found
    ]
    # Interleave the photos (crop 0 of every photo, then crop 1, ...) so that any prefix covers every photo.
    images = torch.from_numpy(np.stack(crops, axis=1).reshape(-1, size, size, 3).transpose(0, 3, 1, 2).copy())
    if limit:
        images = images[:limit].clone()
    return ImageDataset("photos", size, images=images, sources=[p.name for p, _ in found])


# ---------------------------------------------------------------------------------------------------------------
# folders

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"})
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}
TEST_PERCENT = 10  # hash split: share of the files in the test split
EAGER_MAX_FILES = 20_000  # up to this many files (and EAGER_MAX_BYTES of pixels) decode into memory at load time
EAGER_MAX_BYTES = 2**30
NAMED_FOLDERS = {
    "imagenet": "<root>/imagenet/train/ and <root>/imagenet/val/ (class subfolders of JPEGs, or flat; val is the "
    "test split)",
    "ffhq": "<root>/ffhq/ holding the images (any nesting; add train/ and test/ subfolders to fix the split, else "
    "~10% of the files, by path hash, are the test split)",
}


def _load_named_folder(cfg: DataConfig, split: str, limit: int) -> ImageDataset:
    root = resolve_data_root(cfg)
    directory = root / cfg.name
    if not directory.is_dir():
        raise DatasetNotFoundError(
            f"{cfg.name} not found: looked for {directory}. Put it there as {NAMED_FOLDERS[cfg.name]}; {ROOT_HELP} "
            f"(now {root})."
        )
    return _load_folder(directory, split, cfg.image_size, limit, name=cfg.name)


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
                      DataWarning, stacklevel=4)
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
        return _read_image(path, size)
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
    warnings.warn(message, DataWarning, stacklevel=4)


def _load_folder(directory: Path, split: str, size: int, limit: int, name: str) -> ImageDataset:
    files, how = _split_files(directory, split)
    if limit:
        files = files[:limit]
    eager = len(files) <= EAGER_MAX_FILES and len(files) * 3 * size * size <= EAGER_MAX_BYTES
    if eager:
        decoded = _parallel_map(partial(_read_or_none, size=size), files)
        good = [image for image in decoded if image is not None]
        _warn_skipped(directory, [path for path, image in zip(files, decoded, strict=True) if image is None])
    else:
        ok = _parallel_map(_header_ok, files)
        good = [path for path, fine in zip(files, ok, strict=True) if fine]
        _warn_skipped(directory, [path for path, fine in zip(files, ok, strict=True) if not fine])
    if not good:
        skipped = f" ({len(files)} unreadable file(s) skipped)" if files else ""
        raise DatasetNotFoundError(
            f"{name}: no readable images for split {split!r} in {directory}{skipped}; split by {how}; "
            f"image types: {' '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    if eager:
        return ImageDataset(name, size, images=_stack_chw(good), sources=[str(directory)])
    return ImageDataset(name, size, files=good, sources=[str(directory)])
