"""Data-parallel generator training (pqstudy.generation.train under torchrun), on 2 CPU processes with gloo.

Two gloo ranks at a global batch of 8 must train what one process trains at batch 8: each rank draws the global
batch's noise and keeps its rows (pqstudy.generation.draw), so the runs differ only by the float rounding of the
gradient reduction. Compared: the logged losses (the global batch's, to 1e-5 relative) and the weights (to 1e-4).
Measured (native-bf16 Xeon, 2 cores, a test suite running beside it): largest weight gap after 6 steps 1.3e-6 (ar),
1.2e-6 (ar, flat head), 2.0e-6 (diffusion), losses within 2.4e-8; with each rank drawing its own noise instead of its
rows of the global draw, the diffusion run's gap was 1.7e-2 and its loss 2.2% off. The unlabelled tokenizer data
leaves the AR prior nothing to draw, so its class-dropout draws are checked on labelled tensors without DDP. The
ranks agree with each other bit for bit, a run stopped on 2 ranks resumes in one process, and `pqstudy generate`
under torchrun evaluates once, on rank 0.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from ddp_checks import TORCHRUN, assert_nan_recorded, assert_ranks_identical, run_worker, torchrun_env

from pqstudy import distributed
from pqstudy.config import apply_overrides, get_profile
from pqstudy.generation import draw
from pqstudy.generation.ar import GPT_SIZES, GPTConfig, TokenGPT
from pqstudy.generation.config import GenConfig, GenRunConfig
from pqstudy.generation.diffusion import DiTConfig, LatentDiT
from pqstudy.generation.train import train_generator
from pqstudy.runio import load_checkpoint
from pqstudy.train_eval import train_and_evaluate

TOKENIZER = {"train.steps": "3", "train.batch_size": "8", "data.train_limit": "48", "train.eval_limit": "16",
             "train.eval_metrics": "", "model.ch": "8", "model.z_channels": "8", "train.history_every": "0",
             "quantizer.kind": "pq", "quantizer.subspaces": "2", "quantizer.codebook_size": "16"}
BASE = {"steps": 6, "batch_size": 8, "samples": 4, "sample_steps": 2, "warmup_steps": 2, "lr": 3e-3}
GENERATORS = {
    "ar": {"kind": "ar", "size": "tiny"},
    "ar-flat": {"kind": "ar", "size": "tiny", "head": "flat"},
    "diffusion": {"kind": "diffusion", "size": "small", "latent": "pre"},
}
STOP_AT = 3  # the resumed run: 2 ranks train this many steps of "ar", one process the rest
NAN_AT = 2  # the diverging run: rank 1's loss becomes NaN at this step, rank 0's stays finite


def gen_config(tokenizer, name: str) -> GenRunConfig:
    return GenRunConfig(tokenizer, GenConfig(**{**BASE, **GENERATORS[name]}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny PQ tokenizer; every generator trained on 2 gloo ranks (one torchrun launch, which also extracts the
    tokenizer's codes: rank 0 first), the "ar" one also stopped after STOP_AT steps; then each in this process."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ddp-gen")
    tokenizer = apply_overrides(get_profile("smoke"), TOKENIZER)
    train_and_evaluate(tokenizer, root / "tokenizer", progress=False)
    generators = {name: {"config": gen_config(tokenizer, name).to_dict(), "tokenizer": str(root / "tokenizer")}
                  for name in GENERATORS}
    generators["ar-stopped"] = {**generators["ar"], "stop_at": STOP_AT}
    generators["ar-nan"] = generators["ar"]
    run_worker(root, {"out": str(root / "ddp"), "generators": generators,
                      "nan_at": {"ar-nan": {"rank": 1, "step": NAN_AT}}})
    one = {name: train_generator(gen_config(tokenizer, name), root / "one" / name, root / "tokenizer",
                                 progress=False) for name in GENERATORS}
    return root, tokenizer, one


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_two_ranks_train_what_one_process_trains(runs, name):
    root, _, one = runs
    ddp = load_checkpoint(root / "ddp" / name)
    assert ddp["step"] == BASE["steps"] and ddp["world_size"] == 2
    ddp_hist = json.loads((root / "ddp" / name / "history.json").read_text())
    one_hist = json.loads((root / "one" / name / "history.json").read_text())
    assert len(ddp_hist) == len(one_hist) == 1
    assert ddp_hist[0]["loss"] == pytest.approx(one_hist[0]["loss"], rel=1e-5)
    # Adam turns the reduction's rounding (~1e-7 relative) into weight differences well below its step (lr = 3e-3)
    for key, value in one[name].model.state_dict().items():
        assert torch.allclose(ddp["model"][key], value, rtol=0, atol=1e-4), key


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_ranks_hold_identical_weights(runs, name):
    assert_ranks_identical(runs[0] / "ddp" / name)


def test_a_run_stopped_on_two_ranks_resumes_in_one_process(runs):
    root, tokenizer, one = runs
    out = root / "ddp" / "ar-stopped"
    assert load_checkpoint(out)["step"] == STOP_AT and load_checkpoint(out)["world_size"] == 2
    resumed = train_generator(gen_config(tokenizer, "ar"), out, root / "tokenizer", progress=False, resume=True)
    assert resumed.summary["steps"] == BASE["steps"]
    for key, value in one["ar"].model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[key], value, rtol=0, atol=1e-4), key


def test_a_nan_on_one_rank_stops_every_rank_and_rank_0_records_it(runs):
    assert_nan_recorded(runs[0] / "ddp" / "ar-nan", NAN_AT)


@pytest.mark.parametrize("kind", ["ar", "diffusion"])
def test_rank_shares_of_the_loss_average_to_the_global_batchs(kind):
    """With labels (class dropout drawn too): the ranks' losses on their rows, each drawing its rows of the global
    draws, average to one process's loss on the whole batch, and every rank's generator ends where one process's
    does."""
    torch.manual_seed(0)
    if kind == "ar":
        model = TokenGPT(GPTConfig(positions=6, subspaces=2, vocab_size=7, num_classes=3, class_dropout=0.5,
                                   **GPT_SIZES["tiny"])).train()
        x = torch.randint(0, 7, (8, 2, 6), generator=torch.Generator().manual_seed(1))
    else:
        model = LatentDiT(DiTConfig(channels=4, grid=4, patch=1, hidden=32, depth=2, heads=2, num_classes=3,
                                    class_dropout=0.5)).train()
        x = torch.randn(8, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    whole_rng = torch.Generator().manual_seed(5)
    whole = model.loss(x, y, whole_rng)
    shares, rngs = [], []
    for rank in range(2):
        rng = torch.Generator().manual_seed(5)
        shares.append(model.loss(x[rank::2], y[rank::2], rng, share=(rank, 2)))
        rngs.append(rng)
    assert torch.stack(shares).mean().item() == pytest.approx(whole.item(), rel=1e-5)
    assert all(torch.equal(rng.get_state(), whole_rng.get_state()) for rng in rngs)
    with pytest.raises(ValueError, match="share"):
        draw.rand(4, generator=None, device="cpu", share=(2, 2))


def test_the_cli_under_torchrun_evaluates_once(runs, tmp_path):
    root, _, _ = runs
    out = tmp_path / "g"
    args = ["-m", "pqstudy", "generate", "--tokenizer", str(root / "tokenizer"), "--out", str(out), "--quiet",
            "--set", "gen.size=tiny", "--set", "gen.steps=2", "--set", "gen.samples=4", "--set", "gen.batch_size=4"]
    done = subprocess.run([*TORCHRUN, *args], env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr.count("on 2 data-parallel ranks") == 1 and done.stdout.count("nll_bits_per_image") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 2


def test_a_batch_the_world_does_not_divide_is_refused(runs, monkeypatch, tmp_path):
    root, tokenizer, _ = runs
    for name, value in {"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distributed.DistributedError, match="gen.batch_size=8 is not divisible by the world size 3"):
        train_generator(gen_config(tokenizer, "ar"), tmp_path / "run", root / "tokenizer", progress=False)
    assert not (tmp_path / "run").exists()  # refused before any directory or process group
