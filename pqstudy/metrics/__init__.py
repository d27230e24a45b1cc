"""Metrics: pixel (PSNR, SSIM), codebook (utilisation, perplexity), reference networks (LPIPS, rFID, KID, CMMD)."""

from pqstudy.metrics.cmmd import mmd
from pqstudy.metrics.codebook import codebook_metrics, perplexity, utilisation
from pqstudy.metrics.image import psnr, ssim, to_unit
from pqstudy.metrics.reference import ReferenceMetrics
from pqstudy.metrics.weights import weights_report

__all__ = [
    "ReferenceMetrics",
    "codebook_metrics",
    "mmd",
    "perplexity",
    "psnr",
    "ssim",
    "to_unit",
    "utilisation",
    "weights_report",
]
