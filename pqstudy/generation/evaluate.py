"""evaluate_generator(...) → a generation run's metrics: the prior's NLL, sample quality, and the floor beside it.

- **Prior NLL** (AR): bits per image on the test split's token indices, beside the tokenizer's own rate
  (T·M·log2 K bits per image, what a uniform prior spends).
- **Samples**: ``gen.samples`` images, class-balanced labels (0, 1, …, 9, 0, …), every sampling setting recorded.
  Cost: seconds per sample (generator and decoder apart, measured here, one process) and FLOPs per sample counted by
  ``torch.utils.flop_counter.FlopCounterMode`` while sampling one image (matmuls, convolutions and attention, the
  latter through the math attention backend, which the counter sees; 2 FLOPs per multiply-add).
- **Quality in the study classifier's feature space** (:mod:`pqstudy.metrics.classifier`, trained once per dataset
  and cached; its test accuracy is recorded): ``fd_classifier``, ``kid_classifier``, precision, recall, density,
  coverage and ``class_accuracy`` of the samples (:mod:`pqstudy.metrics.sample_quality`), all against the test
  split. Never called FID or IS.
- **The floor, same table, same sample count**: ``real_*`` (training images vs the test split) and ``recon_*`` (the
  tokenizer's reconstructions of those training images vs the test split).
- **Inception FID/KID** (``gen.fid_samples`` > 0, the headline runs): ``fid_inception`` / ``kid_inception`` of the
  first ``fid_samples`` samples against as many test images (originals' features cached), with the count recorded.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pqstudy.config import DataConfig
from pqstudy.data import data_fingerprint, load_dataset, to_model_space
from pqstudy.generation.codes import Codes, decode, load_codes, what_for
from pqstudy.generation.config import GenRunConfig
from pqstudy.generation.train import TrainedGenerator, load_generator
from pqstudy.metrics.distribution import to_uint8
from pqstudy.models.checkpoint import load_model
from pqstudy.runio import atomic_write

SAMPLE_BATCH = 100
SAMPLES_FILE = "samples.npz"  # the first SAVED_SAMPLES samples (uint8) and their labels, in the run directory
SAVED_SAMPLES = 100


def sample_labels(n: int, num_classes: int) -> Tensor | None:
    """Class-balanced labels 0, 1, …, C−1, 0, … (None for unlabelled data)."""
    return torch.arange(n) % num_classes if num_classes else None


def sampling_settings(cfg: GenRunConfig) -> dict:
    """The settings that produced the samples, recorded with every result."""
    g = cfg.gen
    if g.kind == "ar":
        return {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p, "cfg_scale": g.cfg_scale}
    return {"sample_steps": g.sample_steps, "solver": g.solver, "cfg_scale": g.cfg_scale}


def _sample_codes(cfg: GenRunConfig, model, scaler, y: Tensor | None, n: int, generator: torch.Generator) -> Tensor:
    g = cfg.gen
    if g.kind == "ar":  # an unconditional prior (y None) takes the sample count
        return model.generate(y, num_samples=n, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                              cfg_scale=g.cfg_scale, generator=generator)
    z = model.generate(n if y is None else y, steps=g.sample_steps, solver=g.solver, cfg_scale=g.cfg_scale,
                       generator=generator)  # an unconditional flow model takes the sample count
    return scaler.inverse(z)


def generate_images(cfg: GenRunConfig, model, scaler, tokenizer, codes: Codes, n: int,
                    seed: int) -> tuple[Tensor, Tensor | None, dict]:
    """``n`` samples as images (n, 3, H, W) in [-1, 1], their labels, and the measured seconds per sample."""
    labels = sample_labels(n, codes.num_classes)
    generator = torch.Generator().manual_seed(seed)
    images, gen_s, dec_s = [], 0.0, 0.0
    for start in range(0, n, SAMPLE_BATCH):
        b = min(SAMPLE_BATCH, n - start)
        y = labels[start : start + b] if labels is not None else None
        t0 = time.perf_counter()
        z = _sample_codes(cfg, model, scaler, y, b, generator)
        t1 = time.perf_counter()
        images.append(decode(tokenizer, z, codes.what, codes.grid))
        dec_s += time.perf_counter() - t1
        gen_s += t1 - t0
    cost = {"generate_seconds_per_sample": gen_s / n, "decode_seconds_per_sample": dec_s / n}
    return torch.cat(images), labels, cost


def flops_per_sample(cfg: GenRunConfig, model, scaler, tokenizer, codes: Codes) -> dict:
    """FLOPs (matmuls, convolutions) of generating and of decoding one sample, counted while doing it."""
    y = sample_labels(1, codes.num_classes)
    generator = torch.Generator().manual_seed(0)
    # the math attention backend: CPU's fused attention kernel is invisible to FlopCounterMode (counted as 0)
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        z = _sample_codes(cfg, model, scaler, y, 1, generator)
    gen_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        decode(tokenizer, z, codes.what, codes.grid)
    return {"generate_flops_per_sample": int(gen_flops), "decode_flops_per_sample": int(counter.get_total_flops())}


@torch.no_grad()
def prior_nll(model, codes: Codes, batch_size: int = 256) -> dict:
    """The AR prior's NLL on ``codes`` (test split) in bits per image and per position, and the tokenizer's rate."""
    total = 0.0
    for start in range(0, len(codes), batch_size):
        x = codes.data[start : start + batch_size]
        y = codes.labels[start : start + batch_size] if codes.labels is not None else None
        total += float(model.nll(x, y).sum())
    n, m, t = codes.data.shape
    bits = total / n / math.log(2)
    return {"nll_bits_per_image": bits, "nll_bits_per_position": bits / t, "nll_images": n,
            "tokenizer_bits_per_image": t * m * math.log2(codes.vocab_size)}


def study_classifier(data: DataConfig, test_split=None):
    """The study's classifier for ``data`` (trained once, cached by the data's fingerprint) and its info, or
    ``(None, reason)`` for unlabelled data. ``test_split``: the test split when already loaded (unlabelled data is
    then recognised without loading the training split)."""
    from pqstudy.metrics.classifier import classifier_for
    from pqstudy.metrics.feature_cache import cache_dir

    unlabelled = f"{data.name} has no class labels: no classifier, so no classifier-space metrics"
    if test_split is not None and test_split.labels is None:
        return None, unlabelled
    full = DataConfig(name=data.name, root=data.root, image_size=data.image_size, download=data.download)
    train, test = load_dataset(full, "train"), load_dataset(full, "test")
    if train.labels is None or test.labels is None:
        return None, unlabelled
    key = f"{data_fingerprint(full)}|{data.image_size}"
    return classifier_for(train.images, train.labels, test.images, test.labels, key=key,
                          cache_dir=cache_dir().parent / "classifiers")


def classifier_metrics(classifier, test_images: Tensor, samples: Tensor, labels: Tensor | None,
                       train_images: Tensor, train_labels: Tensor | None, reconstructions: Tensor) -> dict:
    """Samples, training images and reconstructions, each against the test split in the classifier's space."""
    from pqstudy.metrics.classifier import classify
    from pqstudy.metrics.sample_quality import sample_metrics

    real, _ = classify(classifier, test_images)
    out = {}
    for prefix, images, y in (("", samples, labels), ("real_", train_images, train_labels),
                              ("recon_", reconstructions, train_labels)):
        fake, logits = classify(classifier, images)
        scores = sample_metrics(real, fake, fake_logits=logits, fake_labels=y)
        out.update({f"{prefix}{k}": v for k, v in scores.items()})
    return out


def inception_metrics(test_images: Tensor, samples: Tensor, n: int) -> dict:
    """Inception FID/KID of the first ``n`` samples against the first ``n`` test images (or the missing reason)."""
    from pqstudy.metrics.reference import ReferenceMetrics

    n = min(n, len(samples), len(test_images))
    reference = ReferenceMetrics(("rfid", "kid"), fid_samples=n, fid_reference=to_uint8(test_images[:n]))
    for start in range(0, n, SAMPLE_BATCH):
        reference.update(test_images[start : start + SAMPLE_BATCH], samples[start : start + SAMPLE_BATCH])
    scores = reference.compute()
    out = {"fid_inception": scores.get("rfid"), "kid_inception": scores.get("kid"),
           "kid_inception_std": scores.get("kid_std"), "fid_inception_samples": n}
    for name, new in (("rfid", "fid_inception"), ("kid", "kid_inception")):
        if scores.get(f"{name}_missing_reason"):
            out[f"{new}_missing_reason"] = scores[f"{name}_missing_reason"]
    return out


def evaluate_generator(cfg: GenRunConfig, run_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike,
                       trained: TrainedGenerator | None = None) -> dict:
    """Every metric of the module docstring for the generation run in ``run_dir``; also saves the first samples
    (``samples.npz``). ``trained`` skips reloading the generator right after training."""
    g = cfg.gen
    torch.manual_seed(g.seed)
    if g.threads:
        torch.set_num_threads(g.threads)
    tokenizer, tok_cfg = load_model(tokenizer_dir)
    what = what_for(g.kind, g.latent)
    if trained is not None:
        model, scaler, codes = trained.model, trained.scaler, trained.codes
        metrics = dict(trained.summary)
    else:
        codes = load_codes(tokenizer_dir, "train", what)
        model, scaler = load_generator(run_dir, cfg, codes)
        metrics = {"run_id": cfg.run_id, "tokenizer_run_id": cfg.tokenizer_run_id}
    model.eval()
    metrics.update(sampling_settings(cfg))
    metrics["samples"] = g.samples
    if g.kind == "ar":
        metrics.update(prior_nll(model, load_codes(tokenizer_dir, "test", "indices", limit=g.nll_images)))

    samples, labels, cost = generate_images(cfg, model, scaler, tokenizer, codes, g.samples, seed=g.seed + 1)
    metrics.update(cost)
    metrics.update(flops_per_sample(cfg, model, scaler, tokenizer, codes))
    save_samples(run_dir, samples, labels)

    test = load_dataset(tok_cfg.data, "test")
    test_images = to_model_space(test.images)
    classifier, info = study_classifier(tok_cfg.data, test_split=test)
    if classifier is None:
        metrics["fd_classifier_missing_reason"] = info
    else:
        train = load_dataset(tok_cfg.data, "train", seed=tok_cfg.train.seed)
        n = min(g.samples, len(train))
        train_images = to_model_space(train.images[:n])
        train_labels = train.labels[:n] if train.labels is not None else None
        with torch.no_grad():
            recon = torch.cat([tokenizer(x).x_rec.clamp(-1, 1) for x in train_images.split(SAMPLE_BATCH)])
        metrics["classifier_test_accuracy"] = info["test_accuracy"]
        metrics.update(classifier_metrics(classifier, test_images, samples, labels, train_images, train_labels,
                                          recon))
    if g.fid_samples:
        metrics.update(inception_metrics(test_images, samples, g.fid_samples))
    return metrics


def save_samples(run_dir: str | os.PathLike, samples: Tensor, labels: Tensor | None) -> Path:
    """The first ``SAVED_SAMPLES`` samples (uint8 (n, 3, H, W)) and their labels, as ``<run_dir>/samples.npz``."""
    arrays = {"images": to_uint8(samples[:SAVED_SAMPLES]).numpy()}
    if labels is not None:
        arrays["labels"] = labels[:SAVED_SAMPLES].numpy()
    path = Path(run_dir) / SAMPLES_FILE
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_samples(run_dir: str | os.PathLike) -> tuple[Tensor, Tensor | None]:
    with np.load(Path(run_dir) / SAMPLES_FILE, allow_pickle=False) as f:
        labels = torch.from_numpy(f["labels"]) if "labels" in f.files else None
        return torch.from_numpy(f["images"]), labels
