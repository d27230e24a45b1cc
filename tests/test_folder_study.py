"""Any image folder in sweeps and the study; the LC codebook cache follows the data; eval splits stored apart."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pqstudy.cli import build_parser, main
from pqstudy.codebooks import build_codebook, cache_path
from pqstudy.codebooks.sources import feature_source
from pqstudy.config import DataConfig, QuantizerConfig, apply_overrides, get_profile
from pqstudy.data import DatasetNotFoundError, data_fingerprint
from pqstudy.generation.config import GenRunConfig
from pqstudy.runio import read_json
from pqstudy.study.grids import GRIDS, check_data, grid_configs, read_grid_file
from pqstudy.study.regenerate import default_results_dir
from pqstudy.train_eval import train_and_evaluate


def _write_images(folder: Path, n: int, seed: int = 0, size: int = 36) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{seed}_{i:03d}.png")


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    _write_images(root / "train", 24, seed=0)
    _write_images(root / "test", 8, seed=1)
    return root


# ---------------------------------------------------------------------------------------------------------------
# data fingerprint and the LC codebook cache


def test_folder_fingerprint_follows_every_change(image_folder):
    cfg = DataConfig(name=f"folder:{image_folder}")
    first = data_fingerprint(cfg)
    assert data_fingerprint(cfg) == first and len(first) == 64
    _write_images(image_folder / "train" / "more", 1, seed=5)  # a file added (in a subfolder)
    added = data_fingerprint(cfg)
    assert added != first
    victim = image_folder / "train" / "img0_000.png"
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a file rewritten (same size)
    assert data_fingerprint(cfg) not in (first, added)
    (image_folder / "notes.txt").write_text("not an image")  # a non-image file does not change what is read
    touched = data_fingerprint(cfg)
    (image_folder / "notes.txt").write_text("still not an image")
    assert data_fingerprint(cfg) == touched


def test_fingerprint_of_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="is not a folder"):
        data_fingerprint(DataConfig(name=f"folder:{tmp_path / 'absent'}"))


def test_photos_fingerprint_is_stable():
    assert data_fingerprint(DataConfig(name="photos")) == data_fingerprint(DataConfig(name="photos", image_size=64))


def test_lc_codebook_is_rebuilt_when_the_folder_changes(image_folder, tmp_path, one_thread):
    q = QuantizerConfig(
        kind="lc",
        codebook_size=16,
        dim=8,
        lc_source="pixels",
        lc_patch=4,
        lc_init="kmeans",
        lc_samples=256,
        lc_kmeans_iters=2,
        codebook_cache=str(tmp_path / "cache"),
    )
    data = DataConfig(name=f"folder:{image_folder}", image_size=16)
    source = feature_source(q.lc_source, patch=q.lc_patch)
    before = cache_path(q, source, data, seed=0)
    first = build_codebook(q, data, seed=0)
    assert before.is_file()
    for path in sorted((image_folder / "train").glob("*.png"))[:12]:  # the training images change
        path.unlink()
    _write_images(image_folder / "train", 12, seed=7)
    after = cache_path(q, source, data, seed=0)
    assert after != before and not after.exists()
    second = build_codebook(q, data, seed=0)
    assert after.is_file() and not np.array_equal(first.numpy(), second.numpy())
    meta = json.loads(torch.load(after, weights_only=True)["meta"])
    assert meta["data"]["fingerprint"] == data_fingerprint(data)


# ---------------------------------------------------------------------------------------------------------------
# grids on any dataset


def test_every_grid_config_gets_the_data_name(image_folder, monkeypatch):
    monkeypatch.chdir(image_folder.parent)
    for name in GRIDS:
        configs = grid_configs(name, "smoke", data="folder:imgs")
        data = {(c.tokenizer if isinstance(c, GenRunConfig) else c).data.name for c in configs}  # a generator: its
        assert configs and data == {f"folder:{image_folder.resolve()}"}  # tokenizer's data
    default = grid_configs("lc-init", "smoke")
    assert {c.data.name for c in default} == {get_profile("smoke").data.name}
    assert {c.run_id for c in default}.isdisjoint(c.run_id for c in grid_configs("lc-init", "smoke", "cifar10"))


def test_default_results_dir_names_the_dataset(image_folder):
    assert default_results_dir("default") == Path("results")
    assert default_results_dir("default", "cifar10") == Path("results")  # the profile's own dataset
    assert default_results_dir("smoke", "cifar10") == Path("results/smoke-cifar10")
    folder = default_results_dir("smoke", f"folder:{image_folder}")
    assert folder.parent == Path("results") and folder.name.startswith("smoke-folder-imgs-")
    for command in ("figures", "report"):  # they find a --data study's results the same way
        assert build_parser().parse_args([command, "--data", f"folder:{image_folder}"]).data == f"folder:{image_folder}"


def test_check_data_names_the_bad_path(tmp_path, image_folder):
    check_data(grid_configs("continuous", "smoke", data=f"folder:{image_folder}"))
    with pytest.raises(DatasetNotFoundError, match="absent"):
        check_data(grid_configs("continuous", "smoke", data=f"folder:{tmp_path / 'absent'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no readable images"):
        check_data(grid_configs("continuous", "smoke", data=f"folder:{tmp_path / 'empty'}"))


@pytest.mark.parametrize("command", [["sweep", "pq-subspaces"], ["study", "--grids", "continuous,lc-init"]])
def test_bad_data_path_fails_before_any_output(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = ["--results", "res", "--runs", "runs", "--papermill-dir", "pm"]
    assert main([*command, "--profile", "smoke", "--data", "folder:nowhere", *out, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "is not a folder" in err and "Traceback" not in err
    assert main([*command, "--profile", "smoke", "--data", "folder:nowhere", "--quiet"]) == 1  # default dirs
    assert list(tmp_path.iterdir()) == []


def test_unknown_data_name_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "continuous", "--profile", "smoke", "--data", "mnist", "--quiet"]) == 2
    assert "data.name='mnist'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# custom grid files


def test_grid_file_is_every_combination(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "set": {"quantizer.kind": "pq", "quantizer.dim": 8, "model.ch_mult": [1, 2]},
                "vary": {"quantizer.subspaces": [2, 4], "quantizer.codebook_size": [16, 32, 64]},
                "steps": 5,
            }
        )
    )
    name, configs = read_grid_file(path, "smoke", data="cifar10")
    assert name == "mine" and len(configs) == 6 and len({c.run_id for c in configs}) == 6
    assert [(c.quantizer.subspaces, c.quantizer.codebook_size) for c in configs][:2] == [(2, 16), (2, 32)]
    assert {(c.quantizer.kind, c.train.steps, c.model.ch_mult, c.data.name) for c in configs} == {
        ("pq", 5, (1, 2), "cifar10")
    }
    assert {c.train.eval_limit for c in configs} == {64}  # the smoke scale's extras, as in the built-in grids


def test_readme_grid_file_example_reads(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("A custom grid", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "pq-k-by-m.json"
    path.write_text(example)
    name, configs = read_grid_file(path, "default")
    assert name == "pq-k-by-m" and len(configs) == 6 and {c.train.steps for c in configs} == {400}


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ("[1]", "holds a list"),
        ('{"vary": {}}', '"vary" must be a non-empty object'),
        ('{"vary": {"train.seed": 0}}', "must be a non-empty list"),
        ('{"vary": {"train.seed": [0]}, "sets": {}}', "unknown key"),
        ('{"vary": {"train.seed": [0]}, "steps": 0}', '"steps" must be a positive integer'),
    ],
)
def test_bad_grid_file_is_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_grid_file(path, "smoke")
    assert str(path) in str(info.value)


def test_grid_file_with_unknown_field_is_a_config_error(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"vary": {"quantizer.nope": [1]}}')
    assert main(["sweep", str(path), "--profile", "smoke", "--results", str(tmp_path / "res"), "--quiet"]) == 2
    assert "quantizer.nope" in capsys.readouterr().err and not (tmp_path / "res").exists()


def test_sweep_runs_a_grid_file_on_a_folder(image_folder, tmp_path, monkeypatch, pqstudy_kernel):
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "tiny.json"
    grid.write_text(json.dumps({"name": "tiny", "steps": 2, "vary": {"train.seed": [0]}}))
    assert main(["sweep", str(grid), "--profile", "smoke", "--data", "folder:imgs", "--jobs", "1", "--quiet"]) == 0
    results = next((tmp_path / "results").iterdir())
    assert results.name.startswith("smoke-folder-imgs-")
    (record,) = [read_json(p) for p in (results / "runs").glob("*.json")]
    assert record["status"] == "ok" and record["grids"] == ["tiny"]
    assert record["config"]["data"]["name"] == f"folder:{image_folder.resolve()}"


# ---------------------------------------------------------------------------------------------------------------
# eval on another split


def test_eval_train_split_keeps_the_test_metrics(image_folder, tmp_path, capsys, one_thread):
    cfg = apply_overrides(
        get_profile("smoke"),
        {"data.name": f"folder:{image_folder}", "train.steps": "2", "train.eval_metrics": "", "train.batch_size": "8"},
    )
    run = tmp_path / "run"
    train_and_evaluate(cfg, run, progress=False)
    stored = (run / "metrics.json").read_bytes()
    assert main(["eval", str(run), "--split", "train", "--quiet", "--device", "cpu"]) == 0
    assert str(run / "metrics_train.json") in capsys.readouterr().err
    assert (run / "metrics.json").read_bytes() == stored
    on_train = read_json(run / "metrics_train.json")
    assert on_train["split"] == "train" and on_train["images"] == 24
    assert read_json(run / "metrics.json")["split"] == "test"
    assert main(["eval", str(run), "--quiet", "--device", "cpu"]) == 0  # the test split still goes to metrics.json
    again = read_json(run / "metrics.json")
    assert again["split"] == "test" and again["steps"] == 2 and again["images"] == 8
