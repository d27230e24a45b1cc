"""Data-parallel training (pqstudy.distributed, pqstudy.train under torchrun), on 2 CPU processes with gloo.

Two gloo ranks at a global batch of 16 must train what one process trains at batch 16, for every quantiser kind whose
training is deterministic: at the first step (before any update) the same logged loss, to float rounding, and the
same codebook usage counts; after 3 steps the same function, losses and counts up to rounding drift (held-out
latents, images decoded from the same codes, codes; see ``FUNCTION_TOL``). The ranks agree with each other bit for bit.

Why not "the same weights to 1e-5": the two sum gradients in another order, and Adam's first steps move a weight
whose true gradient is ~0 by ±lr with the sign of the rounding noise (conv biases feeding a GroupNorm on a Xeon; 498
encoder weights of the pq run at step 1 on an AMD EPYC). How far that carries the function depends on the CPU: on a
Xeon @ 2.50GHz every gap was ≤ 7.4e-5 with no code differing, on an AMD EPYC the pq run's latents were 0.037 apart.
A broken data-parallel step moves it 1.2 and more, and changes the logged losses and usage counts.

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
    """A run's pre-quantisation latents and codes of 16 held-out images, and its decoder's images from given codes."""
    model, cfg = load_model(run_dir)
    z, quant = model.encode(to_model_space(load_dataset(cfg.data, "test", seed=0).get_batch(torch.arange(16))))
    return z, quant.indices, torch.no_grad()(model.decode_indices)


# How far one process and two ranks may drift apart: they sum gradients in another order, and Adam's first steps
# move every weight by about ±lr whatever its gradient's size, so a weight whose true gradient is ~0 steps by the sign
# of rounding noise. Measured after 3 steps, AVX-512 and AVX2 on an AMD EPYC: pq 64-85 of 2,048 held-out codes
# differ, latents by 0.037, images decoded from the same codes by 0.071 (498 encoder weights took the other sign at
# step 1); vq-ema and lc ≤ 1.4e-4 with no code differing (an Intel Xeon measured ≤ 7.4e-5 for all three). A broken
# data-parallel step is far beyond this: without the VQ-EMA all-reduce the images were 1.4 apart with 455 of 1,024
# codes differing; with both ranks on the same half batch 1.2-2.1.
FUNCTION_TOL = 0.25
MAX_CODES_DIFFERING = 0.10


@pytest.mark.parametrize("name", sorted(EQUAL))
def test_two_ranks_train_what_one_process_trains(ddp_runs, name):
    ddp, one = load_checkpoint(ddp_runs / "ddp" / name), load_checkpoint(ddp_runs / "one" / name)
    assert ddp["step"] == one["step"] == EQUAL[name].train.steps and ddp["world_size"] == 2
    (z_ddp, idx_ddp, decode_ddp), (z_one, idx_one, decode_one) = (_outputs(ddp_runs / "ddp" / name),
                                                                   _outputs(ddp_runs / "one" / name))
    # the same encoder, codebook and decoder up to rounding drift: latents, images decoded from the same codes, codes
    assert (z_ddp - z_one).abs().max() < FUNCTION_TOL
    assert (decode_ddp(idx_one) - decode_one(idx_one)).abs().max() < FUNCTION_TOL
    assert (idx_ddp != idx_one).float().mean() <= MAX_CODES_DIFFERING
    assert len(ddp["usage_history"]) == len(one["usage_history"]) == 3
    for step, (a, b) in enumerate(zip(ddp["usage_history"], one["usage_history"], strict=True)):
        a, b = torch.as_tensor(a), torch.as_tensor(b)  # the first step's codes come before any update: exact
        moved = (a - b).abs().sum() / 2 / a.sum()  # the share of positions whose code moved to another entry
        assert a.sum() == b.sum() and (moved == 0 if step == 0 else moved <= MAX_CODES_DIFFERING)
    ddp_hist = json.loads((ddp_runs / "ddp" / name / "history.json").read_text())
    one_hist = json.loads((ddp_runs / "one" / name / "history.json").read_text())
    # the losses are the global batch's, as one process logs them: before any update to float rounding, then drifting
    # as above (measured ≤ 1e-4 relative at step 3 of the pq run)
    first, *later = zip(ddp_hist, one_hist, strict=True)
    assert first[0]["total"] == pytest.approx(first[1]["total"], rel=1e-5)
    assert first[0]["utilisation"] == first[1]["utilisation"]
    for a, b in later:
        assert a["total"] == pytest.approx(b["total"], rel=1e-3)
        assert a["utilisation"] == pytest.approx(b["utilisation"], abs=MAX_CODES_DIFFERING)


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
