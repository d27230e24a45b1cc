"""CMMD (Jayasumana et al., 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image Generation").

CMMD is the maximum mean discrepancy between CLIP image embeddings of two image sets, with a Gaussian RBF kernel
``k(a, b) = exp(-||a - b||² / (2σ²))``, σ = 10, estimated as in the paper's reference code: means over the full
kernel matrices, diagonals included, ``mean k(x, x') + mean k(y, y') - 2 mean k(x, y)``, times 1000.

Embeddings: CLIP ViT-L/14 @336 px with OpenAI's weights through open_clip (QuickGELU, as OpenAI trained it); images
in [0, 1] are resized bicubically to 336 × 336 (no crop), normalised with CLIP's mean and std, and the embeddings are
L2-normalised. Weights come from a local file only (see :mod:`pqstudy.metrics.weights`, entry ``clip``).
"""

from __future__ import annotations

import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.metrics.weights import CLIP_ARCH, CLIP_HF_FILES, CLIP_HF_REPO, find_weights, missing_reason
from pqstudy.offline import no_network

__all__ = ["ClipEmbedder", "CmmdAccumulator", "load_clip", "mmd"]

SIGMA = 10.0
SCALE = 1000.0
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip.OPENAI_DATASET_MEAN
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # open_clip.OPENAI_DATASET_STD

# test-only random backbone: the ViT-L/14@336 input pipeline (336 px, 14 px patches) with a tiny transformer
TINY_TEST_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 336, "patch_size": 14, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


# --- the kernel maths ------------------------------------------------------------------------------------------------


def _as_matrix(a, name: str) -> Tensor:
    if isinstance(a, Tensor):
        t = a.detach().to("cpu", torch.float64)
    else:
        t = torch.as_tensor(np.asarray(a, dtype=np.float64))
    if t.dim() != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) embedding matrix, got shape {tuple(t.shape)}")
    return t


def _mean_rbf(a: Tensor, b: Tensor, gamma: float, block: int = 4096) -> Tensor:
    """mean over i, j of exp(-gamma ||a_i - b_j||²), in row blocks so large sets stay lean."""
    b_sq = (b * b).sum(1)
    total = torch.zeros((), dtype=torch.float64)
    for a_blk in a.split(block):
        d2 = (a_blk * a_blk).sum(1)[:, None] + b_sq[None, :] - 2.0 * (a_blk @ b.T)
        total += torch.exp(-gamma * d2.clamp_min(0.0)).sum()
    return total / (a.shape[0] * b.shape[0])


def mmd(x, y, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """``scale`` × MMD² between embedding sets ``x`` (n, d) and ``y`` (m, d), Gaussian RBF kernel of width ``sigma``.

    The CMMD reference estimator: means over the full kernel matrices (diagonals included), in float64.
    Accepts torch tensors or anything numpy converts; returns a Python float.
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same embedding size, got {x.shape[1]} and {y.shape[1]}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    gamma = 1.0 / (2.0 * sigma**2)
    value = _mean_rbf(x, x, gamma) + _mean_rbf(y, y, gamma) - 2.0 * _mean_rbf(x, y, gamma)
    return float(scale * value)


# --- the CLIP embedder -----------------------------------------------------------------------------------------------


class ClipEmbedder(nn.Module):
    """CLIP image tower + CMMD preprocessing. Input float (B, 3, H, W) in [-1, 1]; output (B, E), unit L2 norm."""

    def __init__(self, visual: nn.Module, image_size: int = 336):
        super().__init__()
        self.visual = visual
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: Tensor) -> Tensor:
        x = ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # the [0, 1] images the reference embeds
        size = (self.image_size, self.image_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        emb = self.visual(self.preprocess(x)).float()
        return emb / emb.norm(dim=-1, keepdim=True)


def _is_torchscript(path: str) -> bool:
    """A TorchScript archive (a zip with ``constants.pkl``/``code/``), as OpenAI's CLIP ``.pt`` files are."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _image_size(visual: nn.Module, default: int = 336) -> int:
    size = getattr(visual, "image_size", default)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def load_clip(
    device: str | torch.device = "cpu",
    random_backbone: bool = False,
    weights_path: str | None = None,
    model_cfg: dict | None = None,
) -> tuple[ClipEmbedder | None, str | None]:
    """The CMMD embedder: ``(embedder, None)`` or ``(None, one-line reason)``. Never downloads.

    Builds open_clip's ``ViT-L-14-336`` with QuickGELU and loads the local checkpoint (an open_clip state dict,
    ``.safetensors``/``.bin``, or OpenAI's ``ViT-L-14-336px.pt`` archive); only the image tower is kept.
    ``weights_path`` overrides the search; ``model_cfg`` (an open_clip model config) replaces the architecture.
    ``random_backbone=True`` is a test-only switch: a tiny seeded random CLIP with the same 336 px / 14 px patch
    input pipeline; its values are not CMMD.
    """
    path = None
    if not random_backbone:
        status = find_weights("clip", weights_path)
        reason = missing_reason("cmmd", [status])
        if reason is not None:
            return None, reason
        path = status.path
    try:
        import open_clip

        cfg = TINY_TEST_CFG if random_backbone and model_cfg is None else model_cfg
        cfg = dict(cfg) if cfg is not None else open_clip.get_model_config(CLIP_ARCH)
        with no_network(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = open_clip.CLIP(**cfg, quick_gelu=True)  # OpenAI's CLIPs were trained with QuickGELU
            if path is not None:
                if _is_torchscript(path):
                    raise ValueError(
                        "a TorchScript archive (OpenAI's ViT-L-14-336px.pt) cannot be loaded weights-only; "
                        f"supply an open_clip state dict instead ({CLIP_HF_FILES[0]} from {CLIP_HF_REPO})"
                    )
                open_clip.load_checkpoint(model, path, weights_only=True)  # tensors only: never runs code
    except Exception as exc:  # a corrupt or mismatched file: recorded, never raised
        first = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"cmmd: failed to load {path}: {type(exc).__name__}: {first}"
    visual = model.visual
    visual.requires_grad_(False)
    embedder = ClipEmbedder(visual.eval(), _image_size(visual))
    return embedder.eval().to(device), None


class CmmdAccumulator:
    """Streams (real, recon) batches through the embedder; :meth:`compute` gives CMMD over everything seen."""

    def __init__(self, embedder: ClipEmbedder, device: str | torch.device = "cpu", batch_size: int = 32):
        self.embedder = embedder
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._real: list[Tensor] = []
        self._recon: list[Tensor] = []

    @property
    def count(self) -> int:
        return sum(len(e) for e in self._real)

    def embed(self, images: Tensor) -> Tensor:
        return torch.cat([self.embedder(c.to(self.device)).cpu() for c in images.split(self.batch_size)])

    def update(self, real: Tensor, recon: Tensor) -> None:
        self._real.append(self.embed(real))
        self._recon.append(self.embed(recon))

    def compute(self) -> dict[str, float | None | str]:
        if self.count == 0:
            return {"cmmd": None, "cmmd_missing_reason": "cmmd: no images were evaluated"}
        return {"cmmd": mmd(torch.cat(self._real), torch.cat(self._recon))}

    def reset(self) -> None:
        self._real.clear()
        self._recon.clear()
