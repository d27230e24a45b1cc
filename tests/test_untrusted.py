"""Untrusted files: checkpoints load weights-only and CIFAR-10 batches through a restricted unpickler, so a pickle
payload is refused with a clear error and never runs; CIFAR batches are checked for structure and provenance."""

from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pqstudy.cli import main
from pqstudy.config import DataConfig, apply_overrides, get_profile
from pqstudy.data import CorruptDataError, DataWarning, cifar10, load_dataset, read_cifar_batch
from pqstudy.runio import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint, write_json

PER_BATCH = 4
NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class SystemPayload:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


class OpenPayload:
    """Unpickling this creates ``path`` through ``builtins.open``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return builtins.open, (str(self.path), "w")


def payloads(tmp_path: Path) -> list:
    return [SystemPayload(tmp_path / "pwned-system"), OpenPayload(tmp_path / "pwned-open")]


def assert_no_payload_ran(tmp_path: Path) -> None:
    assert not (tmp_path / "pwned-system").exists() and not (tmp_path / "pwned-open").exists()


def tiny_cfg(**overrides):
    base = {"train.steps": "2", "train.batch_size": "8", "train.eval_limit": "16", "train.eval_metrics": "",
            "train.history_every": "1"}
    return apply_overrides(get_profile("smoke"), {**base, **{k: str(v) for k, v in overrides.items()}})


def batch_content(name: str, rng: np.random.Generator) -> dict:
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, PER_BATCH)],
        b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
        b"filenames": [f"{name}_{i}.png".encode() for i in range(PER_BATCH)],
    }


def write_cifar(root: Path, replace: dict | None = None) -> Path:
    """A tiny python-batch folder; ``replace`` maps a batch name to the bytes to write instead."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in NAMES:
        content = (replace or {}).get(name)
        (folder / name).write_bytes(content if content is not None else pickle.dumps(batch_content(name, rng), 2))
    return folder


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("PQSTUDY_DATA_DIR", raising=False)


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


def fake_run_dir(path: Path, checkpoint_bytes: bytes | None = None, state=None) -> Path:
    """A run directory with a real config.json and a checkpoint.pt holding ``state`` (or the given bytes)."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_cfg()
    write_json(path / "config.json", {"run_id": cfg.run_id, **cfg.to_dict()})
    if checkpoint_bytes is not None:
        (path / CHECKPOINT).write_bytes(checkpoint_bytes)
    else:
        torch.save(state, path / CHECKPOINT)
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the raw pickle's protocol 4
@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
@pytest.mark.parametrize("which", [0, 1])
def test_checkpoint_payload_is_refused_everywhere(tmp_path, capsys, kind, which):
    payload = payloads(tmp_path)[which]
    state = {"run_id": "x", "model": payload}
    run = fake_run_dir(tmp_path / "run", pickle.dumps(state) if kind == "raw-pickle" else None,
                       state if kind == "torch-zip" else None)
    with pytest.raises(CheckpointError, match=r"refused to load.*could run code"):
        load_checkpoint(run)
    assert main(["eval", str(run), "--quiet", "--device", "cpu"]) == 1  # pqstudy eval
    assert re.search(r"pqstudy eval: .*checkpoint\.pt: refused to load", capsys.readouterr().err)
    from pqstudy.codebooks.sources import EncoderFeatures

    with pytest.raises(CheckpointError, match="refused"):  # quantizer.lc_source=encoder:DIR
        _ = EncoderFeatures(run).model
    from pqstudy.train_eval import train_and_evaluate

    with pytest.raises(CheckpointError, match="refused"):  # resume
        train_and_evaluate(tiny_cfg(), run, resume=True, progress=False)
    assert_no_payload_ran(tmp_path)


def test_garbage_checkpoint_is_a_clear_error(tmp_path):
    run = fake_run_dir(tmp_path / "run", b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt"):
        load_checkpoint(run)
    torch.save({"a": torch.zeros(3)}, run / CHECKPOINT)
    (run / CHECKPOINT).write_bytes((run / CHECKPOINT).read_bytes()[:200])  # truncated
    with pytest.raises(CheckpointError, match=r"not a readable pqstudy checkpoint"):
        load_checkpoint(run)


def test_training_checkpoints_hold_only_tensors_and_plain_types(tmp_path):
    from pqstudy.train_eval import train_and_evaluate

    train_and_evaluate(tiny_cfg(), tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)  # torch's own allowlist, nothing added
    assert state["step"] == 2 and len(state["usage_history"]) == 2
    assert all(isinstance(u, torch.Tensor) and u.dtype == torch.int32 for u in state["usage_history"])


def test_checkpoints_of_older_versions_with_numpy_arrays_still_load(tmp_path):
    usage = [np.arange(6, dtype=np.int32).reshape(1, 6)]
    torch.save({"run_id": "x", "usage_history": usage, "model": {"w": torch.ones(2)}}, tmp_path / CHECKPOINT)
    state = load_checkpoint(tmp_path)
    assert np.array_equal(np.asarray(state["usage_history"][0]), usage[0])
    save_checkpoint(tmp_path, state)  # re-saved: tensors only
    again = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert torch.equal(again["usage_history"][0], torch.arange(6, dtype=torch.int32).reshape(1, 6))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 batches


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("where", ["top", "data", "labels"])
def test_cifar_batch_payload_is_refused(tmp_path, which, where):
    content = batch_content("test_batch", np.random.default_rng(1))
    payload = payloads(tmp_path)[which]
    if where == "top":
        content = payload
    else:
        content[where.encode()] = payload
    folder = write_cifar(tmp_path / "data", {"test_batch": pickle.dumps(content, 2)})
    with pytest.raises(CorruptDataError, match=r"test_batch .*refused global (posix|os|builtins|io)"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "data"), download=False), "test")
    with pytest.raises(CorruptDataError, match="refused global"):
        read_cifar_batch(folder / "test_batch")
    assert_no_payload_ran(tmp_path)


def test_cifar_payload_through_the_cli_leaves_nothing(tmp_path, capsys, monkeypatch):
    content = batch_content("data_batch_1", np.random.default_rng(1))
    content[b"data"] = SystemPayload(tmp_path / "pwned-system")
    write_cifar(tmp_path / "data", {"data_batch_1": pickle.dumps(content, 2)})
    monkeypatch.setenv("PQSTUDY_DATA_DIR", str(tmp_path / "data"))
    rc = main(["train", "--out", str(tmp_path / "out"), "--quiet", "--set", "data.name=cifar10",
               "--set", "data.download=false"])
    assert rc == 1
    assert re.search(r"data_batch_1 is corrupt, truncated or not a CIFAR-10 batch: .*refused global",
                     capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
    assert_no_payload_ran(tmp_path)


BAD_STRUCTURE = [
    ("not a dict", lambda c: [c], r"expected a pickled dict, found list"),
    ("no data", lambda c: {b"labels": c[b"labels"]}, r"no 'data' and 'labels'"),
    ("float data", lambda c: {**c, b"data": c[b"data"].astype(np.float32)}, r"uint8 array N×3072, found float32"),
    ("wrong width", lambda c: {**c, b"data": c[b"data"][:, :100]}, r"found uint8 array of shape \(4, 100\)"),
    ("no images", lambda c: {**c, b"data": c[b"data"][:0], b"labels": []}, r"holds no images"),
    ("label count", lambda c: {**c, b"labels": c[b"labels"][:2]}, r"one label per image \(4\)"),
    ("label range", lambda c: {**c, b"labels": [0, 1, 2, 10]}, r"labels must be integers in 0\.\.9"),
    ("label type", lambda c: {**c, b"labels": [0, 1, 2, "3"]}, r"labels must be integers in 0\.\.9"),
]


@pytest.mark.parametrize("case", BAD_STRUCTURE, ids=[c[0] for c in BAD_STRUCTURE])
def test_cifar_batch_structure_is_validated(tmp_path, case):
    _, change, message = case
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(change(batch_content("test_batch", np.random.default_rng(2))), 2))
    with pytest.raises(CorruptDataError, match=rf"CIFAR-10 batch {path}.*{message}"):
        read_cifar_batch(path)


def test_cifar_provenance_official_md5_known_copy_or_a_warning(tmp_path, monkeypatch):
    folder = write_cifar(tmp_path / "data")
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "data"), download=False)
    with pytest.warns(DataWarning, match=r"test_batch match\(es\) neither the official .* structure only"):
        load_dataset(cfg, "test")
    digest = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in NAMES}
    monkeypatch.setattr(cifar10, "CIFAR_BATCH_MD5", digest)  # as if these were the official files
    monkeypatch.setattr(cifar10, "_VERIFIED", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert len(load_dataset(cfg, "test")) == PER_BATCH
    assert cifar10.cifar_batch_provenance(folder / "test_batch") == "official"
    monkeypatch.setattr(cifar10, "CIFAR_BATCH_MD5", {})
    monkeypatch.setattr(cifar10, "_VERIFIED", {})
    sha = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in NAMES}
    monkeypatch.setattr(cifar10, "CIFAR_KNOWN_COPIES_SHA256", {"a test copy": sha})
    assert cifar10.cifar_batch_provenance(folder / "test_batch") == "a test copy"
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes() + b"\0")  # changed: unknown again
    assert cifar10.cifar_batch_provenance(folder / "test_batch") is None


SHARED = Path("/work/shared/data")


@pytest.mark.skipif(not (SHARED / "cifar-10-batches-py" / "test_batch").is_file(), reason="offline copy absent")
def test_the_offline_reordered_copy_loads_as_a_known_copy():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        test = load_dataset(DataConfig(name="cifar10", root=str(SHARED), download=False), "test")
    assert test.images.shape == (10_000, 3, 32, 32)
    provenance = cifar10.cifar_batch_provenance(SHARED / "cifar-10-batches-py" / "test_batch")
    assert provenance == "shared/data (fixed random order)"
