"""Pixel metrics in torch: PSNR and SSIM per image, for images in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] model space → [0, 1], clamped."""
    return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB for (B, C, H, W) images; identical images give +inf."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, device, dtype) -> Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image SSIM (Wang et al. 2004): Gaussian window (σ = 1.5, 11 taps), K1 = 0.01, K2 = 0.03.

    Averaged over channels and over the positions where the window fits inside the image, which equals
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)``.
    """
    x, y = x.double(), y.double()
    c = x.shape[1]
    g = _gaussian_window(win_size, sigma, x.device, x.dtype)
    rows = g.view(1, 1, 1, win_size).expand(c, 1, 1, win_size).contiguous()
    cols = g.view(1, 1, win_size, 1).expand(c, 1, win_size, 1).contiguous()

    def blur(t: Tensor) -> Tensor:  # the 2-D Gaussian is separable: two 1-D passes, 2·11 taps instead of 121
        return F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).float()
