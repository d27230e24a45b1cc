"""A trained model from a run directory: ``config.json`` + ``checkpoint.pt`` (loaded weights-only) → model.

Nothing is rebuilt from data: an ``lc`` quantiser's feature codebook, like every other weight, comes from the
checkpoint's state dict, which also fixes its shape (N, C).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from pqstudy.config import RunConfig, from_dict
from pqstudy.cpu import memory_format
from pqstudy.models import build_model
from pqstudy.quantizers import Quantizer, build_quantizer
from pqstudy.runio import load_checkpoint, read_json

QUANTIZER_PREFIX = "quantizer."


def read_run(run_dir: str | os.PathLike) -> tuple[RunConfig, dict]:
    """A run's config and the model's state dict (weights-only load, :func:`pqstudy.runio.load_checkpoint`)."""
    cfg = from_dict(read_json(Path(run_dir) / "config.json"))
    return cfg, load_checkpoint(run_dir)["model"]


def stored_codebook(quantizer_state: dict) -> Tensor | None:
    """The ``lc`` feature codebook (N, C) in a quantiser's state dict (``pq`` subspaces share one), or None."""
    for key, value in quantizer_state.items():
        if key == "bank.features" or key.endswith(".bank.features"):
            return value
    return None


def quantizer_state(model_state: dict) -> dict:
    """The quantiser's part of a model state dict, its keys without the ``quantizer.`` prefix."""
    n = len(QUANTIZER_PREFIX)
    return {k[n:]: v for k, v in model_state.items() if k.startswith(QUANTIZER_PREFIX)}


def load_model(run_dir: str | os.PathLike, device="cpu") -> tuple[torch.nn.Module, RunConfig]:
    """The trained model of a run directory (eval mode, on ``device``) and its config."""
    cfg, state = read_run(run_dir)
    model = build_model(cfg, codebook=stored_codebook(quantizer_state(state)))
    model.load_state_dict(state)
    return model.to(device, memory_format=memory_format(device)).eval(), cfg


def load_quantizer(run_dir: str | os.PathLike) -> tuple[Quantizer, RunConfig]:
    """The trained quantiser of a run directory (eval mode, CPU) and the run's config, without the rest of the
    model."""
    cfg, state = read_run(run_dir)
    if cfg.model.kind != "quantized":
        raise ValueError(f"{run_dir}: a continuous model ({cfg.model.kind}) has no codebook")
    q_state = quantizer_state(state)
    quantizer = build_quantizer(cfg.quantizer, codebook=stored_codebook(q_state))
    quantizer.load_state_dict(q_state)
    return quantizer.eval(), cfg
