"""Reference-network metrics over an evaluation split: LPIPS (AlexNet), rFID, KID and CMMD, streamed batch by batch.

    rm = ReferenceMetrics(device="cpu")           # loads what it can, once; missing weights are recorded
    for real, recon in batches:                   # float (B, 3, H, W) in [-1, 1]
        rm.update(real, recon)
    rm.compute()  # {"lpips": 0.12 | None, "rfid": ..., "kid": ..., "kid_std": ..., "cmmd": ...,
                  #  "<name>_missing_reason": "one line: the exact file and where to put it"  (only when missing)}

A metric whose weights are missing, or whose network fails on the data, is ``None`` with a reason and evaluation
goes on; nothing is downloaded. ``random_backbones=True`` is a test-only switch (seeded random networks): its
output carries ``reference_random_backbones: True`` and is never a real LPIPS/FID/KID/CMMD.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["REFERENCE_METRICS", "ReferenceMetrics"]

REFERENCE_METRICS = ("lpips", "rfid", "kid", "cmmd")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ReferenceMetrics:
    """Streaming accumulator for the reference-network metrics; see the module docstring."""

    def __init__(
        self,
        names=REFERENCE_METRICS,
        device: str | torch.device = "cpu",
        random_backbones: bool = False,
        batch_size: int = 32,
        fid_samples: int = 0,
        fid_reference: Tensor | None = None,
    ):
        if isinstance(names, str):
            names = (names,)
        names = tuple(dict.fromkeys(names))
        unknown = [n for n in names if n not in REFERENCE_METRICS]
        if unknown:
            raise ValueError(f"unknown reference metric(s) {unknown}; known: {', '.join(REFERENCE_METRICS)}")
        self.names = names
        self.device = torch.device(device)
        self.random_backbones = bool(random_backbones)
        self.batch_size = batch_size
        self.missing: dict[str, str] = {}
        if self.random_backbones:
            warnings.warn(
                "ReferenceMetrics(random_backbones=True): test-only random networks; the values are not "
                "LPIPS/FID/KID/CMMD",
                stacklevel=2,
            )

        self._lpips = None
        self._lpips_sum = 0.0
        self._lpips_count = 0
        if "lpips" in names:
            from pqstudy.metrics.perceptual import load_lpips

            self._lpips, reason = load_lpips("alex", device=self.device, random_backbone=self.random_backbones)
            if reason:
                self.missing["lpips"] = _one_line(reason)

        self._fidkid = None
        self._feature_key: str | None = None
        self._precision_reason = ""
        fidkid = [n for n in ("rfid", "kid") if n in names]
        if fidkid:
            from pqstudy.metrics.distribution import FidKidAccumulator, choose_precision, load_inception

            extractor, reason = load_inception(device=self.device, random_backbone=self.random_backbones)
            if reason:
                for n in fidkid:
                    self.missing[n] = _one_line(reason)
            else:
                precision, self._precision_reason = choose_precision(extractor, fid_reference)
                cached = None
                if fid_reference is not None and getattr(extractor, "weights_sha256", None):
                    from pqstudy.metrics.feature_cache import feature_key, load_features

                    network = extractor.weights_sha256 + ("|bf16" if precision == "bf16" else "")
                    self._feature_key = feature_key(network, fid_reference)
                    cached = load_features(self._feature_key, len(fid_reference))
                    fid_samples = len(fid_reference)
                self._fidkid = FidKidAccumulator(extractor, self.device, batch_size=batch_size, limit=fid_samples,
                                                 real_features=cached)
                self._fidkid.bf16 = precision == "bf16"

        self._cmmd = None
        if "cmmd" in names:
            from pqstudy.metrics.cmmd import CmmdAccumulator, load_clip

            embedder, reason = load_clip(device=self.device, random_backbone=self.random_backbones)
            if reason:
                self.missing["cmmd"] = _one_line(reason)
            else:
                self._cmmd = CmmdAccumulator(embedder, self.device, batch_size=batch_size)

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n not in self.missing)

    def _fail(self, names, exc: Exception) -> None:
        reason = _one_line(f"{'/'.join(names)} failed: {type(exc).__name__}: {exc}")
        warnings.warn(reason, stacklevel=3)
        for n in names:
            self.missing.setdefault(n, reason)

    @torch.no_grad()
    def update(self, real: Tensor, recon: Tensor) -> None:
        """Add a batch: ``real`` originals and ``recon`` reconstructions, float (B, 3, H, W) in [-1, 1]."""
        if real.shape != recon.shape or real.dim() != 4 or real.shape[1] not in (1, 3):
            raise ValueError(
                f"expected two (B, 3, H, W) batches of one shape, got {tuple(real.shape)} and {tuple(recon.shape)}"
            )
        if real.shape[1] == 1:
            real, recon = real.expand(-1, 3, -1, -1), recon.expand(-1, 3, -1, -1)
        real = real.detach().to(self.device, torch.float32)
        recon = recon.detach().to(self.device, torch.float32)

        if self._lpips is not None and "lpips" not in self.missing:
            try:
                for r, g in zip(real.split(self.batch_size), recon.split(self.batch_size), strict=True):
                    d = self._lpips(r, g).flatten().double()
                    self._lpips_sum += float(d.sum())
                    self._lpips_count += d.numel()
            except Exception as exc:  # e.g. images too small for the network: recorded, evaluation goes on
                self._fail(("lpips",), exc)
        fidkid = [n for n in ("rfid", "kid") if n in self.names and n not in self.missing]
        if self._fidkid is not None and fidkid and not self._fidkid.full:
            try:
                self._fidkid.update(real, recon)
            except Exception as exc:
                self._fail(fidkid, exc)
        if self._cmmd is not None and "cmmd" not in self.missing:
            try:
                self._cmmd.update(real, recon)
            except Exception as exc:
                self._fail(("cmmd",), exc)

    def compute(self) -> dict[str, float | str | bool | None]:
        """Flat dict: each requested metric (float or None), ``kid_std`` with ``kid``, and
        ``<name>_missing_reason`` for each missing one."""
        out: dict[str, float | str | bool | None] = {}
        values: dict[str, float | None] = {}
        reasons = dict(self.missing)

        if "lpips" in self.names and "lpips" not in reasons:
            if self._lpips_count:
                values["lpips"] = self._lpips_sum / self._lpips_count
            else:
                reasons["lpips"] = "lpips: no images were evaluated"
        fidkid = [n for n in ("rfid", "kid") if n in self.names and n not in reasons]
        if fidkid and self._fidkid is not None:
            try:
                res = self._fidkid.compute(fid="rfid" in fidkid, kid="kid" in fidkid)
            except Exception as exc:
                res = {
                    f"{n}_missing_reason": _one_line(f"rfid/kid failed: {type(exc).__name__}: {exc}") for n in fidkid
                }
            for n in fidkid:
                if res.get(n) is None:
                    reasons[n] = _one_line(res.get(f"{n}_missing_reason", f"{n}: not computed"))
                else:
                    values[n] = res[n]
            if "kid" in values:
                values["kid_std"] = res.get("kid_std")
            out["fid_samples"] = self._fidkid.count
            out["inception_precision"] = self._precision_reason
            self._save_real_features()
        if "cmmd" in self.names and "cmmd" not in reasons and self._cmmd is not None:
            try:
                res = self._cmmd.compute()
            except Exception as exc:
                res = {"cmmd_missing_reason": _one_line(f"cmmd failed: {type(exc).__name__}: {exc}")}
            if res.get("cmmd") is None:
                reasons["cmmd"] = _one_line(res.get("cmmd_missing_reason", "cmmd: not computed"))
            else:
                values["cmmd"] = res["cmmd"]

        for n in self.names:
            out[n] = values.get(n)
            if n == "kid":
                out["kid_std"] = values.get("kid_std")
            if n in reasons:
                out[f"{n}_missing_reason"] = reasons[n]
        if self.random_backbones:
            out["reference_random_backbones"] = True
        return out

    def _save_real_features(self) -> None:
        """Cache the originals' features (keyed by their content) once a full sample has been extracted."""
        acc = self._fidkid
        if self._feature_key is None or acc is None or acc.cached_real or acc.count != acc.limit:
            return
        from pqstudy.metrics.feature_cache import save_features

        try:
            save_features(self._feature_key, acc.real_features())
        except OSError as exc:  # a cache that cannot be written costs time, never the metric
            warnings.warn(f"inception feature cache not written: {exc}", stacklevel=3)

    def reset(self) -> None:
        """Forget the accumulated images (the loaded networks stay)."""
        self._lpips_sum, self._lpips_count = 0.0, 0
        for acc in (self._fidkid, self._cmmd):
            if acc is not None:
                acc.reset()
