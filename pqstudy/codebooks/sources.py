"""Feature sources for ``lc`` codebooks (VQGAN-LC): where the N × C codebook's feature vectors come from.

``quantizer.lc_source`` names the source:

- ``pixels``: raw F×F×3 patches (F = ``quantizer.lc_patch``) cut at stride F, i.e. one patch per latent position when
  F is the model's downsampling factor; C = 3·F², values in the model's [-1, 1] range. Offline, no weights.
- ``encoder:<run dir>``: the pre-bottleneck latents (B, D, h, w) of a trained pqstudy autoencoder (any ``model.kind``;
  a continuous ``ae`` is the intended one), one C = D vector per latent position. Offline.
- ``clip:<model>[:<tag or file>]``: patch tokens of an open_clip vision transformer (default tag ``openai``), after
  its final LayerNorm and projection (ViT-L/14: C = 768), average-pooled to a 4×4 grid: 16 vectors per image, as
  VQGAN-LC does. Images are resized to the model's input size and normalised with its mean/std. Weights come from a
  local file (the given path, the Hugging Face cache, or open_clip's ``~/.cache/clip``) — never downloaded; when none
  is there, :class:`FeatureWeightsNotFound` names the file and where to put it.
- ``random``: standard-normal vectors of dimension C = ``quantizer.lc_feature_dim`` (no data needed).

Every source is a callable ``images uint8 (B, 3, H, W) → features (B·P, C)`` with ``dim`` (C) and a ``fingerprint``
(a JSON-able dict that changes whenever the features would) used to key the codebook cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from pqstudy.data import to_model_space
from pqstudy.models.checkpoint import load_model
from pqstudy.offline import hf_hub_cache, no_network

__all__ = [
    "ClipFeatures",
    "EncoderFeatures",
    "FeatureSource",
    "FeatureWeightsNotFound",
    "PixelPatches",
    "RandomFeatures",
    "feature_source",
    "source_feature_dim",
]

CLIP_GRID = 4  # CLIP patch tokens are average-pooled to a CLIP_GRID × CLIP_GRID grid per image


class FeatureWeightsNotFound(FileNotFoundError):
    """The weights a feature source needs are not on this machine (pqstudy never downloads them)."""


class FeatureSource:
    """Base: ``__call__(images) → (B·P, C)``; ``dim`` = C; ``needs_data`` False for sources that ignore images."""

    spec: str
    dim: int
    needs_data: bool = True

    def __call__(self, images: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def fingerprint(self) -> dict:
        return {"spec": self.spec, "dim": self.dim}


class PixelPatches(FeatureSource):
    """Non-overlapping F×F×3 pixel patches in [-1, 1]; C = 3·F²."""

    def __init__(self, patch: int):
        if patch < 1:
            raise ValueError(f"quantizer.lc_patch={patch!r}: must be >= 1")
        self.patch, self.spec, self.dim = patch, "pixels", 3 * patch * patch

    def __call__(self, images: Tensor) -> Tensor:
        f = self.patch
        b, c, height, width = images.shape
        h, w = height // f, width // f
        if h == 0 or w == 0:
            raise ValueError(f"quantizer.lc_patch={f}: larger than the {(height, width)} images")
        x = to_model_space(images[:, :, : h * f, : w * f]).view(b, c, h, f, w, f)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(-1, self.dim)  # rows: (channel, dy, dx) of each patch

    def fingerprint(self) -> dict:
        return {"spec": "pixels", "patch": self.patch}


class RandomFeatures(FeatureSource):
    """Standard-normal features of dimension C; ``sample(n, generator)`` instead of images."""

    needs_data = False

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"quantizer.lc_feature_dim={dim!r}: the random source needs C >= 1")
        self.spec, self.dim = "random", dim

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, self.dim, generator=generator)


def _file_digest(path: Path, limit: int = 1 << 30) -> str:
    """sha1 of a file's bytes (files over ``limit`` bytes: of their size and mtime instead)."""
    stat = path.stat()
    if stat.st_size > limit:
        return f"size{stat.st_size}-mtime{int(stat.st_mtime)}"
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class EncoderFeatures(FeatureSource):
    """Pre-bottleneck latents of a trained pqstudy autoencoder's encoder; C = that run's D."""

    def __init__(self, run_dir: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 256):
        self.run_dir = Path(run_dir).expanduser()
        for name in ("config.json", "checkpoint.pt"):
            if not (self.run_dir / name).is_file():
                raise FileNotFoundError(
                    f"quantizer.lc_source='encoder:{run_dir}': no {name} in {self.run_dir} "
                    "(expected a pqstudy run directory: train a continuous AE with --set model.kind=ae)"
                )
        self.spec = f"encoder:{self.run_dir}"
        self.device, self.batch_size = torch.device(device), batch_size
        self._model = None
        self.dim = _encoder_dim(self.run_dir)

    @property
    def model(self):
        if self._model is None:
            model, _ = load_model(self.run_dir, device=self.device)
            model.requires_grad_(False)
            self._model = model.eval()
        return self._model

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        out = []
        for chunk in images.split(self.batch_size):
            z = self.model.latent(to_model_space(chunk).to(self.device))  # (B, D, h, w)
            out.append(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float().cpu())
        return torch.cat(out)

    def fingerprint(self) -> dict:
        return {"spec": "encoder", "checkpoint_sha1": _file_digest(self.run_dir / "checkpoint.pt"), "dim": self.dim}


def _encoder_dim(run_dir: Path) -> int:
    cfg = json.loads((run_dir / "config.json").read_text())
    return int(cfg["quantizer"]["dim"])


# ---------------------------------------------------------------------------------------------------------------
# CLIP through open_clip, weights from local files only


def parse_clip_spec(spec: str) -> tuple[str, str]:
    """``clip:<model>[:<tag or file>]`` → (model, tag or file); the tag defaults to ``openai``."""
    body = spec[len("clip:") :] if spec.startswith("clip:") else spec
    model, _, pretrained = body.partition(":")
    if not model:
        raise ValueError(f"quantizer.lc_source={spec!r}: expected clip:<model>[:<tag or file>]")
    return model, pretrained or "openai"


def _hf_snapshot_files(repo: str, filename: str) -> list[Path]:
    snapshots = hf_hub_cache() / ("models--" + repo.replace("/", "--")) / "snapshots"
    return sorted(snapshots.glob(f"*/{filename}")) if snapshots.is_dir() else []


def resolve_clip_weights(model: str, pretrained: str) -> tuple[Path, dict]:
    """The local weight file for ``model`` / ``pretrained`` (a tag or a file) and the tag's config. No network.

    Raises :class:`FeatureWeightsNotFound` naming the exact file(s) and where to put them.
    """
    import open_clip

    path = Path(pretrained).expanduser()
    if path.is_file():
        return path, {}
    if os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".pth", ".safetensors")):
        raise FeatureWeightsNotFound(f"quantizer.lc_source='clip:{model}:{pretrained}': no such file {path}")
    tag_cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(
            f"quantizer.lc_source='clip:{model}:{pretrained}': {pretrained!r} is neither a file nor a pretrained "
            f"tag of {model} (tags: {', '.join(tags) or 'none'})"
        )
    looked: list[str] = []
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            hits = _hf_snapshot_files(repo, name)
            looked.append(str(hf_hub_cache() / ("models--" + repo.replace("/", "--")) / "snapshots" / "*" / name))
            if hits:
                return hits[0], tag_cfg
    url = tag_cfg.get("url", "")
    if url:
        candidate = Path(os.path.expanduser("~")) / ".cache" / "clip" / os.path.basename(url)
        looked.append(str(candidate))
        if candidate.is_file():
            return candidate, tag_cfg
    options = []
    if hub:
        options.append(f"{Path(looked[0]).name} from https://huggingface.co/{hub.rstrip('/')} into the Hugging Face "
                       f"cache ({hf_hub_cache()})")
    if url:
        options.append(f"{os.path.basename(url)} from {url} into {Path('~/.cache/clip').expanduser()}/")
    first = Path(looked[0]).name if looked else "the weights file"
    raise FeatureWeightsNotFound(
        f"quantizer.lc_source='clip:{model}:{pretrained}': CLIP weights not found (pqstudy never downloads). Put "
        f"{' or '.join(options)}; or pass a local file: --set quantizer.lc_source=clip:{model}:/path/to/{first}. "
        f"Looked in: {'; '.join(looked)}"
    )


def clip_feature_dim(model: str) -> int | None:
    """C of ``clip:<model>`` from open_clip's model config (no weights needed); None if unknown."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    return int(cfg["embed_dim"]) if cfg else None


class ClipFeatures(FeatureSource):
    """open_clip ViT patch tokens → ln_post → projection → 4×4 average pool; 16 vectors of C = embed_dim per image."""

    def __init__(self, spec: str, device: str | torch.device = "cpu", batch_size: int = 64):
        import open_clip

        self.spec = spec
        self.model_name, self.pretrained = parse_clip_spec(spec)
        if open_clip.get_model_config(self.model_name) is None:
            raise ValueError(f"quantizer.lc_source={spec!r}: unknown open_clip model {self.model_name!r}")
        self.weights, tag_cfg = resolve_clip_weights(self.model_name, self.pretrained)
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        with no_network(f"{spec}: CLIP weights are loaded from {self.weights} only"):
            clip = open_clip.create_model(
                self.model_name, pretrained=str(self.weights), force_quick_gelu=quick_gelu, pretrained_text=False,
                device="cpu", weights_only=self.weights.suffix != ".pt",
            )
        visual = clip.visual
        if not hasattr(visual, "output_tokens") or not hasattr(visual, "ln_post"):
            raise ValueError(f"quantizer.lc_source={spec!r}: {self.model_name} is not an open_clip VisionTransformer")
        visual.output_tokens = True
        visual.requires_grad_(False)
        self.visual = visual.eval().to(device)
        self.device, self.batch_size = torch.device(device), batch_size
        size = getattr(visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        pre = getattr(visual, "preprocess_cfg", {}) or {}
        mean = tag_cfg.get("mean") or pre.get("mean") or open_clip.OPENAI_DATASET_MEAN
        std = tag_cfg.get("std") or pre.get("std") or open_clip.OPENAI_DATASET_STD
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        proj = getattr(visual, "proj", None)
        self.dim = int(proj.shape[1]) if proj is not None else int(visual.ln_post.normalized_shape[0])

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        out = []
        for chunk in images.split(self.batch_size):
            x = chunk.float().div(255.0)
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
            x = ((x.clamp(0, 1) - self.mean) / self.std).to(self.device)
            _, tokens = self.visual(x)  # (B, L, width), after ln_post
            if self.visual.proj is not None:
                tokens = tokens @ self.visual.proj
            b, length, c = tokens.shape
            side = int(round(length**0.5))
            grid = tokens.transpose(1, 2).reshape(b, c, side, side)
            pooled = F.adaptive_avg_pool2d(grid, CLIP_GRID)  # (B, C, 4, 4)
            out.append(pooled.permute(0, 2, 3, 1).reshape(-1, c).float().cpu())
        return torch.cat(out)

    def fingerprint(self) -> dict:
        stat = self.weights.stat()
        return {"spec": "clip", "model": self.model_name, "weights": str(self.weights.resolve()),
                "size": stat.st_size, "mtime": int(stat.st_mtime), "grid": CLIP_GRID}


# ---------------------------------------------------------------------------------------------------------------


def feature_source(spec: str, *, patch: int = 4, feature_dim: int = 0, device: str | torch.device = "cpu"
                   ) -> FeatureSource:
    """The feature source named by ``spec`` (``quantizer.lc_source``)."""
    if spec == "pixels":
        return PixelPatches(patch)
    if spec == "random":
        return RandomFeatures(feature_dim)
    if spec.startswith("encoder:") and len(spec) > len("encoder:"):
        return EncoderFeatures(spec[len("encoder:") :], device=device)
    if spec.startswith("clip:") and len(spec) > len("clip:"):
        return ClipFeatures(spec, device=device)
    raise ValueError(
        f"quantizer.lc_source={spec!r}: choose pixels, random, encoder:<run dir> or clip:<model>[:<tag or file>]"
    )


def source_feature_dim(spec: str, *, patch: int = 4, feature_dim: int = 0, load: bool = False) -> int | None:
    """C of a source without computing features; None when it is not known cheaply (``load`` permits open_clip)."""
    if spec == "pixels":
        return 3 * patch * patch
    if spec == "random":
        return feature_dim or None
    if spec.startswith("encoder:"):
        path = Path(spec[len("encoder:") :]).expanduser() / "config.json"
        return _encoder_dim(path.parent) if path.is_file() else None
    if spec.startswith("clip:") and load:
        return clip_feature_dim(parse_clip_spec(spec)[0])
    return None
