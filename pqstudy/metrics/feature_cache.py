"""Content-keyed cache of the originals' Inception features, so each evaluation extracts only its reconstructions.

The key is the sha256 of (the Inception weights' sha256, the exact uint8 bytes of the images, their count): the
same images through the same network give the same key on any machine, and any change to either gives a new one.
Files are ``<dir>/inception-<key>.npy`` (float32, N × 2048, no pickles), written atomically. The directory is
``$PQSTUDY_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/pqstudy/features`` (``~/.cache/pqstudy/features``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["cache_dir", "feature_key", "load_features", "save_features"]


def cache_dir() -> Path:
    if os.environ.get("PQSTUDY_FEATURE_CACHE"):
        return Path(os.environ["PQSTUDY_FEATURE_CACHE"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "pqstudy" / "features"


def feature_key(weights_sha256: str, images_uint8: torch.Tensor) -> str:
    """The cache key of ``images_uint8`` (N, 3, H, W) under the network whose weights hash to ``weights_sha256``."""
    digest = hashlib.sha256()
    digest.update(weights_sha256.encode())
    digest.update(str(tuple(images_uint8.shape)).encode())
    digest.update(images_uint8.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _path(key: str) -> Path:
    return cache_dir() / f"inception-{key}.npy"


def load_features(key: str, count: int) -> torch.Tensor | None:
    """The cached (count, 2048) features, or None when absent or not of that shape."""
    path = _path(key)
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.shape != (count, 2048) or array.dtype != np.float32:
        return None
    return torch.from_numpy(array)


def save_features(key: str, features: torch.Tensor) -> Path:
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            np.save(f, features.detach().cpu().float().numpy(), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
