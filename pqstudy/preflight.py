"""The full check of a run's config before any long work: ``validate_run(cfg)``.

:func:`pqstudy.config.validate` checks what the config alone can tell (ranges, choices among its own constants). The
names that live where things are defined, and the ``lc`` feature source, are checked here, one layer up:

- ``quantizer.kind`` / ``quantizer.sub_kind`` against the quantiser registry (:data:`pqstudy.quantizers.QUANTIZERS`);
- ``data.name`` against the dataset registry (:func:`pqstudy.data.check_config`);
- ``quantizer.lc_source``'s form, and with ``projector=none`` its feature dim C against the lookup dim D′.

Every entry point that starts work calls it: :func:`pqstudy.train.train`, the sweep runner before each run, and the
``train`` / ``codebooks build`` commands.
"""

from __future__ import annotations

from pqstudy.codebooks.sources import source_feature_dim
from pqstudy.config import RunConfig, lookup_dim, require, validate
from pqstudy.data import check_config
from pqstudy.quantizers import QUANTIZERS, uses_lc

LC_SOURCE_PREFIXES = ("encoder:", "clip:")


def validate_run(cfg: RunConfig) -> RunConfig:
    """``config.validate`` plus the registry, dataset and feature-source checks; returns ``cfg``. Raises
    :class:`pqstudy.config.ConfigError` naming the field and the value."""
    validate(cfg)
    check_config(cfg.data)
    _check_quantizer_kinds(cfg.quantizer)
    _check_lc_source(cfg.quantizer)
    return cfg


def _check_quantizer_kinds(q) -> None:
    require(q.kind in QUANTIZERS, "quantizer.kind", q.kind, f"unknown quantizer; choose one of {sorted(QUANTIZERS)}")
    require(q.sub_kind in QUANTIZERS and q.sub_kind != "pq", "quantizer.sub_kind", q.sub_kind,
            f"choose one of {sorted(k for k in QUANTIZERS if k != 'pq')}")


def _check_lc_source(q) -> None:
    require(q.lc_source in ("pixels", "random") or any(
        q.lc_source.startswith(p) and len(q.lc_source) > len(p) for p in LC_SOURCE_PREFIXES),
        "quantizer.lc_source", q.lc_source, "choose pixels, random, encoder:<run dir> or clip:<model>[:<tag or file>]")
    if not uses_lc(q) or q.projector != "none":
        return
    d_low = lookup_dim("lc", q.dim, q.low_dim, q.subspaces)
    feature_dim = known_feature_dim(q)
    require(feature_dim in (None, d_low), "quantizer.projector", q.projector,
            f"without a projector the codebook features (C={feature_dim} from quantizer.lc_source="
            f"{q.lc_source!r}) must have the lookup dim D′={d_low}; use projector=linear or mlp")


def known_feature_dim(q) -> int | None:
    """C of the ``lc`` features for ``QuantizerConfig`` q when known without loading anything."""
    if q.lc_source == "random":
        return q.lc_feature_dim or lookup_dim("lc", q.dim, q.low_dim, q.subspaces)
    return source_feature_dim(q.lc_source, patch=q.lc_patch, feature_dim=q.lc_feature_dim)
