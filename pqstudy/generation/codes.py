"""A tokenizer's codes of a dataset split, extracted once into its run directory and read back by the generators.

As LlamaGen's ``extract_codes_c2i``: the generator never runs the encoder while it trains, it reads saved codes.
What is extracted:

- ``indices``: token indices (N, M, T) int64 of a quantised tokenizer (M sub-indices per position, T = h·w in raster
  order), what the AR prior models;
- ``quantized``: the latent the decoder sees, (N, D, h, w) float32: z_q of a quantised tokenizer, the latent of a
  continuous autoencoder, the posterior mean of a KL-VAE;
- ``pre``: a quantised tokenizer's latent before quantisation, (N, D, h, w).

Files are ``<run_dir>/codes/<split>-<what>.npz`` (numpy arrays only, read with ``allow_pickle=False``), holding the
codes, the labels (when the data has them) and the sha256 of the checkpoint they came from: codes of a checkpoint
that has since changed are extracted again, never reused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pqstudy.config import DataConfig, RunConfig, from_dict
from pqstudy.data import load_dataset, to_model_space
from pqstudy.models.checkpoint import load_model
from pqstudy.runio import CHECKPOINT, atomic_write, read_json

CODE_KINDS = ("indices", "quantized", "pre")
CODES_SUBDIR = "codes"


class TokenizerError(ValueError):
    """A run directory cannot serve as a generator's tokenizer; the message says why and what to do."""


@dataclass
class Codes:
    """One split's codes: ``data`` (N, M, T) int64 indices or (N, D, h, w) float32 latents, and their labels."""

    what: str  # indices | quantized | pre
    data: Tensor
    labels: Tensor | None  # (N,) int64, None for unlabelled data
    num_classes: int  # 0 for unlabelled data
    grid: int  # h (= w), the latent grid side
    vocab_size: int  # K per subspace (indices), 0 for latents
    checkpoint_sha256: str

    def __len__(self) -> int:
        return len(self.data)


def check_tokenizer(run_dir: str | os.PathLike, data: DataConfig | None = None) -> RunConfig:
    """The config of the tokenizer in ``run_dir``, after checking that it is one: a directory with ``config.json``
    and a finished ``checkpoint.pt`` (``metrics.json`` present), and, when ``data`` is given, trained on images of
    ``data.image_size`` pixels. Raises ``TokenizerError`` naming the problem; reads no weights."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TokenizerError(f"tokenizer {run_dir}: no such run directory (train the tokenizer first: "
                             "`pqstudy train`, or the study's grid that lists it)")
    missing = [name for name in ("config.json", CHECKPOINT) if not (run_dir / name).is_file()]
    if missing:
        raise TokenizerError(f"tokenizer {run_dir}: not a trained tokenizer, {' and '.join(missing)} missing "
                             "(a run directory of `pqstudy train` holds both)")
    if not (run_dir / "metrics.json").is_file():
        raise TokenizerError(f"tokenizer {run_dir}: training did not finish (no metrics.json); resume it with "
                             "`pqstudy train --resume` first")
    try:
        cfg, _ = read_run_config(run_dir)
    except (ValueError, KeyError, TypeError) as err:
        raise TokenizerError(f"tokenizer {run_dir}: config.json is not a pqstudy run config ({err})") from None
    if data is not None and data.image_size != cfg.data.image_size:
        raise TokenizerError(f"tokenizer {run_dir}: trained on {cfg.data.image_size}-pixel images, but the "
                             f"generator's data is {data.image_size} pixels (data.image_size); use a tokenizer of "
                             "the same image size")
    return cfg


def read_run_config(run_dir: Path) -> tuple[RunConfig, str]:
    """The run's config and the run id written beside it."""
    stored = read_json(run_dir / "config.json")
    return from_dict({k: v for k, v in stored.items() if k != "run_id"}), stored.get("run_id", "")


def what_for(kind: str, latent: str) -> str:
    """What a generator of ``kind`` (ar | diffusion) with ``latent`` (quantized | pre) trains on."""
    return "indices" if kind == "ar" else latent


def checkpoint_sha256(run_dir: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(Path(run_dir) / CHECKPOINT, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def codes_path(run_dir: str | os.PathLike, split: str, what: str) -> Path:
    return Path(run_dir) / CODES_SUBDIR / f"{split}-{what}.npz"


def load_codes(run_dir: str | os.PathLike, split: str, what: str, *, batch_size: int = 256,
               limit: int = 0) -> Codes:
    """The ``what`` codes of ``split`` (see the module docstring) of the tokenizer in ``run_dir``: read from its
    codes file when that holds codes of the current checkpoint, else extracted (eval mode, no augmentation) and
    saved. ``limit`` > 0 keeps the first ``limit`` images (not cached)."""
    if what not in CODE_KINDS:
        raise ValueError(f"what={what!r}: expected one of {list(CODE_KINDS)}")
    cfg = check_tokenizer(run_dir)
    if what in ("indices", "pre") and cfg.model.kind != "quantized":
        raise TokenizerError(f"tokenizer {run_dir}: a continuous {cfg.model.kind!r} model has no {what!r} codes "
                             "(it has only its latent: 'quantized')")
    sha = checkpoint_sha256(run_dir)
    path = codes_path(run_dir, split, what)
    if not limit and path.is_file():
        codes = _read(path, what)
        if codes is not None and codes.checkpoint_sha256 == sha:
            return codes
    codes = extract_codes(run_dir, split, what, batch_size=batch_size, limit=limit, checkpoint=sha)
    if not limit:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"data": codes.data.numpy(), "grid": np.array(codes.grid), "vocab_size": np.array(codes.vocab_size),
                  "num_classes": np.array(codes.num_classes), "checkpoint_sha256": np.array(sha)}
        if codes.labels is not None:
            arrays["labels"] = codes.labels.numpy()
        atomic_write(path, lambda f: np.savez(f, **arrays))
    return codes


def _read(path: Path, what: str) -> Codes | None:
    """A codes file, or None when it cannot be read as one (it is then extracted again)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            labels = torch.from_numpy(f["labels"]) if "labels" in f.files else None
            return Codes(what, torch.from_numpy(f["data"]), labels, int(f["num_classes"]), int(f["grid"]),
                         int(f["vocab_size"]), str(f["checkpoint_sha256"]))
    except (OSError, ValueError, KeyError):
        return None


@torch.no_grad()
def extract_codes(run_dir: str | os.PathLike, split: str, what: str, *, batch_size: int = 256, limit: int = 0,
                  checkpoint: str = "") -> Codes:
    """Run the tokenizer of ``run_dir`` over ``split`` of its own dataset and return the ``what`` codes."""
    model, cfg = load_model(run_dir)
    dataset = load_dataset(cfg.data, split, seed=cfg.train.seed)
    n = min(len(dataset), limit) if limit else len(dataset)
    chunks = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        chunks.append(encode(model, to_model_space(dataset.get_batch(idx)), what))
    data = torch.cat(chunks)
    labels = dataset.labels[:n].clone() if dataset.labels is not None else None
    grid = cfg.data.image_size // cfg.model.downsample
    vocab = cfg.quantizer.codebook_size if what == "indices" else 0
    return Codes(what, data, labels, dataset.num_classes, grid, vocab, checkpoint or checkpoint_sha256(run_dir))


def encode(model: torch.nn.Module, x: Tensor, what: str) -> Tensor:
    """Images (B, 3, H, W) in [-1, 1] → the ``what`` codes of ``model`` (eval mode), contiguous: a channels-last
    latent (the model's memory format on CPU) would train to other numbers than the same values read from the codes
    file."""
    return _encode(model, x, what).contiguous()


def _encode(model: torch.nn.Module, x: Tensor, what: str) -> Tensor:
    if what == "indices":
        _, quant = model.encode(x)
        return quant.indices.flatten(2).long()  # (B, M, h, w) → (B, M, T)
    if what == "pre":
        return model.latent(x).float()
    if not hasattr(model, "quantizer"):  # a continuous autoencoder (its latent) or a KL-VAE (the posterior mean)
        return model.latent(x).float()
    _, quant = model.encode(x)
    return quant.z_q.float()


def decode(model: torch.nn.Module, codes: Tensor, what: str, grid: int) -> Tensor:
    """Generated codes → images (B, 3, H, W) in [-1, 1]. Latents of a quantised tokenizer (``quantized`` or
    ``pre``) are quantised first, as the tokenizer's decoder always sees codebook entries."""
    with torch.no_grad():
        if what == "indices":
            b, m, _ = codes.shape
            return model.decode_indices(codes.view(b, m, grid, grid)).clamp(-1, 1)
        if hasattr(model, "quantizer"):
            codes = model.quantizer(codes).z_q
        return model.decode(codes).clamp(-1, 1)


__all__ = ["CODE_KINDS", "Codes", "TokenizerError", "check_tokenizer", "decode", "encode", "load_codes",
           "what_for"]
