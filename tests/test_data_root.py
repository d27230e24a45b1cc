"""The data root: a relative ``PQSTUDY_DATA_DIR`` (or ``data.root``) is taken from the repository root, not the
working directory (JupyterLab runs notebooks in ``notebooks/``), and a missing named root is reported, not created."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_data import cifar_cfg, write_cifar  # tests/ is on sys.path under pytest

from pqstudy.data import DatasetNotFoundError, load_dataset, resolve_data_root
from pqstudy.data import root as data_root


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout at ``tmp_path/repo`` with the working directory in its ``notebooks/``, as in JupyterLab."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    monkeypatch.setattr(data_root, "REPO_ROOT", root)
    monkeypatch.chdir(root / "notebooks")
    monkeypatch.delenv("PQSTUDY_DATA_DIR", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return root


def test_relative_data_dir_is_taken_from_the_repository_root(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = write_cifar(repo / "shared" / "data")
    monkeypatch.setenv("PQSTUDY_DATA_DIR", "shared/data")
    assert resolve_data_root(cifar_cfg()) == repo / "shared" / "data"
    test = load_dataset(cifar_cfg(), "test")
    assert np.array_equal(test.images.numpy(), rows["test"].reshape(-1, 3, 32, 32))
    monkeypatch.delenv("PQSTUDY_DATA_DIR")  # data.root too
    assert len(load_dataset(cifar_cfg("shared/data"), "test")) == len(rows["test"])
    assert resolve_data_root(cifar_cfg("/abs/elsewhere")) == Path("/abs/elsewhere")
    assert resolve_data_root(cifar_cfg()) == repo / "data"  # the default


@pytest.mark.parametrize("download", [False, True])
def test_missing_named_data_dir_is_reported_not_created(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                        download: bool) -> None:
    monkeypatch.setenv("PQSTUDY_DATA_DIR", "no/such/dir")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(cifar_cfg(download=download), "train")
    message = str(info.value)
    assert "PQSTUDY_DATA_DIR is set to 'no/such/dir'" in message  # spelled as it is, not lower-cased
    assert "The data root is PQSTUDY_DATA_DIR if set" in message
    assert str(repo / "no" / "such" / "dir" / "cifar-10-batches-py") in message
    assert ("does not exist" in message) if download else ("download is off" in message)
    assert sorted(p.name for p in repo.iterdir()) == ["notebooks", "pyproject.toml"]  # no stray data folder
    assert list((repo / "notebooks").iterdir()) == []
