"""Quantisers by name. Each class has ``from_config(QuantizerConfig, dim=None)``."""

from pqstudy.quantizers.base import QuantOutput, Quantizer, VectorOutput, nearest_code, usage_counts
from pqstudy.quantizers.pq import ProductQuantizer
from pqstudy.quantizers.vq import VectorQuantizer

QUANTIZERS = {
    "vq": VectorQuantizer,
    "pq": ProductQuantizer,
}


def build_quantizer(q) -> Quantizer:
    """A quantiser from a ``QuantizerConfig``."""
    if q.kind not in QUANTIZERS:
        raise ValueError(f"quantizer.kind={q.kind!r}: unknown; choose one of {sorted(QUANTIZERS)}")
    return QUANTIZERS[q.kind].from_config(q)


__all__ = [
    "QUANTIZERS",
    "ProductQuantizer",
    "QuantOutput",
    "Quantizer",
    "VectorOutput",
    "VectorQuantizer",
    "build_quantizer",
    "nearest_code",
    "usage_counts",
]
