"""The dataset registry: every registered name loads (where its data is present), names are checked against it, and a
source registered anywhere is dispatched to by load_dataset, check_config and data_fingerprint."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pqstudy.config import ConfigError, DataConfig
from pqstudy.data import (
    DATASETS,
    DatasetNotFoundError,
    ImageDataset,
    check_config,
    data_fingerprint,
    dataset,
    load_dataset,
)
from pqstudy.data.registry import source_of

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def registry() -> dict:
    """DATASETS, restored after the test (which may register more)."""
    saved = dict(DATASETS)
    yield DATASETS
    DATASETS.clear()
    DATASETS.update(saved)


def example_name(source, tmp_path: Path) -> str:
    """A data.name of ``source``: its name, or for the ``folder:<path>`` family a small folder written here."""
    if not source.argument:
        return source.name
    assert source.argument == "path", f"{source.usage}: teach this test an example argument for the family"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        (tmp_path / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / split / f"{i}.png")
    return f"{source.name}:{tmp_path}"


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_registered_dataset_loads(name: str, tmp_path: Path) -> None:
    cfg = DataConfig(name=example_name(DATASETS[name], tmp_path), image_size=16, train_limit=4, download=False,
                     root="" if os.environ.get("PQSTUDY_DATA_DIR") else str(SHARED))
    assert check_config(cfg) is cfg
    try:
        fingerprint = data_fingerprint(cfg)
        train, test = load_dataset(cfg, "train", seed=0), load_dataset(cfg, "test", seed=0)
    except DatasetNotFoundError as err:
        pytest.skip(f"{name}: data absent here ({err})")
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0 and data_fingerprint(cfg) == fingerprint
    for split, ds in (("train", train), ("test", test)):
        assert isinstance(ds, ImageDataset) and ds.name == cfg.name and ds.image_size == 16, split
        batch = ds.get_batch(torch.arange(min(len(ds), 4)))
        assert batch.dtype == torch.uint8 and batch.shape[1:] == (3, 16, 16) and len(batch) > 0, split
    assert len(train) == 4  # train_limit keeps the first 4 training images
    assert torch.equal(train.get_batch(torch.arange(4)), load_dataset(cfg, "train", seed=0).get_batch(torch.arange(4)))


@pytest.mark.parametrize("name", ["mnist", "folder", "folder:", "imagenet:x", "photos:", ""])
def test_unknown_name_is_a_config_error_listing_the_registry(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(DataConfig(name=name))
    message = str(info.value)
    assert message.startswith(f"data.name={name!r}: unknown dataset; choose one of ")
    for source in DATASETS.values():
        assert (f"'{source.name}'" if not source.argument else f" or {source.usage}") in message
    with pytest.raises(ConfigError, match="unknown dataset"):  # load_dataset says the same before reading anything
        load_dataset(DataConfig(name=name), "train")


def test_names_are_listed_in_registration_order() -> None:
    assert list(DATASETS)[:2] == ["cifar10", "photos"]  # the order __init__ imports the sources in
    assert {"folder", "imagenet", "ffhq"} <= set(DATASETS) and DATASETS["folder"].usage == "folder:<path>"


def test_a_registered_source_is_dispatched_to(registry: dict) -> None:
    calls = []

    def fingerprint(cfg: DataConfig) -> str:
        return f"{len(cfg.name):064x}"

    @dataset("toy", fingerprint=fingerprint)
    def load_toy(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
        calls.append((split, seed, limit))
        images = torch.full((limit or 3, 3, cfg.image_size, cfg.image_size), seed, dtype=torch.uint8)
        return ImageDataset(cfg.name, cfg.image_size, images=images)

    cfg = DataConfig(name="toy", image_size=8, train_limit=2)
    assert check_config(cfg) is cfg and source_of("toy").load is load_toy
    train = load_dataset(cfg, "train", seed=5)
    test = load_dataset(cfg, "test", seed=7)
    assert calls == [("train", 5, 2), ("test", 7, 0)]  # the limit applies to the training split only
    assert train.images.shape == (2, 3, 8, 8) and int(train.images.max()) == 5 and len(test) == 3
    assert data_fingerprint(cfg) == f"{3:064x}"
    with pytest.raises(ConfigError, match=r"choose one of \[.*'toy'.*\]"):
        check_config(DataConfig(name="toy2"))


def test_a_registered_family_gets_its_argument_from_the_name(registry: dict) -> None:
    @dataset("const", fingerprint=lambda cfg: "0" * 64, argument="value")
    def load_const(cfg: DataConfig, *, split: str, seed: int, limit: int) -> ImageDataset:
        value = int(cfg.name.partition(":")[2])
        return ImageDataset(cfg.name, cfg.image_size, images=torch.full((1, 3, 4, 4), value, dtype=torch.uint8))

    assert int(load_dataset(DataConfig(name="const:9", image_size=4), "test").images.max()) == 9
    with pytest.raises(ConfigError, match=r"or folder:<path> or const:<value>"):
        check_config(DataConfig(name="const:"))


@pytest.mark.parametrize(("name", "why"), [("cifar10", "registered twice"), ("a:b", "without ':'"), ("", "non-empty")])
def test_bad_registrations_are_refused(registry: dict, name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        dataset(name, fingerprint=lambda cfg: "")(lambda cfg, *, split, seed, limit: None)


def test_bad_split_and_size_are_refused_before_the_name() -> None:
    with pytest.raises(ValueError, match="split='val'"):
        load_dataset(DataConfig(name="mnist"), "val")
    with pytest.raises(ConfigError, match=r"data.image_size=0"):
        load_dataset(DataConfig(name="mnist", image_size=0), "train")
