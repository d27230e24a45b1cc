import math

import pytest
import torch

from pqstudy.metrics.sample_quality import class_accuracy, knn_radii, prdc, sample_metrics


def brute_force_prdc(real, fake, k):
    """Naeem et al.'s definitions, one pair of points at a time."""
    real, fake = real.tolist(), fake.tolist()

    def radius(points, i):
        return sorted(math.dist(points[i], q) for q in points)[k]  # index 0 is the point itself

    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, j) for j in range(len(fake))]
    d = [[math.dist(f, r) for r in real] for f in fake]  # d[j][i]: fake j to real i
    n, m = len(real), len(fake)
    return {
        "precision": sum(any(d[j][i] < r_real[i] for i in range(n)) for j in range(m)) / m,
        "recall": sum(any(d[j][i] < r_fake[j] for j in range(m)) for i in range(n)) / n,
        "density": sum(d[j][i] < r_real[i] for j in range(m) for i in range(n)) / (k * m),
        "coverage": sum(min(d[j][i] for j in range(m)) < r_real[i] for i in range(n)) / n,
    }


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("chunk", [7, 1024])
@pytest.mark.parametrize("shift", [0.0, 0.7, 2.0])
def test_prdc_matches_brute_force(k, chunk, shift):
    g = torch.Generator().manual_seed(k + int(10 * shift))
    real = torch.randn(50, 4, generator=g)
    fake = 1.3 * torch.randn(43, 4, generator=g) + shift  # wider and shifted: every metric strictly between 0 and 1
    got = prdc(real, fake, k, chunk=chunk)
    want = brute_force_prdc(real.double(), fake.double(), k)
    assert got == pytest.approx(want, abs=1e-12)


def test_knn_radii_exclude_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2, chunk=3).tolist() == [3.0, 2.0, 3.0, 6.0]


@pytest.mark.parametrize("n, dim", [(300, 16), (60, 64)])  # more samples than dims (scipy sqrtm) and fewer (SVD)
def test_a_set_against_itself(n, dim):
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))
    m = sample_metrics(x, x.clone(), kid_subset_size=50)
    assert abs(m["fd_classifier"]) < 1e-6
    assert m["precision"] == m["recall"] == m["coverage"] == 1.0
    assert m["density"] == pytest.approx(1.0, abs=0.05)  # ≥ 1: a sample also falls in its neighbours' balls
    assert m["class_accuracy"] is None
    assert (m["n_real"], m["n_fake"], m["feature_dim"], m["k"], m["kid_subset_size"]) == (n, n, dim, 5, 50)


def test_disjoint_far_apart_sets():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(80, 8, generator=g), torch.randn(70, 8, generator=g) + 100.0
    m = sample_metrics(real, fake, kid_subset_size=50)
    assert m["precision"] == m["recall"] == m["density"] == m["coverage"] == 0.0
    assert m["fd_classifier"] > 8 * 100.0**2 * 0.9
    assert m["kid_classifier"] > 100 * m["kid_classifier_std"]


@pytest.mark.parametrize("n, dim", [(300, 3), (300, 16), (40, 64)])
def test_fd_of_a_shifted_set_is_the_squared_shift_and_kid_sees_it(n, dim):
    """Equal covariances: the Fréchet distance is exactly ‖shift‖², in every feature dimension."""
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(n, dim, generator=g).double()
    shift = torch.randn(dim, generator=g).double()
    shift = 2.0 * shift / shift.norm()  # two standard deviations in any dimension
    near, far = (sample_metrics(x, y, kid_subset_size=min(n, 100)) for y in (x.clone(), x + shift))
    assert far["fd_classifier"] == pytest.approx(4.0, rel=1e-5)
    assert far["kid_classifier"] > near["kid_classifier"] + 3 * far["kid_classifier_std"]


def test_kid_is_seeded():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(120, 8, generator=g), torch.randn(100, 8, generator=g) + 0.3
    a, b = sample_metrics(real, fake, kid_subset_size=40), sample_metrics(real, fake, kid_subset_size=40)
    c = sample_metrics(real, fake, kid_subset_size=40, seed=7)
    assert a == b and a["kid_classifier"] != c["kid_classifier"]


def test_class_accuracy_on_known_logits():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    assert class_accuracy(logits, labels) == 0.5
    feats = torch.randn(4, 3)
    real = torch.randn(20, 3)
    m = sample_metrics(real, feats, fake_logits=logits, fake_labels=labels, k=2, kid_subset_size=4)
    assert m["class_accuracy"] == 0.5
    assert sample_metrics(real, feats, fake_logits=logits, k=2, kid_subset_size=4)["class_accuracy"] is None


@pytest.mark.parametrize(
    "real_shape, fake_shape, kwargs, message",
    [
        ((20, 4), (20, 5), {}, "feature dims differ"),
        ((20,), (20, 4), {}, "real: expected float features"),
        ((20, 4), (5, 4), {}, "fake: 5 samples, need at least k \\+ 1 = 6"),
        ((2, 4), (20, 4), {"k": 2}, "real: 2 samples, need at least k \\+ 1 = 3"),
        ((20, 4), (20, 4), {"k": 0}, "k=0"),
        ((20, 4), (20, 4), {"kid_subsets": 0}, "kid_subsets=0"),
        ((20, 4), (20, 4), {"kid_subset_size": 1}, "kid_subset_size=1"),
        ((20, 4), (20, 4), {"fake_labels": torch.zeros(20, dtype=torch.long)}, "without fake_logits"),
        (
            (20, 4),
            (20, 4),
            {"fake_logits": torch.zeros(19, 3), "fake_labels": torch.zeros(19, dtype=torch.long)},
            "fake_logits: 19 rows for 20",
        ),
        (
            (20, 4),
            (20, 4),
            {"fake_logits": torch.zeros(20, 3), "fake_labels": torch.full((20,), 3)},
            "fake_labels: values in 3..3, expected 0..2",
        ),
    ],
)
def test_bad_input_is_refused(real_shape, fake_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_metrics(torch.randn(real_shape), torch.randn(fake_shape), **kwargs)


def test_non_finite_features_are_refused():
    fake = torch.randn(20, 4)
    fake[3, 1] = float("nan")
    with pytest.raises(ValueError, match="fake: features hold NaN"):
        prdc(torch.randn(20, 4), fake)
