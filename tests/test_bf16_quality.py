"""benchmarks/bf16_quality.py: the bf16-weights arm (the model itself in bf16, no autocast), on a few smoke steps."""

from __future__ import annotations

import pytest
import torch

from pqstudy.config import apply_overrides, get_profile
from pqstudy.data import load_dataset
from pqstudy.models import build_model


@pytest.fixture(scope="module")
def bf16_quality(benchmark_module):
    return benchmark_module("bf16_quality")


@pytest.mark.parametrize("kind", ["vq", "pq"])
def test_bf16_weights_arm_trains_weights_that_are_bf16(bf16_quality, kind):
    cfg = apply_overrides(get_profile("smoke"), {**bf16_quality.KINDS[kind], "train.steps": 3, "train.device": "cpu"})
    train_set = load_dataset(cfg.data, "train", seed=0)
    with bf16_quality.guards(**bf16_quality.ARMS["bf16-weights"][1]):
        model, seconds = bf16_quality.train_bf16_weights(cfg, train_set)
    torch.manual_seed(cfg.train.seed)
    init = build_model(cfg).state_dict()
    params = dict(model.named_parameters())
    assert seconds > 0 and all(p.dtype == torch.float32 for p in params.values())  # handed back in fp32 ...
    assert all(torch.equal(p, p.bfloat16().float()) for p in params.values())  # ... holding bf16 values
    changed = [n for n, p in params.items() if not torch.equal(p, init[n].bfloat16().float())]
    assert len(changed) > len(params) // 2  # it trained: most tensors moved off their (rounded) initial values
