"""``photos``: colour photographs bundled inside installed packages (scikit-image, scikit-learn, matplotlib).

Cut into deterministic random crops at random scales; train and test come from different photos. Works offline.
"""

from __future__ import annotations

import importlib.util
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pqstudy.config import DataConfig
from pqstudy.data.dataset import DatasetNotFoundError, DataWarning, ImageDataset
from pqstudy.data.fingerprint import files_fingerprint
from pqstudy.data.images import open_rgb, resize_box
from pqstudy.data.registry import dataset


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


def _random_crops(img: Image.Image, n: int, size: int, rng: np.random.Generator, keep: int | None = None) -> np.ndarray:
    """The first ``keep`` (default all) of ``n`` square crops, side log-uniform between ``size`` and the photo's
    shorter side, resized to ``size``. All ``n`` boxes are drawn, so a crop is the same whatever ``keep``."""
    width, height = img.size
    short = min(width, height)
    low = min(size, short)
    sides = np.rint(np.exp(rng.uniform(np.log(low), np.log(short), n))).astype(int)
    lefts = (rng.random(n) * (width - sides + 1)).astype(int)
    tops = (rng.random(n) * (height - sides + 1)).astype(int)
    boxes = list(zip(lefts, tops, lefts + sides, tops + sides, strict=True))[:keep]
    return np.stack([resize_box(img, size, tuple(int(v) for v in box)) for box in boxes])


def photos_fingerprint(cfg: DataConfig) -> str:
    """sha256 of the contents of the bundled photo files that are installed (the same for every image size)."""
    found = [(p.name, path) for p in PHOTOS if (path := _package_file(p.package, p.path)) is not None]
    return files_fingerprint(found)


@dataset("photos", fingerprint=photos_fingerprint)
def load_photos(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
    """Crops of the split's photos, interleaved; the training crops depend on ``seed``, the test crops never do."""
    size = cfg.image_size
    chosen = [p for p in PHOTOS if (p.name in TEST_PHOTOS) == (split == "test")]
    found = [(p, path) for p in chosen if (path := _package_file(p.package, p.path)) is not None]
    if len(found) < len(chosen):
        missing = sorted({p.name for p in chosen} - {p.name for p, _ in found})
        message = f"photos: {', '.join(missing)} not found in the installed packages; skipped"
        warnings.warn(message, DataWarning, stacklevel=3)
    if not found:
        raise DatasetNotFoundError(f"photos: none of the {split} photos {[p.name for p in chosen]} is installed")
    n = _crops_per_photo(split, size)
    keep = min(n, -(-limit // len(found))) if limit else n  # the crops the first `limit` interleaved images use
    crop_seed = seed if split == "train" else PHOTO_TEST_SEED
    crops = [
        _random_crops(open_rgb(path), n, size, np.random.default_rng([crop_seed, zlib.crc32(p.name.encode())]), keep)
        for p, path in found
    ]
    # Interleave the photos (crop 0 of every photo, then crop 1, ...) so that any prefix covers every photo.
    images = torch.from_numpy(np.stack(crops, axis=1).reshape(-1, size, size, 3).transpose(0, 3, 1, 2).copy())
    if limit:
        images = images[:limit].clone()
    return ImageDataset("photos", size, images=images, sources=[p.name for p, _ in found])
