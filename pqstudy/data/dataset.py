"""``ImageDataset``: what every source returns, images as uint8 tensors (3, H, W); the errors sources raise."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pqstudy.data.images import DECODE_ERRORS, read_image, to_chw

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where it was looked for and where to put it."""


class DataWarning(UserWarning):
    """Something in the data was skipped (e.g. unreadable image files)."""


class ImageDataset(Dataset):
    """Images as uint8 tensors (3, H, W).

    ``images`` holds every image as one uint8 tensor (N, 3, H, W) when the data is in memory; it is ``None`` for large
    folders, whose ``files`` are decoded on access. ``sources`` names where the images come from (photo names, folders).
    ``labels``: one class index per image (N,) int64 for labelled data (CIFAR-10), ``None`` otherwise;
    ``num_classes`` is 0 for unlabelled data.
    """

    def __init__(
        self,
        name: str,
        image_size: int,
        *,
        images: torch.Tensor | None = None,
        files: Sequence[Path] = (),
        sources: Sequence[str] = (),
        labels: torch.Tensor | None = None,
        num_classes: int = 0,
    ) -> None:
        if images is None and not files:
            raise ValueError("ImageDataset needs images or files")
        n = len(images) if images is not None else len(files)
        if labels is not None and (labels.shape != (n,) or num_classes < 1):
            raise ValueError(f"ImageDataset labels: need one label per image ({n}) and num_classes >= 1, got shape "
                             f"{tuple(labels.shape)} and num_classes={num_classes}")
        self.name = name
        self.image_size = image_size
        self.images = images
        self.files = [] if images is not None else list(files)
        self.sources = tuple(sources)
        self.labels = None if labels is None else labels.long()
        self.num_classes = num_classes if labels is not None else 0

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
                return to_chw(read_image(path, self.image_size))
            except DECODE_ERRORS as err:
                warnings.warn(f"{path}: unreadable ({err}); using the next image instead", DataWarning, stacklevel=3)
        raise RuntimeError(f"{self.name}: none of the {n} image files can be read")

    def __repr__(self) -> str:
        where = "in memory" if self.images is not None else "decoded on access"
        return f"ImageDataset({self.name!r}, n={len(self)}, size={self.image_size}, {where})"


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] images → float [-1, 1], the range the models see."""
    return images.float().div(127.5).sub(1.0)
