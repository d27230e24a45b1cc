"""Bad input gets a clean error, not a traceback, before any training, and changes nothing already on disk.

``CASES`` is the table: each bad input, the command line that meets it, the exit code and the message expected on
stderr (a regex). Every case runs in-process through ``pqstudy.cli.main`` against one world of files (an existing
results directory, an existing run, data folders), and the test checks that no file of that world changed and that
no output directory was left behind. Below the table: a full disk, diverged runs, locks, and folder decoding.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pqstudy.cli import main
from pqstudy.config import apply_overrides, get_profile, run_id
from pqstudy.data import DataWarning, load_dataset
from pqstudy.runio import CHECKPOINT, write_json

TINY = {"train.steps": "2", "train.batch_size": "8", "train.eval_limit": "16", "train.eval_metrics": "",
        "train.history_every": "1"}
TRAIN = ["train", "--quiet", "--out", "{out}", *(a for k, v in TINY.items() for a in ("--set", f"{k}={v}"))]
CIFAR = ["--set", "data.name=cifar10", "--set", "data.download=false"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this torch sees a GPU")
HAS_PROC = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (a directory nobody can write)")


def tiny(**overrides):
    return apply_overrides(get_profile("smoke"), {**TINY, **{k: str(v) for k, v in overrides.items()}})


class Payload:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def write_png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)


def write_cifar(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        content = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(content, 2))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Files that bad input must leave alone: a results dir, a run dir, data folders, a plain file."""
    root = tmp_path_factory.mktemp("world")
    cfg = tiny()
    results = root / "results"
    write_json(results / "runs" / f"{cfg.run_id}.json", {"run_id": cfg.run_id, "status": "ok"})
    (results / "runs.csv").write_text("run_id,status\nx,ok\n")
    run = root / "existing-run"
    write_json(run / "config.json", {"run_id": cfg.run_id, **cfg.to_dict()})
    torch.save({"run_id": cfg.run_id, "model": {}}, run / CHECKPOINT)
    (root / "a-file").write_text("not a directory\n")
    payload = root / "payload-run"  # unpickling its checkpoint would create root/pwned: the snapshot would see it
    write_json(payload / "config.json", {"run_id": cfg.run_id, **cfg.to_dict()})
    torch.save({"run_id": cfg.run_id, "model": Payload(root / "pwned")}, payload / CHECKPOINT)
    for name in ("data_batch_1", "test_batch"):  # one truncated batch per folder
        write_cifar(root / f"truncated-{name}" / "cifar-10-batches-py")
        path = root / f"truncated-{name}" / "cifar-10-batches-py" / name
        path.write_bytes(path.read_bytes()[:5000])
    for i in range(3):  # train/ with images, test/ empty
        write_png(root / "empty-test" / "train" / f"{i}.png", i)
    (root / "empty-test" / "test").mkdir()
    return root


def snapshot(root: Path) -> dict:
    """Every file under ``root`` with its content digest and mtime, and every directory."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        out[key] = (hashlib.sha1(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) if path.is_file() else "dir"
    return out


# name, argv (with {root}, {out}), PQSTUDY_DATA_DIR (relative to root) or None, exit code, stderr regex
CASES = [
    ("truncated train batch", [*TRAIN, *CIFAR], "truncated-data_batch_1", 1,
     r"data_batch_1 is corrupt, truncated or not a CIFAR-10 batch: UnpicklingError"),
    ("truncated test batch", [*TRAIN, *CIFAR], "truncated-test_batch", 1,
     r"test_batch is corrupt, truncated or not a CIFAR-10 batch"),
    ("steps=1e999", [*TRAIN, "--set", "train.steps=1e999"], None, 2, r"train\.steps: cannot read '1e999' as int"),
    ("steps=inf", [*TRAIN, "--set", "train.steps=inf"], None, 2, r"train\.steps: cannot read 'inf' as int"),
    ("lr=inf", [*TRAIN, "--set", "train.lr=inf"], None, 2, r"train\.lr=inf: must be a finite number"),
    ("lr=nan", [*TRAIN, "--set", "train.lr=nan"], None, 2, r"train\.lr=nan: must be a finite number"),
    ("beta=nan", [*TRAIN, "--set", "quantizer.beta=nan"], None, 2, r"quantizer\.beta=nan: must be a finite number"),
    ("ema_eps=inf", [*TRAIN, "--set", "quantizer.ema_eps=inf"], None, 2, r"quantizer\.ema_eps=inf: must be a finite"),
    ("adaptive_clamp=-inf", [*TRAIN, "--set", "loss.adaptive_clamp=-inf"], None, 2,
     r"loss\.adaptive_clamp=-inf: must be a finite number"),
    pytest.param("device=cuda", [*TRAIN, "--set", "train.device=cuda"], None, 2,
                 r"train\.device='cuda': this torch has no CUDA support", marks=NO_CUDA),
    pytest.param("eval --device cuda", ["eval", "{root}/existing-run", "--device", "cuda"], None, 2,
                 r"--device='cuda': this torch has no CUDA support", marks=NO_CUDA),
    ("--out is a file", [*TRAIN[:3], "{root}/a-file", *TRAIN[4:]], None, 1, r"--out \S+/a-file is a file"),
    ("--out under a file", [*TRAIN[:3], "{root}/a-file/run", *TRAIN[4:]], None, 1,
     r"--out \S+/a-file/run cannot be created: \S+/a-file is a file"),
    pytest.param("--out unwritable", [*TRAIN[:3], "/proc/pqstudy-test-run", *TRAIN[4:]], None, 1,
                 r"--out /proc/pqstudy-test-run: cannot write in /proc", marks=HAS_PROC),
    ("eval_metrics=bogus", [*TRAIN, "--set", "train.eval_metrics=lpips,bogus"], None, 2,
     r"train\.eval_metrics='lpips,bogus': unknown metric\(s\) \['bogus'\]"),
    ("empty test split", [*TRAIN, "--set", "data.name=folder:{root}/empty-test"], None, 1,
     r"no readable images for split 'test' in \S+/empty-test"),
    ("missing data folder", [*TRAIN, "--set", "data.name=folder:/nonexistent"], None, 1,
     r"data\.name='folder:/nonexistent': /nonexistent is not a folder"),
    ("missing cifar", [*TRAIN, *CIFAR], "no-such-dir", 1, r"CIFAR-10 not found: looked for \S+/no-such-dir"),
    ("eval of a missing run", ["eval", "{root}/no-such-run", "--device", "cpu"], None, 1,
     r"run directory \S+/no-such-run does not exist"),
    ("eval of a file", ["eval", "{root}/a-file", "--device", "cpu"], None, 1, r"run directory \S+/a-file is a file"),
    ("eval of a checkpoint with a payload", ["eval", "{root}/payload-run", "--device", "cpu"], None, 1,
     r"payload-run/checkpoint\.pt: refused to load: .*unsupported GLOBAL posix\.system"),
    ("sweep --results is a file", ["sweep", "pq-subspaces", "--profile", "smoke", "--results", "{root}/a-file",
                                   "--runs", "{out}/runs", "--papermill-dir", "{out}/pm", "--quiet"], None, 1,
     r"--results \S+/a-file is a file"),
    ("sweep --runs under a file", ["sweep", "pq-subspaces", "--profile", "smoke", "--results", "{root}/results",
                                   "--runs", "{root}/a-file/runs", "--papermill-dir", "{out}/pm", "--quiet"], None, 1,
     r"--runs \S+/a-file/runs cannot be created"),
    ("sweep --jobs 0", ["sweep", "pq-subspaces", "--profile", "smoke", "--results", "{root}/results", "--jobs", "0",
                        "--runs", "{out}/runs", "--papermill-dir", "{out}/pm", "--quiet"], None, 1,
     r"--jobs 0: must be >= 1"),
]


def _case_id(case) -> str:
    return (case.values if hasattr(case, "values") else case)[0]


@pytest.mark.parametrize(("name", "argv", "data_dir", "code", "message"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_table(world, tmp_path, capsys, monkeypatch, name, argv, data_dir, code, message):
    if data_dir is None:
        monkeypatch.delenv("PQSTUDY_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("PQSTUDY_DATA_DIR", str(world / data_dir))
    out = tmp_path / "out"
    before = snapshot(world)
    rc = main([a.format(root=world, out=out) for a in argv])
    captured = capsys.readouterr()
    assert rc == code, captured.err
    lines = [line for line in captured.err.splitlines() if not line.startswith("run ")]  # "run <id> → <out>"
    assert len(lines) == 1 and lines[0].startswith("pqstudy"), captured.err  # one clean line, no traceback
    assert re.search(message, captured.err), captured.err
    assert snapshot(world) == before  # nothing already there changed
    assert not out.exists()  # no output directory left behind


# ---------------------------------------------------------------------------------------------------------------
# a full disk: no partial file, the run is failed with the reason


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_a_checkpoint(tmp_path, capsys, monkeypatch):
    real_save = torch.save

    def half_then_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # part of the file is on disk when the disk fills up
        no_space()

    monkeypatch.setattr(torch, "save", half_then_full)
    out = tmp_path / "run"
    rc = main([a.format(out=out) for a in TRAIN])
    assert rc == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (out / CHECKPOINT).exists() and not (out / "metrics.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert "No space left on device" in json.loads((out / "error.json").read_text())["error"]


def test_disk_full_while_writing_a_result_keeps_the_previous_one(tmp_path, monkeypatch):
    from pqstudy.study.store import record_run, write_runs_csv

    cfg = tiny()
    record_run(tmp_path, cfg, metrics={"psnr": 20.0, "ssim": 0.5})
    write_runs_csv(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        record_run(tmp_path, cfg, metrics={"psnr": 21.0, "ssim": 0.5})
    with pytest.raises(OSError, match="No space left"):
        write_runs_csv(tmp_path)
    assert snapshot(tmp_path) == before  # no partial file, no temporary file, the old record intact


def test_disk_full_in_a_sweep_records_the_run_failed_with_the_reason(tmp_path, monkeypatch):
    import papermill

    from pqstudy.study import run_sweep

    monkeypatch.setattr(papermill, "execute_notebook", no_space)
    cfg = tiny()
    summary = run_sweep("g", [cfg], results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                        papermill_dir=tmp_path / "pm", progress=False)
    assert summary["failed"] == 1 and summary["ran"] == 0
    record = json.loads((tmp_path / "results" / "runs" / f"{cfg.run_id}.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]


# ---------------------------------------------------------------------------------------------------------------
# runs that diverge are failed, with the reason


class NanGradient(torch.autograd.Function):
    """Identity forward, NaN gradient: a finite loss whose update makes the weights NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def test_divergence_on_the_last_step_fails_the_run(tmp_path, monkeypatch):
    from pqstudy import losses
    from pqstudy.train import TrainingDiverged, train

    original = losses.AutoencoderLoss.generator_loss

    def poisoned(self, x, out, step, last_layer):
        total, logs = original(self, x, out, step, last_layer)
        return (NanGradient.apply(total) if step == 1 else total), logs  # step 1 is the last of 2

    monkeypatch.setattr(losses.AutoencoderLoss, "generator_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="weights became non-finite at step 2"):
        train(tiny(), tmp_path, progress=False)
    error = json.loads((tmp_path / "error.json").read_text())
    assert error["error"] == "non-finite weights" and error["step"] == 2
    assert not (tmp_path / "metrics.json").exists()


def test_a_rank_other_than_0_leaves_the_divergence_record_to_rank_0(tmp_path):
    from pqstudy.train import TrainingDiverged, check_finite_weights

    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.bias.fill_(float("inf"))
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(TrainingDiverged, match="rank 0 records it"):
        check_finite_weights(model, tmp_path, 3, "vq-x", record=False)
    assert not (tmp_path / "error.json").exists() and (tmp_path / "metrics.json").exists()
    with pytest.raises(TrainingDiverged, match=r"step 3 \(bias\)"):
        check_finite_weights(model, tmp_path, 3, "vq-x")
    assert json.loads((tmp_path / "error.json").read_text())["parameters"] == ["bias"]


def test_non_finite_evaluation_fails_the_run(tmp_path, monkeypatch):
    from pqstudy import train_eval
    from pqstudy.train import TrainingDiverged

    real = train_eval.evaluate_model

    def nan_psnr(*a, **k):
        metrics, counts = real(*a, **k)
        return {**metrics, "psnr": float("nan")}, counts

    monkeypatch.setattr(train_eval, "evaluate_model", nan_psnr)
    with pytest.raises(TrainingDiverged, match="test psnr of the trained model is not finite"):
        train_eval.train_and_evaluate(tiny(), tmp_path, progress=False)
    assert json.loads((tmp_path / "error.json").read_text())["error"] == "non-finite evaluation"
    assert not (tmp_path / "metrics.json").exists()


def test_the_store_refuses_an_ok_run_without_a_finite_psnr(tmp_path, monkeypatch):
    import papermill

    from pqstudy.study import record_run, run_sweep

    for psnr in (None, float("nan"), float("inf")):
        record = record_run(tmp_path / "direct", tiny(), status="ok", metrics={"psnr": psnr, "ssim": 0.5})
        assert record["status"] == "failed" and record["error"].startswith("diverged: non-finite test metrics (psnr")

    def notebook_that_leaves_null_psnr(input_path, output_path, parameters, **kwargs):
        write_json(Path(parameters["run_dir"]) / "metrics.json", {"psnr": float("nan"), "ssim": 0.4})

    monkeypatch.setattr(papermill, "execute_notebook", notebook_that_leaves_null_psnr)
    cfg = tiny()
    summary = run_sweep("g", [cfg], results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                        papermill_dir=tmp_path / "pm", progress=False)
    assert summary["failed"] == 1 and "diverged" in summary["failures"][0]["error"]
    record = json.loads((tmp_path / "results" / "runs" / f"{cfg.run_id}.json").read_text())
    assert record["status"] == "failed" and "psnr=None" in record["error"]


def test_a_kernel_that_dies_before_starting_is_started_again(tmp_path, monkeypatch):
    import papermill

    from pqstudy.study import run_sweep

    calls = []

    def flaky(input_path, output_path, parameters, **kwargs):
        calls.append(parameters["run_dir"])
        if len(calls) == 1:  # as jupyter_client says it when another kernel took the port
            raise RuntimeError("Kernel died before replying to kernel_info")
        write_json(Path(parameters["run_dir"]) / "metrics.json", {"psnr": 20.0, "ssim": 0.5})

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    summary = run_sweep("g", [tiny()], results_dir=tmp_path / "results", runs_root=tmp_path / "runs",
                        papermill_dir=tmp_path / "pm", progress=False)
    assert summary["failed"] == 0 and len(calls) == 2

    def broken(input_path, output_path, parameters, **kwargs):  # any other error is the run's failure, at once
        calls.append(parameters["run_dir"])
        raise RuntimeError("a cell raised")

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", broken)
    summary = run_sweep("g", [tiny(**{"train.seed": 5})], results_dir=tmp_path / "results",
                        runs_root=tmp_path / "runs", papermill_dir=tmp_path / "pm", progress=False)
    assert summary["failed"] == 1 and len(calls) == 1


# ---------------------------------------------------------------------------------------------------------------
# locks


def test_a_run_directory_in_use_is_refused(tmp_path, capsys):
    from pqstudy.runlock import try_lock, unlock
    from pqstudy.train import LOCK

    out = tmp_path / "run"
    fd = try_lock(out / LOCK)  # another process training into it
    try:
        before = snapshot(tmp_path)
        assert main([a.format(out=out) for a in TRAIN]) == 1
        err = capsys.readouterr().err
        assert f"run directory {out} is in use by another process (pid {os.getpid()}" in err
        assert snapshot(tmp_path) == before
    finally:
        unlock(fd)


def test_a_run_held_by_another_sweep_is_skipped_and_reported(tmp_path, monkeypatch):
    import papermill

    from pqstudy.runlock import try_lock, unlock
    from pqstudy.study import run_sweep
    from pqstudy.study.runner import lock_path

    executed = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: executed.append(a))
    a, b = tiny(), tiny(**{"train.seed": 1})
    paths = {"results_dir": tmp_path / "results", "runs_root": tmp_path / "runs", "papermill_dir": tmp_path / "pm"}
    fd = try_lock(lock_path(paths["results_dir"], a.run_id))  # the other sweep runs a
    try:
        summary = run_sweep("g", [a, b], progress=False, **paths)
    finally:
        unlock(fd)
    assert summary["held"] == 1 and summary["held_runs"][0]["run_id"] == run_id(a)
    assert f"held by another sweep (pid {os.getpid()})" in summary["held_runs"][0]["error"]
    assert summary["total"] == summary["held"] + summary["ran"] + summary["failed"] + summary["skipped"]
    assert len(executed) == 1 and not (paths["results_dir"] / "runs" / f"{a.run_id}.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# image folders: non-UTF-8 names, 16-bit PNGs


@pytest.mark.parametrize("layout", ["split folders", "hash split"])
def test_non_utf8_file_names_are_skipped_and_counted(tmp_path, layout):
    from pqstudy.config import DataConfig

    train = tmp_path / "train" if layout == "split folders" else tmp_path
    for i in range(40):
        write_png(train / f"ok{i}.png", i)
    if layout == "split folders":
        write_png(tmp_path / "test" / "t.png")
    for name in (b"caf\xe9.png", b"\xff\xfe.png"):  # latin-1 names: not valid UTF-8
        path = os.path.join(os.fsencode(train), name)
        with open(path, "wb") as f:
            f.write((train / "ok0.png").read_bytes())
    cfg = DataConfig(name=f"folder:{tmp_path}", image_size=16)
    with pytest.warns(DataWarning, match=r"skipped 2 image file\(s\) whose names are not valid UTF-8"):
        images = load_dataset(cfg, "train")
    assert len(images) == (40 if layout == "split folders" else 40 - len(load_dataset(cfg, "test")))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    from pqstudy.config import DataConfig

    grey = np.full((32, 32), 257 * 100, dtype=np.uint16)  # 16-bit value 25700 is 8-bit 100
    grey[:, 16:] = 65535
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        Image.fromarray(grey).save(tmp_path / split / "g16.png")
    with Image.open(tmp_path / "train" / "g16.png") as img:
        assert img.mode.startswith("I;16")  # really a 16-bit file
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        image = load_dataset(DataConfig(name=f"folder:{tmp_path}", image_size=32), "train")[0]
    assert image.shape == (3, 32, 32)
    assert (image[:, :, :12] == 100).all() and (image[:, :, 20:] == 255).all()
