import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from pqstudy.metrics import codebook_metrics, perplexity, psnr, ssim, utilisation


@pytest.mark.parametrize("size, noise", [(32, 0.05), (32, 0.3), (16, 0.1), (48, 0.02)])
def test_ssim_matches_skimage(size, noise):
    g = torch.Generator().manual_seed(size)
    x = torch.rand(3, 3, size, size, generator=g)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = ssim(x, y)
    ref = [
        structural_similarity(
            x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
        for i in range(3)
    ]
    assert np.allclose(ours.numpy(), ref, atol=1e-5)


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2))


def test_psnr_formula():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.full_like(x, 0.1)
    assert torch.allclose(psnr(x, y), torch.full((2,), 20.0))  # 10·log10(1 / 0.01)


def test_codebook_metrics_on_known_counts():
    counts = torch.tensor([[5, 5, 0, 0], [1, 1, 1, 1]])
    assert torch.allclose(utilisation(counts), torch.tensor([0.5, 1.0]))
    assert torch.allclose(perplexity(counts), torch.tensor([2.0, 4.0]))
    m = codebook_metrics(counts)
    assert m["utilisation"] == pytest.approx(0.75) and m["utilisation_min"] == pytest.approx(0.5)
    assert m["perplexity"] == pytest.approx(3.0) and m["codes_used"] == 6
    assert m["utilisation_per_codebook"] == [0.5, 1.0]


def test_perplexity_at_large_k_is_o_k_and_exact():
    k = 100_000
    counts = torch.zeros(1, k, dtype=torch.long)
    counts[0, : k // 2] = 3
    assert perplexity(counts).item() == pytest.approx(k / 2, rel=1e-5)
    assert math.isclose(utilisation(counts).item(), 0.5)


@pytest.mark.parametrize("distortion", ["noise", "blur", "jpeg-like", "shift"])
def test_ssim_matches_pytorch_msssim_on_cifar10(distortion, cifar_test):
    """The hand-written SSIM against an established implementation (pytorch-msssim: 11-tap Gaussian, σ 1.5, valid
    positions) on CIFAR-10 test images, to 1e-4."""
    import torchvision.transforms.functional as TF
    from pytorch_msssim import ssim as reference_ssim

    x = cifar_test[:32].float() / 255
    g = torch.Generator().manual_seed(0)
    y = {
        "noise": lambda: (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1),
        "blur": lambda: TF.gaussian_blur(x, 5, 1.2),
        "jpeg-like": lambda: (x * 16).round() / 16,
        "shift": lambda: torch.roll(x, shifts=1, dims=-1),
    }[distortion]()
    ours = ssim(x, y)
    theirs = reference_ssim(x.double(), y.double(), data_range=1.0, size_average=False, win_size=11, win_sigma=1.5)
    assert torch.allclose(ours.double(), theirs, atol=1e-4)
