"""Data-parallel training (pqstudy.distributed, pqstudy.train under torchrun), on 2 CPU processes with gloo.

Two gloo ranks at a global batch of 16 must train what one process trains at batch 16, for every quantiser kind whose
training is deterministic: the same codes of held-out images, the same reconstructions (to 1e-3), the same logged
losses (to 1e-5 relative) and the same codebook usage counts. The ranks agree with each other bit for bit.

Why not "the same weights to 1e-5": after 8 steps the weights differed by up to ~lr (2e-3) in a few dozen
parameters, and one process on 2 threads differed from one on 1 thread by as much, in the same parameters (conv
biases feeding a GroupNorm: their true gradient is ~0, and Adam divides the float-rounding noise of the reduction by
its own size and steps ±lr). Once such noise flips a near-tied code the runs drift apart, with any change of
summation order. So the test compares the function after 3 steps. Measured (Xeon @ 2.50GHz, loaded): largest
reconstruction gap 2 ranks vs 1 process 1.4e-5 (vq-ema), 7.4e-5 (pq), 9.7e-6 (lc); 1 process on 2 vs 1 threads
1.3e-5, 3.4e-5, 1.0e-5; no code differed. Without the VQ-EMA all-reduce the vq-ema gap was 1.4 (455 codes differ),
with both ranks on the same half batch 1.2–2.1: the tolerance is far from both.

The PatchGAN's BatchNorm sees each rank's half batch (and the KL-VAE draws its noise per rank and step), so the GAN
run compares the ranks with each other only. A SIGKILLed rank leaves a resumable run; a NaN loss on one rank stops
every rank at that step, and rank 0 records it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ddp_checks import TORCHRUN, assert_nan_recorded, assert_ranks_identical, run_worker, torchrun_env
from torch.utils.data import DistributedSampler

from pqstudy import distributed
from pqstudy.config import apply_overrides, get_profile, parse_set
from pqstudy.data import load_dataset, to_model_space
from pqstudy.models.checkpoint import load_model
from pqstudy.runio import CHECKPOINT, load_checkpoint
from pqstudy.train import batch_indices, check_launch, train


def smoke(*overrides: str):
    base = ("train.steps=3", "train.history_every=1", "train.batch_size=16", "train.eval_metrics=")
    return apply_overrides(get_profile("smoke"), parse_set([*base, *overrides]))


# Deterministic training: two ranks must equal one process.
EQUAL = {
    "vq-ema": smoke("quantizer.kind=vq-ema"),
    "pq": smoke("quantizer.kind=pq", "quantizer.sub_kind=vq", "quantizer.subspaces=2"),
    "lc": smoke("quantizer.kind=lc", "quantizer.codebook_size=256"),
}
# Random or batch-statistics training: the ranks must agree with each other.
RANKS_AGREE = {
    "ae-gan": smoke("model.kind=ae", "loss.disc_weight=0.8", "loss.disc_start=2", "loss.disc_ndf=8",
                    "loss.disc_layers=2"),
}


NAN_AT = 1  # run "nan": rank 1's loss becomes NaN at this step, rank 0's stays finite


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Every config trained on 2 gloo ranks (one torchrun launch) and in this process."""
    root = tmp_path_factory.mktemp("ddp")
    configs = {**EQUAL, **RANKS_AGREE, "nan": EQUAL["pq"]}
    run_worker(root, {"out": str(root / "ddp"), "configs": {k: c.to_dict() for k, c in configs.items()},
                      "nan_at": {"nan": {"rank": 1, "step": NAN_AT}}})
    for name, cfg in EQUAL.items():
        train(cfg, root / "one" / name, progress=False)
    return root


@torch.no_grad()
def _outputs(run_dir: Path):
    model, cfg = load_model(run_dir)
    x = to_model_space(load_dataset(cfg.data, "test", seed=0).get_batch(torch.arange(16)))
    out = model(x)
    return out.x_rec, out.quant.indices


@pytest.mark.parametrize("name", sorted(EQUAL))
def test_two_ranks_train_what_one_process_trains(ddp_runs, name):
    ddp, one = load_checkpoint(ddp_runs / "ddp" / name), load_checkpoint(ddp_runs / "one" / name)
    assert ddp["step"] == one["step"] == EQUAL[name].train.steps and ddp["world_size"] == 2
    (rec_ddp, idx_ddp), (rec_one, idx_one) = _outputs(ddp_runs / "ddp" / name), _outputs(ddp_runs / "one" / name)
    assert torch.equal(idx_ddp, idx_one) and (rec_ddp - rec_one).abs().max() < 1e-3
    assert len(ddp["usage_history"]) == len(one["usage_history"]) == 3
    for a, b in zip(ddp["usage_history"], one["usage_history"], strict=True):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    ddp_hist = json.loads((ddp_runs / "ddp" / name / "history.json").read_text())
    one_hist = json.loads((ddp_runs / "one" / name / "history.json").read_text())
    for a, b in zip(ddp_hist, one_hist, strict=True):  # the losses are the global batch's, as one process logs them
        assert a["total"] == pytest.approx(b["total"], rel=1e-5) and a["utilisation"] == b["utilisation"]


@pytest.mark.parametrize("name", sorted({**EQUAL, **RANKS_AGREE}))
def test_ranks_hold_identical_weights(ddp_runs, name):
    assert_ranks_identical(ddp_runs / "ddp" / name)


def test_a_nan_on_one_rank_stops_every_rank_and_rank_0_records_it(ddp_runs):
    assert_nan_recorded(ddp_runs / "ddp" / "nan", NAN_AT)


def test_ranks_split_the_global_batch_as_distributed_sampler_does():
    n, batch, seed, world = 50, 8, 3, 2
    for step in (0, 5, 7):  # 6 steps per pass: step 7 is in the second pass
        whole = batch_indices(step, n, batch, seed)
        shares = [batch_indices(step, n, batch, seed, rank, world) for rank in range(world)]
        assert sorted(torch.cat(shares).tolist()) == sorted(whole.tolist())
        epoch, i = divmod(step, n // batch)
        for rank in range(world):
            sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, seed=seed * 1_000_003)
            sampler.set_epoch(epoch)
            per_rank = batch // world
            assert list(sampler)[i * per_rank:(i + 1) * per_rank] == shares[rank].tolist()


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "no rendezvous: MASTER_ADDR and MASTER_PORT not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK=2"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two': expected an integer"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK is not set"),
])
def test_a_bad_launch_is_named_before_any_work(monkeypatch, env, message):
    for name in distributed.ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distributed.DistributedError, match=message):
        check_launch(smoke())


def test_a_batch_the_world_does_not_divide_is_refused(monkeypatch, tmp_path):
    for name, value in {"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distributed.DistributedError, match="batch_size=16 is not divisible by the world size 3"):
        train(smoke(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before any directory or process group


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=rank under the launcher process, if it is up yet."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's pid in /proc")
def test_a_killed_rank_leaves_a_run_that_resumes_on_another_world_size(tmp_path):
    cfg = smoke("train.steps=400", "train.ckpt_every=2", "train.history_every=100")
    out = tmp_path / "run"
    args = ["-m", "pqstudy", "train", "--profile", "smoke", "--quiet", "--out", str(out)]
    for key, value in cfg.flat().items():
        if value != get_profile("smoke").flat()[key]:
            args += ["--set", f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}"]
    launcher = subprocess.Popen([*TORCHRUN, *args], env=torchrun_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (out / CHECKPOINT).exists() or load_checkpoint(out)["step"] < 4:
            assert launcher.poll() is None, launcher.stdout.read()[-3000:]
            assert time.time() < deadline, "no checkpoint after 120 s"
            time.sleep(0.2)
        os.kill(_rank_pid(launcher.pid, 1), signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0  # torchrun stops the other rank and fails the launch
    finally:
        if launcher.poll() is None:
            launcher.kill()
    killed_at = load_checkpoint(out)["step"]
    assert 4 <= killed_at < cfg.train.steps and load_checkpoint(out)["world_size"] == 2
    trained = train(cfg, out, resume=True, progress=False, stop_at=killed_at + 4)  # one process goes on
    assert trained.interrupted and load_checkpoint(out)["step"] == killed_at + 4
