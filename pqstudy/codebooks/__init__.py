"""Initial codebooks as built, cached artefacts (layer 4: above data and the torch modules, below training).

- :mod:`.sources`: where feature vectors come from (pixel patches, a trained encoder run, CLIP, random);
- :mod:`.strategies`: uniform / feature-normal / select / k-means on those features;
- :mod:`.cache`: content-addressed files named by the hash of their provenance, with a ``.json`` beside each;
- :mod:`.build`: ``build_codebook`` and ``codebook_for(cfg)``, which training and ``pqstudy codebooks build`` call.

A quantiser never builds its codebook: it receives the tensor (:func:`pqstudy.quantizers.build_quantizer`).
"""

from pqstudy.codebooks.build import (
    build_codebook,
    cache_path,
    codebook_file,
    codebook_for,
    provenance,
    resolve_samples,
    sample_features,
)
from pqstudy.codebooks.cache import CODEBOOK_VERSION, default_cache_dir, read_provenance
from pqstudy.codebooks.strategies import (
    CodebookWarning,
    codebook_from_features,
    kmeans,
    uniform_codebook,
    within_cluster_error,
)

__all__ = [
    "CODEBOOK_VERSION",
    "CodebookWarning",
    "build_codebook",
    "cache_path",
    "codebook_file",
    "codebook_for",
    "codebook_from_features",
    "default_cache_dir",
    "kmeans",
    "provenance",
    "read_provenance",
    "resolve_samples",
    "sample_features",
    "uniform_codebook",
    "within_cluster_error",
]
