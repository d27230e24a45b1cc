"""Generated versus real samples, compared in the feature space of the study's own classifier.

The features come from :func:`pqstudy.metrics.classifier.classify` (not Inception), so every value here is named
for what it is: ``fd_classifier`` is the Fréchet distance and ``kid_classifier`` the kernel distance of those
features, never "FID"/"KID"; ``class_accuracy`` is how often the classifier gives a class-conditional sample its
label, never an "Inception Score". Precision, recall, density and coverage are those of Naeem et al. 2020,
"Reliable Fidelity and Diversity Metrics for Generative Models" (k-nearest-neighbour balls around real and fake
samples), computed exactly with distances in chunks so that 10,000 × 10,000 sets fit in memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pqstudy.metrics.distribution import frechet_distance, kernel_inception_distance

__all__ = ["class_accuracy", "knn_radii", "prdc", "sample_metrics"]

CHUNK = 1024  # rows of a distance block: 1024 × 10,000 float64 distances = 80 MB


def _check_features(real: Tensor, fake: Tensor, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}: expected a positive integer (neighbours per k-NN ball)")
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
            shown = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected float features (n, d), got {shown}")
        if len(x) < k + 1:
            raise ValueError(f"{name}: {len(x)} samples, need at least k + 1 = {k + 1} for k-NN balls (k={k})")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name}: features hold NaN or infinite values")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real/fake: feature dims differ ({real.shape[1]} vs {fake.shape[1]})")


def knn_radii(x: Tensor, k: int, chunk: int = CHUNK) -> Tensor:
    """(n,) distance from each row of ``x`` (n, d) to its k-th nearest other row (the point itself, at distance 0,
    is the 0-th: Naeem et al. take the (k+1)-th smallest distance including it)."""
    x = x.double()
    out = torch.empty(len(x), dtype=torch.float64)
    for start in range(0, len(x), chunk):
        d = torch.cdist(x[start : start + chunk], x)
        out[start : start + chunk] = d.kthvalue(k + 1, dim=1).values
    return out


def prdc(real: Tensor, fake: Tensor, k: int = 5, *, chunk: int = CHUNK) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` (m, d) against ``real`` (n, d) features.

    With ``r_i`` the radius of real sample i's k-NN ball among the reals and ``s_j`` that of fake j among the fakes
    (:func:`knn_radii`), and ``d_ij`` the Euclidean distance (strict inequalities, as the authors' code):

    - precision = share of fakes inside some real ball: mean_j [∃i: d_ij < r_i]
    - recall = share of reals inside some fake ball: mean_i [∃j: d_ij < s_j]
    - density = mean_j (1/k) Σ_i [d_ij < r_i] (1 on average for fakes distributed as the reals; can exceed 1)
    - coverage = share of real balls holding at least one fake: mean_i [min_j d_ij < r_i]

    Distances are float64, in blocks of ``chunk`` fakes.
    """
    _check_features(real, fake, k)
    real, fake = real.double(), fake.double()
    r_real, r_fake = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    inside_real = torch.zeros(len(fake), dtype=torch.float64)  # per fake: how many real balls hold it
    real_hit = torch.zeros(len(real), dtype=torch.bool)  # per real: inside some fake ball
    nearest_fake = torch.full((len(real),), torch.inf, dtype=torch.float64)  # per real: distance to nearest fake
    for start in range(0, len(fake), chunk):
        d = torch.cdist(fake[start : start + chunk], real)  # (c, n)
        inside_real[start : start + chunk] = (d < r_real[None]).sum(1, dtype=torch.float64)
        real_hit |= (d < r_fake[start : start + chunk, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "precision": float((inside_real > 0).double().mean()),
        "recall": float(real_hit.double().mean()),
        "density": float(inside_real.mean() / k),
        "coverage": float((nearest_fake < r_real).double().mean()),
    }


def class_accuracy(fake_logits: Tensor, fake_labels: Tensor) -> float:
    """Share of samples whose classifier argmax is the label they were generated for: logits (m, C), labels (m,)."""
    if fake_logits.ndim != 2:
        raise ValueError(f"fake_logits: expected (m, num_classes), got {tuple(fake_logits.shape)}")
    if fake_labels.ndim != 1 or len(fake_labels) != len(fake_logits) or fake_labels.is_floating_point():
        raise ValueError(
            f"fake_labels: expected integer labels ({len(fake_logits)},) to match fake_logits, got "
            f"{fake_labels.dtype} {tuple(fake_labels.shape)}"
        )
    c = fake_logits.shape[1]
    if len(fake_labels) and (int(fake_labels.min()) < 0 or int(fake_labels.max()) >= c):
        raise ValueError(
            f"fake_labels: values in {int(fake_labels.min())}..{int(fake_labels.max())}, expected "
            f"0..{c - 1} (fake_logits has {c} classes)"
        )
    return float((fake_logits.argmax(1) == fake_labels).double().mean())


def sample_metrics(
    real_features: Tensor,
    fake_features: Tensor,
    *,
    fake_logits: Tensor | None = None,
    fake_labels: Tensor | None = None,
    k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 2020,
) -> dict[str, float | int | None]:
    """All sample metrics of ``fake_features`` (m, F) against ``real_features`` (n, F) in the classifier's space.

    - ``fd_classifier``: Fréchet distance of the two Gaussian fits
      (:func:`~pqstudy.metrics.distribution.frechet_distance`)
    - ``kid_classifier``, ``kid_classifier_std``: unbiased polynomial-kernel MMD² over ``kid_subsets`` random subsets
      of min(``kid_subset_size``, n, m) samples (:func:`~pqstudy.metrics.distribution.kernel_inception_distance`,
      kernel (x·y/F + 1)³, so any feature dimension F works; when both sets have exactly that many samples every
      subset is the whole set and the std is 0)
    - ``precision``, ``recall``, ``density``, ``coverage``: :func:`prdc` with ``k`` neighbours
    - ``class_accuracy``: :func:`class_accuracy` of ``fake_logits`` (m, C) against ``fake_labels`` (m,); None when
      either is absent (an unconditional generator)
    - ``n_real``, ``n_fake``, ``feature_dim``, ``k``, ``kid_subsets``, ``kid_subset_size`` (as used): the settings
    """
    _check_features(real_features, fake_features, k)
    if isinstance(kid_subsets, bool) or not isinstance(kid_subsets, int) or kid_subsets < 1:
        raise ValueError(f"kid_subsets={kid_subsets!r}: expected a positive integer")
    if isinstance(kid_subset_size, bool) or not isinstance(kid_subset_size, int) or kid_subset_size < 2:
        raise ValueError(f"kid_subset_size={kid_subset_size!r}: expected an integer ≥ 2")
    if fake_labels is not None and fake_logits is None:
        raise ValueError("fake_labels given without fake_logits: class_accuracy needs both")
    if fake_logits is not None and len(fake_logits) != len(fake_features):
        raise ValueError(f"fake_logits: {len(fake_logits)} rows for {len(fake_features)} fake features")
    real, fake = real_features.detach().cpu(), fake_features.detach().cpu()
    accuracy = None if fake_labels is None else class_accuracy(fake_logits.detach().cpu(), fake_labels.cpu())
    subset = min(kid_subset_size, len(real), len(fake))
    kid, kid_std = kernel_inception_distance(fake.double(), real.double(), kid_subsets, subset, seed)
    return {
        "fd_classifier": frechet_distance(fake.double(), real.double()),
        "kid_classifier": kid,
        "kid_classifier_std": kid_std,
        **prdc(real, fake, k),
        "class_accuracy": accuracy,
        "n_real": len(real),
        "n_fake": len(fake),
        "feature_dim": real.shape[1],
        "k": k,
        "kid_subsets": kid_subsets,
        "kid_subset_size": subset,
    }
