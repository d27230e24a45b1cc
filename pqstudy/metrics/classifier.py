"""The study's own CIFAR-10 classifier: a small CNN whose penultimate layer is the feature space of the sample metrics.

Inception costs 0.3–0.5 s per image on this CPU, so every generation run is scored in the feature space of a
classifier the study trains itself (:mod:`pqstudy.metrics.sample_quality`); its test accuracy is recorded with every
value so that a reader can judge the features. The network follows the fast CIFAR-10 trainers (Page's ResNet-9
"DAWNBench" and Jordan's ``airbench``): a stem convolution, then stages of ``conv → max-pool → BN → ReLU →
conv → BN → ReLU`` that halve the resolution and double the width, global average pooling to the feature vector,
and one linear head. Training is SGD with Nesterov momentum, a one-cycle learning rate, label smoothing, random
flips and translations; it is seeded end to end and never touches the global random state.

:func:`classifier_for` trains once per (data key, config, :data:`VERSION`) and caches the weights under
``<cache_dir>/classifier-<sha>.pt`` (a weights-only state dict) beside a ``.json`` holding the training info and
its provenance; a file that is missing, corrupt or written for something else is retrained, never trusted.

Measured with the defaults (width 16, 128-d features, 8 epochs, 84k parameters) on the 50,000 CIFAR-10 training
images: 83.4% test accuracy after 326 CPU-seconds at one thread (Intel Xeon @ 2.50GHz, AVX-512; 873 s wall on a
machine shared with a study). Width 24 without the feature layer: 85.6%, about twice the cost.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pqstudy.data.images import resize_tensor
from pqstudy.runio import atomic_write, write_json

__all__ = [
    "VERSION",
    "ClassifierConfig",
    "ImageClassifier",
    "accuracy",
    "classifier_for",
    "classify",
    "train_classifier",
]

VERSION = 1  # bump when the network, the training or the cache format changes: old caches are then retrained
IMAGE_SIZE = 32  # the network's input resolution (CIFAR-10); other sizes are resized to it


@dataclass(frozen=True)
class ClassifierConfig:  # frozen: safe as a default argument, hashable into the cache key
    width: int = 16  # channels of the first stage; stages use width·(1, 2, 4), pooled to 4·width channels
    feature_dim: int = 128  # the feature layer: pooled → linear → BN → ReLU; 0 = the 4·width pooled channels
    epochs: int = 8  # passes over the training images
    batch_size: int = 256  # large batches keep oneDNN's convolutions efficient on a CPU
    lr: float = 0.2  # peak SGD learning rate of the one-cycle schedule (with Nesterov momentum 0.9)
    warmup: float = 0.2  # fraction of the steps spent rising linearly to ``lr``; then a linear fall to 0
    weight_decay: float = 5e-4  # L2 on the convolution and linear weights (not on BN or biases)
    label_smoothing: float = 0.2  # keeps the logits (and the features before them) from growing without bound
    augment: bool = True  # random horizontal flips and translations by up to ``translate`` pixels
    translate: int = 2  # reflect-padded random crop; 2 px suffices at 10 epochs (airbench uses 2)
    seed: int = 0  # initial weights, batch order and augmentation all follow from it

    def __post_init__(self):
        if isinstance(self.feature_dim, bool) or not isinstance(self.feature_dim, int) or self.feature_dim < 0:
            raise ValueError(f"ClassifierConfig.feature_dim={self.feature_dim!r}: expected 0 or a positive integer")
        for name in ("width", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ClassifierConfig.{name}={value!r}: expected a positive integer")
        if not isinstance(self.augment, bool):
            raise ValueError(f"ClassifierConfig.augment={self.augment!r}: expected True or False")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"ClassifierConfig.seed={self.seed!r}: expected a non-negative integer")
        if isinstance(self.translate, bool) or not isinstance(self.translate, int) or not 0 <= self.translate < 16:
            raise ValueError(f"ClassifierConfig.translate={self.translate!r}: expected an integer in 0..15")
        for name, low, high in (
            ("lr", 0.0, math.inf),
            ("warmup", 0.0, 1.0),
            ("weight_decay", 0.0, math.inf),
            ("label_smoothing", 0.0, 1.0),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and math.isfinite(value) and low <= value and value < high
            if not ok or (name == "lr" and value == 0):
                raise ValueError(
                    f"ClassifierConfig.{name}={value!r}: expected a finite number in "
                    f"{'(' if name == 'lr' else '['}{low}, {high})"
                )


# ---------------------------------------------------------------------------------------------------------------
# the network


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ImageClassifier(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] → features (B, feature_dim) → logits (B, num_classes).

    ``feature_dim`` > 0 adds a feature layer (linear → BN → ReLU) on the pooled 4·width channels, so that a narrow,
    fast network still gives a 128-d feature space (the ReLU keeps it full rank, unlike a linear map up from 64-d);
    0 uses the pooled channels themselves.
    """

    def __init__(self, *, width: int = 16, feature_dim: int = 128, num_classes: int = 10):
        super().__init__()
        self.width, self.num_classes = width, num_classes
        self.feature_dim = feature_dim or 4 * width
        layers: list[nn.Module] = _conv_bn(3, width)  # stem at 32×32
        c = width
        for c_out in (width, 2 * width, 4 * width):  # stages at 32→16, 16→8, 8→4
            layers += [
                nn.Conv2d(c, c_out, 3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                *_conv_bn(c_out, c_out),
            ]
            c = c_out
        self.body = nn.Sequential(*layers)
        self.neck = (
            nn.Sequential(nn.Linear(c, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
            if feature_dim
            else nn.Identity()
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) float in [-1, 1] → (B, feature_dim): the last stage, globally average-pooled, through the
        feature layer.

        Inputs of another size are resized to 32×32 (bilinear, antialiased) first.
        """
        if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"x: expected float images (B, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.neck(self.body(x).mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def classify(model: ImageClassifier, images: Tensor, *, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(features (N, F), logits (N, C)), float32 on the CPU, of ``images``: uint8 in [0, 255] or float in [-1, 1],
    (N, 3, H, W), in eval mode, ``batch_size`` images at a time."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (N, 3, H, W), got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats, logits = [], []
    for chunk in images.split(batch_size):
        x = _to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()
        f = model.features(x.to(device))
        feats.append(f.cpu())
        logits.append(model.head(f).cpu())
    model.train(was_training)
    c = model.num_classes
    return (
        torch.cat(feats) if feats else torch.empty(0, model.feature_dim),
        torch.cat(logits) if logits else torch.empty(0, c),
    )


def _to_float(images_uint8: Tensor) -> Tensor:
    return images_uint8.float().div_(127.5).sub_(1.0)


# ---------------------------------------------------------------------------------------------------------------
# training


def _check_split(images: Tensor, labels: Tensor, num_classes: int, name: str) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        shown = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name}_images: expected uint8 (N, 3, H, W), got {shown}")
    if not isinstance(labels, Tensor) or labels.dtype != torch.long or labels.ndim != 1:
        shown = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{name}_labels: expected long (N,), got {shown}")
    if len(images) != len(labels):
        raise ValueError(f"{name}_labels: {len(labels)} labels for {len(images)} {name} images")
    if len(images) == 0:
        raise ValueError(f"{name}_images: empty")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name}_labels: values in {low}..{high}, expected 0..{num_classes - 1} (num_classes)")


def _at_32(images: Tensor) -> Tensor:
    return images if images.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE) else resize_tensor(images, IMAGE_SIZE)


def _augment(x: Tensor, translate: int, gen: torch.Generator) -> Tensor:
    """Each image flipped horizontally with probability ½, then cropped from the reflect-padded batch at a random
    shift of at most ``translate`` pixels each way."""
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if translate == 0:
        return x
    t = translate
    padded = F.pad(x, (t, t, t, t), mode="reflect")
    dx, dy = torch.randint(0, 2 * t + 1, (2, len(x)), generator=gen)
    out = torch.empty_like(x)
    for i in range(2 * t + 1):  # (2t+1)² slice copies instead of one gather per image
        for j in range(2 * t + 1):
            sel = ((dy == i) & (dx == j)).nonzero().squeeze(1)
            if len(sel):
                out[sel] = padded[sel, :, i : i + IMAGE_SIZE, j : j + IMAGE_SIZE]
    return out


def _lr_at(step: int, total: int, cfg: ClassifierConfig) -> float:
    rise = max(1, round(cfg.warmup * total))
    if step < rise:
        return cfg.lr * (step + 1) / rise
    return cfg.lr * max(0.0, (total - step) / max(1, total - rise))


def _optimizer(model: nn.Module, cfg: ClassifierConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


def accuracy(model: ImageClassifier, images: Tensor, labels: Tensor, *, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images`` (N, 3, H, W) with long ``labels`` (N,)."""
    _, logits = classify(model, images, batch_size=batch_size)
    return float((logits.argmax(1) == labels).double().mean())


def train_classifier(
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    cfg: ClassifierConfig = ClassifierConfig(),
    num_classes: int = 10,
    log_every: int = 0,
) -> tuple[ImageClassifier, dict]:
    """Train an :class:`ImageClassifier` on uint8 images (N, 3, H, W) with long labels (N,) in 0..num_classes-1.

    Returns the model in eval mode and an info dict: ``test_accuracy``, ``train_accuracy`` (on at most 10,000
    training images, unaugmented), ``train_seconds`` (wall), ``train_cpu_seconds`` (this process's CPU time, all
    threads), ``epochs``, ``steps``, ``params``, ``feature_dim``, ``num_classes``, ``threads`` and the config fields.
    Deterministic for a seed at a fixed thread count: the weights, batch order and augmentation use their own
    generators (the global random state is left as it was).
    ``log_every`` > 0 prints the loss every that many steps.
    """
    if not isinstance(cfg, ClassifierConfig):
        raise ValueError(f"cfg: expected a ClassifierConfig, got {type(cfg).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: expected an integer ≥ 2")
    _check_split(train_images, train_labels, num_classes, "train")
    _check_split(test_images, test_labels, num_classes, "test")
    train_images, test_images = _at_32(train_images), _at_32(test_images)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ImageClassifier(width=cfg.width, feature_dim=cfg.feature_dim, num_classes=num_classes)
    model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = _optimizer(model, cfg)
    n = len(train_images)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * per_epoch
    start, cpu_start, step = time.perf_counter(), time.process_time(), 0
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for idx in order.split(cfg.batch_size):
            if len(idx) < 2:  # batch norm needs two images
                continue
            x = _to_float(train_images[idx])
            if cfg.augment:
                x = _augment(x, cfg.translate, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), train_labels[idx], label_smoothing=cfg.label_smoothing)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log_every and step % log_every == 0:
                print(
                    f"classifier step {step}/{total} loss {loss.item():.3f} {time.perf_counter() - start:.0f}s",
                    flush=True,
                )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    info = {
        "test_accuracy": accuracy(model, test_images, test_labels),
        "train_accuracy": accuracy(model, train_images[:10000], train_labels[:10000]),
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,  # this process, all threads: the cost a shared machine hides in the wall time
        "epochs": cfg.epochs,
        "steps": step,
        "params": sum(p.numel() for p in model.parameters()),
        "feature_dim": model.feature_dim,
        "num_classes": num_classes,
        "train_images": n,
        "test_images": len(test_images),
        "threads": torch.get_num_threads(),
        **asdict(cfg),
    }
    return model, info


# ---------------------------------------------------------------------------------------------------------------
# the cache


def _cache_sha(key: str, cfg: ClassifierConfig, num_classes: int) -> str:
    text = json.dumps({"key": key, "cfg": asdict(cfg), "num_classes": num_classes, "version": VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_cached(
    pt: Path, meta: Path, provenance: dict, cfg: ClassifierConfig, num_classes: int
) -> tuple[ImageClassifier, dict] | None:
    """The cached model and info, or None (with a warning saying why) unless both files exist and match."""
    if not pt.exists() and not meta.exists():
        return None
    try:
        info = json.loads(meta.read_text())
        if not isinstance(info, dict) or info.get("provenance") != provenance:
            raise ValueError("its provenance (data key, config, version) differs from the request")
        digest = hashlib.sha256(pt.read_bytes()).hexdigest()
        if digest != info.get("weights_sha256"):
            recorded = str(info.get("weights_sha256"))[:12]
            raise ValueError(f"weights sha256 {digest[:12]}… is not the recorded {recorded}…")
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model = ImageClassifier(width=cfg.width, feature_dim=cfg.feature_dim, num_classes=num_classes)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # corrupt, truncated, mismatched: retrain
        reason = " ".join(str(exc).split())[:200]
        warnings.warn(f"classifier cache {pt.name} not used, retraining: {type(exc).__name__}: {reason}", stacklevel=3)
        return None
    return model.eval(), info


def classifier_for(
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    key: str,
    cache_dir: str | Path,
    cfg: ClassifierConfig = ClassifierConfig(),
    num_classes: int = 10,
) -> tuple[ImageClassifier, dict]:
    """:func:`train_classifier`, once: cached as ``<cache_dir>/classifier-<sha>.pt`` + ``.json``.

    ``key`` is the caller's fingerprint of the data (e.g. the dataset's content hash); ``sha`` hashes it with the
    config, ``num_classes`` and :data:`VERSION`. The ``.json`` holds the info dict, ``provenance`` (key, config,
    num_classes, version) and the sha256 of the ``.pt``; a cache is used only when all three match and the state
    dict loads weights-only and strictly. The ``.pt`` is written before the ``.json`` (both atomically), so a crash
    between them leaves a cache that is retrained. ``info["cache"]`` says ``"hit"`` or ``"trained"``.
    """
    if not isinstance(cfg, ClassifierConfig):
        raise ValueError(f"cfg: expected a ClassifierConfig, got {type(cfg).__name__}")
    if not isinstance(key, str) or not key:
        raise ValueError(f"key={key!r}: expected a non-empty string (the caller's data fingerprint)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: expected an integer ≥ 2")
    cache_dir = Path(cache_dir)
    sha = _cache_sha(key, cfg, num_classes)
    pt, meta = cache_dir / f"classifier-{sha}.pt", cache_dir / f"classifier-{sha}.json"
    provenance = {"key": key, "cfg": asdict(cfg), "num_classes": num_classes, "version": VERSION}
    cached = _load_cached(pt, meta, provenance, cfg, num_classes)
    if cached is not None:
        model, info = cached
        return model, {**info, "cache": "hit", "cache_file": str(pt)}
    model, info = train_classifier(
        train_images, train_labels, test_images, test_labels, cfg=cfg, num_classes=num_classes
    )
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(pt, lambda f: torch.save(state, f))
    info = {**info, "provenance": provenance, "weights_sha256": hashlib.sha256(pt.read_bytes()).hexdigest()}
    write_json(meta, info)
    return model, {**info, "cache": "trained", "cache_file": str(pt)}
