"""pqstudy.data: every dataset from tiny fixtures written here; nothing is downloaded."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pqstudy.config import ConfigError, DataConfig
from pqstudy.data import DatasetNotFoundError, DataWarning, ImageDataset, cifar10, load_dataset, photos
from pqstudy.data import folder as folder_source

PER_BATCH = 4  # images per fixture batch: 5 × 4 = 20 train, 4 test


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PQSTUDY_DATA_DIR", raising=False)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def write_cifar(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The python-batch layout with PER_BATCH images per batch; returns the rows written, per split."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = {"train": [], "test": []}
    names = [(f"data_batch_{i}", "train") for i in range(1, 6)] + [("test_batch", "test")]
    for name, split in names:
        batch = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        content = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, PER_BATCH)],
            b"data": batch,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(PER_BATCH)],
        }
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
        rows[split].append(batch)
    return {split: np.concatenate(batches) for split, batches in rows.items()}


def cifar_cfg(root: Path | str = "", **kwargs) -> DataConfig:
    return DataConfig(name="cifar10", root=str(root), download=kwargs.pop("download", False), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# cifar10


def test_cifar10_labels_follow_their_images(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    labels = {name: pickle.loads((tmp_path / "cifar-10-batches-py" / name).read_bytes())[b"labels"]
              for name in ("data_batch_1", "data_batch_2", "test_batch")}
    train = load_dataset(cifar_cfg(tmp_path, train_limit=PER_BATCH + 2), "train")
    assert train.num_classes == 10 and train.labels.dtype == torch.int64
    assert train.labels.tolist() == labels["data_batch_1"] + labels["data_batch_2"][:2]
    assert load_dataset(cifar_cfg(tmp_path), "test").labels.tolist() == labels["test_batch"]
    with pytest.raises(ValueError, match="one label per image"):
        ImageDataset("x", 32, images=train.images, labels=train.labels[:3], num_classes=10)


def test_cifar10_shapes_dtype_and_channel_major_layout(tmp_path: Path) -> None:
    rows = write_cifar(tmp_path)
    train = load_dataset(cifar_cfg(tmp_path), "train")
    test = load_dataset(cifar_cfg(tmp_path), "test")
    assert isinstance(train, ImageDataset) and train.name == "cifar10"
    assert len(train) == 5 * PER_BATCH and len(test) == PER_BATCH
    assert train.images is not None and train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train[0].shape == (3, 32, 32) and train[0].dtype == torch.uint8
    # A row is 1024 red values, then 1024 green, then 1024 blue, each row-major over 32×32.
    row = rows["train"][6]
    image = train[6].numpy()
    assert image[0, 0, 1] == row[1] and image[0, 1, 0] == row[32] and image[1, 0, 0] == row[1024]
    assert image[2, 31, 31] == row[3071]
    assert np.array_equal(train.images.numpy(), rows["train"].reshape(-1, 3, 32, 32))
    assert np.array_equal(test.images.numpy(), rows["test"].reshape(-1, 3, 32, 32))


def test_cifar10_root_may_be_the_batches_folder_itself(tmp_path: Path) -> None:
    rows = write_cifar(tmp_path)
    test = load_dataset(cifar_cfg(tmp_path / "cifar-10-batches-py"), "test")
    assert np.array_equal(test.images.numpy(), rows["test"].reshape(-1, 3, 32, 32))


def test_env_var_wins_over_cfg_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_rows = write_cifar(tmp_path / "env", seed=1)
    write_cifar(tmp_path / "cfg", seed=2)
    monkeypatch.setenv("PQSTUDY_DATA_DIR", str(tmp_path / "env"))
    test = load_dataset(cifar_cfg(tmp_path / "cfg"), "test")
    assert np.array_equal(test.images.numpy(), env_rows["test"].reshape(-1, 3, 32, 32))
    monkeypatch.setenv("PQSTUDY_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError, match="empty"):
        load_dataset(cifar_cfg(tmp_path / "cfg"), "test")


def test_cifar10_absent_without_download_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(cifar_cfg(root, download=False), "train")
    message = str(info.value)
    assert isinstance(info.value, DatasetNotFoundError)
    assert str(root / "cifar-10-batches-py") in message
    assert "PQSTUDY_DATA_DIR" in message and "download is off" in message
    assert not root.exists()  # nothing created, nothing fetched (the network is refused by the fixture)


def test_cifar10_download_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError, match="download failed.*no route to host") as info:
        load_dataset(cifar_cfg(tmp_path, download=True), "train")
    assert "PQSTUDY_DATA_DIR" in str(info.value) and str(tmp_path) in str(info.value)


def test_cifar10_download_with_bad_checksum_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"not the archive"))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        load_dataset(cifar_cfg(tmp_path, download=True), "test")
    assert list(tmp_path.iterdir()) == []  # the partial download is removed


def test_cifar10_download_verifies_and_unpacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = write_cifar(tmp_path / "source")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "source" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = buffer.getvalue()
    calls = []

    def fake_urlopen(url: str, timeout: float) -> io.BytesIO:
        calls.append((url, timeout))
        return io.BytesIO(archive)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(cifar10, "CIFAR_MD5", hashlib.md5(archive).hexdigest())
    (tmp_path / "root").mkdir()  # a named root must exist: only the default one is created
    test = load_dataset(cifar_cfg(tmp_path / "root", download=True), "test")
    assert calls == [(cifar10.CIFAR_URL, cifar10.DOWNLOAD_TIMEOUT_S)] and cifar10.DOWNLOAD_TIMEOUT_S <= 10
    assert np.array_equal(test.images.numpy(), rows["test"].reshape(-1, 3, 32, 32))
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["cifar-10-batches-py"]


def test_cifar10_train_limit(tmp_path: Path) -> None:
    rows = write_cifar(tmp_path)
    train = load_dataset(cifar_cfg(tmp_path, train_limit=7), "train")
    assert np.array_equal(train.images.numpy(), rows["train"][:7].reshape(-1, 3, 32, 32))
    assert len(load_dataset(cifar_cfg(tmp_path, train_limit=7), "test")) == PER_BATCH  # test split is whole


def test_cifar10_resize_to_16(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    content = pickle.loads(batch.read_bytes())
    content[b"data"][0] = np.repeat(np.array([10, 120, 250], dtype=np.uint8), 1024)  # a flat colour
    batch.write_bytes(pickle.dumps(content))
    test = load_dataset(cifar_cfg(tmp_path, image_size=16), "test")
    assert test.images.shape == (PER_BATCH, 3, 16, 16) and test.images.dtype == torch.uint8
    assert test[0].flatten(1).tolist() == [[10] * 256, [120] * 256, [250] * 256]
    assert torch.equal(test.images, load_dataset(cifar_cfg(tmp_path, image_size=16), "test").images)


def test_bad_split_and_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'validation'"):
        load_dataset(cifar_cfg(tmp_path), "validation")
    with pytest.raises(ConfigError, match="mnist"):
        load_dataset(DataConfig(name="mnist"), "train")


# ---------------------------------------------------------------------------------------------------------------
# photos


@pytest.fixture(scope="module")
def photos_train() -> ImageDataset:
    return load_dataset(DataConfig(name="photos"), "train", seed=0)


def test_photos_shapes_and_split_by_source(photos_train: ImageDataset) -> None:
    test = load_dataset(DataConfig(name="photos"), "test", seed=0)
    for ds in (photos_train, test):
        assert ds.name == "photos" and ds.images is not None
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (3, 32, 32)
        assert ds[0].shape == (3, 32, 32)
    assert 2000 <= len(photos_train) <= 4000 and 300 <= len(test) <= 800
    assert set(test.sources) == set(photos.TEST_PHOTOS)
    assert not set(photos_train.sources) & set(test.sources) and len(photos_train.sources) >= 5
    assert photos_train.images.float().std() > 20  # real pictures, not flat fills


def test_photos_are_deterministic_per_seed(photos_train: ImageDataset) -> None:
    again = load_dataset(DataConfig(name="photos"), "train", seed=0)
    other = load_dataset(DataConfig(name="photos"), "train", seed=1)
    assert torch.equal(photos_train.images, again.images)
    assert not torch.equal(photos_train.images, other.images)
    # the test split does not depend on the seed: every run is scored on the same crops
    test0 = load_dataset(DataConfig(name="photos"), "test", seed=0)
    test1 = load_dataset(DataConfig(name="photos"), "test", seed=1)
    assert torch.equal(test0.images, test1.images)


def test_photos_larger_sizes_and_train_limit() -> None:
    medium = load_dataset(DataConfig(name="photos", image_size=96), "test")
    assert medium.images.shape[1:] == (3, 96, 96) and len(medium) >= 2 * photos.MIN_CROPS_PER_PHOTO
    larger_than_a_photo = load_dataset(DataConfig(name="photos", image_size=320), "test")  # chelsea is 451×300
    assert larger_than_a_photo.images.shape[1:] == (3, 320, 320)
    limited = load_dataset(DataConfig(name="photos", image_size=16, train_limit=10), "train")
    assert len(limited) == 10


@pytest.mark.parametrize("limit", [1, 9, 512])
def test_photos_train_limit_is_a_prefix_of_the_whole_split(photos_train: ImageDataset, limit: int) -> None:
    """Only the crops the first ``limit`` images use are resized, and they are the very same crops."""
    limited = load_dataset(DataConfig(name="photos", train_limit=limit), "train", seed=0)
    assert torch.equal(limited.images, photos_train.images[:limit])


# ---------------------------------------------------------------------------------------------------------------
# folders


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def truncated_jpeg(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(random_image(rng, 64, 64)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def folder_cfg(path: Path, **kwargs) -> DataConfig:
    return DataConfig(name=f"folder:{path}", **kwargs)


def test_folder_skips_corrupt_files_with_one_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    exact = random_image(rng, 32, 32)
    save_png(tmp_path / "train" / "a_exact.png", exact)
    save_png(tmp_path / "train" / "b_wide.png", random_image(rng, 40, 60))
    save_png(tmp_path / "train" / "nested" / "c_flat.png", np.full((50, 45, 3), (10, 200, 30), dtype=np.uint8))
    Image.fromarray(exact[:, :, 0]).save(tmp_path / "train" / "d_gray.png")
    (tmp_path / "train" / "corrupt.png").write_bytes(rng.bytes(500))
    (tmp_path / "train" / "truncated.jpg").write_bytes(truncated_jpeg(rng))
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    save_png(tmp_path / "test" / "t.png", random_image(rng, 32, 32))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = load_dataset(folder_cfg(tmp_path), "train")
    assert len(caught) == 1 and issubclass(caught[0].category, DataWarning)
    message = str(caught[0].message)
    assert "2 unreadable" in message and "corrupt.png" in message and "truncated.jpg" in message
    assert train.images is not None and train.images.shape == (4, 3, 32, 32)
    assert np.array_equal(train[0].permute(1, 2, 0).numpy(), exact)  # 32 px at 32 px: the pixels themselves
    # sorted by relative path: a_exact, b_wide, d_gray, nested/c_flat
    assert torch.equal(train[2][0], train[2][1]) and torch.equal(train[2][0], torch.from_numpy(exact[:, :, 0]))
    assert train[3].flatten(1).tolist() == [[10] * 1024, [200] * 1024, [30] * 1024]
    assert len(load_dataset(folder_cfg(tmp_path), "test")) == 1


def test_folder_val_subfolder_is_the_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(3):
        save_png(tmp_path / "train" / f"{i}.png", random_image(rng, 20, 20))
    save_png(tmp_path / "val" / "v.jpeg", random_image(rng, 20, 30))
    test = load_dataset(folder_cfg(tmp_path, image_size=16), "test")
    assert test.images.shape == (1, 3, 16, 16)
    assert len(load_dataset(folder_cfg(tmp_path, image_size=16, train_limit=2), "train")) == 2


def test_folder_without_split_subfolders_splits_by_path_hash(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for i in range(60):
        save_png(tmp_path / f"group{i % 3}" / f"{i:03d}.png", random_image(rng, 8, 8))
    train = load_dataset(folder_cfg(tmp_path, image_size=8), "train")
    test = load_dataset(folder_cfg(tmp_path, image_size=8), "test")
    assert len(train) + len(test) == 60 and 1 <= len(test) <= 15
    assert torch.equal(train.images, load_dataset(folder_cfg(tmp_path, image_size=8), "train").images)
    train_rows = {bytes(x.numpy()) for x in train.images}
    assert not train_rows & {bytes(x.numpy()) for x in test.images}


def test_empty_or_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "empty")):
        load_dataset(folder_cfg(tmp_path / "empty"), "train")
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        load_dataset(folder_cfg(tmp_path / "missing"), "train")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DatasetNotFoundError, match="1 unreadable"):
            load_dataset(folder_cfg(tmp_path / "bad"), "train")


def test_large_folders_decode_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    for i in range(5):
        save_png(tmp_path / "train" / f"{i}.png", random_image(rng, 24, 36))
    (tmp_path / "train" / "5_corrupt.png").write_bytes(rng.bytes(300))
    save_png(tmp_path / "test" / "t.png", random_image(rng, 24, 24))
    with pytest.warns(DataWarning, match="1 unreadable"):
        eager = load_dataset(folder_cfg(tmp_path, image_size=16), "train")

    monkeypatch.setattr(folder_source, "EAGER_MAX_FILES", 0)
    with pytest.warns(DataWarning, match="1 unreadable"):
        lazy = load_dataset(folder_cfg(tmp_path, image_size=16), "train")
    assert lazy.images is None and len(lazy) == len(eager) == 5
    assert lazy[1].shape == (3, 16, 16) and lazy[1].dtype == torch.uint8
    idx = torch.tensor([4, 0, 2])
    assert torch.equal(lazy.get_batch(idx), eager.get_batch(idx))
    assert torch.equal(eager.get_batch(idx), torch.stack([eager[i] for i in idx.tolist()]))
    assert lazy.get_batch(torch.tensor([], dtype=torch.long)).shape == (0, 3, 16, 16)


def test_lazy_file_that_fails_at_access_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "0_truncated.jpg").write_bytes(truncated_jpeg(rng))  # passes the scan, fails to decode
    save_png(tmp_path / "train" / "1.png", random_image(rng, 16, 16))
    save_png(tmp_path / "test" / "t.png", random_image(rng, 16, 16))
    monkeypatch.setattr(folder_source, "EAGER_MAX_FILES", 0)
    lazy = load_dataset(folder_cfg(tmp_path, image_size=16), "train")
    with pytest.warns(DataWarning, match="0_truncated.jpg"):
        batch = lazy.get_batch(torch.arange(len(lazy)))
    assert batch.shape == (len(lazy), 3, 16, 16) and torch.equal(batch[0], batch[-1])


def test_imagenet_and_ffhq_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for name in ("imagenet", "ffhq"):
        with pytest.raises(DatasetNotFoundError, match=f"{name}.*{tmp_path / name}") as info:
            load_dataset(DataConfig(name=name, root=str(tmp_path), image_size=16), "train")
        assert "PQSTUDY_DATA_DIR" in str(info.value)
    save_png(tmp_path / "imagenet" / "train" / "n01440764" / "a.JPEG", random_image(rng, 30, 40))
    save_png(tmp_path / "imagenet" / "train" / "n01443537" / "b.png", random_image(rng, 40, 30))
    save_png(tmp_path / "imagenet" / "val" / "c.png", random_image(rng, 20, 20))
    cfg = DataConfig(name="imagenet", root=str(tmp_path), image_size=16)
    assert load_dataset(cfg, "train").images.shape == (2, 3, 16, 16)
    assert load_dataset(cfg, "test").name == "imagenet" and len(load_dataset(cfg, "test")) == 1
