"""rFID and KID through torch-fidelity: its InceptionV3 feature extractor and its own metric functions.

Reconstructions are compared with the originals of the evaluation split. Images reach the extractor the way
torch-fidelity expects them: ``torch.uint8`` tensors (B, 3, H, W) with values in [0, 255] at their own size (the
extractor resizes to 299 internally, TF1-style bilinear). Features (the 2048-d pool features, torch-fidelity's
default for FID and KID) are accumulated batch by batch over the whole split; the values come from
``torch_fidelity.metric_fid.fid_features_to_statistics`` / ``fid_statistics_to_metric`` and
``torch_fidelity.metric_kid.kid_features_to_metric`` (polynomial kernel, 100 subsets of min(1000, n) images).

Weights: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` from ``$TORCH_HOME/hub/checkpoints`` or
``$PQSTUDY_INCEPTION_WEIGHTS``, else the same network converted by ``pqstudy weights install``; loaded weights-only,
never downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pqstudy.metrics.inception import inception_skeleton
from pqstudy.metrics.weights import file_sha256, find_weights, missing_reason

__all__ = [
    "FidKidAccumulator",
    "frechet_distance",
    "choose_precision",
    "kernel_inception_distance",
    "load_inception",
    "to_uint8",
]

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def to_uint8(x: Tensor) -> Tensor:
    """Float images in [-1, 1] → ``torch.uint8`` in [0, 255], rounded to nearest (values outside are clamped)."""
    return ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def load_inception(
    device: str | torch.device = "cpu", random_backbone: bool = False, weights_path: str | None = None
) -> tuple[nn.Module | None, str | None]:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` giving 2048-d features: ``(extractor, None)`` or
    ``(None, one-line reason)``.

    The weights are the file :func:`pqstudy.metrics.weights.find_weights` resolves (torch-fidelity's release file
    supplied by the user, or the one ``pqstudy weights install`` converted), loaded with ``weights_only=True``
    (tensors only: a file from elsewhere never runs code) and strictly (every tensor present, no extra).
    ``weights_path`` overrides the search. ``random_backbone=True`` is a test-only switch (seeded random weights);
    its values are not FID/KID.
    """
    path = None
    if not random_backbone:
        status = find_weights("inception", weights_path)
        reason = missing_reason("rfid/kid", [status])
        if reason is not None:
            return None, reason
        path = status.path
    try:
        extractor = inception_skeleton()
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            extractor.load_state_dict(state, strict=True)
            extractor.weights_sha256 = status.sha256 or file_sha256(path)
    except Exception as exc:  # a corrupt or mismatched file: recorded, never raised
        first = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"rfid/kid: failed to load {path}: {type(exc).__name__}: {first}"
    extractor.requires_grad_(False)
    extractor = extractor.eval().to(device)
    if torch.device(device).type == "cpu":
        # channels-last convolutions: 1.17x per image on this Xeon (1 thread), 1.55x on an AVX2-only EPYC, same
        # features (results/benchmarks/inception.csv); bf16 only where choose_precision() keeps it
        extractor = extractor.to(memory_format=torch.channels_last)
    return extractor, None


def frechet_distance(features_1: Tensor, features_2: Tensor) -> float:
    """FID between two feature sets (n, d), as torch-fidelity defines and computes it.

    ``‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1 Σ2)`` with torch-fidelity's statistics
    (``fid_features_to_statistics``). When both sets have more samples than dimensions (a real evaluation split) the
    value is torch-fidelity's ``fid_statistics_to_metric``. When a set has at most d samples, Σ is low rank and the
    trace term is computed exactly from the centred features instead of a d × d non-symmetric eigendecomposition:
    with Σi = Ai Aiᵀ, Ai = (Xi − μi)ᵀ / √(ni − 1), the non-zero eigenvalues of Σ1 Σ2 are the squared singular values
    of A2ᵀ A1, so tr √(Σ1 Σ2) = ‖A2ᵀ A1‖_* (same value, without the 2048 × 2048 ``eigvals`` that takes half a minute
    on a small CPU).
    """
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats_1, stats_2 = fid_features_to_statistics(features_1.cpu()), fid_features_to_statistics(features_2.cpu())
    (n1, d), n2 = features_1.shape, features_2.shape[0]
    if min(n1, n2) > d:
        return float(fid_statistics_to_metric(stats_1, stats_2, verbose=False)["frechet_inception_distance"])
    mu1, mu2 = stats_1["mu"].astype(np.float64), stats_2["mu"].astype(np.float64)
    a1 = (features_1.cpu().numpy().astype(np.float64) - mu1) / np.sqrt(n1 - 1)  # (n1, d) = A1ᵀ
    a2 = (features_2.cpu().numpy().astype(np.float64) - mu2) / np.sqrt(n2 - 1)
    tr_covmean = np.linalg.svd(a2 @ a1.T, compute_uv=False).sum()
    diff = stats_1["mu"] - stats_2["mu"]
    return float(diff.dot(diff) + np.trace(stats_1["sigma"]) + np.trace(stats_2["sigma"]) - 2 * tr_covmean)


def kernel_inception_distance(features_1: Tensor, features_2: Tensor, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 2020) -> tuple[float, float]:
    """KID (mean, std) by torch-fidelity's ``kid_features_to_metric``: polynomial kernel, ``subsets`` random subsets
    of min(``subset_size``, n) images each."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    n = min(len(features_1), len(features_2))
    res = kid_features_to_metric(features_1, features_2, kid_subsets=subsets, kid_subset_size=min(subset_size, n),
                                 rng_seed=seed, verbose=False)
    return float(res[KEY_METRIC_KID_MEAN]), float(res[KEY_METRIC_KID_STD])


BF16_TOLERANCE = 0.005  # bf16 is kept only where it moves FID and KID by less than 0.5 %


def choose_precision(extractor: nn.Module, images_uint8: Tensor | None) -> tuple[str, str]:
    """``("bf16" | "fp32", why)`` for the Inception features on this machine, decided at run time.

    bf16 autocast is considered only on a CPU with native bf16 (elsewhere it is emulated and 8–17× slower). There it
    is calibrated once per (CPU model, torch version, weights) on ``images_uint8`` (≥ 16 originals): FID and KID
    between the two halves, in fp32 and in bf16; bf16 is kept only if both move by less than
    :data:`BF16_TOLERANCE`. The decision is cached in ``<feature cache>/precision.json``.
    """
    import json

    from pqstudy.cpu import cpu_model, native_bf16
    from pqstudy.metrics.feature_cache import cache_dir

    device = next(extractor.parameters()).device
    if device.type != "cpu":
        return "fp32", f"{device.type}: fp32 (bf16 is not calibrated off the CPU)"
    if not native_bf16():
        return "fp32", f"fp32: no native bf16 on {cpu_model()} (emulated bf16 is 8-17x slower)"
    if images_uint8 is None or len(images_uint8) < 16:
        return "fp32", "fp32: too few images to check bf16 against fp32"
    key = f"{cpu_model()}|{torch.__version__}|{getattr(extractor, 'weights_sha256', 'random')}"
    path = cache_dir().parent / "precision.json"
    try:
        decisions = json.loads(path.read_text())
    except (OSError, ValueError):
        decisions = {}
    if key not in decisions:
        half = min(len(images_uint8), 64) // 2
        a, b = images_uint8[:half], images_uint8[half : 2 * half]
        moved = []
        with torch.no_grad():
            feats = {}
            for bf16 in (False, True):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    feats[bf16] = [extractor(x)[0].float().double() for x in (a, b)]
            for metric in (frechet_distance, lambda x, y: kernel_inception_distance(x.float(), y.float())[0]):
                ref, low = metric(*feats[False]), metric(*feats[True])
                moved.append(abs(low - ref) / max(abs(ref), 1e-12))
        decisions[key] = {"bf16": max(moved) < BF16_TOLERANCE, "moved": max(moved), "images": 2 * half}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(decisions, indent=2))
        except OSError:
            pass
    d = decisions[key]
    verdict = "bf16" if d["bf16"] else "fp32"
    return verdict, f"{verdict}: bf16 moved FID/KID by {100 * d['moved']:.2f}% on {d['images']} images (limit 0.5%)"


class FidKidAccumulator:
    """Streams (real, recon) batches through the extractor; :meth:`compute` gives rFID and KID (mean, std).

    Input 1 is the reconstructions, input 2 the originals (torch-fidelity's generated / reference order).
    ``limit`` > 0 takes only the first ``limit`` image pairs (a fixed, recorded sample count); ``real_features``
    (limit × 2048, e.g. from :mod:`pqstudy.metrics.feature_cache`) replaces the originals' extraction.
    """

    def __init__(
        self,
        extractor: nn.Module,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        kid_subsets: int = KID_SUBSETS,
        kid_subset_size: int = KID_SUBSET_SIZE,
        seed: int = 2020,
        limit: int = 0,
        real_features: Tensor | None = None,
    ):
        self.extractor = extractor
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.seed = seed
        self.limit = int(limit)
        self.bf16 = False  # set from choose_precision()
        self.cached_real = real_features is not None
        self._real: list[Tensor] = [] if real_features is None else [real_features.float()]
        self._recon: list[Tensor] = []

    @property
    def count(self) -> int:
        return sum(len(f) for f in self._recon)

    @property
    def full(self) -> bool:
        return self.limit > 0 and self.count >= self.limit

    @torch.no_grad()
    def features(self, images_uint8: Tensor) -> Tensor:
        """(N, 2048) float32 CPU features of uint8 (N, 3, H, W) images, in chunks of ``batch_size``."""
        out = []
        for chunk in images_uint8.split(self.batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16 and self.device.type == "cpu"):
                (feat,) = self.extractor(chunk.to(self.device))
            out.append(feat.detach().to("cpu", torch.float32))
        return torch.cat(out) if out else torch.empty(0, 2048)

    def update(self, real: Tensor, recon: Tensor) -> None:
        """Float images (B, 3, H, W) in [-1, 1]; pairs past ``limit`` are ignored."""
        if self.limit > 0:
            take = max(0, self.limit - self.count)
            real, recon = real[:take], recon[:take]
        if len(recon) == 0:
            return
        if not self.cached_real:
            self._real.append(self.features(to_uint8(real)))
        self._recon.append(self.features(to_uint8(recon)))

    def real_features(self) -> Tensor:
        """The originals' features seen so far (N, 2048)."""
        return torch.cat(self._real) if self._real else torch.empty(0, 2048)

    def compute(self, fid: bool = True, kid: bool = True) -> dict[str, float | None | str]:
        """``rfid`` and/or ``kid`` + ``kid_std`` over everything seen (None with ``*_missing_reason`` below 2 images).

        KID uses torch-fidelity's defaults (100 subsets, polynomial kernel) with subsets of min(1000, n) images.
        """
        out: dict[str, float | None | str] = {}
        n = self.count
        if self.cached_real and self.real_features().shape[0] != n:
            reason = f"rfid/kid: {self.real_features().shape[0]} cached original features for {n} reconstructions"
            raise ValueError(reason)
        if n < 2:
            reason = f"rfid/kid: need at least 2 images, got {n}"
            if fid:
                out.update(rfid=None, rfid_missing_reason=reason)
            if kid:
                out.update(kid=None, kid_std=None, kid_missing_reason=reason)
            return out
        recon, real = torch.cat(self._recon), torch.cat(self._real)
        if fid:
            out["rfid"] = frechet_distance(recon, real)
        if kid:
            mean, std = kernel_inception_distance(recon, real, self.kid_subsets, self.kid_subset_size, self.seed)
            out.update(kid=mean, kid_std=std)
        return out

    def reset(self) -> None:
        if not self.cached_real:
            self._real.clear()
        self._recon.clear()
