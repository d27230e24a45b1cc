"""Quantisers by name: torch modules that know only tensors.

| kind | class | codebook |
|---|---|---|
| ``vq`` | :class:`VectorQuantizer` | learned by gradient |
| ``vq-fc`` | :class:`FactorizedVectorQuantizer` | learned, looked up in a D′-dim space (D → D′ → D) |
| ``vq-ema`` | :class:`EMAVectorQuantizer` | exponential moving averages, no gradient |
| ``lc`` | :class:`LCQuantizer` | frozen N × C features (given as a tensor), learned projector C → D′ |
| ``pq`` | :class:`ProductQuantizer` | M subspaces, each a quantiser of ``sub_kind`` (any of the above) |

``build_quantizer(cfg.quantizer, codebook=None)`` maps a config to keyword arguments (:mod:`.build`). ``lc`` kinds
need their feature codebook passed in: :func:`pqstudy.codebooks.codebook_for` builds it from data.
"""

from __future__ import annotations

from pqstudy.quantizers.base import Quantizer, QuantOutput, VectorOutput, nearest_code, usage_counts
from pqstudy.quantizers.build import BUILDERS, build_quantizer, uses_lc
from pqstudy.quantizers.lc import FeatureBank, LCQuantizer
from pqstudy.quantizers.pq import ProductQuantizer
from pqstudy.quantizers.vq import VectorQuantizer
from pqstudy.quantizers.vq_ema import EMAVectorQuantizer
from pqstudy.quantizers.vq_fc import FactorizedVectorQuantizer

QUANTIZERS = {
    "vq": VectorQuantizer,
    "vq-fc": FactorizedVectorQuantizer,
    "vq-ema": EMAVectorQuantizer,
    "lc": LCQuantizer,
    "pq": ProductQuantizer,
}

__all__ = [
    "BUILDERS",
    "QUANTIZERS",
    "EMAVectorQuantizer",
    "FactorizedVectorQuantizer",
    "FeatureBank",
    "LCQuantizer",
    "ProductQuantizer",
    "QuantOutput",
    "Quantizer",
    "VectorOutput",
    "VectorQuantizer",
    "build_quantizer",
    "nearest_code",
    "uses_lc",
    "usage_counts",
]
