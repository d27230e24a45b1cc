"""Datasets by name: each source registers its loader where it is defined, and ``load_dataset`` dispatches here.

A source file registers a loader with ``@dataset(name, fingerprint=...)``::

    @dataset("cifar10", fingerprint=cifar10_fingerprint)
    def load_cifar10(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset: ...

``argument="path"`` registers a family of names instead, ``folder:<path>``: the loader reads what follows the colon
from ``cfg.name``. The fingerprint (``cfg → sha256 hex``) digests the files the loader reads; it keys the caches of
whatever is built from the data. Adding a dataset is one new file in this package with its registration, plus its
import in ``pqstudy/data/__init__.py``; names are listed (in errors) in registration order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pqstudy.config import ConfigError, DataConfig
from pqstudy.data.dataset import SPLITS, ImageDataset


class Loader(Protocol):
    def __call__(self, cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
        """The ``split`` of the dataset at ``cfg.image_size``; ``limit > 0`` keeps the first ``limit`` images;
        ``seed`` may vary random crops of a training split (test splits never depend on it)."""
        ...


@dataclass(frozen=True)
class DatasetSource:
    name: str  # the data.name, or for a family (argument set) the part before the colon
    load: Loader
    fingerprint: Callable[[DataConfig], str]  # sha256 hex of the files ``load`` reads
    argument: str = ""  # a family's argument ("path": the names folder:<path>); "" for one dataset

    @property
    def usage(self) -> str:
        """How the name is written: ``cifar10``, ``folder:<path>``."""
        return f"{self.name}:<{self.argument}>" if self.argument else self.name


DATASETS: dict[str, DatasetSource] = {}  # filled by the source modules as pqstudy.data imports them


def dataset(name: str, *, fingerprint: Callable[[DataConfig], str], argument: str = "") -> Callable[[Loader], Loader]:
    """Register the decorated loader as dataset ``name`` (a family ``name:<argument>`` when ``argument`` is set)."""
    if not name or ":" in name:
        raise ValueError(f"dataset name {name!r}: must be non-empty and without ':'")

    def register(load: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetSource(name=name, load=load, fingerprint=fingerprint, argument=argument)
        return load

    return register


def source_of(name: str) -> DatasetSource:
    """The registered source of ``data.name``; a ConfigError listing every registered name when there is none."""
    source = DATASETS.get(name)
    if source is not None and not source.argument:
        return source
    family, colon, argument = name.partition(":")
    source = DATASETS.get(family)
    if colon and argument and source is not None and source.argument:
        return source
    names = [s.name for s in DATASETS.values() if not s.argument]
    families = "".join(f" or {s.usage}" for s in DATASETS.values() if s.argument)
    raise ConfigError(f"data.name={name!r}: unknown dataset; choose one of {names}{families}")


def check_config(cfg: DataConfig) -> DataConfig:
    """``cfg`` when its ``name`` is a registered dataset (reads nothing); else the ConfigError of ``source_of``."""
    source_of(cfg.name)
    return cfg


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
    return source_of(cfg.name).load(cfg, split=split, seed=seed, limit=limit)


def data_fingerprint(cfg: DataConfig) -> str:
    """The digest of the files dataset ``cfg.name`` is read from (its source's ``fingerprint``); raises the
    dataset's own not-found error when they are missing (``cifar10`` is downloaded first where ``data.download``
    allows)."""
    return source_of(cfg.name).fingerprint(cfg)
